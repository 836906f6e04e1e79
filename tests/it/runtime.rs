//! `runtime` for containers and the `dind-sysbox` profile (issue 10, point 7): Docker's
//! `--runtime`, observed from `HostConfig.Runtime` and explained like any other field; a runtime
//! the daemon has not registered refuses that container, with how to install sysbox.

use crate::{
    harness::{Root, berth, profile_file, unprivileged_layer},
    profiles::Converged,
    require_dockerd,
};

fn runtime_of(dockerd: &crate::harness::Dockerd, container: &str) -> serde_json::Value {
    dockerd.inspect_container(container)["HostConfig"]["Runtime"].clone()
}

#[test]
fn a_runtime_round_trips_and_a_changed_one_is_an_explained_replacement() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    // Converged::new: plan 2, apply 0, plan 0, and an apply that does nothing.
    let mut host = Converged::new(
        &root,
        &dockerd,
        "socket",
        "[containers.gitlab-runner]\nruntime = \"runc\"\n",
    );
    assert_eq!(runtime_of(&dockerd, "gitlab-runner"), "runc");
    let runtimes = dockerd.info()["Runtimes"].clone();
    assert!(
        runtimes.get("io.containerd.runc.v2").is_some(),
        "this daemon has a second runtime to switch to: {runtimes}"
    );

    host.layer(
        "other-runtime",
        "[containers.gitlab-runner]\nruntime = \"io.containerd.runc.v2\"\n",
    );
    let plan = host.run("plan");
    plan.code(2);
    let lines: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|line| line.contains("gitlab-runner") || line.trim_start().starts_with("runtime"))
        .collect();
    insta::assert_snapshot!(lines.join("\n"), @r#"
    container/gitlab-runner  -/+ replace   the profile changed: runtime
        runtime: "runc" → "io.containerd.runc.v2"
    "#);
    host.run("apply").code(0);
    host.converged();
    assert_eq!(
        runtime_of(&dockerd, "gitlab-runner"),
        "io.containerd.runc.v2"
    );
}

#[test]
fn dind_sysbox_on_a_daemon_without_sysbox_is_refused_with_the_install_hint() {
    let root = Root::new();
    root.with_overlay_kernel();
    let dockerd = require_dockerd!(&root);
    dockerd.import_profile_images();
    let stand_ins = profile_file(
        &root.join("/work"),
        "stand-ins",
        &unprivileged_layer(&["gitlab-dind"]),
    );
    let layers = [
        "dind-sysbox".to_owned(),
        dockerd.layer_file().display().to_string(),
        stand_ins.display().to_string(),
    ];
    let profiles: Vec<&str> = layers
        .iter()
        .flat_map(|layer| ["-p", layer.as_str()])
        .collect();
    let run = |command: &str| {
        berth(&root)
            .docker(&dockerd)
            .args([command])
            .args(&profiles)
            .run()
    };
    let plan = run("plan");
    // A change apply would refuse: plan exits 1 (issue 13), not 2.
    plan.code(1);
    // Which runtimes a daemon has besides runc depends on its version.
    let dind: Vec<String> = plan
        .stdout
        .lines()
        .filter(|line| line.contains("gitlab-dind  ") || line.contains("refused"))
        .map(|line| match (line.find("(it has "), line.find(");")) {
            (Some(start), Some(end)) => format!("{}(it has …){}", &line[..start], &line[end + 1..]),
            _ => line.to_owned(),
        })
        .collect();
    insta::assert_snapshot!(dind.join("\n"), @r"
    container/gitlab-dind        + create    image docker:27-dind
        refused: the Docker daemon has no runtime `sysbox-runc` (it has …); install sysbox on the host (Nestybox's sysbox-ce package: its installer registers `sysbox-runc` in daemon.json and restarts Docker), then run berth again
    Plan: 3 to add, 2 to change, 0 to destroy, 1 refused.
    ");
    let apply = run("apply");
    apply.code(1);
    assert!(
        apply.stdout.contains("install sysbox on the host")
            || apply.stderr.contains("install sysbox on the host"),
        "{}",
        apply.transcript()
    );
    assert!(
        !dockerd
            .container_names()
            .iter()
            .any(|name| name == "gitlab-dind"),
        "no dind container was made"
    );
    let doctor = |expected: &str| {
        let run = run("doctor");
        let line = run
            .stdout
            .lines()
            .find(|line| line.contains("runtime sysbox-runc"))
            .unwrap_or_else(|| panic!("no runtime check:\n{}", run.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(line.starts_with(expected), "{line}");
        run
    };
    let unhealthy = doctor("FAIL runtime sysbox-runc the Docker daemon has no such runtime");
    unhealthy.code(1);
    assert!(
        unhealthy.stdout.contains("fix: install sysbox"),
        "{}",
        unhealthy.stdout
    );

    // What the sysbox installer does: register the runtime in daemon.json, restart Docker.
    // Here it is plain runc under sysbox's name, which is all berth can tell apart.
    let config = root.join("/etc/docker/daemon.json");
    let mut daemon_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let runc = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v runc"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    daemon_json["runtimes"] = serde_json::json!({"sysbox-runc": {"path": runc.trim()}});
    std::fs::write(&config, daemon_json.to_string()).unwrap();
    dockerd.restart();

    run("apply").code(0);
    berth(&root).docker(&dockerd).args(&profiles).converged();
    assert_eq!(runtime_of(&dockerd, "gitlab-dind"), "sysbox-runc");
    doctor("ok runtime sysbox-runc registered with the Docker daemon");
    assert_eq!(
        dockerd.inspect_container("gitlab-dind")["HostConfig"]["Privileged"],
        false
    );
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(
        kept["runtimes"]["sysbox-runc"]["path"],
        runc.trim(),
        "daemon.json's runtimes are the installer's: berth leaves them"
    );
}
