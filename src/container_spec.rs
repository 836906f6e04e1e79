//! The `[networks.NAME]`, `[volumes.NAME]` and `[containers.NAME]` sections of a profile and the
//! top-level `mtu` as it applies to them. Layer types (every field optional, so that a layer says
//! only what it changes) deserialize with serde; [`resolve`] turns the merged layers into checked
//! specs with defaults filled in, in the order they must converge. The spec hash that berth
//! stamps on every object it creates is computed here from the normalized spec.
//!
//! Nothing here touches the host or the daemon: host paths stay host paths until a resource
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
use sha2::{Digest, Sha256};

use crate::{
    host::{Host, HostPath},
    profile::Layers,
    toml_source::{KeyPath, LocatedError},
};

/// Labels berth puts on every network, volume and container it creates.
pub const LABEL_MANAGED: &str = "berth.managed";
pub const LABEL_PROFILE: &str = "berth.profile";
pub const LABEL_SPEC_HASH: &str = "berth.spec-hash";
/// Profiles may not set labels under berth's own prefix: they would forge ownership.
const RESERVED_LABEL_PREFIX: &str = "berth.";

/// The option through which bridge and overlay networks take their MTU.
pub const NETWORK_MTU_OPTION: &str = "com.docker.network.driver.mtu";

/// A container, network or volume name as Docker accepts it: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
/// Docker refuses one-character container names, so berth refuses them for every kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectName(String);

impl ObjectName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ObjectName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let mut chars = name.chars();
        let valid = name.len() >= 2
            && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if valid {
            Ok(Self(name))
        } else {
            Err(format!(
                "`{name}` is not a Docker object name (at least two characters: a letter or digit, then letters, digits, `_`, `.` or `-`)"
            ))
        }
    }
}

impl From<ObjectName> for String {
    fn from(name: ObjectName) -> String {
        name.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Layers, as written

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkLayer {
    pub driver: Option<String>,
    pub options: Option<IndexMap<String, String>>,
    pub internal: Option<bool>,
    pub labels: Option<IndexMap<String, String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeLayer {
    pub driver: Option<String>,
    pub options: Option<IndexMap<String, String>>,
    pub labels: Option<IndexMap<String, String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerLayer {
    pub image: Option<String>,
    pub privileged: Option<bool>,
    pub restart: Option<RestartPolicy>,
    pub networks: Option<NetworksLayer>,
    pub volumes: Option<Vec<Mount>>,
    pub env: Option<IndexMap<String, String>>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub ports: Option<Vec<Port>>,
    pub labels: Option<IndexMap<String, String>>,
    pub user: Option<String>,
    pub workdir: Option<String>,
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
}

/// `networks = ["a", "b"]` or `networks = { a = { aliases = ["x"] } }`. The table form merges
/// across layers like any table; the list form replaces.
#[derive(Debug, Default, Clone)]
pub struct NetworksLayer(pub IndexMap<ObjectName, AttachmentLayer>);

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentLayer {
    pub aliases: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for NetworksLayer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NetworksVisitor;
        impl<'de> Visitor<'de> for NetworksVisitor {
            type Value = NetworksLayer;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a list of network names, or a table of network name = { aliases = [...] }",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut networks = IndexMap::new();
                while let Some(name) = seq.next_element::<ObjectName>()? {
                    networks.insert(name, AttachmentLayer::default());
                }
                Ok(NetworksLayer(networks))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut networks = IndexMap::new();
                while let Some((name, attachment)) =
                    map.next_entry::<ObjectName, AttachmentLayer>()?
                {
                    networks.insert(name, attachment);
                }
                Ok(NetworksLayer(networks))
            }
        }
        deserializer.deserialize_any(NetworksVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Value types parsed at the edge

/// `no | always | unless-stopped | on-failure[:N]`, as `docker run --restart` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    UnlessStopped,
    /// With the maximum number of retries; `None` retries forever.
    OnFailure(Option<u32>),
}

impl RestartPolicy {
    /// The policy as Docker reports it: `Name` and `MaximumRetryCount`.
    pub fn from_docker(name: &str, maximum_retries: u32) -> Self {
        match name {
            "always" => Self::Always,
            "unless-stopped" => Self::UnlessStopped,
            "on-failure" => Self::OnFailure((maximum_retries > 0).then_some(maximum_retries)),
            _ => Self::No,
        }
    }
}

impl TryFrom<String> for RestartPolicy {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "no" => Ok(Self::No),
            "always" => Ok(Self::Always),
            "unless-stopped" => Ok(Self::UnlessStopped),
            "on-failure" => Ok(Self::OnFailure(None)),
            other => match other.strip_prefix("on-failure:").map(str::parse::<u32>) {
                Some(Ok(retries)) if retries > 0 => Ok(Self::OnFailure(Some(retries))),
                _ => Err(format!(
                    "`{text}` is not a restart policy (no, always, unless-stopped, on-failure[:N])"
                )),
            },
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::No => f.write_str("no"),
            Self::Always => f.write_str("always"),
            Self::UnlessStopped => f.write_str("unless-stopped"),
            Self::OnFailure(None) => f.write_str("on-failure"),
            Self::OnFailure(Some(retries)) => write!(f, "on-failure:{retries}"),
        }
    }
}

/// When berth pulls a container's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull only when the image is not on the host.
    #[default]
    Missing,
    /// Pull at every apply, and replace the container when the tag moved.
    Always,
    /// Never pull: a missing image is an error.
    Never,
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "missing",
            Self::Always => "always",
            Self::Never => "never",
        })
    }
}

