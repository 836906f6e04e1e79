//! Profiles: TOML files that declare what a runner host should look like. This module finds
//! them (by name or path), parses each layer on its own so every error points into the file that
//! has it, deep-merges the layers (tables merge, scalars and arrays replace) and checks the
//! result. It never touches the host beyond reading profile files.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::{
    container_spec::{
        self, ContainerLayer, ContainerSpec, NetworkLayer, NetworkSpec, ObjectLayers, ObjectName,
        VolumeLayer, VolumeSpec,
    },
    exec::CommandLine,
    host::{Host, HostPath, host_path},
    runner_spec::{self, RunnerSettings},
    toml_source::{KeyPath, LocatedError, TomlSource, deep_merge},
};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_profiles.rs"));
}

/// The profile berth converges to when neither `-p` nor `/etc/berth/berth.toml` names one.
pub const DEFAULT_PROFILE: &str = "dind";

/// Where operators put their own profiles; a name is looked up here before the embedded ones.
pub const PROFILE_DIR: &str = "/etc/berth/profiles";

/// The profiles compiled into the binary: every file in the repository's `profiles/`.
pub fn embedded() -> impl Iterator<Item = (&'static str, &'static str)> {
    embedded::EMBEDDED.iter().copied()
}

pub fn embedded_text(name: &str) -> Option<&'static str> {
    embedded()
        .find(|(embedded_name, _)| *embedded_name == name)
        .map(|(_, text)| text)
}

/// How the user named a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileRef {
    /// `dind`: `/etc/berth/profiles/dind.toml` under the root, else the embedded `dind`.
    Name(String),
    /// `./site.toml` on the command line: a path on the machine berth runs on.
    LocalFile(PathBuf),
    /// A path listed in `/etc/berth/berth.toml`: a host path, so it resolves under the root.
    HostFile(HostPath),
}

impl ProfileRef {
    /// A bare word is a name; anything with a `/` or a `.toml` suffix is a file.
    pub fn parse_cli(text: &str) -> Self {
        if text.contains('/') || text.ends_with(".toml") {
            Self::LocalFile(PathBuf::from(text))
        } else {
            Self::Name(text.to_owned())
        }
    }

    /// Like [`ProfileRef::parse_cli`], but files are host paths; relative ones are relative to
    /// `/etc/berth`.
    pub fn parse_host(text: &str) -> Self {
        if text.contains('/') || text.ends_with(".toml") {
            let path = if text.starts_with('/') {
                PathBuf::from(text)
            } else {
                PathBuf::from("/etc/berth").join(text)
            };
            match HostPath::new(path) {
                Ok(path) => Self::HostFile(path),
                Err(_) => Self::LocalFile(PathBuf::from(text)),
            }
        } else {
            Self::Name(text.to_owned())
        }
    }

    /// A short name for labels and reports: the file stem or the name.
    pub fn short_name(&self) -> String {
        match self {
            Self::Name(name) => name.clone(),
            Self::LocalFile(path) => stem(path),
            Self::HostFile(path) => stem(path.as_path()),
        }
    }

    fn read(&self, host: &Host) -> Result<TomlSource> {
        match self {
            Self::Name(name) => {
                let operator_copy = host_path(PROFILE_DIR).join(format!("{name}.toml"));
                if let Some(text) = host.read_optional(&operator_copy)? {
                    return Ok(TomlSource::new(operator_copy.to_string(), text));
                }
                let text = embedded_text(name).with_context(|| {
                    let known: Vec<_> = embedded().map(|(name, _)| name).collect();
                    format!(
                        "no profile named `{name}`: not in `{operator_copy}` nor among the embedded profiles ({})",
                        known.join(", ")
                    )
                })?;
                Ok(TomlSource::new(format!("{name} (embedded)"), text))
            }
            Self::LocalFile(path) => {
                let text = fs_err::read_to_string(path)
                    .with_context(|| format!("failed to read profile `{}`", path.display()))?;
                Ok(TomlSource::new(path.display().to_string(), text))
            }
            Self::HostFile(path) => {
                let text = host
                    .read_optional(path)?
                    .with_context(|| format!("profile `{path}` does not exist"))?;
                Ok(TomlSource::new(path.to_string(), text))
            }
        }
    }
}

