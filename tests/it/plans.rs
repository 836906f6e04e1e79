//! Issue 13, points 3 to 5: exit codes that mean one thing, `plan --out` and `apply PLAN`
//! (exactly the reviewed changes, or nothing when the host or the profiles changed since),
//! apply's question on a terminal, and progress lines on long steps (a restart, a drain, a pull).

use std::{path::PathBuf, time::Duration};

use crate::{
    fault_tools::{Restart, RestartStub},
    gitlab_server::{DELETE_MANAGER, GitLab, VERIFY},
    harness::{Berth, Root, berth, profile_file, start_gitlab},
    require_dockerd,
};

const CONFIG: &str = "/srv/gitlab-runner/config.toml";
const GLRT: &str = "glrt-Pq8sLm2Vx7Nc4Rt9Wz3K";
const TOKEN_FILE: &str = "/etc/berth/tokens/docker-runner";

fn layer(root: &Root, name: &str, text: &str) -> PathBuf {
    profile_file(&root.join("/work"), name, text)
}

fn p(command: Berth, profiles: &[&PathBuf]) -> Berth {
    profiles.iter().fold(command, |command, profile| {
        command.args(["-p".as_ref(), profile.as_os_str()])
    })
}

/// A host with a runner GitLab knows (a glrt- token in a root-only file), the profile that
/// declares it, and the one that no longer does.
fn runner_host() -> (Root, GitLab, PathBuf, PathBuf) {
    let root = Root::new();
    let gitlab = start_gitlab();
    gitlab.add_runner(GLRT);
    root.write(TOKEN_FILE, &format!("{GLRT}\n"));
    root.chmod(TOKEN_FILE, 0o600);
    let global = format!("[runner]\nconfig = \"{CONFIG}\"\nconcurrent = 4\n");
    let with_runner = layer(
        &root,
        "with-runner",
        &format!(
            "{global}[runners.docker-runner]\nurl = \"{}\"\ntoken_file = \"{TOKEN_FILE}\"\nexecutor = \"docker\"\n[runners.docker-runner.docker]\nimage = \"docker:27\"\n",
            gitlab.url()
        ),
    );
    let without = layer(&root, "without-runner", &global);
    (root, gitlab, with_runner, without)
}

fn runner_berth(root: &Root, gitlab: &GitLab) -> Berth {
    let address = gitlab.url().split("://").nth(1).unwrap().to_owned();
    // No colour on the terminal runs: the snapshot is of the words.
    berth(root).filter(address, "[GITLAB]").env("NO_COLOR", "1")
}

