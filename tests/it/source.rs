//! `[source]` (issue 20): profiles from a signed git repository served over smart HTTP on
//! 127.0.0.1 (`git_server.rs`), converged on the private dockerd. Real git, real ssh-keygen
//! signatures; the deploy token is watched for in every process's argv while berth runs.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::{
    git_server::{DEPLOY_TOKEN, DEPLOY_USER, GitServer, Repo, Signer},
    harness::{Dockerd, Root, berth, start_gitlab, tool_available, within, write_executable},
    require_dockerd,
};

const METRICS: &str = "/var/lib/node-exporter/berth.prom";
const RUNNER_CONFIG: &str = "/srv/gitlab-runner/config.toml";
const RUNNER_TOKEN: &str = "/etc/berth/tokens/runner";

/// Every process's argv, read from `/proc/*/cmdline` every few milliseconds while it runs:
/// each one that holds the deploy token is kept.
struct ArgvWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    scans: Arc<Mutex<usize>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ArgvWatch {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let scans = Arc::new(Mutex::new(0));
        let thread = {
            let (stop, seen, scans) = (Arc::clone(&stop), Arc::clone(&seen), Arc::clone(&scans));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                        if let Ok(argv) = std::fs::read(entry.path().join("cmdline")) {
                            let argv = String::from_utf8_lossy(&argv).replace('\0', " ");
                            if argv.contains(DEPLOY_TOKEN) {
                                seen.lock().unwrap().push(argv);
                            }
                        }
                    }
                    *scans.lock().unwrap() += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Self {
            stop,
            seen,
            scans,
            thread: Some(thread),
        }
    }

    /// Stops watching and asserts the token was in no argv. A short run on a loaded machine
    /// may end before the watch scanned much: it is given up to 30 s to have scanned 10 times
    /// (the processes it scans then are the ones berth left running), so that the liveness
    /// check says whether the watch ran, not how busy the machine was.
    fn assert_never_seen(mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while *self.scans.lock().unwrap() <= 10 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        assert!(*self.scans.lock().unwrap() > 10, "the argv watch ran");
        let seen = self.seen.lock().unwrap();
        assert!(seen.is_empty(), "the deploy token was in argv: {seen:?}");
    }
}

/// git (its http-backend serves the repository) and ssh-keygen (the signing keys).
fn tools() -> bool {
    tool_available("git", "apt-get install git")
        && tool_available("ssh-keygen", "apt-get install openssh-client")
}

/// A host root following `reference` of the served repository, as group `group`.
fn host(
    root: &Root,
    server: &GitServer,
    repo: &Repo,
    hostname: &str,
    reference: &str,
    group: &str,
) {
    root.write("/etc/hostname", &format!("{hostname}\n"));
    root.write("/etc/berth/allowed_signers", &repo.allowed_signers());
    root.write(
        "/etc/berth/tokens/profiles",
        &format!("{DEPLOY_USER}:{DEPLOY_TOKEN}\n"),
    );
    root.chmod("/etc/berth/tokens/profiles", 0o600);
    root.write(
        "/etc/berth/berth.toml",
        &format!(
            "metrics_file = \"{METRICS}\"\n\n[source]\ngit = \"{}\"\nref = \"{reference}\"\ntoken_file = \"/etc/berth/tokens/profiles\"\nallowed_signers = \"/etc/berth/allowed_signers\"\ngroup = \"{group}\"\npoll = \"1s\"\n",
            server.url("profiles.git")
        ),
    );
}

