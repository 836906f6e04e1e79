//! End to end with a real Docker daemon in the dind container (issue 11): each test applies a
//! shipped profile from scratch on a private dockerd, with the real stand-ins (a dind image
//! whose entrypoint starts the host's own dockerd as docker:dind's does, a runner image with the
//! docker CLI) and a layer that only swaps `privileged = true` for the capabilities a nested
//! daemon needs here. Then the runner does its one job through DOCKER_HOST: `docker build`.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::{
    harness::{Dockerd, Root, busybox_rootfs},
    profiles::Converged,
    require_dockerd,
};

const DIND: &str = "gitlab-dind";
const RUNNER: &str = "gitlab-runner";
/// What the runner builds, from [`BASE`] loaded into the nested daemon.
const BUILT: &str = "berth-e2e/built:1";
const BASE: &str = "berth-e2e/base:1";

/// Runs `script` in the runner with its own environment (DOCKER_HOST and, for dind-tls, the
/// TLS variables the profile sets).
fn in_runner(host: &Converged, script: &str) -> Output {
    host.dockerd
        .docker_unchecked(["exec", RUNNER, "sh", "-c", script])
}

#[track_caller]
fn in_runner_ok(host: &Converged, script: &str) -> String {
    let output = in_runner(host, script);
    assert!(
        output.status.success(),
        "in the runner: `{script}` failed\n--- stdout\n{}\n--- stderr\n{}\n--- dind's log\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        dind_log(host.dockerd),
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn dind_log(dockerd: &Dockerd) -> String {
    let output = dockerd.docker_unchecked(["logs", "--tail", "30", DIND]);
    String::from_utf8_lossy(&[output.stdout, output.stderr].concat()).into_owned()
}

/// Waits until the nested daemon answers the runner's `docker version` (dind's dockerd starts
/// in about 1.5 s, plus certificates for dind-tls) and returns its version.
#[track_caller]
fn nested_daemon_answers(host: &Converged) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = in_runner(host, "docker version --format '{{.Server.Version}}'");
        if output.status.success() {
            return String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the nested daemon never answered the runner: {}\n--- dind's log\n{}",
            String::from_utf8_lossy(&output.stderr),
            dind_log(host.dockerd)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Loads a busybox image into the nested daemon through the runner (no registry here), builds
/// a two-line Dockerfile on it with a RUN step, runs the result; returns the built image's ID.
fn build_and_run(host: &Converged) -> String {
    let tar = Command::new("tar")
        .arg("-C")
        .arg(busybox_rootfs())
        .args(["-c", "."])
        .output()
        .unwrap();
    let mut import = Command::new("docker")
        .args(["exec", "-i", RUNNER, "docker", "import", "-", BASE])
        .env("DOCKER_HOST", host.dockerd.host())
        .env("DOCKER_CONFIG", host.dockerd.dir().join("cli"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    import.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    assert!(import.wait().unwrap().success(), "docker import in dind");
    in_runner_ok(
        host,
        &format!(
            "mkdir -p /tmp/context && printf 'FROM {BASE}\\nRUN echo built by \"$(hostname)\" in dind > /built\\n' > /tmp/context/Dockerfile && docker build -q -t {BUILT} /tmp/context"
        ),
    );
    let ran = in_runner_ok(host, &format!("docker run --rm {BUILT} cat /built"));
    assert!(
        ran.starts_with("built by ") && ran.ends_with(" in dind"),
        "the built image holds what its RUN step wrote: {ran}"
    );
    in_runner_ok(
        host,
        &format!("docker image inspect --format '{{{{.Id}}}}' {BUILT}"),
    )
}

/// A profile layer that changes only a label of dind: berth replaces the container.
const RELABEL: &str = "[containers.gitlab-dind]\nlabels = { \"berth-e2e.generation\" = \"2\" }\n";

#[track_caller]
fn replace_dind(host: &mut Converged) -> Vec<String> {
    let before = host.dockerd.container_id(DIND);
    host.layer("relabel", RELABEL);
    let plan = host.run("plan");
    plan.code(2);
    assert!(
        plan.stdout.contains("container/gitlab-dind") && plan.stdout.contains("replace"),
        "{}",
        plan.stdout
    );
    host.run("apply").code(0);
    assert_ne!(host.dockerd.container_id(DIND), before, "dind was replaced");
    plan.stdout.lines().map(str::to_owned).collect()
}

#[test]
fn dind_the_runner_builds_an_image_through_the_real_nested_daemon() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = Converged::with_real_dind(&root, &dockerd, "dind", "");
    let version = nested_daemon_answers(&host);
    assert_eq!(
        version,
        dockerd.docker(["version", "--format", "{{.Server.Version}}"]),
        "the nested daemon is the host's own docker.io"
    );
    assert_eq!(
        in_runner_ok(&host, "echo $DOCKER_HOST"),
        "tcp://gitlab-dind:2375"
    );
    let built = build_and_run(&host);

    replace_dind(&mut host);
    nested_daemon_answers(&host);
    assert_eq!(
        in_runner_ok(
            &host,
            &format!("docker image inspect --format '{{{{.Id}}}}' {BUILT}")
        ),
        built,
        "the named volume gitlab-dind-data kept the built image across the replacement"
    );
    host.converged();
}

#[test]
fn dind_tls_the_runner_builds_over_mutual_tls_and_reconnects_after_dind_is_replaced() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = Converged::with_real_dind(&root, &dockerd, "dind-tls", "");
    nested_daemon_answers(&host);
    assert_eq!(
        in_runner_ok(
            &host,
            "echo $DOCKER_HOST $DOCKER_TLS_VERIFY $DOCKER_CERT_PATH"
        ),
        "tcp://gitlab-dind:2376 1 /certs/client"
    );
    let built = build_and_run(&host);

    // The nested daemon refuses a client without a certificate, even one that trusts its CA,
    // and one that does not speak TLS at all.
    let without_certificate = in_runner(
        &host,
        "DOCKER_TLS_VERIFY= DOCKER_CERT_PATH= docker --tls --tlscacert /certs/client/ca.pem version --format '{{.Server.Version}}'",
    );
    let said = String::from_utf8_lossy(&without_certificate.stderr);
    assert!(!without_certificate.status.success());
    assert!(
        said.contains("bad certificate") || said.contains("certificate required"),
        "{said}"
    );
    let plain = in_runner(
        &host,
        "DOCKER_TLS_VERIFY= DOCKER_CERT_PATH= docker version --format '{{.Server.Version}}'",
    );
    assert!(!plain.status.success());
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("HTTP request to an HTTPS server"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );

    let ca_key = host.exec(DIND, "cat /certs/ca/key.pem");
    let client_certificate = host.exec(RUNNER, "cat /certs/client/cert.pem");
    let runner = dockerd.inspect_container(RUNNER);
    // How the runner connects again after the replacement: the new dind's entrypoint issues
    // new server and client certificates from the CA key kept in gitlab-dind-certs-ca, into
    // gitlab-dind-certs-client, the volume the runner mounts read-only; the docker CLI reads
    // the files at every call. berth also restarts the runner (the plan says why), so a client
    // that read them once at start (gitlab-runner) reads the new ones.
    let plan = replace_dind(&mut host);
    assert!(
        plan.iter()
            .any(|line| line.contains("container/gitlab-runner") && line.contains("restart")),
        "{plan:#?}"
    );
    let restarted = dockerd.inspect_container(RUNNER);
    assert_eq!(restarted["Id"], runner["Id"], "restarted, not replaced");
    assert_ne!(
        restarted["State"]["StartedAt"], runner["State"]["StartedAt"],
        "berth restarted the runner"
    );
    nested_daemon_answers(&host);
    assert_eq!(
        host.exec(DIND, "cat /certs/ca/key.pem"),
        ca_key,
        "the CA survived"
    );
    assert_ne!(
        host.exec(RUNNER, "cat /certs/client/cert.pem"),
        client_certificate,
        "the runner reads the client certificate the new dind issued"
    );
    assert_eq!(
        in_runner_ok(
            &host,
            &format!("docker image inspect --format '{{{{.Id}}}}' {BUILT}")
        ),
        built
    );
    host.converged();
}

/// Issue 24: berth reaches a daemon over TCP with mutual TLS as the `docker` CLI does, from
/// `DOCKER_HOST`, `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` (ca.pem, cert.pem, key.pem): the
/// nested dind of `dind-tls` on 2376, with the client certificates it issued. Without
/// `DOCKER_TLS_VERIFY` it does not answer (berth spoke plain HTTP to a TLS port).
#[test]
fn dind_tls_berth_reaches_the_nested_daemon_over_tcp_with_the_clis_tls_variables() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let host = Converged::with_real_dind(&root, &dockerd, "dind-tls", "");
    nested_daemon_answers(&host);
    let certificates = root.scratch("nested-certs");
    for file in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::write(
            certificates.join(file),
            host.exec(RUNNER, &format!("cat /certs/client/{file}")) + "\n",
        )
        .unwrap();
    }
    let address = dockerd.inspect_container(DIND)["NetworkSettings"]["Networks"]
        ["gitlab-runner-net"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    // A root whose Docker is installed (its unit); the daemon is the nested one.
    let nested = Root::new();
    nested.write(
        "/lib/systemd/system/docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd\n",
    );
    let profile = crate::harness::profile_file(
        &nested.scratch("profiles"),
        "nested",
        "[volumes.berth-test-nested]\n",
    );
    let berth = |tls: &str, command: &str| {
        crate::harness::berth(&nested)
            .env("DOCKER_HOST", format!("tcp://{address}:2376"))
            .env("DOCKER_TLS_VERIFY", tls)
            .env("DOCKER_CERT_PATH", &certificates)
            .filter(address.as_str(), "[DIND]")
            .args(["-p".as_ref(), profile.as_os_str(), command.as_ref()])
            .in_network_of(&dockerd)
            .run()
    };
    let plan = berth("1", "plan");
    plan.code(2);
    assert!(
        plan.stdout.contains("volume/berth-test-nested") && plan.stdout.contains("+ create"),
        "{}",
        plan.transcript()
    );
    // The volume is made, through the same variables, and then seen over TLS.
    berth("1", "apply").code(0);
    assert_eq!(
        in_runner_ok(
            &host,
            "docker volume inspect --format '{{.Name}}' berth-test-nested"
        ),
        "berth-test-nested"
    );
    let converged = berth("1", "plan");
    converged.code(0);
    assert!(
        !converged.stdout.contains("volume/"),
        "{}",
        converged.transcript()
    );

    let plain = berth("", "plan");
    assert!(
        plain.stdout.contains("daemon/docker") && plain.stdout.contains("does not answer"),
        "{}",
        plain.transcript()
    );
}

#[test]
fn dind_the_mtu_and_the_dind_flags_reach_the_nested_daemon() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let host = Converged::with_real_dind(
        &root,
        &dockerd,
        "dind",
        "mtu = 1450\n[containers.gitlab-dind]\ncommand = [\"--tls=false\", \"--registry-mirror=https://mirror.berth.test/\"]\n",
    );
    nested_daemon_answers(&host);
    assert_eq!(
        in_runner_ok(
            &host,
            "docker network inspect bridge --format '{{index .Options \"com.docker.network.driver.mtu\"}}'"
        ),
        "1450",
        "the nested daemon's default bridge has the profile's MTU"
    );
    assert_eq!(
        in_runner_ok(
            &host,
            "docker info --format '{{json .RegistryConfig.Mirrors}}'"
        ),
        "[\"https://mirror.berth.test/\"]"
    );
    // And the runner's own network, on the host's daemon, has it too.
    assert_eq!(
        dockerd.docker([
            "network",
            "inspect",
            "gitlab-runner-net",
            "--format",
            "{{index .Options \"com.docker.network.driver.mtu\"}}"
        ]),
        "1450"
    );
}

/// Issue 11: `systempaths=unconfined` (no masked or read-only /proc paths, so /proc/sys is
/// writable and the entrypoint need not remount it) converges: Docker does not keep it in
/// SecurityOpt, and before the fix every plan replaced dind. `with_real_dind` asserts that the
/// plan after the apply exits 0.
#[test]
fn dind_with_systempaths_unconfined_runs_and_converges() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let host = Converged::with_real_dind(
        &root,
        &dockerd,
        "dind",
        "[containers.gitlab-dind]\nsecurity_opt = [\"seccomp=unconfined\", \"systempaths=unconfined\"]\n",
    );
    nested_daemon_answers(&host);
    let dind = dockerd.inspect_container(DIND);
    assert_eq!(
        dind["HostConfig"]["SecurityOpt"],
        serde_json::json!(["seccomp=unconfined"])
    );
    assert_eq!(dind["HostConfig"]["MaskedPaths"], serde_json::json!([]));
    let entrypoint = dockerd.docker_unchecked(["logs", DIND]);
    let said = String::from_utf8_lossy(&entrypoint.stderr);
    assert!(
        said.contains("dind-entrypoint: /proc/sys is writable already"),
        "no remount of /proc/sys was needed:\n{said}"
    );
    build_and_run(&host);
    host.converged();
}

