//! Orphans and `berth destroy` (issue 10) on the private dockerd: what leaves the profile is
//! drained and removed (volumes kept and listed), a container renamed by hand is removed and
//! made again, `--keep-orphans` leaves them, another instance's objects are never touched, and
//! `destroy` takes down what berth made, unregistering every runner exactly once, even when
//! killed midway.

use std::{
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{
    fault_tools::{FaultDocker, Target, Then},
    gitlab_server::{DELETE, DELETE_MANAGER, GitLab},
    harness::{Dockerd, Root, profile_file, start_gitlab},
    profiles::Converged,
    require_dockerd,
};

const DIND: &str = "gitlab-dind";
const RUNNER: &str = "gitlab-runner";
const NETWORK: &str = "gitlab-runner-net";
const VOLUME: &str = "gitlab-dind-data";
const CONFIG: &str = "/srv/gitlab-runner/config.toml";
const GLRT: &str = "glrt-Orphans7Destroy9Once2";
const MODULE_FILE: &str = "/etc/modules-load.d/overlay.conf";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Now, as `docker events --until` takes it to the nanosecond (`SECONDS.NANOSECONDS`).
fn now_exact() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// Switches a host converged to `dind` over to `socket`: the stand-ins layer (which makes
/// gitlab-dind unprivileged) goes with it.
fn switch_to_socket(host: &mut Converged<'_>) {
    host.layers[0] = PathBuf::from("socket");
    host.layers[2] = profile_file(&host.root.join("/work"), "stand-ins", "");
}

#[test]
fn a_dind_to_socket_switch_drains_and_removes_dind_and_keeps_its_volume() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = Converged::new(&root, &dockerd, "dind", "");
    let signal = dockerd.inspect_container(DIND)["Config"]["StopSignal"]
        .as_str()
        .map(str::to_owned);
    switch_to_socket(&mut host);
    let since = now();

    let plan = host.run("plan");
    plan.code(2);
    assert!(
        plan.line_of(&format!("container/{DIND}"))
            .starts_with(&format!(
                "container/{DIND} - destroy no longer in the profile; drained: "
            )),
        "{}",
        plan.stdout
    );
    assert_eq!(
        plan.line_of(&format!("volume/{VOLUME}")),
        format!("volume/{VOLUME} (kept: holds data; berth destroy --purge removes it)")
    );

    host.run("apply").code(0);
    assert!(!dockerd.exists("container", DIND), "gitlab-dind is gone");
    assert!(dockerd.exists("volume", VOLUME), "its data is kept");
    assert!(dockerd.exists("container", RUNNER));
    // Drained: the first signal it got is its own stop signal (`docker stop`), not a kill.
    let kills = dockerd.docker([
        "events",
        "--since",
        &since.to_string(),
        "--until",
        // To the nanosecond: a whole second would leave out the kill made in this second.
        &now_exact(),
        "--filter",
        &format!("container={DIND}"),
        "--filter",
        "event=kill",
        "--format",
        "{{.Actor.Attributes.signal}}",
    ]);
    let expected = match signal.as_deref() {
        None | Some("" | "SIGTERM" | "15") => "15",
        Some("SIGQUIT" | "3") => "3",
        Some(other) => panic!("add the number of {other} here"),
    };
    assert_eq!(
        kills.lines().next(),
        Some(expected),
        "stopped with its own stop signal: {kills}"
    );

    let second = host.run("plan");
    second.code(0);
    assert_eq!(
        second.stdout,
        format!(
            "volume/{VOLUME}  (kept: holds data; berth destroy --purge removes it)\n\nNo changes: the host matches the profile.\n"
        )
    );
}

#[test]
fn a_runner_container_renamed_by_hand_is_removed_and_made_again() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let host = Converged::new(&root, &dockerd, "dind", "");
    dockerd.docker(["rename", RUNNER, "runner-by-hand"]);

    let plan = host.run("plan");
    plan.code(2);
    assert_eq!(
        plan.line_of("container/runner-by-hand"),
        format!(
            "container/runner-by-hand - destroy `{RUNNER}` renamed by hand to runner-by-hand; berth makes `{RUNNER}` again; drained: SIGQUIT, up to 3600 s"
        )
    );
    assert!(
        plan.line_of(&format!("container/{RUNNER}"))
            .contains("+ create")
    );

    host.run("apply").code(0);
    assert!(!dockerd.exists("container", "runner-by-hand"));
    assert!(dockerd.exists("container", RUNNER));
    host.converged();
}

