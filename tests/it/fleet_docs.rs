//! What a fleet runs around berth (issue 20, items 5 and 6), judged by the tools that will run
//! it: the alerting rules by `promtool check rules` and `promtool test rules`, the user-data by
//! `cloud-init schema`, the profile repository's pipeline by YAML, shellcheck and its own jobs
//! run here, on a git repository made of `docs/fleet/example/` with keys `ssh-keygen` makes.
//! `the_pipeline_validates_and_shows_the_example_repository` needs `berth validate --source`
//! and `berth show --source` (`[source]`, issue 20 items 1 to 5).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::{
    harness::{BERTH, Root, require, tool_available},
    packaging::succeeded,
};

const SOURCE: &str = env!("CARGO_MANIFEST_DIR");

fn fleet(name: &str) -> PathBuf {
    Path::new(SOURCE).join("docs/fleet").join(name)
}

/// promtool: from PATH, else where `.ci/run` puts the one it takes out of Debian's `prometheus`
/// package (the target directory's `tools/bin`, beside cargo-deb), since the package itself is
/// a server that starts on install and 300 MB with its web UI.
fn promtool() -> Option<PathBuf> {
    let target = Path::new(BERTH).parent()?.parent()?;
    let found = [PathBuf::from("promtool"), target.join("tools/bin/promtool")]
        .into_iter()
        .find(|program| Command::new(program).arg("--version").output().is_ok());
    require(found.is_none().then(|| {
        "`promtool` is not installed (Debian's `prometheus` package; .ci/run takes only promtool from it)"
            .to_owned()
    }))
    .then(|| found.unwrap())
}

/// A YAML file as JSON, read by python3's yaml (PyYAML, Debian's python3-yaml, which cloud-init
/// depends on); `None` (skipped loudly, failed under CI) without them.
fn yaml(path: &Path) -> Option<serde_json::Value> {
    if !tool_available("python3", "apt-get install python3-yaml") {
        return None;
    }
    let output = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(path)
        .output()
        .unwrap();
    let no_module = String::from_utf8_lossy(&output.stderr).contains("No module named 'yaml'");
    if !require(
        no_module.then(|| "python3 has no yaml module (apt-get install python3-yaml)".to_owned()),
    ) {
        return None;
    }
    succeeded(&output, &format!("reading `{}` as YAML", path.display()));
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

/// The lines of a YAML list of strings (a job's `script`, cloud-init's `runcmd`).
fn lines(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|line| {
            line.as_str()
                .unwrap_or_else(|| panic!("not a string: {line}"))
                .to_owned()
        })
        .collect()
}

/// shellcheck on a script that lives inside a YAML file, as POSIX sh.
fn shellcheck(script: &str, what: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("script.sh");
    fs::write(&path, script).unwrap();
    let output = Command::new("shellcheck")
        .args(["--shell=sh", "--severity=style"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "shellcheck on {what}:\n{}\n{script}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = promtool() else {
        return;
    };
    let check = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(fleet("berth.rules.yml"))
        .output()
        .unwrap();
    succeeded(&check, "promtool check rules");
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(said.contains("SUCCESS: 12 rules found"), "{said}");

    // Every alert the rules define has a case that makes it fire.
    let rules = fs::read_to_string(fleet("berth.rules.yml")).unwrap();
    let tests = fs::read_to_string(fleet("berth.rules.test.yml")).unwrap();
    for alert in rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - exp_labels"
            )),
            "berth.rules.test.yml has no case in which `{alert}` fires"
        );
    }

    // Run from the rules' directory: the test file names them relative to itself.
    let unit = Command::new(&promtool)
        .current_dir(fleet(""))
        .args(["test", "rules", "berth.rules.test.yml"])
        .output()
        .unwrap();
    succeeded(&unit, "promtool test rules");
}

