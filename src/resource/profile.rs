//! The whole profile: every kind's section of the merged layers, each resolved by its kind
//! (defaults filled in, checked, errors placed in the layer that set the key), put together as
//! the desired state of the host that [`super::from_profile`] turns into resources.

use std::collections::BTreeMap;

use anyhow::Result;
use indexmap::IndexMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{
    docker::{
        ObjectNames,
        labels::{Instance, has_control},
    },
    host::Host,
    plan::Kind,
    profile::{
        self, Layers, Problems, ProfileError, ProfileRef,
        source::{KeyPath, LocatedError, TomlFile},
    },
    resource::{
        container::{
            self, ContainerFacts, RunnerDirectory,
            spec::{
                ContainerSection, ContainerSpec, container_warnings, order_by_after,
                resolve_container,
            },
            values::{Mount, MountSource},
        },
        daemon::{self, DockerSection, DockerSettings, keys::DockerdVersion},
        docker_object::{ObjectName, Owner, labels, non_empty, string_map},
        hygiene::section::{self as hygiene, HygieneSection, HygieneSpec},
        kernel_module::{self, KernelSection, ModuleName},
        network::resolve_network,
        network::{NetworkSection, NetworkSpec},
        orphan,
        runner::{
            self,
            helper_image::{self, Registries},
            section::{RunnerContainer, RunnerSettings},
        },
        volume::{VolumeSection, VolumeSpec},
    },
};

/// One profile file as written. Every field is optional so that a layer can say only what it
/// changes; defaults are filled in by [`Profile::resolve`] after merging.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileLayer {
    /// For the people who read the profile; berth only checks that it is text.
    #[expect(dead_code, reason = "read by people, not by berth")]
    pub description: Option<String>,
    pub kernel: Option<KernelSection>,
    pub docker: Option<DockerSection>,
    /// gitlab-runner's global settings; checked and typed by `runner::section`.
    pub runner: Option<toml::Table>,
    /// `[runners.NAME]`: the runners this host runs; checked and typed by `runner::section`.
    pub runners: Option<toml::Table>,
    /// One MTU for daemon.json, the profile's networks and dind daemons (each kind applies it).
    pub mtu: Option<u32>,
    /// One list of registry mirrors for daemon.json and every dind daemon's
    /// `--registry-mirror` flags.
    pub registry_mirrors: Option<Vec<String>>,
    /// Which berth configuration this is, on a daemon that several share; labels what berth
    /// makes (`berth.instance`) [default: an HMAC of the machine id].
    pub instance: Option<String>,
    pub networks: Option<indexmap::IndexMap<ObjectName, NetworkSection>>,
    pub volumes: Option<indexmap::IndexMap<ObjectName, VolumeSection>>,
    pub containers: Option<indexmap::IndexMap<ObjectName, ContainerSection>>,
    /// `[hygiene]`: the thresholds each daemon berth manages is kept below.
    pub hygiene: Option<HygieneSection>,
}

/// The merged, checked desired state of a host, with defaults filled in.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    /// The names of the layers, in order (`dind`, `site`): recorded on what berth creates.
    pub names: Vec<String>,
    pub kernel_modules: Vec<ModuleName>,
    pub docker: DockerSettings,
    pub runner: RunnerSettings,
    pub networks: Vec<NetworkSpec>,
    pub volumes: Vec<VolumeSpec>,
    /// In converge order: every container after those in its `after`.
    pub containers: Vec<ContainerSpec>,
    /// `[hygiene]`, when the profile has it: nothing is pruned without it.
    pub hygiene: Option<HygieneSpec>,
    /// How the kinds relate, worked out once: a kind gets its spec and these facts.
    pub relations: Relations,
    /// `berth.instance` on everything berth makes: the profile's `instance`, else the
    /// machine id's app-specific HMAC (filled in by [`load`], which reads the host).
    pub instance: Instance,
    /// Things worth knowing that are not errors, placed like errors (file, line, key);
    /// `validate` and `plan` print them.
    pub warnings: Vec<LocatedError>,
    /// Each layer's file name (`/etc/berth/profiles/site.toml`, `dind (embedded)`) and the
    /// sha256 of its text: what a saved plan was made from.
    pub layer_digests: Vec<(String, String)>,
}

