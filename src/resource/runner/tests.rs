//! Table tests for `runner/NAME`'s decisions: what is registered, verified, adopted,
//! recorded, unregistered or refused, from the observed state alone.

use super::*;
use crate::host::host_path;
use section::ServerParams;

const URL: &str = "https://gitlab.example.com";

fn spec(token: TokenSource) -> RunnerSpec {
    RunnerSpec {
        name: "r".into(),
        url: URL.into(),
        token,
        tls_ca_file: None,
        delete_on_remove: false,
        settings: toml::Table::new(),
        runner_image: None,
        secret_files: Vec::new(),
    }
}

fn glrt() -> TokenSource {
    TokenSource::Authentication {
        file: host_path("/etc/berth/tokens/r"),
    }
}

fn legacy() -> TokenSource {
    TokenSource::Registration {
        file: host_path("/etc/berth/tokens/reg"),
        params: ServerParams::default(),
    }
}

fn runner(token: TokenSource) -> Runner {
    Runner::declared(&RunnerSettings::default(), &spec(token))
}

fn removed_runner() -> Runner {
    Runner {
        name: "r".into(),
        config: host_path(crate::resource::runner::section::DEFAULT_CONFIG),
        role: Role::Removed,
    }
}

fn recorded(source: Origin, token: &str) -> Recorded {
    Recorded {
        url: URL.into(),
        id: 18,
        source,
        token_fingerprint: Fingerprint::of(token),
        config: host_path(crate::resource::runner::section::DEFAULT_CONFIG),
        delete_on_remove: false,
        tls_ca_file: None,
    }
}

fn entry(token: &str) -> RunnerEntry {
    RunnerEntry {
        url: Some(format!("{URL}/")),
        id: Some(18),
        token: Some(Secret::new(token)),
    }
}

fn state(
    entry: Option<RunnerEntry>,
    recorded: Option<Recorded>,
    file_token: Option<&str>,
) -> RunnerState {
    RunnerState {
        unreadable: None,
        entry,
        recorded,
        token: file_token.map_or(TokenFile::Missing, |token| TokenFile::Present {
            token: Secret::new(token),
            mode: 0o600,
        }),
        system_id: Some("s_0123456789ab".into()),
        pending: None,
        copied_system_id: None,
    }
}

#[test]
fn a_glrt_token_is_verified_once_and_then_in_sync() {
    let runner = runner(glrt());
    assert!(matches!(
        runner.decide(&state(None, None, Some("glrt-a"))),
        Decision::Do(RunnerOp::Verify {
            changed_from: None,
            ..
        })
    ));
    let registered = state(
        Some(entry("glrt-a")),
        Some(recorded(Origin::Verified, "glrt-a")),
        Some("glrt-a"),
    );
    assert_eq!(runner.decide(&registered), Decision::InSync);
    assert!(
        runner
            .diff(&registered, &Earlier::default())
            .changes
            .is_empty()
    );
}

/// Issue 22: a system ID berth recorded on another machine (a cloned image) is made anew,
/// and only once the registration is otherwise in sync; the runner container restarts for it.
#[test]
fn a_system_id_made_on_another_machine_is_regenerated() {
    let runner = runner(glrt());
    let mut cloned = state(
        Some(entry("glrt-a")),
        Some(recorded(Origin::Verified, "glrt-a")),
        Some("glrt-a"),
    );
    cloned.copied_system_id = Some("s_0123456789ab".into());
    let diff = runner.diff(&cloned, &Earlier::default());
    let [(change, Some(op))] = diff.changes.as_slice() else {
        panic!("{:?}", diff.changes)
    };
    assert_eq!(
        op,
        &RunnerOp::RegenerateSystemId {
            system_id: "s_0123456789ab".into()
        }
    );
    assert_eq!(change.action, Action::Update);
    assert_eq!(
        change.detail,
        "system-id  regenerate: made on another machine"
    );
    assert!(change.warnings[0].contains("s_0123456789ab"), "{change:?}");
    assert_eq!(
        runner.made(op),
        vec![Made::ReadAtStart(vec![".runner_system_id".into()])]
    );
    // Not yet registered: the registration comes first; gitlab-runner reads the ID after.
    let mut unregistered = state(None, None, Some("glrt-a"));
    unregistered.copied_system_id = Some("s_0123456789ab".into());
    assert!(matches!(
        runner.decide(&unregistered),
        Decision::Do(RunnerOp::Verify { .. })
    ));
}

#[test]
fn a_token_the_runner_rotated_itself_is_in_sync() {
    let runner = runner(glrt());
    let rotated = state(
        Some(entry("glrt-rotated")),
        Some(recorded(Origin::Verified, "glrt-a")),
        Some("glrt-a"),
    );
    assert_eq!(runner.decide(&rotated), Decision::InSync);
}

