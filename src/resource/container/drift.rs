//! How a live container differs from the profile, field group by field group: what only a
//! new container can fix (`replace`), and what Docker repairs in place (`update`, each with its
//! [`Repair`]). Pure: it reads what `observe` saw and touches nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use super::{
    Container, Seen,
    spec::ContainerSpec,
    values::{MountSource, RestartPolicy, normalize_capability, normalize_signal},
};
use crate::{
    docker::{
        labels::Labelled,
        wire::{Config, ContainerInfo, normalize_reference, short_image_id},
    },
    host::Host,
    plan::FieldChange,
    resource::docker_object,
    secret::{Fingerprint, REDACTED, is_secret_env},
};

/// How a live container differs from the profile.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Drift {
    /// Set when the recorded spec hash is not the profile's.
    pub(super) hash_changed: Option<RecordedHash>,
    /// Differences only a new container can fix.
    pub(super) replace: Vec<FieldChange>,
    /// Differences Docker can fix in place: restart policy, network attachments.
    pub(super) update: Vec<(FieldChange, Repair)>,
}

/// The spec hash a container carries (`None`: it carries none, made by an old berth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RecordedHash(pub(super) Option<String>);

/// One in-place repair, as `docker container update` or `docker network (dis)connect` make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Repair {
    /// `docker container update --restart` to the profile's policy.
    RestartPolicy,
    /// Disconnects the container from `name` when it is `attached`, then connects it with
    /// `aliases` (`None`: the profile does not put it on that network).
    Network {
        name: String,
        attached: bool,
        aliases: Option<Vec<String>>,
    },
}

pub(super) const SYSTEMPATHS_UNCONFINED: &str = "systempaths=unconfined";

/// A seccomp profile compared as JSON (keys sorted, no whitespace), whether read from the file
/// the profile names or from what Docker kept; `None` for text that is not JSON.
fn seccomp_key(profile: &str) -> Option<String> {
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
    let value: Json = serde_json::from_str(profile).ok()?;
    Some(format!("seccomp={}", sorted(value)))
}

pub(super) fn json_list(items: &[String]) -> Json {
    Json::from(items.to_vec())
}

pub(super) fn text(value: &str) -> Json {
    Json::from(value)
}

/// An env value as the plan shows it: as written, unless the variable's name says it carries a
/// credential; then `*** (3f2a…)`, its fingerprint, so a changed secret is still seen to change
/// without the plan, the report or the journal ever holding it.
fn env_value(name: &str, value: &str) -> Json {
    if is_secret_env(name) {
        Json::from(format!("{REDACTED} ({})", Fingerprint::of(value).short()))
    } else {
        text(value)
    }
}

impl Container {
    /// Compares a container berth created with the profile.
    pub(super) fn drift(&self, live: &ContainerInfo, seen: &Seen) -> Drift {
        let spec = &self.spec;
        let mut drift = Drift::default();
        let recorded = live.config.spec_hash();
        if recorded != Some(self.hash.as_str()) {
            drift.hash_changed = Some(RecordedHash(recorded.map(str::to_owned)));
        }
        let replace = &mut drift.replace;
        // What the image contributed, when the image the container runs is known.
        let contributed: Option<&Config> = seen.running_image.as_ref().map(|image| &image.config);
        let config = &live.config;
        self.compare_image(live, seen, replace);
        self.compare_env(config, contributed, replace);
        self.compare_labels(config, contributed, replace);
        self.compare_command(config, contributed, replace);
        self.compare_mounts(live, contributed, &seen.host, replace);
        compare_ports(spec, live, replace);
        self.compare_privileges(live, seen, replace);
        self.compare_process(config, contributed, replace);

        // In place: the restart policy and the network attachments.
        let live_restart = RestartPolicy::from_docker(&live.host_config.restart_policy);
        if live_restart != spec.restart {
            drift.update.push((
                FieldChange::new(
                    "restart",
                    Some(text(&live_restart.to_string())),
                    Some(text(&spec.restart.to_string())),
                ),
                Repair::RestartPolicy,
            ));
        }
        self.compare_networks(live, seen, &mut drift.update);
        drift
    }

