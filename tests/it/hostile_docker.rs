//! Issue 18, the Docker objects' half: whoever can start a container beside berth (a CI job on
//! the `socket` topology) cannot make berth remove what it never made, nor, without root, take
//! or hold berth's run lock; and the `berth.instance` label, now an HMAC of the machine id,
//! still counts the objects an earlier berth labelled with the raw id as this instance's.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    harness::{
        BERTH, Dockerd, Root, Run, as_nobody, berth, profile_file, within, write_executable,
    },
    profiles::Converged,
    require_dockerd,
};

const RUNNER: &str = "gitlab-runner";
const DIND: &str = "gitlab-dind";
const NETWORK: &str = "gitlab-runner-net";

#[test]
fn forged_label_values_never_make_berth_remove_what_it_did_not_make() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let host = Converged::new(&root, &dockerd, "dind", "");
    // The victims: made by someone else, no label at all.
    dockerd.import_busybox("hostile-image:1");
    dockerd.docker(["network", "create", "victim-net"]);
    dockerd.docker([
        "container",
        "create",
        "--name",
        "victim-runner",
        "hostile-image:1",
    ]);
    // The forgers claim to be berth's; their instance label, printed as `NAME\tINSTANCE\t...`
    // lines, forged a line naming each victim as this instance's (no machine id here: the
    // instance is `unknown`). Listed as text, both victims were removed.
    dockerd.docker([
        "network",
        "create",
        "--label",
        "berth.managed=true",
        "--label",
        "berth.instance=x\nvictim-net\tunknown\t",
        "forger-net",
    ]);
    dockerd.docker([
        "container",
        "create",
        "--name",
        "forger",
        "--label",
        "berth.managed=true",
        "--label",
        "berth.instance=x\nvictim-runner\tunknown\t",
        "hostile-image:1",
    ]);
    let untouched = |when: &str| {
        for (kind, name) in [
            ("network", "victim-net"),
            ("container", "victim-runner"),
            ("network", "forger-net"),
            ("container", "forger"),
        ] {
            assert!(dockerd.exists(kind, name), "{kind} {name} is left {when}");
        }
    };
    let said_refused = |run: &Run| {
        for id in ["container/forger", "network/forger-net"] {
            assert!(
                run.line_of(id).starts_with(&format!(
                    "{id} (refused: labelled `berth.managed=true`, but its label \"berth.instance\" holds a control character;"
                )),
                "{}",
                run.stdout
            );
        }
        assert!(!run.stdout.contains("victim"), "{}", run.stdout);
    };

    // Nothing else to do: refused is said, and is not a change.
    let plan = host.run("plan");
    plan.code(0);
    said_refused(&plan);
    let apply = host.run("apply");
    apply.code(0);
    said_refused(&apply);
    untouched("after apply");

    let destroy_plan = host.run_with("plan", &["--destroy"]);
    destroy_plan.code(2);
    said_refused(&destroy_plan);
    let destroy = host.run_with("destroy", &["--yes", "--purge"]);
    destroy.code(0);
    said_refused(&destroy);
    untouched("after destroy");
    for (kind, name) in [
        ("container", RUNNER),
        ("container", DIND),
        ("network", NETWORK),
    ] {
        assert!(
            !dockerd.exists(kind, name),
            "berth's own {kind} {name} went"
        );
    }
}

