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
        kernel_module::{self, KernelSection, ModuleName},
        network::resolve_network,
        network::{NetworkSection, NetworkSpec},
        orphan,
        runner::{
            self,
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

/// Where the machine id, which the default instance is made from, is read.
const MACHINE_ID: &str = "/etc/machine-id";
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
    let text = host.read_optional(&crate::host::host_path(MACHINE_ID))?;
    let Some(machine_id) = text
        .map(|text| text.trim().to_owned())
        .filter(|id| !id.is_empty())
    else {
        return Ok(Instance {
            label: NO_MACHINE_ID.to_owned(),
            earlier: None,
        });
    };
    Ok(Instance {
        label: app_specific_id(&machine_id),
        earlier: Some(machine_id),
    })
}

/// [`default_instance`]'s HMAC. A machine id that is not 32 hexadecimal digits (never on a
/// systemd host) keys it with its text as it is.
fn app_specific_id(machine_id: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let key = hex::decode(machine_id)
        .ok()
        .filter(|bytes| bytes.len() == 16)
        .unwrap_or_else(|| machine_id.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(&APP_ID);
    let mut id: [u8; 16] = mac.finalize().into_bytes()[..16]
        .try_into()
        .expect("SHA-256 is 32 bytes");
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    hex::encode(id)
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
        let relations = Relations::of(&runner, &objects.networks, &objects.containers);
        runner_container_facts(
            &mut runner,
            &relations,
            &objects.containers,
            &mut runner_warnings,
        );
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
    fn of(runner: &RunnerSettings, networks: &[NetworkSpec], containers: &[ContainerSpec]) -> Self {
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
        Self {
            runner_container,
            containers: facts,
        }
    }
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
mod tests {
    use super::*;
    use crate::{
        host::host_path,
        profile::{DEFAULT_PROFILE, embedded, embedded_text},
    };
    use serde_json::Value as Json;

    /// The one rule (issue 19): the first container, in converge order, that bind-mounts
    /// config.toml or its directory runs gitlab-runner; only it gets the directory's mode and
    /// restarts for config.toml, whatever else mounts the directory.
    #[test]
    fn relations_name_one_runner_container_and_each_containers_networks_and_producers() {
        let profile = profile(&[r#"
[runner]
config = "/srv/r/config.toml"
[networks.ci]
[containers.dind]
image = "docker:27-dind"
networks = ["ci", "undeclared"]
volumes = ["certs:/certs"]
[containers.runner]
image = "gitlab/gitlab-runner:v17.11.0"
after = ["dind"]
volumes = ["/srv/r:/etc/gitlab-runner", "certs:/certs:ro"]
[containers.reader]
image = "busybox"
after = ["runner"]
volumes = ["/srv/r/config.toml:/config.toml:ro"]
"#])
        .unwrap();
        let relations = &profile.relations;
        assert_eq!(
            relations.runner_container.as_ref().map(ObjectName::as_str),
            Some("runner")
        );
        let facts = |name: &str| {
            relations
                .containers
                .iter()
                .find(|(known, _)| known.as_str() == name)
                .map(|(_, facts)| facts.clone())
                .unwrap()
        };
        let name = |text: &str| ObjectName::try_from(text.to_owned()).unwrap();
        assert_eq!(facts("dind").networks, vec![name("ci")]);
        assert!(!facts("dind").runs_gitlab_runner);
        let runner = facts("runner");
        assert!(runner.runs_gitlab_runner);
        assert_eq!(runner.producers, vec![(name("dind"), name("certs"))]);
        assert_eq!(
            runner.runner_directory,
            Some(RunnerDirectory {
                path: host_path("/srv/r"),
                mode: 0o700
            })
        );
        let reader = facts("reader");
        assert!(!reader.runs_gitlab_runner && reader.runner_directory.is_none());
        assert!(
            reader.producers.is_empty(),
            "it mounts no volume the runner writes"
        );
    }

    #[test]
    fn declared_names_every_object_and_the_hash_of_each_container_and_network() {
        let profile = profile(&[
            "[networks.ci]\n[containers.app]\nimage = \"i:1\"\nnetworks = [\"ci\"]\nvolumes = [\"data:/data\"]\n",
        ])
        .unwrap();
        let declared = profile.declared();
        // A replacement's set-aside container is declared too: it is no orphan.
        assert_eq!(
            declared.names.containers,
            vec!["app".to_owned(), "app.berth-old".to_owned()]
        );
        assert_eq!(declared.names.networks, vec!["ci".to_owned()]);
        assert_eq!(declared.names.volumes, vec!["data".to_owned()]);
        assert_eq!(
            declared.hashes,
            BTreeMap::from([
                (
                    (Kind::Container, profile.containers[0].spec_hash()),
                    "app".to_owned()
                ),
                (
                    (Kind::Network, profile.networks[0].spec_hash()),
                    "ci".to_owned()
                ),
            ])
        );
    }

    #[test]
    fn the_runners_directory_and_writable_bind_sources_are_hostile() {
        let profile = profile(&[
            "[runner]\nconfig = \"/srv/r/config.toml\"\n[containers.app]\nimage = \"i:1\"\nvolumes = [\"/data:/data\", \"/etc/ssl:/etc/ssl:ro\", \"cache:/cache\"]\n",
        ])
        .unwrap();
        assert_eq!(
            profile.hostile_directories(),
            [host_path("/srv/r"), host_path("/data")]
        );
    }

    fn profile(layers: &[&str]) -> Result<Profile, String> {
        let sources: Vec<_> = layers
            .iter()
            .enumerate()
            .map(|(index, text)| TomlFile::new(format!("layer{index}.toml"), *text))
            .collect();
        Profile::from_sources(vec!["t".into()], &sources).map_err(|error| {
            error
                .problems()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "the test writes the machine id under a temporary root"
    )]
    fn the_instance_is_the_profiles_else_the_machine_ids_hmac_and_never_empty() {
        assert_eq!(
            profile(&["instance = \"ci-blue\"\n"]).unwrap().instance,
            Instance {
                label: "ci-blue".into(),
                earlier: None
            }
        );
        let error = profile(&["instance = \"a\\nb\"\n"]).unwrap_err();
        assert!(error.contains("control character"), "{error}");
        let error = profile(&["instance = \" \"\n"]).unwrap_err();
        assert!(
            error.contains("`instance`") && error.contains("must not be empty"),
            "{error}"
        );
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        let refs = [crate::profile::ProfileRef::Name(DEFAULT_PROFILE.to_owned())];
        assert_eq!(load(&refs, &host).unwrap().instance.label, NO_MACHINE_ID);
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/machine-id"),
            "0123456789abcdef0123456789abcdef\n",
        )
        .unwrap();
        // What `systemd-id128 machine-id --app-specific=d0598ab36e01462894ed1099e13ed3ce`
        // printed for that machine id: the raw id is published nowhere, and still counts.
        assert_eq!(
            load(&refs, &host).unwrap().instance,
            Instance {
                label: "cf22852b4dc14e98ac772f8db7ab3721".into(),
                earlier: Some("0123456789abcdef0123456789abcdef".into()),
            }
        );
    }

    #[test]
    fn every_embedded_profile_is_valid() {
        for (name, text) in embedded() {
            let source = TomlFile::new(name, text);
            Profile::from_sources(vec![name.into()], &[source])
                .unwrap_or_else(|error| panic!("embedded profile `{name}`: {}", error.problem()));
        }
        assert!(
            embedded_text(DEFAULT_PROFILE).is_some(),
            "the default profile is embedded"
        );
    }

    /// Issue 12, item 9: with `[runners.NAME.docker] host` set, gitlab-runner ignores
    /// DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, so `dind-tls` plus such a runner gets
    /// `tls_verify` and `tls_cert_path` in config.toml to match the container's.
    #[test]
    fn a_runner_with_a_docker_host_gets_the_containers_tls_settings() {
        let dind_tls = embedded_text("dind-tls").unwrap();
        let runner = "[runners.r]\nurl = \"https://g.example\"\ntoken_file = \"/t\"\nexecutor = \"docker\"\n[runners.r.docker]\nhost = \"tcp://gitlab-dind:2376\"\nimage = \"docker:27\"\n";
        let resolved = profile(&[dind_tls, runner]).unwrap();
        let spec = &resolved.runner.runners[0];
        let docker = spec.settings["docker"].as_table().unwrap();
        assert_eq!(docker["tls_verify"].as_bool(), Some(true));
        assert_eq!(docker["tls_cert_path"].as_str(), Some("/certs/client"));
        assert_eq!(
            spec.runner_image.as_deref(),
            Some("gitlab/gitlab-runner:v17.11.0")
        );
        let elsewhere = runner.replace("tcp://gitlab-dind:2376", "tcp://other:2376");
        let resolved = profile(&[dind_tls, &elsewhere]).unwrap();
        let docker = resolved.runner.runners[0].settings["docker"]
            .as_table()
            .unwrap();
        assert!(!docker.contains_key("tls_verify"));
        assert!(
            resolved.warnings.iter().any(|warning| warning
                .message
                .contains("gitlab-runner ignores the runner container's DOCKER_TLS_VERIFY")),
            "{:?}",
            resolved.warnings
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
            error.starts_with(
                "layer1.toml:3:1: key `docker.restrat`: unknown key `restrat`; did you mean `restart`?"
            ),
            "{error}"
        );
    }

    /// Issue 13, item 6: a section's checks all run, so one run reports each of its problems.
    #[test]
    fn every_problem_of_a_container_is_reported() {
        let error = profile(&[
            "[containers.a1]\nhostname = \"-bad-\"\ncap_add = [\"NET ADMIN\"]\nstop_signal = \"?\"\n",
        ])
        .unwrap_err();
        insta::assert_snapshot!(error, @r"
            layer0.toml:1:13: key `containers.a1`: a container needs an `image`
            layer0.toml:2:1: key `containers.a1.hostname`: `-bad-` is not a hostname (letters, digits and `-`, in dot-separated labels of at most 63 characters)
            layer0.toml:3:1: key `containers.a1.cap_add`: `NET ADMIN` is not a capability (e.g. NET_ADMIN)
            layer0.toml:4:1: key `containers.a1.stop_signal`: `?` is not a signal (e.g. SIGQUIT)
        ");
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
        // Issue 9 case 8: a key dockerd does not know never reaches daemon.json.
        let error =
            profile(&["[docker.daemon]\nregistry-mirror = [\"https://m.example\"]\n"]).unwrap_err();
        assert!(error.starts_with("layer0.toml:2:1: key `docker.daemon.registry-mirror`: `registry-mirror` is not a daemon.json key; did you mean `registry-mirrors`?"), "{error}");
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
            ProfileRef::parse_host("site.toml", &host_path("/etc/berth")),
            Ok(ProfileRef::HostFile(host_path("/etc/berth/site.toml")))
        );
        assert_eq!(
            ProfileRef::parse_host("sites/a.toml", &host_path("/etc/berth")),
            Ok(ProfileRef::HostFile(host_path("/etc/berth/sites/a.toml")))
        );
        for climbing in ["../../x.toml", "profiles/../../etc/x.toml", ".."] {
            let error = ProfileRef::parse_host(climbing, &host_path("/etc/berth")).unwrap_err();
            assert!(error.contains("contains `..`"), "{climbing}: {error}");
        }
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
