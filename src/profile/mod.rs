//! Profiles: TOML files that declare what a runner host should look like. This module finds
//! them (by name or path), parses each layer on its own so every error points into the file that
//! has it, deep-merges the layers (tables merge, scalars and arrays replace) and checks the
//! result. It never touches the host beyond reading profile files.

pub(crate) mod source;

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::{
    host::{Host, HostPath, host_path},
    resource::{
        container::spec::{ContainerLayer, ContainerSpec},
        daemon::{self, DockerLayer, DockerSettings},
        docker_object::{self, ObjectLayers, ObjectName},
        kernel_module::{self, KernelLayer, ModuleName},
        network::{NetworkLayer, NetworkSpec},
        runner::{self, section::RunnerSettings},
        volume::{VolumeLayer, VolumeSpec},
    },
};
use source::{KeyPath, LocatedError, TomlSource, deep_merge};

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
        let docker = daemon::resolve(layer.docker, layer.mtu, layers)?;
        let objects = docker_object::resolve(
            ObjectLayers {
                networks: layer.networks,
                volumes: layer.volumes,
                containers: layer.containers,
            },
            layer.mtu,
            layers,
        )?;
        let (runner, runner_warnings) =
            runner::section::resolve(layer.runner, layer.runners, layer.mtu, layers)?;
        Ok(Self {
            names,
            description: layer.description,
            kernel_modules: kernel_module::resolve(layer.kernel),
            docker,
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

/// The layers a merged profile came from, to place errors found after merging: the last layer
/// that sets a key is the one whose value won.
pub(crate) struct Layers<'a>(&'a [TomlSource]);

impl<'a> Layers<'a> {
    pub(crate) fn new(sources: &'a [TomlSource]) -> Self {
        Self(sources)
    }

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