fn stem(path: &std::path::Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |stem| stem.to_string_lossy().into_owned(),
    )
}

/// One profile file as written. Every field is optional so that a layer can say only what it
/// changes; defaults are filled in by [`Profile::resolve`] after merging.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileLayer {
    pub description: Option<String>,
    pub kernel: Option<KernelLayer>,
    pub docker: Option<DockerLayer>,
    /// gitlab-runner's global settings; checked and typed by `runner_spec`.
    pub runner: Option<toml::Table>,
    /// `[runners.NAME]`: the runners this host runs; checked and typed by `runner_spec`.
    pub runners: Option<toml::Table>,
    /// One MTU for daemon.json, the profile's networks and dind daemons (see container_spec).
    pub mtu: Option<u32>,
    pub networks: Option<indexmap::IndexMap<ObjectName, NetworkLayer>>,
    pub volumes: Option<indexmap::IndexMap<ObjectName, VolumeLayer>>,
    pub containers: Option<indexmap::IndexMap<ObjectName, ContainerLayer>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelLayer {
    pub modules: Option<Vec<ModuleName>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerLayer {
    pub config: Option<HostPath>,
    pub restart: Option<CommandLine>,
    pub reload: Option<CommandLine>,
    /// Seconds to wait for the daemon to answer after a restart or reload.
    pub ready_timeout: Option<u64>,
    pub daemon: Option<toml::Table>,
}

/// A kernel module name as `modprobe` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct ModuleName(String);

impl ModuleName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The kernel reports `-` in module names as `_` (`/proc/modules`, `/sys/module`).
    pub fn kernel_form(&self) -> String {
        self.0.replace('-', "_")
    }
}

impl TryFrom<String> for ModuleName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if valid {
            Ok(Self(name))
        } else {
            Err(format!(
                "`{name}` is not a kernel module name (letters, digits, `_` and `-`)"
            ))
        }
    }
}

impl std::fmt::Display for ModuleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The merged, checked desired state of a host, with defaults filled in.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The names of the layers, in order (`dind`, `site`): recorded on what berth creates.
    pub names: Vec<String>,
    pub description: Option<String>,
    pub kernel_modules: Vec<ModuleName>,
    pub docker: DockerSettings,
    pub runner: RunnerSettings,
    /// The top-level `mtu`, already applied to daemon.json, networks and dind containers; the
    /// runner config's `network_mtu` reads it from here.
    pub mtu: Option<u32>,
    pub networks: Vec<NetworkSpec>,
    pub volumes: Vec<VolumeSpec>,
    /// In converge order: every container after those in its `after`.
    pub containers: Vec<ContainerSpec>,
    /// Things worth knowing that are not errors; `validate` and `plan` print them.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DockerSettings {
    pub config: HostPath,
    pub restart: CommandLine,
    pub reload: CommandLine,
    pub ready_timeout: std::time::Duration,
    /// The daemon.json keys the profile owns, in the order the profile gives them.
    pub daemon: serde_json::Map<String, Json>,
}

impl DockerSettings {
    pub fn default_config() -> HostPath {
        host_path("/etc/docker/daemon.json")
    }
}

/// Why a set of profiles could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid profile `{file}`")]
pub struct ProfileError {
    pub file: String,
    #[source]
    pub problem: LocatedError,
}

impl From<LocatedError> for ProfileError {
    fn from(problem: LocatedError) -> Self {
        Self {
            file: problem.file.clone(),
            problem,
        }
    }
}

/// Reads, parses, merges and checks the given profiles, in order.
pub fn load(refs: &[ProfileRef], host: &Host) -> Result<Profile> {
    let mut layers = Vec::new();
    for profile_ref in refs {
        layers.push(profile_ref.read(host)?);
    }
    let names = refs.iter().map(ProfileRef::short_name).collect();
    Ok(Profile::from_sources(names, &layers)?)
}

