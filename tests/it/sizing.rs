//! gitlab-runner sized to the host and judged as it judges itself (issue 22): `concurrent =
//! "auto"` from the CPUs and memory the root's `proc/cpuinfo` and `proc/meminfo` give (the test
//! seam `host::facts` documents), the long polling warnings gitlab-runner prints at start,
//! feature flags checked against the runner version, the helper image's registry, and the log
//! options a daemon.json change does not reach.

use std::path::Path;

use crate::{
    gitlab_server::GitLab,
    harness::{Root, berth, profile_file, start_gitlab},
    require_dockerd,
};

const CONFIG: &str = "/srv/gitlab-runner/config.toml";
const GLRT: &str = "glrt-Sz4vQx8Lp2Wn7Rt5Yb1M";
const TOKEN_FILE: &str = "/etc/berth/tokens/sized";

fn host(profile: &str) -> (Root, GitLab, std::path::PathBuf) {
    let root = Root::new();
    let gitlab = start_gitlab();
    gitlab.add_runner(GLRT);
    root.write(TOKEN_FILE, &format!("{GLRT}\n"));
    root.chmod(TOKEN_FILE, 0o600);
    let text = profile.replace("GITLAB", &gitlab.url());
    let layer = profile_file(&root.join("/work"), "site", &text);
    (root, gitlab, layer)
}

fn run(root: &Root, gitlab: &GitLab, args: &[&str], layer: &Path) -> crate::harness::Run {
    let address = gitlab.url().split("://").nth(1).unwrap().to_owned();
    berth(root)
        .filter(address, "[GITLAB]")
        .args(args)
        .args([std::ffi::OsStr::new("-p"), layer.as_os_str()])
        .run()
}

fn concurrent(root: &Root) -> i64 {
    let parsed: toml::Table = toml::from_str(&root.read(CONFIG).unwrap()).unwrap();
    parsed["concurrent"].as_integer().unwrap()
}

#[test]
fn auto_concurrent_is_sized_to_the_hosts_cpus_and_memory_and_follows_it() {
    let (root, gitlab, layer) = host(&format!(
        r#"[runner]
config     = "{CONFIG}"
concurrent = "auto"

[runners.sized]
url                 = "GITLAB"
token_file          = "{TOKEN_FILE}"
executor            = "shell"
request_concurrency = 2
limit               = "auto"
"#
    ));
    root.with_machine(8, 32);
    let plan = run(&root, &gitlab, &["plan"], &layer);
    plan.code(2);
    assert!(
        plan.stdout.contains(
            "/srv/gitlab-runner/config.toml (concurrent = 8 (auto: 8 CPUs, 32.0 GiB memory), runners.sized.limit = 8 (auto: 8 shared by 1 runner))"
        ),
        "{}",
        plan.stdout
    );
    run(&root, &gitlab, &["apply"], &layer).code(0);
    assert_eq!(concurrent(&root), 8);
    let parsed: toml::Table = toml::from_str(&root.read(CONFIG).unwrap()).unwrap();
    let entry = parsed["runners"].as_array().unwrap()[0].as_table().unwrap();
    assert_eq!(
        entry["limit"].as_integer(),
        Some(8),
        "the one auto runner takes it all"
    );

    // The same facts: nothing to do.
    let again = run(&root, &gitlab, &["plan"], &layer);
    again.code(0);
    assert_eq!(again.stdout, "No changes: the host matches the profile.\n");

    // Less memory than the CPUs need: memory / 2 GiB decides, and the plan says why.
    root.with_machine(8, 6);
    let smaller = run(&root, &gitlab, &["plan"], &layer);
    smaller.code(2);
    assert!(
        smaller
            .stdout
            .contains("concurrent = 3 (auto: 8 CPUs, 6.0 GiB memory)"),
        "{}",
        smaller.stdout
    );
    run(&root, &gitlab, &["apply"], &layer).code(0);
    assert_eq!(concurrent(&root), 3);

    // A root that gives no facts: the run says which file it read them from.
    std::fs::remove_file(root.join("/proc/meminfo")).unwrap();
    let blind = run(&root, &gitlab, &["plan"], &layer);
    blind.code(1);
    assert!(
        blind.stderr.contains("proc/meminfo` is missing"),
        "{}",
        blind.stderr
    );
}

