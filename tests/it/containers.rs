//! Networks, volumes and containers against a private dockerd: conflicts and `--adopt`,
//! explained drift, replacements that drain and keep data, images that cannot be pulled,
//! network replacement, one MTU, the constant number of docker calls, Docker down in `plan`;
//! and, without Docker, what `validate` says about container sections.

use std::{fs, path::Path};

use crate::{
    harness::{Berth, Dockerd, Root, berth, is_docker_ping, profile_file, write_executable},
    profiles::Converged,
    require_dockerd,
};

/// True when some line of `text` contains `expected`, runs of spaces collapsed.
fn has_line(text: &str, expected: &str) -> bool {
    let collapse = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let expected = collapse(expected);
    text.lines().any(|line| collapse(line).contains(&expected))
}

const APP_IMAGE: &str = "berth-test/app:1";
const APP_SCRIPT: &str = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";

/// A profile of `count` containers, one network, one volume. Each container comes `after` the one
/// with the index before it, and the profile lists them last first, so `after` alone orders them.
fn app_profile(count: usize) -> String {
    let mut text = String::from("[networks.berth-test-net]\n[volumes.berth-test-data]\n");
    for index in (0..count).rev() {
        text.push_str(&format!(
            "[containers.berth-test-app-{index}]\nimage = \"{APP_IMAGE}\"\nnetworks = [\"berth-test-net\"]\nvolumes = [\"berth-test-data:/data\"]\n"
        ));
        if index > 0 {
            text.push_str(&format!("after = [\"berth-test-app-{}\"]\n", index - 1));
        }
    }
    text
}

/// berth with the daemon's layer and `profile`; the subcommand comes after (`-p` is global).
fn with_profile(root: &Root, dockerd: &Dockerd, profile: &Path) -> Berth {
    berth(root).docker(dockerd).args([
        "-p".as_ref(),
        dockerd.layer_file().as_os_str(),
        "-p".as_ref(),
        profile.as_os_str(),
    ])
}

fn run(
    root: &Root,
    dockerd: &Dockerd,
    command: &str,
    profile: &Path,
    more: &[&str],
) -> crate::harness::Run {
    berth(root)
        .docker(dockerd)
        .args([command])
        .args(more)
        .args([
            "-p".as_ref(),
            dockerd.layer_file().as_os_str(),
            "-p".as_ref(),
            profile.as_os_str(),
        ])
        .run()
}

