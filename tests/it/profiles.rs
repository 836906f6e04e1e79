//! Each embedded profile applied from scratch on a private dockerd (stand-in images tagged as the
//! profile's, privileged containers made unprivileged), converged on the second run, wired as
//! its header says, and every drift an operator causes by hand found by `plan` and fixed by one
//! `apply` that touches nothing else.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    path::{Path, PathBuf},
};

use crate::{
    harness::{
        Berth, DIND_IMAGE, Dockerd, Root, Run, berth, is_docker_ping, profile_file,
        real_dind_layer, unprivileged_layer,
    },
    require_dockerd,
};

const DIND: &str = "gitlab-dind";
const RUNNER: &str = "gitlab-runner";
const NETWORK: &str = "gitlab-runner-net";

/// A root converged to an embedded profile on a private daemon.
pub struct Converged<'a> {
    pub root: &'a Root,
    pub dockerd: &'a Dockerd,
    pub layers: Vec<PathBuf>,
}

impl<'a> Converged<'a> {
    /// Applies `profile` from scratch (plan 2, apply 0, plan 0, apply changes nothing), with
    /// the `nc` stand-ins for the profile's images.
    pub fn new(root: &'a Root, dockerd: &'a Dockerd, profile: &str, extra: &str) -> Self {
        Self::converge(root, dockerd, profile, extra, false)
    }

    /// The same with the real stand-ins: a real dockerd in dind (given the capabilities it
    /// needs instead of `--privileged`) and the docker CLI in the runner.
    pub fn with_real_dind(
        root: &'a Root,
        dockerd: &'a Dockerd,
        profile: &str,
        extra: &str,
    ) -> Self {
        Self::converge(root, dockerd, profile, extra, true)
    }

    fn converge(
        root: &'a Root,
        dockerd: &'a Dockerd,
        profile: &str,
        extra: &str,
        real_dind: bool,
    ) -> Self {
        root.with_overlay_kernel();
        if real_dind {
            dockerd.import_real_profile_images();
        } else {
            dockerd.import_profile_images();
        }
        // The profile binds the host's Docker socket; under the test root that is this daemon's.
        root.mkdir("/var/run");
        std::os::unix::fs::symlink(
            dockerd.dir().join("docker.sock"),
            root.join("/var/run/docker.sock"),
        )
        .unwrap();
        let dind = profile.starts_with("dind") && profile != "dind-service";
        let stand_ins = if dind && real_dind {
            real_dind_layer(&[DIND])
        } else if dind {
            unprivileged_layer(&[DIND])
        } else {
            String::new()
        };
        let converged = Self {
            root,
            dockerd,
            // The test's own layer last, so it can override the stand-ins' (a dind
            // container's `security_opt`).
            layers: vec![
                dockerd.layer_file(),
                profile_file(&root.join("/work"), "stand-ins", &stand_ins),
                profile_file(&root.join("/work"), "test", extra),
            ],
        };
        let name = PathBuf::from(profile);
        let mut layers = vec![name];
        layers.extend(converged.layers.clone());
        let host = Self {
            layers,
            ..converged
        };
        host.run("plan").code(2);
        host.run("apply").code(0);
        host.converged();
        let ids = host.ids();
        let apply = host.run("apply");
        apply.code(0);
        assert!(
            apply.stdout.contains("Nothing to do"),
            "a converged apply does nothing:\n{}",
            apply.stdout
        );
        assert_eq!(host.ids(), ids);
        host
    }

    pub fn args(&self) -> Vec<OsString> {
        self.layers
            .iter()
            .flat_map(|layer| ["-p".into(), layer.clone().into_os_string()])
            .collect()
    }

    /// berth on this host, its daemon and its layers, the subcommand still to come.
    pub fn berth(&self) -> Berth {
        berth(self.root).docker(self.dockerd).args(self.args())
    }

    /// `plan` finds nothing to do (see [`Berth::converged`]).
    #[track_caller]
    pub fn converged(&self) -> Run {
        self.berth().converged()
    }

    pub fn run(&self, command: &str) -> Run {
        self.run_with(command, &[])
    }

    pub fn run_with(&self, command: &str, more: &[&str]) -> Run {
        berth(self.root)
            .docker(self.dockerd)
            .args([command])
            .args(more)
            .args(self.args())
            .run()
    }

    /// Adds a profile layer for every later run.
    pub fn layer(&mut self, name: &str, text: &str) {
        self.layers
            .push(profile_file(&self.root.join("/work"), name, text));
    }

    /// The IDs of the profile's containers that exist.
    pub fn ids(&self) -> BTreeMap<String, String> {
        [DIND, RUNNER]
            .into_iter()
            .filter_map(|name| {
                let output = self.dockerd.docker_unchecked([
                    "container",
                    "inspect",
                    "--format",
                    "{{.Id}}",
                    name,
                ]);
                output.status.success().then(|| {
                    (
                        name.to_owned(),
                        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
                    )
                })
            })
            .collect()
    }