#[test]
fn the_cloud_init_user_data_passes_cloud_init_schema() {
    if !tool_available("cloud-init", "apt-get install cloud-init")
        || !tool_available("shellcheck", "apt-get install shellcheck")
    {
        return;
    }
    let user_data = fleet("cloud-init.yaml");
    let schema = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&user_data)
        .output()
        .unwrap();
    succeeded(&schema, "cloud-init schema");
    assert!(
        String::from_utf8_lossy(&schema.stdout).contains("Valid cloud-config"),
        "{}",
        String::from_utf8_lossy(&schema.stdout)
    );
    let Some(config) = yaml(&user_data) else {
        return;
    };

    // berth.toml names the repository with exactly the keys berth reads.
    let file = |path: &str| {
        config["write_files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|file| file["path"] == path)
            .unwrap_or_else(|| panic!("cloud-init.yaml writes no `{path}`"))
            .clone()
    };
    let berth_toml: toml::Table = file("/etc/berth/berth.toml")["content"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let source = berth_toml["source"].as_table().unwrap();
    let keys: Vec<&str> = source.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "git",
            "ref",
            "token_file",
            "allowed_signers",
            "group",
            "poll"
        ]
    );
    // The secrets are root's alone, and they are the files berth.toml names.
    for token in [
        source["token_file"].as_str().unwrap(),
        "/etc/berth/tokens/docker-runner",
    ] {
        let file = file(token);
        assert_eq!(file["permissions"], "0600", "{token}");
        assert_eq!(file["owner"], "root:root", "{token}");
    }
    assert!(
        file(source["allowed_signers"].as_str().unwrap())["content"]
            .as_str()
            .unwrap()
            .contains("namespaces=\"git\" ssh-ed25519 ")
    );

    // cloud-init runs runcmd as one sh script, its items in order: install, apply once, enable.
    let runcmd = lines(&config["runcmd"]).join("\n");
    shellcheck(
        &format!("#!/bin/sh\n{runcmd}\n"),
        "cloud-init.yaml's runcmd",
    );
    let install = runcmd.find("apt-get install").unwrap();
    let apply = runcmd.find("berth apply").unwrap();
    let enable = runcmd.find("systemctl enable --now berth.timer").unwrap();
    assert!(install < apply && apply < enable, "{runcmd}");
    assert!(
        !runcmd.contains("--user") && !runcmd.contains("-u "),
        "the deploy token goes to curl on stdin, never in argv:\n{runcmd}"
    );
}

/// The pipeline's jobs: every job (not a hidden `.template`) runs in a declared stage and has a
/// script that passes shellcheck.
fn pipeline() -> Option<serde_json::Value> {
    if !tool_available("shellcheck", "apt-get install shellcheck") {
        return None;
    }
    let pipeline = yaml(&fleet("gitlab-ci.yml"))?;
    let stages = lines(&pipeline["stages"]);
    let jobs: Vec<&String> = pipeline
        .as_object()
        .unwrap()
        .keys()
        .filter(|key| {
            !key.starts_with('.')
                && !["variables", "stages", "workflow", "default"].contains(&key.as_str())
        })
        .collect();
    assert_eq!(jobs, ["signatures", "validate", "show"]);
    for job in jobs {
        let stage = pipeline[job]["stage"].as_str().unwrap();
        assert!(
            stages.iter().any(|declared| declared == stage),
            "{job}: {stage}"
        );
        let template = pipeline[job]["extends"].as_str().unwrap();
        let mut script = lines(&pipeline[template]["before_script"]);
        script.extend(lines(&pipeline[job]["script"]));
        shellcheck(&script.join("\n"), &format!("gitlab-ci.yml's `{job}` job"));
    }
    Some(pipeline)
}

#[test]
fn the_pipeline_parses_and_its_scripts_pass_shellcheck() {
    let Some(pipeline) = pipeline() else {
        return;
    };
    assert_eq!(
        lines(&pipeline["validate"]["script"]),
        ["berth validate --source . --all"]
    );
    assert_eq!(
        pipeline["variables"]["GIT_DEPTH"], "0",
        "signatures reads the whole history"
    );
}

/// A git repository made of `docs/fleet/example/`, with git's configuration of its own (none of
/// the machine's or the user's) and an identity to commit with.
struct Repository {
    dir: PathBuf,
    home: PathBuf,
}

impl Repository {
    fn of_example(root: &Root) -> Self {
        let dir = root.scratch("runner-profiles");
        copy_tree(&fleet("example"), &dir);
        let repository = Self {
            dir,
            home: root.scratch("home"),
        };
        repository.git(&["init", "--quiet", "--initial-branch=stable"]);
        repository
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Alice")
            .env("GIT_AUTHOR_EMAIL", "alice@example.com")
            .env("GIT_COMMITTER_NAME", "Alice")
            .env("GIT_COMMITTER_EMAIL", "alice@example.com");
        command
    }

