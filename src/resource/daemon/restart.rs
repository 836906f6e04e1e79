//! The one multi-step change of the Docker service: run the profile's restart (or reload)
//! command, then wait until `docker info` shows what daemon.json holds, within one bound (the
//! profile's `ready_timeout`). A restart of a daemon without live-restore drains the runner's
//! container first and starts it after (`runner_drain`). When daemon.json was replaced in this
//! run, the step is journaled first (the drain with it), so a run killed in the middle is
//! finished or undone by the next one.
//!
//! Two failures are told apart, because they call for different things:
//! - dockerd refused the file (it exited, or it answers with the old settings after the command
//!   succeeded): the refused file is kept as `daemon.json.berth-rejected` (and not tried again
//!   while it is there), the previous file is put back and Docker restarted;
//! - the command itself failed (no systemd, a timeout) while dockerd kept running: the previous
//!   file is put back (a host that had none gets none back), nothing is marked rejected, and
//!   the next run tries again.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::{
    config::{backup_path, rejected_path},
    runner_drain::RunnerDrain,
    service::{DaemonCommand, DaemonOp, DaemonService, describe, mismatches},
};
use crate::{
    docker::DaemonStatus,
    host::exec::{self, CommandError, CommandLine},
    output::progress::{self, Ticker},
    plan::Change,
    resource::{Context, DaemonJsonChange, Resource, journal},
    secret::Fingerprint,
};

/// How often to ask the daemon while waiting for it.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What the journal keeps while the daemon restarts into a daemon.json written in this run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct RestartIntent {
    /// A daemon.json existed before, kept as `daemon.json.berth.bak`.
    pub(super) had_file: bool,
    /// A fingerprint of the daemon.json berth wrote, to tell it from one edited since.
    written: Fingerprint,
    /// The runner's container, drained before the restart: until it runs again, the restart
    /// is not over, whatever `docker info` says (it does not show every key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drained: Option<RunnerDrain>,
}

impl RestartIntent {
    /// True when `text` (daemon.json now) is the file this step wrote.
    pub(super) fn wrote(&self, text: Option<&str>) -> bool {
        text.map(Fingerprint::of) == Some(self.written.clone())
    }
}

/// Why the command and the wait did not end with the daemon on the file.
enum RestartFailure {
    /// dockerd would not run on the file.
    Refused(anyhow::Error),
    /// The command could not restart dockerd at all; dockerd runs as before.
    Command(anyhow::Error),
}

impl DaemonService {
    /// Runs `command` and waits for the daemon to show `expected`; rolls daemon.json back when
    /// `config_change` replaced it and the daemon does not take it. `drain`'s container is
    /// drained before and started after.
    pub(super) fn run(
        &self,
        context: &Context,
        command: DaemonCommand,
        expected: &Map<String, Json>,
        config_change: Option<&DaemonJsonChange>,
        drain: Option<&RunnerDrain>,
    ) -> Result<()> {
        let Some(change) = config_change else {
            // Not journaled: a run killed after the drain finds the daemon still not on the
            // file and restarts it, and the runner's container resource starts it again.
            if let Some(drain) = drain {
                drain.drain(context, &Self::id())?;
            }
            let outcome = self
                .run_and_wait(context, self.command_line(command), expected)
                .map_err(|(RestartFailure::Refused(error) | RestartFailure::Command(error))| error);
            if let Some(drain) = drain {
                drain.start_again(context, &Self::id());
            }
            return outcome;
        };
        let id = Self::id();
        let written = context
            .host
            .read_optional(&self.config)?
            .map(|text| Fingerprint::of(&text))
            .context("daemon.json is gone")?;
        journal::record(
            context.host,
            &id,
            &RestartIntent {
                had_file: change.had_file,
                written,
                drained: drain.cloned(),
            },
        )?;
        if let Some(drain) = drain {
            // The journal entry stays: the next run finishes the restart (draining again
            // whatever runs by then) and starts the runner again.
            drain.drain(context, &Self::id())?;
        }
        let outcome = match self.run_and_wait(context, self.command_line(command), expected) {
            Ok(()) => Ok(()),
            Err(RestartFailure::Command(error)) => self.put_back(context, change).and(Err(error.context(
                if change.had_file {
                    "the restart command failed, so dockerd never read the new daemon.json; the previous file is back, and the next run tries again"
                } else {
                    "the restart command failed, so dockerd never read the new daemon.json; it is removed again (there was none before), and the next run tries again"
                },
            ))),
            Err(RestartFailure::Refused(error)) => self.roll_back(context, command, change, error),
        };
        // The step is over, whichever way it went: what is left is plain drift.
        if let Some(drain) = drain {
            drain.start_again(context, &Self::id());
        }
        journal::clear(context.host, &id)?;
        outcome
    }

