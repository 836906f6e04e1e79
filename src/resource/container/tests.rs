//! Table tests for `container/NAME`'s diff: what is drift, what is not, and how it is told.

use super::*;
use serde_json::Value as Json;

use crate::{
    docker::{
        labels::{LABEL_MANAGED, LABEL_SPEC_HASH},
        wire::{
            Config, ContainerState as LiveState, Endpoint, HostConfig, MountPoint, NetworkSettings,
            RestartPolicyInfo,
        },
    },
    profile::source::TomlFile,
    resource::{docker_object::Reach, profile::Profile},
};

const PROFILE: &str = r#"
[networks.ci-net]
[containers.gitlab-dind]
image = "docker:27-dind"
restart = "always"
networks = { ci-net = { aliases = ["docker"] } }
volumes = ["dind-data:/var/lib/docker", "dind-certs:/certs/client"]
env = { DOCKER_TLS_CERTDIR = "/certs" }
[containers.gitlab-runner]
image = "gitlab/gitlab-runner:v17.11.0"
restart = "always"
networks = ["ci-net"]
volumes = ["/srv/gitlab-runner:/etc/gitlab-runner", "dind-certs:/certs/client:ro"]
env = { DOCKER_HOST = "tcp://gitlab-dind:2376" }
stop_signal = "SIGQUIT"
stop_timeout = 3600
after = ["gitlab-dind"]
"#;

pub(super) fn profile(extra: &str) -> Profile {
    Profile::from_sources(
        vec!["test".into()],
        &[
            TomlFile::new("base.toml", PROFILE),
            TomlFile::new("extra.toml", extra),
        ],
    )
    .unwrap_or_else(|error| panic!("{}", error.problem()))
}

pub(super) fn container(profile: &Profile, name: &str, adopt: bool) -> Container {
    let spec = profile
        .containers
        .iter()
        .find(|spec| spec.name.as_str() == name)
        .unwrap()
        .clone();
    Container::new(
        spec.clone(),
        profile.relations.containers[&spec.name].clone(),
        profile.owner(),
        Rc::new(ObjectNames::from_profile(profile)),
        adopt,
    )
}

const IMAGE_ID: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const NETWORK_ID: &str = "net-1";

/// The image, with what images contribute: env, labels, a VOLUME, an entrypoint and a CMD.
fn image(reference: &str, id: &str) -> ImageInfo {
    ImageInfo {
        id: id.into(),
        repo_tags: Some(vec![reference.into()]),
        repo_digests: None,
        config: Config {
            env: Some(vec!["PATH=/usr/bin:/bin".into(), "IMAGE_VAR=1".into()]),
            cmd: Some(vec!["run".into(), "--user=gitlab-runner".into()]),
            entrypoint: Some(vec!["/entrypoint".into()]),
            labels: Some(BTreeMap::from([("maintainer".into(), "someone".into())])),
            volumes: Some(BTreeMap::from([("/var/lib/docker".into(), Json::Null)])),
            ..Config::default()
        },
    }
}

/// What Docker reports for a container berth created from `resource`'s spec: the image's
/// contributions merged in, the daemon's short-ID alias added.
fn live(resource: &Container) -> ContainerInfo {
    let spec = &resource.spec;
    let image = image(&spec.image, IMAGE_ID);
    let host = Host::new("/");
    let mut env = image.config.env.clone().unwrap();
    env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    let mut labels = image.config.labels.clone().unwrap();
    labels.insert(LABEL_MANAGED.into(), "true".into());
    labels.insert(LABEL_SPEC_HASH.into(), resource.hash.clone());
    labels.insert("berth.profile".into(), "test".into());
    let id = "abcdef0123456789".to_owned();
    ContainerInfo {
        name: format!("/{}", spec.name),
        image: IMAGE_ID.into(),
        state: LiveState {
            status: "running".into(),
            running: true,
            started_at: String::new(),
        },
        config: Config {
            image: spec.image.clone(),
            env: Some(env),
            cmd: spec.command.clone().or(image.config.cmd.clone()),
            entrypoint: image.config.entrypoint.clone(),
            labels: Some(labels),
            stop_signal: spec.stop_signal.clone(),
            stop_timeout: spec.stop_timeout,
            volumes: image.config.volumes.clone(),
            // Unset, Docker names the container after the start of its ID.
            hostname: spec.hostname.clone().unwrap_or_else(|| id[..12].to_owned()),
            ..Config::default()
        },
        host_config: HostConfig {
            binds: Some(
                spec.mounts
                    .iter()
                    .filter_map(|mount| mount.bind_argument(&host))
                    .collect(),
            ),
            privileged: spec.privileged,
            runtime: spec.runtime.clone().unwrap_or_else(|| "runc".into()),
            restart_policy: RestartPolicyInfo {
                name: spec.restart.to_string().into(),
                maximum_retry_count: 0,
            },
            ..HostConfig::default()
        },
        network_settings: NetworkSettings {
            networks: Some(
                spec.networks
                    .iter()
                    .map(|(name, aliases)| {
                        let mut aliases = aliases.clone();
                        aliases.push(id[..12].to_owned());
                        (
                            name.to_string(),
                            Endpoint {
                                aliases: Some(aliases),
                                network_id: NETWORK_ID.into(),
                            },
                        )
                    })
                    .collect(),
            ),
        },
        id: id.into(),
        mounts: Vec::new(),
    }
}

fn seen(resource: &Container, container: Option<ContainerInfo>) -> Observed<Box<Seen>> {
    Observed::Seen(Box::new(Seen {
        host: Host::new("/"),
        image: Some(image(&resource.spec.image, IMAGE_ID)),
        running_image: container
            .as_ref()
            .map(|_| image(&resource.spec.image, IMAGE_ID)),
        container,
        network_ids: BTreeMap::from([("ci-net".into(), NETWORK_ID.into())]),
        missing_sources: Vec::new(),
        seccomp_profiles: BTreeMap::new(),
        runtimes: Some(vec!["io.containerd.runc.v2".into(), "runc".into()]),
        set_aside: None,
        intent: None,
    }))
}

/// Each change as `action detail` with its fields as `path: before → after`.
fn told(diff: &Diff<ContainerOp>) -> Vec<String> {
    let mut lines = Vec::new();
    for change in diff.printed() {
        let mut line = format!("{} {}", change.action.as_str(), change.detail);
        if let Some(reason) = &change.refused {
            line.push_str(&format!(" [refused: {reason}]"));
        }
        lines.push(line);
        for field in &change.fields {
            let show = |value: &Option<Json>| {
                value
                    .as_ref()
                    .map_or_else(|| "(absent)".to_owned(), Json::to_string)
            };
            lines.push(format!(
                "  {}: {} → {}",
                field.path,
                show(&field.before),
                show(&field.after)
            ));
        }
    }
    lines
}

