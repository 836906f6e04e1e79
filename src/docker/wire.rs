//! Docker's wire types: what `docker container|image|network|volume inspect` report, typed,
//! only the fields berth reads. What Docker *says*, beside the client that asks it; a kind owns
//! what it *wants* (its spec) and compares the two. Unknown fields are ignored and missing ones
//! default, because the CLI and the daemon add and drop fields between releases (and fill some
//! only once a container ran).

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

use crate::docker::{
    Inspect,
    labels::{Labelled, Labels},
};

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ContainerInfo {
    pub id: ContainerId,
    /// With Docker's leading `/`.
    pub name: String,
    /// The ID of the image the container was created from.
    pub image: ImageId,
    pub state: ContainerState,
    pub config: Config,
    pub host_config: HostConfig,
    pub network_settings: NetworkSettings,
    /// Everything mounted into it, however it was asked for (`-v`, `--mount`,
    /// `--volumes-from`, the image's VOLUMEs): what drift checks for a mount berth never set.
    pub mounts: Vec<MountPoint>,
}

/// One entry of a container's `Mounts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct MountPoint {
    /// `bind`, `volume`, `tmpfs`, ...
    #[serde(rename = "Type")]
    pub kind: String,
    /// The volume's name, for a volume.
    pub name: String,
    pub source: String,
    pub destination: String,
}

impl ContainerInfo {
    pub(crate) fn short_id(&self) -> &str {
        self.id.short()
    }

    pub(crate) fn plain_name(&self) -> &str {
        self.name.trim_start_matches('/')
    }

    /// True for an alias Docker gives the container on a user-defined network by itself: its
    /// short ID, its name, and (Docker 20.10) a hostname set with `--hostname`.
    pub(crate) fn is_automatic_alias(&self, alias: &str) -> bool {
        alias == self.short_id()
            || alias == self.plain_name()
            || (!self.config.hostname.is_empty() && alias == self.config.hostname)
    }

    pub(crate) fn networks(&self) -> &BTreeMap<String, Endpoint> {
        static EMPTY: BTreeMap<String, Endpoint> = BTreeMap::new();
        self.network_settings.networks.as_ref().unwrap_or(&EMPTY)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ContainerState {
    pub status: ContainerStatus,
    pub running: bool,
    pub started_at: String,
}

/// Docker's IDs, each of one kind of object: a container's is never compared with an image's.
/// As Docker writes them (64 hexadecimal digits; an image's with `sha256:`), empty until Docker
/// gives one (a container's endpoint before it first starts).
macro_rules! docker_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub(crate) struct $name(String);

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

docker_id!(
    /// A container's ID.
    ContainerId
);
docker_id!(
    /// An image's ID, `sha256:` and its digest.
    ImageId
);
docker_id!(
    /// A network's ID.
    NetworkId
);

impl ContainerId {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12 digits `docker ps` shows, and Docker gives a container as an alias.
    pub(crate) fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl ImageId {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl NetworkId {
    /// True until Docker gives the endpoint one (the container has not started on it).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A container's `State.Status`, as Docker reports it. A word a later Docker adds is kept as
/// written (`Other`), never taken for one of these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub(crate) enum ContainerStatus {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    Other(String),
}

impl From<String> for ContainerStatus {
    fn from(word: String) -> Self {
        match word.as_str() {
            "created" => Self::Created,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "restarting" => Self::Restarting,
            "removing" => Self::Removing,
            "exited" => Self::Exited,
            "dead" => Self::Dead,
            _ => Self::Other(word),
        }
    }
}

impl From<&str> for ContainerStatus {
    fn from(word: &str) -> Self {
        Self::from(word.to_owned())
    }
}

impl fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
            Self::Other(word) => word,
        })
    }
}

/// A container's `Config`, and an image's: the daemon merges the image's into the container's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Config {
    pub image: String,
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub labels: Option<Labels>,
    pub user: String,
    pub working_dir: String,
    pub hostname: String,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    /// Anonymous volumes: the image's VOLUMEs and `-v /path`.
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
}