/// What `plan`, `validate` and `doctor` say of a profile that runs gitlab-runner's container
/// (one bind-mounts config.toml's directory) but declares no `[runners.NAME]`: the container
/// starts, finds no runner in config.toml and takes no jobs, which nothing else would tell.
pub(crate) const NO_RUNNER_DECLARED: &str = "no runner is declared: the host will run a runner container that takes no jobs (berth init writes one)";

/// The instance of a host without a machine id (a container, a bare root under `--root`).
const NO_MACHINE_ID: &str = "unknown";
/// berth's application ID (made once with `systemd-id128 new`): machine-id(5) asks that the
/// machine id never be published as it is, but as an HMAC keyed by it over an ID of the
/// application's own. `systemd-id128 machine-id --app-specific=d0598ab36e01462894ed1099e13ed3ce`
/// prints the default instance.
const APP_ID: [u8; 16] = [
    0xd0, 0x59, 0x8a, 0xb3, 0x6e, 0x01, 0x46, 0x28, 0x94, 0xed, 0x10, 0x99, 0xe1, 0x3e, 0xd3, 0xce,
];

/// The default instance: the machine id's app-specific ID, as systemd's
/// `sd_id128_get_machine_app_specific` makes it (HMAC-SHA256 keyed by the id's 16 bytes over
/// [`APP_ID`], its first 16 bytes marked as a version 4 UUID), with the raw id berth labelled
/// with before as the earlier label; [`NO_MACHINE_ID`] when the root has no machine id.
fn default_instance(host: &Host) -> Result<Instance> {
    let Some(machine_id) = crate::host::machine_id::read(host)? else {
        return Ok(Instance {
            label: NO_MACHINE_ID.to_owned(),
            earlier: None,
        });
    };
    Ok(Instance {
        label: crate::host::machine_id::app_specific(&machine_id, &APP_ID),
        earlier: Some(machine_id),
    })
}

/// Reads, parses, merges and checks the given profiles, in order.
pub(crate) fn load(refs: &[ProfileRef], host: &Host) -> Result<Profile> {
    let (names, sources) = profile::read(refs, host)?;
    // Keys are checked against every dockerd version here, without running dockerd (53 ms, on
    // every run); daemon-config checks them against the running daemon's version.
    let mut profile = Profile::from_sources_for(names, &sources, None)?;
    if profile.instance.label.is_empty() {
        profile.instance = default_instance(host)?;
    }
    for directory in profile.hostile_directories() {
        host.distrust(&directory);
    }
    Ok(profile)
}

impl Profile {
    /// The directories a container can write in (the runner's, mounted into its container, and
    /// every bind-mount source not mounted `ro`): berth never follows a link in them (issue 18).
    fn hostile_directories(&self) -> Vec<crate::host::HostPath> {
        let runner = self.runner.config.parent();
        let sources = self.containers.iter().flat_map(|container| {
            container
                .mounts
                .iter()
                .filter(|mount| !mount.options.iter().any(|option| option == "ro"))
                .filter_map(|mount| match &mount.source {
                    MountSource::Bind(source) => Some(source.clone()),
                    _ => None,
                })
        });
        runner.into_iter().chain(sources).collect()
    }
}

impl Profile {
    /// The profile, with daemon.json keys checked against any dockerd version berth knows.
    #[cfg(test)]
    pub(crate) fn from_sources(
        names: Vec<String>,
        sources: &[TomlFile],
    ) -> Result<Self, ProfileError> {
        Self::from_sources_for(names, sources, None)
    }

    /// The profile, with daemon.json keys checked against `dockerd` (the installed version).
    pub(crate) fn from_sources_for(
        names: Vec<String>,
        sources: &[TomlFile],
        dockerd: Option<DockerdVersion>,
    ) -> Result<Self, ProfileError> {
        let layer: ProfileLayer = profile::merge(sources)?;
        let mut profile = Self::resolve(names, layer, dockerd, &Layers::new(sources))?;
        profile.layer_digests = sources
            .iter()
            .map(|source| {
                let digest = Sha256::digest(source.text.as_bytes());
                (source.name.clone(), hex::encode(digest))
            })
            .collect();
        profile.warnings.extend(profile::inline_secrets(sources));
        Ok(profile)
    }

