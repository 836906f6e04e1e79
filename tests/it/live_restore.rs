//! No running job killed by a Docker restart berth makes (issue 21): the shipped profiles set
//! `live-restore = true`, so the host's containers run on through the restart; a profile that
//! turns it off gets the runner drained (SIGQUIT, its stop timeout) before Docker restarts.
//!
//! The private dockerd keeps a container alive across its restart here: its containerd shims
//! outlive it, and the restarted daemon reconnects to them (same container, same PID), although
//! each start of the test daemon gets a new network namespace ("There are old running
//! containers, the network config will not take affect" in its log).

use std::path::PathBuf;

use crate::{
    fault_tools::{Restart, RestartStub},
    harness::{Dockerd, Root, line_starting, profile_file},
    profiles::Converged,
    require_dockerd,
};

/// A stand-in runner whose "job" ends only when gitlab-runner would end it: on SIGQUIT it
/// finishes and records that; a SIGTERM is recorded as a kill (a SIGKILL leaves no line at all).
const JOB_RUNNER_IMAGE: &str = "berth-test/job-runner:1";
const JOB_RUNNER_SCRIPT: &str = r#"
echo "job started" >> /etc/gitlab-runner/job
trap 'echo "job finished after SIGQUIT" >> /etc/gitlab-runner/job; exit 0' QUIT
trap 'echo "job killed by SIGTERM" >> /etc/gitlab-runner/job; exit 143' TERM
while :; do sleep 1 & wait $!; done
"#;
const JOB_RECORD: &str = "/srv/gitlab-runner/job";

/// (ID, PID, running) of a container.
fn process(dockerd: &Dockerd, name: &str) -> (String, u64, bool) {
    let state = dockerd.inspect_container(name);
    (
        state["Id"].as_str().unwrap().to_owned(),
        state["State"]["Pid"].as_u64().unwrap(),
        state["State"]["Running"].as_bool().unwrap(),
    )
}

/// A host converged on the `dind` profile with live-restore off (an operator's layer) and the
/// job runner stand-in as its runner container.
fn without_live_restore<'a>(root: &'a Root, dockerd: &'a Dockerd) -> Converged<'a> {
    dockerd.import_stand_in(JOB_RUNNER_IMAGE, JOB_RUNNER_SCRIPT, &[]);
    let host = Converged::new(
        root,
        dockerd,
        "dind",
        &format!(
            "[docker.daemon]\nlive-restore = false\n[containers.gitlab-runner]\nimage = \"{JOB_RUNNER_IMAGE}\"\n"
        ),
    );
    assert_eq!(dockerd.info()["LiveRestoreEnabled"], false);
    assert_eq!(root.read(JOB_RECORD).unwrap(), "job started\n");
    host
}

/// A `[docker]` layer whose restart first records whether the job had finished by then.
fn restart_recording_the_job(root: &Root, dockerd: &Dockerd) -> PathBuf {
    let seen = root.scratch("restart").join("seen");
    let script = format!(
        "cat {} > {} 2>&1; exec sh {}",
        root.join(JOB_RECORD).display(),
        seen.display(),
        dockerd.restart_script().display()
    );
    profile_file(
        &root.join("/work"),
        "zz-restart",
        &format!(
            "[docker]\nrestart = [\"sh\", \"-c\", \"{script}\"]\n[docker.daemon]\nlog-driver = \"local\"\n"
        ),
    )
}

/// Issue 21: a host converged before the profiles set live-restore gets it by a reload, not a
/// restart: nothing stops.
#[test]
fn a_host_converged_before_live_restore_gets_it_by_a_reload() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    // The profile as it was: no live-restore.
    let host = Converged::new(
        &root,
        &dockerd,
        "dind",
        "[docker.daemon]\nlive-restore = false\n",
    );
    let pid = dockerd.pid();
    let before = [
        process(&dockerd, "gitlab-dind"),
        process(&dockerd, "gitlab-runner"),
    ];
    // The shipped profile now: the operator's layer is gone.
    root.write("/work/test.toml", "");
    let plan = host.run("plan");
    plan.code(2);
    assert!(
        line_starting(&plan.stdout, "daemon/docker ").ends_with("~ reload    live-restore changed"),
        "{}",
        plan.stdout
    );
    host.run("apply").code(0);
    assert_eq!(dockerd.pid(), pid, "reloaded, not restarted");
    assert_eq!(dockerd.info()["LiveRestoreEnabled"], true);
    assert_eq!(
        [
            process(&dockerd, "gitlab-dind"),
            process(&dockerd, "gitlab-runner"),
        ],
        before
    );
    host.converged();
}

