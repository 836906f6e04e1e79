//! The Docker daemon as two kinds: [`config`] (`daemon-config`, the keys berth owns in
//! daemon.json) and [`service`] (`daemon/docker`, the running dockerd that reads it). Here: the
//! profile's `[docker]` section they share, checked and with its defaults filled in.

pub(crate) mod config;
pub(crate) mod keys;
mod log_options;
mod restart;
mod runner_drain;
pub(crate) mod service;

use keys::DockerdVersion;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::{
    docker::normalize_mirror,
    host::{HostPath, exec::CommandLine, host_path},
    profile::{
        Layers,
        source::{KeyPath, LocatedError, toml_to_json},
    },
    resource::package::InstallSource,
};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DockerSection {
    /// Where Docker comes from when it is not installed (`package/docker`).
    pub install: Option<InstallSource>,
    pub config: Option<HostPath>,
    pub restart: Option<CommandLine>,
    pub reload: Option<CommandLine>,
    /// Seconds a restart or reload may take in all: the command, then the daemon answering
    /// with the file's settings.
    pub ready_timeout: Option<u64>,
    /// Restart a daemon that takes connections but does not answer (it stops every running
    /// container, so only when asked).
    pub restart_unresponsive: Option<bool>,
    pub daemon: Option<toml::Table>,
}

#[derive(Debug, Clone)]
pub(crate) struct DockerSettings {
    /// `None` when the profile does not say: `"distro"` where Docker objects need Docker.
    pub install: Option<InstallSource>,
    pub config: HostPath,
    pub restart: CommandLine,
    pub reload: CommandLine,
    pub ready_timeout: std::time::Duration,
    pub restart_unresponsive: bool,
    /// The daemon.json keys the profile owns, in the order the profile gives them.
    pub daemon: serde_json::Map<String, Json>,
}

impl DockerSettings {
    pub(crate) fn default_config() -> HostPath {
        host_path("/etc/docker/daemon.json")
    }
}

/// The top-level `mtu` goes into daemon.json (the host's own bridge) unless `[docker.daemon]`
/// already says the same; two different MTUs in one profile are an error, not a guess.
fn apply_mtu(
    mtu: u32,
    daemon: &mut serde_json::Map<String, Json>,
    layers: &Layers,
) -> Result<(), LocatedError> {
    if !(68..=65535).contains(&mtu) {
        return Err(layers.error_at(
            &KeyPath::parse_dotted("mtu"),
            "must be a whole number from 68 to 65535",
        ));
    }
    match daemon.get("mtu") {
        Some(set) if set.as_u64() != Some(u64::from(mtu)) => Err(layers.error_at(
            &KeyPath::parse_dotted("docker.daemon.mtu"),
            format!("{set} contradicts the top-level `mtu = {mtu}`; set one MTU, at the top level"),
        )),
        Some(_) => Ok(()),
        None => {
            daemon.insert("mtu".into(), Json::from(mtu));
            Ok(())
        }
    }
}

/// The top-level `registry_mirrors`, checked as dockerd checks a mirror (http or https, no
/// path beyond `/`, whatever the daemon's version: the dind daemons' versions are not known
/// here) and without duplicates. One list for every daemon: daemon.json's and each dind
/// container's.
pub(crate) fn resolve_registry_mirrors(
    mirrors: Option<Vec<String>>,
    layers: &Layers,
) -> Result<Vec<String>, LocatedError> {
    let key = KeyPath::parse_dotted("registry_mirrors");
    let mut checked: Vec<String> = Vec::new();
    for (index, mirror) in mirrors.unwrap_or_default().into_iter().enumerate() {
        keys::check_mirror(&mirror, None)
            .map_err(|message| layers.error_at(&key.index(index), message))?;
        if !checked
            .iter()
            .any(|known| normalize_mirror(known) == normalize_mirror(&mirror))
        {
            checked.push(mirror);
        }
    }
    Ok(checked)
}

