//! The command line itself: help, exit codes, output formats, profile selection.

use crate::harness::{Root, berth, profile_file};

#[test]
fn help_for_every_subcommand_is_stable() {
    let root = Root::new();
    for subcommand in [
        None,
        Some("plan"),
        Some("apply"),
        Some("validate"),
        Some("status"),
        Some("doctor"),
        Some("watch"),
        Some("init"),
        Some("destroy"),
    ] {
        let mut args = Vec::from_iter(subcommand);
        args.push("--help");
        let run = berth(&root).args(&args).run();
        run.code(0);
        insta::assert_snapshot!(
            format!("help-{}", subcommand.unwrap_or("berth")),
            run.stdout
        );
    }
}

#[test]
fn plan_on_an_empty_root_shows_every_change_and_exits_1_for_the_refused_install() {
    let root = Root::new();
    let run = berth(&root).args(["plan"]).run();
    // Docker cannot be installed into a root that is not `/`: a refused change is an error.
    run.code(1);
    insta::assert_snapshot!(run.transcript());
}

/// The issue-10 bug: Docker missing, and apply said "Apply complete" with no container made.
#[test]
fn apply_of_the_dind_profile_on_an_empty_root_fails_saying_docker_cannot_be_installed() {
    let root = Root::new();
    let run = berth(&root).args(["apply"]).run();
    run.code(1);
    assert!(
        run.stdout
            .contains("Apply failed: 2 added, 0 changed, 0 destroyed, 6 failed."),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("error: refused to install `package/docker`\n  caused by: Docker is not installed, and the root has no /etc/os-release"),
        "{}",
        run.stderr
    );
    // The files need no Docker: they are written all the same.
    assert!(root.exists("/etc/docker/daemon.json"));
}

/// Host files alone (no Docker objects, so no Docker to install) converge on an empty root.
#[test]
fn apply_then_plan_on_an_empty_root_converges() {
    let root = Root::new();
    let files_only = profile_file(
        &root.join("/work"),
        "files",
        "[kernel]\nmodules = [\"overlay\"]\n\n[docker.daemon]\nstorage-driver = \"overlay2\"\n",
    );
    let berth = || berth(&root).args(["-p"]).args([&files_only]);
    berth().args(["apply"]).run().code(0);
    assert_eq!(
        root.read("/etc/modules-load.d/overlay.conf").unwrap(),
        "# Written by berth: load overlay at boot (systemd-modules-load).\noverlay\n"
    );
    let daemon_json: serde_json::Value =
        serde_json::from_str(&root.read("/etc/docker/daemon.json").unwrap()).unwrap();
    assert_eq!(daemon_json["storage-driver"], "overlay2");
    assert_eq!(root.mode("/etc/docker/daemon.json"), 0o644);
    let before = root.snapshot();
    let mtime = root.mtime("/etc/docker/daemon.json");
    berth().converged();
    berth().args(["apply"]).run().code(0);
    assert_eq!(
        root.snapshot(),
        before,
        "a converged apply rewrites nothing"
    );
    assert_eq!(root.mtime("/etc/docker/daemon.json"), mtime);
}

