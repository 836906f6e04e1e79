//! `berth doctor` and systemd (issue 13, point 10): whether Docker's restart command can work,
//! berth.timer's state, and a gitlab-runner installed on the host beside the container. The
//! machine's systemd is never asked: a stand-in `systemctl` answers as systemd would, and the
//! root says whether systemd runs (`/run/systemd/system`).

use crate::harness::{Root, berth, write_executable};

/// A `systemctl` that answers `show berth.timer` with `properties`.
fn systemctl_stub(root: &Root, properties: &str) -> std::path::PathBuf {
    let bin = root.scratch("bin");
    write_executable(
        &bin,
        "systemctl",
        &format!("#!/bin/sh\n[ \"$1\" = show ] || exit 1\nprintf '%s\\n' '{properties}'\n"),
    );
    bin
}

/// doctor's verdict and detail for the check `name`, as `--json` gives them.
fn check(root: &Root, bin: &std::path::Path, name: &str) -> (String, String, String) {
    let run = berth(root).path_first(bin).args(["doctor", "--json"]).run();
    let check = run.doctor_check(name);
    let text = |key: &str| check[key].as_str().unwrap_or_default().to_owned();
    (text("stage"), text("verdict"), text("detail"))
}

#[test]
fn doctor_checks_the_restart_command_the_timer_and_a_host_gitlab_runner() {
    let root = Root::new();
    let disabled = systemctl_stub(
        &root,
        "LoadState=loaded\nUnitFileState=disabled\nActiveState=inactive\nLastTriggerUSec=n/a",
    );

    // No systemd running: the default `systemctl restart docker` cannot work, the timer is not
    // asked.
    let (stage, verdict, detail) = check(&root, &disabled, "docker restart");
    assert_eq!((stage.as_str(), verdict.as_str()), ("before_apply", "fail"));
    insta::assert_snapshot!(detail, @"`systemctl restart docker` cannot work: systemd is not running here (no /run/systemd/system)");
    let (stage, verdict, _) = check(&root, &disabled, "berth.timer");
    assert_eq!((stage.as_str(), verdict.as_str()), ("after_apply", "skip"));

    // An override that exists is fine without systemd.
    let site = crate::harness::profile_file(
        &root.scratch("profiles"),
        "site",
        "[docker]\nrestart = [\"sh\", \"-c\", \"service docker restart\"]\n",
    );
    let run = berth(&root)
        .args(["doctor", "--json", "-p", "dind", "-p"])
        .args([&site])
        .run();
    let restart = run.doctor_check("docker restart");
    assert_eq!(restart["verdict"], "ok", "{restart}");

    // systemd runs: the restart command can work; a timer not enabled before the first apply
    // is as it should be, after it a warning.
    root.mkdir("/run/systemd/system");
    let (_, verdict, _) = check(&root, &disabled, "docker restart");
    assert_eq!(verdict, "ok");
    let (_, verdict, detail) = check(&root, &disabled, "berth.timer");
    assert_eq!(
        (verdict.as_str(), detail.as_str()),
        ("skip", "not enabled (disabled) yet")
    );
    let files_only = crate::harness::profile_file(
        &root.scratch("profiles"),
        "files",
        "[docker.daemon]\nstorage-driver = \"overlay2\"\n",
    );
    berth(&root)
        .args(["apply", "-p"])
        .args([&files_only])
        .run()
        .code(0);
    let (_, verdict, detail) = check(&root, &disabled, "berth.timer");
    assert_eq!(verdict, "warn");
    insta::assert_snapshot!(detail, @"not enabled (disabled): drift is corrected only when someone runs `berth apply`");

    // Enabled and active, but berth.toml names no profiles: every run would refuse.
    let enabled = systemctl_stub(
        &root,
        "LoadState=loaded\nUnitFileState=enabled\nActiveState=active\nLastTriggerUSec=Tue 2026-12-01 14:00:03 UTC",
    );
    let (_, verdict, detail) = check(&root, &enabled, "berth.timer");
    assert_eq!(verdict, "warn");
    insta::assert_snapshot!(detail, @"enabled, but `/etc/berth/berth.toml` names no profiles: every timer run refuses");
    root.write("/etc/berth/berth.toml", "profiles = [\"dind\"]\n");
    let (_, verdict, detail) = check(&root, &enabled, "berth.timer");
    assert_eq!(verdict, "ok");
    insta::assert_snapshot!(detail, @"enabled, active, last triggered Tue 2026-12-01 14:00:03 UTC");

    // The gitlab-runner package's own service beside the container: a warning with the fix.
    let (stage, verdict, _) = check(&root, &enabled, "host gitlab-runner");
    assert_eq!((stage.as_str(), verdict.as_str()), ("before_apply", "ok"));
    root.write(
        "/lib/systemd/system/gitlab-runner.service",
        "[Service]\nExecStart=/usr/bin/gitlab-runner run\n",
    );
    root.mkdir("/etc/systemd/system/multi-user.target.wants");
    std::os::unix::fs::symlink(
        "/lib/systemd/system/gitlab-runner.service",
        root.join("/etc/systemd/system/multi-user.target.wants/gitlab-runner.service"),
    )
    .unwrap();
    let (_, verdict, detail) = check(&root, &enabled, "host gitlab-runner");
    assert_eq!(verdict, "warn");
    insta::assert_snapshot!(detail, @"`/lib/systemd/system/gitlab-runner.service` is installed (enabled): a gitlab-runner on the host would run beside the container, picking up jobs of its own");
}