    /// Resolves every section, keeping each section's or entry's error and going on with the
    /// next, so that one run reports every problem of the profile.
    fn resolve(
        names: Vec<String>,
        layer: ProfileLayer,
        dockerd: Option<DockerdVersion>,
        layers: &Layers,
    ) -> Result<Self, ProfileError> {
        let mut problems = Problems::default();
        let registry_mirrors = problems
            .keep(daemon::resolve_registry_mirrors(
                layer.registry_mirrors,
                layers,
            ))
            .unwrap_or_default();
        let docker = problems.keep(daemon::resolve(
            layer.docker,
            layer.mtu,
            &registry_mirrors,
            dockerd,
            layers,
        ));
        let instance_key = KeyPath::parse_dotted("instance");
        let instance = match layer.instance {
            // berth refuses an object whose label holds a control character (see `orphan`).
            Some(instance) if has_control(&instance) => {
                problems.push(layers.error_at(
                    &instance_key,
                    "must not hold a control character (a newline, a tab)",
                ));
                String::new()
            }
            Some(instance) => problems
                .keep(non_empty(Some(instance), "", &instance_key, layers))
                .unwrap_or_default(),
            None => String::new(),
        };
        let objects = resolve_objects(
            ObjectSections {
                networks: layer.networks,
                volumes: layer.volumes,
                containers: layer.containers,
            },
            layer.mtu,
            &registry_mirrors,
            layers,
            &mut problems,
        );
        let (mut runner, mut runner_warnings) = runner::section::resolve(
            layer.runner,
            layer.runners,
            layer.mtu,
            layers,
            &mut problems,
        );
        let mirrors = docker.as_ref().map_or_else(
            || registry_mirrors.clone(),
            |docker| {
                docker
                    .daemon
                    .get("registry-mirrors")
                    .and_then(serde_json::Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|mirror| mirror.as_str().map(str::to_owned))
                    .collect()
            },
        );
        let relations = Relations::of(&runner, &objects.networks, &objects.containers, mirrors);
        let hygiene = problems
            .keep_all(hygiene::resolve(layer.hygiene, layers))
            .flatten();
        runner_container_facts(
            &mut runner,
            &relations,
            &objects.containers,
            &mut runner_warnings,
        );
        // After the runner container is known: its image pins the gitlab-runner version.
        runner.check_feature_flags(&mut runner_warnings);
        runner.helper_image_warnings(&relations.registries, &mut runner_warnings);
        let warnings = objects
            .warnings
            .into_iter()
            .chain(runner_warnings)
            .map(|(key, message)| layers.error_at(&key, message))
            .collect();
        problems.into_result(())?;
        let docker = docker.expect("a section that failed left its error in `problems`");
        Ok(Self {
            names,
            kernel_modules: kernel_module::resolve(layer.kernel),
            docker,
            runner,
            networks: objects.networks,
            volumes: objects.volumes,
            containers: objects.containers,
            hygiene,
            relations,
            instance: Instance {
                label: instance,
                earlier: None,
            },
            warnings,
            layer_digests: Vec::new(),
        })
    }

    /// A label value naming the profiles this host was converged to: `dind+site`.
    pub(crate) fn label(&self) -> String {
        self.names.join("+")
    }

    /// What the profiles declare, as the orphan kind needs it: every name, and the spec hash
    /// of each declared container and network.
    pub(crate) fn declared(&self) -> orphan::DeclaredObjects {
        let mut hashes = BTreeMap::new();
        for container in &self.containers {
            hashes.insert(
                (Kind::Container, container.spec_hash()),
                container.name.to_string(),
            );
        }
        for network in &self.networks {
            hashes.insert(
                (Kind::Network, network.spec_hash()),
                network.name.to_string(),
            );
        }
        orphan::DeclaredObjects {
            names: ObjectNames::from_profile(self),
            hashes,
        }
    }

    /// Who makes this profile's Docker objects.
    pub(crate) fn owner(&self) -> Owner {
        Owner {
            profile: self.label(),
            instance: self.instance.label.clone(),
        }
    }
}

