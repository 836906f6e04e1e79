//! berth converges a GitLab CI runner host to declarative TOML profiles: kernel modules,
//! Docker's daemon.json and service, networks, volumes, containers, and the runners'
//! registrations and config.toml. `run` takes the parsed command line and returns the exit code;
//! `main.rs` only turns it into the process's exit status. See docs/ARCHITECTURE.md for the tree.

#![warn(clippy::print_stdout, clippy::print_stderr, clippy::exit)]

pub mod cli;
mod destroy;
mod docker;
mod doctor;
mod engine;
mod fleet;
mod host;
mod init;
mod output;
mod pause;
mod plan;
mod profile;
mod resource;
mod saved_plan;
mod secret;
mod settings;
mod source;
mod watch;

use std::{collections::BTreeMap, time::Instant};

use anyhow::{Result, bail};

use crate::{
    cli::{Cli, Command, exit},
    docker::{Docker, ObjectNames},
    engine::{Mode, Pass, Report, Reviewed},
    fleet::{FleetRun, Gate, SlotHeld},
    host::{Host, HostPath, lock::RunLock},
    output::confirm::{self, Consent},
    output::run_report::{self, LastRun},
    output::{Printer, ignore_broken_pipe, json},
    pause::Pause,
    plan::Change,
    profile::ProfileRef,
    resource::{AnyResource, Context, profile::Profile},
    saved_plan::{Observation, SavedPlan},
    settings::{Settings, require_root},
};

