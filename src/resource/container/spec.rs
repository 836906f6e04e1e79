//! The `[containers.NAME]` section: its layer as written (every field optional, so that a layer
//! says only what it changes), the checked [`ContainerSpec`] with defaults filled in, the spec
//! hash berth stamps on the container, the `after` order and what `validate` warns about.
//! Nothing here touches the host or the daemon: host paths stay host paths until the resource
//! resolves them under the root.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use indexmap::IndexMap;
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{MapAccess, SeqAccess, Visitor},
};

use super::values::{
    Device, Mount, MountSource, Port, PullPolicy, RestartPolicy, normalize_capability,
    normalize_signal, seccomp_file,
};
use crate::{
    profile::{
        Layers,
        source::{KeyPath, LocatedError},
    },
    resource::docker_object::{ObjectName, labels, spec_hash},
};

/// Nestybox's runtime for containers that run system software (dockerd) without
/// `--privileged`.
pub(crate) const SYSBOX_RUNTIME: &str = "sysbox-runc";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContainerSection {
    pub image: Option<String>,
    pub privileged: Option<bool>,
    /// Docker's `--runtime`: an OCI runtime registered with the daemon (`sysbox-runc`).
    pub runtime: Option<String>,
    pub restart: Option<RestartPolicy>,
    pub networks: Option<NetworksSection>,
    pub volumes: Option<Vec<Mount>>,
    pub env: Option<IndexMap<String, String>>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub ports: Option<Vec<Port>>,
    pub labels: Option<IndexMap<String, String>>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// The container's hostname; Docker's default (its short ID) when unset.
    pub hostname: Option<String>,
    pub cap_add: Option<Vec<String>>,
    pub security_opt: Option<Vec<String>>,
    pub devices: Option<Vec<Device>>,
    pub stop_signal: Option<String>,
    /// Seconds `docker stop` waits after the stop signal before it kills.
    pub stop_timeout: Option<u32>,
    pub pull: Option<PullPolicy>,
    pub after: Option<Vec<ObjectName>>,
    /// Runs a Docker daemon (gets `--mtu`); guessed from a `docker:*dind*` image when unset.
    pub dind: Option<bool>,
    /// Images berth pulls into this dind daemon (and pulls again after a prune), so the first
    /// job does not wait; `[hygiene]` never removes them.
    pub prepull: Option<Vec<String>>,
}

/// `networks = ["a", "b"]` or `networks = { a = { aliases = ["x"] } }`. The table form merges
/// across layers like any table; the list form replaces.
#[derive(Debug, Default, Clone)]
pub(crate) struct NetworksSection(pub IndexMap<ObjectName, AttachmentSection>);

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttachmentSection {
    pub aliases: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for NetworksSection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NetworksVisitor;
        impl<'de> Visitor<'de> for NetworksVisitor {
            type Value = NetworksSection;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a list of network names, or a table of network name = { aliases = [...] }",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut networks = IndexMap::new();
                while let Some(name) = seq.next_element::<ObjectName>()? {
                    networks.insert(name, AttachmentSection::default());
                }
                Ok(NetworksSection(networks))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut networks = IndexMap::new();
                while let Some((name, attachment)) =
                    map.next_entry::<ObjectName, AttachmentSection>()?
                {
                    networks.insert(name, attachment);
                }
                Ok(NetworksSection(networks))
            }
        }
        deserializer.deserialize_any(NetworksVisitor)
    }
}