#[test]
#[expect(clippy::too_many_lines, reason = "a table of cases")]
fn container_diff_table() {
    let base = profile("");
    let runner = container(&base, "gitlab-runner", false);
    let dind = container(&base, "gitlab-dind", false);
    type Case<'a> = (
        &'static str,
        &'a Container,
        Observed<Box<Seen>>,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "in sync, though the image added env, labels, a VOLUME, its entrypoint and CMD: nothing",
            &runner,
            seen(&runner, Some(live(&runner))),
            vec![],
        ),
        (
            "missing: created",
            &runner,
            seen(&runner, None),
            vec!["create image gitlab/gitlab-runner:v17.11.0"],
        ),
        (
            "stopped: started, not replaced",
            &runner,
            seen(
                &runner,
                Some({
                    let mut stopped = live(&runner);
                    stopped.state.status = "exited".into();
                    stopped.state.running = false;
                    stopped
                }),
            ),
            vec!["start the container is exited"],
        ),
        (
            "restart policy changed by hand: repaired in place",
            &dind,
            seen(
                &dind,
                Some({
                    let mut changed = live(&dind);
                    changed.host_config.restart_policy.name = "no".into();
                    changed
                }),
            ),
            vec![
                "update changed outside berth: restart (repaired in place)",
                "  restart: \"no\" → \"always\"",
            ],
        ),
        (
            "disconnected from its network by hand: reconnected in place",
            &runner,
            seen(
                &runner,
                Some({
                    let mut changed = live(&runner);
                    changed.network_settings.networks = Some(BTreeMap::new());
                    changed
                }),
            ),
            vec![
                "update changed outside berth: networks.ci-net (repaired in place)",
                "  networks.ci-net: (absent) → []",
            ],
        ),
        (
            "its network was removed and created again: reconnected",
            &dind,
            Observed::Seen(Box::new(Seen {
                network_ids: BTreeMap::from([("ci-net".into(), "net-2".into())]),
                ..match seen(&dind, Some(live(&dind))) {
                    Observed::Seen(seen) => *seen,
                    Observed::Unavailable(_) => unreachable!(),
                }
            })),
            vec![
                "update changed outside berth: networks.ci-net (repaired in place)",
                "  networks.ci-net: \"attached to a network that no longer exists\" → [\"docker\"]",
            ],
        ),
        (
            "an alias lost: reconnected with it",
            &dind,
            seen(
                &dind,
                Some({
                    let mut changed = live(&dind);
                    changed
                        .network_settings
                        .networks
                        .as_mut()
                        .unwrap()
                        .get_mut("ci-net")
                        .unwrap()
                        .aliases = Some(vec!["abcdef012345".into()]);
                    changed
                }),
            ),
            vec![
                "update changed outside berth: networks.ci-net (repaired in place)",
                "  networks.ci-net: [] → [\"docker\"]",
            ],
        ),
        (
            "privileged behind berth's back: replaced",
            &dind,
            seen(
                &dind,
                Some({
                    let mut changed = live(&dind);
                    changed.host_config.privileged = true;
                    changed
                }),
            ),
            vec![
                "replace changed outside berth: privileged",
                "  privileged: true → false",
            ],
        ),
        (
            "an env var nobody declared: replaced",
            &runner,
            seen(
                &runner,
                Some({
                    let mut changed = live(&runner);
                    changed.config.env.as_mut().unwrap().push("EXTRA=1".into());
                    changed
                }),
            ),
            vec![
                "replace changed outside berth: env.EXTRA",
                "  env.EXTRA: \"1\" → (absent)",
            ],
        ),
        (
            "the tag now names another image: replaced",
            &runner,
            Observed::Seen(Box::new(Seen {
                image: Some(image(
                    "gitlab/gitlab-runner:v17.11.0",
                    "sha256:2222222222222222",
                )),
                ..match seen(&runner, Some(live(&runner))) {
                    Observed::Seen(seen) => *seen,
                    Observed::Unavailable(_) => unreachable!(),
                }
            })),
            vec![
                "replace changed outside berth: image",
                "  image: \"gitlab/gitlab-runner:v17.11.0 (111111111111)\" → \"gitlab/gitlab-runner:v17.11.0 (222222222222)\"",
            ],
        ),
        (
            "a container berth did not create: a refused conflict",
            &runner,
            seen(
                &runner,
                Some({
                    let mut foreign = live(&runner);
                    foreign.config.labels = None;
                    foreign
                }),
            ),
            vec![
                "replace a container named `gitlab-runner` exists but berth did not create it (no berth.managed label) [refused: berth does not touch a container it did not create; rerun with --adopt to replace it with the profile's (named volumes are kept)]",
                "  labels.berth.managed: (absent) → \"true\"",
            ],
        ),
        (
            "a bind mount changed by hand: replaced",
            &runner,
            seen(
                &runner,
                Some({
                    let mut changed = live(&runner);
                    changed.host_config.binds = Some(vec![
                        "/elsewhere:/etc/gitlab-runner".into(),
                        "dind-certs:/certs/client:ro".into(),
                    ]);
                    changed
                }),
            ),
            vec![
                "replace changed outside berth: volumes[/etc/gitlab-runner]",
                "  volumes[/etc/gitlab-runner]: \"/elsewhere:/etc/gitlab-runner\" → \"/srv/gitlab-runner:/etc/gitlab-runner\"",
            ],
        ),
        (
            "a dead container: replaced",
            &runner,
            seen(
                &runner,
                Some({
                    let mut dead = live(&runner);
                    dead.state.status = "dead".into();
                    dead.state.running = false;
                    dead
                }),
            ),
            vec![
                "replace changed outside berth: state",
                "  state: \"dead\" → \"running\"",
            ],
        ),
        (
            "Docker installed but down: the create it will be once Docker starts",
            &runner,
            Observed::Unavailable(Reach::Down),
            vec!["create image gitlab/gitlab-runner:v17.11.0 (after Docker starts)"],
        ),
        (
            "Docker not installed yet: the create it will be",
            &runner,
            Observed::Unavailable(Reach::NotInstalled),
            vec!["create image gitlab/gitlab-runner:v17.11.0 (after Docker is installed)"],
        ),
        (
            "a daemon this user may not ask: not compared (daemon/docker says so)",
            &runner,
            Observed::Unavailable(Reach::NotPermitted),
            vec![],
        ),
    ];
    for (name, resource, observed, expected) in cases {
        assert_eq!(
            told(&resource.diff(&observed, &Earlier::default())),
            expected,
            "{name}"
        );
    }
}

