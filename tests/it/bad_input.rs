//! Bad input: each case is one clear error naming the file, line and key (where there is one),
//! exit 1, and nothing on the host changed.

use crate::harness::{Root, berth, profile_file};

/// Runs `plan` and `apply` with `profile_text`, asserts both fail with exit 1 and leave the
/// root exactly as they found it, and returns what each printed on stderr, for the snapshot.
#[track_caller]
fn rejected(root: &Root, profile_text: &str) -> String {
    let profile = profile_file(&root.join("/work"), "site", profile_text);
    let before = root.snapshot();
    let mut stderr = String::new();
    for command in ["plan", "apply"] {
        let run = berth(root).args([command, "-p"]).args([&profile]).run();
        run.code(1);
        assert_eq!(root.snapshot(), before, "{command} changed the host");
        stderr.push_str(&format!("--- {command}\n{}", run.stderr));
    }
    stderr
}

#[test]
fn unknown_key_names_file_line_column_and_key() {
    let root = Root::new();
    let stderr = rejected(
        &root,
        "[kernel]\nmodules = [\"overlay\"]\n\n[docker.daemon]\nstorage-driver = \"overlay2\"\n\n[docker.deamon]\ndebug = true\n",
    );
    insta::assert_snapshot!(stderr, @r"
    --- plan
    error: invalid profile `[ROOT]/work/site.toml`
      caused by: [ROOT]/work/site.toml:7:9: key `docker.deamon`: unknown key `deamon`; did you mean `daemon`?
    --- apply
    error: invalid profile `[ROOT]/work/site.toml`
      caused by: [ROOT]/work/site.toml:7:9: key `docker.deamon`: unknown key `deamon`; did you mean `daemon`?
    ");
}

#[test]
fn wrong_type_names_the_key() {
    let root = Root::new();
    let stderr = rejected(&root, "[kernel]\nmodules = \"overlay\"\n");
    insta::assert_snapshot!(stderr, @r#"
    --- plan
    error: invalid profile `[ROOT]/work/site.toml`
      caused by: [ROOT]/work/site.toml:2:11: key `kernel.modules`: expected a list, found the string "overlay"; write it as a list: `["overlay"]`
    --- apply
    error: invalid profile `[ROOT]/work/site.toml`
      caused by: [ROOT]/work/site.toml:2:11: key `kernel.modules`: expected a list, found the string "overlay"; write it as a list: `["overlay"]`
    "#);
}

#[test]
fn a_daemon_value_dockerd_would_choke_on_is_caught_with_its_line() {
    let root = Root::new();
    let stderr = rejected(
        &root,
        "[docker.daemon]\nlog-driver = \"json-file\"\n[docker.daemon.log-opts]\nmax-size = \"10m\"\nmax-file = 3\n",
    );
    insta::assert_snapshot!(stderr, @r#"
    --- plan
    error: invalid profile `[ROOT]/work/site.toml`
      caused by: [ROOT]/work/site.toml:5:1: key `docker.daemon.log-opts.max-file`: must be a string: dockerd reads every log option as text, write `max-file = "3"`
    --- apply
    error: invalid profile `[ROOT]/work/site.toml`
      caused by: [ROOT]/work/site.toml:5:1: key `docker.daemon.log-opts.max-file`: must be a string: dockerd reads every log option as text, write `max-file = "3"`
    "#);
}

#[test]
fn an_install_source_berth_does_not_know_names_the_choices() {
    let root = Root::new();
    let stderr = rejected(&root, "[docker]\ninstall = \"apt\"\n");
    insta::assert_snapshot!(stderr, @r#"
    --- plan
    error: invalid profile `[ROOT]/work/site.toml`
      caused by: [ROOT]/work/site.toml:2:11: key `docker.install`: must be "distro" (the distribution's packages), "docker-ce" (Docker's own repository) or false (never install)
    --- apply
    error: invalid profile `[ROOT]/work/site.toml`
      caused by: [ROOT]/work/site.toml:2:11: key `docker.install`: must be "distro" (the distribution's packages), "docker-ce" (Docker's own repository) or false (never install)
    "#);
}

#[test]
fn malformed_toml_has_a_position() {
    let root = Root::new();
    let stderr = rejected(&root, "[kernel\nmodules = []\n");
    insta::assert_snapshot!(stderr, @r"
    --- plan
    error: invalid profile `[ROOT]/work/site.toml`
      caused by: [ROOT]/work/site.toml:1:8: unclosed table, expected `]`
    --- apply
    error: invalid profile `[ROOT]/work/site.toml`
      caused by: [ROOT]/work/site.toml:1:8: unclosed table, expected `]`
    ");
}

#[test]
fn malformed_existing_daemon_json_is_never_overwritten() {
    let root = Root::new();
    root.write("/etc/docker/daemon.json", "{\n  \"debug\": true,\n}\n");
    let stderr = rejected(&root, "[docker.daemon]\nstorage-driver = \"overlay2\"\n");
    insta::assert_snapshot!(stderr, @r"
    --- plan
    warning: daemon/docker: Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is
    error: failed to observe `daemon-config`
      caused by: `/etc/docker/daemon.json` is not valid JSON; berth will not overwrite it: fix it by hand first
      caused by: trailing comma at line 3 column 1
    --- apply
    error: failed to observe `daemon-config`
      caused by: `/etc/docker/daemon.json` is not valid JSON; berth will not overwrite it: fix it by hand first
      caused by: trailing comma at line 3 column 1
    error: not attempted because `daemon-config` failed
    ");
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
    insta::assert_snapshot!(run.stderr, @r"
    daemon-config: create /etc/docker/daemon.json
    error: failed to create `daemon-config`
      caused by: failed to write `/etc/docker/daemon.json`
      caused by: `/etc/docker` is not a directory
    error: not attempted because `daemon-config` failed
    ");
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
    insta::assert_snapshot!(run.stderr, @r"
    error: invalid berth settings `/etc/berth/berth.toml`
      caused by: /etc/berth/berth.toml:2:1: key `profile`: unknown key `profile`; did you mean `profiles`?
    ");
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
    insta::assert_snapshot!(run.stderr, @"error: the root `[ROOT]/file` is not a directory");
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

/// Issue 13, item 6: every problem of a file in one run, each with its file, line and column:
/// those serde finds while parsing, and those the kinds find after merging.
#[test]
fn every_problem_of_a_profile_is_reported_in_one_run() {
    let root = Root::new();
    let stderr = rejected(
        &root,
        "[kernel]\nmodules = \"overlay\"\n\n[docker]\nready_timeout = \"soon\"\n\n[containers.runner]\nimage = \"gitlab/gitlab-runner:v17.11.0\"\nprivilegd = true\n",
    );
    insta::assert_snapshot!(stderr, @r#"
        --- plan
        error: 3 problems in `[ROOT]/work/site.toml`:
          [ROOT]/work/site.toml:2:11: key `kernel.modules`: expected a list, found the string "overlay"; write it as a list: `["overlay"]`
          [ROOT]/work/site.toml:5:17: key `docker.ready_timeout`: expected a whole number, 0 or more, found the string "soon"
          [ROOT]/work/site.toml:9:1: key `containers.runner.privilegd`: unknown key `privilegd`; did you mean `privileged`?
        --- apply
        error: 3 problems in `[ROOT]/work/site.toml`:
          [ROOT]/work/site.toml:2:11: key `kernel.modules`: expected a list, found the string "overlay"; write it as a list: `["overlay"]`
          [ROOT]/work/site.toml:5:17: key `docker.ready_timeout`: expected a whole number, 0 or more, found the string "soon"
          [ROOT]/work/site.toml:9:1: key `containers.runner.privilegd`: unknown key `privilegd`; did you mean `privileged`?
    "#);
    let stderr = rejected(
        &root,
        "[containers.web]\nrestart = \"always\"\n\n[containers.db]\nimage = \"postgres:16\"\nafter = [\"cache\"]\n\n[runners.r]\nurl = \"https://gitlab.example.com\"\ntoken_file = \"/etc/berth/tokens/r\"\nexecutor = \"dokcer\"\n",
    );
    insta::assert_snapshot!(stderr, @r"
        --- plan
        error: 3 problems in `[ROOT]/work/site.toml`:
          [ROOT]/work/site.toml:1:13: key `containers.web`: a container needs an `image`
          [ROOT]/work/site.toml:6:1: key `containers.db.after`: no container `cache` in the profile
          [ROOT]/work/site.toml:11:1: key `runners.r.executor`: `dokcer` is not a gitlab-runner executor (shell, docker, docker-windows, ssh, parallels, virtualbox, docker+machine, kubernetes, docker-autoscaler, instance, custom); did you mean `docker`?
        --- apply
        error: 3 problems in `[ROOT]/work/site.toml`:
          [ROOT]/work/site.toml:1:13: key `containers.web`: a container needs an `image`
          [ROOT]/work/site.toml:6:1: key `containers.db.after`: no container `cache` in the profile
          [ROOT]/work/site.toml:11:1: key `runners.r.executor`: `dokcer` is not a gitlab-runner executor (shell, docker, docker-windows, ssh, parallels, virtualbox, docker+machine, kubernetes, docker-autoscaler, instance, custom); did you mean `docker`?
    ");
}

/// Issue 13, item 6: a value a key does not take names the values it does, the closest first.
#[test]
fn a_bad_value_names_the_closest_and_the_choice() {
    let root = Root::new();
    let stderr = rejected(
        &root,
        "[containers.web]\nimage = \"nginx:1\"\npull = \"alwyas\"\n",
    );
    insta::assert_snapshot!(stderr, @r"
        --- plan
        error: invalid profile `[ROOT]/work/site.toml`
          caused by: [ROOT]/work/site.toml:3:8: key `containers.web.pull`: `alwyas` is not a value this key takes; did you mean `always`? (one of `missing`, `always`, `never`)
        --- apply
        error: invalid profile `[ROOT]/work/site.toml`
          caused by: [ROOT]/work/site.toml:3:8: key `containers.web.pull`: `alwyas` is not a value this key takes; did you mean `always`? (one of `missing`, `always`, `never`)
    ");
}

/// Issue 13, item 6: `validate --json` gives editors and CI one diagnostic per problem.
#[test]
fn validate_json_has_a_diagnostic_per_problem() {
    let root = Root::new();
    let profile = profile_file(
        &root.join("/work"),
        "site",
        "[containers.web]\nimage = \"nginx:1\"\nprivilegd = true\n[docker]\nready_timeout = -1\n",
    );
    let run = berth(&root)
        .args(["validate", "--json", "-p"])
        .args([&profile])
        .run();
    run.code(1);
    let document = run.json();
    assert_eq!(document["valid"], false);
    insta::assert_snapshot!(serde_json::to_string_pretty(&document["diagnostics"]).unwrap(), @r#"
        [
          {
            "file": "[ROOT]/work/site.toml",
            "line": 3,
            "column": 1,
            "key": "containers.web.privilegd",
            "message": "unknown key `privilegd`",
            "hint": "did you mean `privileged`?",
            "severity": "error"
          },
          {
            "file": "[ROOT]/work/site.toml",
            "line": 5,
            "column": 17,
            "key": "docker.ready_timeout",
            "message": "expected a whole number, 0 or more, found the number -1",
            "hint": null,
            "severity": "error"
          }
        ]
    "#);
    let valid = profile_file(
        &root.join("/work"),
        "valid",
        "[containers.web]\nimage = \"nginx:1\"\nstop_signal = \"SIGQUIT\"\n",
    );
    let run = berth(&root)
        .args(["validate", "--json", "-p"])
        .args([&valid])
        .run();
    run.code(0);
    let document = run.json();
    assert_eq!(document["valid"], true);
    insta::assert_snapshot!(serde_json::to_string_pretty(&document["diagnostics"]).unwrap(), @r#"
        [
          {
            "file": "[ROOT]/work/valid.toml",
            "line": 1,
            "column": 13,
            "key": "containers.web",
            "message": "container `web` sets `stop_signal` but no `stop_timeout`: Docker kills it 10 s after the signal, which cuts running jobs short",
            "hint": null,
            "severity": "warning"
          }
        ]
    "#);
}

/// Issue 23: a daemon.json saved with a UTF-8 byte order mark is named as one (and how to drop
/// it), not "not valid JSON at line 1 column 1" for a character nobody sees.
#[test]
fn a_daemon_json_with_a_byte_order_mark_is_named_as_one() {
    let root = Root::new();
    root.write(
        "/etc/docker/daemon.json",
        "\u{feff}{\n  \"debug\": true\n}\n",
    );
    let stderr = rejected(&root, "[docker.daemon]\nstorage-driver = \"overlay2\"\n");
    insta::assert_snapshot!(stderr, @r"
    --- plan
    warning: daemon/docker: Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is
    error: failed to observe `daemon-config`
      caused by: `/etc/docker/daemon.json` starts with a UTF-8 byte order mark (BOM: bytes EF BB BF), which JSON does not allow and dockerd refuses; berth will not overwrite it: save it without the BOM (`sed -i '1s/^\xEF\xBB\xBF//' /etc/docker/daemon.json`)
    --- apply
    error: failed to observe `daemon-config`
      caused by: `/etc/docker/daemon.json` starts with a UTF-8 byte order mark (BOM: bytes EF BB BF), which JSON does not allow and dockerd refuses; berth will not overwrite it: save it without the BOM (`sed -i '1s/^\xEF\xBB\xBF//' /etc/docker/daemon.json`)
    error: not attempted because `daemon-config` failed
    ");
}

/// Issue 23: a restart policy one letter off gets "did you mean", as every other value does.
#[test]
fn a_misspelt_restart_policy_gets_did_you_mean() {
    let root = Root::new();
    let stderr = rejected(
        &root,
        "[containers.web]\nimage = \"nginx:1\"\nrestart = \"allways\"\n",
    );
    insta::assert_snapshot!(stderr, @r"
    --- plan
    error: invalid profile `[ROOT]/work/site.toml`
      caused by: [ROOT]/work/site.toml:3:11: key `containers.web.restart`: `allways` is not a restart policy (no, always, unless-stopped, on-failure[:N]); did you mean `always`?
    --- apply
    error: invalid profile `[ROOT]/work/site.toml`
      caused by: [ROOT]/work/site.toml:3:11: key `containers.web.restart`: `allways` is not a restart policy (no, always, unless-stopped, on-failure[:N]); did you mean `always`?
    ");
}