/// A container as the profile declares it, checked, with defaults filled in and names
/// normalized (capabilities upper case without `CAP_`, signals `SIGQUIT`).
///
/// Serialized, it is what the spec hash covers ([`ContainerSpec::spec_hash`]): a field is in
/// the hash unless it says `#[serde(skip)]`, which only a field that steers berth alone may say
/// (`name`, `pull`, `after`, `dind`). Each hashed field is serialized as written in the profile,
/// independent of `--root`, and sets are sorted, so the order a profile lists them in never
/// changes the hash (the spec keeps that order for what berth passes and shows). A field that
/// can be empty is left out when it is, so that a field added in a later berth version does not
/// change the hash of the containers that do not use it, and so does not replace them all on
/// upgrade: `spec_hashes_of_the_previous_release_are_kept` holds the hashes of earlier releases,
/// and the field order here is theirs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ContainerSpec {
    /// Not hashed: Docker finds the container by it, so another name is another container.
    #[serde(skip)]
    pub name: ObjectName,
    pub image: String,
    #[serde(skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// The OCI runtime; the daemon's default when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(serialize_with = "hashed::display")]
    pub restart: RestartPolicy,
    /// Network name → aliases, in profile order; the first is the one the container is created on.
    #[serde(
        skip_serializing_if = "IndexMap::is_empty",
        serialize_with = "hashed::networks"
    )]
    pub networks: IndexMap<ObjectName, Vec<String>>,
    #[serde(
        rename = "volumes",
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "hashed::mounts"
    )]
    pub mounts: Vec<Mount>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// With `--mtu=N` and `--registry-mirror=URL` appended for a dind container when the
    /// profile sets `mtu` and `registry_mirrors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "hashed::ports"
    )]
    pub ports: Vec<Port>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// The container's hostname; Docker's default (its short ID) when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Normalized: upper case, without `CAP_`.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "hashed::set")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "hashed::set")]
    pub security_opt: Vec<String>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "hashed::devices"
    )]
    pub devices: Vec<Device>,
    /// Normalized: `SIGQUIT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u32>,
    /// Not hashed: when berth pulls, not what runs (a moved tag is drift of `image`).
    #[serde(skip)]
    pub pull: PullPolicy,
    /// Not hashed: the order berth converges in.
    #[serde(skip)]
    pub after: Vec<ObjectName>,
    /// Not hashed: what it adds (`--mtu`, the mirrors) is in `command`.
    #[serde(skip)]
    pub dind: bool,
    /// Not hashed: what berth pulls into the daemon it runs, not how it runs (a change never
    /// recreates dind); `hygiene/NAME` pulls them.
    #[serde(skip)]
    pub prepull: Vec<String>,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// How the spec's fields that are not plain text serialize for the hash: as the profile writes
/// them, sets sorted.
mod hashed {
    use std::{collections::BTreeMap, fmt::Display};

    use indexmap::IndexMap;
    use serde::Serializer;

    use super::{Device, Mount, ObjectName, Port};

    fn sorted<S: Serializer>(serializer: S, items: Vec<String>) -> Result<S::Ok, S::Error> {
        let mut items = items;
        items.sort_unstable();
        serializer.collect_seq(items)
    }

    pub(super) fn display<S: Serializer>(
        value: &impl Display,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub(super) fn set<S: Serializer>(items: &[String], serializer: S) -> Result<S::Ok, S::Error> {
        sorted(serializer, items.to_vec())
    }

    /// By name, each network's aliases sorted.
    pub(super) fn networks<S: Serializer>(
        networks: &IndexMap<ObjectName, Vec<String>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let by_name: BTreeMap<&str, Vec<&String>> = networks
            .iter()
            .map(|(name, aliases)| {
                let mut aliases: Vec<&String> = aliases.iter().collect();
                aliases.sort_unstable();
                (name.as_str(), aliases)
            })
            .collect();
        serializer.collect_map(by_name)
    }

    pub(super) fn mounts<S: Serializer>(
        mounts: &[Mount],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        sorted(serializer, mounts.iter().map(Mount::normalized).collect())
    }

    pub(super) fn ports<S: Serializer>(ports: &[Port], serializer: S) -> Result<S::Ok, S::Error> {
        sorted(serializer, ports.iter().map(Port::argument).collect())
    }

    pub(super) fn devices<S: Serializer>(
        devices: &[Device],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let texts = devices
            .iter()
            .map(|device| {
                format!(
                    "{}:{}:{}",
                    device.host, device.container, device.permissions
                )
            })
            .collect();
        sorted(serializer, texts)
    }
}

impl ContainerSpec {
    /// sha256 of the spec serialized: equal specs hash equal whatever the order they were
    /// written in (sets are sorted; env and labels are maps).
    pub(crate) fn spec_hash(&self) -> String {
        spec_hash(self)
    }