#[test]
fn a_profile_change_is_told_field_by_field() {
    let old = profile("");
    let new = profile("[containers.gitlab-runner.env]\nDOCKER_HOST = \"tcp://docker:2376\"\n");
    let before = container(&old, "gitlab-runner", false);
    let after = container(&new, "gitlab-runner", false);
    let diff = after.diff(&seen(&after, Some(live(&before))), &Earlier::default());
    assert_eq!(
        told(&diff),
        [
            "replace the profile changed: env.DOCKER_HOST",
            "  env.DOCKER_HOST: \"tcp://gitlab-dind:2376\" → \"tcp://docker:2376\"",
        ]
    );
}

#[test]
fn a_credential_in_env_changes_in_the_plan_without_being_shown() {
    let old = profile("[containers.gitlab-runner.env]\nREGISTRY_PASSWORD = \"hunter2-old\"\n");
    let new = profile("[containers.gitlab-runner.env]\nREGISTRY_PASSWORD = \"hunter2-new\"\n");
    let before = container(&old, "gitlab-runner", false);
    let after = container(&new, "gitlab-runner", false);
    let diff = after.diff(&seen(&after, Some(live(&before))), &Earlier::default());
    let told = told(&diff);
    assert_eq!(
        told[0],
        "replace the profile changed: env.REGISTRY_PASSWORD"
    );
    let line = &told[1];
    assert!(
        !line.contains("hunter2"),
        "the value is not printed: {line}"
    );
    let fingerprint = |value: &str| crate::secret::Fingerprint::of(value).short();
    assert_eq!(
        line,
        &format!(
            "  env.REGISTRY_PASSWORD: \"*** ({})\" → \"*** ({})\"",
            fingerprint("hunter2-old"),
            fingerprint("hunter2-new")
        ),
        "each side is a fingerprint, so the change is still seen"
    );
}

#[test]
fn a_changed_hash_with_nothing_observable_still_replaces_and_says_so() {
    let resource = container(&profile(""), "gitlab-runner", false);
    let mut old = live(&resource);
    old.config
        .labels
        .as_mut()
        .unwrap()
        .insert(LABEL_SPEC_HASH.into(), "0123456789abcdef".into());
    let diff = resource.diff(&seen(&resource, Some(old)), &Earlier::default());
    assert_eq!(diff.changes[0].0.action, Action::Replace);
    assert_eq!(diff.changes[0].0.fields[0].path, "spec-hash");
    assert_eq!(
        diff.changes[0].0.fields[0].before,
        Some(Json::from("0123456789ab"))
    );
}

#[test]
fn removing_a_command_from_the_profile_falls_back_to_the_image_cmd() {
    let with = profile("[containers.gitlab-runner]\ncommand = [\"run\", \"--debug\"]\n");
    let without = profile("");
    let old = live(&container(&with, "gitlab-runner", false));
    let resource = container(&without, "gitlab-runner", false);
    let diff = resource.diff(&seen(&resource, Some(old)), &Earlier::default());
    assert_eq!(
        told(&diff),
        [
            "replace the profile changed: command",
            "  command: [\"run\",\"--debug\"] → [\"run\",\"--user=gitlab-runner\"]",
        ]
    );
}

#[test]
fn adopt_lifts_the_conflict_refusal() {
    let resource = container(&profile(""), "gitlab-runner", true);
    let mut foreign = live(&resource);
    foreign.config.labels = None;
    let diff = resource.diff(&seen(&resource, Some(foreign)), &Earlier::default());
    assert_eq!(diff.changes[0].0.action, Action::Replace);
    assert!(diff.changes[0].0.refused.is_none());
}

#[test]
fn a_missing_image_that_may_not_be_pulled_is_refused() {
    let never = profile("[containers.gitlab-runner]\npull = \"never\"\n");
    let resource = container(&never, "gitlab-runner", false);
    let Observed::Seen(mut observed) = seen(&resource, None) else {
        unreachable!()
    };
    observed.image = None;
    let diff = resource.diff(&Observed::Seen(observed), &Earlier::default());
    assert!(
        diff.changes[0]
            .0
            .refused
            .as_deref()
            .is_some_and(|reason| reason.contains("pull = \"never\"")),
        "{diff:?}"
    );
}

#[test]
fn a_reader_restarts_when_the_container_writing_its_volume_is_replaced() {
    let base = profile("");
    let runner = container(&base, "gitlab-runner", false);
    assert_eq!(
        runner.producers,
        [(
            ObjectName::try_from("gitlab-dind".to_owned()).unwrap(),
            ObjectName::try_from("dind-certs".to_owned()).unwrap()
        )]
    );
    let replaced = Change::new(
        ResourceId::new(Kind::Container, "gitlab-dind"),
        Action::Replace,
        "",
    );
    let diff = runner.diff(
        &seen(&runner, Some(live(&runner))),
        &Earlier::from_changes(vec![(replaced, Made::NewContainer)]),
    );
    assert_eq!(
        told(&diff),
        [
            "restart `container/gitlab-dind` is new and writes volume `dind-certs`, which this container reads"
        ]
    );
    // A container that only comes after another, sharing nothing it reads, is left alone.
    let plain = profile(
        "[containers.gitlab-runner]\nvolumes = [\"/srv/gitlab-runner:/etc/gitlab-runner\"]\n",
    );
    let runner = container(&plain, "gitlab-runner", false);
    let replaced = Change::new(
        ResourceId::new(Kind::Container, "gitlab-dind"),
        Action::Replace,
        "",
    );
    assert!(
        runner
            .diff(
                &seen(&runner, Some(live(&runner))),
                &Earlier::from_changes(vec![(replaced, Made::NewContainer)])
            )
            .changes
            .is_empty()
    );
}

