//! `[hygiene]` (issue 22, item 1) on the private dockerd: past `keep_free`, plan names what goes
//! and apply removes the unused images and job volumes only; what a declared container uses,
//! berth's own objects and a volume gitlab-runner did not label stay; below the thresholds the
//! plan is empty again. Inside a real nested dind, the same through the dind container's CLI,
//! what it prepulls kept (and pulled back), and a label a job forged neither printed nor acted
//! on. And the bad values a `[hygiene]` can hold, placed at file:line:key.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    fault_tools::{FaultDocker, Target, Then},
    harness::{Dockerd, Root, Run, berth, busybox_rootfs, profile_file, within},
    profiles::Converged,
    require_dockerd,
};

const APP_IMAGE: &str = "berth-test/app:1";
const APP_SCRIPT: &str = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";
const JOB_VOLUME: &str =
    "runner-0123abcd-project-1-concurrent-0-cache-3c3f060a0374fc8bc39395164f415a70";

const METRICS: &str = "/var/lib/prometheus/node-exporter/berth.prom";

fn run(root: &Root, dockerd: &Dockerd, command: &str, layers: &[&Path]) -> Run {
    let mut berth = berth(root).docker(dockerd).args([command]);
    if command == "apply" {
        berth = berth.args(["--metrics-file", METRICS]);
    }
    let mut berth = berth.args(["-p"]).args([dockerd.layer_file()]);
    for layer in layers {
        berth = berth.args(["-p".as_ref(), layer.as_os_str()]);
    }
    berth.run()
}

