//! Interrupted runs and failing hosts (issue 9): berth or dockerd killed mid-step, a restart
//! command that fails or a daemon that hangs, a full disk under config.toml, a GitLab that
//! answers too late, secrets under `RUST_LOG=trace`, typos and symlinks in daemon.json. Each
//! test sets up the fault with the tools in `fault_tools` and asserts what the next run must
//! leave behind: a working host with exactly one of everything.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    fault_tools::{FaultDocker, FullDisk, HungDaemon, Restart, RestartStub, Target, Then},
    gitlab_server::CREATE,
    harness::{Dockerd, Root, Run, berth, profile_file, start_gitlab, unprivileged_layer},
    profiles::Converged,
    require_dockerd,
};

const DIND: &str = "gitlab-dind";
const RUNNER: &str = "gitlab-runner";
const NETWORK: &str = "gitlab-runner-net";
const CONFIG: &str = "/srv/gitlab-runner/config.toml";
const DAEMON_JSON: &str = "/etc/docker/daemon.json";

fn p_args(profiles: &[&Path]) -> Vec<OsString> {
    profiles
        .iter()
        .flat_map(|path| ["-p".into(), path.as_os_str().to_owned()])
        .collect()
}

/// A profile layer file under the root's /work.
fn layer(root: &Root, name: &str, text: &str) -> PathBuf {
    profile_file(&root.join("/work"), name, text)
}

/// Writes a token file readable by root only, as an operator would.
fn token_file(root: &Root, path: &str, token: &str) {
    root.write(path, &format!("{token}\n"));
    root.chmod(path, 0o600);
}

/// Runs `command` on a converged host with the faulty `docker` first on PATH.
fn faulted(host: &Converged, fault: &FaultDocker, command: &str) -> Run {
    berth(host.root)
        .docker(host.dockerd)
        .faulted(fault)
        .args([command])
        .args(host.args())
        .run()
}

/// The containers whose name starts with `gitlab-runner` (the runner and any set-aside copy).
fn runner_containers(dockerd: &Dockerd) -> Vec<String> {
    dockerd
        .container_names()
        .into_iter()
        .filter(|name| name.starts_with(RUNNER))
        .collect()
}

fn networks_named(dockerd: &Dockerd, name: &str) -> usize {
    dockerd
        .docker(["network", "ls", "--format", "{{.Name}}"])
        .lines()
        .filter(|line| *line == name)
        .count()
}

/// issue 9 case 1: berth is SIGKILLed while Docker restarts into a daemon.json dockerd refuses
/// (`storage-driver = "btrfs"` on a filesystem that is not btrfs: nothing but dockerd itself
/// can tell). The next apply, with the bad key gone from the profile, must leave Docker up on a
/// daemon.json it accepts.
#[test]
fn berth_killed_while_docker_restarts_into_a_refused_daemon_json() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let stub = RestartStub::new(
        &root,
        "kill-berth",
        Some(&dockerd),
        Restart::KillBerthDuring(Duration::from_millis(500)),
    );
    let bad = layer(
        &root,
        "bad",
        &format!(
            "{}[docker.daemon]\nlog-driver = \"local\"\nstorage-driver = \"btrfs\"\n",
            stub.layer(Some(&dockerd), 60)
        ),
    );
    let killed = berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(p_args(&[&bad]))
        .run();
    stub.wait_finished();
    assert_eq!(killed.code, -1, "berth was killed: {}", killed.transcript());
    assert_eq!(stub.calls(), 1);
    assert!(
        root.read(DAEMON_JSON).unwrap().contains("btrfs"),
        "the refused file is in place"
    );
    assert!(
        !dockerd.answers(),
        "dockerd refused it and is down: {}",
        dockerd.log()
    );

    // The operator takes the bad key out of the profile; the timer runs berth again.
    let good = layer(&root, "good", "[docker.daemon]\nlog-driver = \"local\"\n");
    let apply = berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(p_args(&[&dockerd.layer_file(), &good]))
        .run();
    apply.code(0);
    assert!(dockerd.answers(), "Docker is up: {}", dockerd.log());
    assert!(
        !root.read(DAEMON_JSON).unwrap().contains("btrfs"),
        "dockerd runs on a file it accepts: {}",
        root.read(DAEMON_JSON).unwrap()
    );
    assert_eq!(dockerd.info()["LoggingDriver"], "local");
    berth(&root)
        .docker(&dockerd)
        .args(["plan"])
        .args(p_args(&[&dockerd.layer_file(), &good]))
        .run()
        .code(0);
}