#[test]
fn usage_errors_exit_1_and_help_and_version_exit_0() {
    let root = Root::new();
    let bogus = berth(&root).args(["plan", "--bogus"]).run();
    insta::assert_snapshot!(bogus.transcript(), @r"
    exit: 1
    --- stdout
    --- stderr
    error: unexpected argument '--bogus' found

    Usage: berth plan [OPTIONS]

    For more information, try '--help'.
    ");
    berth(&root)
        .args(["--color", "sometimes", "plan"])
        .run()
        .code(1);
    let nothing = berth(&root).run();
    nothing.code(1);
    assert!(
        nothing.stderr.contains("Usage: berth"),
        "{}",
        nothing.stderr
    );
    berth(&root).args(["plan", "--help"]).run().code(0);
    let version = berth(&root).args(["--version"]).run();
    version.code(0);
    assert!(version.stdout.starts_with("berth "), "{}", version.stdout);
    assert!(!root.exists("/etc/docker/daemon.json"), "nothing ran");
}

#[test]
fn plan_exits_0_in_sync_2_pending_1_on_error_and_1_when_a_change_would_be_refused() {
    // Files only: on a temp root Docker cannot be installed, which would be a refusal.
    let root = Root::new();
    let files = layer(
        &root,
        "files",
        "[kernel]\nmodules = [\"overlay\"]\n\n[docker.daemon]\nstorage-driver = \"overlay2\"\n",
    );
    p(berth(&root), &[&files]).args(["plan"]).run().code(2);
    p(berth(&root), &[&files]).args(["apply"]).run().code(0);
    p(berth(&root), &[&files]).converged();
    berth(&root)
        .args(["-p", "no-such-profile", "plan"])
        .run()
        .code(1);

    // dockerd would not start with `hosts` in daemon.json and `-H` in its unit: refused.
    let refused_root = Root::new();
    refused_root.write(
        "/lib/systemd/system/docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
    );
    let hosts = layer(
        &refused_root,
        "hosts",
        "[docker.daemon]\nhosts = [\"unix:///var/run/docker.sock\"]\n",
    );
    let plan = p(berth(&refused_root), &[&hosts]).args(["plan"]).run();
    insta::assert_snapshot!(plan.stdout, @r#"
    daemon-config    + create    /etc/docker/daemon.json
        --- /etc/docker/daemon.json
        +++ /etc/docker/daemon.json
        @@ -0,0 +1,5 @@
        +{
        +  "hosts": [
        +    "unix:///var/run/docker.sock"
        +  ]
        +}
        refused: dockerd would refuse to start: `hosts` (flag `-H fd://`) also set on its command line in `/lib/systemd/system/docker.service`; remove the key from the profile or the flag from the unit
    daemon/docker    + start     the daemon does not answer: Cannot connect to the Docker daemon at unix:///nonexistent/berth-test/docker.sock. Is the docker daemon running?

    Plan: 1 to add, 0 to change, 0 to destroy, 1 refused.
    "#);
    plan.code(1);
    let json = p(berth(&refused_root), &[&hosts])
        .args(["plan", "--json"])
        .run();
    json.code(1);
    let document = json.json();
    assert_eq!(document["changes"][0]["status"], "refused");
    assert_eq!(document["changes"][1]["status"], "planned");
    assert_eq!(document["summary"]["refused"], 1);
    assert_eq!(document["summary"]["add"], 1);
    p(berth(&refused_root), &[&hosts])
        .args(["apply"])
        .run()
        .code(1);
    assert!(!refused_root.exists("/etc/docker/daemon.json"));
}

#[test]
fn a_saved_plan_is_applied_exactly_refused_once_the_host_or_a_profile_changed_and_holds_no_token() {
    let (root, gitlab, with_runner, without) = runner_host();
    let saved = root.scratch("plans").join("register.json");
    let plan = p(runner_berth(&root, &gitlab), &[&with_runner])
        .args(["plan".as_ref(), "--out".as_ref(), saved.as_os_str()])
        .run();
    plan.code(2);
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(!text.contains(GLRT), "no token in the plan file:\n{text}");
    let address = gitlab.url().split("://").nth(1).unwrap().to_owned();
    let document: serde_json::Value =
        serde_json::from_str(&text.replace(&address, "[GITLAB]")).unwrap();
    assert_eq!(
        document["changes"],
        p(runner_berth(&root, &gitlab), &[&with_runner])
            .args(["plan", "--json"])
            .run()
            .json()["changes"],
        "the file holds the changes plan printed"
    );
    assert!(
        document["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // Carried out from anywhere, with no -p: the plan names its profiles.
    let apply = runner_berth(&root, &gitlab)
        .args(["apply".as_ref(), saved.as_os_str()])
        .run();
    apply.code(0);
    assert_eq!(gitlab.calls(VERIFY), 1);
    assert!(root.read(CONFIG).unwrap().contains(GLRT));
    p(runner_berth(&root, &gitlab), &[&with_runner]).converged();

    // The runner leaves the profile; config.toml (with its token) is read for this plan.
    let unregister = root.scratch("plans").join("unregister.json");
    p(runner_berth(&root, &gitlab), &[&without])
        .args(["plan".as_ref(), "--out".as_ref(), unregister.as_os_str()])
        .run()
        .code(2);
    let text = std::fs::read_to_string(&unregister).unwrap();
    assert!(text.contains("unregister"), "{text}");
    assert!(!text.contains(GLRT), "no token in the plan file:\n{text}");

    // The profile is edited after the review: nothing is applied.
    let reviewed_profile = std::fs::read_to_string(&without).unwrap();
    std::fs::write(&without, format!("{reviewed_profile}check_interval = 7\n")).unwrap();
    let before = root.snapshot();
    let stale = runner_berth(&root, &gitlab)
        .args(["apply".as_ref(), unregister.as_os_str()])
        .run();
    stale.code(1);
    insta::with_settings!({filters => vec![
        (r"\(20[0-9T:.\-]+Z\)", "([TIME])"),
        (r"`[^`]*/plans/unregister.json`", "`[PLAN]`"),
    ]}, {
        insta::assert_snapshot!(stale.stderr.lines().last().unwrap(), @"error: nothing was applied: the host or the profiles changed since `[PLAN]` was planned ([TIME]): the profile `[ROOT]/work/without-runner.toml` was edited; run `berth plan --out` again and review it");
    });
    assert_eq!(root.snapshot(), before, "nothing changed on the host");
    assert_eq!(gitlab.calls(DELETE_MANAGER), 0, "GitLab was not asked");

    // The host changes after the review (a hand edit to config.toml): nothing is applied.
    std::fs::write(&without, reviewed_profile).unwrap();
    p(runner_berth(&root, &gitlab), &[&without])
        .args(["plan".as_ref(), "--out".as_ref(), unregister.as_os_str()])
        .run()
        .code(2);
    let config = root.read(CONFIG).unwrap();
    root.write(CONFIG, &format!("# edited by hand\n{config}"));
    let before = root.snapshot();
    let stale = runner_berth(&root, &gitlab)
        .args(["apply".as_ref(), unregister.as_os_str()])
        .run();
    stale.code(1);
    assert!(
        stale
            .stderr
            .contains("`/srv/gitlab-runner/config.toml` was changed"),
        "{}",
        stale.stderr
    );
    assert_eq!(root.snapshot(), before, "nothing changed on the host");
    assert_eq!(gitlab.calls(DELETE_MANAGER), 0);
    assert!(
        !root
            .read("/var/lib/berth/last-run.json")
            .unwrap()
            .contains("nothing was applied"),
        "a refused plan is not recorded as a failed run"
    );

    // Planned again on the host as it is, it goes through.
    p(runner_berth(&root, &gitlab), &[&without])
        .args(["plan".as_ref(), "--out".as_ref(), unregister.as_os_str()])
        .run()
        .code(2);
    runner_berth(&root, &gitlab)
        .args(["apply".as_ref(), unregister.as_os_str()])
        .run()
        .code(0);
    assert_eq!(gitlab.calls(DELETE_MANAGER), 1);
    p(runner_berth(&root, &gitlab), &[&without]).converged();

    // A saved plan brings its own profiles and flags.
    let mixed = p(runner_berth(&root, &gitlab), &[&without])
        .args(["apply".as_ref(), unregister.as_os_str()])
        .run();
    mixed.code(1);
    assert!(mixed.stderr.contains("drop -p"), "{}", mixed.stderr);
}

#[test]
fn apply_asks_on_a_terminal_before_it_unregisters_and_goes_ahead_without_one() {
    if !crate::harness::tool_available("script", "apt-get install util-linux") {
        return;
    }
    let (root, gitlab, with_runner, without) = runner_host();
    // Registering takes nothing back: no question, even on a terminal.
    let register = p(runner_berth(&root, &gitlab), &[&with_runner])
        .args(["apply"])
        .run_on_terminal("");
    register.code(0);
    assert!(!register.stdout.contains("Apply these changes?"));

    let before = root.snapshot();
    let last_run = root.read("/var/lib/berth/last-run.json");
    let declined = p(runner_berth(&root, &gitlab), &[&without])
        .args(["apply"])
        .run_on_terminal("no\n");
    declined.code(1);
    insta::with_settings!({filters => vec![(r"runner #\d+", "runner #[ID]")]}, {
    insta::assert_snapshot!(declined.stdout, @"
    no
    runner/docker-runner    - unregister remove this host's runner manager from runner #[ID] (DELETE /api/v4/runners/managers); the runner stays in GitLab; its entry leaves `/srv/gitlab-runner/config.toml`

    Plan: 0 to add, 0 to change, 1 to destroy.
    Apply these changes? These cannot be taken back: unregister runner/docker-runner.
      Only 'yes' will be accepted: error: apply cancelled: nothing was changed
    ");
    });
    assert_eq!(root.snapshot(), before, "nothing changed");
    assert_eq!(
        root.read("/var/lib/berth/last-run.json"),
        last_run,
        "a declined apply is not a run"
    );
    assert_eq!(gitlab.calls(DELETE_MANAGER), 0);

    let agreed = p(runner_berth(&root, &gitlab), &[&without])
        .args(["apply"])
        .run_on_terminal("yes\n");
    agreed.code(0);
    assert!(agreed.stdout.contains("Apply these changes?"));
    assert_eq!(gitlab.calls(DELETE_MANAGER), 1);

    // --yes: not asked.
    p(runner_berth(&root, &gitlab), &[&with_runner])
        .args(["apply"])
        .run()
        .code(0);
    let unasked = p(runner_berth(&root, &gitlab), &[&without])
        .args(["apply", "--yes"])
        .run_on_terminal("");
    unasked.code(0);
    assert!(!unasked.stdout.contains("Apply these changes?"));
    assert_eq!(gitlab.calls(DELETE_MANAGER), 2);

    // No terminal (the timer, a script): goes ahead as it always did.
    p(runner_berth(&root, &gitlab), &[&with_runner])
        .args(["apply"])
        .run()
        .code(0);
    let timer = p(runner_berth(&root, &gitlab), &[&without])
        .args(["apply"])
        .run();
    timer.code(0);
    assert!(!timer.stderr.contains("Apply these changes?"));
    assert_eq!(gitlab.calls(DELETE_MANAGER), 3);
}

#[test]
fn a_saved_plan_is_refused_once_a_container_was_stopped() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_busybox("berth-test/plans:1");
    let site = layer(
        &root,
        "site",
        "[containers.berth-test-planned]\nimage = \"berth-test/plans:1\"\ncommand = [\"sleep\", \"3600\"]\n",
    );
    let daemon = dockerd.layer_file();
    p(berth(&root).docker(&dockerd), &[&daemon, &site])
        .args(["apply"])
        .run()
        .code(0);
    let relabelled = layer(
        &root,
        "labels",
        "[containers.berth-test-planned.labels]\nteam = \"ci\"\n",
    );
    let saved = root.scratch("plans").join("relabel.json");
    p(
        berth(&root).docker(&dockerd),
        &[&daemon, &site, &relabelled],
    )
    .args(["plan".as_ref(), "--out".as_ref(), saved.as_os_str()])
    .run()
    .code(2);
    let id = dockerd.container_id("berth-test-planned");
    dockerd.docker(["stop", "--time", "1", "berth-test-planned"]);
    let stale = berth(&root)
        .docker(&dockerd)
        .args(["apply".as_ref(), saved.as_os_str()])
        .run();
    stale.code(1);
    assert!(
        stale.stderr.contains(
            "container/berth-test-planned changed (recreated, stopped, started or restarted)"
        ),
        "{}",
        stale.stderr
    );
    assert_eq!(
        dockerd.container_id("berth-test-planned"),
        id,
        "not replaced"
    );

    // Unchanged since the plan: applied.
    p(
        berth(&root).docker(&dockerd),
        &[&daemon, &site, &relabelled],
    )
    .args(["plan".as_ref(), "--out".as_ref(), saved.as_os_str()])
    .run()
    .code(2);
    berth(&root)
        .docker(&dockerd)
        .args(["apply".as_ref(), saved.as_os_str()])
        .run()
        .code(0);
    assert_eq!(
        dockerd.inspect_container("berth-test-planned")["Config"]["Labels"]["team"],
        "ci"
    );
    p(
        berth(&root).docker(&dockerd),
        &[&daemon, &site, &relabelled],
    )
    .converged();
    dockerd.docker(["rm", "--force", "berth-test-planned"]);
}

#[test]
fn a_slow_docker_restart_says_every_ten_seconds_that_it_waits() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let stub = RestartStub::new(
        &root,
        "slow",
        Some(&dockerd),
        Restart::SleepThenReal(Duration::from_secs(11)),
    );
    let site = layer(
        &root,
        "site",
        &format!(
            "{}[docker.daemon]\nlog-driver = \"local\"\n",
            stub.layer(Some(&dockerd), 60)
        ),
    );
    let apply = p(berth(&root).docker(&dockerd), &[&site])
        .args(["apply"])
        .run();
    apply.code(0);
    assert_eq!(stub.calls(), 1);
    let waiting: Vec<&str> = apply
        .stderr
        .lines()
        .filter(|line| line.contains("waiting for dockerd"))
        .collect();
    assert_eq!(
        waiting,
        ["daemon/docker: waiting for dockerd (10 s of 60 s)"],
        "{}",
        apply.stderr
    );
}

#[test]
fn a_draining_container_says_every_ten_seconds_that_it_waits() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    // Ignores SIGTERM, as a runner busy with a job would keep running: docker stop waits the
    // whole stop timeout.
    dockerd.import_stand_in(
        "berth-test/drain:1",
        "trap '' TERM; while :; do sleep 1; done",
        &[],
    );
    let daemon = dockerd.layer_file();
    let site = layer(
        &root,
        "site",
        "[containers.berth-test-drain]\nimage = \"berth-test/drain:1\"\nstop_timeout = 12\n",
    );
    p(berth(&root).docker(&dockerd), &[&daemon, &site])
        .args(["apply"])
        .run()
        .code(0);
    let relabelled = layer(
        &root,
        "labels",
        "[containers.berth-test-drain.labels]\nteam = \"ci\"\n",
    );
    let replace = p(
        berth(&root).docker(&dockerd),
        &[&daemon, &site, &relabelled],
    )
    .args(["apply"])
    .run();
    replace.code(0);
    let waiting: Vec<&str> = replace
        .stderr
        .lines()
        .filter(|line| line.contains("waiting for"))
        .collect();
    assert_eq!(
        waiting,
        [
            "container/berth-test-drain: waiting for the old `berth-test-drain` to stop (it drains its running jobs) (10 s of 72 s)"
        ],
        "{}",
        replace.stderr
    );
    dockerd.docker(["rm", "--force", "berth-test-drain"]);
}

#[test]
fn a_pull_on_a_terminal_that_fails_keeps_dockers_error() {
    if !crate::harness::tool_available("script", "apt-get install util-linux") {
        return;
    }
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let site = layer(
        &root,
        "site",
        "[containers.berth-test-gone]\nimage = \"berth-test/not-anywhere:1\"\n",
    );
    let apply = p(
        berth(&root).docker(&dockerd),
        &[&dockerd.layer_file(), &site],
    )
    .env("NO_COLOR", "1")
    .args(["apply"])
    .run_on_terminal("");
    apply.code(1);
    crate::harness::line_starting(
        &apply.stdout,
        "  caused by: image `berth-test/not-anywhere:1` could not be pulled",
    );
    // The daemon's words come next: the private daemon has no network to reach Docker Hub.
    let docker_said = apply
        .stdout
        .lines()
        .skip_while(|line| !line.contains("could not be pulled"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        docker_said.starts_with("  caused by: ") && docker_said.contains("registry-1.docker.io"),
        "docker's own words are kept for the error: {}",
        apply.stdout
    );
}

/// Issue 19: `pull = "always"` may drain and replace the running container (when the tag
/// moved), so plan counts it as a replace and apply asks about it on a terminal, as it does
/// for a replace; without a terminal (the timer) it goes ahead unasked, as it always did.
#[test]
fn a_pull_that_may_replace_the_container_is_asked_about_and_counted_like_a_replace() {
    if !crate::harness::tool_available("script", "apt-get install util-linux") {
        return;
    }
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_busybox("berth-test/pulled:1");
    let daemon = dockerd.layer_file();
    let site = layer(
        &root,
        "site",
        "[containers.berth-test-pulled]\nimage = \"berth-test/pulled:1\"\ncommand = [\"sleep\", \"3600\"]\n",
    );
    p(berth(&root).docker(&dockerd), &[&daemon, &site])
        .args(["apply"])
        .run()
        .code(0);
    let id = dockerd.container_id("berth-test-pulled");
    let always = layer(
        &root,
        "always",
        "[containers.berth-test-pulled]\npull = \"always\"\n",
    );
    let plan = p(berth(&root).docker(&dockerd), &[&daemon, &site, &always])
        .env("NO_COLOR", "1")
        .args(["plan"])
        .run();
    plan.code(2);
    insta::assert_snapshot!(plan.stdout, @r#"
    container/berth-test-pulled  -/+ pull      berth-test/pulled:1 (pull = "always"); replaces the container if the tag moved

    Plan: 1 to add, 0 to change, 1 to destroy.
    "#);
    let declined = p(berth(&root).docker(&dockerd), &[&daemon, &site, &always])
        .env("NO_COLOR", "1")
        .args(["apply"])
        .run_on_terminal("no\n");
    declined.code(1);
    assert!(
        declined.stdout.contains(
            "Apply these changes? These cannot be taken back: pull container/berth-test-pulled."
        ),
        "{}",
        declined.stdout
    );
    assert_eq!(
        dockerd.container_id("berth-test-pulled"),
        id,
        "nothing pulled, nothing replaced"
    );
    dockerd.docker(["rm", "--force", "berth-test-pulled"]);
}