    fn command_line(&self, command: DaemonCommand) -> &CommandLine {
        match command {
            DaemonCommand::Start | DaemonCommand::Restart => &self.restart,
            DaemonCommand::Reload => &self.reload,
        }
    }

    /// The command, then the wait, within `ready_timeout` in all.
    fn run_and_wait(
        &self,
        context: &Context,
        command: &CommandLine,
        expected: &Map<String, Json>,
    ) -> Result<(), RestartFailure> {
        let started = Instant::now();
        if let Err(error) = exec::run_reporting(command, self.ready_timeout, |elapsed| {
            self.say_waiting(elapsed);
        }) {
            // `systemctl restart` exits non-zero when dockerd refuses to start: then dockerd is
            // down. A command that fails with dockerd still up never restarted it.
            let down = !matches!(context.docker.query_status(), DaemonStatus::Running(_));
            let refused = matches!(error, CommandError::Failed { .. }) && down;
            let error = anyhow::Error::new(error);
            return Err(if refused {
                RestartFailure::Refused(error)
            } else {
                RestartFailure::Command(error)
            });
        }
        self.wait_until_ready(context, expected, started)
            .map_err(RestartFailure::Refused)
    }

    /// A restart can take a minute: say so every interval (one log line, a journal line under
    /// the timer).
    /// What an interrupted restart left ([`Resource::leftover`]): the journal's intent, read
    /// beside the code that records and clears it.
    pub(super) fn interrupted_restart(
        &self,
        context: &Context,
    ) -> Result<Option<(Change, DaemonOp)>> {
        let Some(intent) = journal::read::<RestartIntent>(context.host, &Self::id())? else {
            return Ok(None);
        };
        let observed = self.observe(context)?;
        let expected = self.expected(&observed, None);
        let text = context.host.read_optional(&self.config)?;
        // The container drained for the restart, still stopped: the restart may not have
        // happened, and the runner waits for it.
        let drained_and_stopped = intent.drained.as_ref().filter(|drained| {
            observed
                .runner
                .as_ref()
                .is_some_and(|live| live.id == drained.id && !live.state.running)
        });
        let (detail, op) = match &observed.status {
            _ if !intent.wrote(text.as_deref()) => (
                "an interrupted restart left daemon.json, which has changed since; it converges as it is",
                DaemonOp::Forget,
            ),
            DaemonStatus::Running(info)
                if mismatches(info, &expected).is_empty() && drained_and_stopped.is_none() =>
            {
                (
                    "an interrupted restart had finished: the daemon runs on daemon.json",
                    DaemonOp::Forget,
                )
            }
            status => {
                let live_restore =
                    matches!(status, DaemonStatus::Running(info) if info.live_restore_enabled);
                let drain = RunnerDrain::before_restart(
                    self.runner_container.as_ref(),
                    observed.runner.as_ref(),
                    live_restore,
                )
                .or_else(|| {
                    drained_and_stopped.map(|drained| RunnerDrain {
                        running: false,
                        ..drained.clone()
                    })
                });
                (
                    "an interrupted run left Docker restarting into a daemon.json it had not confirmed: restart it, and put the previous file back if dockerd refuses it",
                    DaemonOp::Recover {
                        expected,
                        had_file: intent.had_file,
                        drain,
                    },
                )
            }
        };
        Ok(Some((Self::change(&op, detail), op)))
    }