/// Runs one berth command and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    output::init_logging(cli.quiet, cli.verbose, cli.color);
    let printer = Printer::new(cli.json, cli.color);
    let command = match cli.command {
        Command::Plan(_) => "plan",
        Command::Apply(_) => "apply",
        Command::Watch(_) => "watch",
        Command::Validate(_) => "validate",
        Command::Status => "status",
        Command::Doctor => "doctor",
        Command::Init(_) => "init",
        Command::Show(_) => "show",
        Command::Profiles => "profiles",
        Command::Pause(_) => "pause",
        Command::Resume => "resume",
        Command::Completions { .. } => "completions",
        Command::Man => "man",
        Command::Destroy(_) => "destroy",
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
    // Generated from the command line alone: no host, no settings to read first.
    match cli.command {
        Command::Completions { shell } => {
            ignore_broken_pipe(output::reference::completions(shell))?;
            return Ok(exit::OK);
        }
        Command::Man => {
            ignore_broken_pipe(output::reference::man_page())?;
            return Ok(exit::OK);
        }
        _ => {}
    }
    let settings = Settings::resolve(cli)?;
    match cli.command {
        Command::Init(ref args) => {
            let written = init::run(
                &settings.host,
                &init::InitRequest {
                    topology: args.topology,
                    url: args.url.clone(),
                    runner: args.runner.clone(),
                },
            )?;
            ignore_broken_pipe(printer.initialized(&written))?;
            Ok(exit::OK)
        }
        Command::Plan(ref args) if args.destroy => {
            destroy::run(&settings, printer, destroy::Request::plan(args.purge))
        }
        Command::Plan(_) => {
            converge(&settings, printer, Mode::Plan, true).map(|converged| converged.code)
        }
        Command::Destroy(ref args) => {
            destroy::run(&settings, printer, destroy::Request::destroy(args))
        }
        Command::Apply(_) => apply(&settings, printer, true).map(|(code, _)| code),
        Command::Watch(ref args) => watch::run(
            &settings,
            printer,
            watch::Pace {
                debounce: std::time::Duration::from_millis(args.debounce_ms),
                heals_per_minute: args.heals_per_minute.max(1),
                fleet_retry: std::time::Duration::from_secs(args.fleet_retry_secs),
            },
            // A converge that changed nothing is not worth a line in the journal.
            &|settings, printer| apply(settings, printer, false),
        ),
        Command::Validate(ref args) => validate(&settings, printer, args),
        Command::Show(ref args) => {
            let mut shown_any = false;
            for (_, profiles) in checkout_members(&settings, args)? {
                // What is shown is what apply would take: an invalid profile is refused first.
                resource::profile::load(&profiles, &settings.host)?;
                let shown = profile::show::merged(&profiles, &settings.host)?;
                ignore_broken_pipe(printer.shown(&shown))?;
                shown_any = true;
            }
            Ok(if shown_any { exit::OK } else { exit::FAILURE })
        }
        Command::Profiles => {
            let listed = profile::show::list(&settings.host, &settings.selected)?;
            ignore_broken_pipe(printer.profiles(&listed))?;
            Ok(exit::OK)
        }
        Command::Pause(ref args) => pause_or_resume(&settings, printer, Some(&args.reason)),
        Command::Resume => pause_or_resume(&settings, printer, None),
        Command::Status => {
            let last_run = LastRun::read(&settings.host)?;
            let watch = watch::state::WatchState::read(&settings.host)
                .inspect_err(|error| tracing::warn!("{error:#}"))
                .ok()
                .flatten();
            let pause = Pause::read(&settings.host)?;
            ignore_broken_pipe(printer.status(last_run.as_ref(), watch.as_ref(), pause.as_ref()))?;
            Ok(match last_run {
                // A refused source needs a person, as apply's exit says.
                Some(run)
                    if run.success
                        && run
                            .source
                            .as_ref()
                            .is_none_or(|source| source.refused.is_none()) =>
                {
                    exit::OK
                }
                _ => exit::FAILURE,
            })
        }
        Command::Completions { .. } | Command::Man => unreachable!("answered above"),
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

/// `berth validate`: the profiles, or with `--source` what each host named gets from the
/// checkout (literal secrets included, which `[source]` refuses); exit 1 if any is invalid.
fn validate(settings: &Settings, printer: &Printer, args: &cli::CheckoutArgs) -> Result<u8> {
    let mut code = exit::OK;
    for (member, profiles) in checkout_members(settings, args)? {
        if let Some(member) = &member {
            ignore_broken_pipe(printer.line(member))?;
        }
        // A literal secret first: the runner kind would refuse `token` with its own words.
        let secrets = || -> Result<()> {
            if args.source.is_some() {
                let (_, sources) = profile::read(&profiles, &settings.host)?;
                if let Some(error) = profile::ProfileError::of(profile::literal_secrets(&sources)) {
                    return Err(error.into());
                }
            }
            Ok(())
        };
        let checked = secrets().and_then(|()| resource::profile::load(&profiles, &settings.host));
        match checked {
            Ok(profile) => {
                ignore_broken_pipe(printer.validated(&profile.names, &profile.warnings))?;
            }
            Err(error) => {
                let names: Vec<String> = profiles.iter().map(ProfileRef::short_name).collect();
                ignore_broken_pipe(printer.invalid(&names, &error))?;
                code = exit::FAILURE;
            }
        }
    }
    Ok(code)
}

/// The profiles `validate` and `show` look at: the host's, or with `--source` each host's
/// (named `host H, group G` when there are several) from the checkout.
fn checkout_members(
    settings: &Settings,
    args: &cli::CheckoutArgs,
) -> Result<Vec<(Option<String>, Vec<ProfileRef>)>> {
    let Some(dir) = &args.source else {
        if settings.profiles.is_empty() {
            bail!(
                "[source] has no verified commit here yet: `berth apply` fetches one, or check a checkout with `--source DIR --hostname H`"
            );
        }
        return Ok(vec![(None, settings.profiles.clone())]);
    };
    let layers = settings::BerthToml::read(&settings.host)?
        .source()
        .map_or_else(source::default_layers, |source| source.layers);
    source::checkout_members(
        dir,
        &layers,
        args.hostname.as_deref(),
        args.group.as_deref(),
        args.all,
    )
}

/// `apply`: one run at a time, and a run report (and metrics) whatever happens after the lock.
/// Returns the exit code and whether anything changed; `print_converged` prints the report of
/// a run that changed nothing too.
fn apply(settings: &Settings, printer: &Printer, print_converged: bool) -> Result<(u8, bool)> {
    require_root(settings, "apply")?;
    let _lock = RunLock::acquire(&settings.host, settings.lock_timeout)?;
    if let Some(pause) = Pause::read(&settings.host)? {
        // A watch's converges would say it on every event; once per apply is enough.
        if print_converged {
            ignore_broken_pipe(printer.line(&format!(
                "berth is {}; nothing was changed (`berth resume` to converge again)",
                pause.describe()
            )))?;
        } else {
            tracing::info!("berth is {}; nothing was changed", pause.describe());
        }
        refresh_metrics(settings, settings.metrics_file.as_ref());
        return Ok((exit::OK, false));
    }
    let started = jiff::Timestamp::now();
    let clock = Instant::now();
    let outcome = converge(settings, printer, Mode::Apply, print_converged);
    // A declined question or a stale saved plan changed nothing: not a run worth reporting.
    if let Err(error) = &outcome
        && error.is::<NotApplied>()
    {
        return outcome.map(|converged| (converged.code, false));
    }
    let last_run = match &outcome {
        Ok(converged) => LastRun::from_report(
            &converged.report,
            started,
            clock.elapsed(),
            &converged.profile_names,
            converged.kinds.iter().cloned(),
            converged.fleet.clone(),
        )
        .with_source(converged.source.clone()),
        Err(error) => {
            let names: Vec<String> = settings
                .profiles
                .iter()
                .map(|profile| profile.short_name())
                .collect();
            LastRun::from_error(error, started, clock.elapsed(), &names).with_source(
                settings
                    .source
                    .as_ref()
                    .and_then(|source| source::last_known(&settings.host, source)),
            )
        }
    };
    // The last success outlives a failed run: monitoring alerts on how long ago it was.
    let previous = LastRun::read(&settings.host)
        .inspect_err(|error| tracing::warn!("{error:#}"))
        .ok()
        .flatten();
    let mut last_run = last_run.after(previous.as_ref());
    // A system ID an older berth did not record is recorded now, so a clone of this host is
    // found; only after a run that converged, when the IDs are the ones apply meant.
    if matches!(&outcome, Ok(converged) if !converged.report.failed())
        && let Err(error) = resource::runner::identity::remember_unrecorded(&settings.host)
    {
        tracing::warn!("failed to record the runners' system IDs: {error:#}");
    }
    // Identity and token lifetime as the host holds them after the run, for status and metrics.
    match resource::runner::identity::facts(&settings.host) {
        Ok(facts) => {
            last_run.runners = facts
                .into_iter()
                .map(|facts| run_report::RunnerReport {
                    runner: facts.runner,
                    system_id: facts.system_id,
                    token_expires_at: facts.token_expires_at,
                })
                .collect();
        }
        Err(error) => tracing::warn!("failed to read the runners' identities: {error:#}"),
    }
    if let Ok(converged) = &outcome {
        last_run.disks = disk_reports(&settings.host, &converged.disks);
    }
    // Monitoring must hear about every run; failing to record one is worth a loud warning but
    // does not undo what the run did.
    if let Err(error) = last_run.write(&settings.host) {
        tracing::warn!("failed to write the run report: {error:#}");
    }
    if let Some(path) = &settings.metrics_file
        && let Err(error) = run_report::write_metrics(&settings.host, Some(&last_run), path)
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

/// Each `[hygiene]` daemon's free space, as this run measured it, and what berth pruned of it
/// ever, for the run report and metrics.
fn disk_reports(host: &Host, disks: &[(String, Option<u64>)]) -> Vec<run_report::DiskReport> {
    let mut totals = resource::hygiene::pruned::totals(host)
        .inspect_err(|error| tracing::warn!("{error:#}"))
        .unwrap_or_default();
    disks
        .iter()
        .map(|(daemon, free)| run_report::DiskReport {
            daemon: daemon.clone(),
            free_bytes: *free,
            pruned_bytes: totals.remove(daemon).unwrap_or_default(),
        })
        .collect()
}

/// `berth pause REASON` (`reason` given) or `berth resume`.
fn pause_or_resume(settings: &Settings, printer: &Printer, reason: Option<&str>) -> Result<u8> {
    let line = match reason {
        Some(reason) => {
            if reason.trim().is_empty() {
                bail!("say why berth is paused: `berth pause \"kernel upgrade until Friday\"`");
            }
            let pause = Pause::now(reason);
            pause.write(&settings.host)?;
            format!(
                "berth is {}\n`berth resume` lets apply converge again",
                pause.describe()
            )
        }
        None if Pause::remove(&settings.host)? => "berth resumed: apply converges again".to_owned(),
        None => "berth was not paused".to_owned(),
    };
    // A pause shows in the metrics at once, not at the next apply.
    let metrics_file = settings::BerthToml::read(&settings.host)?.metrics_file;
    refresh_metrics(settings, metrics_file.as_ref());
    ignore_broken_pipe(printer.line(&line))?;
    Ok(exit::OK)
}

/// Rewrites the metrics file (when one is configured) from the last run's report and the pause,
/// so that `berth_paused` follows `pause` and `resume` at once.
fn refresh_metrics(settings: &Settings, metrics_file: Option<&HostPath>) {
    let Some(path) = metrics_file else {
        return;
    };
    let last_run = LastRun::read(&settings.host)
        .inspect_err(|error| tracing::warn!("{error:#}"))
        .ok()
        .flatten();
    if let Err(error) = run_report::write_metrics(&settings.host, last_run.as_ref(), path) {
        tracing::warn!("failed to write metrics to `{path}`: {error:#}");
    }
}

/// What one plan or apply found and did.
struct Converged {
    code: u8,
    report: engine::Report,
    profile_names: Vec<String>,
    /// The kinds of resource the profiles declare.
    kinds: Vec<String>,
    /// `[fleet]`: what waits for a slot and whether one is held.
    fleet: Option<FleetRun>,
    /// `[source]`: the commit converged to, and what is known of the ref.
    source: Option<source::SourceRun>,
    /// `[hygiene]`'s daemons, each with the free bytes measured.
    disks: Vec<(String, Option<u64>)>,
}

/// Why an apply changed nothing on purpose: the operator declined, or a saved plan no longer
/// matches the host. Exits 1, and is not recorded as a failed run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotApplied(String);

/// Loads the profiles, runs the engine and prints the report; `plan --out` saves the plan, and
/// apply first checks a saved plan or asks ([`review`]).
fn converge(
    settings: &Settings,
    printer: &Printer,
    mode: Mode,
    print_converged: bool,
) -> Result<Converged> {
    // `/var/lib/berth` is root's: plan as another user cannot tell, and plans all the same.
    // Read before a saved plan records what it observed: a pause is no part of the host's state.
    if mode == Mode::Plan
        && let Some(pause) = Pause::read(&settings.host)
            .inspect_err(|error| tracing::debug!("{error:#}"))
            .ok()
            .flatten()
    {
        tracing::warn!(
            "berth is {}: apply changes nothing until `berth resume`",
            pause.describe()
        );
    }
    let (profiles, source) = source_profiles(settings, mode)?;
    if settings.plan_out.is_some() || settings.saved_plan.is_some() {
        settings.host.record_reads();
    }
    let profile = resource::profile::load(&profiles, &settings.host)?;
    for warning in &profile.warnings {
        tracing::warn!("{warning}");
    }
    let gate = match &settings.fleet {
        Some(fleet) => {
            let held = match SlotHeld::read(&settings.host) {
                Ok(held) => held.is_some(),
                // `plan` as another user: berth's state is root's; plan as if none is held.
                Err(error) if mode == Mode::Plan => {
                    tracing::debug!("{error:#}");
                    false
                }
                Err(error) => return Err(error),
            };
            Some(Gate::new(fleet, &settings.host, held))
        }
        None => None,
    };
    let reviewed = match mode {
        Mode::Apply => review(settings, printer, &profile, gate.as_ref())?,
        Mode::Plan => None,
    };
    let pass = Pass {
        mode,
        reviewed: reviewed.as_deref().map(Reviewed),
        log_warnings: true,
        fleet: gate.as_ref(),
    };
    let Looked {
        report,
        identities,
        kinds,
        disks,
    } = look(settings, &profile, pass);
    if let Some(out) = &settings.plan_out {
        let observed = Observation {
            layers: profile.layer_digests.clone(),
            files: settings.host.take_reads(),
            docker: identities,
        };
        SavedPlan::new(
            profiles.clone(),
            &settings.options,
            observed,
            json::changes(&report),
        )
        .write(out)?;
        tracing::info!(
            "saved the plan to `{}`: `berth apply {}` carries out exactly these changes, while the host and the profiles stay as they are",
            out.display(),
            out.display()
        );
    }
    let refused = source.as_ref().is_some_and(|run| run.refused.is_some());
    if print_converged || report.has_changes() || report.failed() || refused {
        ignore_broken_pipe(printer.report(&report, &profile.names, source.as_ref()))?;
    }
    let (fleet, release_failed) = match &gate {
        Some(gate) => {
            let release_failed = mode == Mode::Apply && !settle_fleet(gate, &report);
            (Some(gate.run()), release_failed)
        }
        None => (None, false),
    };
    let code = match mode {
        // A refused ref needs a person, though the host converged to its last verified commit.
        _ if report.failed() || release_failed || refused => exit::FAILURE,
        Mode::Apply if report.waiting() > 0 => exit::WAITING_FOR_FLEET_SLOT,
        // apply would not make every change: that is not "changes pending", it needs a person.
        Mode::Plan if report.refused() > 0 => exit::FAILURE,
        Mode::Plan if report.has_changes() => exit::CHANGES_PENDING,
        _ => exit::OK,
    };
    Ok(Converged {
        code,
        report,
        profile_names: profile.names,
        kinds,
        fleet,
        source,
        disks,
    })
}

/// The profiles this run converges to: with `[source]`, those of the commit it takes (fetched
/// and verified, or the last verified one), and what it took.
fn source_profiles(
    settings: &Settings,
    mode: Mode,
) -> Result<(Vec<ProfileRef>, Option<source::SourceRun>)> {
    let Some(source) = &settings.source else {
        return Ok((settings.profiles.clone(), None));
    };
    let look = match mode {
        Mode::Plan => source::Look::Plan,
        Mode::Apply => source::Look::Apply {
            allow_rewind: settings.allow_rewind,
        },
    };
    let prepared = source::prepare(&settings.host, source, look)?;
    Ok((prepared.profiles, Some(prepared.run)))
}

/// After apply, with `[fleet]`: says what waits for a slot, or, once the run converged, gives
/// back the slot held (this run's, or one an earlier run left). False when the release failed.
fn settle_fleet(gate: &Gate, report: &Report) -> bool {
    let waiting = gate.waiting();
    if !waiting.is_empty() {
        let names: Vec<String> = waiting.iter().map(ToString::to_string).collect();
        tracing::warn!(
            "waiting for a fleet slot in `{}`: {}; the next `berth apply` (the timer's) carries them out",
            gate.group(),
            names.join(", ")
        );
        return true;
    }
    if report.failed() {
        return true;
    }
    gate.release()
        .inspect_err(|error| tracing::error!("{error:#}"))
        .is_ok()
}

/// What one look at the host found.
struct Looked {
    report: Report,
    /// The identities of what Docker showed (for a saved plan).
    identities: BTreeMap<String, serde_json::Value>,
    /// The kinds of resource looked at, in converge order.
    kinds: Vec<String>,
    /// `[hygiene]`'s daemons, each with the free bytes measured.
    disks: Vec<(String, Option<u64>)>,
}

/// Observes, diffs and (apply) applies every resource, on a Docker client of its own: a second
/// look at the host asks the daemon afresh, and lists what berth made afresh (the orphans).
fn look(settings: &Settings, profile: &Profile, pass: Pass) -> Looked {
    let docker = Docker::default();
    let context = Context {
        host: &settings.host,
        docker: &docker,
    };
    let mut resources = resource::from_profile(profile, &settings.options);
    // berth's own listings ride along with the prefetch: a converged run pays for them in the
    // time of the slowest query, not after it.
    match resource::prefetch::prefetch(
        &context,
        &ObjectNames::from_profile(profile),
        &profile.instance,
    ) {
        Some(Ok(listing)) => {
            let orphans = resource::orphan::find(
                &listing,
                &profile.instance,
                Some(&profile.declared()),
                resource::orphan::Handling {
                    keep: settings.options.keep_orphans,
                    purge: false,
                },
            );
            resources = resource::with_orphans(resources, orphans);
        }
        Some(Err(error)) => {
            tracing::warn!("{error:#}; what the profiles no longer declare is not shown");
        }
        None => {}
    }
    resources.extend(resource::removed_runners(profile, &settings.host));
    let report = engine::run(&resources, &context, pass);
    let mut kinds: Vec<String> = resources
        .iter()
        .map(|resource| resource.id().kind.as_str().to_owned())
        .collect();
    kinds.dedup();
    Looked {
        report,
        identities: docker.identities(),
        kinds,
        disks: resources
            .iter()
            .filter_map(AnyResource::disk_free)
            .collect(),
    }
}

/// Before apply changes anything: with a saved plan, plan again and go on only if the host and
/// the profiles are as the plan saw them; without one, on a terminal, show the plan and ask
/// when a change cannot be taken back. Returns the changes apply may make (`None`: any).
fn review(
    settings: &Settings,
    printer: &Printer,
    profile: &Profile,
    fleet: Option<&Gate>,
) -> Result<Option<Vec<Change>>> {
    let first_look = Pass {
        mode: Mode::Plan,
        reviewed: None,
        log_warnings: false,
        fleet,
    };
    let planned = |report: Report| -> Vec<Change> {
        report
            .entries
            .into_iter()
            .map(|entry| entry.change)
            .collect()
    };
    if let Some((path, saved)) = &settings.saved_plan {
        let Looked {
            report, identities, ..
        } = look(settings, profile, first_look);
        let now = Observation {
            layers: profile.layer_digests.clone(),
            files: settings.host.take_reads(),
            docker: identities,
        };
        let differences = saved.differences(&now, &json::changes(&report));
        if !differences.is_empty() {
            return Err(NotApplied(format!(
                "nothing was applied: the host or the profiles changed since `{}` was planned ({}): {}; run `berth plan --out` again and review it",
                path.display(),
                saved.created_at(),
                differences.join("; ")
            ))
            .into());
        }
        tracing::info!(
            "the host matches the plan `{}`: applying its {} changes",
            path.display(),
            report.entries.len()
        );
        return Ok(Some(planned(report)));
    }
    // Only a person at a terminal is asked, so only then is it worth planning first.
    if settings.consent == Consent::Given || !confirm::at_terminal() {
        return Ok(None);
    }
    let report = look(settings, profile, first_look).report;
    let changes = report.entries.iter().map(|entry| &entry.change);
    if !confirm::should_ask(settings.consent, true, changes) {
        return Ok(None);
    }
    ignore_broken_pipe(printer.review(&report))?;
    let cannot_undo: Vec<String> = report
        .entries
        .iter()
        .filter(|entry| entry.change.needs_consent())
        .map(|entry| format!("{} {}", entry.change.action.as_str(), entry.change.id))
        .collect();
    let question = format!(
        "Apply these changes? These cannot be taken back: {}.",
        cannot_undo.join(", ")
    );
    if !confirm::confirm(Consent::Ask, &question, "rerun with --yes")? {
        return Err(NotApplied("apply cancelled: nothing was changed".to_owned()).into());
    }
    Ok(Some(planned(report)))
}
