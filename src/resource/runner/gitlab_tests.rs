//! Tests of the GitLab client: answers read, secrets scrubbed, retries bounded.

use super::*;

#[test]
fn registration_details_are_read_and_a_verified_token_is_kept() {
    let details = registration(
        r#"{"id":12345,"token":"glrt-6337ff461c94fd3fa32ba3b1ff4125","token_expires_at":"2021-09-27T21:05:03.203Z"}"#,
        None,
    )
    .unwrap();
    assert_eq!(details.id, 12345);
    assert_eq!(
        details.token.expose(),
        "glrt-6337ff461c94fd3fa32ba3b1ff4125"
    );
    assert_eq!(
        details.token_expires_at.as_deref(),
        Some("2021-09-27T21:05:03.203Z")
    );
    let given = Secret::new("glrt-given");
    let verified = registration(
        r#"{"id":9,"token":"glrt-other","token_expires_at":null}"#,
        Some(&given),
    )
    .unwrap();
    assert_eq!(verified.token, given);
    assert_eq!(verified.token_expires_at, None);
    assert!(registration(r#"{"id":0}"#, Some(&given)).is_err());
    assert!(registration("200", Some(&given)).is_err());
}

#[test]
fn gitlab_messages_are_read_in_each_shape() {
    assert_eq!(
        gitlab_message(r#"{"message":"403 Forbidden"}"#).as_deref(),
        Some("403 Forbidden")
    );
    assert_eq!(
        gitlab_message(r#"{"message":{"tag_list":["is too long"]}}"#).as_deref(),
        Some(r#"{"tag_list":["is too long"]}"#)
    );
    assert_eq!(
        gitlab_message(r#"{"error":"runner_type is missing"}"#).as_deref(),
        Some("runner_type is missing")
    );
    assert_eq!(gitlab_message("<html>"), None);
}

#[test]
fn the_base_url_is_built_the_way_gitlab_runner_builds_it() {
    let host = Host::new("/");
    for url in [
        "http://g.example",
        "http://g.example/",
        "http://g.example/ci",
    ] {
        assert_eq!(
            GitLab::new(&host, url, None).unwrap().base,
            "http://g.example/api/v4/"
        );
    }
}

#[test]
fn a_ca_file_must_hold_a_certificate() {
    let root = tempfile::tempdir().unwrap();
    let host = Host::new(root.path());
    std::fs::write(root.path().join("ca.pem"), "not a certificate\n").unwrap();
    let error = read_ca_file(&host, &crate::host::host_path("/ca.pem")).unwrap_err();
    assert!(
        format!("{error:#}").contains("holds no PEM certificate"),
        "{error:#}"
    );
    let error = read_ca_file(&host, &crate::host::host_path("/missing.pem")).unwrap_err();
    assert!(
        format!("{error:#}").contains("failed to read `tls_ca_file` `/missing.pem`"),
        "{error:#}"
    );
}

/// Issue 12, item 6: GitLab's Retry-After is honoured within a bound.
#[test]
fn retry_after_is_honoured_within_the_bound() {
    let backoff = Duration::from_millis(250);
    assert_eq!(
        rate_limit_wait(Some("60"), Duration::ZERO, backoff),
        Ok(Duration::from_secs(60))
    );
    assert_eq!(rate_limit_wait(None, Duration::ZERO, backoff), Ok(backoff));
    assert_eq!(
        rate_limit_wait(Some("soon"), Duration::ZERO, backoff),
        Ok(backoff)
    );
    let error = rate_limit_wait(Some("60"), Duration::from_secs(90), backoff).unwrap_err();
    assert!(
        error.starts_with("GitLab asks to retry after 60 s (Retry-After), more than berth waits in one run (120 s in all)"),
        "{error}"
    );
    assert!(rate_limit_wait(Some("3600"), Duration::ZERO, backoff).is_err());
}

/// Issue 12, item 5: gitlab-runner's name and the version its image names.
#[test]
fn the_runner_info_names_gitlab_runner_and_its_image_version() {
    for (image, version) in [
        ("gitlab/gitlab-runner:v17.11.0", Some("17.11.0")),
        ("gitlab/gitlab-runner:alpine-v17.11.0", Some("17.11.0")),
        (
            "registry.example:5000/gitlab-runner:ubuntu-v18.2.1@sha256:abc",
            Some("18.2.1"),
        ),
        ("gitlab/gitlab-runner:latest", None),
        ("gitlab/gitlab-runner", None),
        ("registry.example:5000/gitlab-runner", None),
    ] {
        assert_eq!(runner_version(image).as_deref(), version, "{image}");
    }
    let info = RunnerInfo {
        version: Some("17.11.0".into()),
        executor: Some("docker".into()),
        shell: None,
    }
    .to_json();
    assert_eq!(info["name"], "gitlab-runner");
    assert_eq!(info["version"], "17.11.0");
    assert_eq!(info["executor"], "docker");
    assert_eq!(info["features"]["cancel_gracefully"], true);
    assert!(info.get("shell").is_none());
}

#[test]
fn an_orphaned_403_is_not_a_revoked_token() {
    let orphan = Answer {
        status: 403,
        body: r#"{"message":"403 Forbidden - Runner is orphaned"}"#.into(),
        location: None,
    };
    assert!(orphaned(&orphan));
    let revoked = Answer {
        status: 403,
        body: r#"{"message":"403 Forbidden"}"#.into(),
        location: None,
    };
    assert!(!orphaned(&revoked));
}

#[test]
fn connection_refused_is_known_to_be_unsent() {
    let refused = ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
    assert!(never_sent(&refused));
    let reset = ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    assert!(!never_sent(&reset));
    assert!(retryable(&reset));
}