#[test]
fn a_same_named_container_berth_did_not_create_is_a_conflict_and_left_alone() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_stand_in(APP_IMAGE, APP_SCRIPT, &[]);
    dockerd.docker(["run", "--detach", "--name", "berth-test-app-0", APP_IMAGE]);
    dockerd.docker(["volume", "create", "berth-test-kept"]);
    let foreign = dockerd.container_id("berth-test-app-0");
    let profile = profile_file(
        &root.join("/work"),
        "site",
        &(app_profile(2) + "[volumes.berth-test-kept]\n"),
    );

    let plan = run(&root, &dockerd, "plan", &profile, &[]);
    plan.code(1);
    insta::assert_snapshot!(plan.transcript(), @r#"
    exit: 1
    --- stdout
    network/berth-test-net        + create    driver=bridge
    volume/berth-test-data        + create    driver=local
    volume/berth-test-kept        ~ update    a volume named `berth-test-kept` exists but berth did not create it (no berth.managed label); adopt it, data included
        labels.berth.managed: (absent) → "true"
        refused: berth does not touch a volume it did not create; rerun with --adopt to take it over as it is
    container/berth-test-app-0  -/+ replace   a container named `berth-test-app-0` exists but berth did not create it (no berth.managed label)
        labels.berth.managed: (absent) → "true"
        refused: berth does not touch a container it did not create; rerun with --adopt to replace it with the profile's (named volumes are kept)
    container/berth-test-app-1    + create    image berth-test/app:1

    Plan: 3 to add, 0 to change, 0 to destroy, 2 refused.
    --- stderr
    "#);

    let apply = run(&root, &dockerd, "apply", &profile, &[]);
    apply.code(1);
    // The rest of the host converged, but for what comes after the refused container.
    insta::assert_snapshot!(apply.transcript(), @r#"
    exit: 1
    --- stdout
    network/berth-test-net        + create    driver=bridge
    volume/berth-test-data        + create    driver=local
    volume/berth-test-kept        ~ update    a volume named `berth-test-kept` exists but berth did not create it (no berth.managed label); adopt it, data included  (failed)
        labels.berth.managed: (absent) → "true"
        refused: berth does not touch a volume it did not create; rerun with --adopt to take it over as it is
    container/berth-test-app-0  -/+ replace   a container named `berth-test-app-0` exists but berth did not create it (no berth.managed label)  (failed)
        labels.berth.managed: (absent) → "true"
        refused: berth does not touch a container it did not create; rerun with --adopt to replace it with the profile's (named volumes are kept)

    Apply failed: 2 added, 0 changed, 0 destroyed, 3 failed.
    --- stderr
    network/berth-test-net: create driver=bridge
    volume/berth-test-data: create driver=local
    error: refused to update `volume/berth-test-kept`
      caused by: berth does not touch a volume it did not create; rerun with --adopt to take it over as it is
    error: refused to replace `container/berth-test-app-0`
      caused by: berth does not touch a container it did not create; rerun with --adopt to replace it with the profile's (named volumes are kept)
    error: not attempted because `container/berth-test-app-0` failed
    "#);
    assert_eq!(
        dockerd.container_id("berth-test-app-0"),
        foreign,
        "left alone"
    );
    let labels = &dockerd.inspect_container("berth-test-app-0")["Config"]["Labels"];
    assert!(labels.get("berth.managed").is_none());
    assert!(
        dockerd
            .docker_unchecked(["network", "inspect", "berth-test-net"])
            .status
            .success()
    );
    assert!(
        dockerd
            .docker_unchecked(["volume", "inspect", "berth-test-data"])
            .status
            .success()
    );

    let adopt = run(&root, &dockerd, "apply", &profile, &["--adopt"]);
    adopt.code(0);
    assert_ne!(
        dockerd.container_id("berth-test-app-0"),
        foreign,
        "replaced by berth's own"
    );
    assert_eq!(
        dockerd.inspect_container("berth-test-app-0")["Config"]["Labels"]["berth.managed"],
        "true"
    );
    assert!(
        root.read("/var/lib/berth/adopted-volumes.json")
            .unwrap()
            .contains("\"berth-test-kept\"")
    );
    // The adoption holds without --adopt: the volume cannot be labelled, the record says it.
    with_profile(&root, &dockerd, &profile).converged();
}

#[test]
fn plan_explains_a_profile_change_field_by_field_and_json_carries_the_fields() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = Converged::new(&root, &dockerd, "dind", "");
    host.layer(
        "env",
        "[containers.gitlab-runner.env]\nDOCKER_HOST = \"tcp://docker:2375\"\n",
    );
    let plan = host.run("plan");
    plan.code(2);
    assert!(
        plan.stdout.contains("container/gitlab-runner  -/+ replace   the profile changed: env.DOCKER_HOST\n    env.DOCKER_HOST: \"tcp://gitlab-dind:2375\" → \"tcp://docker:2375\"\n"),
        "{}",
        plan.stdout
    );
    let json = host.run_with("plan", &["--json"]).json();
    let changes = json["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "only the runner: {changes:?}");
    assert_eq!(changes[0]["id"], "container/gitlab-runner");
    assert_eq!(changes[0]["action"], "replace");
    assert_eq!(
        changes[0]["fields"],
        serde_json::json!([{"path": "env.DOCKER_HOST", "before": "tcp://gitlab-dind:2375", "after": "tcp://docker:2375"}])
    );
}

#[test]
fn a_replacement_drains_with_the_stop_signal_keeps_named_volumes_and_drops_anonymous_ones() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = Converged::new(
        &root,
        &dockerd,
        "dind",
        "[containers.gitlab-runner]\nvolumes = [\"/srv/gitlab-runner:/etc/gitlab-runner\", \"/scratch\"]\n",
    );
    let runner = dockerd.container_id("gitlab-runner");
    let anonymous = |container: &str| -> Vec<String> {
        dockerd.inspect_container(container)["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|mount| mount["Destination"] == "/scratch")
            .map(|mount| mount["Name"].as_str().unwrap().to_owned())
            .collect()
    };
    let old_scratch = anonymous("gitlab-runner");
    assert_eq!(old_scratch.len(), 1);
    host.exec("gitlab-dind", "echo layers > /var/lib/docker/cache");

    host.layer("env", "[containers.gitlab-runner.env]\nEXTRA = \"1\"\n");
    host.run("apply").code(0);
    assert_ne!(dockerd.container_id("gitlab-runner"), runner);
    let drained = root.read("/srv/gitlab-runner/drained").unwrap_or_default();
    assert_eq!(
        drained.trim(),
        &runner[..12],
        "the old runner got SIGQUIT and drained"
    );
    let stop = &dockerd.inspect_container("gitlab-runner")["Config"];
    assert_eq!(
        (stop["StopSignal"].as_str(), stop["StopTimeout"].as_u64()),
        (Some("SIGQUIT"), Some(3600))
    );
    let volumes = dockerd.docker(["volume", "ls", "--quiet"]);
    assert!(
        !volumes.contains(&old_scratch[0]),
        "the old anonymous volume went with its container"
    );

    dockerd.docker(["tag", crate::harness::DIND_IMAGE, "docker:27.5-dind"]);
    host.layer(
        "tag",
        "[containers.gitlab-dind]\nimage = \"docker:27.5-dind\"\n",
    );
    let dind = dockerd.container_id("gitlab-dind");
    host.run("apply").code(0);
    assert_ne!(dockerd.container_id("gitlab-dind"), dind);
    assert_eq!(
        host.exec("gitlab-dind", "cat /var/lib/docker/cache"),
        "layers",
        "the named volume survived"
    );
    host.converged();
}

#[test]
fn an_image_that_cannot_be_pulled_fails_that_container_and_the_rest_converges() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_stand_in(APP_IMAGE, APP_SCRIPT, &[]);
    let profile = profile_file(
        &root.join("/work"),
        "site",
        &format!(
            "[containers.berth-test-gone]\nimage = \"berth-test/not-anywhere:1\"\n[containers.berth-test-never]\nimage = \"berth-test/not-here:1\"\npull = \"never\"\n[containers.berth-test-app]\nimage = \"{APP_IMAGE}\"\n"
        ),
    );
    let plan = run(&root, &dockerd, "plan", &profile, &[]);
    plan.code(1);
    insta::assert_snapshot!(plan.transcript(), @r#"
    exit: 1
    --- stdout
    container/berth-test-gone     + create    image berth-test/not-anywhere:1; pulls berth-test/not-anywhere:1 (not on the host)
    container/berth-test-never    + create    image berth-test/not-here:1
        refused: image `berth-test/not-here:1` is not on the host and pull = "never"; load it (`docker load`) or allow pulling
    container/berth-test-app      + create    image berth-test/app:1

    Plan: 2 to add, 0 to change, 0 to destroy, 1 refused.
    --- stderr
    "#);
    let apply = run(&root, &dockerd, "apply", &profile, &[]);
    apply.code(1);
    // What the daemon says about the registry it cannot reach depends on the machine.
    insta::with_settings!({filters => vec![(r#"registry-1.docker.io/v2/": .*"#, r#"registry-1.docker.io/v2/": [WHY]"#)]}, {
        insta::assert_snapshot!(apply.transcript(), @r#"
        exit: 1
        --- stdout
        container/berth-test-gone     + create    image berth-test/not-anywhere:1; pulls berth-test/not-anywhere:1 (not on the host)  (failed)
        container/berth-test-never    + create    image berth-test/not-here:1  (failed)
            refused: image `berth-test/not-here:1` is not on the host and pull = "never"; load it (`docker load`) or allow pulling
        container/berth-test-app      + create    image berth-test/app:1

        Apply failed: 1 added, 0 changed, 0 destroyed, 2 failed.
        --- stderr
        container/berth-test-gone: create image berth-test/not-anywhere:1; pulls berth-test/not-anywhere:1 (not on the host)
        container/berth-test-app: create image berth-test/app:1
        error: failed to create `container/berth-test-gone`
          caused by: image `berth-test/not-anywhere:1` could not be pulled
          caused by: Get "https://registry-1.docker.io/v2/": [WHY]
        error: refused to create `container/berth-test-never`
          caused by: image `berth-test/not-here:1` is not on the host and pull = "never"; load it (`docker load`) or allow pulling
        "#);
    });
    assert_eq!(
        dockerd.inspect_container("berth-test-app")["State"]["Running"],
        true
    );
}

#[test]
fn a_changed_network_option_replaces_the_network_and_reconnects_containers_with_their_aliases() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = Converged::new(&root, &dockerd, "dind", "");
    let ids = host.ids();
    let network = dockerd.docker([
        "network",
        "inspect",
        "--format",
        "{{.Id}}",
        "gitlab-runner-net",
    ]);
    host.layer("option", "[networks.gitlab-runner-net.options]\n\"com.docker.network.bridge.enable_icc\" = \"true\"\n");
    let plan = host.run("plan");
    plan.code(2);
    assert!(
        has_line(
            &plan.stdout,
            "network/gitlab-runner-net  -/+ replace   options.com.docker.network.bridge.enable_icc changed; reconnects gitlab-dind, gitlab-runner"
        ),
        "{}",
        plan.stdout
    );
    host.run("apply").code(0);
    host.converged();
    assert_ne!(
        dockerd.docker([
            "network",
            "inspect",
            "--format",
            "{{.Id}}",
            "gitlab-runner-net"
        ]),
        network
    );
    assert_eq!(
        host.ids(),
        ids,
        "the containers were reconnected, not replaced"
    );
    assert!(
        is_docker_ping(&host.exec("gitlab-runner", "nc docker 2375")),
        "with the alias `docker`"
    );
}

#[test]
fn a_network_removed_under_stopped_containers_is_recreated_and_they_are_reconnected() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let host = Converged::new(&root, &dockerd, "dind", "");
    host.drift(
        "network removed while its containers were stopped",
        || {
            dockerd.docker(["stop", "gitlab-runner", "gitlab-dind"]);
            dockerd.docker(["network", "rm", "gitlab-runner-net"]);
        },
        &[
            "network/gitlab-runner-net + create",
            "container/gitlab-dind ~ update changed outside berth: networks.gitlab-runner-net (repaired in place)",
            "networks.gitlab-runner-net: \"attached to a network that no longer exists\" → [\"docker\"]",
            "container/gitlab-dind + start the container is exited",
        ],
        &[],
    );
    assert!(is_docker_ping(
        &host.exec("gitlab-runner", "nc docker 2375")
    ));
}

#[test]
fn one_mtu_reaches_daemon_json_the_network_and_the_dind_daemon() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let host = Converged::new(&root, &dockerd, "dind", "mtu = 1400\n");
    let daemon_json: serde_json::Value =
        serde_json::from_str(&root.read("/etc/docker/daemon.json").unwrap()).unwrap();
    assert_eq!(daemon_json["mtu"], 1400);
    let options = dockerd.docker([
        "network",
        "inspect",
        "--format",
        "{{json .Options}}",
        "gitlab-runner-net",
    ]);
    assert_eq!(options, r#"{"com.docker.network.driver.mtu":"1400"}"#);
    assert_eq!(
        dockerd.inspect_container("gitlab-dind")["Config"]["Cmd"],
        serde_json::json!(["--tls=false", "--mtu=1400"])
    );
    assert_eq!(
        host.exec("gitlab-runner", "cat /sys/class/net/eth0/mtu"),
        "1400"
    );
}

/// Runs a converged `command` (`plan` or `apply`) with a `docker` first on PATH that logs its
/// arguments before it runs the real one; returns what it logged.
fn docker_calls(root: &Root, dockerd: &Dockerd, profile: &Path, command: &str) -> Vec<String> {
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v docker"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let bin = root.join("/work/bin");
    let log = root.join("/work/docker.log");
    let _ = fs::remove_file(&log);
    write_executable(
        &bin,
        "docker",
        &format!(
            "#!/bin/sh\necho \"$1 $2\" >> {}\nexec {} \"$@\"\n",
            log.display(),
            real.trim()
        ),
    );
    berth(root)
        .docker(dockerd)
        .path_first(&bin)
        .args([command, "-p"])
        .args([
            dockerd.layer_file().as_os_str(),
            "-p".as_ref(),
            profile.as_os_str(),
        ])
        .run()
        .code(0);
    fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Issue 24: berth asks the daemon through its Engine API, so a converged run of one container
/// or twelve starts no `docker` process at all (the CLI asked eight questions, one process each).
#[test]
fn a_converged_plan_or_apply_of_one_container_or_twelve_starts_no_docker_process() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_stand_in(APP_IMAGE, APP_SCRIPT, &[]);
    let mut first = true;
    for count in [1, 12] {
        let profile = profile_file(
            &root.join("/work"),
            &format!("apps-{count}"),
            &app_profile(count),
        );
        let apply = run(&root, &dockerd, "apply", &profile, &[]);
        apply.code(0);
        // `after` orders creation whatever the profile's order.
        let created: Vec<&str> = apply
            .stdout
            .lines()
            .filter(|line| line.starts_with("container/"))
            .map(|line| line.split_whitespace().next().unwrap())
            .collect();
        let expected: Vec<String> = (usize::from(!first)..count)
            .map(|index| format!("container/berth-test-app-{index}"))
            .collect();
        assert_eq!(created, expected);
        first = false;
        for command in ["plan", "apply"] {
            assert_eq!(
                docker_calls(&root, &dockerd, &profile, command),
                Vec::<String>::new(),
                "a converged {command} of {count} containers"
            );
        }
    }
}

#[test]
fn with_docker_down_plan_warns_and_shows_the_file_changes_and_apply_starts_it_then_converges() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_profile_images();
    let stand_ins = profile_file(
        &root.join("/work"),
        "stand-ins",
        &crate::harness::unprivileged_layer(&["gitlab-dind"]),
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dockerd.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    while dockerd.docker_unchecked(["version"]).status.success() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let host = || {
        berth(&root)
            .docker(&dockerd)
            .args(["-p", "dind", "-p"])
            .args([
                dockerd.layer_file().as_os_str(),
                "-p".as_ref(),
                stand_ins.as_os_str(),
            ])
    };
    let args = |command: &str| host().args([command]).run();
    let plan = args("plan");
    plan.code(2);
    assert!(plan.stdout.contains("daemon-config"), "{}", plan.stdout);
    assert!(plan.stdout.contains("+ start"), "{}", plan.stdout);
    // Said once, by daemon/docker; every object is still listed and counted.
    assert_eq!(
        plan.stderr.matches("Docker does not answer").count(),
        1,
        "{}",
        plan.stderr
    );
    assert!(
        plan.stderr.contains("warning: daemon/docker: Docker does not answer: its networks, volumes and containers are compared once it runs"),
        "{}",
        plan.stderr
    );
    for object in [
        "network/gitlab-runner-net",
        "volume/gitlab-dind-data",
        "container/gitlab-dind",
        "container/gitlab-runner",
    ] {
        assert!(
            plan.stdout.lines().any(|line| line.starts_with(object)
                && line.contains("+ create")
                && line.ends_with("(after Docker starts)")),
            "{object}: {}",
            plan.stdout
        );
    }
    let apply = args("apply");
    apply.code(0);
    assert!(
        apply.stdout.contains("container/gitlab-runner"),
        "{}",
        apply.stdout
    );
    host().converged();
}

#[test]
fn validate_warns_about_dind_without_a_named_volume_and_other_traps() {
    let root = Root::new();
    let profile = profile_file(
        &root.join("/work"),
        "site",
        "[containers.dind]\nimage = \"docker:27-dind\"\nprivileged = true\n[containers.runner]\nimage = \"gitlab/gitlab-runner:v17.11.0\"\nvolumes = [\"/srv/gitlab-runner/config.toml:/etc/gitlab-runner/config.toml\"]\nstop_signal = \"SIGQUIT\"\n",
    );
    let run = berth(&root).args(["validate", "-p"]).args([&profile]).run();
    run.code(0);
    for expected in [
        // Issue 13, item 6: warnings are placed like errors.
        "site.toml:1:13: key `containers.dind`: container `dind` runs Docker-in-Docker without a named volume at /var/lib/docker",
        "site.toml:4:13: key `containers.runner`: container `runner` bind-mounts the file `/srv/gitlab-runner/config.toml`",
        "site.toml:4:13: key `containers.runner`: container `runner` sets `stop_signal` but no `stop_timeout`",
    ] {
        assert!(run.stdout.contains(expected), "{expected}\n{}", run.stdout);
    }
}

#[test]
fn bad_container_sections_are_located() {
    let root = Root::new();
    let cases = [
        (
            "[containers.a1]\nimage = \"x\"\nafter = [\"b1\"]\n[containers.b1]\nimage = \"x\"\nafter = [\"a1\"]\n",
            "site.toml:3:1: key `containers.a1.after`: `after` goes round in a circle among a1, b1",
        ),
        (
            "[containers.a1]\nimage = \"x\"\nafter = [\"zz\"]\n",
            "site.toml:3:1: key `containers.a1.after`: no container `zz` in the profile",
        ),
        (
            "[containers.a1]\nrestart = \"always\"\n",
            "site.toml:1:13: key `containers.a1`: a container needs an `image`",
        ),
        (
            "[containers.a1]\nimage = \"x\"\nports = [\"80/icmp\"]\n",
            "key `containers.a1.ports`: `80/icmp` is not [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp|sctp]: unknown protocol",
        ),
        (
            "[containers.a1]\nimage = \"x\"\nvolumes = [\"data:relative\"]\n",
            "key `containers.a1.volumes`: `data:relative`: the target `relative` must be an absolute path in the container",
        ),
        (
            "[containers.a1]\nimage = \"x\"\nrestart = \"sometimes\"\n",
            "key `containers.a1.restart`: `sometimes` is not a restart policy",
        ),
        (
            "[containers.a]\nimage = \"x\"\n",
            "key `containers.a`: `a` is not a Docker object name",
        ),
        (
            "[containers.a1]\nimage = \"x\"\nlabels = { \"berth.managed\" = \"true\" }\n",
            "key `containers.a1.labels.\"berth.managed\"`: labels under `berth.` are berth's own",
        ),
        (
            "mtu = 1400\n[docker.daemon]\nmtu = 1500\n",
            "site.toml:3:1: key `docker.daemon.mtu`: 1500 contradicts the top-level `mtu = 1400`",
        ),
        (
            "[containers.a1]\nimage = \"x\"\nprivilegd = true\n",
            "site.toml:3:1: key `containers.a1.privilegd`: unknown key `privilegd`; did you mean `privileged`?",
        ),
    ];
    for (text, expected) in cases {
        let profile = profile_file(&root.join("/work"), "site", text);
        let run = berth(&root).args(["validate", "-p"]).args([&profile]).run();
        run.code(1);
        assert!(
            run.stderr.contains(expected),
            "expected {expected:?} in:\n{}",
            run.stderr
        );
    }
}

const KITCHEN_SINK: &str = r#"
[networks.ks-one]
[networks.ks-two]
internal = true
labels = { purpose = "test" }
[containers.kitchen-sink]
image = "berth-test/app:1"
restart = "on-failure:3"
networks = { ks-one = { aliases = ["one", "uno"] }, ks-two = { aliases = ["two"] } }
volumes = ["ks-data:/data", "/srv/ks:/srv/ks:ro", "/scratch"]
env = { A = "1", B = "two words" }
entrypoint = ["/bin/sh", "-c"]
command = ["trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]
ports = ["2375", "127.0.0.1:18080:80", "5353/udp"]
labels = { team = "ci" }
user = "1000:1000"
workdir = "/tmp"
hostname = "kitchen.ci"
cap_add = ["NET_ADMIN", "cap_sys_admin"]
security_opt = ["no-new-privileges"]
devices = ["/dev/berth-null:/dev/x:rw"]
stop_signal = "term"
stop_timeout = 5
"#;

#[test]
fn every_container_field_round_trips_without_false_drift_and_each_change_is_named() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    // An image that contributes env, a label, a workdir, a user and a CMD of its own.
    dockerd.import_busybox_with(
        APP_IMAGE,
        &[
            "CMD [\"sh\"]",
            "LABEL a=b",
            "ENV IMAGE_VAR=1",
            "WORKDIR /etc",
            "USER 0",
        ],
    );
    // Device paths are host paths: under the root, a real device node.
    root.mkdir("/dev");
    let made = std::process::Command::new("mknod")
        .arg(root.join("/dev/berth-null"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(made.success());
    let profile = profile_file(&root.join("/work"), "site", KITCHEN_SINK);
    run(&root, &dockerd, "apply", &profile, &[]).code(0);
    with_profile(&root, &dockerd, &profile).converged();
    let live = dockerd.inspect_container("kitchen-sink");
    assert_eq!(live["State"]["Running"], true);
    assert_eq!(live["Config"]["Hostname"], "kitchen.ci");
    assert_eq!(
        live["HostConfig"]["CapAdd"],
        serde_json::json!(["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]),
        "the daemon's spelling is not drift"
    );
    let aliases = &live["NetworkSettings"]["Networks"]["ks-two"]["Aliases"];
    assert!(
        aliases
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("two")),
        "{aliases}"
    );

    let changed = profile_file(
        &root.join("/work"),
        "changed",
        "[containers.kitchen-sink]\nports = [\"2375\"]\ncap_add = [\"NET_ADMIN\"]\nuser = \"0\"\n",
    );
    let plan = berth(&root)
        .docker(&dockerd)
        .args(["plan", "-p"])
        .args([
            dockerd.layer_file().as_os_str(),
            "-p".as_ref(),
            profile.as_os_str(),
            "-p".as_ref(),
            changed.as_os_str(),
        ])
        .run();
    plan.code(2);
    assert!(
        has_line(
            &plan.stdout,
            "container/kitchen-sink -/+ replace the profile changed: ports[5353/udp], ports[80/tcp], cap_add, user"
        ),
        "{}",
        plan.stdout
    );
}
