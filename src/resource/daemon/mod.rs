//! The Docker daemon as two kinds: [`config`] (`daemon-config`, the keys berth owns in
//! daemon.json) and [`service`] (`daemon/docker`, the running dockerd that reads it). Here: the
//! profile's `[docker]` section they share, checked and with its defaults filled in.

pub(crate) mod config;
pub(crate) mod service;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::{
    host::{HostPath, exec::CommandLine, host_path},
    profile::{
        Layers,
        source::{KeyPath, LocatedError, toml_to_json},
    },
};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DockerSection {
    pub config: Option<HostPath>,
    pub restart: Option<CommandLine>,
    pub reload: Option<CommandLine>,
    /// Seconds to wait for the daemon to answer after a restart or reload.
    pub ready_timeout: Option<u64>,
    pub daemon: Option<toml::Table>,
}

#[derive(Debug, Clone)]
pub(crate) struct DockerSettings {
    pub config: HostPath,
    pub restart: CommandLine,
    pub reload: CommandLine,
    pub ready_timeout: std::time::Duration,
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

/// Converts `[docker.daemon]` to daemon.json values, checking the keys whose shape dockerd
/// insists on. dockerd refuses to start on a daemon.json it cannot read, so catching these here
/// (with a line number) beats finding out from a dead daemon.
fn daemon_json(
    table: &toml::Table,
    base: &KeyPath,
    layers: &Layers,
) -> Result<serde_json::Map<String, Json>, LocatedError> {
    let mut object = serde_json::Map::new();
    for (key, value) in table {
        let path = base.key(key);
        check_daemon_key(key, value, &path, layers)?;
        object.insert(key.clone(), toml_to_json(value));
    }
    Ok(object)
}

fn check_daemon_key(
    key: &str,
    value: &toml::Value,
    path: &KeyPath,
    layers: &Layers,
) -> Result<(), LocatedError> {
    use toml::Value as T;
    let fail = |message: String| Err(layers.error_at(path, message));
    let string_list = |value: &T| matches!(value, T::Array(items) if items.iter().all(T::is_str));
    match key {
        "storage-driver"
        | "data-root"
        | "log-driver"
        | "log-level"
        | "default-cgroupns-mode"
        | "bip"
        | "group"
        | "exec-root"
        | "pidfile" => {
            let Some(text) = value.as_str() else {
                return fail("must be a string".into());
            };
            if matches!(key, "data-root" | "exec-root" | "pidfile") && !text.starts_with('/') {
                return fail(format!("`{text}` must be an absolute path"));
            }
            if text.is_empty() {
                return fail("must not be empty".into());
            }
        }
        "registry-mirrors" => {
            if !string_list(value) {
                return fail("must be a list of URLs".into());
            }
            for (index, mirror) in value.as_array().into_iter().flatten().enumerate() {
                let mirror = mirror.as_str().unwrap_or_default();
                if !(mirror.starts_with("https://") || mirror.starts_with("http://")) {
                    return Err(layers.error_at(&path.index(index), format!("`{mirror}` is not an http(s) URL: dockerd wants the scheme, e.g. `https://{mirror}`")));
                }
            }
        }
        "insecure-registries"
        | "labels"
        | "hosts"
        | "dns"
        | "dns-search"
        | "dns-opts"
        | "exec-opts"
        | "storage-opts"
            if !string_list(value) =>
        {
            return fail("must be a list of strings".into());
        }
        "mtu" => match value.as_integer() {
            Some(68..=65535) => {}
            _ => return fail("must be a whole number from 68 to 65535".into()),
        },
        "max-concurrent-downloads"
        | "max-concurrent-uploads"
        | "max-download-attempts"
        | "shutdown-timeout" => match value.as_integer() {
            Some(1..) => {}
            _ => return fail("must be a whole number of at least 1".into()),
        },
        "debug" | "live-restore" | "ipv6" | "iptables" | "ip-forward" | "ip-masq"
        | "userland-proxy" | "experimental" | "icc" | "selinux-enabled"
            if !value.is_bool() =>
        {
            return fail("must be true or false".into());
        }
        "log-opts" => {
            let Some(options) = value.as_table() else {
                return fail("must be a table of strings".into());
            };
            for (option, option_value) in options {
                if !option_value.is_str() {
                    return Err(layers.error_at(&path.key(option), format!("must be a string: dockerd reads every log option as text, write `{option} = \"{option_value}\"`")));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Checks `[docker]` and fills in its defaults; the top-level `mtu` joins `[docker.daemon]`.
pub(crate) fn resolve(
    layer: Option<DockerSection>,
    mtu: Option<u32>,
    layers: &Layers,
) -> Result<DockerSettings, LocatedError> {
    let docker = layer.unwrap_or_default();
    let daemon_key = KeyPath::parse_dotted("docker.daemon");
    let mut daemon = match docker.daemon {
        Some(table) => daemon_json(&table, &daemon_key, layers)?,
        None => serde_json::Map::new(),
    };
    if let Some(mtu) = mtu {
        apply_mtu(mtu, &mut daemon, layers)?;
    }
    let ready_timeout = docker.ready_timeout.unwrap_or(60);
    if ready_timeout == 0 {
        return Err(layers.error_at(
            &KeyPath::parse_dotted("docker.ready_timeout"),
            "must be at least 1 second",
        ));
    }
    Ok(DockerSettings {
        config: docker.config.unwrap_or_else(DockerSettings::default_config),
        restart: docker
            .restart
            .unwrap_or_else(|| CommandLine::new("systemctl", ["restart", "docker"])),
        reload: docker
            .reload
            .unwrap_or_else(|| CommandLine::new("systemctl", ["reload", "docker"])),
        ready_timeout: std::time::Duration::from_secs(ready_timeout),
        daemon,
    })
}