#[test]
fn validate_warns_as_gitlab_runner_would_with_file_line_key_and_the_doc() {
    let (root, gitlab, layer) = host(&format!(
        r#"[runner]
config     = "{CONFIG}"
concurrent = 1

[runners.first]
url                 = "GITLAB"
token_file          = "{TOKEN_FILE}"
executor            = "shell"
request_concurrency = 1
limit               = 2

[runners.second]
url        = "GITLAB"
token_file = "{TOKEN_FILE}"
executor   = "shell"
[runners.second.feature_flags]
FF_SKIP_NOOP_BUILD_STAGES = true
FF_NETWORK_PER_BUIDL      = true
"#
    ));
    let validate = run(&root, &gitlab, &["validate"], &layer);
    validate.code(0);
    let out = validate.stdout.replace("[ROOT]/work", "[WORK]");
    for expected in [
        "warning: [WORK]/site.toml:3:1: key `runner.concurrent`: gitlab-runner warns at start, \"CONFIGURATION: Long polling issues detected\": \"Worker starvation bottleneck: 'concurrent' setting (1) is less than number of runners (2)\"; it recommends: \"Increase 'concurrent' to at least 3 (current: 1)\" (see https://docs.gitlab.com/runner/configuration/advanced-configuration.html#long-polling-issues)",
        "warning: [WORK]/site.toml:9:1: key `runners.first.request_concurrency`: gitlab-runner warns at start, \"CONFIGURATION: Long polling issues detected\": \"Request bottleneck: 1 runners have request_concurrency=1, causing job delays during long polling\"",
        "warning: [WORK]/site.toml:10:1: key `runners.first.limit`: gitlab-runner warns at start, \"CONFIGURATION: Long polling issues detected\": \"Build limit bottleneck: 1 runners have low 'limit' settings (≤2) with request_concurrency=1\"",
        "warning: [WORK]/site.toml:17:1: key `runners.second.feature_flags.FF_SKIP_NOOP_BUILD_STAGES`: `FF_SKIP_NOOP_BUILD_STAGES` was removed in gitlab-runner 19.3: gitlab-runner (berth knows its flags up to 19.3) ignores it",
        "warning: [WORK]/site.toml:18:1: key `runners.second.feature_flags.FF_NETWORK_PER_BUIDL`: `FF_NETWORK_PER_BUIDL` is not a feature flag of gitlab-runner (berth knows its flags up to 19.3): gitlab-runner ignores an unknown flag; did you mean `FF_NETWORK_PER_BUILD`?",
    ] {
        assert!(
            out.contains(expected),
            "missing: {expected}\n--- stdout\n{out}"
        );
    }
}

/// Issue 22, item 6: daemon.json's mirrors mirror Docker Hub only, so a docker runner without
/// `helper_image` still pulls its helper from registry.gitlab.com; validate and doctor say so,
/// with the tag form to pin, and say nothing once it is pinned.
#[test]
fn a_mirrored_host_is_told_its_helper_image_still_comes_from_gitlab() {
    let profile = |helper: &str| {
        format!(
            r#"registry_mirrors = ["https://mirror.example.com"]

[runners.jobs]
url        = "GITLAB"
token_file = "{TOKEN_FILE}"
executor   = "docker"
[runners.jobs.docker]
image      = "alpine:3"
{helper}
"#
        )
    };
    let (root, gitlab, layer) = host(&profile(""));
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    };
    let expected = format!(
        "warning: [ROOT]/work/site.toml:3:10: key `runners.jobs`: the helper image still comes from registry.gitlab.com: daemon.json's `registry-mirrors` (https://mirror.example.com) mirror Docker Hub only, and runner `jobs` sets no `helper_image`; copy the helper there and pin it, `[runners.jobs.docker] helper_image = \"REGISTRY/gitlab-org/gitlab-runner/gitlab-runner-helper:{arch}-v${{CI_RUNNER_VERSION}}\"` (see https://docs.gitlab.com/runner/configuration/advanced-configuration.html#override-the-helper-image)"
    );
    let validate = run(&root, &gitlab, &["validate"], &layer);
    validate.code(0);
    assert!(validate.stdout.contains(&expected), "{}", validate.stdout);

    let doctor = run(&root, &gitlab, &["doctor", "--json"], &layer);
    let check = doctor.doctor_check("helper image");
    assert_eq!(check["verdict"], "warn", "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("gitlab-runner-helper:"),
        "{check}"
    );

    // Pinned: nothing to say.
    let pinned = profile_file(
        &root.join("/work"),
        "site",
        &profile(r#"helper_image = "registry.example.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v${CI_RUNNER_VERSION}""#)
            .replace("GITLAB", &gitlab.url()),
    );
    let validate = run(&root, &gitlab, &["validate"], &pinned);
    validate.code(0);
    assert!(
        !validate.stdout.contains("helper image"),
        "{}",
        validate.stdout
    );
}

/// Issue 22, item 7: Docker applies daemon.json's `log-opts` when it creates a container, so a
/// change reaches new containers only; the plan names the running ones that keep the old.
#[test]
fn a_log_opts_change_names_the_running_containers_that_keep_the_old_options() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_busybox_with(
        "berth-test/logs:1",
        &[r#"CMD ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]"#],
    );
    let profile = |size: &str| {
        profile_file(
            &root.join("/work"),
            &format!("logs-{size}"),
            &format!(
                "[docker.daemon.log-opts]\nmax-size = \"{size}\"\n\n[containers.berth-test-logs]\nimage = \"berth-test/logs:1\"\n"
            ),
        )
    };
    let with = |layer: &Path, command: &str| {
        berth(&root)
            .docker(&dockerd)
            .args([
                "-p".as_ref(),
                dockerd.layer_file().as_os_str(),
                "-p".as_ref(),
                layer.as_os_str(),
                command.as_ref(),
            ])
            .run()
    };
    let small = profile("10m");
    with(&small, "apply").code(0);
    let logs = dockerd.docker([
        "inspect",
        "--format",
        "{{json .HostConfig.LogConfig.Config}}",
        "berth-test-logs",
    ]);
    assert_eq!(logs.trim(), r#"{"max-size":"10m"}"#);

    let bigger = profile("50m");
    let plan = with(&bigger, "plan");
    plan.code(2);
    assert!(
        plan.transcript().contains(
            "log-opts reach new containers only (Docker applies them when it creates one); running: berth-test-logs keep max-size=10m"
        ),
        "{}",
        plan.transcript()
    );
    // Unchanged log options: nothing to plan, nothing to say.
    let again = with(&small, "plan");
    again.code(0);
    assert!(
        !again.transcript().contains("log-opts reach"),
        "{}",
        again.transcript()
    );
}