    /// The image: another reference, or the same tag now naming another image.
    fn compare_image(&self, live: &ContainerInfo, seen: &Seen, replace: &mut Vec<FieldChange>) {
        let spec = &self.spec;
        let config = &live.config;
        if normalize_reference(&config.image) != normalize_reference(&spec.image) {
            replace.push(FieldChange::new(
                "image",
                Some(text(&config.image)),
                Some(text(&spec.image)),
            ));
        } else if let Some(image) = &seen.image
            && image.id != live.image
        {
            replace.push(FieldChange::new(
                "image",
                Some(text(&format!(
                    "{} ({})",
                    spec.image,
                    short_image_id(&live.image)
                ))),
                Some(text(&format!(
                    "{} ({})",
                    spec.image,
                    short_image_id(&image.id)
                ))),
            ));
        }
    }

    /// Privileged, runtime, capabilities, security options and devices.
    fn compare_privileges(
        &self,
        live: &ContainerInfo,
        seen: &Seen,
        replace: &mut Vec<FieldChange>,
    ) {
        let spec = &self.spec;
        if live.host_config.privileged != spec.privileged {
            replace.push(FieldChange::new(
                "privileged",
                Some(Json::from(live.host_config.privileged)),
                Some(Json::from(spec.privileged)),
            ));
        }
        // Unset, the daemon's default runtime (`runc`, or what daemon.json's `default-runtime`
        // names) runs it: only a runtime the profile sets is compared.
        if let Some(runtime) = &spec.runtime
            && live.host_config.runtime != *runtime
        {
            replace.push(FieldChange::new(
                "runtime",
                Some(text(&live.host_config.runtime)),
                Some(text(runtime)),
            ));
        }

        let set = |items: &[String], normalize: fn(&str) -> String| -> BTreeSet<String> {
            items.iter().map(|item| normalize(item)).collect()
        };
        let live_caps = set(
            live.host_config.cap_add.as_deref().unwrap_or_default(),
            normalize_capability,
        );
        let wanted_caps = set(&spec.cap_add, normalize_capability);
        if live_caps != wanted_caps {
            replace.push(FieldChange::new(
                "cap_add",
                Some(Json::from(live_caps.into_iter().collect::<Vec<_>>())),
                Some(Json::from(wanted_caps.into_iter().collect::<Vec<_>>())),
            ));
        }
        // berth never drops a capability: any the container lacks was dropped by whoever
        // created it, not by berth (issue 18).
        let live_dropped = set(
            live.host_config.cap_drop.as_deref().unwrap_or_default(),
            normalize_capability,
        );
        if !live_dropped.is_empty() {
            replace.push(FieldChange::new(
                "cap_drop",
                Some(Json::from(live_dropped.into_iter().collect::<Vec<_>>())),
                Some(Json::from(Vec::<String>::new())),
            ));
        }
        let (live_security, wanted_security) = self.security_options(live, seen);
        if live_security.keys().ne(wanted_security.keys()) {
            replace.push(FieldChange::new(
                "security_opt",
                Some(Json::from(
                    live_security
                        .iter()
                        .map(|(key, reported)| wanted_security.get(key).unwrap_or(reported).clone())
                        .collect::<Vec<_>>(),
                )),
                Some(Json::from(spec.security_opt.clone())),
            ));
        }
        let live_devices: BTreeSet<String> = live
            .host_config
            .devices
            .iter()
            .flatten()
            .map(|device| {
                format!(
                    "{}:{}:{}",
                    device.path_on_host, device.path_in_container, device.cgroup_permissions
                )
            })
            .collect();
        let wanted_devices: BTreeSet<String> = spec
            .devices
            .iter()
            .map(|device| device.argument(&seen.host))
            .collect();
        if live_devices != wanted_devices {
            replace.push(FieldChange::new(
                "devices",
                Some(Json::from(live_devices.into_iter().collect::<Vec<_>>())),
                Some(Json::from(wanted_devices.into_iter().collect::<Vec<_>>())),
            ));
        }
    }

