//! What a fleet runs around berth (issue 20, item 6), judged by the tools that will run it: the
//! alerting rules by `promtool check rules` and `promtool test rules`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    harness::{BERTH, require},
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