/// The top-level mirrors join `[docker.daemon] registry-mirrors` (which stays the host
/// daemon's own list), each once.
fn apply_registry_mirrors(mirrors: &[String], daemon: &mut serde_json::Map<String, Json>) {
    if mirrors.is_empty() {
        return;
    }
    let entry = daemon
        .entry("registry-mirrors")
        .or_insert_with(|| Json::Array(Vec::new()));
    let Some(list) = entry.as_array_mut() else {
        return;
    };
    for mirror in mirrors {
        let known = list.iter().any(|set| {
            set.as_str()
                .is_some_and(|set| normalize_mirror(set) == normalize_mirror(mirror))
        });
        if !known {
            list.push(Json::from(mirror.as_str()));
        }
    }
}

/// Converts `[docker.daemon]` to daemon.json values, checking the keys whose shape dockerd
/// insists on. dockerd refuses to start on a daemon.json it cannot read, so catching these here
/// (with a line number) beats finding out from a dead daemon.
fn daemon_json(
    table: &toml::Table,
    base: &KeyPath,
    dockerd: Option<DockerdVersion>,
    layers: &Layers,
) -> Result<serde_json::Map<String, Json>, LocatedError> {
    let mut object = serde_json::Map::new();
    for (key, value) in table {
        let path = base.key(key);
        check_daemon_key(key, value, &path, dockerd, layers)?;
        object.insert(key.clone(), toml_to_json(value));
    }
    Ok(object)
}

/// The daemon.json knowledge lives in [`keys`]; this places its complaint on the key (or the
/// mirror, or the log option) in the layer that set it.
fn check_daemon_key(
    key: &str,
    value: &toml::Value,
    path: &KeyPath,
    dockerd: Option<DockerdVersion>,
    layers: &Layers,
) -> Result<(), LocatedError> {
    keys::check(key, value, dockerd).map_err(|problem| {
        let at = match (problem.index, &problem.sub_key) {
            (Some(index), _) => path.index(index),
            (None, Some(sub_key)) => path.key(sub_key),
            (None, None) => path.clone(),
        };
        layers.error_at(&at, problem.message)
    })
}

/// Checks `[docker]` and fills in its defaults; the top-level `mtu` and `registry_mirrors`
/// join `[docker.daemon]`.
pub(crate) fn resolve(
    layer: Option<DockerSection>,
    mtu: Option<u32>,
    registry_mirrors: &[String],
    dockerd: Option<DockerdVersion>,
    layers: &Layers,
) -> Result<DockerSettings, LocatedError> {
    let docker = layer.unwrap_or_default();
    let daemon_key = KeyPath::parse_dotted("docker.daemon");
    let mut daemon = match docker.daemon {
        Some(table) => daemon_json(&table, &daemon_key, dockerd, layers)?,
        None => serde_json::Map::new(),
    };
    if let Some(mtu) = mtu {
        apply_mtu(mtu, &mut daemon, layers)?;
    }
    apply_registry_mirrors(registry_mirrors, &mut daemon);
    let ready_timeout = docker.ready_timeout.unwrap_or(60);
    if ready_timeout == 0 {
        return Err(layers.error_at(
            &KeyPath::parse_dotted("docker.ready_timeout"),
            "must be at least 1 second",
        ));
    }
    Ok(DockerSettings {
        install: docker.install,
        config: docker.config.unwrap_or_else(DockerSettings::default_config),
        restart: docker
            .restart
            .unwrap_or_else(|| CommandLine::new("systemctl", ["restart", "docker"])),
        reload: docker
            .reload
            .unwrap_or_else(|| CommandLine::new("systemctl", ["reload", "docker"])),
        ready_timeout: std::time::Duration::from_secs(ready_timeout),
        restart_unresponsive: docker.restart_unresponsive.unwrap_or(false),
        daemon,
    })
}