impl Profile {
    pub fn from_sources(names: Vec<String>, sources: &[TomlSource]) -> Result<Self, ProfileError> {
        let mut merged = toml::Table::new();
        for source in sources {
            let (_checked, table) = source.parse::<ProfileLayer>()?;
            deep_merge(&mut merged, table);
        }
        let layer: ProfileLayer =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|error: toml::de::Error| {
                    // Every layer passed on its own; a merge of valid layers stays valid. Report it
                    // against the last file all the same rather than panic.
                    ProfileError::from(LocatedError {
                        file: sources
                            .last()
                            .map_or_else(String::new, |source| source.name.clone()),
                        position: None,
                        key: None,
                        message: error.message().to_owned(),
                    })
                })?;
        Self::resolve(names, layer, &Layers(sources))
    }

    fn resolve(
        names: Vec<String>,
        layer: ProfileLayer,
        layers: &Layers,
    ) -> Result<Self, ProfileError> {
        let kernel = layer.kernel.unwrap_or_default();
        let docker = layer.docker.unwrap_or_default();
        let daemon_key = KeyPath::parse_dotted("docker.daemon");
        let mut daemon = match docker.daemon {
            Some(table) => daemon_json(&table, &daemon_key, layers)?,
            None => serde_json::Map::new(),
        };
        if let Some(mtu) = layer.mtu {
            apply_mtu(mtu, &mut daemon, layers)?;
        }
        let objects = container_spec::resolve(
            ObjectLayers {
                networks: layer.networks,
                volumes: layer.volumes,
                containers: layer.containers,
            },
            layer.mtu,
            layers,
        )?;
        let ready_timeout = docker.ready_timeout.unwrap_or(60);
        if ready_timeout == 0 {
            return Err(layers
                .error_at(
                    &KeyPath::parse_dotted("docker.ready_timeout"),
                    "must be at least 1 second",
                )
                .into());
        }
        let (mut runner, runner_warnings) =
            runner_spec::resolve(layer.runner, layer.runners, &|key, message| {
                layers.error_at(key, message)
            })?;
        if let Some(mtu) = layer.mtu {
            apply_mtu_to_runners(mtu, &mut runner, layers)?;
        }
        Ok(Self {
            names,
            description: layer.description,
            kernel_modules: dedup(kernel.modules.unwrap_or_default()),
            docker: DockerSettings {
                config: docker.config.unwrap_or_else(DockerSettings::default_config),
                restart: docker
                    .restart
                    .unwrap_or_else(|| CommandLine::new("systemctl", ["restart", "docker"])),
                reload: docker
                    .reload
                    .unwrap_or_else(|| CommandLine::new("systemctl", ["reload", "docker"])),
                ready_timeout: std::time::Duration::from_secs(ready_timeout),
                daemon,
            },
            runner,
            mtu: layer.mtu,
            networks: objects.networks,
            volumes: objects.volumes,
            containers: objects.containers,
            warnings: [objects.warnings, runner_warnings].concat(),
        })
    }

    /// A label value naming the profiles this host was converged to: `dind+site`.
    pub fn label(&self) -> String {
        self.names.join("+")
    }
}

fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut unique = Vec::with_capacity(items.len());
    for item in items {
        if !unique.contains(&item) {
            unique.push(item);
        }
    }
    unique
}

/// The layers a merged profile came from, to place errors found after merging: the last layer
/// that sets a key is the one whose value won.
pub(crate) struct Layers<'a>(&'a [TomlSource]);

impl Layers<'_> {
    pub(crate) fn error_at(&self, key: &KeyPath, message: impl Into<String>) -> LocatedError {
        let source = self
            .0
            .iter()
            .rev()
            .find(|source| source.sets(key))
            .or(self.0.last())
            .expect("a profile has at least one layer");
        source.error_at(key, message)
    }
}