/// What the container that runs gitlab-runner means for the runners (its image, its Docker
/// environment, where it sees config.toml's directory), and the warning for one that runs no
/// runner at all.
fn runner_container_facts(
    runner: &mut RunnerSettings,
    relations: &Relations,
    containers: &[ContainerSpec],
    warnings: &mut Vec<(KeyPath, String)>,
) {
    let runner_container = relations
        .runner_container
        .as_ref()
        .and_then(|name| containers.iter().find(|c| &c.name == name));
    if runner.is_declared()
        && let Some(container) = runner_container
    {
        let config_directory = runner.config.parent().and_then(|directory| {
            container
                .mounts
                .iter()
                .find_map(|mount| match &mount.source {
                    MountSource::Bind(source) if source == &directory => {
                        Some(mount.target.trim_end_matches('/').to_owned())
                    }
                    _ => None,
                })
        });
        runner.run_in(
            RunnerContainer {
                image: container.image.as_str(),
                env: &container.env,
                config_directory,
            },
            warnings,
        );
    }
    if runner.runners.is_empty()
        && let Some(container) = runner_container
    {
        warnings.push((
            KeyPath::parse_dotted("containers").key(container.name.as_str()),
            NO_RUNNER_DECLARED.to_owned(),
        ));
    }
}

/// How the kinds of a profile relate, worked out once by [`Profile::resolve`]: which container
/// runs gitlab-runner, and each container's facts. A kind is given its own spec and these,
/// never the whole profile.
#[derive(Debug, Clone, Default)]
pub(crate) struct Relations {
    /// The container that runs gitlab-runner on the profile's config.toml.
    pub runner_container: Option<ObjectName>,
    /// Every container's facts, by name.
    pub containers: BTreeMap<ObjectName, ContainerFacts>,
    /// Where the profile's images come from (mirrors, private registries): for the runner's
    /// helper image.
    pub registries: Registries,
    /// Each container with `dind = true` (a daemon `[hygiene]` keeps), with the images it
    /// prepulls.
    pub dind: Vec<(ObjectName, Vec<String>)>,
    /// The gitlab-runner version the runner container's image names: its helper image is
    /// never pruned.
    pub runner_version: Option<String>,
}

/// Whether a container with these mounts runs gitlab-runner on `runner`'s config.toml: it
/// bind-mounts the file's directory (as `/etc/gitlab-runner`, the embedded profiles' way) or
/// the file itself. The one rule: the first such container, in converge order, is the one.
fn runs_gitlab_runner(runner: &RunnerSettings, mounts: &[Mount]) -> bool {
    let directory = runner.config.parent();
    mounts.iter().any(|mount| match &mount.source {
        MountSource::Bind(source) => source == &runner.config || directory.as_ref() == Some(source),
        _ => false,
    })
}

impl Relations {
    fn of(
        runner: &RunnerSettings,
        networks: &[NetworkSpec],
        containers: &[ContainerSpec],
        mirrors: Vec<String>,
    ) -> Self {
        let runner_container = containers
            .iter()
            .find(|container| runs_gitlab_runner(runner, &container.mounts))
            .map(|container| container.name.clone());
        let facts = containers
            .iter()
            .map(|spec| {
                let runs = runner_container.as_ref() == Some(&spec.name);
                let facts = ContainerFacts {
                    networks: spec
                        .networks
                        .keys()
                        .filter(|network| networks.iter().any(|known| &known.name == *network))
                        .cloned()
                        .collect(),
                    producers: producers(spec, containers),
                    runs_gitlab_runner: runs,
                    runner_directory: runner.config.parent().filter(|_| runs).map(|path| {
                        RunnerDirectory {
                            path,
                            mode: runner::config::DIR_MODE,
                        }
                    }),
                };
                (spec.name.clone(), facts)
            })
            .collect();
        let runner_version = runner_container
            .as_ref()
            .and_then(|name| containers.iter().find(|c| &c.name == name))
            .and_then(|container| runner::version::runner_version(&container.image));
        let dind = containers
            .iter()
            .filter(|container| container.dind)
            .map(|container| (container.name.clone(), container.prepull.clone()))
            .collect();
        Self {
            runner_container,
            containers: facts,
            registries: registries(runner, containers, mirrors),
            dind,
            runner_version,
        }
    }
}

/// The daemon's mirrors, and the registries other than Docker Hub the profile's images come
/// from: the containers' images and the runners' job and service images.
fn registries(
    runner: &RunnerSettings,
    containers: &[ContainerSpec],
    mirrors: Vec<String>,
) -> Registries {
    let job_images = runner.runners.iter().flat_map(|spec| {
        let docker = spec.settings.get("docker").and_then(toml::Value::as_table);
        let image = docker
            .and_then(|docker| docker.get("image"))
            .and_then(toml::Value::as_str);
        let services = docker
            .and_then(|docker| docker.get("services"))
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|service| service.get("name").and_then(toml::Value::as_str));
        image.into_iter().chain(services)
    });
    let mut private: Vec<String> = Vec::new();
    for image in containers
        .iter()
        .map(|container| container.image.as_str())
        .chain(job_images)
    {
        if let Some(registry) = helper_image::registry_of(image)
            && registry != "registry.gitlab.com"
            && !private.iter().any(|known| known == registry)
        {
            private.push(registry.to_owned());
        }
    }
    Registries { mirrors, private }
}

