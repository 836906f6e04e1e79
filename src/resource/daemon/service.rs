//! `daemon/docker`: the Docker service, made to run the daemon.json on disk.
//!
//! After `daemon-config` changed, the daemon is reloaded (SIGHUP) when every changed key is one
//! dockerd re-reads on reload, and restarted otherwise. A daemon that answers but reports
//! settings other than the file's (a restart that never happened) is reloaded or restarted too;
//! one that does not answer is started. After a restart or reload berth waits, bounded, until
//! `docker info` shows the file's settings. When dockerd does not come back, the previous
//! daemon.json is restored, the refused one set aside, and the daemon restarted again: berth
//! never leaves Docker down on a configuration it rejected.

use std::time::Duration;

use anyhow::Result;
use serde_json::{Map, Value as Json};

use crate::{
    docker::unit,
    docker::{DaemonInfo, DaemonStatus, normalize_mirror, wire::ContainerInfo},
    host::HostPath,
    host::exec::CommandLine,
    plan::{Action, Change, Diff, Kind, ResourceId},
    resource::{
        Context, DaemonJsonChange, Earlier, Resource,
        daemon::DockerSettings,
        daemon::config::{DaemonConfig, StorageFacts},
        daemon::keys::{self, DockerdVersion},
        daemon::runner_drain::RunnerDrain,
        docker_object::ObjectName,
        journal,
        package::DockerPackage,
    },
};

pub(crate) struct DaemonService {
    pub(super) config: HostPath,
    pub(super) restart: CommandLine,
    pub(super) reload: CommandLine,
    /// The whole bound of a restart or reload: the command, then the daemon answering.
    pub(super) ready_timeout: Duration,
    restart_unresponsive: bool,
    keys: Map<String, Json>,
    allow_storage_driver_change: bool,
    /// The profile declares networks, volumes or containers, which wait for this daemon.
    runs_docker_objects: bool,
    /// The container that runs gitlab-runner (`Relations::runner_container`): drained before a
    /// restart that would stop it.
    pub(super) runner_container: Option<ObjectName>,
}

#[derive(Debug, Clone)]
pub(crate) struct DaemonState {
    /// A docker.service unit or a dockerd binary exists under the root.
    pub installed: bool,
    pub status: DaemonStatus,
    /// daemon.json as it is now; `None` when absent or unreadable (daemon-config reports that).
    pub file: Option<Map<String, Json>>,
    /// The container that runs gitlab-runner, as the running daemon has it.
    pub runner: Option<ContainerInfo>,
}

/// A setting the running daemon reports differently from daemon.json.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Mismatch {
    key: String,
    running: Json,
    file: Json,
}

impl DaemonService {
    pub(crate) fn new(
        settings: &DockerSettings,
        allow_storage_driver_change: bool,
        runs_docker_objects: bool,
        runner_container: Option<ObjectName>,
    ) -> Self {
        Self {
            config: settings.config.clone(),
            restart: settings.restart.clone(),
            reload: settings.reload.clone(),
            ready_timeout: settings.ready_timeout,
            restart_unresponsive: settings.restart_unresponsive,
            keys: settings.daemon.clone(),
            allow_storage_driver_change,
            runs_docker_objects,
            runner_container,
        }
    }

    pub(crate) fn id() -> ResourceId {
        ResourceId::new(Kind::Daemon, "docker")
    }

    /// The profile's keys as daemon.json will hold them once this run's config change is made.
    pub(super) fn expected(
        &self,
        observed: &DaemonState,
        config_change: Option<&DaemonJsonChange>,
    ) -> Map<String, Json> {
        let mut file = observed.file.clone().unwrap_or_default();
        for (key, after) in config_change.iter().flat_map(|change| &change.keys) {
            file.insert(key.clone(), after.clone());
        }
        file.into_iter()
            .filter(|(key, _)| self.keys.contains_key(key))
            .collect()
    }