/// Issue 19: a pull may drain and replace the running gitlab-runner (the tag moved), so it is
/// asked about and counted like a replace, as its op is carried out.
#[test]
fn pull_always_is_a_change_every_run_asked_about_and_counted_like_a_replace() {
    let always = profile("[containers.gitlab-runner]\npull = \"always\"\n");
    let resource = container(&always, "gitlab-runner", false);
    let diff = resource.diff(&seen(&resource, Some(live(&resource))), &Earlier::default());
    assert_eq!(diff.changes.len(), 1);
    let (change, op) = &diff.changes[0];
    assert_eq!(change.action, Action::Pull);
    assert_eq!(op, &Some(ContainerOp::Pull));
    assert!(change.needs_consent(), "{change:?}");
    assert_eq!(
        crate::plan::Summary::count([change]),
        crate::plan::Summary {
            add: 1,
            change: 0,
            destroy: 1
        }
    );
    assert_eq!(Action::Pull.marker(), "-/+");
}

/// Issue 19: every change a container plans is shown with its op's action, so what plan
/// shows, asks about and counts is what apply does.
#[test]
fn every_planned_change_shows_its_ops_action() {
    let cases = [
        ("", None),
        ("[containers.gitlab-runner]\npull = \"always\"\n", None),
        ("[containers.gitlab-runner]\nstop_timeout = 60\n", None),
        ("", Some("exited")),
    ];
    for (extra, status) in cases {
        let declared = profile(extra);
        let resource = container(&declared, "gitlab-runner", false);
        let mut running = live(&resource);
        if let Some(status) = status {
            running.state.status = status.into();
            running.state.running = false;
        }
        let live_seen = seen(&resource, Some(running));
        for observed in [live_seen, seen(&resource, None)] {
            for (change, op) in resource.diff(&observed, &Earlier::default()).changes {
                let op = op.expect("not refused");
                assert_eq!(change.action, op.action(), "{extra} {status:?}: {op:?}");
            }
        }
    }
}

#[test]
fn dependencies_are_the_daemon_the_networks_volumes_and_after() {
    let resource = container(&profile(""), "gitlab-runner", false);
    let ids: Vec<String> = resource
        .depends_on()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        ids,
        [
            "daemon/docker",
            "network/ci-net",
            "volume/dind-certs",
            "container/gitlab-dind"
        ]
    );
}