/// Where a mount's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A host directory or file: resolved under `--root`.
    Bind(HostPath),
    /// A named volume: survives the container.
    Volume(ObjectName),
    /// `-v /path`: an anonymous volume, removed with the container.
    Anonymous,
}

/// One `volumes` entry: `SOURCE:TARGET[:OPTIONS]` or just `TARGET` (anonymous), as `docker run
/// -v` takes it. A source starting with `/` is a host path; anything else names a volume.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Mount {
    pub source: MountSource,
    pub target: String,
    /// `ro`, `z`, `rshared`, ...: kept as written, in order.
    pub options: Vec<String>,
}

const MOUNT_OPTIONS: &[&str] = &[
    "ro",
    "rw",
    "z",
    "Z",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "private",
    "rprivate",
    "nocopy",
    "consistent",
    "cached",
    "delegated",
];

impl TryFrom<String> for Mount {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, options) = match parts.as_slice() {
            [target] => (MountSource::Anonymous, *target, ""),
            [source, target] => (parse_source(source)?, *target, ""),
            [source, target, options] => (parse_source(source)?, *target, *options),
            _ => return Err(format!("`{text}` is not SOURCE:TARGET[:OPTIONS]")),
        };
        if !target.starts_with('/') {
            return Err(format!(
                "`{text}`: the target `{target}` must be an absolute path in the container"
            ));
        }
        let options: Vec<String> = options
            .split(',')
            .filter(|option| !option.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(unknown) = options
            .iter()
            .find(|option| !MOUNT_OPTIONS.contains(&option.as_str()))
        {
            return Err(format!(
                "`{text}`: unknown mount option `{unknown}` (one of {})",
                MOUNT_OPTIONS.join(", ")
            ));
        }
        Ok(Self {
            source,
            target: target.to_owned(),
            options,
        })
    }
}

fn parse_source(source: &str) -> Result<MountSource, String> {
    if source.starts_with('/') {
        HostPath::new(source).map(MountSource::Bind)
    } else {
        ObjectName::try_from(source.to_owned()).map(MountSource::Volume)
    }
}

