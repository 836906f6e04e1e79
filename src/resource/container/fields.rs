//! Every field of [`ContainerSpec`] in one table: all of them set, each changed in turn, and the
//! spec hash changes and drift, against the container as Docker reports the original, names
//! the field. The table and [`reported`] take the spec apart without `..`: a field added to the
//! spec does not compile until it has a row here (and says how Docker reports it), and its row
//! fails until the hash and drift know it, and the docs name it. A field that steers berth
//! alone has a row that says so: its change neither replaces the container nor is drift.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::{
    Container, Seen,
    spec::ContainerSpec,
    tests::{container, profile},
    values::{Device, Mount, MountSource, Port, PullPolicy, RestartPolicy},
};
use crate::{
    docker::{
        labels::{LABEL_MANAGED, LABEL_SPEC_HASH},
        wire::{
            Config, ContainerInfo, ContainerState, DeviceInfo, Endpoint, HostConfig, ImageInfo,
            LogConfig, MountPoint, NetworkId, NetworkSettings, PortBindingInfo, RestartPolicyInfo,
        },
    },
    host::Host,
    resource::docker_object::ObjectName,
};

const IMAGE_ID: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const CONTAINER_ID: &str = "fedcba98765432100123456789abcdef";

/// The golden profile that sets every field of container `app`, over the diff tests' base
/// profile (whose containers `app` knows nothing of).
fn every_field() -> Container {
    let golden: toml::Table =
        toml::from_str(include_str!("../../../tests/fixtures/spec-hashes.toml")).unwrap();
    let text = golden["every-field"]["profile"].as_str().unwrap();
    container(&profile(text), "app", false)
}

/// The image `app` runs, with what an image contributes: env and a label.
fn image(reference: &str) -> ImageInfo {
    ImageInfo {
        id: IMAGE_ID.into(),
        repo_tags: Some(vec![reference.into()]),
        repo_digests: None,
        config: Config {
            env: Some(vec!["PATH=/usr/bin:/bin".into()]),
            labels: Some(BTreeMap::from([("maintainer".into(), "someone".into())])),
            ..Config::default()
        },
    }
}

fn network_id(name: &ObjectName) -> NetworkId {
    format!("id-of-{name}").into()
}

