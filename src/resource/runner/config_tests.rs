use super::*;
use crate::resource::Made;
use crate::{host::host_path, resource::runner::section::RunnerSettings};

fn resource(globals: &str, runners: &[(&str, &str, &str)]) -> RunnerConfig {
    RunnerConfig {
        path: host_path("/srv/gitlab-runner/config.toml"),
        globals: toml::from_str(globals).unwrap(),
        runners: runners
            .iter()
            .map(|(name, url, settings)| Declared {
                name: (*name).into(),
                url: (*url).into(),
                settings: toml::from_str(settings).unwrap(),
            })
            .collect(),
        certificates: Vec::new(),
        secret_files: Vec::new(),
        sizing: Sizing::default(),
        settings: None,
    }
}

fn state(text: Option<&str>, mode: u32) -> ConfigTomlState {
    ConfigTomlState {
        certificates: Vec::new(),
        secrets: Vec::new(),
        current: text.map(|text| {
            (
                text.to_owned(),
                config_toml::parse(&host_path("/c.toml"), text).unwrap(),
            )
        }),
        mode: text.map(|_| FileMode(mode)),
        unreadable: None,
        facts: None,
    }
}

const FILE: &str = "concurrent = 4\n\n[[runners]]\n  name = \"r\"\n  url = \"https://g.example/\"\n  id = 1\n  token = \"glrt-secret\"\n  executor = \"docker\"\n";

#[test]
fn in_sync_is_no_change_and_a_wrong_mode_is_one() {
    let resource = resource(
        "concurrent = 4\n",
        &[("r", "https://g.example", "executor = \"docker\"\n")],
    );
    assert_eq!(
        resource.diff(&state(Some(FILE), 0o600), &Earlier::default()),
        Diff::none()
    );
    let diff = resource.diff(&state(Some(FILE), 0o644), &Earlier::default());
    assert_eq!(diff.changes[0].0.fields[0].path, "mode");
    assert!(diff.changes[0].0.diff.is_none());
}

#[test]
fn the_diff_shows_tokens_as_stars() {
    let resource = resource("concurrent = 8\n", &[]);
    let diff = resource.diff(&state(Some(FILE), 0o600), &Earlier::default());
    let text = diff.changes[0].0.diff.clone().unwrap();
    assert!(
        text.contains("-concurrent = 4\n+concurrent = 8\n"),
        "{text}"
    );
    assert!(!text.contains("glrt-secret"), "{text}");
    let whole = config_toml::redact(FILE);
    assert!(whole.contains("token = \"***\""), "{whole}");
}

#[test]
fn an_entry_appears_only_when_its_registration_is_planned() {
    let resource = resource(
        "",
        &[("new", "https://g.example", "executor = \"shell\"\n")],
    );
    assert_eq!(
        resource.diff(&state(None, 0), &Earlier::default()),
        Diff::none()
    );
    let register = Change::new(ResourceId::new(Kind::Runner, "new"), Action::Register, "");
    let diff = resource.diff(
        &state(None, 0),
        &Earlier::from_changes(vec![(register.clone(), Made::Registered)]),
    );
    let change = &diff.changes[0];
    assert_eq!(change.0.action, Action::Create);
    assert!(
        change
            .0
            .diff
            .as_ref()
            .unwrap()
            .contains("+name = \"new\"\n+url = \"https://g.example\"\n+executor = \"shell\"\n"),
        "{:?}",
        change.0.diff
    );
    let refused = (register.refused_because("no token"), Made::Registered);
    assert_eq!(
        resource.diff(&state(None, 0), &Earlier::from_changes(vec![refused])),
        Diff::none()
    );
}

/// Issue 12, item 7: a private GitLab CA reaches gitlab-runner, not only berth's client.
#[test]
fn a_private_ca_is_placed_for_gitlab_runner_and_named_in_the_entry() {
    let mut settings = RunnerSettings {
        seen_directory: Some("/etc/gitlab-runner".into()),
        ..RunnerSettings::default()
    };
    settings
        .runners
        .push(crate::resource::runner::section::RunnerSpec {
            name: "r".into(),
            url: "https://g.example:8443/".into(),
            token: crate::resource::runner::section::TokenSource::Authentication {
                file: host_path("/t"),
            },
            tls_ca_file: Some(host_path("/etc/berth/ca.pem")),
            delete_on_remove: false,
            settings: toml::from_str("executor = \"shell\"\n").unwrap(),
            runner_image: None,
            secret_files: Vec::new(),
        });
    let resource = RunnerConfig::new(&settings);
    let file = "[[runners]]\n  name = \"r\"\n  url = \"https://g.example:8443/\"\n  id = 1\n  token = \"glrt-x\"\n  executor = \"shell\"\n";
    let mut observed = state(Some(file), 0o600);
    observed.certificates = vec![CertificateState {
        source: Some("-----BEGIN CERTIFICATE-----\n".into()),
        target: None,
    }];
    let diff = resource.diff(&observed, &Earlier::default());
    let (change, op) = &diff.changes[0];
    assert!(
        change
            .diff
            .as_deref()
            .unwrap()
            .contains("+  tls-ca-file = \"/etc/gitlab-runner/certs/g.example.crt\""),
        "{:?}",
        change.diff
    );
    assert!(
        change
            .fields
            .iter()
            .any(|field| field.path == "/srv/gitlab-runner/certs/g.example.crt")
    );
    assert_eq!(
        op.as_ref().unwrap().certificates,
        [(
            host_path("/srv/gitlab-runner/certs/g.example.crt"),
            "-----BEGIN CERTIFICATE-----\n".to_owned()
        )]
    );
}