/// issue 9 case 2: dockerd dies in the middle of a container replacement, after the old runner
/// was set aside as `gitlab-runner.berth-old` (its restart=always brings it back with the
/// daemon). The next apply leaves exactly one runner container, nothing set aside, and a plan
/// that exits 0.
#[test]
fn dockerd_dies_during_a_container_replacement() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = Converged::new(&root, &dockerd, "dind", "");
    let fault = FaultDocker::install(&root, &dockerd);
    // Once before the new runner is created, once before it is started.
    for (round, kind) in ["create", "start"].into_iter().enumerate() {
        host.layer(
            &format!("round-{round}"),
            &format!("[containers.gitlab-runner.env]\nROUND = \"{round}\"\n"),
        );
        fault.arm(kind, 1, Target::Dockerd, Then::Proceed);
        let interrupted = faulted(&host, &fault, "apply");
        fault.wait_settled();
        let fired = fault.fired();
        fault.disarm();
        assert!(
            fired.is_some(),
            "round {round}: the apply reached `{kind}`: {:?}\n{}",
            fault.calls(),
            interrupted.transcript()
        );
        assert_ne!(
            interrupted.code,
            0,
            "round {round}: the daemon died under the apply\n{}",
            interrupted.transcript()
        );
        dockerd.restart();
        let came_back = dockerd.docker([
            "container",
            "ls",
            "--all",
            "--format",
            "{{.Names}} {{.State}}",
        ]);

        let apply = host.run("apply");
        assert_eq!(
            apply.code,
            0,
            "round {round} (dockerd killed at `{}`; after its restart: {came_back:?}): the next apply converges\n{}",
            fired.as_deref().unwrap_or_default(),
            apply.transcript()
        );
        assert_eq!(
            runner_containers(&dockerd),
            [RUNNER],
            "round {round} (dockerd killed at `{}`; after its restart: {came_back:?}): exactly one runner, nothing set aside",
            fired.as_deref().unwrap_or_default()
        );
        assert_eq!(
            dockerd.inspect_container(RUNNER)["Config"]["Env"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|value| value.as_str() == Some(&format!("ROUND={round}")))
                .count(),
            1,
            "round {round}: the runner is the new one"
        );
        let plan = host.run("plan");
        assert_eq!(plan.code, 0, "round {round}: {}", plan.transcript());
    }
}

/// issue 9 case 3: berth is SIGKILLed right after it set the old runner aside. `plan` must say
/// so (exit 2, a `recover` line naming the set-aside container), and the next apply must leave
/// one runner and nothing set aside.
#[test]
fn berth_killed_right_after_setting_a_container_aside() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = Converged::new(&root, &dockerd, "dind", "");
    host.layer("env", "[containers.gitlab-runner.env]\nEXTRA = \"1\"\n");
    let fault = FaultDocker::install(&root, &dockerd);
    fault.arm("rename", 1, Target::Berth, Then::Proceed);
    let killed = faulted(&host, &fault, "apply");
    fault.wait_settled();
    fault.disarm();
    assert_eq!(killed.code, -1, "berth was killed: {}", killed.transcript());
    let set_aside: Vec<String> = dockerd
        .container_names()
        .into_iter()
        .filter(|name| name.ends_with(".berth-old"))
        .collect();
    assert_eq!(
        set_aside,
        ["gitlab-runner.berth-old"],
        "berth was killed with the old runner set aside (calls: {:?})",
        fault.calls()
    );

    let plan = host.run("plan");
    plan.code(2);
    assert!(
        plan.stdout.contains("gitlab-runner.berth-old"),
        "plan names the set-aside container:\n{}",
        plan.stdout
    );
    assert!(
        plan.stdout.lines().any(|line| line.contains("recover")),
        "plan shows the interrupted step as a `recover` line:\n{}",
        plan.stdout
    );

    host.run("apply").code(0);
    assert_eq!(
        runner_containers(&dockerd),
        [RUNNER],
        "one runner, nothing set aside"
    );
    assert_eq!(
        dockerd.inspect_container(RUNNER)["State"]["Running"],
        true,
        "the runner runs"
    );
    host.run("plan").code(0);
}