    /// The named volumes this container mounts.
    pub(crate) fn volume_names(&self) -> impl Iterator<Item = &ObjectName> {
        self.mounts.iter().filter_map(Mount::volume)
    }
}

/// True for the official Docker-in-Docker images: `docker:dind`, `docker:27-dind`,
/// `docker:27.5-dind-rootless`, also behind a registry mirror (`mirror.example/library/docker`).
pub(crate) fn is_dind_image(image: &str) -> bool {
    let without_digest = image.split('@').next().unwrap_or(image);
    let (repository, tag) = match without_digest.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (without_digest, "latest"),
    };
    let name = repository.rsplit('/').next().unwrap_or(repository);
    name == "docker" && tag.split('-').any(|part| part == "dind")
}

#[expect(
    clippy::too_many_lines,
    reason = "one check per field, in the order the fields are documented"
)]
pub(crate) fn resolve_container(
    name: ObjectName,
    layer: ContainerSection,
    mtu: Option<u32>,
    registry_mirrors: &[String],
    layers: &Layers,
) -> Result<ContainerSpec, Vec<LocatedError>> {
    let key = KeyPath::parse_dotted("containers").key(name.as_str());
    // Every check runs, so that one run reports every problem of the section.
    let mut problems = Vec::new();
    // Every field of the section by name, so that one added and never resolved does not
    // compile (an unused binding is a warning, and warnings fail the build).
    let ContainerSection {
        image,
        privileged,
        runtime,
        restart,
        networks: network_sections,
        volumes,
        env: variables,
        command,
        entrypoint,
        ports,
        labels: label_section,
        user,
        workdir,
        hostname,
        cap_add: capabilities,
        security_opt,
        devices,
        stop_signal,
        stop_timeout,
        pull,
        after,
        dind,
        prepull,
    } = layer;
    match &image {
        None => problems.push(layers.error_at(&key, "a container needs an `image`")),
        Some(image) => {
            if let Err(why) = check_image_reference(image) {
                problems.push(layers.error_at(
                    &key.key("image"),
                    format!("`{image}` is not an image reference: {why}"),
                ));
            }
        }
    }
    let mut networks = IndexMap::new();
    for (network, attachment) in network_sections.unwrap_or_default().0 {
        let aliases = attachment.aliases.unwrap_or_default();
        if let Some(bad) = aliases
            .iter()
            .find(|alias| alias.is_empty() || alias.contains(char::is_whitespace))
        {
            problems.push(layers.error_at(
                &key.key("networks").key(network.as_str()),
                format!("`{bad}` is not a network alias"),
            ));
        }
        networks.insert(network, aliases);
    }
    let mut env = BTreeMap::new();
    for (variable, value) in variables.unwrap_or_default() {
        // The values reach docker through an env file (never argv, which every local user
        // reads), one `KEY=value` a line: the docker CLI skips `#` lines and refuses a name
        // with blanks, and a line ends a value.
        if variable.is_empty()
            || variable.contains('=')
            || variable.starts_with('#')
            || variable.contains(char::is_whitespace)
            || variable.contains('\0')
        {
            problems.push(layers.error_at(
                &key.key("env").key(&variable),
                "an environment variable name is not empty and has no `=`, blank or leading `#`",
            ));
            continue;
        }
        if value.contains(['\n', '\r', '\0']) {
            problems.push(layers.error_at(
                &key.key("env").key(&variable),
                "an environment variable value is one line (docker's env file cannot carry a \
                 line break); put a multi-line value in a file and bind-mount it",
            ));
            continue;
        }
        env.insert(variable, value);
    }
    if entrypoint.as_ref().is_some_and(Vec::is_empty) {
        problems.push(layers.error_at(
            &key.key("entrypoint"),
            "must name a program; leave it out to keep the image's entrypoint",
        ));
    }
    let stop_signal = match stop_signal {
        Some(signal) => {
            let normalized = normalize_signal(&signal);
            let valid = normalized.chars().all(|c| c.is_ascii_digit())
                || (normalized.len() > 3
                    && normalized[3..]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-'));
            if !valid {
                problems.push(layers.error_at(
                    &key.key("stop_signal"),
                    format!("`{signal}` is not a signal (e.g. SIGQUIT)"),
                ));
            }
            Some(normalized)
        }
        None => None,
    };
    let mut cap_add = Vec::new();
    for capability in capabilities.unwrap_or_default() {
        let normalized = normalize_capability(&capability);
        if normalized.is_empty()
            || !normalized
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            problems.push(layers.error_at(
                &key.key("cap_add"),
                format!("`{capability}` is not a capability (e.g. NET_ADMIN)"),
            ));
            continue;
        }
        if !cap_add.contains(&normalized) {
            cap_add.push(normalized);
        }
    }
    if let Some(hostname) = &hostname
        && !is_hostname(hostname)
    {
        problems.push(layers.error_at(
            &key.key("hostname"),
            format!("`{hostname}` is not a hostname (letters, digits and `-`, in dot-separated labels of at most 63 characters)"),
        ));
    }
    let dind = dind.unwrap_or_else(|| image.as_deref().is_some_and(is_dind_image));
    let prepull = prepull.unwrap_or_default();
    if !prepull.is_empty() && !dind {
        problems.push(layers.error_at(
            &key.key("prepull"),
            "only a container with `dind = true` (a Docker daemon) prepulls images",
        ));
    }
    if let Some(bad) = prepull.iter().find(|image| {
        image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control())
    }) {
        problems.push(layers.error_at(
            &key.key("prepull"),
            format!("{bad:?} is not an image reference"),
        ));
    }
    // `command = []` cannot be passed to `docker create` (no arguments means the image's CMD),
    // so it means what it does there: the image's CMD.
    let mut command = command.filter(|command| !command.is_empty());
    // One MTU: the daemon inside a dind container makes its own bridge, which must not be
    // bigger than the path out (docker-library/docker #103).
    if let Some(mtu) = mtu
        && dind
    {
        let arguments = command.get_or_insert_with(Vec::new);
        if !arguments
            .iter()
            .any(|argument| argument.starts_with("--mtu"))
        {
            arguments.push(format!("--mtu={mtu}"));
        }
    }
    // One mirror list: in the dind topologies it is the dind daemon that pulls the jobs'
    // images, so it needs the mirrors more than the host's daemon does.
    if dind {
        add_registry_mirrors(&mut command, registry_mirrors);
    }
    let security_opt = security_opt.unwrap_or_default();
    for option in &security_opt {
        if let Some(Err(why)) = seccomp_file(option) {
            problems.push(layers.error_at(
                &key.key("security_opt"),
                format!("`{option}`: the seccomp profile must be a file named by its absolute path: {why}"),
            ));
        }
    }
    if let Some(runtime) = &runtime
        && (runtime.is_empty()
            || !runtime
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        problems.push(layers.error_at(
            &key.key("runtime"),
            format!("`{runtime}` is not a runtime name (as `docker info` lists them, e.g. `sysbox-runc`)"),
        ));
    }
    if runtime.as_deref() == Some(SYSBOX_RUNTIME) && privileged == Some(true) {
        problems.push(layers.error_at(
            &key.key("privileged"),
            "sysbox-runc refuses privileged containers (its raison d'être is not needing them); leave `privileged` out",
        ));
    }
    let after = after.unwrap_or_default();
    if after.contains(&name) {
        problems.push(layers.error_at(&key.key("after"), "a container cannot come after itself"));
    }
    let labels = labels(label_section, &key.key("labels"), layers)
        .map_err(|problem| problems.push(problem))
        .unwrap_or_default();
    let Some(image) = image.filter(|_| problems.is_empty()) else {
        return Err(problems);
    };
    Ok(ContainerSpec {
        privileged: privileged.unwrap_or(false),
        runtime,
        restart: restart.unwrap_or_default(),
        networks,
        mounts: volumes.unwrap_or_default(),
        env,
        command,
        entrypoint,
        ports: ports.unwrap_or_default(),
        labels,
        user: user.filter(|user| !user.is_empty()),
        workdir: workdir.filter(|workdir| !workdir.is_empty()),
        hostname,
        cap_add,
        security_opt,
        devices: devices.unwrap_or_default(),
        stop_signal,
        stop_timeout,
        // An image pinned by digest cannot move: pulling it again at every apply would only
        // keep the plan from ever being in sync, so "always" means "when missing" for it.
        pull: match pull.unwrap_or_default() {
            PullPolicy::Always if image.contains("@sha256:") => PullPolicy::Missing,
            policy => policy,
        },
        after,
        dind,
        prepull,
        image,
        name,
    })
}