#[test]
fn past_keep_free_apply_removes_the_unused_images_and_job_volumes_only() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    root.with_overlay_kernel();
    dockerd.import_stand_in(APP_IMAGE, APP_SCRIPT, &[]);
    // Two images nothing uses, and one a job left behind without a tag.
    dockerd.import_busybox_with("berth-test/old:1", &["LABEL n=1"]);
    dockerd.import_busybox_with("berth-test/old:2", &["LABEL n=2"]);
    dockerd.docker([
        "volume",
        "create",
        "--label",
        "com.gitlab.gitlab-runner.managed=true",
        JOB_VOLUME,
    ]);
    dockerd.docker(["volume", "create", "berth-test-plain"]);
    let work = root.join("/work");
    let site = profile_file(
        &work,
        "site",
        &format!(
            "[containers.berth-test-app]\nimage = \"{APP_IMAGE}\"\nvolumes = [\"berth-test-data:/data\"]\n"
        ),
    );
    run(&root, &dockerd, "apply", &[&site]).code(0);
    let app = dockerd.container_id("berth-test-app");

    let full = profile_file(
        &work,
        "full",
        "[hygiene]\nkeep_free = \"99%\"\nunused_images_after = \"0s\"\njob_volumes_after = \"0s\"\n",
    );
    let plan = run(&root, &dockerd, "plan", &[&site, &full]);
    plan.code(2);
    let line = plan.line_of("hygiene/host");
    assert!(
        line.starts_with("hygiene/host ~ prune ")
            && line.contains(": 2 images unused 0s+, 1 job volume (data root ")
            && line.ends_with("% used; keep_free 99%)"),
        "{line}"
    );
    assert!(
        !plan.stdout.contains(JOB_VOLUME),
        "names a job chose are not printed"
    );
    assert_eq!(
        plan.stdout
            .lines()
            .filter(|l| l.starts_with("hygiene/"))
            .count(),
        1
    );

    run(&root, &dockerd, "apply", &[&site, &full]).code(0);
    assert!(!dockerd.exists("image", "berth-test/old:1"));
    assert!(!dockerd.exists("image", "berth-test/old:2"));
    assert!(!dockerd.exists("volume", JOB_VOLUME), "the job volume went");
    assert!(
        dockerd.exists("image", APP_IMAGE),
        "a declared container's image stays"
    );
    assert!(
        dockerd.exists("volume", "berth-test-data"),
        "berth's volume stays"
    );
    assert!(
        dockerd.exists("volume", "berth-test-plain"),
        "an unlabelled volume stays"
    );
    assert_eq!(
        dockerd.container_id("berth-test-app"),
        app,
        "the container was not touched"
    );
    let metrics = root.read(METRICS).unwrap();
    let sample = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{name}` in\n{metrics}"))
    };
    assert!(sample("berth_disk_free_bytes{daemon=\"host\"}") > 0);
    let pruned = sample("berth_pruned_bytes_total{daemon=\"host\",what=\"images\"}");
    assert!(pruned > 0, "{metrics}");
    assert!(
        metrics.contains("# TYPE berth_pruned_bytes_total counter\n"),
        "{metrics}"
    );

    // 99% cannot be met and nothing else may go: said, changing nothing, exit 0.
    let again = run(&root, &dockerd, "plan", &[&site, &full]);
    again.code(0);
    assert!(
        again
            .line_of("hygiene/host")
            .starts_with("hygiene/host (nothing may go: data root "),
        "{}",
        again.stdout
    );
    // The counter is kept across runs: an apply that prunes nothing still reports it.
    run(&root, &dockerd, "apply", &[&site, &full]).code(0);
    let metrics = root.read(METRICS).unwrap();
    assert!(
        metrics.contains(&format!(
            "berth_pruned_bytes_total{{daemon=\"host\",what=\"images\"}} {pruned}\n"
        )),
        "{metrics}"
    );
    // Normal thresholds: nothing to say.
    let normal = profile_file(&work, "normal", "[hygiene]\nkeep_free = \"1%\"\n");
    berth(&root)
        .docker(&dockerd)
        .args(["-p".as_ref(), dockerd.layer_file().as_os_str()])
        .args([
            "-p".as_ref(),
            site.as_os_str(),
            "-p".as_ref(),
            normal.as_os_str(),
        ])
        .converged();
}

#[test]
fn bad_hygiene_values_are_placed_at_their_key() {
    let root = Root::new();
    let work = root.join("/work");
    let layer = profile_file(
        &work,
        "site",
        "[hygiene]\nkeep_free = \"120%\"\nunused_images_after = \"3 parsecs\"\nbuild_cache_max = \"20\"\n[containers.app]\nimage = \"busybox:1\"\nprepull = [\"busybox:1\"]\n",
    );
    let run = berth(&root)
        .args(["validate".as_ref(), "-p".as_ref(), layer.as_os_str()])
        .run();
    run.code(1);
    for expected in [
        "site.toml:2:1: key `hygiene.keep_free`: `120%` cannot be kept free",
        "site.toml:3:1: key `hygiene.unused_images_after`: `3 parsecs` is not a duration",
        "site.toml:4:1: key `hygiene.build_cache_max`: `20` is not a size",
        "key `containers.app.prepull`: only a container with `dind = true` (a Docker daemon) prepulls images",
    ] {
        assert!(run.stderr.contains(expected), "{expected}\n{}", run.stderr);
    }
}

const DIND: &str = "gitlab-dind";
const REGISTRY: &str = "berth-test-registry";
/// What dind prepulls, from [`REGISTRY`] on the runner network.
const PREPULLED: &str = "berth-test-registry:5000/berth-test/prepulled:1";

/// A real registry (Debian's `docker-registry`, the distribution project's) as a stand-in
/// image: its binary, the libraries `ldd` names and a config serving plain HTTP on :5000.
fn import_registry(dockerd: &Dockerd) -> bool {
    let Ok(program) = which("docker-registry") else {
        assert!(
            !crate::harness::in_ci(),
            "CI=true but docker-registry is missing (.ci/run installs it)"
        );
        eprintln!("SKIPPED: no docker-registry (apt-get install docker-registry)");
        return false;
    };
    let rootfs = tempfile::tempdir().unwrap();
    let put = |from: &Path, at: &Path| {
        let to = rootfs.path().join(at.strip_prefix("/").unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap();
    };
    put(&program, Path::new("/usr/bin/docker-registry"));
    let ldd = Command::new("ldd").arg(&program).output().unwrap();
    for library in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
    {
        put(Path::new(library), Path::new(library));
    }
    std::fs::create_dir_all(rootfs.path().join("etc")).unwrap();
    std::fs::write(
        rootfs.path().join("etc/registry.yml"),
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\nhttp:\n  addr: :5000\n",
    )
    .unwrap();
    let tar = rootfs.path().with_extension("tar");
    assert!(
        Command::new("tar")
            .arg("-C")
            .arg(rootfs.path())
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    dockerd.import_tar(
        &tar,
        "berth-test/registry:stand-in",
        &["ENTRYPOINT [\"/usr/bin/docker-registry\", \"serve\", \"/etc/registry.yml\"]"],
    );
    let _ = std::fs::remove_file(tar);
    true
}

fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or(())
}

/// `docker ARGS` in the dind daemon, through its own CLI.
fn in_dind(dockerd: &Dockerd, args: &[&str]) -> std::process::Output {
    let mut all = vec!["exec", DIND, "docker"];
    all.extend_from_slice(args);
    dockerd.docker_unchecked(all)
}

fn dind_has(dockerd: &Dockerd, kind: &str, name: &str) -> bool {
    in_dind(dockerd, &[kind, "inspect", name]).status.success()
}

/// Imports the busybox root into the dind daemon as `tag` with `docker import -c` changes.
fn import_in_dind(dockerd: &Dockerd, tag: &str, changes: &[&str]) {
    let tar = Command::new("tar")
        .arg("-C")
        .arg(busybox_rootfs())
        .args(["-c", "."])
        .output()
        .unwrap();
    let mut args = vec![
        "exec".to_owned(),
        "-i".into(),
        DIND.into(),
        "docker".into(),
        "import".into(),
    ];
    for change in changes {
        args.extend(["-c".to_owned(), (*change).to_owned()]);
    }
    args.extend(["-".to_owned(), tag.to_owned()]);
    let mut import = Command::new("docker")
        .args(&args)
        .env("DOCKER_HOST", dockerd.host())
        .env("DOCKER_CONFIG", dockerd.dir().join("cli"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    import.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    assert!(
        import.wait().unwrap().success(),
        "docker import {tag} in dind"
    );
}

#[test]
fn dind_past_keep_free_is_pruned_through_its_own_cli_and_keeps_what_it_prepulls() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    if !import_registry(&dockerd) {
        return;
    }
    // The nested daemon may pull from the registry stand-in over plain HTTP.
    let mut host = Converged::with_real_dind(
        &root,
        &dockerd,
        "dind",
        &format!(
            "[containers.{DIND}]\ncommand = [\"--tls=false\", \"--insecure-registry=berth-test-registry:5000\"]\n"
        ),
    );
    let dind = dockerd.container_id(DIND);
    dockerd.docker([
        "run",
        "--detach",
        "--name",
        REGISTRY,
        "--network",
        "gitlab-runner-net",
        "--publish",
        "127.0.0.1:5000:5000",
        "berth-test/registry:stand-in",
    ]);
    dockerd.import_busybox_with(
        "127.0.0.1:5000/berth-test/prepulled:1",
        &["LABEL prepulled=1"],
    );
    let pushed = within(Duration::from_secs(30), || {
        dockerd
            .docker_unchecked(["push", "127.0.0.1:5000/berth-test/prepulled:1"])
            .status
            .success()
    });
    assert!(pushed.is_some(), "the registry stand-in takes a push");
    // What jobs left in dind: two images nothing uses, a job volume, and an image whose label
    // holds a terminal escape (a job chose it).
    import_in_dind(&dockerd, "berth-test/job:1", &["LABEL n=1"]);
    import_in_dind(&dockerd, "berth-test/job:2", &["LABEL n=2"]);
    import_in_dind(
        &dockerd,
        "berth-test/forged:1",
        &["LABEL evil=\"\u{1b}[2Jgone\""],
    );
    assert!(
        in_dind(
            &dockerd,
            &[
                "volume",
                "create",
                "--label",
                "com.gitlab.gitlab-runner.managed=true",
                JOB_VOLUME
            ]
        )
        .status
        .success()
    );

    host.layer(
        "hygiene",
        &format!("[hygiene]\nkeep_free = \"99%\"\nunused_images_after = \"0s\"\njob_volumes_after = \"0s\"\n[containers.{DIND}]\nprepull = [\"{PREPULLED}\"]\n"),
    );
    let plan = host.run("plan");
    plan.code(2);
    let line = plan.line_of(&format!("hygiene/{DIND}"));
    assert!(
        line.starts_with(&format!("hygiene/{DIND} ~ prune "))
            && line.contains(": 2 images unused 0s+, 1 job volume (data root ")
            && line.ends_with("% used; keep_free 99%)"),
        "{line}"
    );
    assert!(
        plan.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [&format!("hygiene/{DIND}"), "+", "prepull", PREPULLED]),
        "{}",
        plan.stdout
    );
    assert!(
        !plan.stdout.contains('\u{1b}') && !plan.stderr.contains('\u{1b}'),
        "{}",
        plan.stdout
    );

    host.run("apply").code(0);
    assert_eq!(
        dockerd.container_id(DIND),
        dind,
        "prepull and hygiene never recreate dind"
    );
    assert!(!dind_has(&dockerd, "image", "berth-test/job:1"));
    assert!(!dind_has(&dockerd, "image", "berth-test/job:2"));
    assert!(!dind_has(&dockerd, "volume", JOB_VOLUME));
    assert!(
        dind_has(&dockerd, "image", "berth-test/forged:1"),
        "berth does not act on what a job forged"
    );
    assert!(dind_has(&dockerd, "image", PREPULLED), "prepulled");

    // Removed by hand (or by a prune of its own): pulled back.
    assert!(
        in_dind(&dockerd, &["image", "rm", PREPULLED])
            .status
            .success()
    );
    let plan = host.run("plan");
    plan.code(2);
    assert!(plan.stdout.contains("prepull"), "{}", plan.stdout);
    host.run("apply").code(0);
    assert!(dind_has(&dockerd, "image", PREPULLED), "pulled back");
    // Still past keep_free, with the prepulled image there: it stays.
    import_in_dind(&dockerd, "berth-test/job:3", &["LABEL n=3"]);
    host.run("apply").code(0);
    assert!(!dind_has(&dockerd, "image", "berth-test/job:3"));
    assert!(
        dind_has(&dockerd, "image", PREPULLED),
        "a prepulled image is never pruned"
    );
    let _ = dockerd.docker_unchecked(["rm", "--force", REGISTRY]);
}

#[test]
fn an_apply_killed_while_pruning_is_finished_by_the_next() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    root.with_overlay_kernel();
    for n in 1..=3 {
        dockerd.import_busybox_with(&format!("berth-test/old:{n}"), &[&format!("LABEL n={n}")]);
    }
    let full = profile_file(
        &root.join("/work"),
        "full",
        "[hygiene]\nkeep_free = \"99%\"\nunused_images_after = \"0s\"\n",
    );
    let size: u64 = dockerd
        .docker([
            "image",
            "inspect",
            "--format",
            "{{.Size}}",
            "berth-test/old:1",
        ])
        .trim()
        .parse()
        .unwrap();
    let counted = || -> u64 {
        let record: serde_json::Value =
            serde_json::from_str(&root.read("/var/lib/berth/hygiene-pruned.json").unwrap())
                .unwrap();
        record["host"]["images"].as_u64().unwrap()
    };
    let fault = FaultDocker::install(&root, &dockerd);
    let apply = || {
        berth(&root)
            .docker(&dockerd)
            .faulted(&fault)
            .args(["apply", "--metrics-file", METRICS, "-p"])
            .args([dockerd.layer_file()])
            .args(["-p".as_ref(), full.as_os_str()])
            .run()
    };
    // Killed as the second image goes: Docker removes it, berth never hears so.
    fault.arm("image rm", 2, Target::Berth, Then::Proceed);
    let killed = apply();
    fault.wait_settled();
    assert!(
        fault.fired().is_some(),
        "the fault fired: {}\n{:?}",
        killed.transcript(),
        fault.calls()
    );
    let left = (1..=3)
        .filter(|n| dockerd.exists("image", &format!("berth-test/old:{n}")))
        .count();
    assert_eq!(left, 1, "two removed before the kill, one left");
    assert_eq!(
        counted(),
        size,
        "the first removal was counted before the kill"
    );

    fault.disarm();
    apply().code(0);
    for n in 1..=3 {
        assert!(!dockerd.exists("image", &format!("berth-test/old:{n}")));
    }
    // What Docker removed as berth died was never heard, so not counted: the counter never
    // counts more than was removed.
    assert_eq!(counted(), 2 * size);
    let metrics = root.read(METRICS).unwrap();
    assert!(
        metrics.contains(&format!(
            "berth_pruned_bytes_total{{daemon=\"host\",what=\"images\"}} {}\n",
            2 * size
        )),
        "{metrics}"
    );
    let plan = berth(&root)
        .docker(&dockerd)
        .args(["plan", "-p"])
        .args([dockerd.layer_file()])
        .args(["-p".as_ref(), full.as_os_str()])
        .run();
    plan.code(0);
    assert!(
        plan.line_of("hygiene/host")
            .starts_with("hygiene/host (nothing may go: "),
        "{}",
        plan.stdout
    );
}

/// A `docker` first on berth's PATH that answers for the dind daemon (`docker exec NAME docker
/// …`) as a daemon a job took over would: tags and labels with terminal escapes, or an answer
/// without end. Every other call goes to the real CLI.
fn hostile_dind_docker(dir: &Path, image_ls: &str, image_inspect: &str) {
    let real = which("docker").unwrap();
    crate::harness::write_executable(
        dir,
        "docker",
        &format!(
            r#"#!/bin/sh
printf '%s\n' "$*" >> '{log}'
if [ "$1" = exec ]; then
    case "$*" in
        *" docker info "*) echo '{{"ServerVersion":"20.10.24","DockerRootDir":"/var/lib/docker"}}'; exit 0 ;;
        *" docker image ls "*) {image_ls}; exit 0 ;;
        *" docker image inspect "*) {image_inspect}; exit 0 ;;
        *" docker container ls "*|*" docker volume ls "*) exit 0 ;;
        *" docker system df "*) echo '{{}}'; exit 0 ;;
    esac
