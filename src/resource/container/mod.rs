//! `container/NAME`: a container the profile declares, created, started and kept as declared.
//!
//! Drift is explained field by field and acted on only when it is real:
//! - replaced when its spec hash (label `berth.spec-hash`) differs from the profile's, or when its
//!   live config contradicts what berth set: the tag now names another image, env, command,
//!   entrypoint, binds, ports, privileged, capabilities, devices, user, stop signal... Never for
//!   what the image contributes (its env, labels, VOLUMEs, CMD when the profile sets none) or
//!   what the daemon fills in (the container-ID alias, a default PATH).
//! - repaired in place, without interrupting a running job, when Docker can: a restart policy
//!   changed by hand (`docker update`), a network disconnected, reconnected with other aliases,
//!   or recreated under it (`docker network connect`).
//! - started when stopped; created when missing; restarted when a container in its `after` was
//!   replaced and writes a named volume it reads (TLS certificates a dind daemon generates).
//!
//! A replacement keeps data and running jobs: the image is pulled before anything is stopped;
//! the old container is stopped with its own stop signal and timeout (gitlab-runner drains on
//! SIGQUIT), set aside, and removed only once the new one runs (named volumes survive, anonymous
//! ones go with it); if the new one cannot be created or started, the old one is put back.
//! A container with the profile's name that berth did not create is a conflict, replaced only
//! with `--adopt`.

pub(crate) mod spec;
pub(crate) mod values;