#[test]
fn keep_orphans_leaves_them_for_one_run_and_says_so() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = Converged::new(&root, &dockerd, "dind", "");
    switch_to_socket(&mut host);

    let apply = host.run_with("apply", &["--keep-orphans"]);
    apply.code(0);
    assert_eq!(
        apply.line_of(&format!("container/{DIND}")),
        format!("container/{DIND} (kept for this run (--keep-orphans): no longer in the profile)")
    );
    assert!(dockerd.exists("container", DIND), "left in place");
    host.run_with("plan", &["--keep-orphans"]).code(0);
    // Without the flag, the next run removes it.
    host.run("plan").code(2);
}

#[test]
fn objects_another_berth_instance_made_are_never_touched() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_profile_images();
    let labels = [
        "--label",
        "berth.managed=true",
        "--label",
        "berth.instance=another-host",
    ];
    dockerd.docker([&["network", "create"][..], &labels, &["their-net"]].concat());
    dockerd.docker([&["volume", "create"][..], &labels, &["their-data"]].concat());
    dockerd.import_busybox("their-image:1");
    let image = "their-image:1".to_owned();
    dockerd.docker(
        [
            &["container", "create", "--name", "their-runner"][..],
            &labels,
            &[image.as_str()],
        ]
        .concat(),
    );
    // Converging from scratch and the second plan see nothing of theirs.
    let host = Converged::new(&root, &dockerd, "dind", "");
    host.converged();
    for (kind, name) in [
        ("network", "their-net"),
        ("volume", "their-data"),
        ("container", "their-runner"),
    ] {
        assert!(dockerd.exists(kind, name), "{kind} {name} is left");
    }
    // Nor does destroy.
    host.run_with("destroy", &["--yes", "--purge"]).code(0);
    assert!(dockerd.exists("container", "their-runner"));
    assert!(dockerd.exists("volume", "their-data"));
    assert!(!dockerd.exists("container", RUNNER));
}

/// The dind host with two runners of the GitLab stand-in in its ledger: a glrt- token runner
/// (on removal only this host's manager goes) and one berth registered (deleted).
fn with_runners<'a>(root: &'a Root, dockerd: &'a Dockerd, gitlab: &GitLab) -> Converged<'a> {
    gitlab.add_runner(GLRT);
    gitlab.add_registration_token("GR1348941orphans");
    for (path, token) in [
        ("/etc/berth/tokens/docker-runner", GLRT),
        ("/etc/berth/tokens/registration", "GR1348941orphans"),
    ] {
        root.write(path, &format!("{token}\n"));
        root.chmod(path, 0o600);
    }
    let url = gitlab.url();
    Converged::new(
        root,
        dockerd,
        "dind",
        &format!(
            r#"[runner]
config = "{CONFIG}"
[runners.docker-runner]
url = "{url}"
token_file = "/etc/berth/tokens/docker-runner"
executor = "docker"
[runners.docker-runner.docker]
host = "tcp://gitlab-dind:2375"
image = "docker:27"
[runners.legacy]
url = "{url}"
registration_token_file = "/etc/berth/tokens/registration"
executor = "shell"
"#
        ),
    )
}

fn runner_entries(root: &Root) -> usize {
    let config: toml::Table = toml::from_str(&root.read(CONFIG).unwrap()).unwrap();
    config
        .get("runners")
        .and_then(|runners| runners.as_array())
        .map_or(0, Vec::len)
}