/// Appends `--registry-mirror=URL` for each mirror the command does not already pass (as
/// `--registry-mirror=URL` or `--registry-mirror URL`).
fn add_registry_mirrors(command: &mut Option<Vec<String>>, mirrors: &[String]) {
    for mirror in mirrors {
        let arguments = command.get_or_insert_with(Vec::new);
        let passed = arguments.iter().enumerate().any(|(at, argument)| {
            argument.strip_prefix("--registry-mirror=") == Some(mirror.as_str())
                || (argument == "--registry-mirror" && arguments.get(at + 1) == Some(mirror))
        });
        if !passed {
            arguments.push(format!("--registry-mirror={mirror}"));
        }
    }
}

/// An RFC 1123 hostname, as the container's `/etc/hostname` holds it.
fn is_hostname(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Catches what `docker` would refuse as an "invalid reference format" (and so fail every
/// container's batched image inspect), without being a full reference parser.
fn check_image_reference(image: &str) -> Result<(), &'static str> {
    if image.is_empty() || image.starts_with('-') || image.contains(char::is_whitespace) {
        return Err("empty, blank or an option");
    }
    let name = image.split('@').next().unwrap_or(image);
    let repository = match name.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => name,
    };
    // A registry host (`Registry.example:5000/x`) may have capitals; the path may not.
    let path = match repository.split_once('/') {
        Some((host, path)) if host.contains(['.', ':']) || host == "localhost" => path,
        _ => repository,
    };
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository names are lower case");
    }
    Ok(())
}

