//! Issue 24's error cases through the real binary: what `plan` and `apply` say, and how they
//! exit, when the Docker daemon is not there or takes the connection and never answers, now
//! that berth asks it over the Engine API (snapshots, so a change of wording is seen).

use std::path::{Path, PathBuf};

use crate::{
    fault_tools::{HungDaemon, Restart, RestartStub},
    harness::{Root, Run, berth, profile_file},
};

/// A root whose Docker is installed (its unit), a profile of one volume and a restart command
/// that does nothing (the daemon stays as it is), its `ready_timeout` 1 s.
fn host() -> (Root, RestartStub, PathBuf) {
    let root = Root::new();
    root.write(
        "/lib/systemd/system/docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
    );
    let stub = RestartStub::new(&root, "nothing", None, Restart::Nothing);
    let profile = profile_file(
        &root.scratch("profiles"),
        "site",
        &format!("{}\n[volumes.berth-test-errors]\n", stub.layer(None, 1)),
    );
    (root, stub, profile)
}

fn run(root: &Root, docker_host: &str, profile: &Path, command: &str) -> Run {
    berth(root)
        .env("DOCKER_HOST", docker_host)
        .filter(docker_host, "[DOCKER_HOST]")
        .filter(profile.display().to_string(), "[PROFILE]")
        .args(["-p".as_ref(), profile.as_os_str(), command.as_ref()])
        .run()
}

#[test]
fn plan_and_apply_without_a_daemon_say_so_in_the_clis_words() {
    let (root, stub, profile) = host();
    let docker_host = format!(
        "unix://{}",
        root.scratch("gone").join("docker.sock").display()
    );
    let plan = run(&root, &docker_host, &profile, "plan");
    insta::assert_snapshot!(plan.transcript(), @r"
    exit: 2
    --- stdout
    daemon/docker               + start     the daemon does not answer: Cannot connect to the Docker daemon at [DOCKER_HOST]. Is the docker daemon running?
    volume/berth-test-errors    + create    driver=local (after Docker starts)

    Plan: 2 to add, 0 to change, 0 to destroy.
    --- stderr
    warning: daemon/docker: Docker does not answer: its networks, volumes and containers are compared once it runs
    ");
    let apply = run(&root, &docker_host, &profile, "apply");
    insta::assert_snapshot!(apply.transcript(), @r"
    exit: 1
    --- stdout
    daemon/docker    + start     the daemon does not answer: Cannot connect to the Docker daemon at [DOCKER_HOST]. Is the docker daemon running?  (failed)

    Apply failed: 0 added, 0 changed, 0 destroyed, 2 failed.
    --- stderr
    warning: daemon/docker: Docker does not answer: its networks, volumes and containers are compared once it runs
    daemon/docker: start the daemon does not answer: Cannot connect to the Docker daemon at [DOCKER_HOST]. Is the docker daemon running?
    error: failed to start `daemon/docker`
      caused by: the Docker daemon was not ready within 1 s: Cannot connect to the Docker daemon at [DOCKER_HOST]. Is the docker daemon running?
    error: not attempted because `daemon/docker` failed
    ");
    assert_eq!(stub.calls(), 1, "apply tried to start Docker once");
}

/// berth's query timeout is 60 s: the two runs take about a minute, side by side.
#[test]
fn plan_and_apply_against_a_hung_daemon_say_which_question_got_no_answer() {
    let (plan_root, _, plan_profile) = host();
    let (apply_root, stub, apply_profile) = host();
    let plan_hung = HungDaemon::start(&plan_root.scratch("hung").join("docker.sock"));
    let apply_hung = HungDaemon::start(&apply_root.scratch("hung").join("docker.sock"));
    let (plan, apply) = std::thread::scope(|scope| {
        let plan = scope.spawn(|| run(&plan_root, &plan_hung.host(), &plan_profile, "plan"));
        let apply = scope.spawn(|| run(&apply_root, &apply_hung.host(), &apply_profile, "apply"));
        (plan.join().unwrap(), apply.join().unwrap())
    });
    insta::assert_snapshot!(plan.transcript(), @r"
    exit: 1
    --- stdout
    daemon/docker               ~ restart   the daemon takes connections but does not answer: `docker info` got no answer within 60 s
        refused: a hung daemon is restarted only when the profile sets `[docker] restart_unresponsive = true`, since that stops every running container; see `journalctl -u docker` for why it hangs
    volume/berth-test-errors    + create    driver=local (after Docker starts)

    Plan: 1 to add, 0 to change, 0 to destroy, 1 refused.
    --- stderr
    warning: daemon/docker: Docker does not answer: its networks, volumes and containers are compared once it runs
    ");
    insta::assert_snapshot!(apply.transcript(), @r"
    exit: 1
    --- stdout
    daemon/docker    ~ restart   the daemon takes connections but does not answer: `docker info` got no answer within 60 s  (failed)
        refused: a hung daemon is restarted only when the profile sets `[docker] restart_unresponsive = true`, since that stops every running container; see `journalctl -u docker` for why it hangs

    Apply failed: 0 added, 0 changed, 0 destroyed, 2 failed.
    --- stderr
    warning: daemon/docker: Docker does not answer: its networks, volumes and containers are compared once it runs
    error: refused to restart `daemon/docker`
      caused by: a hung daemon is restarted only when the profile sets `[docker] restart_unresponsive = true`, since that stops every running container; see `journalctl -u docker` for why it hangs
    error: not attempted because `daemon/docker` failed
    ");
    assert_eq!(stub.calls(), 0, "a daemon that only hangs is not restarted");
}
