//! berth converges a GitLab CI runner host to declarative TOML profiles: kernel modules,
//! Docker's daemon.json and service, networks, volumes, containers, and the runners'
//! registrations and config.toml. `run` takes the parsed command line and returns the exit code;
//! `main.rs` only turns it into the process's exit status. See docs/ARCHITECTURE.md for the tree.

#![warn(clippy::print_stdout, clippy::print_stderr, clippy::exit)]

pub mod cli;
mod docker;
mod doctor;
mod engine;
mod host;
mod init;
mod output;
mod plan;
mod profile;
mod resource;
mod secret;
mod settings;
mod watch;

use std::time::Instant;

use anyhow::{Result, bail};

use crate::{
    cli::{Cli, Command},
    docker::Docker,
    engine::Mode,
    host::lock::RunLock,
    output::Printer,
    output::run_report::LastRun,
    resource::{Context, docker_object::ObjectNames},
    settings::Settings,
};

/// Exit codes, as Terraform's `-detailed-exitcode` taught operators to read them.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    /// `plan` only: the host differs from the profile, and apply would make every change.
    pub const CHANGES_PENDING: u8 = 2;

    /// What a command line clap could not parse exits with: 1, like any other error, since 2
    /// means "changes pending"; `--help` and `--version` (which clap reports the same way)
    /// exit 0.
    pub fn usage(error: &clap::Error) -> u8 {
        if error.exit_code() == 0 { OK } else { FAILURE }
    }
}

/// Runs one berth command and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    output::init_logging(cli.quiet, cli.verbose, cli.color);
    let printer = Printer::new(cli.json, cli.color);
    let command = match cli.command {
        Command::Plan(_) => "plan",
        Command::Apply(_) => "apply",
        Command::Watch(_) => "watch",
        Command::Validate => "validate",
        Command::Status => "status",
        Command::Doctor => "doctor",
        Command::Init(_) => "init",
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
    match cli.command {
        Command::Init(ref args) => {
            let written = init::run(
                &settings.host,
                &init::Request {
                    topology: args.topology,
                    url: args.url.clone(),
                    runner: args.runner.clone(),
                },
            )?;
            ignore_broken_pipe(printer.initialized(&written))?;
            Ok(exit::OK)
        }
        Command::Plan(_) => {
            converge(&settings, printer, Mode::Plan, true).map(|converged| converged.code)
        }
        Command::Apply(_) => apply(&settings, printer, true).map(|(code, _)| code),
        Command::Watch(ref args) => watch::run(
            &settings,
            printer,
            watch::Pace {
                debounce: std::time::Duration::from_millis(args.debounce_ms),
                heals_per_minute: args.heals_per_minute.max(1),
            },
            // A converge that changed nothing is not worth a line in the journal.
            &|settings, printer| apply(settings, printer, false),
        ),
        Command::Validate => {
            let profile = resource::profile::load(&settings.profiles, &settings.host)?;
            ignore_broken_pipe(printer.validated(&profile.names, &profile.warnings))?;
            Ok(exit::OK)
        }
        Command::Status => {
            let last_run = LastRun::read(&settings.host)?;
            let watch = watch::state::WatchState::read(&settings.host)
                .inspect_err(|error| tracing::warn!("{error:#}"))
                .ok()
                .flatten();
            ignore_broken_pipe(printer.status(last_run.as_ref(), watch.as_ref()))?;
            Ok(match last_run {
                Some(run) if run.success => exit::OK,
                _ => exit::FAILURE,
            })
        }
        Command::Doctor => {
            // A broken profile is worth reporting, but the host checks still run.
            let profile = resource::profile::load(&settings.profiles, &settings.host)
                .inspect_err(|error| output::print_error(error, false))
                .ok();
            let checks = doctor::run(&settings.host, &Docker::default(), profile.as_ref());
            ignore_broken_pipe(printer.doctor(&checks))?;
            Ok(if doctor::healthy(&checks) {
                exit::OK
            } else {
                exit::FAILURE
            })
        }
    }
}