/// issue 9 case 4: a network change Docker refuses (`com.docker.network.driver.mtu = "abc"`:
/// dockerd says "failed to parse com.docker.network.driver.mtu value: abc"). The apply fails,
/// but the old network is still there with the runner and dind attached.
#[test]
fn a_network_change_docker_refuses_keeps_the_old_network_attached() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = Converged::new(&root, &dockerd, "dind", "");
    let network_id = dockerd.docker(["network", "inspect", "--format", "{{.Id}}", NETWORK]);
    host.layer(
        "bad-mtu",
        "[networks.gitlab-runner-net.options]\n\"com.docker.network.driver.mtu\" = \"abc\"\n",
    );
    let apply = host.run("apply");
    apply.code(1);
    let still = dockerd.docker_unchecked(["network", "inspect", "--format", "{{.Id}}", NETWORK]);
    assert!(
        still.status.success(),
        "the old network still exists:\n{}",
        apply.transcript()
    );
    assert_eq!(
        String::from_utf8_lossy(&still.stdout).trim(),
        network_id,
        "it is the old network, untouched"
    );
    for container in [DIND, RUNNER] {
        let networks = &dockerd.inspect_container(container)["NetworkSettings"]["Networks"];
        assert!(
            networks.get(NETWORK).is_some(),
            "`{container}` is still attached to `{NETWORK}`: {networks}"
        );
    }
    let answer = host.exec(RUNNER, "nc gitlab-dind 2375");
    assert!(
        crate::harness::is_docker_ping(&answer),
        "the runner still reaches dind: {answer:?}"
    );
}

/// A network replacement is a multi-step change too: berth killed right after it removed the
/// old network (members disconnected, nothing created yet). The next apply creates it and puts
/// every member back with its aliases, before anything else.
#[test]
fn berth_killed_in_the_middle_of_a_network_replacement() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = Converged::new(&root, &dockerd, "dind", "");
    host.layer(
        "mtu",
        "[networks.gitlab-runner-net.options]\n\"com.docker.network.driver.mtu\" = \"1400\"\n",
    );
    let fault = FaultDocker::install(&root, &dockerd);
    // The first two remove the probe network (a stale one, then the one just made).
    fault.arm("network rm", 3, Target::Berth, Then::Proceed);
    let killed = faulted(&host, &fault, "apply");
    fault.wait_settled();
    fault.disarm();
    assert_eq!(killed.code, -1, "berth was killed: {}", killed.transcript());
    assert_eq!(
        networks_named(&dockerd, NETWORK),
        0,
        "killed with the network removed"
    );

    let plan = host.run("plan");
    plan.code(2);
    assert!(
        plan.stdout.lines().any(|line| line.contains("recover")),
        "plan shows the interrupted replacement:\n{}",
        plan.stdout
    );
    host.run("apply").code(0);
    assert_eq!(networks_named(&dockerd, NETWORK), 1);
    for container in [DIND, RUNNER] {
        let networks = &dockerd.inspect_container(container)["NetworkSettings"]["Networks"];
        assert!(
            networks.get(NETWORK).is_some(),
            "`{container}` is back on `{NETWORK}`: {networks}"
        );
    }
    let answer = host.exec(RUNNER, "nc gitlab-dind 2375");
    assert!(
        crate::harness::is_docker_ping(&answer),
        "the runner reaches dind by its alias again: {answer:?}"
    );
    host.run("plan").code(0);
}

/// issue 9 case 5: the disk where config.toml lives is full. However many applies run, GitLab
/// must end with at most one runner: berth refuses before registering, or records what it
/// registered and does not create another.
#[test]
fn a_full_disk_under_config_toml_never_registers_twice() {
    let root = Root::new();
    let Some(_disk) = FullDisk::mount(&root, "/srv/gitlab-runner", "64k") else {
        return;
    };
    let gitlab = start_gitlab();
    gitlab.add_access_token("glpat-createRunnerScope", &[7]);
    token_file(&root, "/etc/berth/tokens/pat", "glpat-createRunnerScope");
    let profile = layer(
        &root,
        "site",
        &format!(
            "[runner]\nconfig = \"{CONFIG}\"\nconcurrent = 2\n\n[runners.made]\nurl = \"{}\"\ncreate_token_file = \"/etc/berth/tokens/pat\"\nrunner_type = \"group_type\"\ngroup_id = 7\nexecutor = \"shell\"\n",
            gitlab.url()
        ),
    );
    for tick in 1..=3 {
        let apply = berth(&root).args(["apply"]).args(p_args(&[&profile])).run();
        assert_eq!(
            apply.code,
            1,
            "tick {tick}: config.toml cannot be written, so the apply fails\n{}",
            apply.transcript()
        );
    }
    let runners = gitlab.runners();
    assert!(
        runners.len() <= 1,
        "at most one runner in GitLab after 3 applies on a full disk, found {} (ids {:?}; {} POST /user/runners)",
        runners.len(),
        runners.iter().map(|runner| runner.id).collect::<Vec<_>>(),
        gitlab.calls(CREATE)
    );
}

