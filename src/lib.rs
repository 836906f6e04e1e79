//! berth converges a GitLab CI runner host to declarative TOML profiles: kernel modules,
//! Docker's daemon.json and service, and (in later kinds) networks, volumes, containers and the
//! runner's registration. `run` takes the parsed command line and returns the exit code.

#![warn(clippy::print_stdout, clippy::print_stderr, clippy::exit)]

pub mod cli;
pub mod container_spec;
pub mod docker;
pub mod engine;
pub mod exec;
pub mod host;
pub mod inspect;
pub mod output;
pub mod plan;
pub mod profile;
pub mod resource;
pub mod service_unit;
pub mod settings;
pub mod text_diff;
pub mod toml_source;

use anyhow::{Result, bail};

use crate::{
    cli::{Cli, Command},
    docker::Docker,
    engine::Mode,
    output::Printer,
    resource::Context,
    settings::Settings,
};

/// Exit codes, as Terraform's `-detailed-exitcode` taught operators to read them.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    /// `plan` only: the host differs from the profile.
    pub const CHANGES_PENDING: u8 = 2;
}

/// Runs one berth command and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    output::init_logging(cli.quiet, cli.verbose, cli.color);
    let printer = Printer::new(cli.json, cli.color);
    let command = match cli.command {
        Command::Plan(_) => "plan",
        Command::Apply(_) => "apply",
        Command::Validate => "validate",
    };
    match run_command(&cli, &printer) {
        Ok(code) => code,
        Err(error) => {
            printer.fatal(command, &error);
            exit::FAILURE
        }
    }
}

fn run_command(cli: &Cli, printer: &Printer) -> Result<u8> {
    let settings = Settings::resolve(cli)?;
    let mode = match cli.command {
        Command::Plan(_) => Mode::Plan,
        Command::Apply(_) => Mode::Apply,
        Command::Validate => {
            let profile = profile::load(&settings.profiles, &settings.host)?;
            ignore_broken_pipe(printer.validated(&profile.names, &profile.warnings))?;
            return Ok(exit::OK);
        }
    };
    if mode == Mode::Apply && settings.host.is_machine_root() && !nix::unistd::geteuid().is_root() {
        bail!(
            "berth apply changes /etc and the Docker daemon and must run as root (try `sudo berth apply`); `berth plan` works as any user"
        );
    }
    let profile = profile::load(&settings.profiles, &settings.host)?;
    for warning in &profile.warnings {
        tracing::warn!("{warning}");
    }
    let resources = resource::from_profile(&profile, &settings.options);
    let docker = Docker::default();
    let cx = Context {
        host: &settings.host,
        docker: &docker,
        options: &settings.options,
    };
    let report = engine::run(&resources, &cx, mode);
    ignore_broken_pipe(printer.report(&report, &profile.names))?;
    Ok(match mode {
        _ if report.failed() => exit::FAILURE,
        Mode::Plan if report.has_changes() => exit::CHANGES_PENDING,
        _ => exit::OK,
    })
}

/// A reader that went away (`berth plan | head`) is not an error worth reporting.
fn ignore_broken_pipe(result: std::io::Result<()>) -> Result<()> {
    match result {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