    /// A reload when the running dockerd re-reads every changed key on SIGHUP (the key table
    /// in [`keys`], per dockerd version), a restart otherwise.
    fn restart_or_reload<'a>(
        info: &DaemonInfo,
        mut keys: impl Iterator<Item = &'a str>,
    ) -> DaemonCommand {
        let version = DockerdVersion::parse(&info.server_version);
        if keys.all(|key| keys::reloadable_in(key, version)) {
            DaemonCommand::Reload
        } else {
            DaemonCommand::Restart
        }
    }

    /// The change that shows `op` in the plan: its action is the op's ([`DaemonOp::action`]),
    /// so a restart, which needs consent, is shown as one exactly when apply restarts; and a
    /// drain is said exactly when the op drains.
    pub(super) fn change(op: &DaemonOp, detail: impl Into<String>) -> Change {
        let detail = detail.into();
        let detail = match op.drain() {
            Some(drain) => format!("{detail} ({})", drain.describe()),
            None => detail,
        };
        Change::new(Self::id(), op.action(), detail)
    }
}

/// Which of the profile's commands apply runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DaemonCommand {
    /// `[docker] restart`, to start a daemon that does not answer.
    Start,
    Restart,
    Reload,
}

/// What apply does to the daemon.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DaemonOp {
    /// Run one command, then wait until `docker info` shows what daemon.json holds; if dockerd
    /// refuses a daemon.json changed in this run, put the previous one back (see `restart`).
    Run {
        command: DaemonCommand,
        expected: Map<String, Json>,
        config_change: Option<DaemonJsonChange>,
        /// A restart that stops the runner's container (live-restore off) drains it first and
        /// starts it after (see `runner_drain`).
        drain: Option<RunnerDrain>,
    },
    /// An interrupted restart: run it again, and undo it (the previous daemon.json back) when
    /// dockerd refuses the file. Either way ends with Docker up; only Docker down is a failure.
    Recover {
        expected: Map<String, Json>,
        had_file: bool,
        /// The runner's container, drained first when it runs again, and started after.
        drain: Option<RunnerDrain>,
    },
    /// An interrupted restart had finished after all: clear its journal entry.
    Forget,
}

impl DaemonOp {
    /// The action the plan shows for this op.
    fn action(&self) -> Action {
        match self {
            Self::Run { command, .. } => match command {
                DaemonCommand::Start => Action::Start,
                DaemonCommand::Restart => Action::Restart,
                DaemonCommand::Reload => Action::Reload,
            },
            Self::Recover { .. } | Self::Forget => Action::Recover,
        }
    }

    /// The runner's container this op drains (or starts again) around its restart.
    fn drain(&self) -> Option<&RunnerDrain> {
        match self {
            Self::Run { drain, .. } | Self::Recover { drain, .. } => drain.as_ref(),
            Self::Forget => None,
        }
    }
}

impl Resource for DaemonService {
    type Observed = DaemonState;
    type Op = DaemonOp;

    fn id(&self) -> ResourceId {
        Self::id()
    }

    fn depends_on(&self) -> Vec<ResourceId> {
        vec![DockerPackage::id(), DaemonConfig::id()]
    }