/// issue 9 case 6: GitLab creates the runner but answers `POST /api/v4/user/runners` only after
/// berth's 30 s timeout. After the next applies exactly one runner exists in GitLab: berth found
/// the orphan (and deleted it, registering once), or refuses with a how-to, but never creates a
/// second one. (Takes berth's CALL_TIMEOUT, 30 s, once.)
#[test]
fn a_runner_created_after_berths_timeout_is_not_created_again() {
    let root = Root::new();
    let gitlab = start_gitlab();
    gitlab.add_access_token("glpat-createRunnerScope", &[7]);
    gitlab.answer_late(CREATE, Duration::from_secs(45));
    token_file(&root, "/etc/berth/tokens/pat", "glpat-createRunnerScope");
    let profile = layer(
        &root,
        "site",
        &format!(
            "[runner]\nconfig = \"{CONFIG}\"\nconcurrent = 2\n\n[runners.made]\nurl = \"{}\"\ncreate_token_file = \"/etc/berth/tokens/pat\"\nrunner_type = \"group_type\"\ngroup_id = 7\nexecutor = \"shell\"\n",
            gitlab.url()
        ),
    );
    let started = Instant::now();
    let first = berth(&root).args(["apply"]).args(p_args(&[&profile])).run();
    assert_eq!(
        first.code,
        1,
        "berth gave up waiting for GitLab\n{}",
        first.transcript()
    );
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "berth's own timeout ended the call"
    );
    assert_eq!(
        gitlab.runners().len(),
        1,
        "GitLab created the runner berth never heard of"
    );
    for _ in 0..2 {
        berth(&root).args(["apply"]).args(p_args(&[&profile])).run();
    }
    let runners = gitlab.runners();
    assert_eq!(
        runners.len(),
        1,
        "exactly one runner in GitLab, found {} ({} POST /user/runners)",
        runners.len(),
        gitlab.calls(CREATE)
    );
}

/// issue 9 case 7: `RUST_LOG=trace berth apply` with three runners (a glrt- token, a
/// registration token, an access token) and an S3 cache: nothing berth prints contains a
/// runner token, an access token or a cache key.
#[test]
fn trace_logging_prints_no_token_and_no_cache_key() {
    let root = Root::new();
    let gitlab = start_gitlab();
    let glrt = "glrt-TraceLoggedRunner7Qx";
    gitlab.add_runner(glrt);
    gitlab.add_registration_token("GR1348941traceRegToken");
    gitlab.add_access_token("glpat-traceCreateScope99", &[7]);
    token_file(&root, "/etc/berth/tokens/glrt", glrt);
    token_file(
        &root,
        "/etc/berth/tokens/registration",
        "GR1348941traceRegToken",
    );
    token_file(&root, "/etc/berth/tokens/pat", "glpat-traceCreateScope99");
    let access_key = "AKIAFAULTTRACE0000001";
    let secret_key = "cacheSecretKey/Trace+Fault9";
    let profile = layer(
        &root,
        "site",
        &format!(
            r#"[runner]
config = "{CONFIG}"
concurrent = 3

[runners.verified]
url = "{url}"
token_file = "/etc/berth/tokens/glrt"
executor = "shell"
[runners.verified.cache]
Type = "s3"
Shared = true
[runners.verified.cache.s3]
ServerAddress = "s3.example.com"
AccessKey = "{access_key}"
SecretKey = "{secret_key}"
BucketName = "runner-cache"

[runners.legacy]
url = "{url}"
registration_token_file = "/etc/berth/tokens/registration"
executor = "shell"

[runners.made]
url = "{url}"
create_token_file = "/etc/berth/tokens/pat"
runner_type = "group_type"
group_id = 7
executor = "shell"
"#,
            url = gitlab.url()
        ),
    );
    let apply = berth(&root)
        .env("RUST_LOG", "trace")
        .args(["apply"])
        .args(p_args(&[&profile]))
        .run();
    apply.code(0);
    assert_eq!(gitlab.runners().len(), 3, "every flow ran");
    // berth's own debug lines show the level took effect; the HTTP library's byte dumps, which
    // would hold the tokens, are what must not appear.
    assert!(
        apply.stderr.contains("debug: POST"),
        "trace logging is on:\n{}",
        apply.stderr
    );
    let mut secrets: Vec<String> = vec![
        glrt.into(),
        "GR1348941traceRegToken".into(),
        "glpat-traceCreateScope99".into(),
        access_key.into(),
        secret_key.into(),
    ];
    secrets.extend(gitlab.runners().into_iter().map(|runner| runner.token));
    for (stream, text) in [("stdout", &apply.stdout), ("stderr", &apply.stderr)] {
        let dumped = decode_hex_dumps(text);
        for secret in &secrets {
            let lines: Vec<&str> = text
                .lines()
                .filter(|line| line.contains(secret.as_str()))
                .collect();
            assert!(
                lines.is_empty(),
                "`{secret}` appears on {stream}:\n{}",
                lines.join("\n")
            );
            if let Some(at) = dumped.find(secret.as_str()) {
                let start = dumped[..at]
                    .char_indices()
                    .rev()
                    .nth(40)
                    .map_or(0, |(index, _)| index);
                panic!(
                    "`{secret}` appears on {stream} in a hex dump of the HTTP bytes (trace level); decoded: {:?}",
                    &dumped[start..(at + secret.len()).min(dumped.len())]
                );
            }
        }
    }
}