#[test]
fn a_volume_swapped_after_the_listing_is_never_removed() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_busybox("berth-test/slow:1");
    let volume = "berth-test-swapped";
    // A volume no container uses, and a container whose drain lasts its whole stop timeout
    // (PID 1 ignores a signal it has no handler for).
    let profile = profile_file(
        &root.join("/work"),
        "site",
        &format!(
            "[volumes.{volume}]\n[containers.berth-test-slow]\nimage = \"berth-test/slow:1\"\ncommand = [\"sleep\", \"3600\"]\nrestart = \"always\"\nstop_signal = \"SIGUSR1\"\nstop_timeout = 8\n"
        ),
    );
    let with_profile = || {
        berth(&root).docker(&dockerd).args([
            "-p".as_ref(),
            dockerd.layer_file().as_os_str(),
            "-p".as_ref(),
            profile.as_os_str(),
        ])
    };
    with_profile().args(["apply"]).run().code(0);
    let mut destroy = with_profile().args(["destroy", "--yes", "--purge"]).spawn();
    // Someone puts a volume of their own under that name (a volume has no ID but its name)
    // after berth listed what it made and before it removes the volume: here while berth
    // drains the container, which it does once it turned the container's restart policy off.
    let draining = within(Duration::from_secs(30), || {
        let policy = dockerd.docker_unchecked([
            "container",
            "inspect",
            "--format",
            "{{.HostConfig.RestartPolicy.Name}}",
            "berth-test-slow",
        ]);
        String::from_utf8_lossy(&policy.stdout).trim() == "no"
    });
    assert!(draining.is_some(), "{}", destroy.output());
    dockerd.docker(["volume", "rm", volume]);
    dockerd.docker(["volume", "create", "--label", "owner=someone-else", volume]);
    let code = destroy.child.wait().unwrap().code();
    let output = destroy.output();
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains(&format!(
            "caused by: refused to remove volume `{volume}`: looked at again by its name, it no longer carries `berth.managed=true`"
        )),
        "{output}"
    );
    let labels = dockerd.docker(["volume", "inspect", "--format", "{{json .Labels}}", volume]);
    assert_eq!(
        labels.trim(),
        r#"{"owner":"someone-else"}"#,
        "their volume is left"
    );
}