pub(crate) fn order_by_after(
    containers: Vec<ContainerSpec>,
    layers: &Layers,
) -> Result<Vec<ContainerSpec>, LocatedError> {
    let names: BTreeSet<&ObjectName> = containers.iter().map(|c| &c.name).collect();
    for container in &containers {
        if let Some(unknown) = container.after.iter().find(|name| !names.contains(name)) {
            return Err(layers.error_at(
                &KeyPath::parse_dotted("containers")
                    .key(container.name.as_str())
                    .key("after"),
                format!("no container `{unknown}` in the profile"),
            ));
        }
    }
    let mut ordered: Vec<ContainerSpec> = Vec::with_capacity(containers.len());
    let mut pending = containers;
    while !pending.is_empty() {
        let ready = pending.iter().position(|container| {
            container
                .after
                .iter()
                .all(|name| ordered.iter().any(|done| &done.name == name))
        });
        match ready {
            Some(index) => ordered.push(pending.remove(index)),
            None => {
                let stuck = &pending[0];
                let cycle: Vec<&str> = pending.iter().map(|c| c.name.as_str()).collect();
                return Err(layers.error_at(
                    &KeyPath::parse_dotted("containers")
                        .key(stuck.name.as_str())
                        .key("after"),
                    format!("`after` goes round in a circle among {}", cycle.join(", ")),
                ));
            }
        }
    }
    Ok(ordered)
}

