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
    docker::{DaemonInfo, DaemonStatus, normalize_mirror},
    host::HostPath,
    host::exec::CommandLine,
    plan::{Action, Change, Diff, Kind, ResourceId},
    resource::{
        Context, DaemonJsonChange, Earlier, Resource,
        daemon::DockerSettings,
        daemon::config::{DaemonConfig, StorageFacts},
        daemon::keys::{self, DockerdVersion},
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
}

#[derive(Debug, Clone)]
pub(crate) struct DaemonState {
    /// A docker.service unit or a dockerd binary exists under the root.
    pub installed: bool,
    pub status: DaemonStatus,
    /// daemon.json as it is now; `None` when absent or unreadable (daemon-config reports that).
    pub file: Option<Map<String, Json>>,
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
    /// so a restart, which needs consent, is shown as one exactly when apply restarts.
    pub(super) fn change(op: &DaemonOp, detail: impl Into<String>) -> Change {
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
    },
    /// An interrupted restart: run it again, and undo it (the previous daemon.json back) when
    /// dockerd refuses the file. Either way ends with Docker up; only Docker down is a failure.
    Recover {
        expected: Map<String, Json>,
        had_file: bool,
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
        Ok(DaemonState {
            installed,
            status: if installed {
                context.docker.status()
            } else {
                DaemonStatus::Unreachable("not installed".into())
            },
            file,
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
            DaemonStatus::CliMissing => {
                diff.refuse(
                    Self::change(
                        &op(DaemonCommand::Start),
                        "dockerd is installed but the `docker` CLI is not",
                    ),
                    "berth drives the daemon through the `docker` CLI; install it",
                );
                return diff;
            }
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
        let run = op(command);
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
            } => self.run(context, *command, expected, config_change.as_ref()),
            DaemonOp::Recover { expected, had_file } => {
                let change = DaemonJsonChange {
                    keys: Vec::new(),
                    had_file: *had_file,
                };
                match self.run(context, DaemonCommand::Restart, expected, Some(&change)) {
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
mod tests {
    use super::*;
    use crate::{host::host_path, plan::FieldChange, resource::Made};
    use serde_json::json;

    fn daemon(keys: Json) -> DaemonService {
        DaemonService {
            config: host_path("/etc/docker/daemon.json"),
            restart: CommandLine::new("systemctl", ["restart", "docker"]),
            reload: CommandLine::new("systemctl", ["reload", "docker"]),
            ready_timeout: Duration::from_secs(1),
            restart_unresponsive: false,
            keys: keys.as_object().unwrap().clone(),
            allow_storage_driver_change: false,
            runs_docker_objects: false,
        }
    }

    fn running(info: DaemonInfo, file: Json) -> DaemonState {
        DaemonState {
            installed: true,
            status: DaemonStatus::Running(Box::new(info)),
            file: file.as_object().cloned(),
        }
    }

    fn overlay2() -> DaemonInfo {
        DaemonInfo {
            server_version: "20.10".into(),
            driver: "overlay2".into(),
            ..DaemonInfo::default()
        }
    }

    /// daemon.json's keys written earlier in the run: the change as printed, and what its op
    /// made.
    fn config_change(fields: &[(&str, Json)]) -> (Change, Made) {
        let change = Change::new(
            ResourceId::singleton(Kind::DaemonConfig),
            Action::Update,
            "",
        )
        .with_fields(
            fields
                .iter()
                .map(|(key, value)| FieldChange::new(*key, None, Some(value.clone())))
                .collect(),
        );
        let made = Made::DaemonJson(DaemonJsonChange {
            keys: fields
                .iter()
                .map(|(key, value)| ((*key).to_owned(), value.clone()))
                .collect(),
            had_file: true,
        });
        (change, made)
    }

    fn actions(diff: Diff<DaemonOp>) -> Vec<(Action, String)> {
        diff.changes
            .into_iter()
            .map(|(change, _)| change)
            .map(|change| (change.action, change.detail))
            .collect()
    }

    #[test]
    fn reloadable_keys_reload_and_others_restart() {
        let resource = daemon(
            json!({"registry-mirrors": ["https://m.example"], "storage-driver": "overlay2"}),
        );
        let observed = running(overlay2(), json!({}));
        let mirrors = config_change(&[("registry-mirrors", json!(["https://m.example"]))]);
        assert_eq!(
            actions(resource.diff(&observed, &Earlier::from_changes(vec![mirrors]))),
            [(Action::Reload, "registry-mirrors changed".into())]
        );
        let both = config_change(&[("registry-mirrors", json!([])), ("mtu", json!(1400))]);
        assert_eq!(
            actions(resource.diff(&observed, &Earlier::from_changes(vec![both]))),
            [(Action::Restart, "registry-mirrors, mtu changed".into())]
        );
    }

    /// Issue 19: reload or restart follows the keys `daemon-config`'s op writes, handed on as a
    /// typed fact, never the paths its printed change shows: a change printed another way (its
    /// path quoted, a restart-only key named in the detail) decides nothing.
    #[test]
    fn reload_or_restart_follows_the_written_keys_not_the_printed_change() {
        let resource = daemon(json!({"registry-mirrors": ["https://m.example"]}));
        let config = DaemonConfig::new(
            &DockerSettings {
                install: None,
                config: host_path("/etc/docker/daemon.json"),
                restart: resource.restart.clone(),
                reload: resource.reload.clone(),
                ready_timeout: resource.ready_timeout,
                restart_unresponsive: false,
                daemon: resource.keys.clone(),
            },
            false,
            Vec::new(),
        );
        let written = config.diff(&config_state(), &Earlier::default());
        let (mut change, op) = written.changes.into_iter().next().unwrap();
        change.fields[0].path = "mtu".into();
        change.detail = "mtu, storage-driver changed".into();
        let mut earlier = Earlier::default();
        earlier.push(&change, config.made(&op.unwrap()));
        assert_eq!(
            actions(resource.diff(&running(overlay2(), json!({})), &earlier)),
            [(Action::Reload, "registry-mirrors changed".into())]
        );
    }

    fn config_state() -> crate::resource::daemon::config::DaemonJsonState {
        crate::resource::daemon::config::DaemonJsonState {
            current: None,
            storage: None,
            service: None,
            rejected: None,
            dockerd: None,
            running_logs: Vec::new(),
        }
    }

    fn planned_action(resource: &DaemonService, info: DaemonInfo, key: &str) -> Action {
        let change = config_change(&[(key, json!(true))]);
        let diff = resource.diff(
            &running(info, json!({})),
            &Earlier::from_changes(vec![change]),
        );
        diff.changes[0].0.action
    }

    /// Issue 12, item 1: dockerd reads `features` (the containerd image store) only at start.
    #[test]
    fn a_features_change_restarts_with_the_live_restore_warning() {
        let resource = daemon(json!({"features": {"containerd-snapshotter": true}}));
        let mut info = overlay2();
        info.containers_running = 1;
        let change = config_change(&[("features", json!({"containerd-snapshotter": true}))]);
        let diff = resource.diff(
            &running(info, json!({})),
            &Earlier::from_changes(vec![change]),
        );
        let (change, op) = &diff.changes[0];
        assert_eq!(change.action, Action::Restart);
        assert!(matches!(
            op,
            Some(DaemonOp::Run {
                command: DaemonCommand::Restart,
                ..
            })
        ));
        assert_eq!(
            change.warnings,
            [
                "the restart stops 1 running container (live-restore is off); those with a restart policy start again"
            ]
        );
    }

    /// Issue 12, item 2: what the running dockerd reloads follows its version.
    #[test]
    fn reloadable_keys_follow_the_running_dockerd_version() {
        let resource = daemon(json!({}));
        let version = |server_version: &str| DaemonInfo {
            server_version: server_version.into(),
            ..overlay2()
        };
        for key in [
            "default-shm-size",
            "default-ipc-mode",
            "default-cgroupns-mode",
            "network-diagnostic-port",
        ] {
            assert_eq!(
                planned_action(&resource, version("20.10.24+dfsg1"), key),
                Action::Reload,
                "{key}"
            );
        }
        assert_eq!(
            planned_action(&resource, version("29.7.1"), "default-stop-timeout"),
            Action::Reload
        );
        assert_eq!(
            planned_action(&resource, version("29.2.0"), "nri-opts"),
            Action::Reload
        );
        assert_eq!(
            planned_action(&resource, version("29.1.5"), "nri-opts"),
            Action::Restart,
            "29.1 has no reloadNRI"
        );
        assert_eq!(
            planned_action(&resource, version("20.10.24"), "cluster-store"),
            Action::Reload
        );
        assert_eq!(
            planned_action(&resource, version("20.10.24"), "mtu"),
            Action::Restart
        );
    }

    #[test]
    fn a_daemon_already_running_the_file_needs_nothing() {
        let resource = daemon(
            json!({"registry-mirrors": ["https://m.example"], "storage-driver": "overlay2"}),
        );
        let mut info = overlay2();
        info.registry_config = Some(crate::docker::RegistryConfig {
            mirrors: Some(vec!["https://m.example/".into()]),
        });
        let observed = running(
            info,
            json!({"registry-mirrors": ["https://m.example"], "storage-driver": "overlay2"}),
        );
        assert_eq!(resource.diff(&observed, &Earlier::default()), Diff::none());
    }

    #[test]
    fn a_daemon_that_never_loaded_the_file_is_reloaded() {
        let resource = daemon(json!({"registry-mirrors": ["https://m.example"]}));
        let observed = running(
            overlay2(),
            json!({"registry-mirrors": ["https://m.example"]}),
        );
        let planned = actions(resource.diff(&observed, &Earlier::default()));
        assert_eq!(planned[0].0, Action::Reload);
        assert!(
            planned[0]
                .1
                .contains("registry-mirrors is [] (daemon.json: [\"https://m.example/\"])"),
            "{}",
            planned[0].1
        );
    }

    #[test]
    fn a_stopped_daemon_is_started_and_a_missing_docker_is_only_mentioned() {
        let resource = daemon(json!({}));
        let stopped = DaemonState {
            installed: true,
            status: DaemonStatus::Unreachable("Cannot connect".into()),
            file: None,
        };
        assert_eq!(
            resource.diff(&stopped, &Earlier::default()).changes[0]
                .0
                .action,
            Action::Start
        );
        let absent = DaemonState {
            installed: false,
            status: DaemonStatus::CliMissing,
            file: None,
        };
        let diff = resource.diff(&absent, &Earlier::default());
        assert!(diff.changes.is_empty());
        assert_eq!(diff.warnings.len(), 1);
        // Installed in this run: started after it, through the same `[docker] restart` path.
        let install = (
            Change::new(DockerPackage::id(), Action::Install, "docker.io"),
            Made::DockerInstalled,
        );
        let diff = resource.diff(&absent, &Earlier::from_changes(vec![install]));
        assert_eq!(
            actions(diff),
            [(Action::Start, "after Docker is installed".to_owned())]
        );
    }

    #[test]
    fn restart_warns_when_it_stops_running_containers() {
        let resource = daemon(json!({"mtu": 1400}));
        let mut info = overlay2();
        info.containers_running = 2;
        let diff = resource.diff(
            &running(info, json!({})),
            &Earlier::from_changes(vec![config_change(&[("mtu", json!(1400))])]),
        );
        assert_eq!(
            diff.changes[0].0.warnings,
            [
                "the restart stops 2 running containers (live-restore is off); those with a restart policy start again"
            ]
        );
    }

    #[test]
    fn a_refused_config_change_does_not_restart() {
        let resource = daemon(json!({"storage-driver": "vfs"}));
        let mut info = overlay2();
        info.images = 2;
        let (change, made) = config_change(&[("storage-driver", json!("vfs"))]);
        let refused = (change.refused_because("hides images"), made);
        assert_eq!(
            resource.diff(
                &running(info, json!({})),
                &Earlier::from_changes(vec![refused])
            ),
            Diff::none()
        );
    }
}