    fn observe(&self, context: &Context) -> Result<DaemonState> {
        let installed = unit::installation(context.host, context.docker).is_some();
        let file = context
            .host
            .read_optional(&self.config)?
            .and_then(|text| serde_json::from_str::<Json>(&text).ok())
            .and_then(|json| match json {
                Json::Object(object) => Some(object),
                _ => None,
            });
        let status = if installed {
            context.docker.status()
        } else {
            DaemonStatus::Unreachable("not installed".into())
        };
        // Asked only of a daemon that answers: the prefetched batch of the profile's
        // containers holds it.
        let runner = match (&self.runner_container, &status) {
            (Some(name), DaemonStatus::Running(_)) => context
                .docker
                .inspect_all::<ContainerInfo>(&[name.as_str().to_owned()])?
                .get(name.as_str())
                .cloned(),
            _ => None,
        };
        Ok(DaemonState {
            installed,
            status,
            file,
            runner,
        })
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one decision ladder over the daemon's states"
    )]
    fn diff(&self, observed: &DaemonState, earlier: &Earlier) -> Diff<DaemonOp> {
        let mut diff = Diff::none();
        let config_change = earlier.daemon_json().cloned();
        let expected = self.expected(observed, config_change.as_ref());
        let op = |command| DaemonOp::Run {
            command,
            expected: expected.clone(),
            config_change: config_change.clone(),
            drain: None,
        };
        if !observed.installed {
            if earlier.installs_docker() {
                let start = op(DaemonCommand::Start);
                diff.push(Self::change(&start, "after Docker is installed"), start);
            } else {
                diff.warn("Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is");
            }
            return diff;
        }
        if self.runs_docker_objects
            && !matches!(
                observed.status,
                DaemonStatus::Running(_) | DaemonStatus::PermissionDenied(_)
            )
        {
            // Said here once for all of them: each network, volume and container is planned
            // as `+ create (after Docker starts)`, without a warning of its own.
            diff.warn("Docker does not answer: its networks, volumes and containers are compared once it runs");
        }
        let info = match &observed.status {
            DaemonStatus::Running(info) => info,
            DaemonStatus::PermissionDenied(reason) => {
                diff.warn(format!(
                    "cannot ask the Docker daemon ({reason}): neither daemon changes nor networks, volumes and containers are compared; run as root or in the docker group to see them"
                ));
                return diff;
            }
            DaemonStatus::Unreachable(reason) => {
                let start = op(DaemonCommand::Start);
                diff.push(
                    Self::change(&start, format!("the daemon does not answer: {reason}")),
                    start,
                );
                return diff;
            }
            DaemonStatus::NotAnswering(reason) => {
                // A hung dockerd still runs its containers: this is a restart, never a start.
                let restart = op(DaemonCommand::Restart);
                let change = Self::change(
                    &restart,
                    format!("the daemon takes connections but does not answer: {reason}"),
                );
                if self.restart_unresponsive {
                    diff.push(
                        change.with_warning("the restart stops every running container"),
                        restart,
                    );
                } else {
                    diff.refuse(change, "a hung daemon is restarted only when the profile sets `[docker] restart_unresponsive = true`, since that stops every running container; see `journalctl -u docker` for why it hangs");
                }
                return diff;
            }
        };
        let (detail, command, refusal) = if let Some(config_change) = &config_change {
            let keys: Vec<&str> = config_change
                .keys
                .iter()
                .map(|(key, _)| key.as_str())
                .collect();
            let detail = format!("{} changed", keys.join(", "));
            let command = Self::restart_or_reload(info, keys.into_iter());
            (detail, command, None)
        } else {
            let mismatches = mismatches(info, &expected);
            if mismatches.is_empty() {
                return diff;
            }
            let command = Self::restart_or_reload(
                info,
                mismatches.iter().map(|mismatch| mismatch.key.as_str()),
            );
            let detail = format!(
                "the running daemon has not loaded daemon.json: {}",
                describe(&mismatches)
            );
            let wanted_driver = mismatches
                .iter()
                .find(|mismatch| mismatch.key == "storage-driver")
                .and_then(|mismatch| mismatch.file.as_str());
            if let Some(wanted) = wanted_driver {
                let storage = StorageFacts {
                    driver: Some(info.driver.clone()),
                    containerd_store: info.uses_containerd_store(),
                    images: info.images,
                    containers: info.containers,
                };
                let refusal = storage
                    .switch_refusal(wanted)
                    .filter(|_| !self.allow_storage_driver_change);
                (detail, command, refusal)
            } else {
                (detail, command, None)
            }
        };
        let run = DaemonOp::Run {
            command,
            expected,
            config_change,
            drain: (command == DaemonCommand::Restart)
                .then(|| {
                    RunnerDrain::before_restart(
                        self.runner_container.as_ref(),
                        observed.runner.as_ref(),
                        info.live_restore_enabled,
                    )
                })
                .flatten(),
        };
        let change = Self::change(&run, detail);
        let change = if command == DaemonCommand::Restart
            && !info.live_restore_enabled
            && info.containers_running > 0
        {
            let count = info.containers_running;
            change.with_warning(format!(
                "the restart stops {count} running container{} (live-restore is off); those with a restart policy start again",
                if count == 1 { "" } else { "s" }
            ))
        } else {
            change
        };
        match refusal {
            Some(reason) => diff.refuse(change, reason),
            None => diff.push(change, run),
        }
        diff
    }

    fn action(&self, op: &DaemonOp) -> Action {
        op.action()
    }

    /// A restart stops every container without live-restore; a reload stops none, and a
    /// start has nothing running to stop.
    fn disrupts(&self, op: &DaemonOp) -> bool {
        match op {
            DaemonOp::Run { command, .. } => *command == DaemonCommand::Restart,
            // Finishing an interrupted restart is a restart.
            DaemonOp::Recover { .. } => true,
            DaemonOp::Forget => false,
        }
    }

    fn apply(&self, context: &Context, op: &DaemonOp) -> Result<()> {
        match op {
            DaemonOp::Run {
                command,
                expected,
                config_change,
                drain,
            } => self.run(
                context,
                *command,
                expected,
                config_change.as_ref(),
                drain.as_ref(),
            ),
            DaemonOp::Recover {
                expected,
                had_file,
                drain,
            } => {
                let change = DaemonJsonChange {
                    keys: Vec::new(),
                    had_file: *had_file,
                };
                match self.run(
                    context,
                    DaemonCommand::Restart,
                    expected,
                    Some(&change),
                    drain.as_ref(),
                ) {
                    Ok(()) => {
                        tracing::info!("{}: the interrupted restart is finished", Self::id());
                        Ok(())
                    }
                    Err(error)
                        if matches!(context.docker.query_status(), DaemonStatus::Running(_)) =>
                    {
                        tracing::warn!(
                            "{}: the interrupted restart is undone: {error:#}",
                            Self::id()
                        );
                        Ok(())
                    }
                    Err(error) => Err(error),
                }
            }
            DaemonOp::Forget => journal::clear(context.host, &Self::id()),
        }
    }

    fn leftover(&self, context: &Context) -> Result<Option<(Change, DaemonOp)>> {
        self.interrupted_restart(context)
    }
}