impl Mount {
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|option| option == "ro")
    }

    pub fn volume(&self) -> Option<&ObjectName> {
        match &self.source {
            MountSource::Volume(name) => Some(name),
            _ => None,
        }
    }

    /// The `-v` argument, with a bind source resolved under the root: what Docker reports back
    /// in `HostConfig.Binds`. `None` for an anonymous volume, which Docker lists elsewhere.
    pub fn bind_argument(&self, host: &Host) -> Option<String> {
        let source = match &self.source {
            MountSource::Bind(path) => host.path(path).display().to_string(),
            MountSource::Volume(name) => name.to_string(),
            MountSource::Anonymous => return None,
        };
        let mut argument = format!("{source}:{}", self.target);
        if !self.options.is_empty() {
            argument.push(':');
            argument.push_str(&self.options.join(","));
        }
        Some(argument)
    }

    /// As written, independent of the root: what the spec hash covers.
    fn normalized(&self) -> String {
        let source = match &self.source {
            MountSource::Bind(path) => path.to_string(),
            MountSource::Volume(name) => name.to_string(),
            MountSource::Anonymous => String::new(),
        };
        format!("{source}:{}:{}", self.target, self.options.join(","))
    }
}

/// One `ports` entry: `[IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]`, as `docker run -p` takes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Port {
    pub host_ip: String,
    /// Empty: Docker picks a free port.
    pub host_port: String,
    pub container_port: u16,
    pub protocol: String,
}

impl TryFrom<String> for Port {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let fail = |why: &str| {
            format!("`{text}` is not [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp|sctp]: {why}")
        };
        let (address, protocol) = match text.rsplit_once('/') {
            Some((address, protocol)) => (address, protocol),
            None => (text.as_str(), "tcp"),
        };
        if !matches!(protocol, "tcp" | "udp" | "sctp") {
            return Err(fail("unknown protocol"));
        }
        // An IPv6 address is written in brackets: [::1]:2375:2375.
        let (host_ip, rest) = match address.strip_prefix('[') {
            Some(bracketed) => {
                let (ip, rest) = bracketed
                    .split_once("]:")
                    .ok_or_else(|| fail("unclosed `[`"))?;
                (ip.to_owned(), rest)
            }
            None => (String::new(), address),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host_port, container_port) = match (host_ip.is_empty(), parts.as_slice()) {
            (true, [container]) => (String::new(), "", *container),
            (true, [host, container]) => (String::new(), *host, *container),
            (true, [ip, host, container]) => ((*ip).to_owned(), *host, *container),
            (false, [host, container]) => (host_ip, *host, *container),
            _ => return Err(fail("too many `:`")),
        };
        if container_port.contains('-') || host_port.contains('-') {
            return Err(fail("port ranges are not supported; list each port"));
        }
        let container_port = container_port
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| fail("the container port is not a port number"))?;
        if !host_port.is_empty() && host_port.parse::<u16>().is_err() {
            return Err(fail("the host port is not a port number"));
        }
        Ok(Self {
            host_ip: ip,
            host_port: host_port.to_owned(),
            container_port,
            protocol: protocol.to_owned(),
        })
    }
}

impl Port {
    /// `2375/tcp`: how Docker keys `HostConfig.PortBindings`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }

    pub fn argument(&self) -> String {
        let ip = if self.host_ip.contains(':') {
            format!("[{}]", self.host_ip)
        } else {
            self.host_ip.clone()
        };
        match (ip.is_empty(), self.host_port.is_empty()) {
            (true, true) => self.key(),
            (true, false) => format!("{}:{}", self.host_port, self.key()),
            (false, _) => format!("{ip}:{}:{}", self.host_port, self.key()),
        }
    }
}

/// One `devices` entry: `HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Device {
    pub host: HostPath,
    pub container: String,
    pub permissions: String,
}