/// The create request's body as Docker reads it (JSON), for a container under `root`.
fn body(resource: &Container, root: &str) -> Json {
    serde_json::to_value(
        resource
            .create_body(&Host::new(root), &BTreeMap::new())
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn the_create_body_carries_the_spec_and_the_ownership_labels() {
    let resource = container(
        &profile("mtu = 1400\ninstance = \"ci-7\"\n"),
        "gitlab-dind",
        false,
    );
    let dind = body(&resource, "/r");
    assert_eq!(
        dind["Labels"],
        serde_json::json!({
            "berth.managed": "true",
            "berth.profile": "test",
            "berth.instance": "ci-7",
            "berth.spec-hash": resource.hash,
        })
    );
    assert_eq!(dind["Image"], "docker:27-dind");
    assert_eq!(dind["Cmd"], serde_json::json!(["--mtu=1400"]));
    assert_eq!(
        dind["Env"],
        serde_json::json!(["DOCKER_TLS_CERTDIR=/certs"])
    );
    let host_config = &dind["HostConfig"];
    assert_eq!(
        host_config["RestartPolicy"],
        serde_json::json!({"Name": "always", "MaximumRetryCount": 0})
    );
    assert_eq!(host_config["NetworkMode"], "ci-net");
    assert_eq!(
        dind["NetworkingConfig"],
        serde_json::json!({"EndpointsConfig": {"ci-net": {"Aliases": ["docker"]}}})
    );
    assert_eq!(
        host_config["Binds"],
        serde_json::json!(["dind-data:/var/lib/docker", "dind-certs:/certs/client"])
    );
    let runner = body(&container(&profile(""), "gitlab-runner", false), "/r");
    assert_eq!(
        runner["HostConfig"]["Binds"][0],
        "/r/srv/gitlab-runner:/etc/gitlab-runner"
    );
    assert_eq!(
        (&runner["StopSignal"], &runner["StopTimeout"]),
        (&Json::from("SIGQUIT"), &Json::from(3600))
    );
}

#[test]
fn hostname_is_set_compared_only_when_the_profile_sets_it_and_checked() {
    let unset = container(&profile(""), "gitlab-runner", false);
    assert_eq!(body(&unset, "/")["Hostname"], Json::Null);
    let set = profile("[containers.gitlab-runner]\nhostname = \"runner-1.ci\"\n");
    let named = container(&set, "gitlab-runner", false);
    assert_eq!(body(&named, "/")["Hostname"], "runner-1.ci");
    // A field added later does not change the hash of containers that do not use it.
    assert_ne!(named.hash, unset.hash);
    assert_eq!(
        unset.hash,
        container(&profile(""), "gitlab-runner", false).hash
    );
    let in_sync = named.diff(&seen(&named, Some(live(&named))), &Earlier::default());
    assert!(told(&in_sync).is_empty(), "{:?}", told(&in_sync));
    let mut renamed = live(&named);
    renamed.config.hostname = "someone-else".into();
    assert_eq!(
        told(&named.diff(&seen(&named, Some(renamed)), &Earlier::default())),
        [
            "replace changed outside berth: hostname",
            "  hostname: \"someone-else\" → \"runner-1.ci\"",
        ]
    );
    let bad = Profile::from_sources(
        vec!["test".into()],
        &[
            TomlFile::new("base.toml", PROFILE),
            TomlFile::new(
                "extra.toml",
                "[containers.gitlab-runner]\nhostname = \"not_a host\"\n",
            ),
        ],
    )
    .unwrap_err();
    assert_eq!(
        bad.problem().to_string(),
        "extra.toml:2:1: key `containers.gitlab-runner.hostname`: `not_a host` is not a hostname (letters, digits and `-`, in dot-separated labels of at most 63 characters)"
    );
}

/// issue 9 cases 2 and 3: what an interrupted replacement left is finished or undone, decided
/// from what is seen.
#[test]
fn an_interrupted_replacement_is_finished_or_undone() {
    let base = profile("");
    let runner = container(&base, "gitlab-runner", false);
    let mut parked = live(&runner);
    parked.name = "/gitlab-runner.berth-old".into();
    parked.host_config.restart_policy.name = "no".into();
    let seen_with = |container: Option<ContainerInfo>, set_aside: Option<ContainerInfo>| {
        let Observed::Seen(mut seen) = seen(&runner, container) else {
            unreachable!("seen() sees")
        };
        seen.set_aside = set_aside;
        seen
    };
    let leftover = |seen: &Seen| {
        runner
            .leftover_of(seen)
            .map(|(change, op)| (change.detail, op))
    };

    assert_eq!(
        leftover(&seen_with(Some(live(&runner)), None)),
        None,
        "nothing left"
    );
    let (detail, op) = leftover(&seen_with(Some(live(&runner)), Some(parked.clone()))).unwrap();
    assert_eq!(
        detail,
        "an interrupted replacement left `gitlab-runner.berth-old` beside the new container: remove it"
    );
    assert_eq!(
        op,
        ContainerOp::Recover(Leftover::Finish {
            set_aside: Some("gitlab-runner.berth-old".into())
        })
    );
    let (_, op) = leftover(&seen_with(None, Some(parked.clone()))).unwrap();
    assert_eq!(
        op,
        ContainerOp::Recover(Leftover::Undo {
            set_aside: "gitlab-runner.berth-old".into(),
            restart: values::RestartPolicy::Always,
        }),
        "no journal: the profile's restart policy comes back"
    );
    let mut foreign = parked;
    foreign
        .config
        .labels
        .as_mut()
        .unwrap()
        .remove(LABEL_MANAGED);
    assert_eq!(
        leftover(&seen_with(None, Some(foreign))),
        None,
        "a container someone else named so is not berth's"
    );
}

/// Issue 12, item 8: a key gitlab-runner reads only at start restarts the container that runs
/// it on the profile's config.toml, drained with its stop signal; a reloaded key does not.
#[test]
fn the_runner_container_restarts_for_a_key_gitlab_runner_reads_only_at_start() {
    use crate::plan::FieldChange;
    let declared = profile("[runner]\nlisten_address = \":9252\"\n");
    let runner = container(&declared, "gitlab-runner", false);
    let config_change = |path: &str| {
        let change = Change::new(
            ResourceId::singleton(Kind::RunnerConfig),
            Action::Update,
            "",
        )
        .with_fields(vec![FieldChange::new(
            path,
            None,
            Some(Json::from(":9252")),
        )]);
        (change, Made::ReadAtStart(vec![path.to_owned()]))
    };
    let diff = runner.diff(
        &seen(&runner, Some(live(&runner))),
        &Earlier::from_changes(vec![config_change("listen_address")]),
    );
    assert_eq!(
        told(&diff),
        [
            "restart `listen_address` changed, which gitlab-runner reads only when it starts, drained: SIGQUIT, up to 3600 s for running jobs"
        ]
    );
    assert!(matches!(
        diff.changes[0].1,
        Some(ContainerOp::Restart { stop_timeout: 3660 })
    ));
    // `concurrent` is reloaded: `runner-config`'s op makes no fact of it.
    let reloaded = runner.diff(&seen(&runner, Some(live(&runner))), &Earlier::default());
    assert!(reloaded.changes.is_empty());
    // Issue 22: a runner's regenerated `.runner_system_id` is read only at start too.
    let regenerated = (
        Change::new(
            ResourceId::new(Kind::Runner, "docker-runner"),
            Action::Update,
            "",
        ),
        Made::ReadAtStart(vec![".runner_system_id".to_owned()]),
    );
    let diff = runner.diff(
        &seen(&runner, Some(live(&runner))),
        &Earlier::from_changes(vec![regenerated]),
    );
    assert_eq!(
        told(&diff),
        [
            "restart `.runner_system_id` changed, which gitlab-runner reads only when it starts, drained: SIGQUIT, up to 3600 s for running jobs"
        ]
    );
    // The dind container does not run gitlab-runner.
    let dind = container(&declared, "gitlab-dind", false);
    assert!(
        dind.diff(
            &seen(&dind, Some(live(&dind))),
            &Earlier::from_changes(vec![config_change("listen_address")])
        )
        .changes
        .is_empty()
    );
}

/// Live state with `security_opt` as Docker (20.10, CLI 28) keeps it, checked on a real daemon:
/// `systempaths=unconfined` dropped and empty masked and read-only paths instead; `seccomp=FILE`
/// as `seccomp=` and the file's compacted JSON (`profiles` maps the option to that JSON);
/// `label=disable` added to a privileged container; every other option as written.
fn reported_by_docker(resource: &Container, profiles: &[(&str, &str)]) -> ContainerInfo {
    let mut reported = live(resource);
    let host_config = &mut reported.host_config;
    let mut kept = Vec::new();
    let mut unconfined = false;
    for option in &resource.spec.security_opt {
        if option == "systempaths=unconfined" {
            unconfined = true;
        } else if let Some((_, json)) = profiles.iter().find(|(wanted, _)| wanted == option) {
            kept.push(format!("seccomp={json}"));
        } else {
            kept.push(option.clone());
        }
    }
    if resource.spec.privileged {
        kept.push("label=disable".into());
    }
    host_config.security_opt = Some(kept);
    let (masked, read_only) = if unconfined {
        (Some(vec![]), Some(vec![]))
    } else if resource.spec.privileged {
        (None, None)
    } else {
        (
            Some(vec!["/proc/kcore".into(), "/sys/firmware".into()]),
            Some(vec!["/proc/sys".into(), "/proc/sysrq-trigger".into()]),
        )
    };
    host_config.masked_paths = masked;
    host_config.readonly_paths = read_only;
    reported
}

fn with_security_opt(options: &str) -> Container {
    container(
        &profile(&format!(
            "[containers.gitlab-dind]\nsecurity_opt = {options}\n"
        )),
        "gitlab-dind",
        false,
    )
}

/// `seen` with the seccomp profile files observe read.
fn seen_with_files(
    resource: &Container,
    container: ContainerInfo,
    files: &[(&str, Option<&str>)],
) -> Observed<Box<Seen>> {
    let Observed::Seen(mut seen) = seen(resource, Some(container)) else {
        unreachable!()
    };
    seen.seccomp_profiles = files
        .iter()
        .map(|(option, text)| ((*option).to_owned(), text.map(str::to_owned)))
        .collect();
    Observed::Seen(seen)
}

/// Issue 11: `systempaths=unconfined` never appears in SecurityOpt; its empty masked and
/// read-only paths are what tell it.
#[test]
fn security_opt_systempaths_unconfined_converges_against_empty_masked_paths() {
    let resource = with_security_opt(r#"["seccomp=unconfined", "systempaths=unconfined"]"#);
    let diff = resource.diff(
        &seen(&resource, Some(reported_by_docker(&resource, &[]))),
        &Earlier::default(),
    );
    assert_eq!(told(&diff), Vec::<String>::new());

    // Made without it (the default masked paths): only a new container changes that.
    let without = with_security_opt(r#"["seccomp=unconfined"]"#);
    let mut old = reported_by_docker(&without, &[]);
    old.config = live(&resource).config;
    let diff = resource.diff(&seen(&resource, Some(old)), &Earlier::default());
    assert_eq!(
        told(&diff),
        [
            "replace changed outside berth: security_opt",
            "  security_opt: [\"seccomp=unconfined\"] → [\"seccomp=unconfined\",\"systempaths=unconfined\"]",
        ]
    );
}

/// Issue 11: `seccomp=FILE` comes back as the file's JSON; it is compared as JSON with the file
/// as it is now.
#[test]
fn security_opt_seccomp_file_converges_against_the_files_json() {
    let option = "seccomp=/etc/berth/seccomp.json";
    let resource = with_security_opt(&format!("[\"{option}\"]"));
    let file = "{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n  \"syscalls\": [{\"names\": [\"keyctl\"], \"action\": \"SCMP_ACT_ERRNO\"}]\n}\n";
    let kept = r#"{"syscalls":[{"action":"SCMP_ACT_ERRNO","names":["keyctl"]}],"defaultAction":"SCMP_ACT_ALLOW"}"#;
    let reported = reported_by_docker(&resource, &[(option, kept)]);
    let diff = resource.diff(
        &seen_with_files(&resource, reported.clone(), &[(option, Some(file))]),
        &Earlier::default(),
    );
    assert_eq!(told(&diff), Vec::<String>::new(), "same JSON, other layout");

    let edited = file.replace("SCMP_ACT_ERRNO", "SCMP_ACT_KILL");
    let diff = resource.diff(
        &seen_with_files(&resource, reported.clone(), &[(option, Some(&edited))]),
        &Earlier::default(),
    );
    assert_eq!(
        told(&diff)[0],
        "replace changed outside berth: security_opt",
        "the file changed since the container was made"
    );

    let diff = resource.diff(
        &seen_with_files(&resource, reported, &[(option, None)]),
        &Earlier::default(),
    );
    assert_eq!(
        told(&diff)[0],
        "replace changed outside berth: security_opt",
        "the file is gone: docker create will say so"
    );
}

/// `label=...`, in either spelling, is kept as written; a privileged container gains
/// `label=disable`, which the profile need not name.
#[test]
fn security_opt_label_converges_as_docker_keeps_it() {
    for options in [
        r#"["label=disable"]"#,
        r#"["label:disable"]"#,
        r#"["label=user:USER", "label=type:svirt_apache_t"]"#,
    ] {
        let resource = with_security_opt(options);
        let diff = resource.diff(
            &seen(&resource, Some(reported_by_docker(&resource, &[]))),
            &Earlier::default(),
        );
        assert_eq!(told(&diff), Vec::<String>::new(), "{options}");
    }
    let privileged = container(
        &profile("[containers.gitlab-dind]\nprivileged = true\n"),
        "gitlab-dind",
        false,
    );
    let reported = reported_by_docker(&privileged, &[]);
    assert_eq!(
        reported.host_config.security_opt.as_deref(),
        Some(&["label=disable".to_owned()][..])
    );
    let diff = privileged.diff(&seen(&privileged, Some(reported)), &Earlier::default());
    assert_eq!(told(&diff), Vec::<String>::new());

    // An unprivileged container given `label=disable` by hand is drift all the same.
    let plain = with_security_opt("[]");
    let mut by_hand = reported_by_docker(&plain, &[]);
    by_hand.host_config.security_opt = Some(vec!["label=disable".into()]);
    let diff = plain.diff(&seen(&plain, Some(by_hand)), &Earlier::default());
    assert_eq!(
        told(&diff)[0],
        "replace changed outside berth: security_opt"
    );
}

/// `no-new-privileges`, bare or with a value, is kept as written.
#[test]
fn security_opt_no_new_privileges_converges_as_written() {
    for options in [
        r#"["no-new-privileges"]"#,
        r#"["no-new-privileges=true"]"#,
        r#"["no-new-privileges:true"]"#,
    ] {
        let resource = with_security_opt(options);
        let diff = resource.diff(
            &seen(&resource, Some(reported_by_docker(&resource, &[]))),
            &Earlier::default(),
        );
        assert_eq!(told(&diff), Vec::<String>::new(), "{options}");
    }
}

#[test]
fn a_seccomp_profile_is_named_by_an_absolute_path_and_read_under_the_root() {
    let error = Profile::from_sources(
        vec!["test".into()],
        &[
            TomlFile::new("base.toml", PROFILE),
            TomlFile::new(
                "extra.toml",
                "[containers.gitlab-dind]\nsecurity_opt = [\"seccomp=profile.json\"]\n",
            ),
        ],
    )
    .unwrap_err();
    assert!(
        error
            .problem()
            .message
            .contains("the seccomp profile must be a file named by its absolute path"),
        "{}",
        error.problem().message
    );
    // The CLI sent the file's JSON, compacted, not its path; the file is read under the root.
    let resource = with_security_opt(
        r#"["seccomp=/etc/seccomp.json", "seccomp=unconfined", "systempaths=unconfined"]"#,
    );
    let profiles = BTreeMap::from([(
        "seccomp=/etc/seccomp.json".to_owned(),
        Some("{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n  \"syscalls\": []\n}\n".to_owned()),
    )]);
    let sent = serde_json::to_value(
        resource
            .create_body(&Host::new("/srv/root"), &profiles)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        sent["HostConfig"]["SecurityOpt"],
        serde_json::json!([
            r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}"#,
            "seccomp=unconfined"
        ])
    );
    // `systempaths=unconfined` is no option Docker keeps: empty masked and read-only paths.
    assert_eq!(sent["HostConfig"]["MaskedPaths"], serde_json::json!([]));
    assert_eq!(sent["HostConfig"]["ReadonlyPaths"], serde_json::json!([]));
    let missing = resource
        .create_body(&Host::new("/srv/root"), &BTreeMap::new())
        .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "the seccomp profile `/srv/root/etc/seccomp.json` does not exist"
    );
}

#[test]
fn runtime_is_passed_compared_only_when_set_and_refused_when_the_daemon_lacks_it() {
    let unset = container(&profile(""), "gitlab-dind", false);
    assert_eq!(body(&unset, "/")["HostConfig"]["Runtime"], Json::Null);
    let runc = container(
        &profile("[containers.gitlab-dind]\nruntime = \"runc\"\n"),
        "gitlab-dind",
        false,
    );
    assert_eq!(body(&runc, "/")["HostConfig"]["Runtime"], "runc");
    assert_ne!(runc.hash, unset.hash, "the runtime is part of the spec");
    let in_sync = runc.diff(&seen(&runc, Some(live(&runc))), &Earlier::default());
    assert!(told(&in_sync).is_empty(), "{:?}", told(&in_sync));
    // Unset, whatever runtime the daemon chose is not drift.
    let mut other = live(&unset);
    other.host_config.runtime = "crun".into();
    let in_sync = unset.diff(&seen(&unset, Some(other)), &Earlier::default());
    assert!(told(&in_sync).is_empty(), "{:?}", told(&in_sync));
    // Set, another runtime is: replaced, and said why.
    let mut other = live(&runc);
    other.host_config.runtime = "crun".into();
    assert_eq!(
        told(&runc.diff(&seen(&runc, Some(other)), &Earlier::default())),
        [
            "replace changed outside berth: runtime",
            "  runtime: \"crun\" → \"runc\"",
        ]
    );

    let sysbox = container(
        &profile("[containers.gitlab-dind]\nruntime = \"sysbox-runc\"\n"),
        "gitlab-dind",
        false,
    );
    let refused = sysbox.diff(&seen(&sysbox, None), &Earlier::default());
    let [change] = refused.changes.as_slice() else {
        panic!("{:?}", refused.changes);
    };
    let reason = change.0.refused.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("the Docker daemon has no runtime `sysbox-runc` (it has `io.containerd.runc.v2`, `runc`); install sysbox on the host"),
        "{reason}"
    );

    for (extra, problem) in [
        (
            "[containers.gitlab-dind]\nruntime = \"no such\"\n",
            "extra.toml:2:1: key `containers.gitlab-dind.runtime`: `no such` is not a runtime name",
        ),
        (
            "[containers.gitlab-dind]\nruntime = \"sysbox-runc\"\nprivileged = true\n",
            "extra.toml:3:1: key `containers.gitlab-dind.privileged`: sysbox-runc refuses privileged containers",
        ),
    ] {
        let error = Profile::from_sources(
            vec!["test".into()],
            &[
                TomlFile::new("base.toml", PROFILE),
                TomlFile::new("extra.toml", extra),
            ],
        )
        .unwrap_err();
        assert!(
            error.problem().to_string().starts_with(problem),
            "{}",
            error.problem()
        );
    }
}

#[test]
fn registry_mirrors_join_a_dind_command_once_and_skip_other_containers() {
    let mirrored = profile(
        "registry_mirrors = [\"https://m1.example\", \"https://m2.example/\"]\n[containers.gitlab-dind]\ncommand = [\"--tls=false\", \"--registry-mirror\", \"https://m2.example/\"]\n",
    );
    let dind = container(&mirrored, "gitlab-dind", false);
    assert_eq!(
        dind.spec.command.as_deref().unwrap(),
        [
            "--tls=false",
            "--registry-mirror",
            "https://m2.example/",
            "--registry-mirror=https://m1.example",
        ]
    );
    let runner = container(&mirrored, "gitlab-runner", false);
    assert_eq!(runner.spec.command, None, "not a dind container");
    assert_eq!(
        mirrored.docker.daemon["registry-mirrors"],
        serde_json::json!(["https://m1.example", "https://m2.example/"])
    );
}

#[test]
fn env_values_travel_in_the_request_body() {
    // Issue 18: argv is readable in /proc/*/cmdline by every local user; the body is not.
    let resource = container(
        &profile("[containers.gitlab-runner.env]\nRUNNER_SECRET = \"s3cr3t value #1\"\n"),
        "gitlab-runner",
        false,
    );
    let env = &body(&resource, "/")["Env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|line| line == "RUNNER_SECRET=s3cr3t value #1"),
        "{env}"
    );
}

#[test]
fn env_names_and_values_an_env_file_cannot_carry_are_refused() {
    for (env, expected) in [
        ("\"A B\" = \"x\"", "has no `=`, blank or leading `#`"),
        ("\"#A\" = \"x\"", "has no `=`, blank or leading `#`"),
        ("A = \"one\\ntwo\"", "is one line"),
    ] {
        let error = Profile::from_sources(
            vec!["test".into()],
            &[
                TomlFile::new("base.toml", PROFILE),
                TomlFile::new(
                    "extra.toml",
                    format!("[containers.gitlab-dind.env]\n{env}\n"),
                ),
            ],
        )
        .unwrap_err();
        let message = &error.problem().message;
        assert!(message.contains(expected), "{env}: {message}");
    }
}

#[test]
fn a_mount_or_a_dropped_capability_berth_never_set_is_drift_but_an_image_volume_is_not() {
    // Issue 18: someone with the Docker socket recreates a labelled container with `/` bound.
    let resource = container(&profile(""), "gitlab-dind", false);
    let mount = |kind: &str, name: &str, source: &str, destination: &str| MountPoint {
        kind: kind.into(),
        name: name.into(),
        source: source.into(),
        destination: destination.into(),
    };
    let anonymous = "0123456789abcdef".repeat(4);
    let mut usual = live(&resource);
    // What Docker reports by itself: the profile's volumes, and an anonymous volume for the
    // image's VOLUME (here the profile already mounts /var/lib/docker; the image's other one
    // is anonymous).
    usual.mounts = resource
        .spec
        .mounts
        .iter()
        .map(|wanted| mount("volume", "dind-data", "", &wanted.target))
        .collect();
    let Observed::Seen(mut seen_usual) = seen(&resource, Some(usual.clone())) else {
        unreachable!()
    };
    if let Some(image) = seen_usual.running_image.as_mut() {
        image
            .config
            .volumes
            .get_or_insert_default()
            .insert("/cache".into(), Json::Null);
    }
    let mut with_cache = usual.clone();
    with_cache
        .mounts
        .push(mount("volume", &anonymous, "", "/cache"));
    seen_usual.container = Some(with_cache);
    let in_sync = resource.diff(&Observed::Seen(seen_usual), &Earlier::default());
    assert!(told(&in_sync).is_empty(), "{:?}", told(&in_sync));

    let mut rooted = usual.clone();
    rooted.mounts.push(mount("bind", "", "/", "/host"));
    rooted.host_config.cap_drop = Some(vec!["CAP_AUDIT_WRITE".into()]);
    let drift = told(&resource.diff(&seen(&resource, Some(rooted)), &Earlier::default()));
    assert!(
        drift
            .iter()
            .any(|line| line == "  volumes[/host]: \"bind /\" → (absent)"),
        "{drift:?}"
    );
    assert!(
        drift
            .iter()
            .any(|line| line == "  cap_drop: [\"AUDIT_WRITE\"] → []"),
        "{drift:?}"
    );
    assert!(drift[0].starts_with("replace"), "{drift:?}");

    // A named volume at the image's VOLUME is not Docker's doing.
    let mut named = usual;
    named
        .mounts
        .push(mount("volume", "victim-data", "", "/cache"));
    let drift = told(&resource.diff(&seen(&resource, Some(named)), &Earlier::default()));
    assert!(
        drift
            .iter()
            .any(|line| line == "  volumes[/cache]: \"volume victim-data\" → (absent)"),
        "{drift:?}"
    );
}

#[test]
fn pull_always_on_an_image_pinned_by_digest_pulls_only_when_missing() {
    let digest =
        "docker:27-dind@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let pinned = profile(&format!(
        "[containers.gitlab-dind]\nimage = \"{digest}\"\npull = \"always\"\n"
    ));
    let tagged = profile("[containers.gitlab-dind]\npull = \"always\"\n");
    let pull = |profile: &Profile| container(profile, "gitlab-dind", false).spec.pull;
    assert_eq!(
        pull(&pinned),
        values::PullPolicy::Missing,
        "a digest cannot move: pulling it at every apply would never let the plan be in sync"
    );
    assert_eq!(pull(&tagged), values::PullPolicy::Always);
}