/// What `docker container inspect` reports for the container berth created from `resource`
/// (Docker 20.10): the image's env and labels merged in, the entrypoint's first word alone
/// (`--entrypoint` takes one; the rest leads the command), the short ID as an alias, a
/// privileged container's `label=disable`, unset host IPs as "".
#[expect(
    clippy::too_many_lines,
    reason = "every field of the spec, as Docker reports it"
)]
fn reported(resource: &Container) -> ContainerInfo {
    let ContainerSpec {
        name,
        image: reference,
        privileged,
        runtime,
        restart,
        networks,
        mounts,
        env,
        command,
        entrypoint,
        ports,
        labels,
        user,
        workdir,
        hostname,
        cap_add,
        security_opt,
        devices,
        stop_signal,
        stop_timeout,
        pull: _,
        after: _,
        dind: _,
        prepull: _,
    } = &*resource.spec;
    let host = Host::new("/");
    let contributed = image(reference).config;
    let short_id = &CONTAINER_ID[..12];

    let mut live_env = contributed.env.clone().unwrap_or_default();
    live_env.extend(env.iter().map(|(key, value)| format!("{key}={value}")));
    let mut live_labels = contributed.labels.clone().unwrap_or_default();
    live_labels.extend(labels.clone());
    live_labels.insert(LABEL_MANAGED.into(), "true".into());
    live_labels.insert(LABEL_SPEC_HASH.into(), resource.hash.clone());
    let argv: Vec<String> = entrypoint
        .iter()
        .flatten()
        .chain(command.iter().flatten())
        .cloned()
        .collect();
    let (live_entrypoint, live_cmd) = match entrypoint {
        Some(_) => (Some(argv[..1].to_vec()), Some(argv[1..].to_vec())),
        None => (contributed.entrypoint.clone(), command.clone()),
    };
    let (policy, retries) = match restart {
        RestartPolicy::OnFailure(retries) => ("on-failure".to_owned(), retries.unwrap_or(0)),
        other => (other.to_string(), 0),
    };
    let mut port_bindings: BTreeMap<String, Option<Vec<PortBindingInfo>>> = BTreeMap::new();
    for port in ports {
        port_bindings
            .entry(port.key())
            .or_default()
            .get_or_insert_default()
            .push(PortBindingInfo {
                host_ip: port.host_ip.clone(),
                host_port: port.host_port.clone(),
            });
    }
    let mut live_security = security_opt.clone();
    if *privileged {
        live_security.push("label=disable".into());
    }
    let anonymous = "0123456789abcdef".repeat(4);
    ContainerInfo {
        id: CONTAINER_ID.into(),
        name: format!("/{name}"),
        image: IMAGE_ID.into(),
        state: ContainerState {
            status: "running".into(),
            running: true,
            started_at: String::new(),
        },
        config: Config {
            image: reference.clone(),
            env: Some(live_env),
            cmd: live_cmd,
            entrypoint: live_entrypoint,
            labels: Some(live_labels),
            user: user.clone().unwrap_or_default(),
            working_dir: workdir.clone().unwrap_or_default(),
            hostname: hostname.clone().unwrap_or_else(|| short_id.to_owned()),
            stop_signal: stop_signal.clone(),
            stop_timeout: *stop_timeout,
            volumes: Some(
                mounts
                    .iter()
                    .filter(|mount| mount.source == MountSource::Anonymous)
                    .map(|mount| (mount.target.clone(), Json::Null))
                    .collect(),
            ),
        },
        host_config: HostConfig {
            binds: Some(
                mounts
                    .iter()
                    .filter_map(|mount| mount.bind_argument(&host))
                    .collect(),
            ),
            privileged: *privileged,
            runtime: runtime.clone().unwrap_or_else(|| "runc".into()),
            restart_policy: RestartPolicyInfo {
                name: policy.into(),
                maximum_retry_count: retries,
            },
            port_bindings: Some(port_bindings),
            cap_add: Some(cap_add.clone()),
            cap_drop: None,
            security_opt: Some(live_security),
            // A privileged container has no masked or read-only paths at all.
            masked_paths: (!privileged).then(|| vec!["/proc/kcore".into()]),
            readonly_paths: (!privileged).then(|| vec!["/proc/sys".into()]),
            devices: Some(
                devices
                    .iter()
                    .map(|device| DeviceInfo {
                        path_on_host: host.path(&device.host).display().to_string(),
                        path_in_container: device.container.clone(),
                        cgroup_permissions: device.permissions.clone(),
                    })
                    .collect(),
            ),
            log_config: LogConfig::default(),
        },
        network_settings: NetworkSettings {
            networks: Some(
                networks
                    .iter()
                    .map(|(network, aliases)| {
                        let mut aliases = aliases.clone();
                        aliases.push(short_id.to_owned());
                        (
                            network.to_string(),
                            Endpoint {
                                aliases: Some(aliases),
                                network_id: network_id(network),
                            },
                        )
                    })
                    .collect(),
            ),
        },
        mounts: mounts
            .iter()
            .map(|mount| {
                let (kind, volume, source) = match &mount.source {
                    MountSource::Bind(path) => ("bind", String::new(), path.to_string()),
                    MountSource::Volume(volume) => ("volume", volume.to_string(), String::new()),
                    MountSource::Anonymous => ("volume", anonymous.clone(), String::new()),
                };
                MountPoint {
                    kind: kind.into(),
                    name: volume,
                    source,
                    destination: mount.target.clone(),
                }
            })
            .collect(),
    }
}