impl TryFrom<String> for Device {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let (host, container, permissions) = match parts.as_slice() {
            [host] => (*host, *host, "rwm"),
            [host, container] => (*host, *container, "rwm"),
            [host, container, permissions] => (*host, *container, *permissions),
            _ => {
                return Err(format!(
                    "`{text}` is not HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]"
                ));
            }
        };
        if !container.starts_with('/') {
            return Err(format!("`{text}`: `{container}` is not an absolute path"));
        }
        if permissions.is_empty() || !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(format!(
                "`{text}`: permissions are some of `r`, `w` and `m`"
            ));
        }
        Ok(Self {
            host: HostPath::new(host)?,
            container: container.to_owned(),
            permissions: permissions.to_owned(),
        })
    }
}

impl Device {
    pub fn argument(&self, host: &Host) -> String {
        format!(
            "{}:{}:{}",
            host.path(&self.host).display(),
            self.container,
            self.permissions
        )
    }
}

/// `SIGQUIT`, `QUIT` and `3` all name one signal; Docker keeps what it was given. Compare and
/// pass them in one form: `SIGQUIT` (numbers stay numbers).
pub fn normalize_signal(signal: &str) -> String {
    let upper = signal.trim().to_ascii_uppercase();
    if upper.is_empty() || upper.chars().all(|c| c.is_ascii_digit()) || upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    }
}