use std::{
    collections::{BTreeMap, BTreeSet},
    rc::Rc,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value as Json;

use crate::{
    docker::inspect::{
        Config, ContainerInfo, ImageInfo, Labelled, normalize_reference, short_image_id,
    },
    host::exec,
    host::{Host, HostPath},
    plan::{Action, Change, Diff, FieldChange, ResourceId},
    resource::profile::Profile,
    resource::{
        Context, Resource,
        docker_object::{self, ObjectName, ObjectNames, Reach},
    },
};
use spec::ContainerSpec;
use values::{MountSource, PullPolicy, RestartPolicy, normalize_capability, normalize_signal};

/// How long a `docker pull` may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Docker's stop timeout when a container sets none.
const DEFAULT_STOP_TIMEOUT: u64 = 10;
/// Added to a container's stop timeout for the `docker stop` call itself.
const STOP_MARGIN: u64 = 60;

pub struct Container {
    /// Boxed: the spec is most of a container's size, and resources live in one enum.
    spec: Box<ContainerSpec>,
    hash: String,
    profile: String,
    names: Rc<ObjectNames>,
    adopt: bool,
    /// Declared networks and volumes it uses and the containers in its `after`.
    dependencies: Vec<ResourceId>,
    /// Containers in its `after` that write a named volume this one mounts read-only.
    producers: Vec<(ObjectName, ObjectName)>,
}

#[derive(Debug, Clone)]
pub enum ContainerState {
    Unavailable(Reach),
    Seen(Box<Seen>),
}

#[derive(Debug, Clone)]
pub struct Seen {
    /// To resolve bind sources under the root (a pure join).
    pub host: Host,
    pub container: Option<ContainerInfo>,
    /// The image the profile names, as the host has it now.
    pub image: Option<ImageInfo>,
    /// The image the container was created from, to tell what it contributed.
    pub running_image: Option<ImageInfo>,
    /// The IDs of the networks the profile's containers use that exist now.
    pub network_ids: BTreeMap<String, String>,
    /// Bind sources that do not exist on the host.
    pub missing_sources: Vec<HostPath>,
}

/// How a live container differs from the profile.
#[derive(Debug, Default, PartialEq)]
struct Drift {
    /// The recorded spec hash, when it is not the profile's.
    hash_changed: Option<Option<String>>,
    /// Differences only a new container can fix.
    replace: Vec<FieldChange>,
    /// Differences Docker can fix in place: restart policy, network attachments.
    update: Vec<FieldChange>,
}

fn json_list(items: &[String]) -> Json {
    Json::from(items.to_vec())
}

fn text(value: &str) -> Json {
    Json::from(value)
}

impl Container {
    pub fn new(
        spec: ContainerSpec,
        profile: &Profile,
        names: Rc<ObjectNames>,
        adopt: bool,
    ) -> Self {
        let mut dependencies = vec![ResourceId::new("daemon", "docker")];
        for network in spec.networks.keys() {
            if profile.networks.iter().any(|known| &known.name == network) {
                dependencies.push(ResourceId::new("network", network.as_str()));
            }
        }
        for volume in spec.volume_names() {
            dependencies.push(ResourceId::new("volume", volume.as_str()));
        }
        let mut producers = Vec::new();
        for before in &spec.after {
            dependencies.push(ResourceId::new("container", before.as_str()));
            let Some(producer) = profile.containers.iter().find(|c| &c.name == before) else {
                continue;
            };
            for mount in spec.mounts.iter().filter(|mount| mount.read_only()) {
                let Some(volume) = mount.volume() else {
                    continue;
                };
                let writes = producer
                    .mounts
                    .iter()
                    .any(|theirs| theirs.volume() == Some(volume) && !theirs.read_only());
                if writes {
                    producers.push((before.clone(), volume.clone()));
                }
            }
        }
        Self {
            hash: spec.spec_hash(),
            spec: Box::new(spec),
            profile: profile.label(),
            names,
            adopt,
            dependencies,
            producers,
        }
    }

    fn name(&self) -> &str {
        self.spec.name.as_str()
    }

    /// The `docker container create` arguments for the profile's container.
    fn create_arguments(&self, host: &Host) -> Vec<String> {
        let spec = &self.spec;
        let mut args: Vec<String> = vec![
            "container".into(),
            "create".into(),
            "--name".into(),
            spec.name.to_string(),
        ];
        args.extend(docker_object::ownership_labels(&self.profile, &self.hash));
        for (key, value) in &spec.labels {
            args.extend(["--label".into(), format!("{key}={value}")]);
        }
        args.extend(["--restart".into(), spec.restart.to_string()]);
        if spec.privileged {
            args.push("--privileged".into());
        }
        // API 1.41 creates a container on one network; the others are connected before start.
        if let Some((network, aliases)) = spec.networks.first() {
            args.extend(["--network".into(), network.to_string()]);
            for alias in aliases {
                args.extend(["--network-alias".into(), alias.clone()]);
            }
        }
        for mount in &spec.mounts {
            let argument = mount
                .bind_argument(host)
                .unwrap_or_else(|| mount.target.clone());
            args.extend(["--volume".into(), argument]);
        }
        for (key, value) in &spec.env {
            args.extend(["--env".into(), format!("{key}={value}")]);
        }
        for port in &spec.ports {
            args.extend(["--publish".into(), port.argument()]);
        }
        if let Some(user) = &spec.user {
            args.extend(["--user".into(), user.clone()]);
        }
        if let Some(workdir) = &spec.workdir {
            args.extend(["--workdir".into(), workdir.clone()]);
        }
        for capability in &spec.cap_add {
            args.extend(["--cap-add".into(), capability.clone()]);
        }
        for option in &spec.security_opt {
            args.extend(["--security-opt".into(), option.clone()]);
        }
        for device in &spec.devices {
            args.extend(["--device".into(), device.argument(host)]);
        }
        if let Some(signal) = &spec.stop_signal {
            args.extend(["--stop-signal".into(), signal.clone()]);
        }
        if let Some(timeout) = spec.stop_timeout {
            args.extend(["--stop-timeout".into(), timeout.to_string()]);
        }
        // `--entrypoint` takes one word; the rest of the entrypoint leads the arguments.
        let mut trailing = Vec::new();
        if let Some(entrypoint) = &spec.entrypoint {
            args.extend(["--entrypoint".into(), entrypoint[0].clone()]);
            trailing.extend(entrypoint[1..].iter().cloned());
        }
        trailing.extend(spec.command.iter().flatten().cloned());
        args.push(spec.image.clone());
        args.extend(trailing);
        args
    }

    /// Compares a container berth created with the profile.
    fn drift(&self, live: &ContainerInfo, seen: &Seen) -> Drift {
        let spec = &self.spec;
        let mut drift = Drift::default();
        let recorded = live.config.spec_hash();
        if recorded != Some(self.hash.as_str()) {
            drift.hash_changed = Some(recorded.map(str::to_owned));
        }
        let replace = &mut drift.replace;
        // What the image contributed, when the image the container runs is known.
        let contributed: Option<&Config> = seen.running_image.as_ref().map(|image| &image.config);
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
        if live.host_config.privileged != spec.privileged {
            replace.push(FieldChange::new(
                "privileged",
                Some(Json::from(live.host_config.privileged)),
                Some(Json::from(spec.privileged)),
            ));
        }

        // Env: the profile's values must be there; anything else must be the image's.
        let live_env = config.env_map();
        let image_env = contributed.map(Config::env_map);
        for (key, value) in &spec.env {
            if live_env.get(key.as_str()) != Some(&value.as_str()) {
                replace.push(FieldChange::new(
                    format!("env.{key}"),
                    live_env.get(key.as_str()).map(|value| text(value)),
                    Some(text(value)),
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
                    Some(text(value)),
                    image_env.get(key).map(|value| text(value)),
                ));
            }
        }

        // Labels: the same, less berth's own.
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

        self.compare_command(config, contributed, replace);
        self.compare_mounts(live, &seen.host, replace);
        compare_ports(spec, live, replace);

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
        let live_security: BTreeSet<&String> =
            live.host_config.security_opt.iter().flatten().collect();
        let wanted_security: BTreeSet<&String> = spec.security_opt.iter().collect();
        if live_security != wanted_security {
            replace.push(FieldChange::new(
                "security_opt",
                Some(Json::from(
                    live_security.into_iter().cloned().collect::<Vec<_>>(),
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

        // Unset in the profile means "the image's": compare only when that is known.
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

        // In place: the restart policy and the network attachments.
        let live_restart = RestartPolicy::from_docker(
            &live.host_config.restart_policy.name,
            live.host_config.restart_policy.maximum_retry_count,
        );
        if live_restart != spec.restart {
            drift.update.push(FieldChange::new(
                "restart",
                Some(text(&live_restart.to_string())),
                Some(text(&spec.restart.to_string())),
            ));
        }
        self.compare_networks(live, seen, &mut drift.update);
        drift
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
    fn compare_mounts(&self, live: &ContainerInfo, host: &Host, replace: &mut Vec<FieldChange>) {
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

    fn compare_networks(&self, live: &ContainerInfo, seen: &Seen, update: &mut Vec<FieldChange>) {
        if self.spec.networks.is_empty() {
            // Docker's choice (the default bridge) is not berth's to keep.
            return;
        }
        let attached = live.networks();
        for (network, aliases) in &self.spec.networks {
            let wanted: BTreeSet<&String> = aliases.iter().collect();
            let path = format!("networks.{network}");
            let Some(endpoint) = attached.get(network.as_str()) else {
                update.push(FieldChange::new(path, None, Some(json_list(aliases))));
                continue;
            };
            // An endpoint that names a network ID which is no longer the network of that name:
            // the network was removed (and maybe created again) under the container.
            if !endpoint.network_id.is_empty()
                && seen.network_ids.get(network.as_str()) != Some(&endpoint.network_id)
            {
                update.push(FieldChange::new(
                    path,
                    Some(text("attached to a network that no longer exists")),
                    Some(json_list(aliases)),
                ));
                continue;
            }
            let have: BTreeSet<&String> = endpoint
                .aliases
                .iter()
                .flatten()
                .filter(|alias| *alias != live.short_id() && *alias != live.plain_name())
                .collect();
            if have != wanted {
                update.push(FieldChange::new(
                    path,
                    Some(Json::from(have.into_iter().cloned().collect::<Vec<_>>())),
                    Some(json_list(aliases)),
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
                update.push(FieldChange::new(
                    format!("networks.{network}"),
                    Some(Json::from(endpoint.aliases.clone().unwrap_or_default())),
                    None,
                ));
            }
        }
    }

    /// What the plan line says about the image and bind sources a create or replace needs.
    fn preparation_note(&self, seen: &Seen) -> String {
        let mut note = String::new();
        match (self.spec.pull, &seen.image) {
            (PullPolicy::Always, _) => note.push_str(&format!("; pulls {}", self.spec.image)),
            (PullPolicy::Missing, None) => {
                note.push_str(&format!("; pulls {} (not on the host)", self.spec.image));
            }
            _ => {}
        }
        if !seen.missing_sources.is_empty() {
            let sources: Vec<String> = seen
                .missing_sources
                .iter()
                .map(ToString::to_string)
                .collect();
            note.push_str(&format!("; creates {}", sources.join(", ")));
        }
        note
    }

    /// Why a create or replace cannot go ahead, if it cannot.
    fn preparation_refusal(&self, seen: &Seen) -> Option<String> {
        if self.spec.pull == PullPolicy::Never && seen.image.is_none() {
            return Some(format!(
                "image `{}` is not on the host and pull = \"never\"; load it (`docker load`) or allow pulling",
                self.spec.image
            ));
        }
        seen.missing_sources
            .iter()
            .find(|source| is_socket_path(source))
            .map(|source| {
                format!("the bind source `{source}` does not exist, and berth will not make a directory where a socket belongs; is the service that creates it running?")
            })
    }

    fn ensure_image(&self, cx: &Context, present: bool) -> Result<()> {
        let pull = match self.spec.pull {
            PullPolicy::Always => true,
            PullPolicy::Missing => !present,
            PullPolicy::Never if present => false,
            PullPolicy::Never => bail!(
                "image `{}` is not on the host and pull = \"never\"",
                self.spec.image
            ),
        };
        if pull {
            exec::run_with_timeout(
                &cx.docker.command(["pull", self.spec.image.as_str()]),
                PULL_TIMEOUT,
            )
            .with_context(|| format!("image `{}` could not be pulled", self.spec.image))?;
        }
        Ok(())
    }

    /// Creates missing bind-source directories under the root, as `docker run -v` would, but
    /// where berth can say so in the plan.
    fn ensure_sources(&self, cx: &Context) -> Result<()> {
        for mount in &self.spec.mounts {
            if let MountSource::Bind(source) = &mount.source
                && !cx.host.exists(source)
            {
                if is_socket_path(source) {
                    bail!("the bind source `{source}` does not exist");
                }
                cx.host.ensure_dir(source, 0o755)?;
            }
        }
        Ok(())
    }

    /// Creates, connects and starts the profile's container; removes it again when it cannot
    /// be connected or started, so no half-made container is left behind.
    fn create_and_start(&self, cx: &Context) -> Result<()> {
        let args = self.create_arguments(cx.host);
        let id = run(cx, &args)?.trim().to_owned();
        let finish = || -> Result<()> {
            for (network, aliases) in self.spec.networks.iter().skip(1) {
                connect(cx, self.name(), network.as_str(), aliases)?;
            }
            run(cx, &["container", "start", self.name()])?;
            Ok(())
        };
        finish().inspect_err(|_| {
            let _ = run(
                cx,
                &["container", "rm", "--force", "--volumes", id.as_str()],
            );
        })
    }

    fn replace(&self, cx: &Context, live: &ContainerInfo, image_present: bool) -> Result<()> {
        self.ensure_image(cx, image_present)?;
        self.ensure_sources(cx)?;
        let name = self.name();
        let parked = format!("{name}.berth-old");
        // Drain: `docker stop` without `-t` uses the container's own stop signal and timeout.
        let timeout = live
            .config
            .stop_timeout
            .map_or(DEFAULT_STOP_TIMEOUT, u64::from)
            + STOP_MARGIN;
        exec::run_with_timeout(
            &cx.docker.command(["container", "stop", live.id.as_str()]),
            Duration::from_secs(timeout),
        )
        .with_context(|| format!("failed to stop the old `{name}`"))?;
        // A container set aside by an interrupted run is in the way; it is stopped already.
        let _ = exec::run_unchecked(&cx.docker.command([
            "container",
            "rm",
            "--volumes",
            parked.as_str(),
        ]));
        run(
            cx,
            &["container", "rename", live.id.as_str(), parked.as_str()],
        )?;
        match self.create_and_start(cx) {
            Ok(()) => {
                run(cx, &["container", "rm", "--volumes", live.id.as_str()]).with_context(|| {
                    format!("the new `{name}` runs, but the old one (`{parked}`) could not be removed")
                })?;
                Ok(())
            }
            Err(error) => {
                let restored =
                    run(cx, &["container", "rename", live.id.as_str(), name]).and_then(|_| {
                        if live.state.running {
                            run(cx, &["container", "start", name]).map(drop)
                        } else {
                            Ok(())
                        }
                    });
                Err(match restored {
                    Ok(()) => error.context(format!("the new `{name}` did not start; the previous container is back in place")),
                    Err(second) => error.context(format!(
                        "the new `{name}` did not start, and putting the previous one back failed ({second:#}); it is kept as `{parked}`"
                    )),
                })
            }
        }
    }

    /// In-place repairs, one per field the diff listed.
    fn update(&self, cx: &Context, live: &ContainerInfo, change: &Change) -> Result<()> {
        let name = self.name();
        for field in &change.fields {
            if field.path == "restart" {
                run(
                    cx,
                    &[
                        "container",
                        "update",
                        "--restart",
                        &self.spec.restart.to_string(),
                        name,
                    ],
                )?;
            } else if let Some(network) = field.path.strip_prefix("networks.") {
                if live.networks().contains_key(network) {
                    run(cx, &["network", "disconnect", "--force", network, name])?;
                }
                if let Some(aliases) = self
                    .spec
                    .networks
                    .iter()
                    .find(|(known, _)| known.as_str() == network)
                    .map(|(_, aliases)| aliases)
                {
                    connect(cx, name, network, aliases)?;
                }
            } else {
                bail!("`{}` cannot be changed in place", field.path);
            }
        }
        Ok(())
    }

    fn pull_and_follow(&self, cx: &Context) -> Result<()> {
        self.ensure_image(cx, true)?;
        cx.docker.invalidate();
        let images = cx.docker.images(std::slice::from_ref(&self.spec.image))?;
        let containers = cx.docker.containers(&[self.name().to_owned()])?;
        let (Some(image), Some(live)) = (images.get(&self.spec.image), containers.get(self.name()))
        else {
            return Ok(());
        };
        if image.id != live.image {
            tracing::info!(
                "container/{}: the tag {} moved to {}; replacing",
                self.name(),
                self.spec.image,
                short_image_id(&image.id)
            );
            self.replace(cx, live, true)?;
        }
        Ok(())
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

/// A bind source that is a socket (`/var/run/docker.sock`) must exist: Docker, and berth,
/// would otherwise make a directory there.
fn is_socket_path(path: &HostPath) -> bool {
    path.as_path()
        .extension()
        .is_some_and(|extension| extension == "sock")
}

fn run<S: AsRef<str>>(cx: &Context, args: &[S]) -> Result<String> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    Ok(cx.docker.run(&args)?)
}

fn connect(cx: &Context, container: &str, network: &str, aliases: &[String]) -> Result<()> {
    let mut args = vec!["network".to_owned(), "connect".to_owned()];
    for alias in aliases {
        args.extend(["--alias".to_owned(), alias.clone()]);
    }
    args.extend([network.to_owned(), container.to_owned()]);
    run(cx, &args)
        .map(drop)
        .with_context(|| format!("failed to connect `{container}` to network `{network}`"))
}

impl Resource for Container {
    type Observed = ContainerState;

    fn id(&self) -> ResourceId {
        ResourceId::new("container", self.name())
    }

    fn depends_on(&self) -> Vec<ResourceId> {
        self.dependencies.clone()
    }

    fn observe(&self, cx: &Context) -> Result<ContainerState> {
        match docker_object::reach(cx) {
            Reach::Running => {}
            other => return Ok(ContainerState::Unavailable(other)),
        }
        let containers = cx.docker.containers(&self.names.containers)?;
        // The images the profile names and those the containers run, in one batch that every
        // container resource asks for alike (so it is asked once).
        let mut references = self.names.images.clone();
        for info in containers.values() {
            if !info.image.is_empty() && !references.contains(&info.image) {
                references.push(info.image.clone());
            }
        }
        let images = cx.docker.images(&references)?;
        let networks = cx.docker.networks(&self.names.networks)?;
        let container = containers.get(self.name()).cloned();
        let running_image = container
            .as_ref()
            .and_then(|info| images.get(&info.image))
            .cloned();
        let missing_sources = self
            .spec
            .mounts
            .iter()
            .filter_map(|mount| match &mount.source {
                MountSource::Bind(source) if !cx.host.exists(source) => Some(source.clone()),
                _ => None,
            })
            .collect();
        Ok(ContainerState::Seen(Box::new(Seen {
            host: cx.host.clone(),
            container,
            image: images.get(&self.spec.image).cloned(),
            running_image,
            network_ids: networks
                .iter()
                .map(|(name, info)| (name.clone(), info.id.clone()))
                .collect(),
            missing_sources,
        })))
    }

    fn diff(&self, observed: &ContainerState, earlier: &[Change]) -> Diff {
        let mut diff = Diff::none();
        let seen = match observed {
            ContainerState::Unavailable(Reach::Unreachable(reason)) => {
                diff.warn(docker_object::unreachable_warning(reason));
                return diff;
            }
            ContainerState::Unavailable(_) => return diff,
            ContainerState::Seen(seen) => seen,
        };
        let note = self.preparation_note(seen);
        let refusal = self.preparation_refusal(seen);
        let refuse = |change: Change| match &refusal {
            Some(reason) => change.refused_because(reason.clone()),
            None => change,
        };
        let Some(live) = &seen.container else {
            diff.push(refuse(Change::new(
                self.id(),
                Action::Create,
                format!("image {}{note}", self.spec.image),
            )));
            return diff;
        };
        if !live.config.managed() {
            let mut change = Change::new(
                self.id(),
                Action::Replace,
                docker_object::conflict_detail("container", self.name()),
            )
            .with_fields(vec![docker_object::conflict_field()]);
            change = if self.adopt {
                refuse(change)
            } else {
                change.refused_because("berth does not touch a container it did not create; rerun with --adopt to replace it with the profile's (named volumes are kept)")
            };
            diff.push(change);
            return diff;
        }
        let drift = self.drift(live, seen);
        let dead = live.state.status == "dead";
        if drift.hash_changed.is_some() || !drift.replace.is_empty() || dead {
            let mut fields = drift.replace;
            fields.extend(drift.update);
            if dead {
                fields.push(FieldChange::new(
                    "state",
                    Some(text("dead")),
                    Some(text("running")),
                ));
            }
            let why = match &drift.hash_changed {
                Some(_) => "the profile changed",
                None => "changed outside berth",
            };
            if fields.is_empty()
                && let Some(recorded) = &drift.hash_changed
            {
                fields.push(docker_object::hash_field(recorded.as_deref(), &self.hash));
            }
            let detail = format!("{why}: {}{note}", docker_object::field_paths(&fields));
            diff.push(refuse(
                Change::new(self.id(), Action::Replace, detail).with_fields(fields),
            ));
            return diff;
        }
        if !drift.update.is_empty() {
            let detail = format!(
                "changed outside berth: {} (repaired in place)",
                docker_object::field_paths(&drift.update)
            );
            diff.push(Change::new(self.id(), Action::Update, detail).with_fields(drift.update));
        }
        match live.state.status.as_str() {
            "running" | "restarting" => {}
            "paused" => diff
                .warn("the container is paused; berth leaves it so (`docker unpause` resumes it)"),
            "removing" => {
                diff.warn("the container is being removed; the next run creates it again")
            }
            status => {
                diff.push(Change::new(
                    self.id(),
                    Action::Start,
                    format!("the container is {status}"),
                ));
                return diff;
            }
        }
        if !diff.changes.is_empty() {
            return diff;
        }
        let replaced_producer = self.producers.iter().find(|(producer, _)| {
            let id = ResourceId::new("container", producer.as_str());
            earlier.iter().any(|change| {
                change.id == id
                    && change.refused.is_none()
                    && matches!(change.action, Action::Replace | Action::Create)
            })
        });
        if let Some((producer, volume)) = replaced_producer {
            diff.push(Change::new(
                self.id(),
                Action::Restart,
                format!("`container/{producer}` is new and writes volume `{volume}`, which this container reads"),
            ));
            return diff;
        }
        if self.spec.pull == PullPolicy::Always {
            diff.push(Change::new(
                self.id(),
                Action::Pull,
                format!(
                    "{} (pull = \"always\"); replaces the container if the tag moved",
                    self.spec.image
                ),
            ));
        }
        diff
    }

    fn apply(
        &self,
        cx: &Context,
        observed: &ContainerState,
        change: &Change,
        _earlier: &[Change],
    ) -> Result<()> {
        let ContainerState::Seen(seen) = observed else {
            bail!("Docker does not answer");
        };
        let live = seen.container.as_ref();
        let image_present = seen.image.is_some();
        match (change.action, live) {
            (Action::Create, _) => {
                self.ensure_image(cx, image_present)?;
                self.ensure_sources(cx)?;
                self.create_and_start(cx)
            }
            (Action::Replace, Some(live)) => self.replace(cx, live, image_present),
            (Action::Update, Some(live)) => self.update(cx, live, change),
            (Action::Start, Some(_)) => run(cx, &["container", "start", self.name()]).map(drop),
            (Action::Restart, Some(live)) => {
                let timeout = live
                    .config
                    .stop_timeout
                    .map_or(DEFAULT_STOP_TIMEOUT, u64::from)
                    + STOP_MARGIN;
                exec::run_with_timeout(
                    &cx.docker.command(["container", "restart", self.name()]),
                    Duration::from_secs(timeout),
                )?;
                Ok(())
            }
            (Action::Pull, Some(_)) => self.pull_and_follow(cx),
            (action, _) => bail!("a container cannot `{}` here", action.as_str()),
        }
    }
}

#[cfg(test)]
mod tests;