/// `apply`: one run at a time, and a run report (and metrics) whatever happens after the lock.
/// Returns the exit code and whether anything changed; `print_converged` prints the report of
/// a run that changed nothing too.
fn apply(settings: &Settings, printer: &Printer, print_converged: bool) -> Result<(u8, bool)> {
    if settings.host.is_machine_root() && !nix::unistd::geteuid().is_root() {
        bail!(
            "berth apply changes /etc and the Docker daemon and must run as root (try `sudo berth apply`); `berth plan` works as any user"
        );
    }
    let _lock = RunLock::acquire(&settings.host, settings.lock_timeout)?;
    let started = jiff::Timestamp::now();
    let clock = Instant::now();
    let outcome = converge(settings, printer, Mode::Apply, print_converged);
    let last_run = match &outcome {
        Ok(converged) => LastRun::from_report(
            &converged.report,
            started,
            clock.elapsed(),
            &converged.profile_names,
            converged.kinds.iter().cloned(),
        ),
        Err(error) => {
            let names: Vec<String> = settings
                .profiles
                .iter()
                .map(|profile| profile.short_name())
                .collect();
            LastRun::from_error(error, started, clock.elapsed(), &names)
        }
    };
    // Monitoring must hear about every run; failing to record one is worth a loud warning but
    // does not undo what the run did.
    if let Err(error) = last_run.write(&settings.host) {
        tracing::warn!("failed to write the run report: {error:#}");
    }
    if let Some(path) = &settings.metrics_file
        && let Err(error) = last_run.write_metrics(&settings.host, path)
    {
        tracing::warn!("failed to write metrics to `{path}`: {error:#}");
    }
    outcome.map(|converged| {
        let changed = converged
            .report
            .entries
            .iter()
            .any(|entry| entry.status == engine::Status::Done);
        (converged.code, changed)
    })
}

/// What one plan or apply found and did.
struct Converged {
    code: u8,
    report: engine::Report,
    profile_names: Vec<String>,
    /// The kinds of resource the profiles declare.
    kinds: Vec<String>,
}

/// Loads the profiles, runs the engine and prints the report.
fn converge(
    settings: &Settings,
    printer: &Printer,
    mode: Mode,
    print_converged: bool,
) -> Result<Converged> {
    let profile = resource::profile::load(&settings.profiles, &settings.host)?;
    for warning in &profile.warnings {
        tracing::warn!("{warning}");
    }
    let mut resources = resource::from_profile(&profile, &settings.options);
    resources.extend(resource::removed_runners(&profile, &settings.host));
    let docker = Docker::default();
    let context = Context {
        host: &settings.host,
        docker: &docker,
    };
    if resources
        .iter()
        .any(|resource| resource.id().kind.is_docker_object())
    {
        resource::docker_object::prefetch(&context, &ObjectNames::from_profile(&profile));
    }
    let report = engine::run(&resources, &context, mode);
    if print_converged || report.has_changes() || report.failed() {
        ignore_broken_pipe(printer.report(&report, &profile.names))?;
    }
    let code = match mode {
        _ if report.failed() => exit::FAILURE,
        // apply would not make every change: that is not "changes pending", it needs a person.
        Mode::Plan if report.refused() > 0 => exit::FAILURE,
        Mode::Plan if report.has_changes() => exit::CHANGES_PENDING,
        _ => exit::OK,
    };
    let mut kinds: Vec<String> = resources
        .iter()
        .map(|resource| resource.id().kind.as_str().to_owned())
        .collect();
    kinds.dedup();
    Ok(Converged {
        code,
        report,
        profile_names: profile.names,
        kinds,
    })
}

/// A reader that went away (`berth plan | head`) is not an error worth reporting.
fn ignore_broken_pipe(result: std::io::Result<()>) -> Result<()> {
    match result {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
