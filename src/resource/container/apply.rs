//! What apply does to a container: pull its image, create and start it, replace it without
//! losing data or a running job, repair it in place. Each function carries out one operation
//! the diff returned; none decides anything the diff did not.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context as _, Result, bail};
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointSettings, HostConfig, NetworkingConfig,
    PortBinding, RestartPolicy as DockerRestartPolicy, RestartPolicyNameEnum,
};

use super::{
    Container, PULL_TIMEOUT,
    drift::{Repair, SYSTEMPATHS_UNCONFINED},
    spec::ContainerSpec,
    values::{Mount, MountSource, Port, PullPolicy, RestartPolicy, seccomp_file},
};
use crate::{
    docker::wire::{ContainerInfo, ImageInfo, short_image_id},
    host::{Host, HostPath},
    resource::{Context, Resource, docker_object},
};

impl Container {
    /// The `POST /containers/create` body for the profile's container: each field as `docker
    /// container create` turned its flag into the request for API 1.41, so that a container
    /// berth creates inspects as the ones the CLI created (and drift compares both alike).
    /// `seccomp_profiles` holds the text of each `seccomp=FILE` option's file (read through
    /// `Host` by [`Container::seccomp_profiles`]): the CLI sent the file's JSON, not its path.
    /// The env values travel in this body, never on an argv; it is not logged.
    #[expect(
        clippy::too_many_lines,
        reason = "every field of the spec by name, each beside its translation"
    )]
    pub(super) fn create_body(
        &self,
        host: &Host,
        seccomp_profiles: &BTreeMap<String, Option<String>>,
    ) -> Result<ContainerCreateBody> {
        // Every field of the spec by name, so that a field added to the spec does not compile
        // until it is passed to Docker here or said to steer berth alone.
        let ContainerSpec {
            name: _,
            image,
            privileged,
            runtime,
            restart,
            networks,
            mounts,
            env,
            command,
            entrypoint,
            ports,
            labels,
            user,
            workdir,
            hostname,
            cap_add,
            security_opt,
            devices,
            stop_signal,
            stop_timeout,
            // When to pull: `ensure_image`.
            pull: _,
            // The order: `depends_on`.
            after: _,
            // What it adds, `--mtu` and the mirrors, is in `command`.
            dind: _,
            // Pulled into the daemon it runs by `hygiene/NAME`.
            prepull: _,
        } = &*self.spec;
        // `-v SOURCE:TARGET[:OPTIONS]` is a bind (a host path or a named volume) as written;
        // `-v TARGET` an anonymous volume, in `Volumes`.
        let (binds, anonymous): (Vec<&Mount>, Vec<&Mount>) = mounts
            .iter()
            .partition(|mount| mount.source != MountSource::Anonymous);
        let binds: Vec<String> = binds
            .iter()
            .filter_map(|mount| mount.bind_argument(host))
            .collect();
        let anonymous: Vec<String> = anonymous.iter().map(|mount| mount.target.clone()).collect();
        let port_bindings = port_bindings(ports);
        let mut exposed: Vec<String> = port_bindings.keys().cloned().collect();
        exposed.sort_unstable();
        let security = security_options(security_opt, host, seccomp_profiles)?;
        // `--entrypoint` takes one word; the rest of the entrypoint leads the arguments.
        let (entrypoint, trailing) = match entrypoint {
            Some(entrypoint) => (Some(vec![entrypoint[0].clone()]), entrypoint[1..].to_vec()),
            None => (None, Vec::new()),
        };
        let cmd: Vec<String> = trailing
            .into_iter()
            .chain(command.iter().flatten().cloned())
            .collect();
        // API 1.41 creates a container on one network; the others are connected before start.
        let first_network = networks.first();
        let host_config = HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            network_mode: first_network.map(|(network, _)| network.to_string()),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            restart_policy: Some(restart_policy(*restart)),
            privileged: Some(*privileged),
            runtime: runtime.clone(),
            // As the CLI normalizes them: upper case, `CAP_` first.
            cap_add: (!cap_add.is_empty()).then(|| {
                cap_add
                    .iter()
                    .map(|capability| match capability.as_str() {
                        "ALL" => capability.clone(),
                        _ => format!("CAP_{capability}"),
                    })
                    .collect()
            }),
            security_opt: (!security.options.is_empty()).then_some(security.options),
            masked_paths: security.unconfined_paths.then(Vec::new),
            readonly_paths: security.unconfined_paths.then(Vec::new),
            devices: (!devices.is_empty()).then(|| {
                devices
                    .iter()
                    .map(|device| DeviceMapping {
                        path_on_host: Some(host.path(&device.host).display().to_string()),
                        path_in_container: Some(device.container.clone()),
                        cgroup_permissions: Some(device.permissions.clone()),
                    })
                    .collect()
            }),
            ..HostConfig::default()
        };
        Ok(ContainerCreateBody {
            image: Some(image.clone()),
            hostname: hostname.clone(),
            user: user.clone(),
            working_dir: workdir.clone(),
            // `docker container create` attaches stdout and stderr unless told otherwise.
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            env: (!env.is_empty()).then(|| {
                env.iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect()
            }),
            cmd: (!cmd.is_empty()).then_some(cmd),
            entrypoint,
            volumes: (!anonymous.is_empty()).then_some(anonymous),
            labels: Some(
                docker_object::labels_of(&self.owner, &self.hash, labels)
                    .into_iter()
                    .collect(),
            ),
            stop_signal: stop_signal.clone(),
            stop_timeout: stop_timeout.map(i64::from),
            host_config: Some(host_config),
            networking_config: first_network.map(|(network, aliases)| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.to_string(),
                    EndpointSettings {
                        aliases: (!aliases.is_empty()).then(|| aliases.clone()),
                        ..EndpointSettings::default()
                    },
                )])),
            }),
            ..ContainerCreateBody::default()
        })
    }

    pub(super) fn ensure_image(&self, context: &Context, present: bool) -> Result<()> {
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
            crate::docker::pull::pull(context.docker, self.spec.image.as_str(), PULL_TIMEOUT)
                .with_context(|| format!("image `{}` could not be pulled", self.spec.image))?;
        }
        Ok(())
    }

    /// Creates missing bind-source directories under the root, as `docker run -v` would, but
    /// where berth can say so in the plan.
    pub(super) fn ensure_sources(&self, context: &Context) -> Result<()> {
        for mount in &self.spec.mounts {
            if let MountSource::Bind(source) = &mount.source
                && !context.host.exists_for_docker(source)
            {
                if is_socket_path(source) {
                    bail!("the bind source `{source}` does not exist");
                }
                // As `docker run -v` would (0755), except config.toml's directory: it will
                // hold runner tokens, and gitlab-runner keeps it 0700.
                let mode = match &self.runner_directory {
                    Some(directory) if &directory.path == source => directory.mode,
                    _ => 0o755,
                };
                context.host.ensure_dir(source, mode)?;
            }
        }
        Ok(())
    }

    /// Creates, connects and starts the profile's container; removes it again when it cannot
    /// be connected or started, so no half-made container is left behind.
    pub(super) fn create_and_start(&self, context: &Context) -> Result<()> {
        let name = self.name();
        let engine = context.docker.engine();
        let body = self.create_body(context.host, &self.seccomp_profiles(context.host)?)?;
        let id = engine
            .create_container(name, body)
            .with_context(|| format!("failed to create container `{name}`"))?;
        let finish = || -> Result<()> {
            for (network, aliases) in self.spec.networks.iter().skip(1) {
                connect(context, name, network.as_str(), aliases)?;
            }
            engine
                .start_container(name)
                .with_context(|| format!("failed to start container `{name}`"))
        };
        finish().inspect_err(|_| {
            let _ = engine.remove_container(&id, true);
        })
    }

    /// The in-place repairs the diff listed, in order.
    pub(super) fn repair(&self, context: &Context, repairs: &[Repair]) -> Result<()> {
        let name = self.name();
        let engine = context.docker.engine();
        for repair in repairs {
            match repair {
                Repair::RestartPolicy => {
                    engine
                        .update_restart_policy(name, restart_policy(self.spec.restart))
                        .with_context(|| format!("failed to set the restart policy of `{name}`"))?;
                }
                Repair::Network {
                    name: network,
                    attached,
                    aliases,
                } => {
                    if *attached {
                        engine.disconnect_network(network, name).with_context(|| {
                            format!("failed to disconnect `{name}` from network `{network}`")
                        })?;
                    }
                    if let Some(aliases) = aliases {
                        connect(context, name, network, aliases)?;
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn pull_and_follow(&self, context: &Context) -> Result<()> {
        self.ensure_image(context, true)?;
        context.docker.invalidate();
        let images = context
            .docker
            .inspect_all::<ImageInfo>(std::slice::from_ref(&self.spec.image))?;
        let containers = context
            .docker
            .inspect_all::<ContainerInfo>(&[self.name().to_owned()])?;
        let (Some(image), Some(live)) = (images.get(&self.spec.image), containers.get(self.name()))
        else {
            return Ok(());
        };
        if image.id != live.image {
            tracing::info!(
                "{}: the tag {} moved to {}; replacing",
                self.id(),
                self.spec.image,
                short_image_id(&image.id)
            );
            self.replace(context, live, true)?;
        }
        Ok(())
    }
}

/// A bind source that is a socket (`/var/run/docker.sock`) must exist: Docker, and berth,
/// would otherwise make a directory there.
pub(super) fn is_socket_path(path: &HostPath) -> bool {
    path.as_path()
        .extension()
        .is_some_and(|extension| extension == "sock")
}

/// `docker update --restart`'s policy as the API takes it (`on-failure:3`: its name and
/// retries; the CLI sent a count of 0 for every other policy).
pub(super) fn restart_policy(policy: RestartPolicy) -> DockerRestartPolicy {
    let (name, retries) = match policy {
        RestartPolicy::No => (RestartPolicyNameEnum::NO, 0),
        RestartPolicy::Always => (RestartPolicyNameEnum::ALWAYS, 0),
        RestartPolicy::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, 0),
        RestartPolicy::OnFailure(retries) => (
            RestartPolicyNameEnum::ON_FAILURE,
            retries.map_or(0, i64::from),
        ),
    };
    DockerRestartPolicy {
        name: Some(name),
        maximum_retry_count: Some(retries),
    }
}

/// `-p`: every port bound where the profile says (an empty IP or port: Docker picks), keyed
/// `PORT/PROTOCOL` as Docker keys them.
fn port_bindings(ports: &[Port]) -> HashMap<String, Option<Vec<PortBinding>>> {
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in ports {
        bindings
            .entry(port.key())
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(port.host_ip.clone()),
                host_port: Some(port.host_port.clone()),
            });
    }
    bindings
}

/// What `--security-opt` became in the request.
struct SecurityOptions {
    options: Vec<String>,
    /// `systempaths=unconfined`: no masked or read-only paths (the CLI's translation; the
    /// option itself is not sent).
    unconfined_paths: bool,
}

/// Each option as the CLI sent it: `seccomp=FILE` (or `seccomp:FILE`) as `seccomp=` and the
/// file's JSON, compacted; `systempaths=unconfined` as empty path lists; the rest as written.
fn security_options(
    options: &[String],
    host: &Host,
    seccomp_profiles: &BTreeMap<String, Option<String>>,
) -> Result<SecurityOptions> {
    let mut sent = SecurityOptions {
        options: Vec::new(),
        unconfined_paths: false,
    };
    for option in options {
        if option == SYSTEMPATHS_UNCONFINED {
            sent.unconfined_paths = true;
            continue;
        }
        let Some(Ok(file)) = seccomp_file(option) else {
            sent.options.push(option.clone());
            continue;
        };
        let shown = host.path(&file).display().to_string();
        let text = seccomp_profiles
            .get(option)
            .and_then(Option::as_deref)
            .with_context(|| format!("the seccomp profile `{shown}` does not exist"))?;
        let profile: serde_json::Value = serde_json::from_str(text)
            .with_context(|| format!("the seccomp profile `{shown}` is not JSON"))?;
        // Keys keep their order (serde_json's `preserve_order`), as the CLI's compaction did.
        sent.options.push(format!("seccomp={profile}"));
    }
    Ok(sent)
}

fn connect(context: &Context, container: &str, network: &str, aliases: &[String]) -> Result<()> {
    context
        .docker
        .engine()
        .connect_network(network, container, aliases)
        .with_context(|| format!("failed to connect `{container}` to network `{network}`"))
}
