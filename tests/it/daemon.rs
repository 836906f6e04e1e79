//! The Docker daemon for real: a private dockerd per test, restarted and reloaded by berth
//! through the profile's restart/reload commands (scripts that really restart or SIGHUP it).

use crate::{
    harness::{Root, berth, profile_file, unprivileged_layer, write_executable},
    require_dockerd,
};

fn layers(root: &Root, dockerd: &crate::harness::Dockerd, site: &str) -> Vec<std::path::PathBuf> {
    vec![
        dockerd.layer_file(),
        profile_file(&root.join("/work"), "site", site),
    ]
}

fn p_args(profiles: &[std::path::PathBuf]) -> Vec<std::ffi::OsString> {
    profiles
        .iter()
        .flat_map(|path| ["-p".into(), path.clone().into_os_string()])
        .collect()
}

#[test]
fn a_restart_key_restarts_the_daemon_once_and_a_second_run_changes_nothing() {
    let root = Root::new();
    root.with_overlay_kernel();
    let dockerd = require_dockerd!(&root);
    let first_pid = dockerd.pid();
    // The dind profile also runs containers: give it stand-in images it can start here.
    dockerd.import_profile_images();
    let stand_ins = profile_file(
        &root.join("/work"),
        "stand-ins",
        &unprivileged_layer(&["gitlab-dind"]),
    );
    let profiles = [
        vec!["-p".into(), "dind".into()],
        p_args(&[dockerd.layer_file(), stand_ins]),
    ]
    .concat();

    let plan = berth(&root)
        .docker(&dockerd)
        .args(["plan"])
        .args(&profiles)
        .run();
    plan.code(2);
    assert!(
        plan.stdout
            .lines()
            .any(|line| line.starts_with("daemon/docker ")
                && line.ends_with(
                    "~ restart   storage-driver, log-driver, log-opts, live-restore changed"
                )),
        "{}",
        plan.stdout
    );
    assert_eq!(dockerd.pid(), first_pid, "plan restarts nothing");

    let apply = berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(&profiles)
        .run();
    apply.code(0);
    let second_pid = dockerd.pid();
    assert_ne!(second_pid, first_pid, "dockerd was restarted");
    let info = dockerd.info();
    assert_eq!(info["Driver"], "overlay2");
    assert_eq!(info["LoggingDriver"], "json-file");

    let mtime = root.mtime("/etc/docker/daemon.json");
    berth(&root).docker(&dockerd).args(&profiles).converged();
    berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(&profiles)
        .run()
        .code(0);
    assert_eq!(
        dockerd.pid(),
        second_pid,
        "a converged apply restarts nothing"
    );
    assert_eq!(
        root.mtime("/etc/docker/daemon.json"),
        mtime,
        "a converged apply rewrites nothing"
    );
}

#[test]
fn a_registry_mirror_is_reloaded_not_restarted_and_docker_info_shows_it() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let pid = dockerd.pid();
    let profiles = layers(
        &root,
        &dockerd,
        "[docker.daemon]\nregistry-mirrors = [\"https://mirror.example.com\"]\n",
    );
    let apply = berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(p_args(&profiles))
        .run();
    apply.code(0);
    insta::assert_snapshot!(apply.transcript(), @r#"
    exit: 0
    --- stdout
    daemon-config    ~ update    /etc/docker/daemon.json
        --- /etc/docker/daemon.json
        +++ /etc/docker/daemon.json
        @@ -1 +1,5 @@
        -{}
        +{
        +  "registry-mirrors": [
        +    "https://mirror.example.com"
        +  ]
        +}
    daemon/docker    ~ reload    registry-mirrors changed

    Apply complete: 0 added, 2 changed, 0 destroyed.
    --- stderr
    daemon-config: update /etc/docker/daemon.json
    daemon/docker: reload registry-mirrors changed
    "#);
    assert_eq!(dockerd.pid(), pid, "SIGHUP, not a restart");
    assert_eq!(
        dockerd.info()["RegistryConfig"]["Mirrors"],
        serde_json::json!(["https://mirror.example.com/"])
    );
    berth(&root)
        .docker(&dockerd)
        .args(p_args(&profiles))
        .converged();
}

