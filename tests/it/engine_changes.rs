//! Issue 24, item 2: berth's changes to containers and networks go through the Engine API. An
//! apply that creates, replaces, repairs or removes them, and `berth destroy`, start no `docker`
//! process: a `docker` first on PATH records every call, and its log stays empty.

use std::{ffi::OsString, fs, path::Path};

use crate::{
    harness::{Dockerd, Root, Run, berth, profile_file, unprivileged_layer, write_executable},
    require_dockerd,
};

const NETWORK: &str = "gitlab-runner-net";

/// A `docker` that appends its arguments to `log` when berth started it (the test's own restart
/// command, which waits with `docker version`, is not berth), then runs the real one.
fn recording_docker(dir: &Path, log: &Path) {
    let real = std::process::Command::new("sh")
        .args(["-c", "command -v docker"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap();
    write_executable(
        dir,
        "docker",
        &format!(
            "#!/bin/sh\nif [ \"$(cat /proc/$PPID/comm)\" = berth ]; then printf '%s\\n' \"$*\" >> {}; fi\nexec {} \"$@\"\n",
            log.display(),
            real.trim()
        ),
    );
}

/// berth with the recording `docker` first on PATH: `command`'s run and the docker calls it
/// made (none, asserted by the caller).
fn recorded(
    root: &Root,
    dockerd: &Dockerd,
    bin: &Path,
    layers: &[&Path],
    command: &[&str],
) -> (Run, String) {
    let log = bin.join("docker.log");
    let _ = fs::remove_file(&log);
    let profiles: Vec<OsString> = ["-p".into(), "dind".into()]
        .into_iter()
        .chain(
            layers
                .iter()
                .flat_map(|layer| ["-p".into(), layer.as_os_str().to_owned()]),
        )
        .collect();
    let run = berth(root)
        .docker(dockerd)
        .path_first(bin)
        .args(command)
        .args(&profiles)
        .run();
    (run, fs::read_to_string(&log).unwrap_or_default())
}

/// What a step does, its layers, berth's arguments, and the resources it must change.
type Step<'a> = (&'a str, Vec<&'a Path>, &'a [&'a str], &'a [&'a str]);

#[test]
fn applies_that_create_replace_and_remove_and_destroy_start_no_docker_process() {
    let root = Root::new();
    root.with_overlay_kernel();
    let dockerd = require_dockerd!(&root);
    dockerd.import_profile_images();
    dockerd.import_busybox("berth-test/extra:1");
    let bin = root.scratch("bin");
    recording_docker(&bin, &bin.join("docker.log"));
    let work = root.join("/work");
    let stand_ins = profile_file(&work, "stand-ins", &unprivileged_layer(&["gitlab-dind"]));
    let daemon = dockerd.layer_file();
    let extra = profile_file(
        &work,
        "extra",
        "[containers.berth-test-extra]\nimage = \"berth-test/extra:1\"\ncommand = [\"sleep\", \"3600\"]\nnetworks = [\"gitlab-runner-net\"]\n",
    );
    let env = profile_file(
        &work,
        "env",
        "[containers.gitlab-runner.env]\nBERTH_TEST = \"changed\"\n",
    );
    let mtu = profile_file(
        &work,
        "mtu",
        &format!("[networks.{NETWORK}.options]\n\"com.docker.network.driver.mtu\" = \"1400\"\n"),
    );

    let steps: [Step<'_>; 5] = [
        (
            "a scratch apply of dind, with one more container",
            vec![&daemon, &stand_ins, &extra],
            &["apply"],
            &[
                "network/gitlab-runner-net",
                "container/gitlab-dind",
                "container/gitlab-runner",
                "container/berth-test-extra",
            ],
        ),
        (
            "the runner replaced after an env change",
            vec![&daemon, &stand_ins, &extra, &env],
            &["apply"],
            &["container/gitlab-runner"],
        ),
        (
            "the network replaced (an MTU option), its containers reconnected",
            vec![&daemon, &stand_ins, &extra, &env, &mtu],
            &["apply"],
            &["network/gitlab-runner-net"],
        ),
        (
            "the extra container removed as an orphan",
            vec![&daemon, &stand_ins, &env, &mtu],
            &["apply"],
            &["container/berth-test-extra"],
        ),
        (
            "berth destroy",
            vec![&daemon, &stand_ins, &env, &mtu],
            &["destroy", "--yes", "--purge"],
            &["container/gitlab-runner", "network/gitlab-runner-net"],
        ),
    ];
    for (what, layers, command, changed) in steps {
        let (run, calls) = recorded(&root, &dockerd, &bin, &layers, command);
        run.code(0);
        for id in changed {
            assert!(
                run.stdout.lines().any(|line| line.starts_with(id)),
                "{what}: {id} not changed\n{}",
                run.transcript()
            );
        }
        assert_eq!(calls, "", "{what}: berth ran the docker CLI");
        if command == ["apply"] {
            let (plan, calls) = recorded(&root, &dockerd, &bin, &layers, &["plan"]);
            plan.code(0);
            assert_eq!(calls, "", "{what}: the plan after it ran the docker CLI");
        }
    }
    // Destroy took down every container and the network berth made.
    assert!(
        dockerd.container_names().is_empty(),
        "{:?}",
        dockerd.container_names()
    );
    assert!(!dockerd.exists("network", NETWORK));
}