    fn say_waiting(&self, elapsed: Duration) {
        tracing::info!(
            "{}: {}",
            Self::id(),
            progress::waiting("dockerd", elapsed, self.ready_timeout)
        );
    }

    /// Waits until the daemon answers and reports `expected`, within `ready_timeout` of
    /// `started` (when the restart command began).
    fn wait_until_ready(
        &self,
        context: &Context,
        expected: &Map<String, Json>,
        started: Instant,
    ) -> Result<()> {
        let deadline = started + self.ready_timeout;
        let mut ticker = Ticker::resumed(started);
        loop {
            let problem = match context.docker.query_status() {
                DaemonStatus::Running(info) => {
                    let mismatches = mismatches(&info, expected);
                    if mismatches.is_empty() {
                        return Ok(());
                    }
                    format!(
                        "it answers but has not loaded daemon.json: {}",
                        describe(&mismatches)
                    )
                }
                DaemonStatus::Unreachable(reason)
                | DaemonStatus::NotAnswering(reason)
                | DaemonStatus::PermissionDenied(reason) => reason,
            };
            if Instant::now() >= deadline {
                bail!(
                    "the Docker daemon was not ready within {} s: {problem}",
                    self.ready_timeout.as_secs()
                );
            }
            if let Some(elapsed) = ticker.due() {
                self.say_waiting(elapsed);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// dockerd refused the new file: keep it for the operator, put the previous one back and
    /// bring Docker up on it.
    fn roll_back(
        &self,
        context: &Context,
        command: DaemonCommand,
        change: &DaemonJsonChange,
        error: anyhow::Error,
    ) -> Result<()> {
        let error = match last_words(context) {
            Some(words) => error.context(format!("dockerd's last log lines: {words}")),
            None => error,
        };
        let rejected = rejected_path(&self.config);
        context
            .host
            .copy_atomic(&self.config, &rejected)
            .and_then(|()| self.put_back(context, change))
            .context(
                "dockerd did not take the new daemon.json, and restoring the previous one failed",
            )?;
        if command == DaemonCommand::Reload {
            // A refused reload leaves the daemon running on its old settings.
            return Err(error.context(format!(
                "dockerd did not take the new daemon.json on reload; the previous file is restored (the refused one is kept at `{rejected}`)"
            )));
        }
        let started = Instant::now();
        let restarted = exec::run_reporting(&self.restart, self.ready_timeout, |elapsed| {
            self.say_waiting(elapsed);
        })
        .map_err(anyhow::Error::new)
        .and_then(|_| self.wait_until_ready(context, &Map::new(), started));
        match restarted {
            Ok(()) => Err(error.context(format!(
                "dockerd did not come back with the new daemon.json; the previous file is restored (the refused one is kept at `{rejected}`) and Docker is running again"
            ))),
            Err(second) => Err(anyhow!(
                "dockerd did not come back with the new daemon.json ({error:#}), nor after the previous file was restored ({second:#}): Docker is down; the refused file is kept at `{rejected}`"
            )),
        }
    }

    /// daemon.json as it was before this step: the backup, or no file when there was none.
    fn put_back(&self, context: &Context, change: &DaemonJsonChange) -> Result<()> {
        if change.had_file {
            context
                .host
                .copy_atomic(&backup_path(&self.config), &self.config)
        } else {
            context.host.remove_file(&self.config)
        }
    }
}

/// What dockerd said last, from the journal, on a machine that has one: `systemctl restart`
/// only says that the unit failed.
fn last_words(context: &Context) -> Option<String> {
    if !context.host.is_machine_root() {
        return None;
    }
    let output = exec::run_with_timeout(
        &CommandLine::new(
            "journalctl",
            [
                "--unit",
                "docker",
                "--lines",
                "5",
                "--no-pager",
                "--output",
                "cat",
            ],
        ),
        Duration::from_secs(10),
    )
    .ok()?;
    let words: Vec<&str> = output
        .stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    (!words.is_empty()).then(|| words.join(" / "))
}