/// The top-level `mtu` goes into daemon.json (the host's own bridge) unless `[docker.daemon]`
/// already says the same; two different MTUs in one profile are an error, not a guess.
/// The job networks a docker-executor runner creates get the host's MTU too: a job container
/// whose MTU exceeds the path's drops large packets (gitlab-runner #28960).
fn apply_mtu_to_runners(
    mtu: u32,
    runner: &mut RunnerSettings,
    layers: &Layers,
) -> Result<(), LocatedError> {
    for spec in &mut runner.runners {
        let executor = spec
            .settings
            .get("executor")
            .and_then(toml::Value::as_str)
            .unwrap_or_default();
        if !executor.starts_with("docker") {
            continue;
        }
        let docker = spec
            .settings
            .entry("docker")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(docker) = docker.as_table_mut() else {
            continue;
        };
        match docker.get("network_mtu") {
            Some(set) if set.as_integer() != Some(i64::from(mtu)) => {
                let key = KeyPath::root()
                    .key("runners")
                    .key(&spec.name)
                    .key("docker")
                    .key("network_mtu");
                return Err(layers.error_at(
                    &key,
                    format!("{set} contradicts the top-level `mtu = {mtu}`; set one MTU, at the top level"),
                ));
            }
            Some(_) => {}
            None => {
                docker.insert("network_mtu".into(), toml::Value::Integer(i64::from(mtu)));
            }
        }
    }
    Ok(())
}

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