#[test]
fn a_daemon_json_dockerd_rejects_is_rolled_back_and_the_daemon_is_back() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let original = root.read("/etc/docker/daemon.json").unwrap();
    let profiles = layers(&root, &dockerd, "[docker.daemon]\nlog-level = \"loud\"\n");
    let apply = berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(p_args(&profiles))
        .run();
    apply.code(1);
    // dockerd's own complaint is shown.
    insta::assert_snapshot!(apply.transcript(), @r#"
    exit: 1
    --- stdout
    daemon-config    ~ update    /etc/docker/daemon.json
        --- /etc/docker/daemon.json
        +++ /etc/docker/daemon.json
        @@ -1 +1,3 @@
        -{}
        +{
        +  "log-level": "loud"
        +}
    daemon/docker    ~ restart   log-level changed  (failed)

    Apply failed: 0 added, 1 changed, 0 destroyed, 1 failed.
    --- stderr
    daemon-config: update /etc/docker/daemon.json
    daemon/docker: restart log-level changed
    error: failed to restart `daemon/docker`
      caused by: dockerd did not come back with the new daemon.json; the previous file is restored (the refused one is kept at `/etc/docker/daemon.json.berth-rejected`) and Docker is running again
      caused by: `sh [DOCKERD]/restart.sh` exited with status 1
      caused by: dockerd exited during start:
    unable to parse logging level: loud
    "#);
    assert_eq!(
        root.read("/etc/docker/daemon.json").unwrap(),
        original,
        "the previous daemon.json is back"
    );
    assert!(
        root.read("/etc/docker/daemon.json.berth-rejected")
            .unwrap()
            .contains("\"log-level\": \"loud\"")
    );
    assert_eq!(
        dockerd.info()["Driver"],
        "overlay2",
        "the daemon answers again"
    );

    // The next run does not restart Docker into the same refused file again.
    let pid = dockerd.pid();
    let again = berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(p_args(&profiles))
        .run();
    again.code(1);
    insta::assert_snapshot!(again.transcript(), @r#"
    exit: 1
    --- stdout
    daemon-config    ~ update    /etc/docker/daemon.json  (failed)
        --- /etc/docker/daemon.json
        +++ /etc/docker/daemon.json
        @@ -1 +1,3 @@
        -{}
        +{
        +  "log-level": "loud"
        +}
        refused: dockerd already refused exactly this daemon.json (kept at `/etc/docker/daemon.json.berth-rejected`); fix the profile, or delete that file to try again

    Apply failed: 0 added, 0 changed, 0 destroyed, 2 failed.
    --- stderr
    error: refused to update `daemon-config`
      caused by: dockerd already refused exactly this daemon.json (kept at `/etc/docker/daemon.json.berth-rejected`); fix the profile, or delete that file to try again
    error: not attempted because `daemon-config` failed
    "#);
    assert_eq!(dockerd.pid(), pid);
    assert_eq!(root.read("/etc/docker/daemon.json").unwrap(), original);
}

#[test]
fn a_storage_driver_switch_that_hides_images_is_refused() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_busybox("berth-test/busybox:1");
    let pid = dockerd.pid();
    let original = root.read("/etc/docker/daemon.json").unwrap();
    let profiles = layers(
        &root,
        &dockerd,
        "[docker.daemon]\nstorage-driver = \"vfs\"\n",
    );

    let plan = berth(&root)
        .docker(&dockerd)
        .args(["plan"])
        .args(p_args(&profiles))
        .run();
    plan.code(1);
    insta::assert_snapshot!(plan.transcript(), @r#"
    exit: 1
    --- stdout
    daemon-config    ~ update    /etc/docker/daemon.json
        --- /etc/docker/daemon.json
        +++ /etc/docker/daemon.json
        @@ -1 +1,3 @@
        -{}
        +{
        +  "storage-driver": "vfs"
        +}
        refused: switching the storage driver from `overlay2` to `vfs` hides 1 image and 0 containers until it is switched back; rerun with --allow-storage-driver-change to switch anyway

    Plan: 0 to add, 0 to change, 0 to destroy, 1 refused.
    --- stderr
    "#);

    let apply = berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(p_args(&profiles))
        .run();
    apply.code(1);
    insta::assert_snapshot!(apply.transcript(), @r#"
    exit: 1
    --- stdout
    daemon-config    ~ update    /etc/docker/daemon.json  (failed)
        --- /etc/docker/daemon.json
        +++ /etc/docker/daemon.json
        @@ -1 +1,3 @@
        -{}
        +{
        +  "storage-driver": "vfs"
        +}
        refused: switching the storage driver from `overlay2` to `vfs` hides 1 image and 0 containers until it is switched back; rerun with --allow-storage-driver-change to switch anyway

    Apply failed: 0 added, 0 changed, 0 destroyed, 2 failed.
    --- stderr
    error: refused to update `daemon-config`
      caused by: switching the storage driver from `overlay2` to `vfs` hides 1 image and 0 containers until it is switched back; rerun with --allow-storage-driver-change to switch anyway
    error: not attempted because `daemon-config` failed
    "#);
    assert_eq!(root.read("/etc/docker/daemon.json").unwrap(), original);
    assert_eq!(dockerd.pid(), pid, "Docker was not restarted");
    assert_eq!(dockerd.info()["Images"], 1);

    let allowed = berth(&root)
        .docker(&dockerd)
        .args(["apply", "--allow-storage-driver-change"])
        .args(p_args(&profiles))
        .run();
    allowed.code(0);
    let info = dockerd.info();
    assert_eq!(info["Driver"], "vfs");
    assert_eq!(
        info["Images"], 0,
        "the overlay2 image is hidden, as the refusal said"
    );
}

#[test]
fn a_key_the_service_also_passes_as_a_flag_is_refused() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let pid = dockerd.pid();
    let original = root.read("/etc/docker/daemon.json").unwrap();
    let profiles = layers(
        &root,
        &dockerd,
        "[docker.daemon]\nhosts = [\"unix:///var/run/docker.sock\"]\n",
    );
    let apply = berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(p_args(&profiles))
        .run();
    apply.code(1);
    insta::assert_snapshot!(apply.transcript(), @r#"
    exit: 1
    --- stdout
    daemon-config    ~ update    /etc/docker/daemon.json  (failed)
        --- /etc/docker/daemon.json
        +++ /etc/docker/daemon.json
        @@ -1 +1,5 @@
        -{}
        +{
        +  "hosts": [
        +    "unix:///var/run/docker.sock"
        +  ]
        +}
        refused: dockerd would refuse to start: `hosts` (flag `-H unix://[DOCKERD]/docker.sock`) also set on its command line in `/lib/systemd/system/docker.service`; remove the key from the profile or the flag from the unit

    Apply failed: 0 added, 0 changed, 0 destroyed, 2 failed.
    --- stderr
    error: refused to update `daemon-config`
      caused by: dockerd would refuse to start: `hosts` (flag `-H unix://[DOCKERD]/docker.sock`) also set on its command line in `/lib/systemd/system/docker.service`; remove the key from the profile or the flag from the unit
    error: not attempted because `daemon-config` failed
    "#);
    assert_eq!(root.read("/etc/docker/daemon.json").unwrap(), original);
    assert_eq!(dockerd.pid(), pid);
}

#[test]
fn a_stopped_daemon_is_planned_as_start_and_started_by_apply() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let profiles = layers(
        &root,
        &dockerd,
        "[docker.daemon]\nregistry-mirrors = [\"https://mirror.example.com\"]\n",
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dockerd.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    while dockerd.docker_unchecked(["version"]).status.success() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let plan = berth(&root)
        .docker(&dockerd)
        .args(["plan"])
        .args(p_args(&profiles))
        .run();
    plan.code(2);
    // The file changes are still shown.
    insta::assert_snapshot!(plan.transcript(), @r#"
    exit: 2
    --- stdout
    daemon-config    ~ update    /etc/docker/daemon.json
        --- /etc/docker/daemon.json
        +++ /etc/docker/daemon.json
        @@ -1 +1,5 @@
        -{}
        +{
        +  "registry-mirrors": [
        +    "https://mirror.example.com"
        +  ]
        +}
    daemon/docker    + start     the daemon does not answer: Cannot connect to the Docker daemon at unix://[DOCKERD]/docker.sock. Is the docker daemon running?

    Plan: 1 to add, 1 to change, 0 to destroy.
    --- stderr
    "#);
    berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(p_args(&profiles))
        .run()
        .code(0);
    assert_eq!(
        dockerd.info()["RegistryConfig"]["Mirrors"],
        serde_json::json!(["https://mirror.example.com/"])
    );
    berth(&root)
        .docker(&dockerd)
        .args(p_args(&profiles))
        .converged();
}

#[test]
fn a_daemon_that_never_loaded_daemon_json_is_reloaded() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    // Someone wrote the file but never reloaded: the file is in sync, the daemon is not.
    root.write(
        "/etc/docker/daemon.json",
        "{\n  \"registry-mirrors\": [\"https://mirror.example.com\"]\n}\n",
    );
    let profiles = layers(
        &root,
        &dockerd,
        "[docker.daemon]\nregistry-mirrors = [\"https://mirror.example.com\"]\n",
    );
    let plan = berth(&root)
        .docker(&dockerd)
        .args(["plan"])
        .args(p_args(&profiles))
        .run();
    plan.code(2);
    insta::assert_snapshot!(plan.transcript(), @r#"
    exit: 2
    --- stdout
    daemon/docker    ~ reload    the running daemon has not loaded daemon.json: registry-mirrors is [] (daemon.json: ["https://mirror.example.com/"])

    Plan: 0 to add, 1 to change, 0 to destroy.
    --- stderr
    "#);
    berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(p_args(&profiles))
        .run()
        .code(0);
    berth(&root)
        .docker(&dockerd)
        .args(p_args(&profiles))
        .converged();
}

#[test]
fn plan_without_docker_installed_says_so_and_shows_the_file_changes() {
    let root = Root::new();
    let run = berth(&root).args(["plan"]).run();
    run.code(1);
    insta::assert_snapshot!(run.transcript(), @r#"
    exit: 1
    --- stdout
    kernel-module/overlay        + persist   /etc/modules-load.d/overlay.conf
    package/docker               + install   Docker is not installed
        refused: Docker is not installed, and the root has no /etc/os-release to tell how to install it; install Docker yourself and set `[docker] install = false`
    daemon-config                + create    /etc/docker/daemon.json
        --- /etc/docker/daemon.json
        +++ /etc/docker/daemon.json
        @@ -0,0 +1,9 @@
        +{
        +  "storage-driver": "overlay2",
        +  "log-driver": "json-file",
        +  "log-opts": {
        +    "max-size": "50m",
        +    "max-file": "3"
        +  },
        +  "live-restore": true
        +}
    network/gitlab-runner-net    + create    driver=bridge (after Docker is installed)
    volume/gitlab-dind-data      + create    driver=local (after Docker is installed)
    container/gitlab-dind        + create    image docker:27-dind (after Docker is installed)
    container/gitlab-runner      + create    image gitlab/gitlab-runner:v17.11.0 (after Docker is installed)

    Plan: 6 to add, 0 to change, 0 to destroy, 1 refused.
    --- stderr
    warning: dind (embedded):65:13: key `containers.gitlab-runner`: no runner is declared: the host will run a runner container that takes no jobs (berth init writes one)
    warning: kernel-module/overlay: the running kernel is not visible under the root (no /proc/filesystems or /proc/modules): `overlay` is only persisted, not loaded
    warning: daemon/docker: Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is
    "#);
}

#[test]
fn dockerd_validate_rejecting_the_file_leaves_it_untouched() {
    // A dockerd stand-in with `--validate` (Engine 23+; the Debian 12 dockerd has none).
    let root = Root::new();
    root.write("/etc/docker/daemon.json", "{}\n");
    let bin = root.join("/stub-bin");
    write_executable(
        &bin,
        "dockerd",
        "#!/bin/sh\ncase \"$1\" in\n--help) echo '      --validate    Validate daemon configuration and exit' ;;\n--validate) echo \"unable to configure the Docker daemon with file $3: invalid logging level: loud\" >&2; exit 1 ;;\nesac\n",
    );
    let profile = profile_file(
        &root.join("/work"),
        "site",
        "[docker.daemon]\nlog-level = \"loud\"\n",
    );
    let run = berth(&root)
        .path_first(&bin)
        .args(["apply", "-p"])
        .args([&profile])
        .run();
    run.code(1);
    // berth hands dockerd the new file under a temporary name.
    insta::with_settings!({filters => vec![(r"/\S*/berth-daemon-\w+\.json", "[TMP]/berth-daemon-[ID].json")]}, {
        insta::assert_snapshot!(run.transcript(), @r#"
        exit: 1
        --- stdout
        daemon-config    ~ update    /etc/docker/daemon.json  (failed)
            --- /etc/docker/daemon.json
            +++ /etc/docker/daemon.json
            @@ -1 +1,3 @@
            -{}
            +{
            +  "log-level": "loud"
            +}

        Apply failed: 0 added, 0 changed, 0 destroyed, 2 failed.
        --- stderr
        daemon-config: update /etc/docker/daemon.json
        error: failed to update `daemon-config`
          caused by: dockerd rejects the new daemon.json; the file was not changed
          caused by: `dockerd --validate --config-file [TMP]/berth-daemon-[ID].json` exited with status 1
          caused by: unable to configure the Docker daemon with file [TMP]/berth-daemon-[ID].json: invalid logging level: loud
        error: not attempted because `daemon-config` failed
        "#);
    });
}

/// Issue 24: a socket this user may not use is told apart from a daemon that is down, as the
/// CLI told it: `plan` as `nobody` (the daemon's socket lies in root's private directory) says
/// it cannot ask the daemon and plans no start of it.
#[test]
fn plan_as_a_user_who_may_not_use_the_socket_says_so_and_plans_no_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = Root::new();
    let dockerd = crate::require_dockerd!(&root);
    // The root reads like a host's to another user; the daemon's directory does not.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(plan) = berth(&root)
        .docker(&dockerd)
        .args(["-p", "dind", "plan"])
        .by_nobody()
    else {
        return;
    };
    let plan = plan.run();
    assert!(
        plan.stderr.contains(
            "cannot ask the Docker daemon (permission denied while trying to connect to the Docker daemon socket at unix://[DOCKERD]/docker.sock)"
        ),
        "{}",
        plan.transcript()
    );
    assert!(
        !plan.stdout.contains("daemon/docker"),
        "{}",
        plan.transcript()
    );
}
