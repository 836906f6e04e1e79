//! berth in operation: install.sh and the systemd units, one run at a time, run reports and
//! metrics, `status` and `doctor`.

use std::{path::Path, process::Command};

use crate::{
    harness::{
        BERTH, Root, berth, profile_file, tool_available, unprivileged_layer, write_executable,
    },
    require_dockerd,
};

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn install(destdir: &Path, extra: &[&str]) -> std::process::Output {
    let output = Command::new("sh")
        .arg(repository().join("install.sh"))
        .arg("--destdir")
        .arg(destdir)
        .args(["--binary", BERTH])
        .args(extra)
        .env_remove("DESTDIR")
        .env_remove("PREFIX")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "install.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Every path under `dir` with its content (or link target) and mode.
fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    for entry in walk(dir) {
        let relative = entry.strip_prefix(dir).unwrap().display().to_string();
        let metadata = std::fs::symlink_metadata(&entry).unwrap();
        let what = if metadata.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&entry).unwrap().display())
        } else if metadata.is_dir() {
            "dir".to_owned()
        } else {
            let bytes = std::fs::read(&entry).unwrap();
            format!(
                "{:o} {} bytes {:?}",
                std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o7777,
                bytes.len(),
                metadata.modified().unwrap()
            )
        };
        entries.push((relative, what));
    }
    entries.sort();
    entries
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        found.push(path.clone());
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            found.extend(walk(&path));
        }
    }
    found
}

