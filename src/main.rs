//! Parses the command line, runs berth, turns the outcome into the exit code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(berth::run(berth::cli::Cli::parse()))
}
