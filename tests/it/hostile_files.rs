//! Issue 18, the filesystem half: a runner container (or any user who can write a directory
//! berth works in) plants links, huge files and FIFOs where root-berth reads and writes. Each
//! probe from the issue, under a temporary `--root`: the planted link's target stays byte for
//! byte what it was, the run names the path it refused and exits 1, no run hangs or holds the
//! lock, no directory berth makes is wider than asked under `umask 000`, and a profile,
//! berth.toml or saved plan someone other than root could have changed is refused.

use std::{
    os::unix::fs::{PermissionsExt, symlink},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{
    gitlab_server::GitLab,
    harness::{BERTH, Root, Run, berth, profile_file, start_gitlab, start_gitlab_tls, within},
};

const RUNNER_DIR: &str = "/srv/gitlab-runner";
const GLRT: &str = "glrt-Zk3vQx8Lp2Wn7Rt5Yb1M";
const TOKEN_FILE: &str = "/etc/berth/tokens/docker-runner";
/// What a planted link aims at: root's own file, outside anything berth writes.
const VICTIM: &str = "/root/.ssh/authorized_keys";
const VICTIM_TEXT: &str = "ssh-ed25519 AAAAC3Nza operator@host\n";

/// The runner's entry: a glrt- token GitLab knows (verified, nothing created).
const GLRT_ENTRY: &str = "token_file = \"/etc/berth/tokens/docker-runner\"";

/// The runner's entry: a token that creates the runner (the write check runs before).
const CREATE_ENTRY: &str = "create_token_file = \"/etc/berth/tokens/docker-runner\"\nrunner_type = \"group_type\"\ngroup_id = 7";
const CREATE_TOKEN: &str = "glpat-createRunnerScope";

/// A host whose profile declares one runner (`entry` says with which token), its directory
/// made (as an operator or the runner container would have), and the victim file in place.
fn runner_host(gitlab: &GitLab, entry: &str) -> (Root, PathBuf) {
    let root = Root::new();
    let token = if entry == CREATE_ENTRY {
        gitlab.add_access_token(CREATE_TOKEN, &[7]);
        CREATE_TOKEN
    } else {
        gitlab.add_runner(GLRT);
        GLRT
    };
    root.write(TOKEN_FILE, &format!("{token}\n"));
    root.chmod(TOKEN_FILE, 0o600);
    root.write(VICTIM, VICTIM_TEXT);
    root.mkdir(RUNNER_DIR);
    let profile = profile_file(
        &root.join("/operator"),
        "site",
        &format!(
            r#"[runner]
config = "{RUNNER_DIR}/config.toml"

[runners.docker-runner]
url        = "{url}"
executor   = "docker"
{entry}
[runners.docker-runner.docker]
image = "docker:27"
"#,
            url = gitlab.url()
        ),
    );
    (root, profile)
}

fn run(root: &Root, args: &[&str], profile: &Path) -> Run {
    berth(root)
        .args(args)
        .args([Path::new("-p"), profile])
        .run()
}

#[track_caller]
fn assert_victim_untouched(root: &Root) {
    assert_eq!(
        root.read(VICTIM).as_deref(),
        Some(VICTIM_TEXT),
        "the link's target is byte for byte what it was"
    );
}

#[track_caller]
fn assert_refused(run: &Run, path: &str) {
    run.code(1);
    assert!(
        run.stderr.contains(&format!(
            "`{path}` is a symbolic link, and berth does not follow links"
        )),
        "the run names the link it refused\n{}",
        run.stderr
    );
}

/// issue 18, item 1: `config.toml`, `.runner_system_id` and `.berth-write-check` planted as
/// links to root's `authorized_keys`. Each is refused before GitLab is asked anything (the
/// system id and the write check are written before a runner is verified or created), and
/// the target is kept.
#[test]
fn a_link_planted_in_the_runners_directory_is_refused_and_its_target_kept() {
    for (name, entry) in [
        ("config.toml", GLRT_ENTRY),
        (".runner_system_id", GLRT_ENTRY),
        (".berth-write-check", CREATE_ENTRY),
    ] {
        let gitlab = start_gitlab();
        let (root, profile) = runner_host(&gitlab, entry);
        let link = format!("{RUNNER_DIR}/{name}");
        symlink(VICTIM, root.join(&link)).unwrap();
        let apply = run(&root, &["apply"], &profile);
        assert_refused(&apply, &link);
        assert_victim_untouched(&root);
        assert!(
            root.join(&link).symlink_metadata().unwrap().is_symlink(),
            "`{link}` is left as it was"
        );
        assert_eq!(
            gitlab.total_calls(),
            0,
            "GitLab is not asked for a runner berth could not keep ({name})"
        );
    }
}

/// issue 18, item 1: `certs/` in the runner's directory is a link to a directory elsewhere;
/// the CA copy gitlab-runner reads (`certs/HOST.crt`) is not written through it.
#[test]
fn a_directory_link_at_certs_is_refused_and_nothing_is_written_through_it() {
    let gitlab = start_gitlab_tls();
    let (root, profile) = runner_host(
        &gitlab,
        &format!("{GLRT_ENTRY}\ntls_ca_file = \"/etc/berth/gitlab-ca.pem\""),
    );
    root.write(
        "/etc/berth/gitlab-ca.pem",
        &crate::gitlab_server::test_ca_pem(),
    );
    symlink("/root/.ssh", root.join(&format!("{RUNNER_DIR}/certs"))).unwrap();
    let apply = run(&root, &["apply"], &profile);
    assert_refused(&apply, &format!("{RUNNER_DIR}/certs"));
    assert_victim_untouched(&root);
    let in_ssh: Vec<_> = std::fs::read_dir(root.join("/root/.ssh"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(in_ssh, ["authorized_keys"], "no certificate landed there");
}

/// issue 18, item 1: `config.toml → a/../p.toml` with `a → d/e`. Once, berth read `d/p.toml`
/// (the kernel resolves `a/..` through the link) and wrote `p.toml` (`..` resolved by text).
/// In the runner's directory no link is followed at all: both files are kept.
#[test]
fn a_dot_dot_chain_through_a_directory_link_writes_neither_file() {
    let gitlab = start_gitlab();
    let (root, profile) = runner_host(&gitlab, GLRT_ENTRY);
    let dir = root.join(RUNNER_DIR);
    std::fs::create_dir_all(dir.join("d/e")).unwrap();
    std::fs::write(dir.join("d/p.toml"), "concurrent = 1\n").unwrap();
    std::fs::write(dir.join("p.toml"), VICTIM_TEXT).unwrap();
    symlink("d/e", dir.join("a")).unwrap();
    symlink("a/../p.toml", dir.join("config.toml")).unwrap();
    for command in ["plan", "apply"] {
        let run = run(&root, &[command], &profile);
        assert_refused(&run, &format!("{RUNNER_DIR}/config.toml"));
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("d/p.toml")).unwrap(),
        "concurrent = 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("p.toml")).unwrap(),
        VICTIM_TEXT
    );
    assert_victim_untouched(&root);
}

/// issue 18, item 1: the metrics file lives in a textfile directory the exporter's user may
/// own; a link planted there is refused (the run says so) and its target kept.
#[test]
fn a_link_at_the_metrics_file_is_refused() {
    let gitlab = start_gitlab();
    let (root, profile) = runner_host(&gitlab, GLRT_ENTRY);
    let metrics = "/var/lib/node-exporter/berth.prom";
    root.mkdir("/var/lib/node-exporter");
    symlink(VICTIM, root.join(metrics)).unwrap();
    let apply = berth(&root)
        .args(["apply", "--metrics-file", metrics])
        .args([Path::new("-p"), &profile])
        .run();
    apply.code(0);
    assert!(
        apply.stderr.contains(&format!(
            "failed to write metrics to `{metrics}`: failed to write `{metrics}`: `{metrics}` is a symbolic link"
        )),
        "{}",
        apply.stderr
    );
    assert_victim_untouched(&root);
}

/// issue 18, item 2: a 2 GiB sparse config.toml (4 KiB on disk), a link to `/dev/zero` and a
/// FIFO. Plan and apply end within seconds with an error naming the file, and the next run
/// starts at once (the lock was released).
#[test]
fn a_huge_file_a_device_link_or_a_fifo_ends_the_run_at_once() {
    let config = format!("{RUNNER_DIR}/config.toml");
    type Plant<'a> = &'a dyn Fn(&Path);
    let plant: [(&str, Plant, &str); 3] = [
        (
            "sparse",
            &|path| {
                std::fs::File::create(path)
                    .unwrap()
                    .set_len(2 << 30)
                    .unwrap();
            },
            "is larger than",
        ),
        (
            "/dev/zero",
            &|path| symlink("/dev/zero", path).unwrap(),
            "is a symbolic link",
        ),
        (
            "fifo",
            &|path| {
                nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            },
            "is a FIFO, not a regular file",
        ),
    ];
    for (what, plant, says) in plant {
        let gitlab = start_gitlab();
        let (root, profile) = runner_host(&gitlab, GLRT_ENTRY);
        plant(&root.join(&config));
        for command in ["plan", "apply", "plan"] {
            let mut running = berth(&root)
                .args([command])
                .args([Path::new("-p"), &profile])
                .spawn();
            let ended = within(Duration::from_secs(20), || !running.alive());
            assert!(
                ended.is_some(),
                "{command} with a {what} config.toml still runs after 20 s\n{}",
                running.output()
            );
            let code = running.child.wait().unwrap().code();
            let output = running.output();
            assert_eq!(code, Some(1), "{command} ({what})\n{output}");
            assert!(
                output.contains(&format!("`{config}` {says}")),
                "{command} ({what}) names the file and why\n{output}"
            );
            assert!(!output.contains("lock"), "{command} ({what})\n{output}");
        }
    }
}

/// issue 18, item 5: under `umask 000`, every directory berth makes has the mode it asks for
/// (0755, or 0700 for its state and the runner's), never 0777.
#[test]
fn umask_000_makes_no_directory_others_can_write() {
    let gitlab = start_gitlab();
    let (root, profile) = runner_host(&gitlab, GLRT_ENTRY);
    std::fs::remove_dir(root.join(RUNNER_DIR)).unwrap();
    let output = Command::new("sh")
        .args(["-c", "umask 000 && exec \"$0\" \"$@\"", BERTH, "--root"])
        .arg(root.path())
        .args(["apply", "-p"])
        .arg(&profile)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DOCKER_HOST", "unix:///nonexistent/berth-test/docker.sock")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut made = Vec::new();
    for path in [
        "/srv",
        RUNNER_DIR,
        "/var",
        "/var/lib",
        "/var/lib/berth",
        "/run",
    ] {
        made.push((path, root.mode(path)));
    }
    assert_eq!(
        made,
        [
            ("/srv", 0o755),
            (RUNNER_DIR, 0o700),
            ("/var", 0o755),
            ("/var/lib", 0o755),
            ("/var/lib/berth", 0o700),
            ("/run", 0o755),
        ]
    );
    assert_eq!(root.mode(&format!("{RUNNER_DIR}/config.toml")), 0o600);
}

/// issue 18, item 5: a profile, berth.toml or saved plan can set commands berth runs as root;
/// one another user could have written is refused, naming the file, its owner and mode, and
/// the command that fixes it.
#[test]
fn a_profile_berth_toml_or_saved_plan_others_could_write_is_refused() {
    let gitlab = start_gitlab();
    let (root, profile) = runner_host(&gitlab, GLRT_ENTRY);
    let shown = profile
        .display()
        .to_string()
        .replace(&root.path().display().to_string(), "[ROOT]");

    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o666)).unwrap();
    let plan = run(&root, &["plan"], &profile);
    plan.code(1);
    assert!(
        plan.stderr.contains(&format!(
            "refusing `{shown}`: it is owned by root with mode 0666, so someone other than root can change what berth runs as root; fix it with `chown root:root {shown} && chmod go-w {shown}`"
        )),
        "{}",
        plan.stderr
    );
    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o644)).unwrap();

    root.write("/etc/berth/berth.toml", "profiles = [\"site\"]\n");
    root.chmod("/etc/berth/berth.toml", 0o620);
    let plan = berth(&root).args(["plan"]).run();
    plan.code(1);
    assert!(
        plan.stderr
            .contains("refusing `/etc/berth/berth.toml`: it is owned by root with mode 0620"),
        "{}",
        plan.stderr
    );
    std::fs::remove_file(root.join("/etc/berth/berth.toml")).unwrap();

    if !nix::unistd::geteuid().is_root() {
        // Ownership is checked only when berth runs as root, and only root can chown.
        assert!(!crate::harness::in_ci(), "the suite runs as root in CI");
        return;
    }
    let nobody = |path: &Path| std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
    let saved = root.join("/operator/plan.json");
    run(&root, &["plan", "--out", saved.to_str().unwrap()], &profile).code(2);
    nobody(&profile);
    let plan = run(&root, &["plan"], &profile);
    plan.code(1);
    assert!(
        plan.stderr.contains(&format!(
            "refusing `{shown}`: it is owned by nobody with mode 0644"
        )),
        "{}",
        plan.stderr
    );
    std::os::unix::fs::chown(&profile, Some(0), Some(0)).unwrap();
    nobody(&saved);
    let apply = berth(&root).args(["apply", saved.to_str().unwrap()]).run();
    apply.code(1);
    assert!(
        apply
            .stderr
            .contains("refusing `[ROOT]/operator/plan.json`: it is owned by nobody with mode 0644"),
        "{}",
        apply.stderr
    );
    assert_eq!(gitlab.total_calls(), 0, "nothing was applied");
}

/// issue 18, item 1, in destroy: once the runner's container swapped config.toml for a link,
/// destroy (which removes the runner's entry from config.toml) refuses it and keeps its target.
#[test]
fn destroy_refuses_a_config_toml_swapped_for_a_link() {
    let gitlab = start_gitlab();
    let (root, profile) = runner_host(&gitlab, GLRT_ENTRY);
    let dockerd = crate::require_dockerd!(&root);
    let with_profile = || {
        berth(&root)
            .docker(&dockerd)
            .args([Path::new("-p"), &profile])
    };
    with_profile().args(["apply"]).run().code(0);
    let config = root.join(&format!("{RUNNER_DIR}/config.toml"));
    std::fs::remove_file(&config).unwrap();
    symlink(VICTIM, &config).unwrap();
    let destroy = with_profile().args(["destroy", "--yes"]).run();
    assert_refused(&destroy, &format!("{RUNNER_DIR}/config.toml"));
    assert_victim_untouched(&root);
}