/// The networks of the private daemon, by name.
fn networks(dockerd: &Dockerd) -> Vec<String> {
    dockerd
        .docker(["network", "ls", "--format", "{{.Name}}"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `hosts/NAME.toml`: the host's instance (one daemon serves all test hosts) and its networks.
fn host_layer(name: &str, networks: &[&str]) -> String {
    let mut text = format!("instance = \"{name}\"\n");
    for network in networks {
        text.push_str(&format!("[networks.{network}]\n"));
    }
    text
}

fn source_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|line| line.starts_with("source: "))
        .unwrap_or_else(|| panic!("no source line in\n{stdout}"))
}

/// No file berth keeps (its state, the clone's `.git/config`, the trees) holds the token.
fn assert_token_in_no_file(dir: &Path) {
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(DEPLOY_TOKEN)
                && !String::from_utf8_lossy(&bytes)
                    .contains(&crate::git_server::base64(DEPLOY_TOKEN.as_bytes())),
            "the deploy token is in `{}`",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_signed_source_converges_and_each_refusal_keeps_the_last_verified_commit() {
    if !tools() {
        return;
    }
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let projects = root.scratch("projects");
    let repo = Repo::new(&root.scratch("repo"), &projects);
    let mut server = GitServer::start(&projects);
    host(&root, &server, &repo, "host-a", "stable", "eu-1");
    let url = server.url("profiles.git");
    let argv = ArgvWatch::start();
    let mut outputs = String::new();
    let mut run = |args: &[&str], code: i32| {
        let run = berth(&root).docker(&dockerd).args(args).run();
        run.code(code);
        outputs.push_str(&run.stdout);
        outputs.push_str(&run.stderr);
        run
    };

    // The first signed commit: the host converges to it, and says so.
    repo.write("base.toml", &dockerd.layer())
        .write("groups/eu-1.toml", "[networks.berth-src-eu1]\n")
        .write(
            "hosts/host-a.toml",
            &host_layer("host-a", &["berth-src-one"]),
        )
        .write(
            "hosts/host-b.toml",
            &host_layer("host-b", &["berth-src-other"]),
        );
    let first = repo.commit("first", Signer::Alice);
    repo.push("stable");
    let apply = run(&["apply", "--yes"], 0);
    assert_eq!(
        source_line(&apply.stdout),
        format!(
            "source: {url}@{} (ref stable, signed by alice@example.com)",
            &first[..8]
        )
    );
    let seen = networks(&dockerd);
    assert!(
        seen.contains(&"berth-src-one".to_owned()) && seen.contains(&"berth-src-eu1".to_owned()),
        "{seen:?}"
    );
    assert!(!seen.contains(&"berth-src-other".to_owned()), "{seen:?}");
    let metrics = root.read(METRICS).unwrap();
    assert!(
        metrics.contains(&format!(
            "berth_source_info{{url=\"{url}\",ref=\"stable\",commit=\"{first}\"}} 1\n"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_source_refused{reason=\"\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_source_fetch_failures_total 0\n"),
        "{metrics}"
    );
    let plan = run(&["plan"], 0);
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);

    // The next signed commit is picked up by the next apply.
    repo.write(
        "hosts/host-a.toml",
        &host_layer("host-a", &["berth-src-one", "berth-src-two"]),
    );
    let second = repo.commit("second", Signer::Alice);
    repo.push("stable");
    let plan = run(&["plan", "--json"], 2);
    assert_eq!(plan.json()["source"]["commit"], second.as_str());
    run(&["apply", "--yes"], 0);
    assert!(networks(&dockerd).contains(&"berth-src-two".to_owned()));

    // GitLab down: the host converges to its last verified commit, warns, exits 0 (converged),
    // and the failure counts.
    server.down();
    let down = run(&["apply", "--yes"], 0);
    assert!(
        down.stderr
            .contains(&format!("failed to fetch `{url}` (stable)")),
        "{}",
        down.stderr
    );
    assert!(
        source_line(&down.stdout).contains(&second[..8]),
        "{}",
        down.stdout
    );
    let metrics = root.read(METRICS).unwrap();
    assert!(
        metrics.contains("berth_source_fetch_failures_total 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("berth_last_run_success 1\n"), "{metrics}");
    server.up();

    // The token refused (401) is the same: converged to the last commit, warned, counted.
    let token_file = "/etc/berth/tokens/profiles";
    root.write(token_file, &format!("{DEPLOY_USER}:not-the-token\n"));
    root.chmod(token_file, 0o600);
    let refused = run(&["apply", "--yes"], 0);
    assert!(
        refused.stderr.contains("failed to fetch"),
        "{}",
        refused.stderr
    );
    let metrics = root.read(METRICS).unwrap();
    assert!(
        metrics.contains("berth_source_fetch_failures_total 2\n"),
        "{metrics}"
    );
    // A token file other users can read is refused, as a runner's is.
    root.write(token_file, &format!("{DEPLOY_USER}:{DEPLOY_TOKEN}\n"));
    root.chmod(token_file, 0o644);
    let loose = run(&["apply", "--yes"], 1);
    assert!(
        loose.stderr.contains("other users can read it (mode 0644)"),
        "{}",
        loose.stderr
    );
    root.chmod(token_file, 0o600);

    // Unsigned, then signed by an unknown key: each refused with its reason, the host stays on
    // the second commit (the third's network never appears).
    repo.write(
        "hosts/host-a.toml",
        &host_layer(
            "host-a",
            &["berth-src-one", "berth-src-two", "berth-src-three"],
        ),
    );
    for (signer, reason) in [
        (Signer::Unsigned, "unsigned"),
        (Signer::Mallory, "unknown-signer"),
    ] {
        let refused = repo.commit(reason, signer);
        repo.push("stable");
        let plan = run(&["plan"], 1);
        assert!(
            plan.stdout.contains(&format!(
                "source refused: {} of ref stable ({reason})",
                &refused[..8]
            )),
            "{}",
            plan.stdout
        );
        let apply = run(&["apply", "--yes", "--json"], 1);
        let document = apply.json();
        assert_eq!(document["source"]["commit"], second.as_str());
        assert_eq!(document["source"]["refused"]["reason"], reason);
        assert!(!networks(&dockerd).contains(&"berth-src-three".to_owned()));
        let metrics = root.read(METRICS).unwrap();
        assert!(
            metrics.contains(&format!("berth_source_refused{{reason=\"{reason}\"}} 1\n")),
            "{metrics}"
        );
        let status = run(&["status"], 1);
        assert!(
            status.stdout.contains(&format!("({reason})")),
            "{}",
            status.stdout
        );
    }

    // A force-push back to the first (signed) commit: a rewind, refused until --allow-rewind.
    repo.reset(&first);
    repo.push("stable");
    let rewind = run(&["apply", "--yes"], 1);
    assert!(rewind.stdout.contains("(rewind)"), "{}", rewind.stdout);
    assert!(
        source_line(&rewind.stdout).contains(&second[..8]),
        "{}",
        rewind.stdout
    );
    assert!(networks(&dockerd).contains(&"berth-src-two".to_owned()));
    let taken = run(&["apply", "--yes", "--allow-rewind"], 0);
    assert!(
        source_line(&taken.stdout).contains(&first[..8]),
        "{}",
        taken.stdout
    );
    assert!(!networks(&dockerd).contains(&"berth-src-two".to_owned()));

    // A literal secret in a signed commit: refused, at its key.
    repo.write(
        "hosts/host-a.toml",
        &format!(
            "{}[runners.leak]\nurl = \"https://gitlab.example.com\"\ntoken = \"glrt-leaked\"\n",
            host_layer("host-a", &["berth-src-one"])
        ),
    );
    repo.commit("a secret", Signer::Alice);
    repo.push("stable");
    let secret = run(&["apply", "--yes"], 1);
    assert!(
        secret.stdout.contains(
            "(secret): hosts/host-a.toml:5:1: key `runners.leak.token`: a literal secret"
        ),
        "{}",
        secret.stdout
    );
    assert!(!secret.stdout.contains("glrt-leaked") && !secret.stderr.contains("glrt-leaked"));

    // A signed commit with an invalid layer fails the run as an invalid profile does, and is
    // not recorded as applied: the host's report and metrics still name the first commit.
    repo.write(
        "hosts/host-a.toml",
        "instance = \"host-a\"\n[networks.berth-src-one]\nnope = 1\n",
    );
    let broken = repo.commit("broken", Signer::Alice);
    repo.push("stable");
    let invalid = run(&["apply", "--yes"], 1);
    assert!(
        invalid.stderr.contains(&format!(
            "commit `{}` of `stable` cannot be applied",
            &broken[..8]
        )) && invalid.stderr.contains("hosts/host-a.toml:3:1"),
        "{}",
        invalid.stderr
    );
    let status = run(&["status", "--json"], 1);
    assert_eq!(
        status.json()["last_run"]["source"]["commit"],
        first.as_str()
    );
    assert!(
        root.read(METRICS)
            .unwrap()
            .contains(&format!("commit=\"{first}\""))
    );

    argv.assert_never_seen();
    assert!(!outputs.contains(DEPLOY_TOKEN), "the token was printed");
    assert_token_in_no_file(&root.join("/var/lib/berth"));
    let config = std::fs::read_to_string(root.join("/var/lib/berth/source/git/config")).unwrap();
    assert!(
        !config.contains("extraheader") && !config.contains(&url),
        "{config}"
    );
}

#[test]
fn a_running_watch_converges_to_a_new_signed_commit_within_its_poll() {
    if !tools() {
        return;
    }
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let projects = root.scratch("projects");
    let repo = Repo::new(&root.scratch("repo"), &projects);
    let server = GitServer::start(&projects);
    host(&root, &server, &repo, "host-w", "stable", "eu-1");
    repo.write("base.toml", &dockerd.layer()).write(
        "hosts/host-w.toml",
        &host_layer("host-w", &["berth-src-w1"]),
    );
    repo.commit("first", Signer::Alice);
    repo.push("stable");
    let argv = ArgvWatch::start();
    let mut watch = berth(&root).docker(&dockerd).args(["watch"]).spawn();
    assert!(
        within(Duration::from_secs(60), || networks(&dockerd)
            .contains(&"berth-src-w1".to_owned()))
        .is_some(),
        "{}",
        watch.output()
    );
    repo.write(
        "hosts/host-w.toml",
        &host_layer("host-w", &["berth-src-w1", "berth-src-w2"]),
    );
    let second = repo.commit("second", Signer::Alice);
    repo.push("stable");
    let took = within(Duration::from_secs(30), || {
        networks(&dockerd).contains(&"berth-src-w2".to_owned())
    });
    assert!(took.is_some(), "{}", watch.output());
    // Within the poll (1 s), the fetch, the verification and the converge.
    assert!(took.unwrap() < Duration::from_secs(15), "took {took:?}");
    assert_eq!(watch.signal_and_wait(15, Duration::from_secs(30)), Some(0));
    let status = berth(&root).args(["status", "--json"]).run();
    assert_eq!(
        status.json()["last_run"]["source"]["commit"],
        second.as_str()
    );
    argv.assert_never_seen();
    assert!(!watch.output().contains(DEPLOY_TOKEN));
}

/// Writing a verified commit's tree is a multi-step change (one file per blob, the completion
/// marker last): berth SIGKILLed in the middle of it, by a `git` that kills its parent at the
/// third blob it reads, leaves a tree without its marker, which the next apply writes whole and
/// converges to. Once the ref moves on, the old commit's tree is removed.
#[test]
fn berth_killed_while_writing_a_commits_tree_is_finished_by_the_next_and_old_trees_are_pruned() {
    if !tools() {
        return;
    }
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let projects = root.scratch("projects");
    let repo = Repo::new(&root.scratch("repo"), &projects);
    let server = GitServer::start(&projects);
    host(&root, &server, &repo, "host-k", "stable", "eu-1");
    repo.write("base.toml", &dockerd.layer())
        .write("groups/eu-1.toml", "[networks.berth-src-k-eu1]\n")
        .write(
            "hosts/host-k.toml",
            &host_layer("host-k", &["berth-src-k1"]),
        );
    for other in ["host-x", "host-y", "host-z"] {
        repo.write(&format!("hosts/{other}.toml"), &host_layer(other, &[]));
    }
    let first = repo.commit("first", Signer::Alice);
    repo.push("stable");

    let wrapper = root.scratch("killing-git");
    let real_git = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    write_executable(
        &wrapper,
        "git",
        &format!(
            "#!/bin/sh\n# Kills berth at the third blob it reads (tests/it/source.rs).\nD='{dir}'\ncase \" $* \" in *' cat-file blob '*)\n  if [ \"$(cat /proc/$PPID/comm)\" = berth ]; then\n    n=$(( $(cat \"$D/count\" 2>/dev/null || echo 0) + 1 )); echo \"$n\" > \"$D/count\"\n    if [ \"$n\" -eq 3 ]; then kill -9 \"$PPID\"; exit 137; fi\n  fi ;;\nesac\nexec '{git}' \"$@\"\n",
            dir = wrapper.display(),
            git = real_git.trim()
        ),
    );
    let killed = berth(&root)
        .docker(&dockerd)
        .path_first(&wrapper)
        .args(["apply", "--yes"])
        .run();
    assert_eq!(killed.code, -1, "berth was killed: {}", killed.transcript());
    let trees = root.join("/var/lib/berth/source/trees");
    let tree = trees.join(&first);
    assert!(
        tree.is_dir() && !tree.join(".berth-complete").exists(),
        "killed with the tree half written"
    );
    assert!(
        !networks(&dockerd).contains(&"berth-src-k1".to_owned()),
        "nothing converged from a half-written tree"
    );

    let apply = berth(&root).docker(&dockerd).args(["apply", "--yes"]).run();
    apply.code(0);
    assert!(tree.join(".berth-complete").exists(), "the tree is whole");
    let seen = networks(&dockerd);
    assert!(
        seen.contains(&"berth-src-k1".to_owned()) && seen.contains(&"berth-src-k-eu1".to_owned()),
        "{seen:?}"
    );
    berth(&root).docker(&dockerd).args(["plan"]).run().code(0);

    repo.write(
        "hosts/host-k.toml",
        &host_layer("host-k", &["berth-src-k1", "berth-src-k2"]),
    );
    let second = repo.commit("second", Signer::Alice);
    repo.push("stable");
    berth(&root)
        .docker(&dockerd)
        .args(["apply", "--yes"])
        .run()
        .code(0);
    let kept: Vec<String> = std::fs::read_dir(&trees)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept, [second], "only the applied commit's tree is kept");
}

#[test]
fn three_hosts_one_repository_each_gets_its_layers_and_canary_reaches_only_its_host() {
    if !tools() {
        return;
    }
    let roots = [Root::new(), Root::new(), Root::new()];
    let dockerd = require_dockerd!(&roots[0]);
    dockerd.import_busybox("berth-test/runner:1");
    let gitlab = start_gitlab();
    let projects = roots[0].scratch("projects");
    let repo = Repo::new(&roots[0].scratch("repo"), &projects);
    let server = GitServer::start(&projects);
    let hosts = [
        ("host-a", "stable", "eu-1"),
        ("host-b", "stable", "us-1"),
        ("host-c", "canary", "eu-1"),
    ];
    for ((name, reference, group), root) in hosts.iter().zip(&roots) {
        host(root, &server, &repo, name, reference, group);
        // Each host's own runner token stays on the host, in a file the repository names.
        let token = format!("glrt-{name}-0123456789");
        gitlab.add_runner(&token);
        root.write(RUNNER_TOKEN, &format!("{token}\n"));
        root.chmod(RUNNER_TOKEN, 0o600);
    }
    // hosts/NAME.toml: the host's instance (one daemon serves all three), its runner in GitLab
    // and the container standing in for the one that runs it.
    let runner = |name: &str| {
        format!(
            "instance = \"{name}\"\n[runner]\nconfig = \"{RUNNER_CONFIG}\"\n[runners.runner-{name}]\nurl = \"{}\"\ntoken_file = \"{RUNNER_TOKEN}\"\nexecutor = \"docker\"\n[runners.runner-{name}.docker]\nimage = \"docker:27\"\n[containers.berth-src-runner-{name}]\nimage = \"berth-test/runner:1\"\ncommand = [\"sleep\", \"3600\"]\n",
            gitlab.url()
        )
    };
    repo.write("base.toml", &dockerd.layer())
        .write("groups/eu-1.toml", "[networks.berth-src-eu]\n")
        .write("groups/us-1.toml", "[networks.berth-src-us]\n");
    for (name, _, _) in hosts {
        repo.write(&format!("hosts/{name}.toml"), &runner(name));
    }
    repo.commit("the fleet", Signer::Alice);
    repo.push("stable");
    repo.push("canary");
    for root in &roots {
        berth(root)
            .docker(&dockerd)
            .args(["apply", "--yes"])
            .run()
            .code(0);
    }
    let containers = dockerd.container_names();
    for ((name, _, _), root) in hosts.iter().zip(&roots) {
        assert!(
            containers.contains(&format!("berth-src-runner-{name}")),
            "{containers:?}"
        );
        let config: toml::Table = toml::from_str(&root.read(RUNNER_CONFIG).unwrap()).unwrap();
        let names: Vec<&str> = config["runners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [format!("runner-{name}")]);
    }
    let seen = networks(&dockerd);
    assert!(
        seen.contains(&"berth-src-eu".to_owned()) && seen.contains(&"berth-src-us".to_owned()),
        "{seen:?}"
    );

    // Canary moves: only the host following it takes the new commit.
    repo.write(
        "hosts/host-c.toml",
        &format!("{}[networks.berth-src-canary]\n", runner("host-c")),
    );
    let canary = repo.commit("canary only", Signer::Alice);
    repo.push("canary");
    for root in &roots {
        berth(root)
            .docker(&dockerd)
            .args(["apply", "--yes"])
            .run()
            .code(0);
    }
    assert!(networks(&dockerd).contains(&"berth-src-canary".to_owned()));
    let commits: Vec<String> = roots
        .iter()
        .map(|root| {
            berth(root).args(["status", "--json"]).run().json()["last_run"]["source"]["commit"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_ne!(commits[0], canary);
    assert_eq!(commits[0], commits[1]);
    assert_eq!(commits[2], canary);
    for root in &roots {
        berth(root)
            .docker(&dockerd)
            .args(["destroy", "--yes"])
            .run()
            .code(0);
    }
}

#[test]
fn validate_and_show_take_a_host_s_layers_from_a_checkout() {
    if !tools() {
        return;
    }
    let root = Root::new();
    let projects = root.scratch("projects");
    let repo = Repo::new(&root.scratch("repo"), &projects);
    repo.write("base.toml", "[docker.daemon]\nlog-level = \"warn\"\n")
        .write("groups/eu-1.toml", "[networks.eu]\n")
        .write("hosts/a.toml", "mtu = 1400\n")
        .write("hosts/b.toml", "[networks.bb]\n");
    let dir = repo.work().display().to_string();
    let valid = berth(&root)
        .args([
            "validate",
            "--source",
            &dir,
            "--hostname",
            "a",
            "--group",
            "eu-1",
        ])
        .run();
    valid.code(0);
    assert_eq!(valid.stdout, "valid: base, eu-1, a\n");
    let shown = berth(&root)
        .args([
            "show",
            "--source",
            &dir,
            "--hostname",
            "a",
            "--group",
            "eu-1",
        ])
        .run();
    shown.code(0);
    assert!(
        shown.stdout.contains("mtu = 1400  # from hosts/a.toml:1"),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("[networks.eu]"), "{}", shown.stdout);

    // --all: every host with every group, each named.
    let all = berth(&root)
        .args(["validate", "--source", &dir, "--all"])
        .run();
    all.code(0);
    assert_eq!(
        all.stdout,
        "host a, group eu-1\nvalid: base, eu-1, a\nhost b, group eu-1\nvalid: base, eu-1, b\n"
    );

    // A literal secret and a bad key: the host is invalid, at the file and line.
    repo.write("hosts/b.toml", "[networks.bb]\nnope = 1\n")
        .write(
            "hosts/a.toml",
            "[runners.r]\nurl = \"https://gitlab.example.com\"\ntoken = \"glrt-x\"\n",
        );
    let invalid = berth(&root)
        .args(["validate", "--source", &dir, "--all"])
        .run();
    invalid.code(1);
    assert!(
        invalid
            .stderr
            .contains("hosts/a.toml:3:1: key `runners.r.token`: a literal secret"),
        "{}",
        invalid.stderr
    );
    assert!(
        invalid.stderr.contains("hosts/b.toml:2:1"),
        "{}",
        invalid.stderr
    );

    // A link in the checkout is never followed, wherever it points.
    std::os::unix::fs::symlink(root.join("/etc/hostname"), repo.work().join("hosts/c.toml"))
        .unwrap();
    root.write("/etc/hostname", "mtu = 1\n");
    let linked = berth(&root)
        .args(["show", "--source", &dir, "--hostname", "c"])
        .run();
    linked.code(1);
    assert!(linked.stderr.contains("hosts/c.toml"), "{}", linked.stderr);
    assert!(!linked.stdout.contains("mtu = 1"), "{}", linked.stdout);

    // A layer that climbs out of the checkout is refused where berth.toml names it.
    root.write(
        "/etc/berth/berth.toml",
        "[source]\ngit = \"https://gitlab.example.com/p.git\"\nref = \"stable\"\nallowed_signers = \"/etc/berth/allowed_signers\"\nprofiles = [\"base.toml\", \"../../etc/shadow.toml\"]\n",
    );
    let climbing = berth(&root)
        .args(["validate", "--source", &dir, "--hostname", "a"])
        .run();
    climbing.code(1);
    assert!(
        climbing.stderr.contains("berth.toml:5:26: key `source.profiles[1]`: `../../etc/shadow.toml` leaves the repository"),
        "{}",
        climbing.stderr
    );
}