    fn git(&self, args: &[&str]) -> String {
        let output = self.command("git").args(args).output().unwrap();
        succeeded(&output, &format!("git {}", args.join(" ")));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    fn write(&self, path: &str, text: &str) {
        fs::write(self.dir.join(path), text).unwrap();
    }

    fn read(&self, path: &str) -> String {
        fs::read_to_string(self.dir.join(path)).unwrap()
    }

    /// Commits everything, signed with `key` (a private key file) or unsigned; returns the
    /// commit's ID.
    fn commit(&self, message: &str, key: Option<&Path>) -> String {
        self.git(&["add", "--all"]);
        match key {
            Some(key) => self.git(&[
                "-c",
                "gpg.format=ssh",
                "-c",
                &format!("user.signingkey={}", key.display()),
                "commit",
                "--quiet",
                "--gpg-sign",
                "-m",
                message,
            ]),
            None => self.git(&["commit", "--quiet", "--no-gpg-sign", "-m", message]),
        };
        self.git(&["rev-parse", "HEAD"])
    }

    /// Runs one job's script as GitLab's runner runs it in a bash image (`set -eo pipefail`),
    /// with `variables`, and the berth under test on PATH.
    fn run_job(
        &self,
        pipeline: &serde_json::Value,
        job: &str,
        variables: &[(&str, &str)],
    ) -> Output {
        let script = lines(&pipeline[job]["script"]).join("\n");
        let berth_dir = Path::new(BERTH).parent().unwrap();
        let mut path = std::ffi::OsString::from(berth_dir);
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap());
        let mut command = self.command("bash");
        command
            .env("PATH", path)
            .args(["-e", "-o", "pipefail", "-c", &script]);
        for (name, value) in variables {
            command.env(name, value);
        }
        command.output().unwrap()
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A new ed25519 key pair under `dir`, as a team member makes one; returns the private key's
/// path and the allowed-signers line for it.
fn signing_key(dir: &Path, who: &str) -> (PathBuf, String) {
    let key = dir.join(who);
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", who, "-f"])
        .arg(&key)
        .output()
        .unwrap();
    succeeded(&output, "ssh-keygen");
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut fields = public.split_whitespace();
    let (kind, blob) = (fields.next().unwrap(), fields.next().unwrap());
    (
        key,
        format!("{who}@example.com namespaces=\"git\" {kind} {blob}\n"),
    )
}

fn transcript(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The `signatures` job, on real commits signed with keys ssh-keygen made: a merge request of
/// commits a trusted key signed passes; an unsigned one fails naming it; and a merge request
/// that adds its own key to allowed_signers and signs with it fails, since the job trusts the
/// target branch's signers.
#[test]
fn the_pipeline_refuses_commits_no_allowed_signer_signed() {
    if !tool_available("git", "apt-get install git")
        || !tool_available("ssh-keygen", "apt-get install openssh-client")
    {
        return;
    }
    let Some(pipeline) = pipeline() else {
        return;
    };
    let root = Root::new();
    let keys = root.scratch("keys");
    let (alice, alice_signer) = signing_key(&keys, "alice");
    let (mallory, mallory_signer) = signing_key(&keys, "mallory");
    let repository = Repository::of_example(&root);
    repository.write("allowed_signers", &alice_signer);
    let base = repository.commit("the fleet's profiles", Some(&alice));
    let merge_request = [("CI_MERGE_REQUEST_DIFF_BASE_SHA", base.as_str())];

    let stable = repository.read("groups/stable.toml");
    repository.write(
        "groups/stable.toml",
        &stable.replace("concurrent = 8", "concurrent = 6"),
    );
    repository.commit("stable: six jobs at once", Some(&alice));
    let signed = repository.run_job(&pipeline, "signatures", &merge_request);
    assert!(signed.status.success(), "{}", transcript(&signed));
    assert!(
        transcript(&signed).contains("signed:  "),
        "{}",
        transcript(&signed)
    );

    repository.write(
        "groups/stable.toml",
        &stable.replace("concurrent = 8", "concurrent = 5"),
    );
    repository.commit("stable: five jobs at once", None);
    let unsigned = repository.run_job(&pipeline, "signatures", &merge_request);
    assert_eq!(unsigned.status.code(), Some(1), "{}", transcript(&unsigned));
    assert!(
        transcript(&unsigned)
            .contains("stable: five jobs at once (Alice): no key in allowed_signers signed it"),
        "{}",
        transcript(&unsigned)
    );

    repository.git(&["reset", "--quiet", "--hard", "HEAD~1"]);
    repository.write(
        "allowed_signers",
        &format!("{alice_signer}{mallory_signer}"),
    );
    repository.commit("trust mallory", Some(&mallory));
    let self_vouched = repository.run_job(&pipeline, "signatures", &merge_request);
    assert_eq!(
        self_vouched.status.code(),
        Some(1),
        "{}",
        transcript(&self_vouched)
    );
    assert!(
        transcript(&self_vouched).contains("REFUSED: ")
            && transcript(&self_vouched).contains("trust mallory"),
        "{}",
        transcript(&self_vouched)
    );
}

/// The example repository's layers, merged as each host of its inventory merges them with the
/// default `[source] profiles` (`base.toml`, `groups/{group}.toml?`, `hosts/{hostname}.toml?`),
/// pass `berth validate`; every host file and group file belongs to a host of the inventory.
#[test]
fn the_example_repository_is_valid_for_every_host_of_its_inventory() {
    let example = fleet("example");
    let inventory = fs::read_to_string(example.join("inventory")).unwrap();
    let hosts: Vec<(&str, &str)> = inventory
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next().unwrap(), fields.next().unwrap())
        })
        .collect();
    assert_eq!(hosts.len(), 3, "{inventory}");
    for (host, group) in &hosts {
        let mut layers = vec!["./base.toml".to_owned()];
        for layer in [format!("groups/{group}.toml"), format!("hosts/{host}.toml")] {
            if example.join(&layer).exists() {
                layers.push(format!("./{layer}"));
            }
        }
        let output = Command::new(BERTH)
            .current_dir(&example)
            .arg("validate")
            .args(layers.iter().flat_map(|layer| ["-p", layer.as_str()]))
            .output()
            .unwrap();
        succeeded(&output, &format!("berth validate for {host} ({group})"));
    }
    for (folder, named) in [("hosts", 0), ("groups", 1)] {
        for entry in fs::read_dir(example.join(folder)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let stem = name.strip_suffix(".toml").unwrap();
            assert!(
                hosts.iter().any(|host| [host.0, host.1][named] == stem),
                "{folder}/{name} belongs to no host of the inventory"
            );
        }
    }
}

