//! The runner's config.toml and its registration with GitLab (issue 4), against the GitLab
//! stand-in in `gitlab_server`: registration never happens twice, config.toml keeps what berth
//! does not own, a removed runner is unregistered once, every GitLab refusal is reported for
//! that runner while the rest of the host converges, and no token ever shows outside
//! config.toml.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use crate::{
    gitlab_server::{CREATE, DELETE, DELETE_MANAGER, GitLab, REGISTER, VERIFY},
    harness::{
        Berth, Root, berth, profile_file, start_gitlab, start_gitlab_tls, unprivileged_layer,
        write_logging_stubs,
    },
    require_dockerd,
};

const CONFIG: &str = "/srv/gitlab-runner/config.toml";
const LEDGER: &str = "/var/lib/berth/state.json";
const SYSTEM_ID: &str = "/srv/gitlab-runner/.runner_system_id";
const GLRT: &str = "glrt-Zk3vQx8Lp2Wn7Rt5Yb1M";
const GLRT_TOKEN_FILE: &str = "/etc/berth/tokens/docker-runner";

/// Writes a token file readable by root only, as an operator would.
fn token_file(root: &Root, path: &str, token: &str) {
    root.write(path, &format!("{token}\n"));
    root.chmod(path, 0o600);
}

/// The issue's example profile, pointed at the stand-in.
fn docker_runner(gitlab: &GitLab) -> String {
    format!(
        r#"[runner]
config         = "{CONFIG}"
concurrent     = 4
check_interval = 3

[runners.docker-runner]
url        = "{url}"
token_file = "{GLRT_TOKEN_FILE}"
executor   = "docker"
[runners.docker-runner.docker]
host       = "tcp://gitlab-dind:2375"
image      = "docker:27"
privileged = false
volumes    = ["/var/run/docker.sock:/var/run/docker.sock", "/cache"]
"#,
        url = gitlab.url()
    )
}

/// A profile layer file for `-p`.
fn layer(root: &Root, name: &str, text: &str) -> PathBuf {
    profile_file(&root.join("/work"), name, text)
}

fn run(root: &Root, gitlab: &GitLab, args: &[&str], profiles: &[&Path]) -> crate::harness::Run {
    command(root, gitlab, args, profiles).run()
}

fn command(root: &Root, gitlab: &GitLab, args: &[&str], profiles: &[&Path]) -> Berth {
    let address = gitlab.url().split("://").nth(1).unwrap().to_owned();
    let mut command = berth(root).filter(address, "[GITLAB]").args(args);
    for profile in profiles {
        command = command.arg_pair("-p", profile);
    }
    command
}

trait ArgPair {
    fn arg_pair(self, flag: &str, value: &Path) -> Self;
}

impl ArgPair for Berth {
    fn arg_pair(self, flag: &str, value: &Path) -> Self {
        self.args([std::ffi::OsStr::new(flag), value.as_os_str()])
    }
}

/// A host whose profile declares the docker runner with a glrt- token that GitLab knows:
/// the root, the GitLab stand-in, the runner's id there, and the profile layer.
fn glrt_host() -> (Root, GitLab, i64, PathBuf) {
    let root = Root::new();
    let gitlab = start_gitlab();
    let runner_id = gitlab.add_runner(GLRT);
    token_file(&root, GLRT_TOKEN_FILE, GLRT);
    let profile = layer(&root, "site", &docker_runner(&gitlab));
    (root, gitlab, runner_id, profile)
}

fn ledger(root: &Root) -> serde_json::Value {
    serde_json::from_str(&root.read(LEDGER).expect("the ledger exists")).unwrap()
}