impl Config {
    pub(crate) fn env_map(&self) -> BTreeMap<&str, &str> {
        self.env
            .iter()
            .flatten()
            .map(|entry| entry.split_once('=').unwrap_or((entry.as_str(), "")))
            .collect()
    }
}

impl Labelled for Config {
    fn labels(&self) -> Option<&Labels> {
        self.labels.as_ref()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct HostConfig {
    pub binds: Option<Vec<String>>,
    pub privileged: bool,
    /// The OCI runtime that runs it (`runc`, `sysbox-runc`), as `--runtime` or the daemon's
    /// default set it.
    pub runtime: String,
    pub restart_policy: RestartPolicyInfo,
    pub port_bindings: Option<BTreeMap<String, Option<Vec<PortBindingInfo>>>>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    /// As Docker keeps them, which is not always as given: `seccomp=FILE` comes back as
    /// `seccomp=` and the file's JSON, `systempaths=unconfined` not at all (see
    /// `masked_paths`), and a privileged container gains `label=disable`.
    pub security_opt: Option<Vec<String>>,
    /// Empty lists, not absent, are what `systempaths=unconfined` leaves; a privileged
    /// container has none at all, any other the default masked and read-only paths.
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    pub devices: Option<Vec<DeviceInfo>>,
    /// The log driver and options the container was created with: Docker fixes them at create
    /// (the daemon's `log-driver` and `log-opts` then, unless the container set its own).
    pub log_config: LogConfig,
}

/// `HostConfig.LogConfig`: `{"Type": "json-file", "Config": {"max-size": "10m"}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct LogConfig {
    #[serde(rename = "Type")]
    pub driver: String,
    pub config: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct RestartPolicyInfo {
    pub name: RestartPolicyName,
    /// Only meaningful for `on-failure`; 0 there means no limit.
    pub maximum_retry_count: u32,
}

/// `HostConfig.RestartPolicy.Name` as Docker reports it: `no` (or empty, which Docker also
/// means as none), `always`, `unless-stopped`, `on-failure`. Anything else is kept as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub(crate) enum RestartPolicyName {
    #[default]
    No,
    Always,
    UnlessStopped,
    OnFailure,
    Other(String),
}

impl From<String> for RestartPolicyName {
    fn from(word: String) -> Self {
        match word.as_str() {
            "" | "no" => Self::No,
            "always" => Self::Always,
            "unless-stopped" => Self::UnlessStopped,
            "on-failure" => Self::OnFailure,
            _ => Self::Other(word),
        }
    }
}

impl From<&str> for RestartPolicyName {
    fn from(word: &str) -> Self {
        Self::from(word.to_owned())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct PortBindingInfo {
    pub host_ip: String,
    pub host_port: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct DeviceInfo {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct NetworkSettings {
    pub networks: Option<BTreeMap<String, Endpoint>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Endpoint {
    pub aliases: Option<Vec<String>>,
    /// Empty until the container first starts on the network.
    #[serde(rename = "NetworkID")]
    pub network_id: NetworkId,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ImageInfo {
    pub id: ImageId,
    pub repo_tags: Option<Vec<String>>,
    pub repo_digests: Option<Vec<String>>,
    pub config: Config,
}

/// `docker.io/library/docker:27-dind` and `docker:27-dind` name one image, as do `busybox`
/// and `busybox:latest`; Docker lists tags in the short form.
pub(crate) fn normalize_reference(reference: &str) -> String {
    let mut name = reference;
    for prefix in ["docker.io/", "index.docker.io/", "registry-1.docker.io/"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest;
        }
    }
    if let Some(rest) = name.strip_prefix("library/") {
        name = rest;
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if name.contains('@') || last.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

pub(crate) fn short_image_id(id: &ImageId) -> &str {
    let hex = id.as_str().strip_prefix("sha256:").unwrap_or(id.as_str());
    &hex[..hex.len().min(12)]
}

impl Inspect for ContainerInfo {
    const KIND: &'static str = "container";

    fn answers_to(&self, name: &str) -> bool {
        self.plain_name() == name
    }
}

impl Inspect for ImageInfo {
    const KIND: &'static str = "image";

    /// True when `reference` (a tag, a digest reference or an ID) names this image.
    fn answers_to(&self, reference: &str) -> bool {
        if reference.starts_with("sha256:") {
            return self.id.as_str() == reference;
        }
        let wanted = normalize_reference(reference);
        self.repo_tags
            .iter()
            .flatten()
            .chain(self.repo_digests.iter().flatten())
            .any(|known| normalize_reference(known) == wanted)
    }
}

/// What `docker network inspect` reports: only the fields berth reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct NetworkInfo {
    pub name: String,
    pub id: NetworkId,
    pub driver: String,
    pub options: Option<Labels>,
    pub internal: bool,
    pub labels: Option<Labels>,
    /// Only containers with a live endpoint (running ones).
    pub containers: Option<BTreeMap<String, NetworkMember>>,
}

impl Labelled for NetworkInfo {
    fn labels(&self) -> Option<&Labels> {
        self.labels.as_ref()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct NetworkMember {
    pub name: String,
}

impl Inspect for NetworkInfo {
    const KIND: &'static str = "network";

    fn answers_to(&self, name: &str) -> bool {
        self.name == name
    }
}

/// What `docker volume inspect` reports: only the fields berth reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct VolumeInfo {
    pub name: String,
    pub driver: String,
    pub options: Option<Labels>,
    pub labels: Option<Labels>,
    pub created_at: String,
}

impl Labelled for VolumeInfo {
    fn labels(&self) -> Option<&Labels> {
        self.labels.as_ref()
    }
}

impl Inspect for VolumeInfo {
    const KIND: &'static str = "volume";

    fn answers_to(&self, name: &str) -> bool {
        self.name == name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_compare_in_docker_short_form() {
        assert_eq!(
            normalize_reference("docker.io/library/docker:27-dind"),
            "docker:27-dind"
        );
        assert_eq!(normalize_reference("busybox"), "busybox:latest");
        assert_eq!(
            normalize_reference("registry:5000/app"),
            "registry:5000/app:latest"
        );
        assert_eq!(
            normalize_reference("gitlab/gitlab-runner:v17.11.0"),
            "gitlab/gitlab-runner:v17.11.0"
        );
        let image = ImageInfo {
            id: "sha256:abc".into(),
            repo_tags: Some(vec!["docker:27-dind".into()]),
            ..ImageInfo::default()
        };
        assert!(image.answers_to("docker.io/library/docker:27-dind"));
        assert!(image.answers_to("sha256:abc"));
        assert!(!image.answers_to("docker:28-dind"));
    }

    #[test]
    fn a_status_or_restart_policy_docker_adds_later_is_kept_as_written() {
        let info: ContainerInfo = serde_json::from_str(
            r#"{"State":{"Status":"hibernating"},
                "HostConfig":{"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":3}}}"#,
        )
        .unwrap();
        assert_eq!(info.state.status.to_string(), "hibernating");
        assert_eq!(
            info.host_config.restart_policy.name,
            RestartPolicyName::OnFailure
        );
        let dead: ContainerStatus = serde_json::from_str(r#""dead""#).unwrap();
        assert_eq!(dead, ContainerStatus::Dead);
        let other: RestartPolicyName = serde_json::from_str(r#""sometimes""#).unwrap();
        assert_eq!(other, RestartPolicyName::Other("sometimes".into()));
    }

    #[test]
    fn a_created_container_parses_with_what_is_missing_defaulted() {
        let info: ContainerInfo = serde_json::from_str(
            r#"{"Id":"0123456789abcdef","Name":"/gitlab-dind","State":{"Status":"created"},
                "Config":{"Labels":{"berth.managed":"true"},"Cmd":null},
                "NetworkSettings":{"Networks":{"net":{"Aliases":["docker"],"NetworkID":""}}}}"#,
        )
        .unwrap();
        assert_eq!(info.plain_name(), "gitlab-dind");
        assert_eq!(info.state.status, ContainerStatus::Created);
        assert_eq!(info.host_config.restart_policy.name, RestartPolicyName::No);
        assert_eq!(info.short_id(), "0123456789ab");
        assert!(info.config.managed());
        assert_eq!(
            info.networks()["net"].aliases.as_deref(),
            Some(&["docker".to_owned()][..])
        );
    }
}