#[test]
fn plan_json_is_one_document_with_the_changes() {
    let root = Root::new();
    let run = berth(&root).args(["plan", "--json"]).run();
    // The install is refused on a root that is not `/`, and a refused change is an error.
    run.code(1);
    let document = run.json();
    assert_eq!(document["schema_version"], 1);
    assert_eq!(document["command"], "plan");
    assert_eq!(document["profiles"], serde_json::json!(["dind"]));
    let changes = document["changes"].as_array().unwrap();
    let ids: Vec<_> = changes
        .iter()
        .map(|change| {
            (
                change["id"].as_str().unwrap(),
                change["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("kernel-module/overlay", "persist"),
            ("package/docker", "install"),
            ("daemon-config", "create"),
            ("network/gitlab-runner-net", "create"),
            ("volume/gitlab-dind-data", "create"),
            ("container/gitlab-dind", "create"),
            ("container/gitlab-runner", "create"),
        ]
    );
    assert!(
        changes[1]["refused"]
            .as_str()
            .unwrap()
            .contains("no /etc/os-release"),
        "{}",
        changes[1]
    );
    let fields = &changes[2]["fields"];
    assert_eq!(
        fields[0],
        serde_json::json!({"path": "storage-driver", "after": "overlay2"})
    );
    assert!(
        changes[2]["diff"]
            .as_str()
            .unwrap()
            .contains("+  \"storage-driver\": \"overlay2\",")
    );
    assert_eq!(
        document["summary"],
        serde_json::json!({"add": 6, "change": 0, "destroy": 0, "refused": 1, "failed": 0})
    );
    let warnings: Vec<_> = document["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(warnings, ["kernel-module/overlay", "daemon/docker"]);
}

#[test]
fn apply_json_reports_what_was_done() {
    let root = Root::new();
    let run = berth(&root).args(["apply", "--json"]).run();
    run.code(1);
    let document = run.json();
    assert_eq!(document["command"], "apply");
    let statuses: Vec<_> = document["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["done", "failed", "done"]);
}

#[test]
fn profiles_layer_in_order_and_operator_copies_win_over_embedded_ones() {
    let root = Root::new();
    root.write(
        "/etc/berth/profiles/dind.toml",
        "[docker.daemon]\nstorage-driver = \"overlay2\"\n",
    );
    let site = profile_file(
        &root.join("/work"),
        "site",
        "[docker.daemon]\nregistry-mirrors = [\"https://mirror.example.com\"]\n",
    );
    let run = berth(&root)
        .args(["plan", "--json", "-p", "dind", "-p"])
        .args([&site])
        .run();
    run.code(2);
    let document = run.json();
    assert_eq!(document["profiles"], serde_json::json!(["dind", "site"]));
    let ids: Vec<_> = document["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["daemon-config"],
        "the operator's dind has no kernel section"
    );
    let paths: Vec<_> = document["changes"][0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["storage-driver", "registry-mirrors"]);
}

#[test]
fn berth_toml_chooses_the_profiles_when_no_p_is_given() {
    let root = Root::new();
    root.write(
        "/etc/berth/profiles/only-mirror.toml",
        "[docker.daemon]\nregistry-mirrors = [\"https://m.example\"]\n",
    );
    root.write("/etc/berth/berth.toml", "profiles = [\"only-mirror\"]\n");
    let document = berth(&root).args(["plan", "--json"]).run().json();
    assert_eq!(document["profiles"], serde_json::json!(["only-mirror"]));
    assert_eq!(
        document["changes"][0]["fields"][0]["path"],
        "registry-mirrors"
    );
}

#[test]
fn validate_checks_profiles_without_touching_the_host() {
    let root = Root::new();
    let run = berth(&root).args(["validate"]).run();
    run.code(0);
    insta::assert_snapshot!(run.stdout, @r"
    warning: dind (embedded):65:13: key `containers.gitlab-runner`: no runner is declared: the host will run a runner container that takes no jobs (berth init writes one)
    valid: dind
    ");
    assert!(root.snapshot().is_empty(), "validate wrote nothing");
}

#[test]
fn unknown_profile_name_lists_what_exists() {
    let root = Root::new();
    let run = berth(&root).args(["plan", "-p", "nope"]).run();
    run.code(1);
    insta::assert_snapshot!(run.stderr, @"error: no profile named `nope`: not in `/etc/berth/profiles/nope.toml` nor among the embedded profiles (dind-service, dind-sysbox, dind-tls, dind, socket)");
    // Issue 13, item 6: a typo of an embedded or an installed profile's name is told.
    let run = berth(&root).args(["plan", "-p", "dind-tsl"]).run();
    run.code(1);
    insta::assert_snapshot!(run.stderr, @"error: no profile named `dind-tsl`: not in `/etc/berth/profiles/dind-tsl.toml` nor among the embedded profiles (dind-service, dind-sysbox, dind-tls, dind, socket); did you mean `dind-tls`?");
    root.write("/etc/berth/profiles/site-runners.toml", "mtu = 1400\n");
    let run = berth(&root).args(["validate", "-p", "site-runner"]).run();
    run.code(1);
    assert!(
        run.stderr.contains("did you mean `site-runners`?"),
        "{}",
        run.stderr
    );
}

#[test]
fn apply_on_the_machine_root_as_non_root_fails_early() {
    let Some(run) = run_as_nobody(&["apply", "--root", "/"]) else {
        return;
    };
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    insta::assert_snapshot!(stderr, @"error: berth apply changes /etc and the Docker daemon and must run as root (try `sudo berth apply`); `berth plan` works as any user");
}

#[test]
fn plan_works_as_a_non_root_user() {
    let root = Root::new();
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let Some(run) = run_as_nobody(&["plan", "--root", root.path().to_str().unwrap()]) else {
        return;
    };
    // 1: the install is refused on a root that is not `/`, as it is for root.
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Runs berth as `nobody` with setpriv (directly when the test is not root); `None` when
/// setpriv or a `nobody` user is missing, which under `CI=true` fails the test instead.
fn run_as_nobody(args: &[&str]) -> Option<std::process::Output> {
    let mut command = if nix::unistd::geteuid().is_root() {
        crate::harness::as_nobody(crate::harness::BERTH)?
    } else {
        // Already not root: run directly.
        std::process::Command::new(crate::harness::BERTH)
    };
    Some(
        command
            .args(args)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap(),
    )
}

#[test]
fn color_is_off_when_not_a_terminal_and_on_when_asked() {
    let root = Root::new();
    assert!(!berth(&root).args(["plan"]).run().stdout.contains('\u{1b}'));
    assert!(
        berth(&root)
            .args(["plan", "--color", "always"])
            .run()
            .stdout
            .contains('\u{1b}')
    );
    assert!(
        !berth(&root)
            .args(["plan", "--color", "always", "--json"])
            .run()
            .stdout
            .contains('\u{1b}')
    );
}

/// Issue 13, items 7 and 8: `show` gives the merged layers as TOML, each value with the layer
/// (file:line) whose value won and secrets as `***`; a secret written into a profile others can
/// read is warned about at its line.
#[test]
fn show_names_the_layer_of_each_value_and_masks_secrets() {
    let root = Root::new();
    let site = profile_file(
        &root.join("/work"),
        "site",
        "mtu = 1400\n[runners.r]\nurl = \"https://gitlab.example.com\"\ntoken_file = \"/etc/berth/tokens/r\"\nexecutor = \"docker\"\n[runners.r.cache]\nType = \"s3\"\n[runners.r.cache.s3]\nBucketName = \"ci-cache\"\nSecretKey = \"wJalrXUtnFEMIexample\"\n",
    );
    let run = berth(&root)
        .args(["show", "-p", "dind", "-p"])
        .args([&site])
        .run();
    run.code(0);
    for expected in [
        "# berth show: dind + site\n",
        "\nmtu = 1400  # from [ROOT]/work/site.toml:1\n",
        "\nimage = \"docker:27-dind\"  # from dind (embedded):54\n",
        "\n[runners.r.cache.s3]\nBucketName = \"ci-cache\"  # from [ROOT]/work/site.toml:9\nSecretKey = \"***\"  # from [ROOT]/work/site.toml:10\n",
    ] {
        assert!(run.stdout.contains(expected), "{expected}\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("wJalrXUtnFEMIexample"));
    let json = berth(&root)
        .args(["show", "--json", "-p", "dind", "-p"])
        .args([&site])
        .run();
    json.code(0);
    let document = json.json();
    assert!(!json.stdout.contains("wJalrXUtnFEMIexample"));
    assert!(
        document["origins"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"key": "mtu", "from": "[ROOT]/work/site.toml:1"})),
        "{document:#}"
    );

    let validate = berth(&root).args(["validate", "-p"]).args([&site]).run();
    validate.code(0);
    assert!(
        validate.stdout.contains("warning: [ROOT]/work/site.toml:10:1: key `runners.r.cache.s3.SecretKey`: a secret written in a profile other users can read (mode 0644); put it in a file readable by root only and name that file with `SecretKey_file`"),
        "{}",
        validate.stdout
    );
}

/// Issue 13, item 7: `profiles` lists the installed profiles and the embedded ones with their
/// descriptions, marking those berth.toml selects.
#[test]
fn profiles_lists_installed_and_embedded_ones_and_marks_the_selected() {
    let root = Root::new();
    root.write(
        "/etc/berth/profiles/site.toml",
        "# site: our runners, on top of dind\nmtu = 1400\n",
    );
    root.write("/etc/berth/berth.toml", "profiles = [\"dind\", \"site\"]\n");
    let run = berth(&root).args(["profiles"]).run();
    run.code(0);
    insta::assert_snapshot!(run.stdout, @r"
        * site          site: our runners, on top of dind  [/etc/berth/profiles/site.toml]
          dind-service  GitLab runner host whose jobs start their own Docker-in-Docker service  [embedded]
          dind-sysbox   GitLab runner host with a Docker-in-Docker daemon container run by sysbox instead of privileged  [embedded]
          dind-tls      GitLab runner host with a Docker-in-Docker daemon container behind mutual TLS  [embedded]
        * dind          GitLab runner host with a Docker-in-Docker daemon container  [embedded]
          socket        GitLab runner host whose runner and jobs use the host's Docker socket  [embedded]
        * selected by /etc/berth/berth.toml
    ");
    let json = berth(&root).args(["profiles", "--json"]).run();
    json.code(0);
    let listed = json.json()["profiles"].clone();
    assert_eq!(listed[0]["name"], "site");
    assert_eq!(listed[0]["selected"], true);
    assert_eq!(listed[0]["source"], "/etc/berth/profiles/site.toml");
}
