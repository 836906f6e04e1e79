//! Bad input: each case is one clear error naming the file, line and key (where there is one),
//! exit 1, and nothing on the host changed.

use crate::harness::{Root, berth, profile_file};

/// Runs `plan` and `apply` with `profile_text` and asserts both fail with `expected` in stderr
/// and leave the root exactly as they found it.
#[track_caller]
fn rejected(root: &Root, profile_text: &str, expected: &str) {
    let profile = profile_file(&root.join("/work"), "site", profile_text);
    let before = root.snapshot();
    for command in ["plan", "apply"] {
        let run = berth(root).args([command, "-p"]).args([&profile]).run();
        run.code(1);
        assert!(
            run.stderr.contains(expected),
            "{command}: expected {expected:?} in:\n{}",
            run.stderr
        );
        assert_eq!(root.snapshot(), before, "{command} changed the host");
    }
}

#[test]
fn unknown_key_names_file_line_column_and_key() {
    let root = Root::new();
    rejected(
        &root,
        "[kernel]\nmodules = [\"overlay\"]\n\n[docker.daemon]\nstorage-driver = \"overlay2\"\n\n[docker.deamon]\ndebug = true\n",
        "error: invalid profile `[ROOT]/work/site.toml`\n  caused by: [ROOT]/work/site.toml:7:9: key `docker.deamon`: unknown field `deamon`, expected one of `config`, `restart`, `reload`, `ready_timeout`, `daemon`",
    );
}

#[test]
fn wrong_type_names_the_key() {
    let root = Root::new();
    rejected(
        &root,
        "[kernel]\nmodules = \"overlay\"\n",
        "[ROOT]/work/site.toml:2:11: key `kernel.modules`: invalid type: string \"overlay\", expected a sequence",
    );
}

#[test]
fn a_daemon_value_dockerd_would_choke_on_is_caught_with_its_line() {
    let root = Root::new();
    rejected(
        &root,
        "[docker.daemon]\nlog-driver = \"json-file\"\n[docker.daemon.log-opts]\nmax-size = \"10m\"\nmax-file = 3\n",
        "[ROOT]/work/site.toml:5:1: key `docker.daemon.log-opts.max-file`: must be a string: dockerd reads every log option as text, write `max-file = \"3\"`",
    );
}

#[test]
fn malformed_toml_has_a_position() {
    let root = Root::new();
    rejected(
        &root,
        "[kernel\nmodules = []\n",
        "[ROOT]/work/site.toml:1:8: ",
    );
}

#[test]
fn malformed_existing_daemon_json_is_never_overwritten() {
    let root = Root::new();
    root.write("/etc/docker/daemon.json", "{\n  \"debug\": true,\n}\n");
    rejected(
        &root,
        "[docker.daemon]\nstorage-driver = \"overlay2\"\n",
        "error: failed to observe `daemon-config`\n  caused by: `/etc/docker/daemon.json` is not valid JSON; berth will not overwrite it: fix it by hand first\n  caused by: trailing comma at line 3 column 1",
    );
}

#[test]
fn an_unwritable_target_fails_with_its_path_and_changes_nothing() {
    let root = Root::new();
    // /etc/docker is a file, so daemon.json cannot be created under it.
    root.write("/etc/docker", "not a directory\n");
    let profile = profile_file(
        &root.join("/work"),
        "site",
        "[docker.daemon]\nstorage-driver = \"overlay2\"\n",
    );
    let before = root.snapshot();
    let run = berth(&root).args(["apply", "-p"]).args([&profile]).run();
    run.code(1);
    assert!(run.stderr.contains("error: failed to create `daemon-config`\n  caused by: failed to write `/etc/docker/daemon.json`"), "{}", run.stderr);
    assert_eq!(root.snapshot(), before);
}

#[test]
fn bad_berth_toml_is_located() {
    let root = Root::new();
    root.write(
        "/etc/berth/berth.toml",
        "profiles = [\"dind\"]\nprofile = \"x\"\n",
    );
    let run = berth(&root).args(["plan"]).run();
    run.code(1);
    assert!(run.stderr.contains("caused by: /etc/berth/berth.toml:2:1: key `profile`: unknown field `profile`, expected `profiles`"), "{}", run.stderr);
}

#[test]
fn a_root_that_is_not_a_directory_is_an_error() {
    let root = Root::new();
    root.write("/file", "");
    let run = crate::harness::berth(&root)
        .args(["plan", "--root"])
        .args([root.join("/file")])
        .run();
    run.code(1);
    assert!(run.stderr.contains("is not a directory"), "{}", run.stderr);
}

#[test]
fn plan_json_reports_a_profile_error_as_a_document() {
    let root = Root::new();
    let profile = profile_file(&root.join("/work"), "site", "bogus = 1\n");
    let run = berth(&root)
        .args(["plan", "--json", "-p"])
        .args([&profile])
        .run();
    run.code(1);
    let document = run.json();
    assert_eq!(
        document["errors"][0]["message"],
        "invalid profile `[ROOT]/work/site.toml`"
    );
}