#[test]
fn two_applies_register_exactly_once_and_a_second_plan_asks_gitlab_nothing() {
    let (root, gitlab, runner_id, profile) = glrt_host();

    let plan = run(&root, &gitlab, &["plan"], &[&profile]);
    plan.code(2);
    insta::assert_snapshot!(plan.stdout, @r#"
    runner/docker-runner    + register  verify the glrt- token in `/etc/berth/tokens/docker-runner` with http://[GITLAB] (POST /api/v4/runners/verify); writes `/srv/gitlab-runner/.runner_system_id` first
    runner-config           + create    /srv/gitlab-runner/config.toml
        --- /srv/gitlab-runner/config.toml
        +++ /srv/gitlab-runner/config.toml
        @@ -0,0 +1,13 @@
        +concurrent = 4
        +check_interval = 3
        +
        +[[runners]]
        +name = "docker-runner"
        +url = "http://[GITLAB]"
        +executor = "docker"
        +
        +[runners.docker]
        +host = "tcp://gitlab-dind:2375"
        +image = "docker:27"
        +privileged = false
        +volumes = ["/var/run/docker.sock:/var/run/docker.sock", "/cache"]

    Plan: 2 to add, 0 to change, 0 to destroy.
    "#);
    assert_eq!(gitlab.total_calls(), 0, "plan asks GitLab nothing");
    assert!(!root.exists(CONFIG), "plan writes nothing");

    let apply = run(&root, &gitlab, &["apply"], &[&profile]);
    apply.code(0);
    assert_eq!(gitlab.calls(VERIFY), 1);
    assert_eq!(gitlab.total_calls(), 1);

    let config = root.read(CONFIG).unwrap();
    let parsed: toml::Table = toml::from_str(&config).unwrap();
    assert_eq!(parsed["concurrent"].as_integer(), Some(4));
    let entry = parsed["runners"].as_array().unwrap()[0].as_table().unwrap();
    assert_eq!(entry["name"].as_str(), Some("docker-runner"));
    assert_eq!(entry["id"].as_integer(), Some(runner_id));
    assert_eq!(entry["token"].as_str(), Some(GLRT));
    assert!(entry["token_obtained_at"].is_datetime());
    assert_eq!(
        entry["token_expires_at"].as_datetime().unwrap().to_string(),
        "0001-01-01T00:00:00Z"
    );
    assert_eq!(entry["docker"]["image"].as_str(), Some("docker:27"));
    assert_eq!(root.mode(CONFIG), 0o600);
    assert_eq!(root.mode("/srv/gitlab-runner"), 0o700);

    let system_id = root.read(SYSTEM_ID).unwrap();
    assert!(
        system_id.len() == 14 && (system_id.starts_with("r_") || system_id.starts_with("s_")),
        "gitlab-runner's format: {system_id:?}"
    );
    assert_eq!(root.mode(SYSTEM_ID), 0o600);
    assert_eq!(
        gitlab
            .runner(runner_id)
            .unwrap()
            .managers
            .into_keys()
            .collect::<Vec<_>>(),
        std::slice::from_ref(&system_id),
        "GitLab knows this host by the runner's own system id"
    );
    // Issue 12, item 5 (this expectation changed with it: verify without `info` was wrong):
    // verify tells GitLab what gitlab-runner would, as gitlab-runner itself does.
    let verify = &gitlab.seen()[0];
    let body = serde_json::from_str::<serde_json::Value>(&verify.body).unwrap();
    assert_eq!(body["token"], GLRT);
    assert_eq!(body["system_id"], system_id.as_str());
    assert_eq!(body["info"]["name"], "gitlab-runner");
    assert_eq!(body["info"]["executor"], "docker");
    assert_eq!(body["info"]["platform"], "linux");
    assert_eq!(body["info"]["features"]["cancel_gracefully"], true);

    let recorded = &ledger(&root)["runners"]["docker-runner"];
    assert_eq!(recorded["id"], runner_id);
    assert_eq!(recorded["source"], "verified");
    assert_eq!(root.mode(LEDGER), 0o600);

    let mtime = root.mtime(CONFIG);
    command(&root, &gitlab, &[], &[&profile]).converged();
    run(&root, &gitlab, &["apply"], &[&profile]).code(0);
    assert_eq!(
        gitlab.total_calls(),
        1,
        "no second registration, no call at all"
    );
    assert_eq!(
        root.mtime(CONFIG),
        mtime,
        "a converged apply writes nothing"
    );
}

#[test]
fn a_registration_token_registers_once_and_warns_that_it_is_deprecated() {
    let root = Root::new();
    let gitlab = start_gitlab();
    gitlab.add_registration_token("GR1348941regtoken");
    token_file(&root, "/etc/berth/tokens/registration", "GR1348941regtoken");
    let profile = layer(
        &root,
        "legacy",
        &format!(
            "[runners.legacy]\nurl = \"{}\"\nregistration_token_file = \"/etc/berth/tokens/registration\"\nexecutor = \"shell\"\ndescription = \"build box\"\ntag_list = [\"linux\", \"shell\"]\nlocked = false\n",
            gitlab.url()
        ),
    );
    let validate = run(&root, &gitlab, &["validate"], &[&profile]);
    validate.code(0);
    assert!(
        validate.stdout.contains("warning: [ROOT]/work/legacy.toml:3:1: key `runners.legacy.registration_token_file`: registration_token_file uses a runner registration token, deprecated"),
        "{}",
        validate.stdout
    );
    let plan = run(&root, &gitlab, &["plan"], &[&profile]);
    plan.code(2);
    assert!(
        plan.stderr.contains("deprecated since GitLab 15.6"),
        "{}",
        plan.stderr
    );
    assert!(
        plan.stdout.contains("runner/legacy    + register  register with http://[GITLAB] using a registration token (POST /api/v4/runners; deprecated)"),
        "{}",
        plan.stdout
    );
    run(&root, &gitlab, &["apply"], &[&profile]).code(0);
    run(&root, &gitlab, &["apply"], &[&profile]).code(0);
    assert_eq!(gitlab.calls(REGISTER), 1, "registered exactly once");
    assert_eq!(gitlab.total_calls(), 1);
    let registered = &gitlab.runners()[0];
    assert_eq!(registered.description.as_deref(), Some("build box"));
    let body: serde_json::Value = serde_json::from_str(&gitlab.seen()[0].body).unwrap();
    assert_eq!(body["tag_list"], serde_json::json!(["linux", "shell"]));
    assert_eq!(body["locked"], false);
    assert_eq!(body["run_untagged"], false);
    let config: toml::Table = toml::from_str(&root.read(CONFIG).unwrap()).unwrap();
    assert_eq!(
        config["runners"][0]["token"].as_str(),
        Some(registered.token.as_str()),
        "the token GitLab issued is kept, the registration token is not"
    );
    assert_eq!(ledger(&root)["runners"]["legacy"]["source"], "registered");
    command(&root, &gitlab, &[], &[&profile]).converged();
}

#[test]
fn a_create_token_creates_the_runner_once() {
    let root = Root::new();
    let gitlab = start_gitlab();
    gitlab.add_access_token("glpat-createRunnerScope", &[7]);
    gitlab.expire_new_tokens_at("2030-06-01T00:00:00.000Z");
    token_file(&root, "/etc/berth/tokens/pat", "glpat-createRunnerScope");
    let profile = layer(
        &root,
        "create",
        &format!(
            "[runners.made]\nurl = \"{}\"\ncreate_token_file = \"/etc/berth/tokens/pat\"\nrunner_type = \"group_type\"\ngroup_id = 7\ndescription = \"made by berth\"\ntag_list = [\"docker\"]\nexecutor = \"docker\"\n[runners.made.docker]\nimage = \"alpine:3\"\n",
            gitlab.url()
        ),
    );
    run(&root, &gitlab, &["apply"], &[&profile]).code(0);
    run(&root, &gitlab, &["apply"], &[&profile]).code(0);
    assert_eq!(gitlab.calls(CREATE), 1, "created exactly once");
    assert_eq!(
        gitlab.calls(VERIFY),
        1,
        "and made this host its manager once"
    );
    let created = &gitlab.runners()[0];
    assert!(created.token.starts_with("glrt-"));
    assert_eq!(created.managers.len(), 1);
    let parsed: toml::Table = toml::from_str(&root.read(CONFIG).unwrap()).unwrap();
    let expires = parsed["runners"].as_array().unwrap()[0]["token_expires_at"]
        .as_datetime()
        .unwrap()
        .to_string();
    assert!(
        expires.starts_with("2030-06-01T00:00:00") && expires.ends_with('Z'),
        "GitLab's token_expires_at round-trips: {expires}"
    );
    let create = gitlab
        .seen()
        .into_iter()
        .find(|seen| seen.endpoint == CREATE)
        .unwrap();
    assert!(
        create
            .headers
            .iter()
            .any(|(name, value)| name.eq_ignore_ascii_case("PRIVATE-TOKEN")
                && value == "glpat-createRunnerScope"),
        "the access token travels in a header"
    );
    let body: serde_json::Value = serde_json::from_str(&create.body).unwrap();
    assert_eq!(body["runner_type"], "group_type");
    assert_eq!(body["group_id"], 7);
    assert_eq!(ledger(&root)["runners"]["made"]["source"], "created");
    let config: toml::Table = toml::from_str(&root.read(CONFIG).unwrap()).unwrap();
    assert_eq!(
        config["runners"][0]["token"].as_str(),
        Some(created.token.as_str())
    );
}

#[test]
fn hand_edits_a_foreign_runner_a_comment_and_a_token_rotated_by_the_runner_are_kept() {
    let (root, gitlab, runner_id, profile) = glrt_host();
    run(&root, &gitlab, &["apply"], &[&profile]).code(0);

    // gitlab-runner rotates its token and rewrites the file; an operator adds a runner of
    // their own, a comment and a key berth does not know.
    let rotated = "glrt-RotatedByTheRunner9";
    gitlab.rotate_token(runner_id, rotated);
    let edited = format!(
        "# hand-written note: keep me\n{}\n[[runners]]\n  name = \"hand-made\"\n  url = \"https://other.example.com\"\n  id = 3\n  token = \"glrt-HandMadeForeign1\"\n  executor = \"shell\"\n",
        root.read(CONFIG).unwrap().replace(GLRT, rotated).replace(
            "executor = \"docker\"",
            "executor = \"docker\"\nmy_setting = \"mine\""
        )
    );
    root.write(CONFIG, &edited);
    root.chmod(CONFIG, 0o600);

    command(&root, &gitlab, &[], &[&profile]).converged();
    assert_eq!(
        gitlab.calls(VERIFY),
        1,
        "a token the runner rotated is not registration"
    );

    // The profile changes a setting: only that line changes.
    let changed = layer(
        &root,
        "site",
        &docker_runner(&gitlab).replace("concurrent     = 4", "concurrent     = 8"),
    );
    let plan = run(&root, &gitlab, &["plan"], &[&changed]);
    plan.code(2);
    assert!(
        plan.stdout
            .contains("-concurrent = 4\n    +concurrent = 8\n"),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains(rotated) && !plan.stdout.contains("glrt-HandMadeForeign1"));
    run(&root, &gitlab, &["apply"], &[&changed]).code(0);
    assert_eq!(
        root.read(CONFIG).unwrap(),
        edited.replace("concurrent = 4", "concurrent = 8"),
        "only the owned key changed"
    );
    assert_eq!(gitlab.total_calls(), 1);
}

#[test]
fn a_new_token_in_the_token_file_is_found_by_fingerprint_and_verified() {
    let (root, gitlab, runner_id, profile) = glrt_host();
    run(&root, &gitlab, &["apply"], &[&profile]).code(0);
    let fresh = "glrt-FreshFromTheUi42";
    gitlab.rotate_token(runner_id, fresh);
    token_file(&root, GLRT_TOKEN_FILE, fresh);
    let plan = run(&root, &gitlab, &["plan", "--json"], &[&profile]);
    plan.code(2);
    let change = &plan.json()["changes"][0];
    assert_eq!(change["id"], "runner/docker-runner");
    assert_eq!(change["action"], "update");
    let detail = change["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("token (fingerprint ") && detail.contains("… → "),
        "{detail}"
    );
    run(&root, &gitlab, &["apply"], &[&profile]).code(0);
    assert_eq!(gitlab.calls(VERIFY), 2);
    let config: toml::Table = toml::from_str(&root.read(CONFIG).unwrap()).unwrap();
    assert_eq!(config["runners"][0]["token"].as_str(), Some(fresh));
    command(&root, &gitlab, &[], &[&profile]).converged();
}

#[test]
fn a_runner_removed_from_the_profile_is_unregistered_once_and_its_entry_goes() {
    let root = Root::new();
    let gitlab = start_gitlab();
    let glrt_id = gitlab.add_runner(GLRT);
    gitlab.add_registration_token("GR1348941regtoken");
    token_file(&root, GLRT_TOKEN_FILE, GLRT);
    token_file(&root, "/etc/berth/tokens/registration", "GR1348941regtoken");
    let both = layer(
        &root,
        "both",
        &format!(
            "{}\n[runners.legacy]\nurl = \"{}\"\nregistration_token_file = \"/etc/berth/tokens/registration\"\nexecutor = \"shell\"\n",
            docker_runner(&gitlab),
            gitlab.url()
        ),
    );
    run(&root, &gitlab, &["apply"], &[&both]).code(0);
    let legacy_id = gitlab
        .runners()
        .iter()
        .find(|runner| runner.id != glrt_id)
        .unwrap()
        .id;
    // A runner berth does not own, in the same file.
    let with_foreign = format!(
        "{}\n[[runners]]\n  name = \"hand-made\"\n  url = \"https://other.example.com\"\n  token = \"glrt-HandMadeForeign1\"\n  executor = \"shell\"\n",
        root.read(CONFIG).unwrap()
    );
    root.write(CONFIG, &with_foreign);
    root.chmod(CONFIG, 0o600);

    // Both runners leave the profile; only [runner] stays.
    let none = layer(
        &root,
        "none",
        &format!("[runner]\nconfig = \"{CONFIG}\"\nconcurrent = 4\ncheck_interval = 3\n"),
    );
    let plan = run(&root, &gitlab, &["plan"], &[&none]);
    plan.code(2);
    assert!(
        plan.stdout.contains(&format!("runner/docker-runner    - unregister remove this host's runner manager from runner #{glrt_id} (DELETE /api/v4/runners/managers); the runner stays in GitLab; its entry leaves `{CONFIG}`")),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(&format!("runner/legacy           - unregister delete runner #{legacy_id} in http://[GITLAB] (DELETE /api/v4/runners)")),
        "{}",
        plan.stdout
    );
    assert_eq!(
        gitlab.calls(DELETE) + gitlab.calls(DELETE_MANAGER),
        0,
        "plan deletes nothing"
    );

    run(&root, &gitlab, &["apply"], &[&none]).code(0);
    run(&root, &gitlab, &["apply"], &[&none]).code(0);
    assert_eq!(
        gitlab.calls(DELETE_MANAGER),
        1,
        "one manager DELETE for the glrt- runner"
    );
    assert_eq!(
        gitlab.calls(DELETE),
        1,
        "one DELETE for the runner berth registered"
    );
    let glrt_runner = gitlab
        .runner(glrt_id)
        .expect("a runner created in GitLab stays there");
    assert!(
        glrt_runner.managers.is_empty(),
        "this host is no longer its manager"
    );
    assert!(
        gitlab.runner(legacy_id).is_none(),
        "the runner berth registered is deleted"
    );

    let config: toml::Table = toml::from_str(&root.read(CONFIG).unwrap()).unwrap();
    let names: Vec<_> = config["runners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hand-made"], "only berth's entries went");
    assert!(ledger(&root)["runners"].as_object().unwrap().is_empty());
    command(&root, &gitlab, &[], &[&none]).converged();
}

#[test]
fn delete_on_remove_deletes_an_adopted_glrt_runner_in_gitlab() {
    let root = Root::new();
    let gitlab = start_gitlab();
    let runner_id = gitlab.add_runner(GLRT);
    token_file(&root, GLRT_TOKEN_FILE, GLRT);
    let profile = layer(
        &root,
        "site",
        &docker_runner(&gitlab).replace(
            "executor   = \"docker\"",
            "executor   = \"docker\"\ndelete_on_remove = true",
        ),
    );
    run(&root, &gitlab, &["apply"], &[&profile]).code(0);
    assert_eq!(
        ledger(&root)["runners"]["docker-runner"]["delete_on_remove"],
        true
    );
    let empty = layer(&root, "empty", "");
    run(&root, &gitlab, &["apply"], &[&empty]).code(0);
    assert_eq!(gitlab.calls(DELETE), 1);
    assert_eq!(gitlab.calls(DELETE_MANAGER), 0);
    assert!(gitlab.runner(runner_id).is_none());
}

/// Each GitLab refusal fails its runner with GitLab's meaning, exit 1, while the rest of the
/// host (daemon.json, the other runner, config.toml) converges.
#[track_caller]
fn refused(root: &Root, gitlab: &GitLab, failing: &str, expected: &[&str]) {
    let good = "glrt-TheGoodRunnerToken";
    gitlab.add_runner(good);
    token_file(root, "/etc/berth/tokens/good", good);
    let profile = layer(
        root,
        "site",
        &format!(
            "[docker.daemon]\nlog-driver = \"json-file\"\n\n[runner]\nconfig = \"{CONFIG}\"\nconcurrent = 2\n\n[runners.good]\nurl = \"{url}\"\ntoken_file = \"/etc/berth/tokens/good\"\nexecutor = \"shell\"\n\n{failing}",
            url = gitlab.url()
        ),
    );
    let apply = run(root, gitlab, &["apply"], &[&profile]);
    apply.code(1);
    for text in expected {
        assert!(
            apply.stderr.contains(text),
            "expected {text:?} in:\n{}",
            apply.stderr
        );
    }
    assert!(apply.stdout.contains("(failed)"), "{}", apply.stdout);
    assert!(
        root.read("/etc/docker/daemon.json")
            .unwrap()
            .contains("json-file"),
        "the host converged"
    );
    let config: toml::Table = toml::from_str(&root.read(CONFIG).unwrap()).unwrap();
    let names: Vec<_> = config["runners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["good"],
        "the good runner registered, the failed one left no entry"
    );
    assert_eq!(config["concurrent"].as_integer(), Some(2));
    let json = run(root, gitlab, &["apply", "--json"], &[&profile]);
    json.code(1);
    let document = json.json();
    let error = &document["errors"][0];
    let chain = format!("{} {}", error["message"], error["causes"]);
    for text in expected {
        let text = text
            .trim_start_matches("error: ")
            .trim_start_matches("caused by: ");
        assert!(chain.contains(text), "expected {text:?} in {chain}");
    }
}

#[test]
fn a_revoked_token_is_403_token_invalid_or_revoked() {
    let root = Root::new();
    let gitlab = start_gitlab();
    token_file(&root, "/etc/berth/tokens/bad", "glrt-NotKnownToGitLab1");
    refused(
        &root,
        &gitlab,
        &format!(
            "[runners.bad]\nurl = \"{}\"\ntoken_file = \"/etc/berth/tokens/bad\"\nexecutor = \"shell\"\n",
            gitlab.url()
        ),
        &[
            "error: failed to register `runner/bad`",
            "caused by: GitLab refused `http://[GITLAB]/api/v4/runners/verify`",
            "caused by: token invalid or revoked (403): check the runner authentication token",
            "(GitLab said: 403 Forbidden)",
        ],
    );
}

/// Issue 12, orphaned-manager note: GitLab 17.x on answers 403 `Runner is orphaned`, which is
/// not a revoked token.
#[test]
fn an_orphaned_runner_is_403_runner_is_orphaned_on_a_newer_gitlab() {
    let root = Root::new();
    let gitlab = start_gitlab();
    gitlab.add_runner("glrt-OrphanedRunnerTok");
    gitlab.orphan("glrt-OrphanedRunnerTok");
    token_file(&root, "/etc/berth/tokens/orphan", "glrt-OrphanedRunnerTok");
    refused(
        &root,
        &gitlab,
        &format!(
            "[runners.orphan]\nurl = \"{}\"\ntoken_file = \"/etc/berth/tokens/orphan\"\nexecutor = \"shell\"\n",
            gitlab.url()
        ),
        &[
            "caused by: runner is orphaned (403): its project or group is gone",
            "(GitLab said: 403 Forbidden - Runner is orphaned)",
        ],
    );
}

#[test]
fn an_orphaned_runner_is_422_runner_is_orphaned() {
    let root = Root::new();
    let gitlab = start_gitlab();
    gitlab.add_runner("glrt-OrphanedRunnerTok");
    gitlab.orphan_as(
        "glrt-OrphanedRunnerTok",
        crate::gitlab_server::Orphaned::Unprocessable,
    );
    token_file(&root, "/etc/berth/tokens/orphan", "glrt-OrphanedRunnerTok");
    refused(
        &root,
        &gitlab,
        &format!(
            "[runners.orphan]\nurl = \"{}\"\ntoken_file = \"/etc/berth/tokens/orphan\"\nexecutor = \"shell\"\n",
            gitlab.url()
        ),
        &[
            "caused by: runner is orphaned (422)",
            "(GitLab said: Runner is orphaned)",
        ],
    );
}

#[test]
fn disabled_registration_tokens_are_410_with_the_way_out() {
    let root = Root::new();
    let gitlab = start_gitlab();
    gitlab.add_registration_token("GR1348941regtoken");
    gitlab.disallow_registration_tokens();
    token_file(&root, "/etc/berth/tokens/registration", "GR1348941regtoken");
    refused(
        &root,
        &gitlab,
        &format!(
            "[runners.legacy]\nurl = \"{}\"\nregistration_token_file = \"/etc/berth/tokens/registration\"\nexecutor = \"shell\"\n",
            gitlab.url()
        ),
        &[
            "caused by: registration tokens are disabled on this GitLab (default since 17.0): create the runner in GitLab and use its glrt- token",
            "410 Gone - runner registration disallowed",
        ],
    );
    assert_eq!(
        gitlab.calls(REGISTER),
        2,
        "one call per apply, never retried"
    );
}

/// GitLab checks the registration token before it says registration is disabled.
#[test]
fn an_unknown_registration_token_is_403_even_where_registration_is_disabled() {
    let root = Root::new();
    let gitlab = start_gitlab();
    gitlab.disallow_registration_tokens();
    token_file(&root, "/etc/berth/tokens/registration", "GR1348941unknown");
    refused(
        &root,
        &gitlab,
        &format!(
            "[runners.legacy]\nurl = \"{}\"\nregistration_token_file = \"/etc/berth/tokens/registration\"\nexecutor = \"shell\"\n",
            gitlab.url()
        ),
        &[
            "caused by: registration token invalid (403) (GitLab said: 403 Forbidden - invalid token supplied)",
        ],
    );
}

/// An access token without the `create_runner` scope: GitLab's OAuth 403.
#[test]
fn an_access_token_without_the_create_runner_scope_is_403_insufficient_scope() {
    let root = Root::new();
    let gitlab = start_gitlab();
    gitlab.add_scoped_access_token("glpat-NoCreateRunnerScope", &[7], false);
    token_file(
        &root,
        "/etc/berth/tokens/create",
        "glpat-NoCreateRunnerScope",
    );
    refused(
        &root,
        &gitlab,
        &format!(
            "[runners.made]\nurl = \"{}\"\ncreate_token_file = \"/etc/berth/tokens/create\"\nrunner_type = \"group_type\"\ngroup_id = 7\nexecutor = \"shell\"\n",
            gitlab.url()
        ),
        &[
            "caused by: the access token may not create this runner (403): it needs the create_runner scope",
            "(GitLab said: insufficient_scope)",
        ],
    );
    assert_eq!(gitlab.runners().len(), 1, "only the good runner");
}

/// Issue 12, item 6: a 429 while GitLab runs migrations is retried after its Retry-After, and
/// one longer than berth waits fails now, saying so.
#[test]
fn a_rate_limited_gitlab_is_waited_for_as_retry_after_says() {
    let (root, gitlab, _, profile) = glrt_host();
    gitlab.migrating(1, 2);
    let started = std::time::Instant::now();
    let apply = run(&root, &gitlab, &["apply"], &[&profile]);
    apply.code(0);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(gitlab.calls(VERIFY), 2);
    assert!(
        apply
            .stderr
            .contains("answered 429 (rate limited, Retry-After: 2 s); trying again in 2000 ms"),
        "{}",
        apply.stderr
    );

    let (root, gitlab, _, profile) = glrt_host();
    gitlab.migrating(1, 600);
    let started = std::time::Instant::now();
    let apply = run(&root, &gitlab, &["apply"], &[&profile]);
    apply.code(1);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(
        apply.stderr.contains("GitLab asks to retry after 600 s (Retry-After), more than berth waits in one run (120 s in all); the next run tries again"),
        "{}",
        apply.stderr
    );
    assert_eq!(gitlab.calls(VERIFY), 1);
}

/// GitLab's token_expires_at reaches config.toml as gitlab-runner writes it.
#[test]
fn a_token_expiry_round_trips_into_config_toml() {
    let root = Root::new();
    let gitlab = start_gitlab();
    gitlab.add_runner_expiring(GLRT, Some("2031-01-02T03:04:05.678Z"));
    token_file(&root, GLRT_TOKEN_FILE, GLRT);
    let profile = layer(&root, "site", &docker_runner(&gitlab));
    run(&root, &gitlab, &["apply"], &[&profile]).code(0);
    let parsed: toml::Table = toml::from_str(&root.read(CONFIG).unwrap()).unwrap();
    let entry = parsed["runners"].as_array().unwrap()[0].as_table().unwrap();
    assert_eq!(
        entry["token_expires_at"].as_datetime().unwrap().to_string(),
        "2031-01-02T03:04:05.678Z"
    );
    command(&root, &gitlab, &[], &[&profile]).converged();
}

#[test]
fn an_unreachable_gitlab_fails_that_runner_only() {
    let root = Root::new();
    let gitlab = start_gitlab();
    // A loopback port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    token_file(&root, "/etc/berth/tokens/far", "glrt-FarAwayRunnerTok1");
    let started = std::time::Instant::now();
    refused(
        &root,
        &gitlab,
        &format!(
            "[runners.far]\nurl = \"http://127.0.0.1:{port}\"\ntoken_file = \"/etc/berth/tokens/far\"\nexecutor = \"shell\"\n"
        ),
        &[
            "error: failed to register `runner/far`",
            &format!("cannot reach GitLab at `http://127.0.0.1:{port}`"),
            "gave up after 4 attempts",
        ],
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the retry is bounded"
    );
}

/// Issue 23: GitLab (or a proxy before it) answering with a redirect is said to be one, with
/// where it pointed; berth never follows it, since the token would go there too.
#[test]
fn a_redirect_from_gitlab_says_it_redirected_and_where() {
    let (root, gitlab, _, profile) = glrt_host();
    gitlab.script(VERIFY, &[301]);
    let apply = run(&root, &gitlab, &["apply"], &[&profile]);
    apply.code(1);
    assert_eq!(
        gitlab.calls(VERIFY),
        1,
        "a redirect is not retried or followed"
    );
    let said: Vec<&str> = apply
        .stderr
        .lines()
        .skip_while(|line| !line.contains("unexpected answer"))
        .take(2)
        .collect();
    insta::assert_snapshot!(said.join("\n"), @"
    caused by: unexpected answer from `http://[GITLAB]/api/v4/runners/verify`
    caused by: GitLab redirected (301) to `https://gitlab.example.com/api/v4/runners/verify`; berth does not follow redirects, which would send the token there too: set the runner's `url` to the address GitLab answers at
    ");
    assert!(!apply.stderr.contains(GLRT), "the token is never printed");
}

/// Issue 23: two `[[runners]]` entries with one name both run, while berth manages the first:
/// plan says so.
#[test]
fn two_runner_entries_with_one_name_in_config_toml_warn() {
    let (root, gitlab, _, profile) = glrt_host();
    run(&root, &gitlab, &["apply"], &[&profile]).code(0);
    let config = root.read("/srv/gitlab-runner/config.toml").unwrap();
    let copy = config
        .split("[[runners]]")
        .nth(1)
        .expect("the runner's entry")
        .to_owned();
    root.write(
        "/srv/gitlab-runner/config.toml",
        &format!("{config}\n[[runners]]{copy}"),
    );
    let plan = run(&root, &gitlab, &["plan"], &[&profile]);
    let warnings: Vec<&str> = plan
        .stderr
        .lines()
        .filter(|line| line.contains("[[runners]]"))
        .collect();
    insta::assert_snapshot!(warnings.join("\n"), @"warning: runner-config: `/srv/gitlab-runner/config.toml` has 2 `[[runners]]` entries named `docker-runner`: gitlab-runner runs each of them, while berth manages only the first; remove the others by hand");
}

#[test]
fn server_errors_are_retried_with_backoff_but_never_for_a_registration() {
    let (root, gitlab, _, profile) = glrt_host();
    gitlab.script(VERIFY, &[500, 503]);
    let apply = run(&root, &gitlab, &["apply"], &[&profile]);
    apply.code(0);
    assert_eq!(gitlab.calls(VERIFY), 3, "two 5xx, then success");
    assert!(
        apply
            .stderr
            .contains("answered 500; trying again in 250 ms"),
        "{}",
        apply.stderr
    );

    // A 502 after a POST /runners may mean the runner was created: never repeated.
    let root = Root::new();
    gitlab.add_registration_token("GR1348941regtoken");
    gitlab.script(REGISTER, &[502]);
    token_file(&root, "/etc/berth/tokens/registration", "GR1348941regtoken");
    let profile = layer(
        &root,
        "legacy",
        &format!(
            "[runners.legacy]\nurl = \"{}\"\nregistration_token_file = \"/etc/berth/tokens/registration\"\nexecutor = \"shell\"\n",
            gitlab.url()
        ),
    );
    let apply = run(&root, &gitlab, &["apply"], &[&profile]);
    apply.code(1);
    assert_eq!(gitlab.calls(REGISTER), 1);
    assert!(
        apply
            .stderr
            .contains("not retried: GitLab may have created the runner before failing"),
        "{}",
        apply.stderr
    );
}

#[test]
fn an_unparseable_config_toml_is_never_overwritten() {
    let root = Root::new();
    let gitlab = start_gitlab();
    gitlab.add_runner(GLRT);
    token_file(&root, GLRT_TOKEN_FILE, GLRT);
    // Broken on a token line: the error must place it without quoting it.
    let broken = "concurrent = 4\n[[runners]]\nname = \"x\"\ntoken = \"glrt-InTheBrokenFile1\n";
    root.write(CONFIG, broken);
    let profile = layer(&root, "site", &docker_runner(&gitlab));
    for command in ["plan", "apply"] {
        let run = run(&root, &gitlab, &[command], &[&profile]);
        run.code(1);
        assert!(
            run.stderr.contains("`/srv/gitlab-runner/config.toml` is not valid TOML; berth will not overwrite it: fix it by hand first"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("line 4, column"), "{}", run.stderr);
        assert!(
            !run.stderr.contains("glrt-InTheBrokenFile1"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(root.read(CONFIG).unwrap(), broken);
    assert_eq!(gitlab.total_calls(), 0);
}

/// One refusal case: its name, what sets the host up (returning the profile to plan), and the
/// snapshot of what plan and apply print.
type RefusalCase = (&'static str, fn(&Root, &GitLab) -> PathBuf, fn(&str));

/// Registrations berth refuses by itself: `plan` shows the refusal with the way out (exit 2),
/// `apply` refuses that runner (exit 1), and neither asks GitLab anything.
#[test]
fn registrations_berth_refuses_are_planned_as_refused_and_never_reach_gitlab() {
    let cases: Vec<RefusalCase> = vec![
        (
            "a missing token file",
            |root, gitlab| layer(root, "site", &docker_runner(gitlab)),
            |transcript| {
                insta::assert_snapshot!(transcript, @r"
            case: a missing token file
            --- plan
            exit: 1
            --- stdout
            runner/docker-runner    + register  verify the glrt- token in `/etc/berth/tokens/docker-runner` with http://[GITLAB] (POST /api/v4/runners/verify); writes `/srv/gitlab-runner/.runner_system_id` first
                refused: the token_file `/etc/berth/tokens/docker-runner` does not exist: create the runner in GitLab (Settings > CI/CD > Runners) and put its glrt- token there, readable by root only
            runner-config           + create    /srv/gitlab-runner/config.toml
                --- /srv/gitlab-runner/config.toml
                +++ /srv/gitlab-runner/config.toml
                @@ -0,0 +1,2 @@
                +concurrent = 4
                +check_interval = 3

            Plan: 1 to add, 0 to change, 0 to destroy, 1 refused.
            --- stderr
            warning: daemon/docker: Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is
            --- apply
            exit: 1
            --- stdout
            runner/docker-runner    + register  verify the glrt- token in `/etc/berth/tokens/docker-runner` with http://[GITLAB] (POST /api/v4/runners/verify); writes `/srv/gitlab-runner/.runner_system_id` first  (failed)
                refused: the token_file `/etc/berth/tokens/docker-runner` does not exist: create the runner in GitLab (Settings > CI/CD > Runners) and put its glrt- token there, readable by root only
            runner-config           + create    /srv/gitlab-runner/config.toml
                --- /srv/gitlab-runner/config.toml
                +++ /srv/gitlab-runner/config.toml
                @@ -0,0 +1,2 @@
                +concurrent = 4
                +check_interval = 3

            Apply failed: 1 added, 0 changed, 0 destroyed, 1 failed.
            --- stderr
            warning: daemon/docker: Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is
            runner-config: create /srv/gitlab-runner/config.toml
            error: refused to register `runner/docker-runner`
              caused by: the token_file `/etc/berth/tokens/docker-runner` does not exist: create the runner in GitLab (Settings > CI/CD > Runners) and put its glrt- token there, readable by root only
            ")
            },
        ),
        (
            "an empty token file",
            |root, gitlab| {
                token_file(root, GLRT_TOKEN_FILE, "");
                layer(root, "site", &docker_runner(gitlab))
            },
            |transcript| {
                insta::assert_snapshot!(transcript, @r"
            case: an empty token file
            --- plan
            exit: 1
            --- stdout
            runner/docker-runner    + register  verify the glrt- token in `/etc/berth/tokens/docker-runner` with http://[GITLAB] (POST /api/v4/runners/verify); writes `/srv/gitlab-runner/.runner_system_id` first
                refused: the token_file `/etc/berth/tokens/docker-runner` is empty: create the runner in GitLab (Settings > CI/CD > Runners) and put its glrt- token there, readable by root only
            runner-config           + create    /srv/gitlab-runner/config.toml
                --- /srv/gitlab-runner/config.toml
                +++ /srv/gitlab-runner/config.toml
                @@ -0,0 +1,2 @@
                +concurrent = 4
                +check_interval = 3

            Plan: 1 to add, 0 to change, 0 to destroy, 1 refused.
            --- stderr
            warning: daemon/docker: Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is
            --- apply
            exit: 1
            --- stdout
            runner/docker-runner    + register  verify the glrt- token in `/etc/berth/tokens/docker-runner` with http://[GITLAB] (POST /api/v4/runners/verify); writes `/srv/gitlab-runner/.runner_system_id` first  (failed)
                refused: the token_file `/etc/berth/tokens/docker-runner` is empty: create the runner in GitLab (Settings > CI/CD > Runners) and put its glrt- token there, readable by root only
            runner-config           + create    /srv/gitlab-runner/config.toml
                --- /srv/gitlab-runner/config.toml
                +++ /srv/gitlab-runner/config.toml
                @@ -0,0 +1,2 @@
                +concurrent = 4
                +check_interval = 3

            Apply failed: 1 added, 0 changed, 0 destroyed, 1 failed.
            --- stderr
            warning: daemon/docker: Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is
            runner-config: create /srv/gitlab-runner/config.toml
            error: refused to register `runner/docker-runner`
              caused by: the token_file `/etc/berth/tokens/docker-runner` is empty: create the runner in GitLab (Settings > CI/CD > Runners) and put its glrt- token there, readable by root only
            ")
            },
        ),
        (
            "another GitLab's entry of the same name",
            |root, gitlab| {
                gitlab.add_runner(GLRT);
                token_file(root, GLRT_TOKEN_FILE, GLRT);
                root.write(
                    CONFIG,
                    "concurrent = 4\n\n[[runners]]\n  name = \"docker-runner\"\n  url = \"https://other.example.com\"\n  token = \"glrt-HandMadeForeign1\"\n  executor = \"shell\"\n",
                );
                root.chmod(CONFIG, 0o600);
                layer(root, "site", &docker_runner(gitlab))
            },
            |transcript| {
                insta::assert_snapshot!(transcript, @r#"
                case: another GitLab's entry of the same name
                --- plan
                exit: 1
                --- stdout
                runner/docker-runner    + register  register with http://[GITLAB]
                    refused: `/srv/gitlab-runner/config.toml` already has a runner named `docker-runner` for `https://other.example.com`, which berth did not register; rename the runner in the profile, or remove that entry by hand
                runner-config           ~ update    /srv/gitlab-runner/config.toml
                    --- /srv/gitlab-runner/config.toml
                    +++ /srv/gitlab-runner/config.toml
                    @@ -1,4 +1,5 @@
                     concurrent = 4
                    +check_interval = 3
                     
                     [[runners]]
                       name = "docker-runner"

                Plan: 0 to add, 1 to change, 0 to destroy, 1 refused.
                --- stderr
                warning: daemon/docker: Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is
                --- apply
                exit: 1
                --- stdout
                runner/docker-runner    + register  register with http://[GITLAB]  (failed)
                    refused: `/srv/gitlab-runner/config.toml` already has a runner named `docker-runner` for `https://other.example.com`, which berth did not register; rename the runner in the profile, or remove that entry by hand
                runner-config           ~ update    /srv/gitlab-runner/config.toml
                    --- /srv/gitlab-runner/config.toml
                    +++ /srv/gitlab-runner/config.toml
                    @@ -1,4 +1,5 @@
                     concurrent = 4
                    +check_interval = 3
                     
                     [[runners]]
                       name = "docker-runner"

                Apply failed: 0 added, 1 changed, 0 destroyed, 1 failed.
                --- stderr
                warning: daemon/docker: Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is
                runner-config: update /srv/gitlab-runner/config.toml
                error: refused to register `runner/docker-runner`
                  caused by: `/srv/gitlab-runner/config.toml` already has a runner named `docker-runner` for `https://other.example.com`, which berth did not register; rename the runner in the profile, or remove that entry by hand
                "#)
            },
        ),
        (
            "the lost entry of a runner berth registered",
            |root, gitlab| {
                gitlab.add_registration_token("GR1348941regtoken");
                token_file(root, "/etc/berth/tokens/registration", "GR1348941regtoken");
                let profile = layer(
                    root,
                    "legacy",
                    &format!(
                        "[runners.legacy]\nurl = \"{}\"\nregistration_token_file = \"/etc/berth/tokens/registration\"\nexecutor = \"shell\"\n",
                        gitlab.url()
                    ),
                );
                run(root, gitlab, &["apply"], &[&profile]).code(0);
                assert_eq!(gitlab.calls(REGISTER), 1);
                // Someone removes the entry, and its token with it.
                root.write(CONFIG, "");
                profile
            },
            |transcript| {
                insta::assert_snapshot!(transcript, @r"
            case: the lost entry of a runner berth registered
            --- plan
            exit: 1
            --- stdout
            runner/legacy    + register  register with http://[GITLAB] using a registration token (POST /api/v4/runners; deprecated)
                refused: berth registered `legacy` as runner #101 but its entry in `/srv/gitlab-runner/config.toml` is gone, and its token with it; registering again would leave runner #101 behind in GitLab: delete it there, then remove `legacy` from `/var/lib/berth/state.json` to register anew

            Plan: 0 to add, 0 to change, 0 to destroy, 1 refused.
            --- stderr
            warning: [ROOT]/work/legacy.toml:3:1: key `runners.legacy.registration_token_file`: registration_token_file uses a runner registration token, deprecated since GitLab 15.6 and disabled by default since 17.0; create the runner in GitLab and put its glrt- token in token_file
            warning: daemon/docker: Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is
            --- apply
            exit: 1
            --- stdout
            runner/legacy    + register  register with http://[GITLAB] using a registration token (POST /api/v4/runners; deprecated)  (failed)
                refused: berth registered `legacy` as runner #101 but its entry in `/srv/gitlab-runner/config.toml` is gone, and its token with it; registering again would leave runner #101 behind in GitLab: delete it there, then remove `legacy` from `/var/lib/berth/state.json` to register anew

            Apply failed: 0 added, 0 changed, 0 destroyed, 1 failed.
            --- stderr
            warning: [ROOT]/work/legacy.toml:3:1: key `runners.legacy.registration_token_file`: registration_token_file uses a runner registration token, deprecated since GitLab 15.6 and disabled by default since 17.0; create the runner in GitLab and put its glrt- token in token_file
            warning: daemon/docker: Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is
            error: refused to register `runner/legacy`
              caused by: berth registered `legacy` as runner #101 but its entry in `/srv/gitlab-runner/config.toml` is gone, and its token with it; registering again would leave runner #101 behind in GitLab: delete it there, then remove `legacy` from `/var/lib/berth/state.json` to register anew
            ")
            },
        ),
        (
            "moving a registered runner to another url",
            |root, gitlab| {
                gitlab.add_runner(GLRT);
                token_file(root, GLRT_TOKEN_FILE, GLRT);
                let here = layer(root, "site", &docker_runner(gitlab));
                run(root, gitlab, &["apply"], &[&here]).code(0);
                assert_eq!(gitlab.calls(VERIFY), 1);
                layer(
                    root,
                    "moved",
                    &docker_runner(gitlab).replace(&gitlab.url(), "https://gitlab.example.com"),
                )
            },
            |transcript| {
                insta::assert_snapshot!(transcript, @r"
            case: moving a registered runner to another url
            --- plan
            exit: 1
            --- stdout
            runner/docker-runner    + register  move to https://gitlab.example.com
                refused: berth registered `docker-runner` with `http://[GITLAB]` (runner #101); it does not move a runner to another GitLab: remove the runner from the profile and apply (which unregisters it), then add it back with the new url

            Plan: 0 to add, 0 to change, 0 to destroy, 1 refused.
            --- stderr
            warning: daemon/docker: Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is
            --- apply
            exit: 1
            --- stdout
            runner/docker-runner    + register  move to https://gitlab.example.com  (failed)
                refused: berth registered `docker-runner` with `http://[GITLAB]` (runner #101); it does not move a runner to another GitLab: remove the runner from the profile and apply (which unregisters it), then add it back with the new url

            Apply failed: 0 added, 0 changed, 0 destroyed, 1 failed.
            --- stderr
            warning: daemon/docker: Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is
            error: refused to register `runner/docker-runner`
              caused by: berth registered `docker-runner` with `http://[GITLAB]` (runner #101); it does not move a runner to another GitLab: remove the runner from the profile and apply (which unregisters it), then add it back with the new url
            ")
            },
        ),
    ];
    for (case, setup, expected) in cases {
        let root = Root::new();
        let gitlab = start_gitlab();
        let profile = setup(&root, &gitlab);
        let calls = gitlab.total_calls();
        let plan = run(&root, &gitlab, &["plan"], &[&profile]);
        assert_eq!(plan.code, 1, "{case}: plan\n{}", plan.transcript());
        let apply = run(&root, &gitlab, &["apply"], &[&profile]);
        assert_eq!(apply.code, 1, "{case}: apply\n{}", apply.transcript());
        assert_eq!(gitlab.total_calls(), calls, "{case}: no GitLab call");
        expected(&format!(
            "case: {case}\n--- plan\n{}--- apply\n{}",
            plan.transcript(),
            apply.transcript()
        ));
    }
}

#[test]
fn plan_as_a_non_root_user_warns_that_it_cannot_see_the_runners() {
    // Root sets up the root-only files, then berth runs as nobody.
    let Some(mut nobody) = crate::harness::as_nobody(crate::harness::BERTH) else {
        return;
    };
    let (root, gitlab, _, profile) = glrt_host();
    run(&root, &gitlab, &["apply"], &[&profile]).code(0);
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = nobody
        .arg("plan")
        .arg("--root")
        .arg(root.path())
        .arg("-p")
        .arg(&profile)
        .env_clear()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: runner/docker-runner: ") && stderr.contains("Permission denied"),
        "{stderr}"
    );
    assert!(
        stderr.contains("its changes are not planned; run as root to see them"),
        "{stderr}"
    );
    assert!(!stderr.contains(GLRT));
    assert_eq!(gitlab.total_calls(), 1);
}

#[test]
fn a_self_signed_gitlab_is_trusted_through_tls_ca_file_and_only_then() {
    let root = Root::new();
    let gitlab = start_gitlab_tls();
    assert!(gitlab.url().starts_with("https://"));
    gitlab.add_runner(GLRT);
    token_file(&root, GLRT_TOKEN_FILE, GLRT);
    let untrusted = layer(&root, "untrusted", &docker_runner(&gitlab));
    let apply = run(&root, &gitlab, &["apply"], &[&untrusted]);
    apply.code(1);
    assert!(
        apply
            .stderr
            .contains("cannot reach GitLab at `https://[GITLAB]`"),
        "{}",
        apply.stderr
    );
    assert!(
        apply.stderr.contains("error: failed to register `runner/docker-runner`\n  caused by: GitLab's TLS certificate is not trusted: set the runner's `tls_ca_file` to the CA that signed it\n"),
        "{}",
        apply.stderr
    );
    assert!(apply.stderr.contains("UnknownIssuer"), "{}", apply.stderr);
    assert!(!apply.stderr.contains("trying again"), "{}", apply.stderr);
    assert_eq!(
        gitlab.total_calls(),
        0,
        "no request passes an untrusted TLS handshake"
    );

    root.write(
        "/etc/berth/gitlab-ca.pem",
        &crate::gitlab_server::test_ca_pem(),
    );
    let trusted = layer(
        &root,
        "trusted",
        &docker_runner(&gitlab).replace(
            "executor   = \"docker\"",
            "executor   = \"docker\"\ntls_ca_file = \"/etc/berth/gitlab-ca.pem\"",
        ),
    );
    run(&root, &gitlab, &["apply"], &[&trusted]).code(0);
    assert_eq!(gitlab.calls(VERIFY), 1);
    command(&root, &gitlab, &[], &[&trusted]).converged();

    // Issue 12, item 7: gitlab-runner trusts the CA too: it is where gitlab-runner looks
    // (`certs/HOST.crt` beside config.toml) and the entry names it as gitlab-runner sees it.
    let copied = root
        .read("/srv/gitlab-runner/certs/127.0.0.1.crt")
        .expect("the CA beside config.toml");
    assert_eq!(copied, crate::gitlab_server::test_ca_pem());
    let parsed: toml::Table = toml::from_str(&root.read(CONFIG).unwrap()).unwrap();
    let entry = parsed["runners"].as_array().unwrap()[0].as_table().unwrap();
    assert_eq!(
        entry["tls-ca-file"].as_str(),
        Some("/srv/gitlab-runner/certs/127.0.0.1.crt"),
        "no runner container in this profile: gitlab-runner runs on the host"
    );
}

/// Every string that must never leave config.toml (and the token files themselves).
fn scan_for(haystack: &str, tokens: &[&str], what: &str) {
    for token in tokens {
        assert!(
            !haystack.contains(token),
            "a token appears in {what}:\n{haystack}"
        );
    }
}

#[test]
fn no_token_appears_in_output_files_or_the_argv_of_any_program() {
    let root = Root::new();
    root.write("/proc/filesystems", "nodev\tsysfs\n")
        .write("/proc/modules", "");
    // Docker looks installed, so berth asks `docker`, runs `dockerd --validate` and
    // `systemctl restart docker`: every one of them is a logging stand-in.
    root.write(
        "/lib/systemd/system/docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
    );
    let bin = root.scratch("bin");
    let log = write_logging_stubs(
        &bin,
        &[
            "docker",
            "dockerd",
            "modprobe",
            "systemctl",
            "sh",
            "git",
            "gitlab-runner",
            "curl",
        ],
        "exit 0",
    );
    let gitlab = start_gitlab();
    let glrt_id = gitlab.add_runner(GLRT);
    gitlab.add_registration_token("GR1348941regtoken");
    gitlab.add_access_token("glpat-createRunnerScope", &[7]);
    token_file(&root, GLRT_TOKEN_FILE, GLRT);
    token_file(&root, "/etc/berth/tokens/registration", "GR1348941regtoken");
    token_file(&root, "/etc/berth/tokens/pat", "glpat-createRunnerScope");
    token_file(&root, "/etc/berth/tokens/bad", "glrt-RevokedTokenValue7");
    let profile_text = format!(
        "[kernel]\nmodules = [\"overlay\"]\n[docker]\nready_timeout = 1\n[docker.daemon]\nlog-driver = \"json-file\"\n\n{}\n[runners.legacy]\nurl = \"{url}\"\nregistration_token_file = \"/etc/berth/tokens/registration\"\nexecutor = \"shell\"\n\n[runners.made]\nurl = \"{url}\"\ncreate_token_file = \"/etc/berth/tokens/pat\"\nrunner_type = \"group_type\"\ngroup_id = 7\nexecutor = \"shell\"\n\n[runners.bad]\nurl = \"{url}\"\ntoken_file = \"/etc/berth/tokens/bad\"\nexecutor = \"shell\"\n",
        docker_runner(&gitlab),
        url = gitlab.url()
    );
    let profile = layer(&root, "site", &profile_text);
    let mut outputs = String::new();
    let mut go = |args: &[&str], profile: &Path| {
        for verbosity in [&[][..], &["-vv"][..]] {
            let run = command(&root, &gitlab, args, &[profile])
                .args(verbosity)
                .path_first(&bin)
                .run();
            outputs.push_str(&run.stdout);
            outputs.push_str(&run.stderr);
        }
    };
    go(&["plan"], &profile);
    go(&["plan", "--json"], &profile);
    go(&["apply"], &profile);
    go(&["apply", "--json"], &profile);
    go(&["validate"], &profile);
    // The runner rotates its token; the operator puts a new one in the token file.
    gitlab.rotate_token(glrt_id, "glrt-SecondTokenFromUi");
    token_file(&root, GLRT_TOKEN_FILE, "glrt-SecondTokenFromUi");
    go(&["plan"], &profile);
    go(&["apply", "--json"], &profile);
    // Then every runner leaves the profile.
    let empty = layer(
        &root,
        "empty",
        "[docker.daemon]\nlog-driver = \"json-file\"\n",
    );
    go(&["plan", "--json"], &empty);
    go(&["apply"], &empty);
    go(&["apply"], &empty);

    let issued: Vec<String> = gitlab
        .runners()
        .into_iter()
        .map(|runner| runner.token)
        .collect();
    let mut tokens = vec![
        GLRT,
        "glrt-SecondTokenFromUi",
        "GR1348941regtoken",
        "glpat-createRunnerScope",
        "glrt-RevokedTokenValue7",
        "glrtr-",
        "x9Qz7vKp2LmN8wRt",
    ];
    tokens.extend(issued.iter().map(String::as_str));
    assert!(
        gitlab.calls(REGISTER) == 1 && gitlab.calls(CREATE) == 1,
        "every flow ran"
    );
    assert!(gitlab.calls(DELETE) >= 2, "removal ran");
    assert!(
        outputs.contains("token invalid or revoked"),
        "the error path ran"
    );
    assert!(
        outputs.contains("POST http://[GITLAB]/api/v4/runners/verify"),
        "debug logging ran"
    );
    scan_for(&outputs, &tokens, "berth's output");

    for (path, contents) in root.snapshot() {
        let path = path.display().to_string();
        if path.starts_with("etc/berth/tokens/")
            || path == CONFIG.trim_start_matches('/')
            || path.starts_with("work/")
        {
            continue;
        }
        scan_for(
            &String::from_utf8_lossy(&contents),
            &tokens,
            &format!("`{path}`"),
        );
    }
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    // berth asks the daemon through its socket (issue 24), so the programs it runs here are
    // the restart command and modprobe: their argv is what is scanned.
    assert!(
        calls.contains("== systemctl restart docker"),
        "berth ran the stand-ins: {calls}"
    );
    assert!(calls.contains("== modprobe overlay"), "{calls}");
    scan_for(
        &calls,
        &tokens,
        "the argv or environment of a program berth ran",
    );
}

/// The issue's "done when": the embedded `dind` profile plus a runner applies from scratch
/// against the private dockerd and the GitLab stand-in; a second plan exits 0 and asks GitLab
/// nothing.
#[test]
fn dind_with_a_runner_applies_from_scratch_and_a_second_plan_asks_gitlab_nothing() {
    let root = Root::new();
    root.with_overlay_kernel();
    let dockerd = require_dockerd!(&root);
    let gitlab = start_gitlab();
    gitlab.add_runner(GLRT);
    token_file(&root, GLRT_TOKEN_FILE, GLRT);
    // Stand-ins for the registry images (no registry here); dind cannot be privileged here.
    dockerd.import_profile_images();
    let runner = layer(
        &root,
        "runner",
        &format!(
            "{}\n{}",
            docker_runner(&gitlab),
            unprivileged_layer(&["gitlab-dind"])
        ),
    );
    let daemon = dockerd.layer_file();
    let apply = command(
        &root,
        &gitlab,
        &["apply", "-p", "dind"],
        &[&daemon, &runner],
    )
    .docker(&dockerd)
    .run();
    apply.code(0);
    assert_eq!(gitlab.calls(VERIFY), 1);
    command(&root, &gitlab, &["-p", "dind"], &[&daemon, &runner])
        .docker(&dockerd)
        .converged();
    assert_eq!(
        gitlab.total_calls(),
        1,
        "the second plan made no GitLab call"
    );
    assert!(root.read(CONFIG).unwrap().contains("image = \"docker:27\""));
    // The runner container sees the file berth wrote through its bind-mounted directory.
    let seen = dockerd.docker([
        "exec",
        "gitlab-runner",
        "cat",
        "/etc/gitlab-runner/config.toml",
    ]);
    assert_eq!(seen, root.read(CONFIG).unwrap().trim_end());
}

/// `berth doctor` end to end on a converged host (issue 5): the dind daemon answers from inside
/// the runner container on the address in its DOCKER_HOST, and the runner's token verifies with
/// GitLab; each breaks the verdict when it stops being true.
#[test]
fn doctor_checks_dind_from_inside_the_runner_and_the_token_with_gitlab() {
    let root = Root::new();
    root.with_overlay_kernel();
    let dockerd = require_dockerd!(&root);
    dockerd.import_profile_images();
    let gitlab = start_gitlab();
    let id = gitlab.add_runner(GLRT);
    token_file(&root, GLRT_TOKEN_FILE, GLRT);
    let runner = layer(
        &root,
        "runner",
        &format!(
            "{}\n{}",
            docker_runner(&gitlab),
            unprivileged_layer(&["gitlab-dind"])
        ),
    );
    let daemon = dockerd.layer_file();
    let profiles = [daemon.as_path(), runner.as_path()];
    command(&root, &gitlab, &["apply", "-p", "dind"], &profiles)
        .docker(&dockerd)
        .run()
        .code(0);

    let doctor = || {
        command(
            &root,
            &gitlab,
            &["doctor", "--json", "-p", "dind"],
            &profiles,
        )
        .docker(&dockerd)
        .run()
    };
    let run = doctor();
    run.code(0);
    let dind = run.doctor_check("gitlab-runner → tcp://gitlab-dind:2375");
    assert_eq!(dind["verdict"], "ok", "{dind}");
    assert!(
        dind["detail"]
            .as_str()
            .unwrap()
            .contains("TCP connect to gitlab-dind:2375 (nc"),
        "{dind}"
    );
    let token = run.doctor_check("runner docker-runner");
    assert_eq!(token["verdict"], "ok", "{token}");
    assert_eq!(run.doctor_check("runner config")["verdict"], "ok");
    assert!(!run.stdout.contains(GLRT) && !run.stderr.contains(GLRT));

    // dind stops answering; GitLab no longer knows the token the runner has.
    dockerd.docker(["stop", "gitlab-dind"]);
    gitlab.rotate_token(id, "glrt-RotatedElsewhere0000");
    let run = doctor();
    run.code(1);
    let dind = run.doctor_check("gitlab-runner → tcp://gitlab-dind:2375");
    assert_eq!(dind["verdict"], "fail", "{dind}");
    let token = run.doctor_check("runner docker-runner");
    assert_eq!(token["verdict"], "fail", "{token}");
    assert!(
        token["detail"]
            .as_str()
            .unwrap()
            .contains("token invalid or revoked"),
        "{token}"
    );
    assert!(!run.stdout.contains(GLRT) && !run.stderr.contains(GLRT));
}

/// Issue 13, item 8: the S3 cache keys come from files named by `AccessKey_file` and
/// `SecretKey_file`: config.toml gets them, while plan, its diff, its JSON and apply show
/// `***`; a secret file others can read gets the token files' warning.
#[test]
fn s3_cache_keys_come_from_files_and_show_only_as_stars() {
    const ACCESS: &str = "AKIAFILEACCESS00001";
    const SECRET: &str = "s3cr3t/From+File";
    const ROTATED: &str = "r0tated/S3cret";
    let (root, gitlab, _runner_id, _) = glrt_host();
    token_file(&root, "/etc/berth/secrets/s3-access", ACCESS);
    token_file(&root, "/etc/berth/secrets/s3-secret", SECRET);
    let profile = layer(
        &root,
        "site",
        &format!(
            "{}[runners.docker-runner.cache]\nType = \"s3\"\n[runners.docker-runner.cache.s3]\nBucketName = \"ci-cache\"\nAccessKey_file = \"/etc/berth/secrets/s3-access\"\nSecretKey_file = \"/etc/berth/secrets/s3-secret\"\n",
            docker_runner(&gitlab)
        ),
    );
    let leaks = |run: &crate::harness::Run| {
        [ACCESS, SECRET, ROTATED]
            .iter()
            .any(|secret| run.stdout.contains(secret) || run.stderr.contains(secret))
    };

    let plan = run(&root, &gitlab, &["plan"], &[&profile]);
    plan.code(2);
    assert!(
        plan.stdout.contains("+[runners.cache.s3]\n")
            && plan.stdout.contains("+AccessKey = \"***\"\n")
            && plan.stdout.contains("+SecretKey = \"***\"\n"),
        "{}",
        plan.stdout
    );
    assert!(!leaks(&plan), "{}", plan.transcript());
    let json = run(&root, &gitlab, &["plan", "--json"], &[&profile]);
    assert!(!leaks(&json), "{}", json.stdout);

    let apply = run(&root, &gitlab, &["apply"], &[&profile]);
    apply.code(0);
    assert!(!leaks(&apply), "{}", apply.transcript());
    let config = root.read(CONFIG).unwrap();
    assert!(
        config.contains(&format!("AccessKey = \"{ACCESS}\""))
            && config.contains(&format!("SecretKey = \"{SECRET}\"")),
        "{config}"
    );
    run(&root, &gitlab, &["plan"], &[&profile]).code(0);

    // A rotated secret is a change of config.toml, shown as stars; a file others can read is
    // told like a token file.
    root.write("/etc/berth/secrets/s3-secret", &format!("{ROTATED}\n"));
    root.chmod("/etc/berth/secrets/s3-secret", 0o644);
    let plan = run(&root, &gitlab, &["plan"], &[&profile]);
    plan.code(2);
    assert!(
        plan.stdout.contains(
            "runner-config    ~ update    /srv/gitlab-runner/config.toml (a secret it holds changed)\n    runners.docker-runner.cache.s3.SecretKey: \"***\" → \"***\"\n"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stderr.contains("the runners.docker-runner.cache.s3.SecretKey_file `/etc/berth/secrets/s3-secret` is readable by other users (mode 0644); `chmod 600` it"),
        "{}",
        plan.stderr
    );
    assert!(!leaks(&plan), "{}", plan.transcript());
    run(&root, &gitlab, &["apply"], &[&profile]).code(0);
    assert!(
        root.read(CONFIG)
            .unwrap()
            .contains(&format!("SecretKey = \"{ROTATED}\""))
    );
}

const METRICS: &str = "/var/lib/node-exporter/berth.prom";
const MACHINE_ID: &str = "/etc/machine-id";

/// The `.runner_system_id` the host holds now.
fn system_id(root: &Root) -> String {
    root.read(SYSTEM_ID).expect("the system ID exists")
}

/// Issue 22: a host cloned from another (its machine ID changed under the root, the same
/// `.runner_system_id` copied along) makes a system ID of its own in one apply, without a
/// GitLab call, and the metrics show the new one; the ledger holds no machine ID.
#[test]
fn a_cloned_host_regenerates_its_system_id_and_the_metric_shows_it() {
    let (root, gitlab, _, profile) = glrt_host();
    root.write(MACHINE_ID, "0123456789abcdef0123456789abcdef\n");
    run(
        &root,
        &gitlab,
        &["apply", "--metrics-file", METRICS],
        &[&profile],
    )
    .code(0);
    let original = system_id(&root);
    let metrics = root.read(METRICS).unwrap();
    assert!(
        metrics.contains(&format!(
            "berth_runner_info{{runner=\"docker-runner\",system_id=\"{original}\"}} 1\n"
        )),
        "{metrics}"
    );
    let ledger_text = root.read(LEDGER).unwrap();
    assert!(
        !ledger_text.contains("0123456789abcdef0123456789abcdef"),
        "the ledger never holds the machine ID: {ledger_text}"
    );
    command(&root, &gitlab, &[], &[&profile]).converged();
    // A ledger an older berth wrote, without the machines: the next apply records them, and
    // changes nothing else.
    let mut older = ledger(&root);
    older.as_object_mut().unwrap().remove("system_ids").unwrap();
    root.write(LEDGER, &older.to_string());
    run(&root, &gitlab, &["apply"], &[&profile]).code(0);
    assert!(
        ledger(&root)["system_ids"].get(&original).is_some(),
        "{}",
        ledger(&root)
    );

    // The clone: another machine ID, the same system ID.
    root.write(MACHINE_ID, "fedcba9876543210fedcba9876543210\n");
    let verifies = gitlab.calls(VERIFY);
    let plan = run(&root, &gitlab, &["plan"], &[&profile]);
    plan.code(2);
    assert!(
        plan.stdout
            .contains("~ update    system-id  regenerate: made on another machine"),
        "{}",
        plan.transcript()
    );
    assert!(plan.stdout.contains(&original), "{}", plan.transcript());
    run(
        &root,
        &gitlab,
        &["apply", "--metrics-file", METRICS],
        &[&profile],
    )
    .code(0);
    let regenerated = system_id(&root);
    assert_ne!(regenerated, original);
    assert!(
        regenerated.starts_with("s_") && regenerated.len() == 14,
        "{regenerated}"
    );
    assert_eq!(root.mode(SYSTEM_ID), 0o600);
    assert_eq!(gitlab.calls(VERIFY), verifies, "no GitLab call");
    let recorded = &ledger(&root)["system_ids"];
    assert!(
        recorded.get(&regenerated).is_some() && recorded.get(&original).is_none(),
        "{recorded}"
    );
    let metrics = root.read(METRICS).unwrap();
    assert!(
        metrics.contains(&format!(
            "berth_runner_info{{runner=\"docker-runner\",system_id=\"{regenerated}\"}} 1\n"
        )) && !metrics.contains(&original),
        "{metrics}"
    );
    let status = run(&root, &gitlab, &["status"], &[]);
    assert!(
        status.stdout.contains(&format!(
            "runner:    docker-runner: system_id {regenerated}, "
        )),
        "{}",
        status.transcript()
    );
    let json = run(&root, &gitlab, &["status", "--json"], &[]).json();
    assert_eq!(
        json["last_run"]["runners"][0]["system_id"],
        serde_json::json!(regenerated)
    );
    command(&root, &gitlab, &[], &[&profile]).converged();
}

/// doctor's verdict and detail for the check `name`.
fn doctor_check(root: &Root, gitlab: &GitLab, profile: &Path, name: &str) -> (String, String) {
    let run = run(root, gitlab, &["doctor", "--json"], &[profile]);
    let check = run.doctor_check(name);
    let text = |key: &str| check[key].as_str().unwrap_or_default().to_owned();
    (
        text("verdict"),
        format!("{}; fix: {}", text("detail"), text("fix")),
    )
}

/// Issue 22: the `token_expires_at` GitLab's verify returned reaches status, the metrics and
/// doctor, which warns within a week and fails once the token has expired.
#[test]
fn a_token_expiry_reaches_status_metrics_and_doctor() {
    let root = Root::new();
    let gitlab = start_gitlab();
    let expires =
        jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 3 * 86_400 + 600)
            .unwrap();
    gitlab.add_runner_expiring(GLRT, Some(&expires.to_string()));
    token_file(&root, GLRT_TOKEN_FILE, GLRT);
    let profile = layer(&root, "site", &docker_runner(&gitlab));
    run(
        &root,
        &gitlab,
        &["apply", "--metrics-file", METRICS],
        &[&profile],
    )
    .code(0);

    let metrics = root.read(METRICS).unwrap();
    assert!(
        metrics.contains(&format!(
            "berth_runner_token_expiry_timestamp_seconds{{runner=\"docker-runner\"}} {}\n",
            expires.as_second()
        )),
        "{metrics}"
    );
    let status = run(&root, &gitlab, &["status"], &[]);
    assert!(
        status.stdout.contains("token expires ") && status.stdout.contains("(in 3 days)"),
        "{}",
        status.transcript()
    );
    let json = run(&root, &gitlab, &["status", "--json"], &[]).json();
    assert_eq!(
        json["last_run"]["runners"][0]["token_expires_at"],
        serde_json::json!(expires.to_string())
    );
    let (verdict, detail) = doctor_check(
        &root,
        &gitlab,
        &profile,
        "runner docker-runner token expiry",
    );
    assert_eq!(verdict, "warn", "{detail}");
    assert!(
        detail.contains("in 3 days") && detail.contains("token file"),
        "{detail}"
    );

    // Time passes: the token in config.toml is now past its expiry.
    let config = root.read(CONFIG).unwrap();
    let expired = config.replace(
        &format!("token_expires_at = {expires}"),
        "token_expires_at = 2020-01-01T00:00:00Z",
    );
    assert_ne!(expired, config, "{config}");
    root.write(CONFIG, &expired);
    let (verdict, detail) = doctor_check(
        &root,
        &gitlab,
        &profile,
        "runner docker-runner token expiry",
    );
    assert_eq!(verdict, "fail", "{detail}");
    assert!(
        detail.contains("expired at 2020-01-01T00:00:00Z") && detail.contains("takes no jobs"),
        "{detail}"
    );
}
