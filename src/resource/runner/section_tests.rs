//! Tests of the `[runner]` and `[runners.NAME]` sections: what is taken, checked and refused.

use super::*;
use crate::profile::source::TomlFile;

fn resolved(text: &str) -> Result<(RunnerSettings, Vec<String>), String> {
    let source = TomlFile::new("p.toml", text);
    let mut table: toml::Table = toml::from_str(text).unwrap();
    let runner = table.remove("runner").and_then(|v| v.as_table().cloned());
    let runners = table.remove("runners").and_then(|v| v.as_table().cloned());
    let mut problems = Problems::default();
    let (settings, warnings) = resolve(
        runner,
        runners,
        None,
        &Layers::new(std::slice::from_ref(&source)),
        &mut problems,
    );
    problems.into_result(()).map_err(|error| {
        error
            .problems()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok((
        settings,
        warnings.into_iter().map(|(_, warning)| warning).collect(),
    ))
}

const GLRT: &str = "[runners.r]\nurl = \"https://gitlab.example.com\"\ntoken_file = \"/etc/berth/tokens/r\"\nexecutor = \"docker\"\n";

#[test]
fn own_keys_are_taken_and_the_rest_passes_through_in_order() {
    let (settings, warnings) = resolved(&format!(
        "[runner]\nconcurrent = 4\nlog_level = \"info\"\n[runner.session_server]\nsession_timeout = 1800\n{GLRT}limit = 2\n[runners.r.docker]\nimage = \"docker:27\"\nvolumes = [\"/cache\"]\n[runners.r.cache]\nType = \"s3\"\n"
    ))
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(settings.config, host_path(DEFAULT_CONFIG));
    assert_eq!(
        settings.globals.keys().collect::<Vec<_>>(),
        ["concurrent", "log_level", "session_server"]
    );
    let runner = &settings.runners[0];
    assert_eq!(runner.name, "r");
    assert_eq!(
        runner.token,
        TokenSource::Authentication {
            file: host_path("/etc/berth/tokens/r")
        }
    );
    assert_eq!(
        runner.settings.keys().collect::<Vec<_>>(),
        ["executor", "limit", "docker", "cache"]
    );
}

#[test]
fn fields_the_runner_writes_cannot_be_declared() {
    let error = resolved(&format!("{GLRT}token = \"glrt-x\"\n")).unwrap_err();
    assert!(
        error.starts_with("p.toml:5:1: key `runners.r.token`: `token` is written by gitlab-runner"),
        "{error}"
    );
}

#[test]
fn exactly_one_token_source() {
    let error =
        resolved("[runners.r]\nurl = \"https://g.example\"\nexecutor = \"shell\"\n").unwrap_err();
    assert!(error.contains("needs one of `token_file`"), "{error}");
    let error = resolved(&format!("{GLRT}create_token_file = \"/x\"\n")).unwrap_err();
    assert!(error.contains("takes only one of"), "{error}");
}

#[test]
fn server_settings_are_refused_with_a_glrt_token() {
    let error = resolved(&format!("{GLRT}tag_list = [\"docker\"]\n")).unwrap_err();
    assert!(
        error.contains("key `runners.r.tag_list`: `tag_list` is set in GitLab"),
        "{error}"
    );
}

#[test]
fn registration_tokens_warn_that_they_are_deprecated() {
    let (settings, warnings) = resolved(
        "[runners.r]\nurl = \"https://g.example\"\nregistration_token_file = \"/etc/t\"\nexecutor = \"shell\"\ntag_list = [\"a\", \"b\"]\nlocked = false\n",
    )
    .unwrap();
    assert!(
        warnings[0].contains("deprecated since GitLab 15.6"),
        "{warnings:?}"
    );
    let TokenSource::Registration { params, .. } = &settings.runners[0].token else {
        panic!("registration flow");
    };
    assert_eq!(
        params.tag_list.as_deref(),
        Some(&["a".to_owned(), "b".to_owned()][..])
    );
    assert_eq!(params.locked, Some(false));
    assert_eq!(
        settings.runners[0].settings.keys().collect::<Vec<_>>(),
        ["executor"]
    );
}

#[test]
fn create_needs_a_scope_that_fits_its_type() {
    let base = "[runners.r]\nurl = \"https://g.example\"\ncreate_token_file = \"/etc/t\"\nexecutor = \"shell\"\n";
    let (settings, _) = resolved(&format!(
        "{base}runner_type = \"group_type\"\ngroup_id = 7\n"
    ))
    .unwrap();
    let TokenSource::Create { scope, .. } = &settings.runners[0].token else {
        panic!("create flow");
    };
    assert_eq!(scope, &RunnerScope::Group(7));
    let error = resolved(&format!("{base}runner_type = \"project_type\"\n")).unwrap_err();
    assert!(error.contains("project_type needs `project_id`"), "{error}");
    let error = resolved(base).unwrap_err();
    assert!(error.contains("needs `runner_type`"), "{error}");
}

#[test]
fn known_values_are_checked_where_they_are_set() {
    let error = resolved(
        "[runners.r]\nurl = \"https://g.example\"\ntoken_file = \"/t\"\nexecutor = \"dokker\"\n",
    )
    .unwrap_err();
    assert!(
        error.starts_with(
            "p.toml:4:1: key `runners.r.executor`: `dokker` is not a gitlab-runner executor"
        ),
        "{error}"
    );
    let error = resolved(&format!("{GLRT}[runners.r.cache]\ntype = \"s3\"\n")).unwrap_err();
    assert!(
        error.contains(
            "key `runners.r.cache.type`: gitlab-runner spells this key `Type` and ignores `type`"
        ),
        "{error}"
    );
    let error = resolved(&format!("{GLRT}[runners.r.cache.s3]\nbucketname = \"b\"\n")).unwrap_err();
    assert!(error.contains("spells this key `BucketName`"), "{error}");
    let error = resolved(&format!(
        "{GLRT}[runners.r.docker]\npull_policy = \"sometimes\"\n"
    ))
    .unwrap_err();
    assert!(
        error.contains("key `runners.r.docker.pull_policy`"),
        "{error}"
    );
    let error = resolved(
        "[runners.r]\nurl = \"gitlab.example.com\"\ntoken_file = \"/t\"\nexecutor = \"shell\"\n",
    )
    .unwrap_err();
    assert!(error.contains("is not an http(s) URL"), "{error}");
    let error = resolved("[runner]\nconcurrent = 0\n").unwrap_err();
    assert!(error.contains("key `runner.concurrent`"), "{error}");
}

/// Issue 12, minor items: `trace` is a gitlab-runner log level; GitLab refuses a
/// `maximum_timeout` under 600 with a 400, so it is caught at load.
#[test]
fn trace_logs_and_a_short_maximum_timeout_is_caught_at_load() {
    let (settings, _) = resolved("[runner]\nlog_level = \"trace\"\n").unwrap();
    assert_eq!(settings.globals["log_level"].as_str(), Some("trace"));
    let registering = "[runners.r]\nurl = \"https://g.example\"\nregistration_token_file = \"/t\"\nexecutor = \"shell\"\n";
    let error = resolved(&format!("{registering}maximum_timeout = 300\n")).unwrap_err();
    assert!(
        error.contains(
            "key `runners.r.maximum_timeout`: 300 is below GitLab's minimum of 600 seconds"
        ),
        "{error}"
    );
    let (settings, _) = resolved(&format!("{registering}maximum_timeout = 600\n")).unwrap();
    let TokenSource::Registration { params, .. } = &settings.runners[0].token else {
        panic!("a registration token");
    };
    assert_eq!(params.maximum_timeout, Some(600));
}

/// Issue 12, item 4: gitlab-runner 17.11 registers the `s3v2` and `gcsv2` cache adapters
/// (`cache/s3v2/adapter.go`, `cache/gcsv2/adapter.go`).
#[test]
fn every_cache_type_of_gitlab_runner_is_taken() {
    for kind in ["s3", "s3v2", "gcs", "gcsv2", "azure"] {
        resolved(&format!("{GLRT}[runners.r.cache]\nType = \"{kind}\"\n"))
            .unwrap_or_else(|error| panic!("{kind}: {error}"));
    }
    let error = resolved(&format!("{GLRT}[runners.r.cache]\nType = \"s4\"\n")).unwrap_err();
    assert!(
        error.contains("must be one of s3, s3v2, gcs, gcsv2, azure"),
        "{error}"
    );
}

#[test]
fn unknown_keys_pass_through_with_a_warning_and_a_hint() {
    let (settings, warnings) = resolved(&format!("{GLRT}delete_on_remve = true\n")).unwrap();
    assert!(settings.runners[0].settings.contains_key("delete_on_remve"));
    assert!(
        warnings[0].contains("did you mean berth's `delete_on_remove`?"),
        "{warnings:?}"
    );
}

#[test]
fn urls_compare_the_way_gitlab_runner_calls_them() {
    assert_eq!(normalize_url("https://g.example/"), "https://g.example");
    assert_eq!(normalize_url("https://g.example/ci"), "https://g.example");
    assert_eq!(
        normalize_url("https://g.example/gitlab/ci/"),
        "https://g.example/gitlab"
    );
}

#[test]
fn a_plain_http_url_warns_unless_it_stays_on_this_host() {
    // Issue 18: the token travels in every request to GitLab.
    for (url, warns) in [
        ("http://gitlab.example.com", true),
        ("http://10.0.0.5:8080/", true),
        ("https://gitlab.example.com", false),
        ("http://127.0.0.1:8080", false),
        ("http://localhost/", false),
        ("http://[::1]:80", false),
    ] {
        let (_, warnings) = resolved(&GLRT.replace("https://gitlab.example.com", url)).unwrap();
        assert_eq!(
            warnings.iter().any(|warning| warning == CLEAR_TEXT_URL),
            warns,
            "{url}: {warnings:?}"
        );
    }
}

/// Issue 22: "auto" is taken out of what goes to config.toml as it is, and remembered for
/// `runner-config` to size on the host.
#[test]
fn auto_concurrent_and_limits_are_taken_for_sizing() {
    let (settings, warnings) = resolved(&format!(
        "[runner]\nconcurrent = \"auto\"\n{GLRT}limit = \"auto\"\nrequest_concurrency = 2\n[runners.fixed]\nurl = \"https://gitlab.example.com\"\ntoken_file = \"/etc/berth/tokens/f\"\nexecutor = \"shell\"\nlimit = 3\nrequest_concurrency = 2\n"
    ))
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(!settings.globals.contains_key("concurrent"));
    assert!(!settings.runners[0].settings.contains_key("limit"));
    assert_eq!(
        settings.sizing,
        Sizing {
            concurrent: true,
            fixed_concurrent: None,
            auto_limits: vec!["r".into()],
            fixed_limits: 3,
        }
    );
    let error = resolved("[runner]\nconcurrent = \"lots\"\n").unwrap_err();
    assert!(error.contains("or \"auto\" (sized to the host)"), "{error}");
}

/// Issue 22: keys up to gitlab-runner 19.3 are known and their shapes checked.
#[test]
fn keys_up_to_nineteen_three_validate_in_their_sections() {
    let (_, warnings) = resolved(&format!(
        "[runner]\nconnection_max_age = \"15m\"\n{GLRT}prepare_timeout = \"1h30m\"\nget_sources_timeout = \"90s\"\n[runners.r.docker]\nservices_limit = 2\nallowed_privileged_images = [\"docker:*-dind\"]\nallowed_privileged_services = [\"docker:*-dind\"]\n[[runners.r.docker.services]]\nname = \"postgres:16\"\nalias = \"db\"\n"
    ))
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    for (bad, expected) in [
        ("prepare_timeout = \"ten minutes\"\n", "must be a duration"),
        (
            "[runners.r.docker]\nallowed_privileged_images = \"docker\"\n",
            "must be a list of strings",
        ),
        (
            "[[runners.r.docker.services]]\nalias = \"db\"\n",
            "each with the image as `name`",
        ),
        (
            "[runners.r.feature_flags]\nFF_NETWORK_PER_BUILD = \"yes\"\n",
            "key `runners.r.feature_flags.FF_NETWORK_PER_BUILD`: must be true or false",
        ),
    ] {
        let error = resolved(&format!("{GLRT}{bad}")).unwrap_err();
        assert!(error.contains(expected), "{bad}: {error}");
    }
    let error = resolved("[runner]\nconnection_max_age = \"forever\"\n").unwrap_err();
    assert!(error.contains("must be a duration"), "{error}");
}