/// What `validate` (and `plan`) should point out about a container that is not an error.
pub(crate) fn container_warnings(container: &ContainerSpec) -> Vec<String> {
    let mut warnings = Vec::new();
    let name = &container.name;
    if container.dind
        && !container
            .mounts
            .iter()
            .any(|mount| mount.target == "/var/lib/docker" && mount.volume().is_some())
    {
        warnings.push(format!(
            "container `{name}` runs Docker-in-Docker without a named volume at /var/lib/docker: the image declares VOLUME /var/lib/docker, so every replacement starts with an empty layer cache; add e.g. `volumes = [\"{name}-data:/var/lib/docker\"]`"
        ));
    }
    for mount in &container.mounts {
        if let MountSource::Bind(source) = &mount.source
            && mount.target.ends_with("/config.toml")
        {
            warnings.push(format!(
                "container `{name}` bind-mounts the file `{source}`: a file bind mount pins the inode, so a config.toml replaced atomically is never seen inside (moby/moby #22627); mount its directory instead"
            ));
        }
    }
    if container.stop_signal.is_some() && container.stop_timeout.is_none() {
        warnings.push(format!(
            "container `{name}` sets `stop_signal` but no `stop_timeout`: Docker kills it 10 s after the signal, which cuts running jobs short"
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::source::TomlFile;

    /// One profile of `tests/fixtures/spec-hashes.toml` and the hash of each of its containers.
    #[derive(Deserialize)]
    struct Golden {
        profile: String,
        hashes: BTreeMap<String, String>,
    }

    /// What a container's spec reads of a golden profile: its sections, and the top-level
    /// `mtu` and `registry_mirrors` a dind container's command takes in.
    #[derive(Deserialize)]
    struct GoldenProfile {
        mtu: Option<u32>,
        #[serde(default)]
        registry_mirrors: Vec<String>,
        containers: IndexMap<ObjectName, ContainerSection>,
    }

    /// An upgrade replaces no container: the spec hashes the previous release computed for
    /// these profiles (every field set, a minimal one, dind with mtu and mirrors) are computed
    /// again, byte for byte.
    #[test]
    fn spec_hashes_of_the_previous_release_are_kept() {
        let golden: BTreeMap<String, Golden> =
            toml::from_str(include_str!("../../../tests/fixtures/spec-hashes.toml")).unwrap();
        assert_eq!(golden.len(), 3);
        let mut expected = BTreeMap::new();
        let mut computed = BTreeMap::new();
        for (case, golden) in golden {
            let file = TomlFile::new("golden.toml", golden.profile.as_str());
            let layers = Layers::new(std::slice::from_ref(&file));
            let profile: GoldenProfile = toml::from_str(&golden.profile).unwrap();
            for (name, section) in profile.containers {
                let spec = resolve_container(
                    name,
                    section,
                    profile.mtu,
                    &profile.registry_mirrors,
                    &layers,
                )
                .unwrap_or_else(|problems| panic!("{case}: {problems:?}"));
                computed.insert(format!("{case}: {}", spec.name), spec.spec_hash());
            }
            for (name, hash) in golden.hashes {
                expected.insert(format!("{case}: {name}"), hash);
            }
        }
        assert_eq!(computed, expected);
    }

    #[test]
    fn dind_images_are_recognised() {
        for image in [
            "docker:dind",
            "docker:27-dind",
            "docker:27.5.1-dind-rootless",
            "mirror.example/library/docker:27-dind",
            "docker:27-dind@sha256:abc",
        ] {
            assert!(is_dind_image(image), "{image}");
        }
        for image in [
            "docker:27",
            "docker:27-cli",
            "gitlab/gitlab-runner:latest",
            "registry:5000/dind:1",
            "mydocker:dind",
        ] {
            assert!(!is_dind_image(image), "{image}");
        }
    }

    #[test]
    fn image_references_docker_would_refuse_are_caught() {
        for good in [
            "docker:27-dind",
            "Registry.example:5000/team/app:V1",
            "app@sha256:ab",
            "localhost/x",
        ] {
            assert!(check_image_reference(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "a b", "Team/App:1"] {
            assert!(check_image_reference(bad).is_err(), "{bad}");
        }
    }
}