    /// The live container's security options and the profile's, each keyed by what Docker
    /// keeps for it and valued as it is spelled (by Docker, by the profile), so that an option
    /// Docker rewrites compares equal to the profile's:
    /// - `systempaths=unconfined` is not kept; it leaves empty masked and read-only paths;
    /// - `seccomp=FILE` is kept as `seccomp=` and the file's JSON (compared as JSON);
    /// - a privileged container gains `label=disable`;
    /// - everything else (`label=...`, `no-new-privileges[=true]`, `apparmor=...`,
    ///   `seccomp=unconfined`) is kept as written.
    fn security_options(
        &self,
        live: &ContainerInfo,
        seen: &Seen,
    ) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let wanted: BTreeMap<String, String> = self
            .spec
            .security_opt
            .iter()
            .map(|option| {
                let key = seen
                    .seccomp_profiles
                    .get(option)
                    .and_then(Option::as_deref)
                    .and_then(seccomp_key)
                    .unwrap_or_else(|| option.clone());
                (key, option.clone())
            })
            .collect();
        let host_config = &live.host_config;
        let mut reported: BTreeMap<String, String> = host_config
            .security_opt
            .iter()
            .flatten()
            .filter(|option| {
                !(host_config.privileged
                    && option.as_str() == "label=disable"
                    && !wanted.contains_key(option.as_str()))
            })
            .map(|option| {
                let key = option
                    .strip_prefix("seccomp=")
                    .filter(|value| value.starts_with('{'))
                    .and_then(seccomp_key)
                    .unwrap_or_else(|| option.clone());
                (key, option.clone())
            })
            .collect();
        let unconfined = |paths: &Option<Vec<String>>| paths.as_ref().is_some_and(Vec::is_empty);
        if unconfined(&host_config.masked_paths) && unconfined(&host_config.readonly_paths) {
            reported.insert(SYSTEMPATHS_UNCONFINED.into(), SYSTEMPATHS_UNCONFINED.into());
        }
        (reported, wanted)
    }

    /// Env: the profile's values must be there; anything else must be the image's.
    fn compare_env(
        &self,
        config: &Config,
        contributed: Option<&Config>,
        replace: &mut Vec<FieldChange>,
    ) {
        let spec = &self.spec;
        let live_env = config.env_map();
        let image_env = contributed.map(Config::env_map);
        for (key, value) in &spec.env {
            if live_env.get(key.as_str()) != Some(&value.as_str()) {
                replace.push(FieldChange::new(
                    format!("env.{key}"),
                    live_env.get(key.as_str()).map(|live| env_value(key, live)),
                    Some(env_value(key, value)),
                ));
            }
        }
        if let Some(image_env) = &image_env {
            for (key, value) in &live_env {
                if spec.env.contains_key(*key) || image_env.get(key) == Some(value) {
                    continue;
                }
                replace.push(FieldChange::new(
                    format!("env.{key}"),
                    Some(env_value(key, value)),
                    image_env.get(key).map(|image| env_value(key, image)),
                ));
            }
        }
    }

    /// Labels: the same as env, less berth's own.
    fn compare_labels(
        &self,
        config: &Config,
        contributed: Option<&Config>,
        replace: &mut Vec<FieldChange>,
    ) {
        let spec = &self.spec;
        let live_labels = config.labels.clone().unwrap_or_default();
        for (key, value) in &spec.labels {
            if live_labels.get(key) != Some(value) {
                replace.push(FieldChange::new(
                    format!("labels.{key}"),
                    live_labels.get(key).map(|value| text(value)),
                    Some(text(value)),
                ));
            }
        }
        if let Some(image) = contributed {
            let image_labels = image.labels.clone().unwrap_or_default();
            for (key, value) in &live_labels {
                if key.starts_with("berth.")
                    || spec.labels.contains_key(key)
                    || image_labels.get(key) == Some(value)
                {
                    continue;
                }
                replace.push(FieldChange::new(
                    format!("labels.{key}"),
                    Some(text(value)),
                    image_labels.get(key).map(|value| text(value)),
                ));
            }
        }
    }

    /// User, working directory, stop signal and timeout. Unset in the profile means "the
    /// image's": compared only when that is known.
    fn compare_process(
        &self,
        config: &Config,
        contributed: Option<&Config>,
        replace: &mut Vec<FieldChange>,
    ) {
        let spec = &self.spec;
        // Unset, Docker names the container after its ID: only a hostname the profile sets is
        // compared.
        if let Some(hostname) = &spec.hostname
            && config.hostname != *hostname
        {
            replace.push(FieldChange::new(
                "hostname",
                Some(text(&config.hostname)),
                Some(text(hostname)),
            ));
        }
        let mut compare_text =
            |path: &str, live: &str, wanted: Option<&str>, image: Option<&str>| {
                let wanted = match (wanted, contributed) {
                    (Some(wanted), _) => wanted.to_owned(),
                    (None, Some(_)) => image.unwrap_or_default().to_owned(),
                    (None, None) => return,
                };
                if live != wanted {
                    replace.push(FieldChange::new(
                        path,
                        Some(text(live)),
                        Some(text(&wanted)),
                    ));
                }
            };
        compare_text(
            "user",
            &config.user,
            spec.user.as_deref(),
            contributed.map(|image| image.user.as_str()),
        );
        compare_text(
            "workdir",
            &config.working_dir,
            spec.workdir.as_deref(),
            contributed.map(|image| image.working_dir.as_str()),
        );
        let live_signal = normalize_signal(config.stop_signal.as_deref().unwrap_or_default());
        let image_signal = contributed
            .map(|image| normalize_signal(image.stop_signal.as_deref().unwrap_or_default()));
        compare_text(
            "stop_signal",
            &live_signal,
            spec.stop_signal.as_deref(),
            image_signal.as_deref(),
        );
        if config.stop_timeout != spec.stop_timeout {
            replace.push(FieldChange::new(
                "stop_timeout",
                config.stop_timeout.map(Json::from),
                spec.stop_timeout.map(Json::from),
            ));
        }
    }

    fn compare_command(
        &self,
        config: &Config,
        image: Option<&Config>,
        replace: &mut Vec<FieldChange>,
    ) {
        let spec = &self.spec;
        let live_entrypoint = config.entrypoint.clone().unwrap_or_default();
        let live_cmd = config.cmd.clone().unwrap_or_default();
        let mut push = |path: &str, live: &[String], wanted: &[String]| {
            if live != wanted {
                replace.push(FieldChange::new(
                    path,
                    Some(json_list(live)),
                    Some(json_list(wanted)),
                ));
            }
        };
        match &spec.entrypoint {
            // `--entrypoint` took the first word; the rest led the arguments. Split the live
            // argv at the same place to compare like with like.
            Some(entrypoint) => {
                let argv: Vec<String> = live_entrypoint.into_iter().chain(live_cmd).collect();
                let split = entrypoint.len().min(argv.len());
                push("entrypoint", &argv[..split], entrypoint);
                push(
                    "command",
                    &argv[split..],
                    spec.command.as_deref().unwrap_or_default(),
                );
            }
            None => {
                if let Some(image) = image {
                    push(
                        "entrypoint",
                        &live_entrypoint,
                        image.entrypoint.as_deref().unwrap_or_default(),
                    );
                }
                match (&spec.command, image) {
                    (Some(command), _) => push("command", &live_cmd, command),
                    (None, Some(image)) => {
                        push(
                            "command",
                            &live_cmd,
                            image.cmd.as_deref().unwrap_or_default(),
                        );
                    }
                    (None, None) => {}
                }
            }
        }
    }

    /// Binds (host paths and named volumes) by target; anonymous volumes must be among the
    /// container's volumes (which also lists the image's VOLUMEs, so extras are fine).
    fn compare_mounts(
        &self,
        live: &ContainerInfo,
        contributed: Option<&Config>,
        host: &Host,
        replace: &mut Vec<FieldChange>,
    ) {
        let target_of =
            |bind: &str| -> String { bind.split(':').nth(1).unwrap_or(bind).to_owned() };
        let live_binds: BTreeMap<String, String> = live
            .host_config
            .binds
            .iter()
            .flatten()
            .map(|bind| (target_of(bind), bind.clone()))
            .collect();
        let wanted_binds: BTreeMap<String, String> = self
            .spec
            .mounts
            .iter()
            .filter_map(|mount| {
                mount
                    .bind_argument(host)
                    .map(|argument| (mount.target.clone(), argument))
            })
            .collect();
        replace.extend(docker_object::keyed_fields(
            &live_binds,
            &wanted_binds,
            |target| format!("volumes[{target}]"),
            |bind| text(bind),
        ));
        let live_anonymous = live.config.volumes.clone().unwrap_or_default();
        // A mount berth never asked for (`--mount type=bind,src=/,...` or `--volumes-from` by
        // someone with the Docker socket, on a container wearing berth's labels) is drift
        // (issue 18); `Binds` above show only `-v`. What Docker adds by itself, an anonymous
        // volume (a random 64-hex name) for a VOLUME of the image, is not.
        let image_volumes = contributed
            .map_or(&live.config, |image| image)
            .volumes
            .as_ref();
        let is_anonymous =
            |name: &str| name.len() == 64 && name.bytes().all(|byte| byte.is_ascii_hexdigit());
        let wanted_targets: BTreeSet<&str> = self
            .spec
            .mounts
            .iter()
            .map(|mount| mount.target.as_str())
            .collect();
        for mount in &live.mounts {
            let target = mount.destination.as_str();
            let explained = wanted_targets.contains(target)
                || live_binds.contains_key(target)
                || (mount.kind == "volume"
                    && is_anonymous(&mount.name)
                    && image_volumes.is_some_and(|volumes| volumes.contains_key(target)));
            if !explained {
                let from = if mount.kind == "volume" {
                    &mount.name
                } else {
                    &mount.source
                };
                replace.push(FieldChange::new(
                    format!("volumes[{target}]"),
                    Some(text(&format!("{} {from}", mount.kind))),
                    None,
                ));
            }
        }
        for mount in &self.spec.mounts {
            if mount.source == MountSource::Anonymous
                && !live_anonymous.contains_key(&mount.target)
                && !live_binds.contains_key(&mount.target)
            {
                replace.push(FieldChange::new(
                    format!("volumes[{}]", mount.target),
                    None,
                    Some(text("anonymous volume")),
                ));
            }
        }
    }

    fn compare_networks(
        &self,
        live: &ContainerInfo,
        seen: &Seen,
        update: &mut Vec<(FieldChange, Repair)>,
    ) {
        if self.spec.networks.is_empty() {
            // Docker's choice (the default bridge) is not berth's to keep.
            return;
        }
        let attached = live.networks();
        for (network, aliases) in &self.spec.networks {
            let wanted: BTreeSet<&String> = aliases.iter().collect();
            let path = format!("networks.{network}");
            let reconnect = |attached: bool| Repair::Network {
                name: network.to_string(),
                attached,
                aliases: Some(aliases.clone()),
            };
            let Some(endpoint) = attached.get(network.as_str()) else {
                update.push((
                    FieldChange::new(path, None, Some(json_list(aliases))),
                    reconnect(false),
                ));
                continue;
            };
            // An endpoint that names a network ID which is no longer the network of that name:
            // the network was removed (and maybe created again) under the container.
            if !endpoint.network_id.is_empty()
                && seen.network_ids.get(network.as_str()) != Some(&endpoint.network_id)
            {
                update.push((
                    FieldChange::new(
                        path,
                        Some(text("attached to a network that no longer exists")),
                        Some(json_list(aliases)),
                    ),
                    reconnect(true),
                ));
                continue;
            }
            let have: BTreeSet<&String> = endpoint
                .aliases
                .iter()
                .flatten()
                // An alias the profile asks for counts even when Docker would add it anyway.
                .filter(|alias| wanted.contains(alias) || !live.is_automatic_alias(alias))
                .collect();
            if have != wanted {
                update.push((
                    FieldChange::new(
                        path,
                        Some(Json::from(have.into_iter().cloned().collect::<Vec<_>>())),
                        Some(json_list(aliases)),
                    ),
                    reconnect(true),
                ));
            }
        }
        for (network, endpoint) in attached {
            if !self
                .spec
                .networks
                .keys()
                .any(|name| name.as_str() == network)
            {
                update.push((
                    FieldChange::new(
                        format!("networks.{network}"),
                        Some(Json::from(endpoint.aliases.clone().unwrap_or_default())),
                        None,
                    ),
                    Repair::Network {
                        name: network.clone(),
                        attached: true,
                        aliases: None,
                    },
                ));
            }
        }
    }
}

fn compare_ports(spec: &ContainerSpec, live: &ContainerInfo, replace: &mut Vec<FieldChange>) {
    // Docker 20.10 reports an unset host IP as "", later versions as "0.0.0.0".
    let address = |ip: &str, port: &str| {
        let ip = if ip == "0.0.0.0" { "" } else { ip };
        if ip.is_empty() {
            port.to_owned()
        } else {
            format!("{ip}:{port}")
        }
    };
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for port in &spec.ports {
        wanted
            .entry(port.key())
            .or_default()
            .push(address(&port.host_ip, &port.host_port));
    }
    let mut have: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, bindings) in live.host_config.port_bindings.iter().flatten() {
        for binding in bindings.iter().flatten() {
            have.entry(key.clone())
                .or_default()
                .push(address(&binding.host_ip, &binding.host_port));
        }
    }
    for list in wanted.values_mut().chain(have.values_mut()) {
        list.sort();
    }
    replace.extend(docker_object::keyed_fields(
        &have,
        &wanted,
        |key| format!("ports[{key}]"),
        |list| json_list(list),
    ));
}