/// A root that reads like a host's to another user (`/` and `/run` searchable, as they are),
/// whose apply takes `seconds` in a stub `modprobe`, so the lock is held that long.
fn slow_host(seconds: u32) -> Root {
    let root = Root::new();
    root.write("/proc/filesystems", "nodev\tsysfs\n")
        .write("/proc/modules", "")
        .write(
            "/etc/berth/profiles/files.toml",
            "[kernel]\nmodules = [\"overlay\"]\n",
        )
        .write("/etc/berth/berth.toml", "profiles = [\"files\"]\n")
        .mkdir("/run");
    for dir in [root.path().to_owned(), root.join("/run")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    write_executable(
        &root.join("/test-bin"),
        "modprobe",
        &format!(
            "#!/bin/sh\nsleep {seconds}\necho \"$1 16384 0 - Live 0x0\" >> {}\n",
            root.join("/proc/modules").display()
        ),
    );
    root
}

fn apply(root: &Root, lock_timeout: &str) -> Command {
    let mut command = Command::new(BERTH);
    command
        .env_clear()
        .env(
            "PATH",
            format!(
                "{}:{}",
                root.join("/test-bin").display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .arg("--root")
        .arg(root.path())
        .args(["apply", "--lock-timeout", lock_timeout]);
    command
}

/// `flock -n LOCK true` as `nobody`: what any local user could do to the lock.
fn nobody_flock(lock: &Path, extra: &[&str]) -> Option<std::process::Output> {
    let mut command = as_nobody("flock")?;
    command.args(extra).arg(lock).arg("true");
    Some(command.output().unwrap())
}

#[test]
fn a_user_who_is_not_root_can_neither_take_nor_hold_the_run_lock() {
    if as_nobody("true").is_none() {
        return;
    }
    let root = slow_host(3);
    let lock = root.join("/run/berth/lock");
    // Before berth ever ran, nobody can make the lock (or its directory) for berth to find.
    let early = nobody_flock(&lock, &["--nonblock", "--conflict-exit-code", "42"]).unwrap();
    let mkdir = as_nobody("mkdir")
        .unwrap()
        .arg(root.join("/run/berth"))
        .output()
        .unwrap();
    assert!(
        !early.status.success() && !mkdir.status.success(),
        "{early:?} {mkdir:?}"
    );
    assert!(!root.exists("/run/berth"));

    let mut running = apply(&root, "30")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        within(Duration::from_secs(10), || root.exists("/run/berth/lock")).is_some(),
        "apply took the lock"
    );
    for (path, mode) in [("/run/berth", 0o700), ("/run/berth/lock", 0o600)] {
        let metadata = std::fs::symlink_metadata(root.join(path)).unwrap();
        assert_eq!(
            (metadata.mode() & 0o7777, metadata.uid()),
            (mode, 0),
            "{path}"
        );
    }
    // While root's apply holds it, another user is refused the file, not told to wait.
    let during = nobody_flock(&lock, &["--nonblock", "--conflict-exit-code", "42"]).unwrap();
    assert!(
        during.status.code() != Some(42)
            && !during.status.success()
            && String::from_utf8_lossy(&during.stderr).contains("Permission denied"),
        "{during:?}"
    );
    assert!(running.wait().unwrap().success(), "the apply went on");

    // Nor can they hold it against the next apply: theirs fails at once, root's runs.
    let mut holder = as_nobody("flock").unwrap();
    let holder = holder
        .arg(&lock)
        .args(["sleep", "30"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let next = apply(&root, "1").output().unwrap();
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    let held = holder.wait_with_output().unwrap();
    assert!(!held.status.success(), "nobody never held it: {held:?}");
}

#[test]
fn a_lock_held_by_something_other_than_berth_is_named_as_such() {
    let root = slow_host(0);
    let first = apply(&root, "1").output().unwrap();
    assert!(first.status.success(), "{first:?}");
    let lock = root.join("/run/berth/lock");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    // `flock` holds it once `sleep` runs under it.
    let pid = holder.id();
    assert!(
        within(Duration::from_secs(5), || {
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .is_ok_and(|children| !children.trim().is_empty())
        })
        .is_some()
    );
    let blocked = apply(&root, "1").output().unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let stderr = String::from_utf8_lossy(&blocked.stderr);
    assert_eq!(blocked.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: the run lock `/run/berth/lock` is held by pid {pid} (`flock`), which is not berth; waited 1 s for it"
        )),
        "{stderr}"
    );
}

#[test]
fn an_upgrade_from_the_raw_machine_id_label_replaces_and_orphans_nothing() {
    const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";
    // `systemd-id128 machine-id --app-specific=d0598ab36e01462894ed1099e13ed3ce` for it.
    const INSTANCE: &str = "cf22852b4dc14e98ac772f8db7ab3721";
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    root.write("/etc/machine-id", &format!("{MACHINE_ID}\n"));
    // What an earlier berth made: everything labelled with the raw machine id.
    let mut host = Converged::new(
        &root,
        &dockerd,
        "dind",
        &format!("instance = \"{MACHINE_ID}\"\n"),
    );
    let label = |kind: &str, name: &str| {
        let format = if kind == "container" {
            "{{index .Config.Labels \"berth.instance\"}}"
        } else {
            "{{index .Labels \"berth.instance\"}}"
        };
        dockerd
            .docker([kind, "inspect", "--format", format, name])
            .trim()
            .to_owned()
    };
    assert_eq!(label("container", RUNNER), MACHINE_ID);
    let ids = host.ids();
    // Another machine's objects on this daemon, labelled the old way: never this instance's.
    dockerd.docker([
        "network",
        "create",
        "--label",
        "berth.managed=true",
        "--label",
        "berth.instance=fedcba9876543210fedcba9876543210",
        "their-net",
    ]);

    // The new default: no `instance` in the profile.
    let test_layer = host.layers.len() - 1;
    host.layers[test_layer] = profile_file(&root.join("/work"), "test", "");
    host.converged();
    let apply = host.run("apply");
    apply.code(0);
    assert!(apply.stdout.contains("Nothing to do"), "{}", apply.stdout);
    assert_eq!(host.ids(), ids, "no container replaced");

    // What it makes now is labelled with the HMAC; the raw id is published no more.
    host.layer("more", "[networks.extra-net]\n");
    host.run("apply").code(0);
    assert_eq!(label("network", "extra-net"), INSTANCE);
    assert_eq!(host.ids(), ids);

    // Destroy takes both kinds of label as this instance's, and never the other machine's.
    host.run_with("destroy", &["--yes"]).code(0);
    for (kind, name) in [
        ("container", RUNNER),
        ("container", DIND),
        ("network", NETWORK),
        ("network", "extra-net"),
    ] {
        assert!(!dockerd.exists(kind, name), "{kind} {name} went");
    }
    assert!(dockerd.exists("network", "their-net"));
}

/// Makes the container `name` of `hostile-image:1` with `labels` as a DooD job would, over
/// the daemon's socket: the CLI cannot carry a label this large (an argument is at most
/// 128 KiB, a `--label-file` line 64 KiB); the daemon takes it.
pub fn create_over_the_socket(dockerd: &Dockerd, name: &str, labels: &serde_json::Value) {
    use std::io::{Read as _, Write as _};
    let body = serde_json::json!({"Image": "hostile-image:1", "Cmd": ["sh"], "Labels": labels})
        .to_string();
    let socket = dockerd.host().replacen("unix://", "", 1);
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(
        stream,
        "POST /containers/create?name={name} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 201"), "{answer}");
}

/// Issue 24: a job beside berth can make a container whose label is as large as the daemon
/// takes (dockerd 20.10 took 70 MiB), with berth's ownership label, and berth's listing of
/// what it made then reads it: under berth's 64 MiB cap of an answer it is read (and the
/// forgery refused, as above); over it berth stops reading, says so with the cap named, and
/// goes on without the listing; it neither hangs nor crashes.
#[test]
fn a_listing_past_berths_cap_is_refused_with_the_cap_named_and_one_under_it_read() {
    const MIB: usize = 1024 * 1024;
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_busybox("hostile-image:1");
    let profile = profile_file(
        &root.scratch("profiles"),
        "site",
        &format!("{}\n[volumes.berth-test-bounded]\n", dockerd.layer()),
    );
    let run = |command: &str| {
        berth(&root)
            .docker(&dockerd)
            .args(["-p".as_ref(), profile.as_os_str(), command.as_ref()])
            .run()
    };
    let hostile = |size: usize| {
        serde_json::json!({
            "berth.managed": "true",
            "berth.instance": "x\nforged",
            "huge": "x".repeat(size),
        })
    };

    create_over_the_socket(&dockerd, "hostile-16", &hostile(16 * MIB));
    let plan = run("plan");
    plan.code(2);
    assert!(
        plan.line_of("container/hostile-16").starts_with(
            "container/hostile-16 (refused: labelled `berth.managed=true`, but its label \"berth.instance\" holds a control character;"
        ),
        "{}",
        plan.transcript()
    );
    assert!(
        plan.stdout.contains("volume/berth-test-bounded"),
        "{}",
        plan.stdout
    );

    // Over the cap the listing fails as any failed listing does: said, with the cap, and the
    // run goes on without what it would have found (orphans are not shown, nor removed).
    create_over_the_socket(&dockerd, "hostile-70", &hostile(70 * MIB));
    for (command, code) in [("plan", 2), ("apply", 0)] {
        let started = std::time::Instant::now();
        let refused = run(command);
        // A hang would last at least berth's 60 s query timeout.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{command} took {:?}",
            started.elapsed()
        );
        refused.code(code);
        assert_eq!(
            refused.stderr.lines().next(),
            Some(
                "warning: failed to list the containers berth made: the answer to `GET /containers` is larger than 64 MiB: berth stopped reading it; what the profiles no longer declare is not shown"
            ),
            "{}",
            refused.transcript()
        );
        assert!(!refused.stdout.contains("hostile"), "{}", refused.stdout);
    }
    assert!(dockerd.exists("volume", "berth-test-bounded"));
    assert!(dockerd.exists("container", "hostile-16"));
    assert!(dockerd.exists("container", "hostile-70"));
    assert!(dockerd.answers(), "the daemon still answers");
}
