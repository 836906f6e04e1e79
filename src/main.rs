//! Parses the command line, runs berth, turns the outcome into the exit code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = match berth::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // clap exits 2 on a usage error, which `plan` uses for "changes pending": a typo must
        // not look like drift. `--help` and `--version` come here too, and still exit 0.
        Err(error) => {
            let _ = error.print();
            return std::process::ExitCode::from(berth::cli::exit::usage(&error));
        }
    };
    std::process::ExitCode::from(berth::run(cli))
}