fi
exec '{real}' "$@"
"#,
            log = dir.join("calls.log").display(),
            real = real.display(),
        ),
    );
}

#[test]
fn a_hostile_dind_daemon_is_neither_printed_nor_acted_on() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    root.with_overlay_kernel();
    dockerd.import_stand_in(APP_IMAGE, APP_SCRIPT, &[]);
    let site = profile_file(
        &root.join("/work"),
        "site",
        &format!(
            "[containers.berth-test-dind]\nimage = \"{APP_IMAGE}\"\ndind = true\n[hygiene]\nkeep_free = \"99%\"\nunused_images_after = \"0s\"\n"
        ),
    );
    // The stand-in runs no Docker daemon: past its first 30 s, a warning, and nothing done.
    let first = run(&root, &dockerd, "apply", &[&site]);
    first.code(0);
    assert!(
        first.stderr.contains(
            "`hygiene/berth-test-dind`: its Docker daemon does not answer, so nothing is pruned or prepulled there"
        ),
        "{}",
        first.transcript()
    );
    let bin = root.scratch("hostile-docker");
    let id = format!("sha256:{}", "e".repeat(64));
    // A tag and a label with a terminal escape (JSON lets a job say "\u001b").
    hostile_dind_docker(
        &bin,
        &format!("echo {id}"),
        &format!(
            r#"echo '[{{"Id":"{id}","RepoTags":["evil\u001b[2J:1"],"Created":"2020-01-01T00:00:00Z","Size":1000000,"Config":{{"Labels":{{"x":"\u001b]0;pwned\u0007"}}}}}}]'"#
        ),
    );
    let plan = berth(&root)
        .docker(&dockerd)
        .path_first(&bin)
        .args(["plan", "-p"])
        .args([dockerd.layer_file()])
        .args(["-p".as_ref(), site.as_os_str()])
        .run();
    assert!(
        !plan.stdout.contains('\u{1b}') && !plan.stderr.contains('\u{1b}'),
        "{}",
        plan.transcript()
    );
    assert!(
        plan.line_of("hygiene/berth-test-dind")
            .starts_with("hygiene/berth-test-dind (nothing may go: "),
        "the forged image is not a candidate: {}",
        plan.transcript()
    );
    let applied = berth(&root)
        .docker(&dockerd)
        .path_first(&bin)
        .args(["apply", "-p"])
        .args([dockerd.layer_file()])
        .args(["-p".as_ref(), site.as_os_str()])
        .run();
    applied.code(0);
    let calls = std::fs::read_to_string(bin.join("calls.log")).unwrap();
    assert!(!calls.contains(" rm "), "nothing removed: {calls}");

    // An answer without end: refused at its cap, the run fails and prints none of it.
    hostile_dind_docker(&bin, "yes sha256:0000", "echo '[]'");
    let plan = berth(&root)
        .docker(&dockerd)
        .path_first(&bin)
        .args(["plan", "-p"])
        .args([dockerd.layer_file()])
        .args(["-p".as_ref(), site.as_os_str()])
        .run();
    plan.code(1);
    assert!(
        plan.stderr
            .contains("printed more than 33554432 bytes and was stopped"),
        "{}",
        plan.stderr
    );
    assert!(
        plan.stdout.len() + plan.stderr.len() < 10_000,
        "{}",
        plan.transcript()
    );
}