/// What observe sees of the container Docker reports as `live`.
fn seen(resource: &Container, live: ContainerInfo) -> Seen {
    Seen {
        host: Host::new("/"),
        container: Some(live),
        image: Some(image(&resource.spec.image)),
        running_image: Some(image(&resource.spec.image)),
        network_ids: resource
            .spec
            .networks
            .keys()
            .map(|network| (network.to_string(), network_id(network)))
            .collect(),
        missing_sources: Vec::new(),
        seccomp_profiles: BTreeMap::new(),
        runtimes: Some(vec!["runc".into(), "crun".into()]),
        set_aside: None,
        intent: None,
    }
}

/// The paths of every field drift names.
fn drifted(resource: &Container, live: &ContainerInfo) -> Vec<String> {
    let drift = resource.drift(live, &seen(resource, live.clone()));
    drift
        .replace
        .iter()
        .chain(drift.update.iter().map(|(field, _)| field))
        .map(|field| field.path.clone())
        .collect()
}

fn parsed<T: TryFrom<String, Error = String>>(text: &str) -> T {
    T::try_from(text.to_owned()).unwrap()
}

#[test]
#[expect(clippy::too_many_lines, reason = "one row per field of the spec")]
fn every_field_changes_the_hash_and_is_named_by_drift() {
    let original = every_field();
    let live = reported(&original);
    assert_eq!(
        drifted(&original, &live),
        Vec::<String>::new(),
        "the container as Docker reports it is in sync with its spec"
    );
    let ContainerSpec {
        name,
        image,
        privileged,
        runtime,
        restart,
        networks,
        mounts,
        env,
        command,
        entrypoint,
        ports,
        labels,
        user,
        workdir,
        hostname,
        cap_add,
        security_opt,
        devices,
        stop_signal,
        stop_timeout,
        pull,
        after,
        dind,
        prepull,
    } = (*original.spec).clone();
    let with = |change: &dyn Fn(&mut ContainerSpec)| {
        let mut spec = (*original.spec).clone();
        change(&mut spec);
        spec
    };
    let pushed = |items: &[String], item: &str| {
        let mut items = items.to_vec();
        items.push(item.to_owned());
        items
    };
    // Each row: the field (by its key in the profile), the spec with that field changed, the
    // path drift names it by
    // (`None`: not what the container runs, so neither hashed nor compared: the name Docker
    // finds it by, or what steers berth alone).
    let rows: Vec<(&str, ContainerSpec, Option<&str>)> = vec![
        (
            "name",
            with(&|spec| spec.name = parsed(&format!("{name}-2"))),
            None,
        ),
        (
            "image",
            with(&|spec| spec.image = format!("{image}-next")),
            Some("image"),
        ),
        (
            "privileged",
            with(&|spec| spec.privileged = !privileged),
            Some("privileged"),
        ),
        (
            "runtime",
            with(&|spec| spec.runtime = Some(format!("{}-other", runtime.clone().unwrap()))),
            Some("runtime"),
        ),
        (
            "restart",
            with(&|spec| {
                assert_ne!(restart, RestartPolicy::UnlessStopped);
                spec.restart = RestartPolicy::UnlessStopped;
            }),
            Some("restart"),
        ),
        (
            "networks",
            with(&|spec| {
                let mut changed = networks.clone();
                changed[0].push("another-alias".into());
                spec.networks = changed;
            }),
            Some("networks."),
        ),
        (
            "volumes",
            with(&|spec| {
                let mut changed = mounts.clone();
                changed.push(parsed::<Mount>("/srv/more:/more"));
                spec.mounts = changed;
            }),
            Some("volumes["),
        ),
        (
            "env",
            with(&|spec| {
                let mut changed = env.clone();
                changed.insert("ADDED".into(), "1".into());
                spec.env = changed;
            }),
            Some("env."),
        ),
        (
            "command",
            with(&|spec| spec.command = Some(pushed(command.as_deref().unwrap(), "--debug"))),
            Some("command"),
        ),
        (
            "entrypoint",
            with(&|spec| {
                let mut changed = entrypoint.clone().unwrap();
                changed[0] = "/sbin/other-init".into();
                spec.entrypoint = Some(changed);
            }),
            Some("entrypoint"),
        ),
        (
            "ports",
            with(&|spec| {
                let mut changed = ports.clone();
                changed.push(parsed::<Port>("9090:90"));
                spec.ports = changed;
            }),
            Some("ports["),
        ),
        (
            "labels",
            with(&|spec| {
                let mut changed = labels.clone();
                changed.insert("added".into(), "1".into());
                spec.labels = changed;
            }),
            Some("labels."),
        ),
        (
            "user",
            with(&|spec| spec.user = Some(format!("{}0", user.clone().unwrap()))),
            Some("user"),
        ),
        (
            "workdir",
            with(&|spec| spec.workdir = Some(format!("{}/sub", workdir.clone().unwrap()))),
            Some("workdir"),
        ),
        (
            "hostname",
            with(&|spec| spec.hostname = Some(format!("other-{}", hostname.clone().unwrap()))),
            Some("hostname"),
        ),
        (
            "cap_add",
            with(&|spec| spec.cap_add = pushed(&cap_add, "SYS_PTRACE")),
            Some("cap_add"),
        ),
        (
            "security_opt",
            with(&|spec| spec.security_opt = pushed(&security_opt, "label=type:container_t")),
            Some("security_opt"),
        ),
        (
            "devices",
            with(&|spec| {
                let mut changed = devices.clone();
                changed.push(parsed::<Device>("/dev/kvm"));
                spec.devices = changed;
            }),
            Some("devices"),
        ),
        (
            "stop_signal",
            with(&|spec| {
                assert_ne!(stop_signal.as_deref(), Some("SIGTERM"));
                spec.stop_signal = Some("SIGTERM".into());
            }),
            Some("stop_signal"),
        ),
        (
            "stop_timeout",
            with(&|spec| spec.stop_timeout = stop_timeout.map(|seconds| seconds + 1)),
            Some("stop_timeout"),
        ),
        (
            "pull",
            with(&|spec| {
                assert_ne!(pull, PullPolicy::Never);
                spec.pull = PullPolicy::Never;
            }),
            None,
        ),
        (
            "after",
            with(&|spec| spec.after = after.iter().cloned().chain([parsed("later")]).collect()),
            None,
        ),
        ("dind", with(&|spec| spec.dind = !dind), None),
        (
            "prepull",
            with(&|spec| {
                spec.prepull = prepull
                    .iter()
                    .cloned()
                    .chain(["busybox:1".to_owned()])
                    .collect()
            }),
            None,
        ),
    ];
    let documented = |text: &str, field: &str| {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| word == field)
    };
    for (field, changed, named) in rows {
        for (doc, text) in [
            (
                "docs/container.md",
                include_str!("../../../docs/container.md"),
            ),
            ("README.md", include_str!("../../../README.md")),
        ] {
            assert!(documented(text, field), "{field}: not in {doc}");
        }
        assert_ne!(changed, *original.spec, "{field}: the row changes nothing");
        let mut resource = every_field();
        resource.hash = changed.spec_hash();
        *resource.spec = changed;
        let paths = drifted(&resource, &live);
        match named {
            Some(prefix) => {
                assert_ne!(
                    resource.hash, original.hash,
                    "{field}: not in the spec hash"
                );
                assert!(
                    !paths.is_empty() && paths.iter().all(|path| path.starts_with(prefix)),
                    "{field}: drift names {paths:?}, not `{prefix}`"
                );
            }
            None => {
                assert_eq!(resource.hash, original.hash, "{field}: steers berth alone");
                assert_eq!(paths, Vec::<String>::new(), "{field}: steers berth alone");
            }
        }
    }
}