/// The bytes of every hex dump line in `text` (`trace: 504f 5354 202f …  POST./api/v4/…`, as
/// ureq logs what it sends and receives at trace level), decoded and joined, so that a secret
/// split over two dump lines is still found.
fn decode_hex_dumps(text: &str) -> String {
    let mut bytes = Vec::new();
    for line in text.lines() {
        let Some((_, rest)) = line.split_once(": ") else {
            continue;
        };
        let Some((hex, _ascii)) = rest.split_once("  ") else {
            continue;
        };
        let groups: Vec<&str> = hex.split(' ').collect();
        let is_dump = !groups.is_empty()
            && groups.iter().all(|group| {
                group.len() == 4 && group.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
            });
        if !is_dump {
            continue;
        }
        for group in groups {
            for pair in [&group[..2], &group[2..]] {
                if let Ok(byte) = u8::from_str_radix(pair, 16) {
                    bytes.push(byte);
                }
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// issue 9 case 8: a daemon.json key typo (`registry-mirror`) is an error of `berth validate`
/// naming the file, line and key with "did you mean `registry-mirrors`"; a mirror with a path,
/// a query or credentials is refused and its password never printed; Docker is never restarted.
#[test]
fn a_daemon_json_typo_and_a_bad_mirror_are_refused_before_docker_restarts() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let pid = dockerd.pid();
    let original = root.read(DAEMON_JSON).unwrap();
    let daemon_layer = layer(
        &root,
        "daemon",
        &dockerd
            .layer()
            .replace("ready_timeout = 60", "ready_timeout = 5"),
    );
    let typo = layer(
        &root,
        "site",
        "[docker.daemon]\nlog-driver = \"json-file\"\nregistry-mirror = [\"https://mirror.example.com\"]\n",
    );
    let validate = berth(&root).args(["validate"]).args(p_args(&[&typo])).run();
    validate.code(1);
    let output = format!("{}{}", validate.stdout, validate.stderr);
    assert!(
        output.contains("[ROOT]/work/site.toml:3:"),
        "names the file and line: {output}"
    );
    assert!(
        output.contains("registry-mirror`"),
        "names the key: {output}"
    );
    assert!(
        output.contains("did you mean `registry-mirrors`"),
        "{output}"
    );
    let apply = berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(p_args(&[&daemon_layer, &typo]))
        .run();
    apply.code(1);
    assert_eq!(dockerd.pid(), pid, "Docker was not restarted for a typo");
    assert_eq!(root.read(DAEMON_JSON).unwrap(), original);

    let password = "Pa55w0rdMirrorSecret";
    for mirror in [
        "https://mirror.example.com/some/path".to_owned(),
        "https://mirror.example.com/?proxy=1".to_owned(),
        format!("https://mirror-user:{password}@mirror.example.com"),
    ] {
        let profile = layer(
            &root,
            "mirror",
            &format!("[docker.daemon]\nregistry-mirrors = [\"{mirror}\"]\n"),
        );
        for command in ["validate", "plan", "apply"] {
            let run = berth(&root)
                .docker(&dockerd)
                .args([command])
                .args(p_args(&[&daemon_layer, &profile]))
                .run();
            assert_eq!(
                run.code,
                1,
                "`{command}` refuses the mirror `{}`\n{}",
                mirror.replace(password, "***"),
                run.transcript().replace(password, "<PASSWORD>")
            );
            assert!(
                !run.stdout.contains(password) && !run.stderr.contains(password),
                "`{command}` printed the mirror's password:\n{}",
                run.transcript()
            );
        }
        assert_eq!(dockerd.pid(), pid, "Docker was not restarted");
        assert_eq!(root.read(DAEMON_JSON).unwrap(), original);
        assert!(!root.exists("/etc/docker/daemon.json.berth-rejected"));
    }
}

/// issue 9 case 9: a restart command that fails (exit 1 without touching dockerd, or a program
/// that is not installed) leaves no `daemon.json.berth-rejected`: dockerd never saw the file,
/// so nothing was refused. The previous daemon.json is restored (a host that had none has
/// none), and the next apply tries again.
#[test]
fn a_failing_restart_command_restores_daemon_json_and_the_next_apply_retries() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let original = root.read(DAEMON_JSON).unwrap();
    let failing = RestartStub::new(&root, "fail", Some(&dockerd), Restart::Fail);
    let keys = "[docker.daemon]\nlog-driver = \"local\"\n";
    let profile = layer(
        &root,
        "site",
        &format!("{}{keys}", failing.layer(Some(&dockerd), 5)),
    );
    let pid = dockerd.pid();
    let apply = berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(p_args(&[&profile]))
        .run();
    apply.code(1);
    assert!(failing.calls() >= 1, "berth ran the restart command");
    assert_eq!(dockerd.pid(), pid, "the stub did not touch dockerd");
    assert!(
        !root.exists("/etc/docker/daemon.json.berth-rejected"),
        "dockerd never saw the file, so nothing is marked refused:\n{}",
        apply.transcript()
    );
    assert_eq!(
        root.read(DAEMON_JSON).unwrap(),
        original,
        "the previous daemon.json is back"
    );

    let calls = failing.calls();
    let again = berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(p_args(&[&profile]))
        .run();
    again.code(1);
    assert!(
        failing.calls() > calls,
        "the next apply tried the restart again:\n{}",
        again.transcript()
    );
    assert!(!root.exists("/etc/docker/daemon.json.berth-rejected"));

    // Once the restart command works, the change goes through.
    let fixed = layer(&root, "fixed", keys);
    berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(p_args(&[&dockerd.layer_file(), &fixed]))
        .run()
        .code(0);
    assert_eq!(dockerd.info()["LoggingDriver"], "local");

    // A host without daemon.json, whose restart command is not even installed.
    let bare = Root::new();
    let bare_dockerd = require_dockerd!(&bare);
    std::fs::remove_file(bare.join(DAEMON_JSON)).unwrap();
    let missing = layer(
        &bare,
        "site",
        &format!(
            "[docker]\nrestart = [\"/nonexistent/berth-test/restart-docker\"]\nready_timeout = 5\n{keys}"
        ),
    );
    let apply = berth(&bare)
        .docker(&bare_dockerd)
        .args(["apply"])
        .args(p_args(&[&missing]))
        .run();
    apply.code(1);
    assert!(
        !bare.exists(DAEMON_JSON),
        "a host that had no daemon.json has none:\n{}",
        apply.transcript()
    );
    assert!(
        !bare.exists("/etc/docker/daemon.json.berth-rejected"),
        "nothing is marked refused:\n{}",
        apply.transcript()
    );
}

/// issue 9 case 10: a daemon that accepts connections but never answers (a wedged dockerd) is
/// not a stopped one: `plan` does not plan `+ start`, and `apply` does not run the restart
/// command unless `[docker] restart_unresponsive = true`. (berth's `docker` query timeout is
/// 60 s, so these runs take a minute or two; they run side by side.)
#[test]
fn a_daemon_that_accepts_but_never_answers_is_not_restarted_unless_asked() {
    // Fields drop in order: the hung daemon before the root that holds its socket.
    struct HungHost {
        hung: HungDaemon,
        stub: RestartStub,
        profile: PathBuf,
        root: Root,
    }
    let hung_host = |extra: &str| {
        let root = Root::new();
        root.write(
            "/lib/systemd/system/docker.service",
            "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
        );
        let hung = HungDaemon::start(&root.scratch("hung").join("docker.sock"));
        let stub = RestartStub::new(&root, "nothing", None, Restart::Nothing);
        let profile = layer(&root, "site", &format!("{}{extra}", stub.layer(None, 1)));
        HungHost {
            hung,
            stub,
            profile,
            root,
        }
    };
    let run = |host: &HungHost, command: &str| {
        berth(&host.root)
            .env("DOCKER_HOST", host.hung.host())
            .args([command])
            .args(p_args(&[&host.profile]))
            .run()
    };
    let planned = hung_host("");
    let applied = hung_host("");
    let allowed = hung_host("restart_unresponsive = true\n");
    let (plan, apply, apply_allowed) = std::thread::scope(|scope| {
        let plan = scope.spawn(|| run(&planned, "plan"));
        let apply = scope.spawn(|| run(&applied, "apply"));
        let apply_allowed = scope.spawn(|| run(&allowed, "apply"));
        (
            plan.join().unwrap(),
            apply.join().unwrap(),
            apply_allowed.join().unwrap(),
        )
    });
    assert!(
        planned.hung.connections() > 0,
        "berth's docker reached the hung socket"
    );
    // All three outcomes in one report: each is a separate demand on the fix.
    let mut failures = Vec::new();
    if plan.stdout.lines().any(|line| line.contains("+ start")) {
        failures.push(format!(
            "a daemon that accepts connections is planned as stopped:\n{}",
            plan.transcript()
        ));
    }
    if applied.stub.calls() != 0 {
        failures.push(format!(
            "apply ran the restart command {} time(s) for a daemon that only hangs:\n{}",
            applied.stub.calls(),
            apply.transcript()
        ));
    }
    if allowed.stub.calls() != 1 {
        failures.push(format!(
            "with restart_unresponsive = true apply ran the restart command {} time(s), not once:\n{}",
            allowed.stub.calls(),
            apply_allowed.transcript()
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// issue 9 case 11: daemon.json is a symlink. Inside the root, the link stays a link and its
/// target gets the new content; a link that points outside `--root` is refused and its target
/// left alone.
#[test]
fn a_symlinked_daemon_json_stays_a_link_and_one_outside_the_root_is_refused() {
    let root = Root::new();
    root.write("/etc/docker-real/daemon.json", "{}\n");
    root.mkdir("/etc/docker");
    std::os::unix::fs::symlink("../docker-real/daemon.json", root.join(DAEMON_JSON)).unwrap();
    let profile = layer(&root, "site", "[docker.daemon]\nlog-driver = \"local\"\n");
    berth(&root)
        .args(["apply"])
        .args(p_args(&[&profile]))
        .run()
        .code(0);
    let link = root.join(DAEMON_JSON);
    assert!(
        link.symlink_metadata().unwrap().file_type().is_symlink(),
        "daemon.json is still a link"
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../docker-real/daemon.json")
    );
    let target: serde_json::Value =
        serde_json::from_str(&root.read("/etc/docker-real/daemon.json").unwrap()).unwrap();
    assert_eq!(target["log-driver"], "local", "the target holds the change");
    berth(&root)
        .args(["plan"])
        .args(p_args(&[&profile]))
        .run()
        .code(0);

    // A link out of the root (relative, so it means the same inside and outside berth's view).
    let escaping = Root::new();
    let outside = escaping.scratch("outside").join("daemon.json");
    std::fs::write(&outside, "{}\n").unwrap();
    let relative = Path::new("../../..").join(
        outside
            .strip_prefix(escaping.path().parent().unwrap())
            .expect("the root and its scratch directory are siblings"),
    );
    escaping.mkdir("/etc/docker");
    std::os::unix::fs::symlink(&relative, escaping.join(DAEMON_JSON)).unwrap();
    assert_eq!(
        std::fs::canonicalize(escaping.join(DAEMON_JSON)).unwrap(),
        std::fs::canonicalize(&outside).unwrap()
    );
    let profile = layer(
        &escaping,
        "site",
        "[docker.daemon]\nlog-driver = \"local\"\n",
    );
    let apply = berth(&escaping)
        .args(["apply"])
        .args(p_args(&[&profile]))
        .run();
    apply.code(1);
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        "{}\n",
        "the file outside the root is untouched"
    );
    assert!(
        escaping
            .join(DAEMON_JSON)
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is left as it was"
    );
}

/// Everything a scratch apply of the `dind` profile made, removed, and daemon.json back to `{}`
/// (the running daemon keeps its settings; the next apply restarts it as from scratch).
fn back_to_scratch(root: &Root, dockerd: &Dockerd) {
    let ids = dockerd.docker(["container", "ls", "--all", "--quiet"]);
    let ids: Vec<&str> = ids.lines().filter(|id| !id.is_empty()).collect();
    if !ids.is_empty() {
        dockerd.docker(
            ["container", "rm", "--force", "--volumes"]
                .into_iter()
                .chain(ids),
        );
    }
    let networks = dockerd.docker([
        "network",
        "ls",
        "--filter",
        "label=berth.managed",
        "--format",
        "{{.Name}}",
    ]);
    for network in networks.lines().filter(|name| !name.is_empty()) {
        dockerd.docker(["network", "rm", network]);
    }
    let volumes = dockerd.docker(["volume", "ls", "--quiet"]);
    for volume in volumes.lines().filter(|name| !name.is_empty()) {
        dockerd.docker(["volume", "rm", volume]);
    }
    root.write(DAEMON_JSON, "{}\n");
    for leftover in [
        "/etc/docker/daemon.json.berth.bak",
        "/etc/docker/daemon.json.berth-rejected",
    ] {
        let _ = std::fs::remove_file(root.join(leftover));
    }
    for dir in ["/srv/gitlab-runner", "/var/lib/berth"] {
        let _ = std::fs::remove_dir_all(root.join(dir));
    }
}

/// issue 9 "done when": berth SIGKILLed at each docker call of a scratch apply of the `dind`
/// profile (the call itself still reaches the daemon), then one more apply converges and a plan
/// exits 0, with one dind, one runner, one network and nothing set aside. One private dockerd
/// serves every index; the host goes back to scratch between them.
#[test]
fn berth_killed_at_every_docker_call_of_a_scratch_dind_apply_then_one_apply_converges() {
    let root = Root::new();
    root.with_overlay_kernel();
    let dockerd = require_dockerd!(&root);
    dockerd.import_profile_images();
    let stand_ins = layer(&root, "stand-ins", &unprivileged_layer(&[DIND]));
    let mut profiles: Vec<OsString> = vec!["-p".into(), "dind".into()];
    profiles.extend(p_args(&[&dockerd.layer_file(), &stand_ins]));
    let fault = FaultDocker::install(&root, &dockerd);
    let run = |command: &str, with_fault: bool| {
        let mut berth = berth(&root).docker(&dockerd);
        if with_fault {
            berth = berth.faulted(&fault);
        }
        berth.args([command]).args(&profiles).run()
    };

    let started = Instant::now();
    back_to_scratch(&root, &dockerd);
    fault.clear_log();
    run("apply", true).code(0);
    // Every change berth makes, through the CLI or the Engine API: the network's and the
    // volume's create, each container's create and start.
    let calls = fault.changes();
    assert!(
        calls.len() >= 6,
        "berth's docker calls were seen: {calls:?}"
    );

    eprintln!("the docker calls of a scratch apply of `dind`: {calls:#?}");

    let mut failures = Vec::new();
    let mut reached = 0;
    for index in 1..=calls.len() {
        back_to_scratch(&root, &dockerd);
        fault.clear_log();
        fault.arm("*", index, Target::Berth, Then::Proceed);
        let killed = run("apply", true);
        fault.wait_settled();
        let fired = fault.fired();
        fault.disarm();
        let at = match &fired {
            Some(call) => {
                if killed.code != -1 {
                    failures.push(format!(
                        "#{index} `{call}`: berth was not killed\n{}",
                        killed.transcript()
                    ));
                    continue;
                }
                reached += 1;
                format!("#{index} `{call}`")
            }
            // This run made fewer calls (a daemon that answered sooner): nothing to kill.
            None => format!("#{index} (not reached: the run made fewer calls)"),
        };
        let apply = run("apply", false);
        if apply.code != 0 {
            failures.push(format!(
                "{at}: the next apply failed\n{}",
                apply.transcript()
            ));
            continue;
        }
        let plan = run("plan", false);
        if plan.code != 0 {
            failures.push(format!("{at}: plan after it\n{}", plan.transcript()));
        }
        let containers = dockerd.container_names();
        if containers != [DIND, RUNNER] {
            failures.push(format!("{at}: containers {containers:?}"));
        }
        let networks = networks_named(&dockerd, NETWORK);
        if networks != 1 {
            failures.push(format!("{at}: {networks} networks named `{NETWORK}`"));
        }
    }
    eprintln!(
        "killed berth at {reached} of {} docker call indices in {:.0?}",
        calls.len(),
        started.elapsed()
    );
    assert!(
        reached * 2 > calls.len(),
        "the fault fired at only {reached} of {} indices",
        calls.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} interruptions did not converge in one apply (calls: {calls:#?}):\n\n{}",
        failures.len(),
        calls.len(),
        failures.join("\n\n")
    );
}
