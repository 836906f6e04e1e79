//! What apply does to a container: pull its image, create and start it, replace it without
//! losing data or a running job, repair it in place. Each function carries out one operation
//! the diff returned; none decides anything the diff did not.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

use super::{
    Container, PULL_TIMEOUT,
    drift::Repair,
    spec::ContainerSpec,
    values::{MountSource, PullPolicy, security_opt_argument},
};
use crate::{
    docker::wire::{ContainerInfo, ImageInfo, short_image_id},
    host::{Host, HostPath},
    resource::{Context, Resource, docker_object},
};

impl Container {
    /// The `docker container create` arguments for the profile's container. The env values
    /// are not among them: argv is readable in `/proc/*/cmdline` by every local user, so they
    /// travel in `env_file` ([`Container::env_file_text`]), named here when the spec has any.
    pub(super) fn create_arguments(&self, host: &Host, env_file: Option<&Path>) -> Vec<String> {
        // Every field of the spec by name, so that a field added to the spec does not compile
        // until it is passed to Docker here or said to steer berth alone.
        let ContainerSpec {
            name,
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
        let mut args: Vec<String> = vec![
            "container".into(),
            "create".into(),
            "--name".into(),
            name.to_string(),
        ];
        args.extend(docker_object::ownership_labels(&self.owner, &self.hash));
        for (key, value) in labels {
            args.extend(["--label".into(), format!("{key}={value}")]);
        }
        args.extend(["--restart".into(), restart.to_string()]);
        if *privileged {
            args.push("--privileged".into());
        }
        if let Some(runtime) = runtime {
            args.extend(["--runtime".into(), runtime.clone()]);
        }
        // API 1.41 creates a container on one network; the others are connected before start.
        if let Some((network, aliases)) = networks.first() {
            args.extend(["--network".into(), network.to_string()]);
            for alias in aliases {
                args.extend(["--network-alias".into(), alias.clone()]);
            }
        }
        for mount in mounts {
            let argument = mount
                .bind_argument(host)
                .unwrap_or_else(|| mount.target.clone());
            args.extend(["--volume".into(), argument]);
        }
        if let Some(env_file) = env_file.filter(|_| !env.is_empty()) {
            args.extend(["--env-file".into(), env_file.display().to_string()]);
        }
        for port in ports {
            args.extend(["--publish".into(), port.argument()]);
        }
        if let Some(user) = user {
            args.extend(["--user".into(), user.clone()]);
        }
        if let Some(workdir) = workdir {
            args.extend(["--workdir".into(), workdir.clone()]);
        }
        if let Some(hostname) = hostname {
            args.extend(["--hostname".into(), hostname.clone()]);
        }
        for capability in cap_add {
            args.extend(["--cap-add".into(), capability.clone()]);
        }
        for option in security_opt {
            args.extend(["--security-opt".into(), security_opt_argument(option, host)]);
        }
        for device in devices {
            args.extend(["--device".into(), device.argument(host)]);
        }
        if let Some(signal) = stop_signal {
            args.extend(["--stop-signal".into(), signal.clone()]);
        }
        if let Some(timeout) = *stop_timeout {
            args.extend(["--stop-timeout".into(), timeout.to_string()]);
        }
        // `--entrypoint` takes one word; the rest of the entrypoint leads the arguments.
        let mut trailing = Vec::new();
        if let Some(entrypoint) = entrypoint {
            args.extend(["--entrypoint".into(), entrypoint[0].clone()]);
            trailing.extend(entrypoint[1..].iter().cloned());
        }
        trailing.extend(command.iter().flatten().cloned());
        args.push(image.clone());
        args.extend(trailing);
        args
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

    /// The env file `docker container create --env-file` reads: one `KEY=value` a line, as
    /// the docker CLI parses it (names and values were checked for that in `spec`).
    pub(super) fn env_file_text(&self) -> String {
        let mut text = String::from("# written by berth for `docker container create`\n");
        for (key, value) in &self.spec.env {
            text.push_str(&format!("{key}={value}\n"));
        }
        text
    }

    /// Creates, connects and starts the profile's container; removes it again when it cannot
    /// be connected or started, so no half-made container is left behind.
    pub(super) fn create_and_start(&self, context: &Context) -> Result<()> {
        // The env values may be secrets: a private temporary file (0600, created O_EXCL, removed
        // when this returns), not argv, which every local user can read. It is berth's scratch
        // file for the docker CLI, not a host file, so it lives in the temporary directory
        // rather than under `--root`.
        let env_file = if self.spec.env.is_empty() {
            None
        } else {
            let mut file = tempfile::Builder::new()
                .prefix("berth-env-")
                .tempfile()
                .context("failed to create a temporary env file for `docker container create`")?;
            std::io::Write::write_all(&mut file, self.env_file_text().as_bytes())
                .context("failed to write the temporary env file")?;
            Some(file)
        };
        let args = self.create_arguments(
            context.host,
            env_file.as_ref().map(tempfile::NamedTempFile::path),
        );
        let id = run(context, &args)?.trim().to_owned();
        drop(env_file);
        let finish = || -> Result<()> {
            for (network, aliases) in self.spec.networks.iter().skip(1) {
                connect(context, self.name(), network.as_str(), aliases)?;
            }
            run(context, &["container", "start", self.name()])?;
            Ok(())
        };
        finish().inspect_err(|_| {
            let _ = run(
                context,
                &["container", "rm", "--force", "--volumes", id.as_str()],
            );
        })
    }

    /// The in-place repairs the diff listed, in order.
    pub(super) fn repair(&self, context: &Context, repairs: &[Repair]) -> Result<()> {
        let name = self.name();
        for repair in repairs {
            match repair {
                Repair::RestartPolicy => {
                    let policy = self.spec.restart.to_string();
                    run(
                        context,
                        &["container", "update", "--restart", &policy, name],
                    )?;
                }
                Repair::Network {
                    name: network,
                    attached,
                    aliases,
                } => {
                    if *attached {
                        run(
                            context,
                            &["network", "disconnect", "--force", network, name],
                        )?;
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

pub(super) fn run<S: AsRef<str>>(context: &Context, args: &[S]) -> Result<String> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    Ok(context.docker.run(&args)?)
}

fn connect(context: &Context, container: &str, network: &str, aliases: &[String]) -> Result<()> {
    let mut args = vec!["network".to_owned(), "connect".to_owned()];
    for alias in aliases {
        args.extend(["--alias".to_owned(), alias.clone()]);
    }
    args.extend([network.to_owned(), container.to_owned()]);
    run(context, &args)
        .map(drop)
        .with_context(|| format!("failed to connect `{container}` to network `{network}`"))
}