#[test]
fn install_sh_into_a_destdir_installs_the_tree_is_idempotent_and_uninstalls_cleanly() {
    let destdir = tempfile::tempdir().unwrap();
    // Something that was there before and must survive an uninstall.
    std::fs::create_dir_all(destdir.path().join("etc/systemd/system")).unwrap();
    std::fs::write(destdir.path().join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    let before = tree(destdir.path());

    install(destdir.path(), &[]);
    let d = destdir.path();
    for file in [
        "usr/local/bin/berth",
        "usr/local/share/doc/berth/berth.toml.example",
        "usr/local/share/man/man1/berth.1",
        "etc/berth/profiles/dind.toml",
        "usr/local/lib/systemd/system/berth.service",
        "usr/local/lib/systemd/system/berth.timer",
        "usr/local/lib/systemd/system/berth-watch.service",
    ] {
        assert!(d.join(file).is_file(), "{file} is installed");
    }
    assert!(
        !d.join("etc/systemd/system/multi-user.target.wants/berth-watch.service")
            .exists(),
        "berth-watch is installed, not enabled"
    );
    for profile in std::fs::read_dir(repository().join("profiles")).unwrap() {
        let name = profile.unwrap().file_name();
        assert!(
            d.join("etc/berth/profiles").join(&name).is_file(),
            "profile {name:?} is installed"
        );
    }
    assert!(
        !d.join("etc/systemd/system/timers.target.wants").exists(),
        "the timer is installed, not enabled (issue 13)"
    );
    assert!(
        !d.join("etc/berth/berth.toml").exists(),
        "berth.toml is the operator's (berth init)"
    );
    let installed_unit =
        std::fs::read_to_string(d.join("usr/local/lib/systemd/system/berth.service")).unwrap();
    assert!(installed_unit.contains("ExecStart=/usr/local/bin/berth apply --from-timer"));
    let installed = tree(d);

    let second = install(d, &[]);
    assert!(
        String::from_utf8_lossy(&second.stdout).starts_with("\nberth is installed."),
        "a second run installs nothing, and says what is next: {}",
        String::from_utf8_lossy(&second.stdout)
    );
    assert_eq!(
        tree(d),
        installed,
        "a second run changes nothing, not even a timestamp"
    );

    // An operator's edit to a profile is never overwritten; the shipped one did not change, so
    // nothing lands beside it (tests/it/packaging.rs: when it did).
    let profile = d.join("etc/berth/profiles/dind.toml");
    std::fs::write(&profile, "# site edits\n").unwrap();
    let third = install(d, &[]);
    assert!(
        !String::from_utf8_lossy(&third.stdout).contains("installed "),
        "{}",
        String::from_utf8_lossy(&third.stdout)
    );
    assert!(!d.join("etc/berth/profiles/dind.toml.new").exists());
    assert_eq!(std::fs::read_to_string(&profile).unwrap(), "# site edits\n");
    // ... and uninstall keeps it, since it is no longer what was installed.
    Command::new("sh")
        .arg(repository().join("install.sh"))
        .args(["--destdir"])
        .arg(d)
        .arg("--uninstall")
        .status()
        .unwrap();
    assert_eq!(std::fs::read_to_string(&profile).unwrap(), "# site edits\n");
    std::fs::remove_file(&profile).unwrap();
    std::fs::remove_dir_all(d.join("etc/berth")).unwrap();
    assert_eq!(
        tree(d),
        before,
        "uninstall leaves the destdir as it found it"
    );
}

#[test]
fn install_sh_honours_prefix_and_no_enable() {
    let destdir = tempfile::tempdir().unwrap();
    install(destdir.path(), &["--prefix", "/usr", "--no-enable"]);
    let d = destdir.path();
    assert!(d.join("usr/bin/berth").is_file());
    let unit = std::fs::read_to_string(d.join("usr/lib/systemd/system/berth.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/berth apply"), "{unit}");
    assert!(!d.join("etc/systemd/system/timers.target.wants").exists());
}

/// Every shell script git tracks: by name (`*.sh`) or by its `#!` line (`.ci/run`, the
/// maintainer scripts), so a script added later is checked without naming it here.
fn tracked_shell_scripts() -> Vec<String> {
    let listed = Command::new("git")
        .current_dir(repository())
        .args(["ls-files", "-z"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "git ls-files failed");
    let mut scripts = Vec::new();
    for name in String::from_utf8(listed.stdout)
        .unwrap()
        .split_terminator('\0')
    {
        let path = repository().join(name);
        let first_line = std::fs::read(&path)
            .map(|bytes| {
                let end = bytes
                    .iter()
                    .position(|&b| b == b'\n')
                    .unwrap_or(bytes.len());
                String::from_utf8_lossy(&bytes[..end]).into_owned()
            })
            .unwrap_or_default();
        let interpreter = first_line
            .strip_prefix("#!")
            .and_then(|line| line.split('/').next_back())
            .map(|rest| rest.trim_start_matches("env ").trim().to_owned());
        let shell = interpreter.is_some_and(|program| {
            ["sh", "bash", "dash"]
                .iter()
                .any(|shell| program == *shell || program.starts_with(&format!("{shell} ")))
        });
        if name.ends_with(".sh") || shell {
            scripts.push(name.to_owned());
        }
    }
    scripts
}

#[test]
fn every_tracked_shell_script_passes_shellcheck() {
    if !tool_available("shellcheck", "apt-get install shellcheck")
        || !tool_available("git", "apt-get install git")
    {
        return;
    }
    let scripts = tracked_shell_scripts();
    for expected in [
        ".ci/run",
        "install.sh",
        "build-deb.sh",
        "packaging/debian/postinst",
        "bench/lib.sh",
        "tests/fixtures/images/build.sh",
    ] {
        assert!(
            scripts.iter().any(|script| script == expected),
            "{expected} not found among {scripts:?}"
        );
    }
    let output = Command::new("shellcheck")
        .current_dir(repository())
        .args(&scripts)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn systemd_units_verify() {
    if !tool_available("systemd-analyze", "apt-get install systemd") {
        return;
    }
    // verify insists that ExecStart exists: point it at the binary under test.
    let units = tempfile::tempdir().unwrap();
    let service = std::fs::read_to_string(repository().join("systemd/berth.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/local/bin/berth apply"));
    let directive = |name: &str| {
        service
            .lines()
            .any(|line| line.starts_with(&format!("{name}=")))
    };
    assert!(
        directive("TimeoutStartSec") && directive("Type"),
        "oneshot with an explicit timeout"
    );
    assert!(
        !directive("RemainAfterExit"),
        "a oneshot that remains active stops the timer from firing"
    );
    assert!(!directive("ProtectKernelModules"), "berth runs modprobe");
    std::fs::write(
        units.path().join("berth.service"),
        service.replace("/usr/local/bin/berth", BERTH),
    )
    .unwrap();
    std::fs::copy(
        repository().join("systemd/berth.timer"),
        units.path().join("berth.timer"),
    )
    .unwrap();
    let watch = std::fs::read_to_string(repository().join("systemd/berth-watch.service")).unwrap();
    assert!(watch.contains("ExecStart=/usr/local/bin/berth watch"));
    assert!(
        watch.contains("Restart=always"),
        "a watcher that dies comes back"
    );
    std::fs::write(
        units.path().join("berth-watch.service"),
        watch.replace("/usr/local/bin/berth", BERTH),
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.path().join("berth.service"))
        .arg(units.path().join("berth.timer"))
        .arg(units.path().join("berth-watch.service"))
        .output()
        .unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let timer = std::fs::read_to_string(units.path().join("berth.timer")).unwrap();
    for line in [
        "OnBootSec=",
        "OnUnitActiveSec=15min",
        "RandomizedDelaySec=",
        // Each host keeps its own slot in the interval (issues 21 and 23).
        "FixedRandomDelay=yes",
        "AccuracySec=1s",
    ] {
        assert!(timer.contains(line), "the timer has {line}");
    }
    // `systemctl enable berth-watch` must make it start at boot, not leave it `static`.
    assert!(
        watch.ends_with("\n[Install]\nWantedBy=multi-user.target\n"),
        "{watch}"
    );
}

/// Chooses a profile of host files alone (overlay, daemon.json) through berth.toml: without
/// Docker objects, a root with no Docker converges (the dind profile's containers would wait
/// for a Docker that cannot be installed under a temporary root).
fn files_only(root: &Root, settings: &str) {
    root.write(
        "/etc/berth/profiles/files.toml",
        "[kernel]\nmodules = [\"overlay\"]\n\n[docker.daemon]\nstorage-driver = \"overlay2\"\n",
    )
    .write(
        "/etc/berth/berth.toml",
        &format!("profiles = [\"files\"]\n{settings}"),
    );
}

/// A root with a visible kernel that lacks overlay, so apply has to run `modprobe`.
fn root_needing_modprobe() -> Root {
    let root = Root::new();
    root.write("/proc/filesystems", "nodev\tsysfs\n")
        .write("/proc/modules", "");
    root
}

#[test]
fn a_second_apply_waits_for_the_first_and_neither_corrupts_anything() {
    let root = root_needing_modprobe();
    files_only(&root, "");
    let bin = root.join("/test-bin");
    // A slow modprobe: the first run holds the lock while it "loads" overlay.
    write_executable(
        &bin,
        "modprobe",
        &format!(
            "#!/bin/sh\necho \"$$ $*\" >> {log}\nsleep 2\necho \"$1 16384 0 - Live 0x0\" >> {modules}\n",
            log = bin.join("modprobe.log").display(),
            modules = root.join("/proc/modules").display()
        ),
    );
    let start = || {
        let mut command = Command::new(BERTH);
        command
            .env_clear()
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .arg("--root")
            .arg(root.path())
            .args(["apply", "--lock-timeout", "30"]);
        command.spawn().unwrap()
    };
    let first = start();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let second = start();
    let (first, second) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    assert!(first.status.success() && second.status.success());
    let calls = std::fs::read_to_string(bin.join("modprobe.log")).unwrap();
    assert_eq!(
        calls.lines().count(),
        1,
        "the second run waited and found overlay loaded: {calls}"
    );
    assert_eq!(
        root.read("/proc/modules").unwrap(),
        "overlay 16384 0 - Live 0x0\n"
    );
    let config: serde_json::Value =
        serde_json::from_str(&root.read("/etc/docker/daemon.json").unwrap()).unwrap();
    assert_eq!(config["storage-driver"], "overlay2");
}

#[test]
fn a_run_that_cannot_get_the_lock_names_the_holder_and_changes_nothing() {
    let root = Root::new();
    root.mkdir("/run/berth");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("/run/berth/lock"))
        .unwrap();
    let _held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let before = root.snapshot();
    let run = berth(&root).args(["apply", "--lock-timeout", "1"]).run();
    run.code(1);
    // This test holds it, not a berth: the kernel's word for who holds it is what counts.
    assert!(
        run.stderr.contains(&format!(
            "error: the run lock `/run/berth/lock` is held by pid {} (`",
            std::process::id()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("`), which is not berth; waited 1 s for it"),
        "{}",
        run.stderr
    );
    assert_eq!(root.snapshot(), before);
}

#[test]
fn status_and_metrics_describe_the_last_apply() {
    let root = Root::new();
    files_only(&root, "");
    let status = berth(&root).args(["status"]).run();
    status.code(1);
    assert_eq!(status.stdout, "berth has not applied on this host yet.\n");

    berth(&root)
        .args([
            "apply",
            "--metrics-file",
            "/var/lib/node-exporter/berth.prom",
        ])
        .run()
        .code(0);
    assert_eq!(root.mode("/var/lib/berth/last-run.json"), 0o600);
    let document = berth(&root).args(["status", "--json"]).run();
    document.code(0);
    let last_run = &document.json()["last_run"];
    assert_eq!(last_run["success"], true);
    assert_eq!(last_run["drift_detected"], true);
    assert_eq!(last_run["profiles"], serde_json::json!(["files"]));
    let ids: Vec<_> = last_run["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["kernel-module/overlay", "daemon-config"]);
    assert_eq!(last_run["berth_version"], env!("CARGO_PKG_VERSION"));
    let metrics = root.read("/var/lib/node-exporter/berth.prom").unwrap();
    assert!(
        metrics.contains("\nberth_last_run_success 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nberth_changes{kind=\"daemon-config\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nberth_changes{kind=\"kernel-module\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("\nberth_drift_detected 1\n"), "{metrics}");
    let started = last_run["started_at"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap();
    let age = jiff::Timestamp::now().duration_since(started).as_secs();
    assert!((0..60).contains(&age), "the run started {age} s ago");

    let human = berth(&root).args(["status"]).run();
    human.code(0);
    assert!(
        human.stdout.contains("result:    converged"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("  daemon-config  create /etc/docker/daemon.json\n"),
        "{}",
        human.stdout
    );

    // A converged run: nothing changed, no drift, metrics say so; berth.toml names the file.
    files_only(
        &root,
        "metrics_file = \"/var/lib/node-exporter/berth.prom\"\n",
    );
    berth(&root).args(["apply"]).run().code(0);
    let metrics = root.read("/var/lib/node-exporter/berth.prom").unwrap();
    assert!(
        metrics.contains("\nberth_drift_detected 0\n")
            && metrics.contains("\nberth_changes{kind=\"daemon-config\"} 0\n"),
        "{metrics}"
    );
    assert!(
        berth(&root)
            .args(["status"])
            .run()
            .stdout
            .contains("changes:   none")
    );
}

#[test]
fn a_failed_apply_is_recorded_as_failed() {
    let root = root_needing_modprobe();
    let bin = root.join("/test-bin");
    write_executable(
        &bin,
        "modprobe",
        "#!/bin/sh\necho 'modprobe: FATAL: Module overlay not found' >&2\nexit 1\n",
    );
    berth(&root)
        .path_first(&bin)
        .args(["apply", "--metrics-file", "/m/berth.prom"])
        .run()
        .code(1);
    let status = berth(&root).args(["status"]).run();
    status.code(1);
    assert!(
        status.stdout.contains("result:    failed"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("error: kernel-module/overlay: failed to load `kernel-module/overlay`"),
        "{}",
        status.stdout
    );
    assert!(
        root.read("/m/berth.prom")
            .unwrap()
            .contains("\nberth_last_run_success 0\n")
    );

    // A profile that does not parse is a failed run too.
    let broken = profile_file(&root.join("/work"), "broken", "nonsense = 1\n");
    berth(&root)
        .args(["apply", "-p"])
        .args([&broken])
        .run()
        .code(1);
    let last_run = berth(&root).args(["status", "--json"]).run().json();
    assert_eq!(last_run["last_run"]["success"], false);
    assert_eq!(
        last_run["last_run"]["errors"][0]["message"],
        "invalid profile `[ROOT]/work/broken.toml`"
    );
}

#[test]
fn doctor_reports_missing_overlay_unreachable_daemon_and_flag_conflicts() {
    let root = root_needing_modprobe();
    root.write("/lib/systemd/system/docker.service", "[Service]\nExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock\n");
    root.write(
        "/etc/docker/daemon.json",
        "{\"hosts\": [\"tcp://0.0.0.0:2375\"]}\n",
    );
    let run = berth(&root).args(["doctor", "--json"]).run();
    run.code(1);
    let document = run.json();
    assert_eq!(document["healthy"], false);
    let verdict = |name: &str| run.doctor_check(name);
    assert_eq!(verdict("overlay")["verdict"], "fail");
    assert!(
        verdict("overlay")["fix"]
            .as_str()
            .unwrap()
            .contains("modprobe overlay")
    );
    assert_eq!(verdict("docker daemon")["verdict"], "fail");
    assert!(
        verdict("docker daemon")["detail"]
            .as_str()
            .unwrap()
            .contains("Cannot connect to the Docker daemon")
    );
    let conflict = verdict("daemon.json vs flags");
    assert_eq!(conflict["verdict"], "fail");
    assert!(
        conflict["detail"]
            .as_str()
            .unwrap()
            .contains("`hosts` (flag `-H fd://`)"),
        "{conflict}"
    );
    assert_eq!(verdict("kernel")["verdict"], "ok");

    let human = berth(&root).args(["doctor"]).run();
    human.code(1);
    assert!(human.stdout.contains("FAIL  overlay "), "{}", human.stdout);
    assert!(
        human.stdout.contains("Unhealthy: fix what FAILs above."),
        "{}",
        human.stdout
    );
}

#[test]
fn doctor_on_a_converged_host_exits_0_and_before_apply_says_what_is_missing() {
    let root = Root::new();
    root.with_overlay_kernel();
    let dockerd = require_dockerd!(&root);
    dockerd.import_profile_images();
    let stand_ins = profile_file(
        &root.join("/work"),
        "stand-ins",
        &unprivileged_layer(&["gitlab-dind"]),
    );
    let profiles: Vec<std::ffi::OsString> = vec![
        "-p".into(),
        "dind".into(),
        "-p".into(),
        dockerd.layer_file().into(),
        "-p".into(),
        stand_ins.into(),
    ];

    let before = berth(&root)
        .docker(&dockerd)
        .args(["doctor"])
        .args(&profiles)
        .run();
    // Before the first apply, what apply creates is not there yet: no failure for it.
    let (_, after_apply) = before
        .stdout
        .split_once("After apply: what berth made\n")
        .unwrap_or_else(|| panic!("no after-apply stage:\n{}", before.stdout));
    insta::assert_snapshot!(after_apply, @r"
    skip  gitlab-runner → tcp://gitlab-dind:2375    not created yet (berth apply creates it)
    skip  berth.timer                               systemd is not running here

    Healthy: every hard requirement is met.
    ");
    before.code(0);

    berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(&profiles)
        .run()
        .code(0);
    // The runner's config directory, created by berth for its bind mount, is kept as
    // gitlab-runner keeps it: it will hold the runner tokens.
    assert_eq!(root.mode("/srv/gitlab-runner"), 0o700);
    // Doctor's host checks and its probe inside the runner (an exec through the API) start no
    // `docker` process: a `docker` first on PATH logs any call.
    let recorder = root.scratch("recording-docker");
    let calls = crate::harness::write_logging_stubs(&recorder, &["docker"], "exit 1");
    let run = berth(&root)
        .docker(&dockerd)
        .path_first(&recorder)
        .args(["doctor"])
        .args(&profiles)
        .run();
    run.code(0);
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap_or_default(),
        "",
        "doctor ran docker"
    );
    let line = |name: &str| {
        run.stdout
            .lines()
            .find(|line| line.get(6..).is_some_and(|rest| rest.starts_with(name)))
            .unwrap_or_else(|| panic!("no `{name}` line:\n{}", run.stdout))
            .to_owned()
    };
    assert!(
        line("storage driver").starts_with("ok ") && line("storage driver").ends_with(" overlay2")
    );
    assert!(line("docker daemon").starts_with("ok ") && line("docker daemon").contains("Docker "));
    // Found on PATH, not run; the daemon's version from `GET /version`.
    let cli = line("docker CLI");
    assert!(
        cli.starts_with("ok ")
            && cli.contains(&format!(
                "`{}` is installed",
                recorder.join("docker").display()
            ))
            && cli.contains("; the daemon is Docker ")
            && cli.contains(" (API 1."),
        "{cli}"
    );
    assert!(
        line("gitlab-runner → tcp://gitlab-dind:2375").starts_with("ok "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Healthy: every hard requirement is met.")
    );
}

#[test]
fn doctor_fails_a_runner_config_others_can_read() {
    let root = Root::new();
    let profile = profile_file(&root.join("/work"), "runner", "[runner]\nconcurrent = 2\n");
    root.write("/srv/gitlab-runner/config.toml", "concurrent = 2\n");
    let permissions = |path: &str, mode: u32| {
        std::fs::set_permissions(
            root.join(path),
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .unwrap()
    };
    permissions("/srv/gitlab-runner", 0o700);
    permissions("/srv/gitlab-runner/config.toml", 0o644);
    let verdict = || {
        berth(&root)
            .args(["doctor", "--json", "-p"])
            .args([&profile])
            .run()
            .doctor_check("runner config")
    };
    let check = verdict();
    assert_eq!(check["verdict"], "fail", "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("is mode 0644: others can read the runner tokens"),
        "{check}"
    );
    permissions("/srv/gitlab-runner/config.toml", 0o600);
    assert_eq!(verdict()["verdict"], "ok");
}

/// Issue 13, item 7: `berth pause "reason"` stops apply from changing anything (a container
/// stopped by hand stays stopped) and says who paused the host, why and when; plan, status and
/// the metrics say so too; `berth resume` lets apply converge again.
#[test]
fn a_paused_host_changes_nothing_until_resumed() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let host = crate::profiles::Converged::new(&root, &dockerd, "dind", "");
    root.write(
        "/etc/berth/berth.toml",
        "metrics_file = \"/var/lib/node-exporter/berth.prom\"\n",
    );
    let running = || dockerd.inspect_container("gitlab-dind")["State"]["Running"].clone();
    dockerd.docker(["stop", "gitlab-dind"]);

    let pause = host
        .berth()
        .args(["pause", "kernel upgrade until Friday"])
        .env("SUDO_USER", "alice")
        .run();
    pause.code(0);
    assert!(
        pause.stdout.starts_with("berth is paused by alice since "),
        "{}",
        pause.stdout
    );
    let metrics = || root.read("/var/lib/node-exporter/berth.prom").unwrap();
    assert!(metrics().contains("\nberth_paused 1\n"), "{}", metrics());

    let before = root.snapshot();
    let apply = host.run("apply");
    apply.code(0);
    assert!(
        apply.stdout.contains("berth is paused by alice since ")
            && apply.stdout.contains(
                " ago): kernel upgrade until Friday; nothing was changed (`berth resume` to converge again)"
            ),
        "{}",
        apply.stdout
    );
    assert_eq!(running(), false, "the stopped container stays stopped");
    let mut after = root.snapshot();
    after.retain(|path, _| !path.ends_with("berth.prom"));
    let mut before_without_metrics = before;
    before_without_metrics.retain(|path, _| !path.ends_with("berth.prom"));
    assert_eq!(
        after, before_without_metrics,
        "apply wrote nothing but the metrics"
    );

    let plan = host.run("plan");
    plan.code(2);
    assert!(
        plan.stdout.contains("container/gitlab-dind")
            && plan.stderr.contains("berth is paused by alice since ")
            && plan
                .stderr
                .contains(": apply changes nothing until `berth resume`"),
        "{}",
        plan.transcript()
    );
    let status = host.berth().args(["status"]).run();
    assert!(
        status.stdout.contains("paused:    paused by alice since ")
            && status.stdout.contains("kernel upgrade until Friday"),
        "{}",
        status.stdout
    );
    let status = host.berth().args(["status", "--json"]).run();
    assert_eq!(
        status.json()["paused"]["reason"],
        "kernel upgrade until Friday"
    );
    assert_eq!(status.json()["paused"]["by"], "alice");

    let resume = host.berth().args(["resume"]).run();
    resume.code(0);
    assert_eq!(resume.stdout, "berth resumed: apply converges again\n");
    assert!(metrics().contains("\nberth_paused 0\n"), "{}", metrics());
    host.run("apply").code(0);
    assert_eq!(running(), true, "apply converges again");
    host.converged();
    assert!(
        !host
            .berth()
            .args(["status"])
            .run()
            .stdout
            .contains("paused:")
    );
}