/// Issue 12, item 8: the keys gitlab-runner reads only at start are named for the runner
/// container; the others it reloads by itself.
#[test]
fn keys_read_only_at_start_are_told_apart() {
    let restarting = resource(
        "concurrent = 8\nlisten_address = \":9252\"\n[session_server]\nlisten_address = \"[::]:8093\"\n",
        &[],
    );
    let mut earlier = Earlier::default();
    record(&restarting, &mut earlier, |_| {});
    assert_eq!(
        earlier.read_at_start(),
        ["listen_address", "session_server.listen_address"]
    );
    let reloaded = resource("concurrent = 8\n", &[]);
    let mut earlier = Earlier::default();
    record(&reloaded, &mut earlier, |_| {});
    assert!(earlier.read_at_start().is_empty());
}

/// Records `resource`'s one change in `earlier` as the engine does, with what its op made,
/// after `reword` changed how the change reads.
fn record(resource: &RunnerConfig, earlier: &mut Earlier, reword: impl Fn(&mut Change)) {
    let diff = resource.diff(&state(Some(FILE), 0o600), &Earlier::default());
    let (mut change, op) = diff.changes.into_iter().next().unwrap();
    reword(&mut change);
    earlier.push(&change, resource.made(&op.unwrap()));
}

/// Issue 19: what restarts gitlab-runner is what the op merges, not how the plan prints it.
/// Field paths printed another way (or a detail naming a key read at start) decide nothing.
#[test]
fn the_restart_follows_the_op_not_the_printed_change() {
    let restarting = resource("[session_server]\nlisten_address = \"[::]:8093\"\n", &[]);
    let mut earlier = Earlier::default();
    record(&restarting, &mut earlier, |change| {
        for field in &mut change.fields {
            field.path = format!("[{}]", field.path.replace('.', "] "));
        }
        change.detail = "reworded".into();
    });
    assert_eq!(earlier.read_at_start(), ["session_server.listen_address"]);
    let reloaded = resource("concurrent = 8\n", &[]);
    let mut earlier = Earlier::default();
    record(&reloaded, &mut earlier, |change| {
        change.fields[0].path = "listen_address".into();
        change.detail = "session_server.listen_address changed".into();
    });
    assert!(earlier.read_at_start().is_empty());
}

#[test]
fn an_entry_of_the_same_name_for_another_gitlab_is_not_touched() {
    let resource = resource(
        "",
        &[("r", "https://other.example", "executor = \"shell\"\n")],
    );
    assert_eq!(
        resource.diff(&state(Some(FILE), 0o600), &Earlier::default()),
        Diff::none()
    );
}

/// Issue 22: `concurrent = "auto"` is worked out from the host's facts when observed; the
/// plan names the facts, the same facts plan nothing, more memory plans a change.
#[test]
fn auto_concurrent_follows_the_host_facts_and_says_which() {
    let mut resource = resource("", &[]);
    resource.sizing.concurrent = true;
    let on = |cpus, gib: u64| {
        let mut observed = state(Some(FILE), 0o600);
        observed.facts = Some(HostFacts {
            cpus,
            memory: gib * 1024 * 1024 * 1024,
        });
        resource.diff(&observed, &Earlier::default())
    };
    // FILE says `concurrent = 4`: 4 CPUs, or 8 CPUs within 8 GiB, is what it says.
    assert_eq!(on(4, 64), Diff::none());
    assert_eq!(on(8, 8), Diff::none());
    let diff = on(8, 32);
    let (change, op) = &diff.changes[0];
    assert_eq!(
        change.detail,
        "/srv/gitlab-runner/config.toml (concurrent = 8 (auto: 8 CPUs, 32.0 GiB memory))"
    );
    let text = change.diff.clone().unwrap();
    assert!(
        text.contains("-concurrent = 4\n+concurrent = 8\n"),
        "{text}"
    );
    assert_eq!(
        op.as_ref().unwrap().sized.as_ref().unwrap().concurrent,
        Some(8)
    );
}
