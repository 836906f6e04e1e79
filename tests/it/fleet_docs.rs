//! What a fleet runs around berth (issue 20, items 5 and 6), judged by the tools that will run
//! it: the alerting rules by `promtool check rules` and `promtool test rules`, the user-data by
//! `cloud-init schema` and shellcheck.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    harness::{BERTH, require, tool_available},
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