    /// Breaks the host with `cause`, then checks that `plan` finds it (each of `expected` is
    /// part of a plan line, spaces collapsed), that one `apply` fixes it, and that no container
    /// but those in `touched` got a new ID.
    #[track_caller]
    pub fn drift(&self, what: &str, cause: impl FnOnce(), expected: &[&str], touched: &[&str]) {
        let before = self.ids();
        cause();
        let plan = self.run("plan");
        assert_eq!(
            plan.code, 2,
            "{what}: plan finds it\n{}{}",
            plan.stdout, plan.stderr
        );
        let lines: Vec<String> = plan.stdout.lines().map(collapse).collect();
        for wanted in expected {
            assert!(
                lines.iter().any(|line| line.contains(&collapse(wanted))),
                "{what}: expected `{wanted}` in the plan:\n{}",
                plan.stdout
            );
        }
        let apply = self.run("apply");
        assert_eq!(
            apply.code, 0,
            "{what}: apply fixes it\n{}{}",
            apply.stdout, apply.stderr
        );
        // Converged after one apply.
        self.converged();
        let after = self.ids();
        for (name, id) in &before {
            if !touched.contains(&name.as_str()) {
                assert_eq!(
                    after.get(name),
                    Some(id),
                    "{what}: `{name}` was not touched"
                );
            }
        }
        for name in touched {
            assert!(after.contains_key(*name), "{what}: `{name}` exists again");
        }
    }

    /// Runs a command in a container and returns its stdout.
    pub fn exec(&self, container: &str, script: &str) -> String {
        self.dockerd.docker(["exec", container, "sh", "-c", script])
    }
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The drifts every profile has: the runner stopped, removed, cut off its network, and the
/// network deleted under the running containers.
fn runner_and_network_drifts(host: &Converged, containers: &[&str]) {
    let docker = |args: &[&str]| {
        host.dockerd.docker(args);
    };
    host.drift(
        "runner stopped",
        || docker(&["stop", RUNNER]),
        &["container/gitlab-runner + start the container is exited"],
        &[],
    );
    host.drift(
        "runner removed",
        || docker(&["rm", "--force", RUNNER]),
        &["container/gitlab-runner + create image gitlab/gitlab-runner:v17.11.0"],
        &[RUNNER],
    );
    host.drift(
        "runner disconnected from its network",
        || docker(&["network", "disconnect", NETWORK, RUNNER]),
        &["container/gitlab-runner ~ update changed outside berth: networks.gitlab-runner-net (repaired in place)"],
        &[],
    );
    host.drift(
        "network deleted",
        || {
            for container in containers {
                docker(&["network", "disconnect", "--force", NETWORK, container]);
            }
            docker(&["network", "rm", NETWORK]);
        },
        &[
            "network/gitlab-runner-net + create driver=bridge",
            "container/gitlab-runner ~ update changed outside berth: networks.gitlab-runner-net",
        ],
        &[],
    );
}

/// The drifts of the dind profiles: the dind restart policy changed by hand, and the dind image
/// tag changed in a profile layer.
fn dind_drifts(host: &mut Converged, expected_for_tag: &[&str], touched_by_tag: &[&str]) {
    host.drift(
        "dind restart policy changed by hand",
        || {
            host.dockerd.docker(["update", "--restart", "no", DIND]);
        },
        &[
            "container/gitlab-dind ~ update changed outside berth: restart (repaired in place)",
            "restart: \"no\" → \"always\"",
        ],
        &[],
    );
    assert_eq!(
        host.dockerd.inspect_container(DIND)["HostConfig"]["RestartPolicy"]["Name"],
        "always"
    );
    host.dockerd.docker(["tag", DIND_IMAGE, "docker:27.5-dind"]);
    host.layer(
        "new-tag",
        "[containers.gitlab-dind]\nimage = \"docker:27.5-dind\"\n",
    );
    let host = &*host;
    host.drift(
        "dind image tag changed in a profile layer",
        || {},
        expected_for_tag,
        touched_by_tag,
    );
    assert_eq!(
        host.dockerd.inspect_container(DIND)["Config"]["Image"],
        "docker:27.5-dind"
    );
}

fn dind_answers(host: &Converged, name: &str, port: u16) {
    let answer = host.exec(RUNNER, &format!("nc {name} {port}"));
    assert!(
        is_docker_ping(&answer),
        "the runner reaches dind as `{name}:{port}`: {answer}"
    );
}

#[test]
fn dind_profile_applies_from_scratch_and_every_drift_is_fixed_alone() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = Converged::new(&root, &dockerd, "dind", "");
    dind_answers(&host, "gitlab-dind", 2375);
    dind_answers(&host, "docker", 2375);
    assert_eq!(
        host.exec(RUNNER, "echo $DOCKER_HOST"),
        "tcp://gitlab-dind:2375"
    );
    assert!(
        root.join("/srv/gitlab-runner").is_dir(),
        "the bind source was made under the root"
    );
    let dind = dockerd.inspect_container(DIND);
    assert_eq!(dind["Config"]["Cmd"], serde_json::json!(["--tls=false"]));
    assert_eq!(
        dind["HostConfig"]["Binds"],
        serde_json::json!(["gitlab-dind-data:/var/lib/docker"])
    );
    assert_eq!(dind["Config"]["Labels"]["berth.managed"], "true");
    runner_and_network_drifts(&host, &[DIND, RUNNER]);
    dind_answers(&host, "docker", 2375);
    dind_drifts(
        &mut host,
        &["container/gitlab-dind -/+ replace the profile changed: image"],
        &[DIND],
    );
    dind_answers(&host, "docker", 2375);
}