/// Docker takes capabilities with or without `CAP_`, in any case.
pub fn normalize_capability(capability: &str) -> String {
    let upper = capability.trim().to_ascii_uppercase();
    upper
        .strip_prefix("CAP_")
        .map_or(upper.clone(), str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// Resolved specs

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: ObjectName,
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

impl NetworkSpec {
    pub fn spec_hash(&self) -> String {
        hash(&serde_json::json!({
            "driver": self.driver,
            "options": self.options,
            "internal": self.internal,
            "labels": self.labels,
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub name: ObjectName,
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl VolumeSpec {
    fn with_defaults(name: ObjectName) -> Self {
        Self {
            name,
            driver: "local".into(),
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }

    pub fn spec_hash(&self) -> String {
        hash(&serde_json::json!({
            "driver": self.driver,
            "options": self.options,
            "labels": self.labels,
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: ObjectName,
    pub image: String,
    pub privileged: bool,
    pub restart: RestartPolicy,
    /// Network name → aliases, in profile order; the first is the one the container is created on.
    pub networks: IndexMap<ObjectName, Vec<String>>,
    pub mounts: Vec<Mount>,
    pub env: BTreeMap<String, String>,
    /// With `--mtu=N` appended for a dind container when the profile sets `mtu`.
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub ports: Vec<Port>,
    pub labels: BTreeMap<String, String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// Normalized: upper case, without `CAP_`.
    pub cap_add: Vec<String>,
    pub security_opt: Vec<String>,
    pub devices: Vec<Device>,
    /// Normalized: `SIGQUIT`.
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    pub pull: PullPolicy,
    pub after: Vec<ObjectName>,
    pub dind: bool,
}

/// What the spec hash covers: everything that shapes the container, and nothing that only
/// steers berth (`pull`, `after`) or the run (`--root`). Every field that can be empty is left
/// out when it is, so a field added in a later berth version does not change the hash of the
/// containers that do not use it (and so does not replace them all on upgrade).
#[derive(Serialize)]
struct NormalizedContainer<'a> {
    image: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    privileged: bool,
    restart: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    networks: BTreeMap<&'a str, Vec<&'a str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    env: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entrypoint: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workdir: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cap_add: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    security_opt: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    devices: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_signal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_timeout: Option<u32>,
}

fn is_false(value: &bool) -> bool {
    !value
}

fn sorted_str(items: &[String]) -> Vec<&str> {
    let mut items: Vec<&str> = items.iter().map(String::as_str).collect();
    items.sort_unstable();
    items
}

impl ContainerSpec {
    /// sha256 of the normalized spec: equal specs hash equal whatever the order they were
    /// written in (sets are sorted; env and labels are maps).
    pub fn spec_hash(&self) -> String {
        let sorted = |items: Vec<String>| -> Vec<String> {
            let mut items = items;
            items.sort();
            items
        };
        let normalized = NormalizedContainer {
            image: &self.image,
            privileged: self.privileged,
            restart: self.restart.to_string(),
            networks: self
                .networks
                .iter()
                .map(|(name, aliases)| (name.as_str(), sorted_str(aliases)))
                .collect(),
            volumes: sorted(self.mounts.iter().map(Mount::normalized).collect()),
            env: &self.env,
            command: self.command.as_ref(),
            entrypoint: self.entrypoint.as_ref(),
            ports: sorted(self.ports.iter().map(Port::argument).collect()),
            labels: &self.labels,
            user: self.user.as_deref(),
            workdir: self.workdir.as_deref(),
            cap_add: sorted_str(&self.cap_add),
            security_opt: sorted_str(&self.security_opt),
            devices: sorted(
                self.devices
                    .iter()
                    .map(|device| {
                        format!(
                            "{}:{}:{}",
                            device.host, device.container, device.permissions
                        )
                    })
                    .collect(),
            ),
            stop_signal: self.stop_signal.as_deref(),
            stop_timeout: self.stop_timeout,
        };
        hash(&normalized)
    }

    /// The named volumes this container mounts.
    pub fn volume_names(&self) -> impl Iterator<Item = &ObjectName> {
        self.mounts.iter().filter_map(Mount::volume)
    }
}

fn hash(value: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(value).expect("a spec serializes");
    hex::encode(Sha256::digest(&bytes))
}

/// True for the official Docker-in-Docker images: `docker:dind`, `docker:27-dind`,
/// `docker:27.5-dind-rootless`, also behind a registry mirror (`mirror.example/library/docker`).
pub fn is_dind_image(image: &str) -> bool {
    let without_digest = image.split('@').next().unwrap_or(image);
    let (repository, tag) = match without_digest.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (without_digest, "latest"),
    };
    let name = repository.rsplit('/').next().unwrap_or(repository);
    name == "docker" && tag.split('-').any(|part| part == "dind")
}

// ---------------------------------------------------------------------------------------------
// Resolving

/// The networks, volumes and containers of a merged profile, in converge order, with what
/// `validate` should say about them.
#[derive(Debug, Clone, Default)]
pub struct DockerObjects {
    pub networks: Vec<NetworkSpec>,
    pub volumes: Vec<VolumeSpec>,
    /// Ordered so that every container comes after those in its `after`.
    pub containers: Vec<ContainerSpec>,
    pub warnings: Vec<String>,
}

/// The merged `[networks]`, `[volumes]` and `[containers]` sections.
#[derive(Debug, Default, Clone)]
pub struct ObjectLayers {
    pub networks: Option<IndexMap<ObjectName, NetworkLayer>>,
    pub volumes: Option<IndexMap<ObjectName, VolumeLayer>>,
    pub containers: Option<IndexMap<ObjectName, ContainerLayer>>,
}

pub(crate) fn resolve(
    objects: ObjectLayers,
    mtu: Option<u32>,
    layers: &Layers,
) -> Result<DockerObjects, LocatedError> {
    let mut resolved = DockerObjects::default();
    for (name, layer) in objects.networks.unwrap_or_default() {
        resolved
            .networks
            .push(resolve_network(name, layer, mtu, layers)?);
    }
    for (name, layer) in objects.volumes.unwrap_or_default() {
        let key = KeyPath::parse_dotted("volumes").key(name.as_str());
        resolved.volumes.push(VolumeSpec {
            driver: non_empty(layer.driver, "local", &key.key("driver"), layers)?,
            options: string_map(layer.options, &key.key("options"), layers)?,
            labels: labels(layer.labels, &key.key("labels"), layers)?,
            name,
        });
    }
    let mut containers = Vec::new();
    for (name, layer) in objects.containers.unwrap_or_default() {
        let container = resolve_container(name, layer, mtu, layers)?;
        resolved.warnings.extend(container_warnings(&container));
        containers.push(container);
    }
    // A named volume a container mounts without declaring it is still berth's: declare it with
    // the defaults, so it is created labelled (rather than implicitly by `docker create`).
    for container in &containers {
        for volume in container.volume_names() {
            if !resolved.volumes.iter().any(|known| &known.name == volume) {
                resolved
                    .volumes
                    .push(VolumeSpec::with_defaults(volume.clone()));
            }
        }
    }
    resolved.containers = order_by_after(containers, layers)?;
    Ok(resolved)
}

fn resolve_network(
    name: ObjectName,
    layer: NetworkLayer,
    mtu: Option<u32>,
    layers: &Layers,
) -> Result<NetworkSpec, LocatedError> {
    let key = KeyPath::parse_dotted("networks").key(name.as_str());
    let driver = non_empty(layer.driver, "bridge", &key.key("driver"), layers)?;
    let mut options = string_map(layer.options, &key.key("options"), layers)?;
    // Only the bridge and overlay drivers take an MTU option; others refuse unknown options.
    if let Some(mtu) = mtu
        && matches!(driver.as_str(), "bridge" | "overlay")
    {
        let wanted = mtu.to_string();
        match options.get(NETWORK_MTU_OPTION) {
            Some(set) if *set != wanted => {
                return Err(layers.error_at(
                    &key.key("options").key(NETWORK_MTU_OPTION),
                    format!("`{set}` contradicts the top-level `mtu = {mtu}`; set one MTU, at the top level"),
                ));
            }
            _ => {
                options.insert(NETWORK_MTU_OPTION.to_owned(), wanted);
            }
        }
    }
    Ok(NetworkSpec {
        driver,
        options,
        internal: layer.internal.unwrap_or(false),
        labels: labels(layer.labels, &key.key("labels"), layers)?,
        name,
    })
}

fn resolve_container(
    name: ObjectName,
    layer: ContainerLayer,
    mtu: Option<u32>,
    layers: &Layers,
) -> Result<ContainerSpec, LocatedError> {
    let key = KeyPath::parse_dotted("containers").key(name.as_str());
    let Some(image) = layer.image else {
        return Err(layers.error_at(&key, "a container needs an `image`"));
    };
    if let Err(why) = check_image_reference(&image) {
        return Err(layers.error_at(
            &key.key("image"),
            format!("`{image}` is not an image reference: {why}"),
        ));
    }
    let mut networks = IndexMap::new();
    for (network, attachment) in layer.networks.unwrap_or_default().0 {
        let aliases = attachment.aliases.unwrap_or_default();
        if let Some(bad) = aliases
            .iter()
            .find(|alias| alias.is_empty() || alias.contains(char::is_whitespace))
        {
            return Err(layers.error_at(
                &key.key("networks").key(network.as_str()),
                format!("`{bad}` is not a network alias"),
            ));
        }
        networks.insert(network, aliases);
    }
    let mut env = BTreeMap::new();
    for (variable, value) in layer.env.unwrap_or_default() {
        if variable.is_empty() || variable.contains('=') {
            return Err(layers.error_at(
                &key.key("env").key(&variable),
                "an environment variable name is not empty and has no `=`",
            ));
        }
        env.insert(variable, value);
    }
    if layer.entrypoint.as_ref().is_some_and(Vec::is_empty) {
        return Err(layers.error_at(
            &key.key("entrypoint"),
            "must name a program; leave it out to keep the image's entrypoint",
        ));
    }
    let stop_signal = match layer.stop_signal {
        Some(signal) => {
            let normalized = normalize_signal(&signal);
            let valid = normalized.chars().all(|c| c.is_ascii_digit())
                || (normalized.len() > 3
                    && normalized[3..]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-'));
            if !valid {
                return Err(layers.error_at(
                    &key.key("stop_signal"),
                    format!("`{signal}` is not a signal (e.g. SIGQUIT)"),
                ));
            }
            Some(normalized)
        }
        None => None,
    };
    let mut cap_add = Vec::new();
    for capability in layer.cap_add.unwrap_or_default() {
        let normalized = normalize_capability(&capability);
        if normalized.is_empty()
            || !normalized
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(layers.error_at(
                &key.key("cap_add"),
                format!("`{capability}` is not a capability (e.g. NET_ADMIN)"),
            ));
        }
        if !cap_add.contains(&normalized) {
            cap_add.push(normalized);
        }
    }
    let dind = layer.dind.unwrap_or_else(|| is_dind_image(&image));
    // `command = []` cannot be passed to `docker create` (no arguments means the image's CMD),
    // so it means what it does there: the image's CMD.
    let mut command = layer.command.filter(|command| !command.is_empty());
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
    let after = layer.after.unwrap_or_default();
    if after.contains(&name) {
        return Err(layers.error_at(&key.key("after"), "a container cannot come after itself"));
    }
    Ok(ContainerSpec {
        privileged: layer.privileged.unwrap_or(false),
        restart: layer.restart.unwrap_or_default(),
        networks,
        mounts: layer.volumes.unwrap_or_default(),
        env,
        command,
        entrypoint: layer.entrypoint,
        ports: layer.ports.unwrap_or_default(),
        labels: labels(layer.labels, &key.key("labels"), layers)?,
        user: layer.user.filter(|user| !user.is_empty()),
        workdir: layer.workdir.filter(|workdir| !workdir.is_empty()),
        cap_add,
        security_opt: layer.security_opt.unwrap_or_default(),
        devices: layer.devices.unwrap_or_default(),
        stop_signal,
        stop_timeout: layer.stop_timeout,
        pull: layer.pull.unwrap_or_default(),
        after,
        dind,
        image,
        name,
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

fn non_empty(
    value: Option<String>,
    default: &str,
    key: &KeyPath,
    layers: &Layers,
) -> Result<String, LocatedError> {
    match value {
        Some(value) if value.trim().is_empty() => Err(layers.error_at(key, "must not be empty")),
        Some(value) => Ok(value),
        None => Ok(default.to_owned()),
    }
}

fn string_map(
    map: Option<IndexMap<String, String>>,
    key: &KeyPath,
    layers: &Layers,
) -> Result<BTreeMap<String, String>, LocatedError> {
    let mut resolved = BTreeMap::new();
    for (name, value) in map.unwrap_or_default() {
        if name.is_empty() {
            return Err(layers.error_at(key, "a key must not be empty"));
        }
        resolved.insert(name, value);
    }
    Ok(resolved)
}

fn labels(
    map: Option<IndexMap<String, String>>,
    key: &KeyPath,
    layers: &Layers,
) -> Result<BTreeMap<String, String>, LocatedError> {
    let labels = string_map(map, key, layers)?;
    if let Some(reserved) = labels
        .keys()
        .find(|label| label.starts_with(RESERVED_LABEL_PREFIX))
    {
        return Err(layers.error_at(
            &key.key(reserved),
            format!("labels under `{RESERVED_LABEL_PREFIX}` are berth's own: they say which objects berth created"),
        ));
    }
    Ok(labels)
}

/// Orders containers so that each comes after those in its `after`, keeping the profile's
/// order otherwise; an unknown name or a cycle is an error at the `after` that causes it.
fn order_by_after(
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
fn container_warnings(container: &ContainerSpec) -> Vec<String> {
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

    #[test]
    fn names_follow_docker_rules() {
        assert!(ObjectName::try_from("gitlab-runner".to_owned()).is_ok());
        assert!(ObjectName::try_from("a".to_owned()).is_err());
        assert!(ObjectName::try_from("-x".to_owned()).is_err());
        assert!(ObjectName::try_from("a b".to_owned()).is_err());
    }

    #[test]
    fn mounts_tell_binds_volumes_and_anonymous_apart() {
        let cases = [
            (
                "/srv/gitlab-runner:/etc/gitlab-runner",
                "bind",
                "/etc/gitlab-runner",
                "",
            ),
            (
                "gitlab-dind-data:/var/lib/docker",
                "volume",
                "/var/lib/docker",
                "",
            ),
            ("certs:/certs/client:ro", "volume", "/certs/client", "ro"),
            ("/var/lib/docker", "anonymous", "/var/lib/docker", ""),
        ];
        for (text, kind, target, options) in cases {
            let mount = Mount::try_from(text.to_owned()).unwrap();
            let found = match mount.source {
                MountSource::Bind(_) => "bind",
                MountSource::Volume(_) => "volume",
                MountSource::Anonymous => "anonymous",
            };
            assert_eq!(
                (
                    found,
                    mount.target.as_str(),
                    mount.options.join(",").as_str()
                ),
                (kind, target, options),
                "{text}"
            );
        }
        for bad in ["rel:dir", "a:/b:bogus", "/a:/b:ro:x", "/a/../b:/c"] {
            assert!(Mount::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        let host = Host::new("/r");
        let bind = Mount::try_from("/srv/x:/etc/x:ro".to_owned()).unwrap();
        assert_eq!(bind.bind_argument(&host).unwrap(), "/r/srv/x:/etc/x:ro");
    }

    #[test]
    fn ports_parse_like_docker_run() {
        let cases = [
            ("2375", "", "", 2375, "tcp", "2375/tcp"),
            ("8080:80", "", "8080", 80, "tcp", "8080:80/tcp"),
            (
                "127.0.0.1:2376:2376",
                "127.0.0.1",
                "2376",
                2376,
                "tcp",
                "127.0.0.1:2376:2376/tcp",
            ),
            (
                "127.0.0.1::53/udp",
                "127.0.0.1",
                "",
                53,
                "udp",
                "127.0.0.1::53/udp",
            ),
            (
                "[::1]:2375:2375",
                "::1",
                "2375",
                2375,
                "tcp",
                "[::1]:2375:2375/tcp",
            ),
        ];
        for (text, ip, host_port, container, protocol, argument) in cases {
            let port = Port::try_from(text.to_owned()).unwrap();
            assert_eq!(
                (
                    port.host_ip.as_str(),
                    port.host_port.as_str(),
                    port.container_port,
                    port.protocol.as_str(),
                    port.argument().as_str()
                ),
                (ip, host_port, container, protocol, argument),
                "{text}"
            );
        }
        for bad in ["x", "80/icmp", "8000-8010:8000-8010", "1:2:3:4", "0"] {
            assert!(Port::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn restart_policies_round_trip() {
        for text in [
            "no",
            "always",
            "unless-stopped",
            "on-failure",
            "on-failure:3",
        ] {
            assert_eq!(
                RestartPolicy::try_from(text.to_owned())
                    .unwrap()
                    .to_string(),
                text
            );
        }
        assert!(RestartPolicy::try_from("sometimes".to_owned()).is_err());
        assert_eq!(RestartPolicy::from_docker("", 0), RestartPolicy::No);
        assert_eq!(
            RestartPolicy::from_docker("on-failure", 5),
            RestartPolicy::OnFailure(Some(5))
        );
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

    #[test]
    fn signals_and_capabilities_compare_in_one_form() {
        assert_eq!(normalize_signal("quit"), "SIGQUIT");
        assert_eq!(normalize_signal("SIGQUIT"), "SIGQUIT");
        assert_eq!(normalize_signal("3"), "3");
        assert_eq!(normalize_capability("cap_net_admin"), "NET_ADMIN");
    }
}
