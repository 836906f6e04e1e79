//! `daemon/docker`'s diff: reload or restart, the drain before a restart, and the daemon's states.

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
        runner_container: None,
    }
}

fn running(info: DaemonInfo, file: Json) -> DaemonState {
    DaemonState {
        installed: true,
        status: DaemonStatus::Running(Box::new(info)),
        file: file.as_object().cloned(),
        runner: None,
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
    let resource =
        daemon(json!({"registry-mirrors": ["https://m.example"], "storage-driver": "overlay2"}));
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
    let resource =
        daemon(json!({"registry-mirrors": ["https://m.example"], "storage-driver": "overlay2"}));
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
        runner: None,
    };
    assert_eq!(
        resource.diff(&stopped, &Earlier::default()).changes[0]
            .0
            .action,
        Action::Start
    );
    let absent = DaemonState {
        installed: false,
        status: DaemonStatus::Unreachable("no socket".into()),
        file: None,
        runner: None,
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

/// A daemon whose profile runs gitlab-runner in `gitlab-runner`, and that container as the
/// daemon has it.
fn with_runner(keys: Json) -> (DaemonService, crate::docker::wire::ContainerInfo) {
    let mut resource = daemon(keys);
    resource.runner_container = Some(ObjectName::try_from("gitlab-runner".to_owned()).unwrap());
    let mut runner = crate::docker::wire::ContainerInfo {
        id: "0123456789ab".into(),
        name: "/gitlab-runner".into(),
        ..Default::default()
    };
    runner.state.running = true;
    (resource, runner)
}

/// Issue 21: without live-restore, a restart drains the runner's container first; the drain
/// is part of the op, and the plan line says so because it is derived from the op.
#[test]
fn a_restart_without_live_restore_drains_the_runner_container_first() {
    let (resource, runner) = with_runner(json!({"mtu": 1400}));
    let mut observed = running(overlay2(), json!({}));
    observed.runner = Some(runner.clone());
    let earlier = || Earlier::from_changes(vec![config_change(&[("mtu", json!(1400))])]);
    let diff = resource.diff(&observed, &earlier());
    let (change, op) = &diff.changes[0];
    assert_eq!(
        (change.action, change.detail.as_str()),
        (Action::Restart, "mtu changed (drains gitlab-runner first)")
    );
    let Some(DaemonOp::Run { drain, .. }) = op else {
        panic!("{op:?}")
    };
    assert_eq!(
        drain
            .as_ref()
            .map(|drain| (drain.container.as_str(), drain.id.as_str())),
        Some(("gitlab-runner", "0123456789ab"))
    );

    // With live-restore, the restart keeps it running: nothing to drain.
    let mut info = overlay2();
    info.live_restore_enabled = true;
    let mut live = running(info, json!({}));
    live.runner = Some(runner.clone());
    let diff = resource.diff(&live, &earlier());
    assert_eq!(diff.changes[0].0.detail, "mtu changed");
    assert!(matches!(
        &diff.changes[0].1,
        Some(DaemonOp::Run { drain: None, .. })
    ));

    // A stopped runner has no jobs to finish; a reload stops nothing.
    let mut stopped = runner;
    stopped.state.running = false;
    observed.runner = Some(stopped);
    assert_eq!(
        resource.diff(&observed, &earlier()).changes[0].0.detail,
        "mtu changed"
    );
    let (resource, runner) = with_runner(json!({"labels": ["a=b"]}));
    let mut observed = running(overlay2(), json!({}));
    observed.runner = Some(runner);
    let reload = resource.diff(
        &observed,
        &Earlier::from_changes(vec![config_change(&[("labels", json!(["a=b"]))])]),
    );
    assert_eq!(
        (
            reload.changes[0].0.action,
            reload.changes[0].0.detail.as_str()
        ),
        (Action::Reload, "labels changed")
    );
}