/// Maps sorted by key, so that a snapshot does not depend on a `HashMap`'s order.
fn sorted(value: Json) -> Json {
    match value {
        Json::Object(map) => {
            let mut entries: Vec<(String, Json)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Json::Array(items) => Json::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Every field of the spec, each as `docker container create` sent its flag for API 1.41.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "the profile and the body's snapshot read best whole"
)]
fn the_create_body_of_a_spec_using_every_field() {
    let every = profile(
        r#"
[containers.every]
image = "berth-test/every:1"
privileged = true
runtime = "runc"
restart = "on-failure:3"
networks = { ci-net = { aliases = ["a1", "a2"] }, other-net = {} }
volumes = ["/srv/data:/data:ro,z", "named:/named", "/anonymous"]
env = { B = "2", A = "one = 1" }
entrypoint = ["/bin/sh", "-c"]
command = ["echo hi"]
ports = ["2375", "127.0.0.1:8080:80/tcp", "[::1]::53/udp", "127.0.0.2:8080:80"]
labels = { team = "ci" }
user = "1000:1000"
workdir = "/work"
hostname = "every.ci"
cap_add = ["net_admin", "SYS_ADMIN"]
security_opt = ["seccomp:/etc/seccomp.json", "no-new-privileges", "systempaths=unconfined", "apparmor=unconfined"]
devices = ["/dev/fuse", "/dev/kvm:/dev/kvm:rw"]
stop_signal = "quit"
stop_timeout = 3600
pull = "never"
after = ["gitlab-dind"]
"#,
    );
    let resource = container(&every, "every", false);
    let seccomp = BTreeMap::from([(
        "seccomp:/etc/seccomp.json".to_owned(),
        Some(r#"{ "defaultAction": "SCMP_ACT_ERRNO", "syscalls": [ ] }"#.to_owned()),
    )]);
    let body = resource.create_body(&Host::new("/root"), &seccomp).unwrap();
    let mut json = sorted(serde_json::to_value(&body).unwrap());
    assert_eq!(json["Labels"]["berth.spec-hash"], resource.hash);
    json["Labels"]["berth.spec-hash"] = "[HASH]".into();
    insta::assert_snapshot!(serde_json::to_string_pretty(&json).unwrap(), @r#"
    {
      "AttachStderr": true,
      "AttachStdout": true,
      "Cmd": [
        "-c",
        "echo hi"
      ],
      "Entrypoint": [
        "/bin/sh"
      ],
      "Env": [
        "A=one = 1",
        "B=2"
      ],
      "ExposedPorts": {
        "2375/tcp": {},
        "53/udp": {},
        "80/tcp": {}
      },
      "HostConfig": {
        "Binds": [
          "/root/srv/data:/data:ro,z",
          "named:/named"
        ],
        "CapAdd": [
          "CAP_NET_ADMIN",
          "CAP_SYS_ADMIN"
        ],
        "Devices": [
          {
            "CgroupPermissions": "rwm",
            "PathInContainer": "/dev/fuse",
            "PathOnHost": "/root/dev/fuse"
          },
          {
            "CgroupPermissions": "rw",
            "PathInContainer": "/dev/kvm",
            "PathOnHost": "/root/dev/kvm"
          }
        ],
        "MaskedPaths": [],
        "NetworkMode": "ci-net",
        "PortBindings": {
          "2375/tcp": [
            {
              "HostIp": "",
              "HostPort": ""
            }
          ],
          "53/udp": [
            {
              "HostIp": "::1",
              "HostPort": ""
            }
          ],
          "80/tcp": [
            {
              "HostIp": "127.0.0.1",
              "HostPort": "8080"
            },
            {
              "HostIp": "127.0.0.2",
              "HostPort": "8080"
            }
          ]
        },
        "Privileged": true,
        "ReadonlyPaths": [],
        "RestartPolicy": {
          "MaximumRetryCount": 3,
          "Name": "on-failure"
        },
        "Runtime": "runc",
        "SecurityOpt": [
          "seccomp={\"defaultAction\":\"SCMP_ACT_ERRNO\",\"syscalls\":[]}",
          "no-new-privileges",
          "apparmor=unconfined"
        ]
      },
      "Hostname": "every.ci",
      "Image": "berth-test/every:1",
      "Labels": {
        "berth.instance": "",
        "berth.managed": "true",
        "berth.profile": "test",
        "berth.spec-hash": "[HASH]",
        "team": "ci"
      },
      "NetworkingConfig": {
        "EndpointsConfig": {
          "ci-net": {
            "Aliases": [
              "a1",
              "a2"
            ]
          }
        }
      },
      "StopSignal": "SIGQUIT",
      "StopTimeout": 3600,
      "User": "1000:1000",
      "Volumes": {
        "/anonymous": {}
      },
      "WorkingDir": "/work"
    }
    "#);
}