/// The containers in `spec`'s `after` that write a named volume it mounts read-only (TLS
/// certificates a dind daemon generates), each with the volume.
fn producers(spec: &ContainerSpec, containers: &[ContainerSpec]) -> Vec<(ObjectName, ObjectName)> {
    let mut producers = Vec::new();
    for before in &spec.after {
        let Some(producer) = containers.iter().find(|c| &c.name == before) else {
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
    producers
}

/// The networks, volumes and containers of a merged profile, in converge order, with what
/// `validate` should say about them.
#[derive(Debug, Clone, Default)]
pub(crate) struct DockerObjects {
    pub networks: Vec<NetworkSpec>,
    pub volumes: Vec<VolumeSpec>,
    /// Ordered so that every container comes after those in its `after`.
    pub containers: Vec<ContainerSpec>,
    /// Each with the key it is about.
    pub warnings: Vec<(KeyPath, String)>,
}

/// The merged `[networks]`, `[volumes]` and `[containers]` sections.
#[derive(Debug, Default, Clone)]
pub(crate) struct ObjectSections {
    pub networks: Option<IndexMap<ObjectName, NetworkSection>>,
    pub volumes: Option<IndexMap<ObjectName, VolumeSection>>,
    pub containers: Option<IndexMap<ObjectName, ContainerSection>>,
}

fn resolve_objects(
    objects: ObjectSections,
    mtu: Option<u32>,
    registry_mirrors: &[String],
    layers: &Layers,
    problems: &mut Problems,
) -> DockerObjects {
    let mut resolved = DockerObjects::default();
    for (name, layer) in objects.networks.unwrap_or_default() {
        if let Some(network) = problems.keep(resolve_network(name, layer, mtu, layers)) {
            resolved.networks.push(network);
        }
    }
    for (name, layer) in objects.volumes.unwrap_or_default() {
        let key = KeyPath::parse_dotted("volumes").key(name.as_str());
        let volume = (|| {
            Ok(VolumeSpec {
                driver: non_empty(layer.driver, "local", &key.key("driver"), layers)?,
                options: string_map(layer.options, &key.key("options"), layers)?,
                labels: labels(layer.labels, &key.key("labels"), layers)?,
                name,
            })
        })();
        if let Some(volume) = problems.keep(volume) {
            resolved.volumes.push(volume);
        }
    }
    let mut containers = Vec::new();
    for (name, layer) in objects.containers.unwrap_or_default() {
        let key = KeyPath::parse_dotted("containers").key(name.as_str());
        let Some(container) = problems.keep_all(resolve_container(
            name,
            layer,
            mtu,
            registry_mirrors,
            layers,
        )) else {
            continue;
        };
        resolved.warnings.extend(
            container_warnings(&container)
                .into_iter()
                .map(|warning| (key.clone(), warning)),
        );
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
    resolved.containers = problems
        .keep(order_by_after(containers, layers))
        .unwrap_or_default();
    resolved
}

impl ObjectNames {
    /// Every name the profile's Docker objects go by, each kind's in one list.
    pub(crate) fn from_profile(profile: &Profile) -> Self {
        let mut names = Self::default();
        let add = |list: &mut Vec<String>, name: &str| {
            if !list.iter().any(|known| known == name) {
                list.push(name.to_owned());
            }
        };
        for network in &profile.networks {
            add(&mut names.networks, network.name.as_str());
        }
        for volume in &profile.volumes {
            add(&mut names.volumes, volume.name.as_str());
        }
        for container in &profile.containers {
            add(&mut names.containers, container.name.as_str());
            // What an interrupted replacement may have left, asked in the same batch.
            add(
                &mut names.containers,
                &container::set_aside_name(container.name.as_str()),
            );
            add(&mut names.images, &container.image);
            for network in container.networks.keys() {
                add(&mut names.networks, network.as_str());
            }
        }
        names
    }
}

#[cfg(test)]
#[path = "profile_tests.rs"]
mod tests;