/// The line doctor prints for the runner's reach to dind.
fn doctor_line(host: &Converged, address: &str) -> (i32, String) {
    let run = host.run("doctor");
    let line = run
        .stdout
        .lines()
        .find(|line| line.contains(&format!("gitlab-runner → {address}")))
        .unwrap_or_else(|| panic!("no dind check:\n{}", run.stdout))
        .to_owned();
    (run.code, line)
}

#[test]
fn doctor_reaches_the_real_nested_daemon_and_fails_with_its_own_error() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let host = Converged::with_real_dind(&root, &dockerd, "dind", "");
    let version = nested_daemon_answers(&host);
    let (code, line) = doctor_line(&host, "tcp://gitlab-dind:2375");
    assert_eq!(code, 0, "{line}");
    assert!(line.starts_with("ok "), "{line}");
    assert!(
        line.contains(&format!("Docker Engine {version} answers `docker version`")),
        "{line}"
    );
    // dind's dockerd stops (the restart policy off first, so Docker does not bring it back
    // before doctor looks).
    dockerd.docker(["update", "--restart", "no", DIND]);
    dockerd.docker(["exec", DIND, "kill", "1"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while dockerd.inspect_container(DIND)["State"]["Running"] == true {
        assert!(Instant::now() < deadline, "dind did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, line) = doctor_line(&host, "tcp://gitlab-dind:2375");
    assert_eq!(code, 1, "{line}");
    assert!(line.starts_with("FAIL "), "{line}");
    assert!(
        line.contains("the Docker daemon does not answer from inside `gitlab-runner`")
            && line.contains("gitlab-dind"),
        "{line}"
    );

    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let host = Converged::with_real_dind(&root, &dockerd, "dind-tls", "");
    nested_daemon_answers(&host);
    let (code, line) = doctor_line(&host, "tcp://gitlab-dind:2376");
    assert_eq!(code, 0, "{line}");
    assert!(line.contains("answers `docker version`"), "{line}");
    dockerd.docker(["exec", DIND, "rm", "/certs/client/key.pem"]);
    let (code, line) = doctor_line(&host, "tcp://gitlab-dind:2376");
    assert_eq!(code, 1, "{line}");
    assert!(
        line.contains("TLS is on but /certs/client/key.pem is missing or empty; without a client certificate the daemon says:")
            && (line.contains("bad certificate") || line.contains("certificate required")),
        "{line}"
    );
}