#[test]
fn destroy_asks_then_unregisters_every_runner_once_and_keeps_volumes_unless_purged() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let gitlab = start_gitlab();
    let host = with_runners(&root, &dockerd, &gitlab);
    assert_eq!(runner_entries(&root), 2);
    // A kernel berth cannot see: apply persists the module in the file berth writes.
    std::fs::remove_file(root.join("/proc/filesystems")).unwrap();
    host.run("apply").code(0);
    assert!(root.exists(MODULE_FILE), "apply persisted the module");

    let plan = host.run_with("plan", &["--destroy"]);
    plan.code(2);
    for id in [
        format!("container/{DIND}"),
        format!("container/{RUNNER}"),
        "runner/docker-runner".to_owned(),
        "runner/legacy".to_owned(),
        format!("network/{NETWORK}"),
    ] {
        let line = plan.line_of(&id);
        assert!(line.contains(" - "), "{line}");
    }
    assert_eq!(
        plan.line_of(&format!("volume/{VOLUME}")),
        format!("volume/{VOLUME} (kept: holds data; berth destroy --purge removes it)")
    );
    assert!(
        plan.line_of("kernel-module/overlay")
            .contains("kept: /etc/modules-load.d/overlay.conf")
    );

    // No terminal, no --yes: refused, nothing changed.
    let refused = host.run("destroy");
    refused.code(1);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    // Nor with --json, which keeps stdout to one document.
    host.run_with("destroy", &["--json"]).code(1);
    assert!(dockerd.exists("container", RUNNER));
    assert_eq!(gitlab.calls(DELETE) + gitlab.calls(DELETE_MANAGER), 0);
    assert_eq!(runner_entries(&root), 2);

    let done = host.run_with("destroy", &["--yes"]);
    done.code(0);
    for (kind, name) in [
        ("container", DIND),
        ("container", RUNNER),
        ("network", NETWORK),
    ] {
        assert!(!dockerd.exists(kind, name), "{kind} {name} is gone");
    }
    assert!(
        dockerd.exists("volume", VOLUME),
        "volumes stay without --purge"
    );
    assert!(
        root.exists(MODULE_FILE),
        "the module file stays without --purge"
    );
    assert_eq!(
        gitlab.calls(DELETE_MANAGER),
        1,
        "the glrt- runner's manager, once"
    );
    assert_eq!(gitlab.calls(DELETE), 1, "the runner berth registered, once");
    assert_eq!(runner_entries(&root), 0, "their config.toml entries went");
    host.run_with("plan", &["--destroy"]).code(0);
    host.run_with("destroy", &["--yes"]).code(0);

    // What --purge would take is shown before it is done: the volume and the module file.
    let purge = host.run_with("plan", &["--destroy", "--purge"]);
    purge.code(2);
    assert!(
        purge.line_of(&format!("volume/{VOLUME}")).contains(" - "),
        "{}",
        purge.stdout
    );
    assert!(
        purge.line_of("kernel-module/overlay").contains(" - "),
        "{}",
        purge.stdout
    );
    assert!(dockerd.exists("volume", VOLUME), "a plan removes nothing");
    // --purge means nothing to a plain plan: a usage error.
    host.run_with("plan", &["--purge"]).code(1);

    host.run_with("destroy", &["--yes", "--purge"]).code(0);
    assert!(!dockerd.exists("volume", VOLUME), "--purge removes volumes");
    assert!(!root.exists(MODULE_FILE), "and the module file berth wrote");
    host.run_with("plan", &["--destroy"]).code(0);
    assert_eq!(gitlab.calls(DELETE) + gitlab.calls(DELETE_MANAGER), 2);
}

#[test]
fn a_destroy_killed_midway_is_finished_by_the_next_and_unregisters_no_runner_twice() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let gitlab = start_gitlab();
    let host = with_runners(&root, &dockerd, &gitlab);
    let fault = FaultDocker::install(&root, &dockerd);
    let destroy = || {
        crate::harness::berth(&root)
            .docker(&dockerd)
            .faulted(&fault)
            .args(["destroy", "--yes"])
            .args(host.args())
            .run()
    };

    // Killed while removing the first container: no runner unregistered yet.
    fault.arm("rm", 1, Target::Berth, Then::Exit);
    destroy();
    fault.wait_settled();
    assert!(fault.fired().is_some(), "the fault fired");
    assert_eq!(gitlab.calls(DELETE) + gitlab.calls(DELETE_MANAGER), 0);

    // Killed as the network goes, after the runners were unregistered.
    fault.arm("network rm", 1, Target::Berth, Then::Proceed);
    destroy();
    fault.wait_settled();
    assert!(fault.fired().is_some(), "the fault fired");
    assert_eq!(gitlab.calls(DELETE_MANAGER), 1);
    assert_eq!(gitlab.calls(DELETE), 1);

    fault.disarm();
    destroy().code(0);
    for (kind, name) in [
        ("container", DIND),
        ("container", RUNNER),
        ("network", NETWORK),
    ] {
        assert!(!dockerd.exists(kind, name), "{kind} {name} is gone");
    }
    assert_eq!(
        gitlab.calls(DELETE_MANAGER),
        1,
        "no runner unregistered twice"
    );
    assert_eq!(gitlab.calls(DELETE), 1, "no runner unregistered twice");
    assert_eq!(runner_entries(&root), 0);
    host.run_with("plan", &["--destroy"]).code(0);
}