/// Issue 21: with the shipped live-restore, a restart berth makes keeps dind and the runner
/// running: the same containers, the same processes.
#[test]
fn with_live_restore_a_restart_keeps_the_same_containers_and_processes() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = Converged::new(&root, &dockerd, "dind", "");
    assert_eq!(dockerd.info()["LiveRestoreEnabled"], true);
    let pid = dockerd.pid();
    let before = [
        process(&dockerd, "gitlab-dind"),
        process(&dockerd, "gitlab-runner"),
    ];
    assert!(before.iter().all(|(_, _, running)| *running));

    host.layer("log", "[docker.daemon]\nlog-driver = \"local\"\n");
    let plan = host.run("plan");
    plan.code(2);
    assert!(
        line_starting(&plan.stdout, "daemon/docker ").ends_with("~ restart   log-driver changed"),
        "nothing to drain: {}",
        plan.stdout
    );
    host.run("apply").code(0);
    assert_ne!(dockerd.pid(), pid, "dockerd was restarted");
    assert_eq!(dockerd.info()["LoggingDriver"], "local");
    assert_eq!(
        [
            process(&dockerd, "gitlab-dind"),
            process(&dockerd, "gitlab-runner"),
        ],
        before,
        "the same containers run on, with the same processes"
    );
    host.converged();
}

/// Issue 21: without live-restore, Docker's restart would kill the runner's running job; berth
/// drains the runner first (SIGQUIT: the job finishes), restarts Docker, and starts it again.
#[test]
fn without_live_restore_the_runner_is_drained_before_docker_restarts() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = without_live_restore(&root, &dockerd);
    let (runner, _, _) = process(&dockerd, "gitlab-runner");
    let pid = dockerd.pid();
    host.layers.push(restart_recording_the_job(&root, &dockerd));

    let plan = host.run("plan");
    plan.code(2);
    assert!(
        line_starting(&plan.stdout, "daemon/docker ")
            .ends_with("~ restart   log-driver changed (drains gitlab-runner first)"),
        "{}",
        plan.stdout
    );
    host.run("apply").code(0);
    assert_ne!(dockerd.pid(), pid, "dockerd was restarted");
    assert_eq!(
        std::fs::read_to_string(root.scratch("restart").join("seen")).unwrap(),
        "job started\njob finished after SIGQUIT\n",
        "when Docker began to restart, the job had finished"
    );
    assert_eq!(
        root.read(JOB_RECORD).unwrap(),
        "job started\njob finished after SIGQUIT\njob started\n",
        "no job killed; the runner runs again"
    );
    let (after, _, running) = process(&dockerd, "gitlab-runner");
    assert_eq!(
        (after, running),
        (runner, true),
        "the same runner, started again"
    );
    host.converged();
}

/// Issue 21: berth killed after the drain, before Docker restarts: the next run finishes the
/// restart it journaled and the runner runs again.
#[test]
fn berth_killed_between_the_drain_and_the_restart_is_finished_by_the_next_run() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = without_live_restore(&root, &dockerd);
    let pid = dockerd.pid();
    let stub = RestartStub::new(
        &root,
        "kill-first",
        Some(&dockerd),
        Restart::KillBerthBefore,
    );
    host.layer(
        "killed",
        &format!(
            "{}[docker.daemon]\nlog-driver = \"local\"\n",
            stub.layer(Some(&dockerd), 60)
        ),
    );
    let killed = host.run("apply");
    assert_eq!(killed.code, -1, "berth was killed: {}", killed.transcript());
    assert_eq!(stub.calls(), 1);
    assert_eq!(dockerd.pid(), pid, "Docker did not restart");
    assert_eq!(
        root.read(JOB_RECORD).unwrap(),
        "job started\njob finished after SIGQUIT\n",
        "the runner was drained"
    );
    assert!(!process(&dockerd, "gitlab-runner").2, "and is stopped");

    // The timer's next run, with the profile's own restart.
    host.layers.pop();
    host.layer("log", "[docker.daemon]\nlog-driver = \"local\"\n");
    let plan = host.run("plan");
    plan.code(2);
    assert!(
        line_starting(&plan.stdout, "daemon/docker ").contains(
            "! recover   an interrupted run left Docker restarting into a daemon.json it had not confirmed"
        ) && line_starting(&plan.stdout, "daemon/docker ")
            .ends_with("(starts gitlab-runner again after)"),
        "{}",
        plan.stdout
    );
    host.run("apply").code(0);
    assert_ne!(dockerd.pid(), pid, "the restart was finished");
    assert_eq!(dockerd.info()["LoggingDriver"], "local");
    assert!(
        process(&dockerd, "gitlab-runner").2,
        "the runner runs again"
    );
    assert_eq!(
        root.read(JOB_RECORD).unwrap(),
        "job started\njob finished after SIGQUIT\njob started\n",
        "no job killed"
    );
    assert!(!root.exists("/var/lib/berth/journal.json"));
    host.converged();
}