#[test]
fn dind_tls_profile_applies_from_scratch_and_every_drift_is_fixed_alone() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let mut host = Converged::new(&root, &dockerd, "dind-tls", "");
    dind_answers(&host, "gitlab-dind", 2376);
    assert!(
        host.exec(RUNNER, "cat /certs/client/cert.pem")
            .starts_with("client cert signed by ca-of-"),
        "the runner reads the client certificate dind wrote"
    );
    let write = dockerd.docker_unchecked(["exec", RUNNER, "sh", "-c", "echo x > /certs/client/x"]);
    assert!(
        !write.status.success(),
        "the runner mounts the certificates read-only"
    );
    assert_eq!(
        host.exec(
            RUNNER,
            "echo $DOCKER_HOST $DOCKER_TLS_VERIFY $DOCKER_CERT_PATH"
        ),
        "tcp://gitlab-dind:2376 1 /certs/client"
    );
    let ca = host.exec(DIND, "cat /certs/ca/key.pem");
    runner_and_network_drifts(&host, &[DIND, RUNNER]);
    dind_drifts(
        &mut host,
        &[
            "container/gitlab-dind -/+ replace the profile changed: image",
            "container/gitlab-runner ~ restart `container/gitlab-dind` is new and writes volume `gitlab-dind-certs-client`, which this container reads",
        ],
        &[DIND],
    );
    assert_eq!(
        host.exec(DIND, "cat /certs/ca/key.pem"),
        ca,
        "the CA survives replacing dind, so the runner's certificate stays valid"
    );
    dind_answers(&host, "gitlab-dind", 2376);
}

#[test]
fn socket_profile_applies_from_scratch_and_every_drift_is_fixed_alone() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let host = Converged::new(&root, &dockerd, "socket", "");
    host.exec(RUNNER, "test -S /var/run/docker.sock");
    assert!(!host.ids().contains_key(DIND), "no dind container");
    runner_and_network_drifts(&host, &[RUNNER]);
}

#[test]
fn dind_service_profile_applies_from_scratch_and_every_drift_is_fixed_alone() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let host = Converged::new(&root, &dockerd, "dind-service", "");
    host.exec(RUNNER, "test -S /var/run/docker.sock");
    assert!(!host.ids().contains_key(DIND), "no dind container");
    runner_and_network_drifts(&host, &[RUNNER]);
}

#[test]
fn every_profile_validates_and_says_what_it_trades() {
    let root = Root::new();
    for profile in ["dind", "dind-tls", "socket", "dind-service", "dind-sysbox"] {
        let run = berth(&root).args(["validate", "-p", profile]).run();
        run.code(0);
        // Each declares the runner's container, and leaves the runner to the site layer.
        // The warning is placed at the runner's container, line and column of its table.
        let (place, rest) = run
            .stdout
            .split_once(": key `containers.gitlab-runner`: ")
            .unwrap_or_else(|| panic!("{}", run.stdout));
        assert!(
            place.starts_with(&format!("warning: {profile} (embedded):")),
            "{}",
            run.stdout
        );
        assert_eq!(
            rest,
            format!(
                "no runner is declared: the host will run a runner container that takes no jobs (berth init writes one)\nvalid: {profile}\n"
            ),
            "no other warning for `{profile}`"
        );
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("profiles/{profile}.toml")),
        )
        .unwrap();
        assert!(
            text.starts_with(&format!("# {profile}")) && text.contains("Tradeoff"),
            "`{profile}` opens with a header on its tradeoff"
        );
    }
}

/// `berth doctor` on a converged dind-tls host: the runner's TLS client files must be there,
/// and dind must answer on the TLS port from inside the runner (issue 5).
#[test]
fn doctor_checks_the_tls_client_files_the_runner_needs() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let host = Converged::new(&root, &dockerd, "dind-tls", "");
    let probe = |host: &Converged| {
        let run = host.run("doctor");
        let line = run
            .stdout
            .lines()
            .find(|line| line.contains("gitlab-runner → tcp://gitlab-dind:2376"))
            .unwrap_or_else(|| panic!("no dind check:\n{}", run.stdout))
            .to_owned();
        (run, line)
    };
    let (run, line) = probe(&host);
    run.code(0);
    assert!(line.starts_with("ok "), "{line}");
    // The client key disappears from the shared volume (dind writes it; the runner reads it).
    dockerd.docker(["exec", DIND, "sh", "-c", "rm /certs/client/key.pem"]);
    let (run, line) = probe(&host);
    run.code(1);
    assert!(line.starts_with("FAIL "), "{line}");
    assert!(
        line.contains("TLS is on but /certs/client/key.pem is missing or empty"),
        "{line}"
    );
}