#[test]
fn a_new_token_in_the_file_is_an_update_shown_by_fingerprint() {
    let runner = runner(glrt());
    let observed = state(
        Some(entry("glrt-a")),
        Some(recorded(Origin::Verified, "glrt-a")),
        Some("glrt-b"),
    );
    let diff = runner.diff(&observed, &Earlier::default());
    let change = &diff.changes[0];
    assert_eq!(change.0.action, Action::Update);
    let (before, after) = (Fingerprint::of("glrt-a"), Fingerprint::of("glrt-b"));
    assert_eq!(
        change.0.detail,
        format!("token (fingerprint {} → {})", before.short(), after.short())
    );
    let json = serde_json::to_string(&change.0).unwrap();
    assert!(!json.contains("glrt-"), "{json}");
}

#[test]
fn legacy_registration_happens_only_without_an_entry() {
    let runner = runner(legacy());
    assert!(matches!(
        runner.decide(&state(None, None, Some("reg-token"))),
        Decision::Do(RunnerOp::Register { .. })
    ));
    let existing = state(Some(entry("glrtr-issued")), None, Some("reg-token"));
    let Decision::Do(RunnerOp::Adopt {
        source,
        fingerprint,
        id,
        ..
    }) = runner.decide(&existing)
    else {
        panic!("an existing entry is adopted");
    };
    assert_eq!(
        (source, fingerprint, id),
        (Origin::Adopted, Fingerprint::of("glrtr-issued"), 18)
    );
    let lost = state(
        None,
        Some(recorded(Origin::Registered, "glrtr-issued")),
        Some("reg-token"),
    );
    let Decision::Refuse { reason, .. } = runner.decide(&lost) else {
        panic!("a lost entry is never registered again");
    };
    assert!(
        reason.contains("registering again would leave runner #18 behind"),
        "{reason}"
    );
}

#[test]
fn a_missing_token_file_is_a_refused_registration_not_an_error() {
    let runner = runner(glrt());
    let diff = runner.diff(&state(None, None, None), &Earlier::default());
    let change = &diff.changes[0];
    assert_eq!(change.0.action, Action::Register);
    assert!(
        change
            .0
            .refused
            .as_deref()
            .unwrap()
            .starts_with("the token_file `/etc/berth/tokens/r` does not exist")
    );
}

#[test]
fn a_foreign_entry_of_the_same_name_is_not_taken_over() {
    let runner = runner(legacy());
    let mut foreign = entry("glrt-foreign");
    foreign.url = Some("https://other.example".into());
    let Decision::Refuse { reason, .. } = runner.decide(&state(Some(foreign), None, Some("reg")))
    else {
        panic!("refused");
    };
    assert!(reason.contains("which berth did not register"), "{reason}");
}

#[test]
fn removal_calls_what_the_source_allows() {
    let runner = removed_runner();
    let with = |source, delete_on_remove| {
        let mut record = recorded(source, "t");
        record.delete_on_remove = delete_on_remove;
        match runner.decide(&state(Some(entry("t")), Some(record), None)) {
            Decision::Do(RunnerOp::Unregister { call, .. }) => call,
            other => panic!("not an unregister: {other:?}"),
        }
    };
    assert_eq!(
        with(Origin::Verified, false),
        Call::DeleteManager {
            system_id: "s_0123456789ab".into()
        }
    );
    assert_eq!(with(Origin::Verified, true), Call::DeleteRunner);
    assert_eq!(with(Origin::Registered, false), Call::DeleteRunner);
    assert_eq!(with(Origin::Created, false), Call::DeleteRunner);
    assert_eq!(with(Origin::Adopted, false), Call::None);
    assert!(matches!(
        runner.decide(&state(None, Some(recorded(Origin::Registered, "t")), None)),
        Decision::Do(RunnerOp::Forget { .. })
    ));
    assert_eq!(
        runner.decide(&state(Some(entry("t")), None, None)),
        Decision::InSync
    );
}

#[test]
fn a_registration_journaled_by_the_previous_release_still_loads() {
    // Written as text by the release before `sent_at` became a timestamp.
    let written = r#"{"url":"https://gitlab.example","sent_at":"2026-12-01T14:00:00Z"}"#;
    let pending: Registering = serde_json::from_str(written).unwrap();
    assert_eq!(pending.sent_at.to_string(), "2026-12-01T14:00:00Z");
    assert_eq!(serde_json::to_string(&pending).unwrap(), written);
    // Written now: whole seconds, as before.
    let now = whole_seconds("2026-12-01T14:00:00.75Z".parse().unwrap());
    assert_eq!(now.to_string(), "2026-12-01T14:00:00Z");
}