/// The profile keys whose running value `docker info` shows and that differ from the file.
pub(super) fn mismatches(info: &DaemonInfo, expected: &Map<String, Json>) -> Vec<Mismatch> {
    let mut found = Vec::new();
    for (key, file) in expected {
        let (running, file) = match key.as_str() {
            "storage-driver" => {
                if file
                    .as_str()
                    .is_some_and(|wanted| info.storage_driver_is(wanted))
                {
                    continue;
                }
                (Json::from(info.driver.clone()), file.clone())
            }
            "registry-mirrors" => {
                let wanted: Vec<String> = strings(file).map(normalize_mirror).collect();
                (Json::from(info.mirrors()), Json::from(wanted))
            }
            "labels" => {
                // dockerd may list labels in another order; the set is what counts.
                let mut running = info.labels.clone().unwrap_or_default();
                let mut wanted: Vec<String> = strings(file).map(str::to_owned).collect();
                running.sort();
                wanted.sort();
                (Json::from(running), Json::from(wanted))
            }
            "debug" => (Json::from(info.debug), file.clone()),
            "live-restore" => (Json::from(info.live_restore_enabled), file.clone()),
            "log-driver" => (Json::from(info.logging_driver.clone()), file.clone()),
            _ => continue,
        };
        if running != file {
            found.push(Mismatch {
                key: key.clone(),
                running,
                file,
            });
        }
    }
    found
}

fn strings(value: &Json) -> impl Iterator<Item = &str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
}

pub(super) fn describe(mismatches: &[Mismatch]) -> String {
    mismatches
        .iter()
        .map(|mismatch| {
            format!(
                "{} is {} (daemon.json: {})",
                mismatch.key, mismatch.running, mismatch.file
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