/// The pipeline's `validate` and `show` jobs on the example repository, with the berth under
/// test: valid as shipped, failing at the file of a typo; a merge request that changes the
/// stable group shows the two stable hosts' merged profiles changing and not the canary's.
/// Needs `berth validate --source` and `berth show --source` (issue 20's `[source]`).
#[test]
fn the_pipeline_validates_and_shows_the_example_repository() {
    if !tool_available("git", "apt-get install git") {
        return;
    }
    let Some(pipeline) = pipeline() else {
        return;
    };
    let root = Root::new();
    let repository = Repository::of_example(&root);
    let base = repository.commit("the fleet's profiles", None);

    let valid = repository.run_job(&pipeline, "validate", &[]);
    assert!(valid.status.success(), "{}", transcript(&valid));

    let host = repository.read("hosts/runner-02.toml");
    repository.write(
        "hosts/runner-02.toml",
        &format!("{host}\n[containers.gitlab-runner]\nrestrat = \"always\"\n"),
    );
    let invalid = repository.run_job(&pipeline, "validate", &[]);
    assert_eq!(invalid.status.code(), Some(1), "{}", transcript(&invalid));
    assert!(
        transcript(&invalid).contains("hosts/runner-02.toml")
            && transcript(&invalid).contains("restrat"),
        "{}",
        transcript(&invalid)
    );
    repository.write("hosts/runner-02.toml", &host);

    let stable = repository.read("groups/stable.toml");
    repository.write(
        "groups/stable.toml",
        &stable.replace("concurrent = 8", "concurrent = 6"),
    );
    repository.commit("stable: six jobs at once", None);
    let shown = repository.run_job(
        &pipeline,
        "show",
        &[("CI_MERGE_REQUEST_DIFF_BASE_SHA", &base)],
    );
    let said = transcript(&shown);
    assert!(shown.status.success(), "{said}");
    assert!(
        said.contains("== runner-02 (group stable)")
            && said.contains("== runner-03 (group stable)")
            && !said.contains("== runner-01")
            && said.contains("-concurrent = 8\n+concurrent = 6\n")
            && said.contains("2 of 3 hosts change"),
        "{said}"
    );
    let merged = fs::read_to_string(repository.dir.join("merged/runner-01.toml")).unwrap();
    assert!(merged.contains("concurrent = 4"), "{merged}");
    assert!(!repository.dir.join("merged/runner-01.diff").exists());
}