/// TOML and JSON agree on everything daemon.json uses; datetimes become RFC 3339 strings.
pub fn toml_to_json(value: &toml::Value) -> Json {
    match value {
        toml::Value::String(text) => Json::String(text.clone()),
        toml::Value::Integer(number) => Json::from(*number),
        toml::Value::Float(number) => {
            serde_json::Number::from_f64(*number).map_or(Json::Null, Json::Number)
        }
        toml::Value::Boolean(flag) => Json::Bool(*flag),
        toml::Value::Datetime(datetime) => Json::String(datetime.to_string()),
        toml::Value::Array(items) => Json::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Json::Object(
            table
                .iter()
                .map(|(key, value)| (key.clone(), toml_to_json(value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(layers: &[&str]) -> Result<Profile, String> {
        let sources: Vec<_> = layers
            .iter()
            .enumerate()
            .map(|(index, text)| TomlSource::new(format!("layer{index}.toml"), *text))
            .collect();
        Profile::from_sources(vec!["t".into()], &sources).map_err(|error| error.problem.to_string())
    }

    #[test]
    fn every_embedded_profile_is_valid() {
        for (name, text) in embedded() {
            let source = TomlSource::new(name, text);
            Profile::from_sources(vec![name.into()], &[source])
                .unwrap_or_else(|error| panic!("embedded profile `{name}`: {}", error.problem));
        }
        assert!(
            embedded_text(DEFAULT_PROFILE).is_some(),
            "the default profile is embedded"
        );
    }

    #[test]
    fn defaults_are_filled_in() {
        let profile = profile(&[""]).unwrap();
        assert_eq!(profile.docker.config, host_path("/etc/docker/daemon.json"));
        assert_eq!(
            profile.docker.restart.to_string(),
            "systemctl restart docker"
        );
        assert_eq!(profile.docker.reload.to_string(), "systemctl reload docker");
        assert!(profile.kernel_modules.is_empty());
    }

    #[test]
    fn later_layers_merge_tables_and_replace_arrays() {
        let profile = profile(&[
            "[kernel]\nmodules = [\"overlay\", \"br_netfilter\"]\n[docker.daemon]\nstorage-driver = \"overlay2\"\nregistry-mirrors = [\"https://a.example\"]\n",
            "[kernel]\nmodules = [\"overlay\"]\n[docker.daemon]\nregistry-mirrors = [\"https://b.example\"]\n",
        ])
        .unwrap();
        assert_eq!(
            profile
                .kernel_modules
                .iter()
                .map(ModuleName::as_str)
                .collect::<Vec<_>>(),
            ["overlay"]
        );
        assert_eq!(
            Json::Object(profile.docker.daemon),
            serde_json::json!({"storage-driver": "overlay2", "registry-mirrors": ["https://b.example"]})
        );
    }

    #[test]
    fn unknown_key_is_located_in_its_layer() {
        let error = profile(&["[docker]\n", "\n[docker]\nrestrat = [\"x\"]\n"]).unwrap_err();
        assert!(
            error.starts_with("layer1.toml:3:1: key `docker.restrat`: unknown field `restrat`"),
            "{error}"
        );
    }

    #[test]
    fn bad_module_name_is_located() {
        let error = profile(&["[kernel]\nmodules = [\"overlay\", \"no such\"]\n"]).unwrap_err();
        // toml places a conversion error on the whole array, not the element.
        assert!(
            error.starts_with(
                "layer0.toml:2:11: key `kernel.modules`: `no such` is not a kernel module name"
            ),
            "{error}"
        );
    }

    #[test]
    fn empty_command_is_rejected() {
        let error = profile(&["[docker]\nrestart = []\n"]).unwrap_err();
        assert!(
            error.contains("key `docker.restart`: a command is a non-empty list"),
            "{error}"
        );
    }

    #[test]
    fn daemon_values_dockerd_would_reject_are_located_in_the_layer_that_set_them() {
        let error = profile(&[
            "[docker.daemon]\nmtu = 1500\n",
            "[docker.daemon]\nmtu = 10\n",
        ])
        .unwrap_err();
        assert!(
            error.starts_with("layer1.toml:2:1: key `docker.daemon.mtu`: must be a whole number"),
            "{error}"
        );
        let error = profile(&["[docker.daemon.log-opts]\nmax-file = 3\n"]).unwrap_err();
        assert!(
            error.contains("key `docker.daemon.log-opts.max-file`: must be a string"),
            "{error}"
        );
        let error = profile(&["[docker.daemon]\nregistry-mirrors = [\"mirror.example.com\"]\n"])
            .unwrap_err();
        assert!(error.contains("key `docker.daemon.registry-mirrors[0]`: `mirror.example.com` is not an http(s) URL"), "{error}");
    }

    #[test]
    fn cli_references_tell_names_from_files() {
        assert_eq!(
            ProfileRef::parse_cli("dind"),
            ProfileRef::Name("dind".into())
        );
        assert_eq!(
            ProfileRef::parse_cli("site.toml"),
            ProfileRef::LocalFile("site.toml".into())
        );
        assert_eq!(
            ProfileRef::parse_host("site.toml"),
            ProfileRef::HostFile(host_path("/etc/berth/site.toml"))
        );
    }

    #[test]
    fn the_top_level_mtu_reaches_docker_runners_job_networks() {
        let runner = "[runners.r]\nurl = \"https://gitlab.example.com\"\ntoken_file = \"/etc/berth/tokens/r\"\nexecutor = \"docker\"\n";
        let resolved = profile(&[&format!("mtu = 1400\n{runner}")]).unwrap();
        let docker = resolved.runner.runners[0].settings["docker"]
            .as_table()
            .unwrap();
        assert_eq!(docker["network_mtu"].as_integer(), Some(1400));
        let error = profile(&[&format!(
            "mtu = 1400\n{runner}[runners.r.docker]\nnetwork_mtu = 1500\n"
        )])
        .unwrap_err();
        assert!(
            error.contains(
                "key `runners.r.docker.network_mtu`: 1500 contradicts the top-level `mtu = 1400`"
            ),
            "{error}"
        );
        let shell = "[runners.s]\nurl = \"https://gitlab.example.com\"\ntoken_file = \"/etc/berth/tokens/s\"\nexecutor = \"shell\"\n";
        let resolved = profile(&[&format!("mtu = 1400\n{shell}")]).unwrap();
        assert!(
            resolved.runner.runners[0].settings.get("docker").is_none(),
            "only docker executors"
        );
    }
}
