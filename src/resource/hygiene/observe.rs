//! What a daemon holds and how full the filesystem of its data root is. Reads only.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::{
    docker::{
        DaemonStatus,
        usage::{DiskDaemon, DiskUsage},
        wire::ContainerInfo,
    },
    host::FilesystemSpace,
    resource::{Context, hygiene::Daemon},
};

/// What observe found of one daemon.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SeenDaemon {
    /// The daemon does not answer yet (Docker not started, the dind container not running):
    /// nothing to prune, and the kinds that start it say so.
    Away,
    /// The dind container runs, past its first minute, but the daemon in it does not answer
    /// its own CLI (run in it by an exec): nothing is pruned or pulled, and the plan warns, with
    /// why.
    Silent(String),
    Seen(Box<DaemonDisk>),
}

/// A daemon's disk, as observed at `now`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DaemonDisk {
    pub now: jiff::Timestamp,
    /// The daemon's data root as it names it (`/var/lib/docker`).
    pub data_root: String,
    /// Where statvfs(2) measures it on this machine: the data root itself for the host's
    /// daemon, the host side of the dind container's mount for a dind daemon.
    pub measured_at: PathBuf,
    pub space: FilesystemSpace,
    pub usage: DiskUsage,
}

/// How `daemon` is asked: the host's through the Engine API, a dind's through its own CLI run
/// in its container by an exec through the API.
pub(super) fn asked<'a>(context: &Context<'a>, daemon: &'a Daemon) -> DiskDaemon<'a> {
    let engine = context.docker.engine();
    match daemon {
        Daemon::Host => DiskDaemon::Host(engine),
        Daemon::Dind(name) => DiskDaemon::Inside {
            engine,
            container: name.as_str(),
        },
    }
}

pub(super) fn observe(context: &Context, daemon: &Daemon) -> Result<SeenDaemon> {
    let DaemonStatus::Running(host_info) = context.docker.status() else {
        return Ok(SeenDaemon::Away);
    };
    let cli = asked(context, daemon);
    let (data_root, measured_at) = match daemon {
        Daemon::Host => (
            host_info.docker_root_dir.clone(),
            PathBuf::from(&host_info.docker_root_dir),
        ),
        Daemon::Dind(name) => {
            let Some(container) = dind_container(context, name.as_str())? else {
                return Ok(SeenDaemon::Away);
            };
            let info = match nested_info(&cli, &container) {
                Ok(info) => info,
                Err(error) => return Ok(SeenDaemon::Silent(first_line(&format!("{error:#}")))),
            };
            let measured_at = host_side(&container, &info.docker_root_dir)
                .unwrap_or_else(|| PathBuf::from(&host_info.docker_root_dir));
            (info.docker_root_dir, measured_at)
        }
    };
    let space = context.host.daemon_filesystem(&measured_at)?;
    let usage = cli.usage().with_context(|| {
        format!(
            "failed to read what the daemon of `{}` holds",
            daemon_label(daemon)
        )
    })?;
    Ok(SeenDaemon::Seen(Box::new(DaemonDisk {
        now: jiff::Timestamp::now(),
        data_root,
        measured_at,
        space,
        usage,
    })))
}

fn daemon_label(daemon: &Daemon) -> String {
    match daemon {
        Daemon::Host => "host".to_owned(),
        Daemon::Dind(name) => name.to_string(),
    }
}

/// The nested daemon's `docker info`. It answers a second or two after its container starts
/// (in the same apply that started it, say): a container started in the last minute is given
/// up to 30 s; one running longer that does not answer is away.
fn nested_info(cli: &DiskDaemon, container: &ContainerInfo) -> Result<crate::docker::DaemonInfo> {
    let started: Option<jiff::Timestamp> = container.state.started_at.parse().ok();
    let young = started.is_some_and(|started| {
        jiff::Timestamp::now().duration_since(started) < jiff::SignedDuration::from_secs(60)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match cli.info() {
            Err(_) if young && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            answer => return answer,
        }
    }
}

/// The first line of an error, its control characters dropped: what a dind daemon's CLI said
/// is shown only so far.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// The dind container as the host's daemon says it, when it runs.
fn dind_container(context: &Context, name: &str) -> Result<Option<ContainerInfo>> {
    let found = crate::docker::inspect::<ContainerInfo>(
        context.docker.engine(),
        "container",
        &[name.to_owned()],
    )?;
    Ok(found
        .into_iter()
        .find(|container| container.name.trim_start_matches('/') == name)
        .filter(|container| container.state.running))
}

/// Where the nested daemon's data root lies on the host: the source of the dind container's
/// mount that holds it (its named volume at `/var/lib/docker`), as the host's daemon says it,
/// never as the nested daemon would. `None` when no mount holds it (it is in the container's
/// own layer, on the host daemon's data root).
pub(super) fn host_side(container: &ContainerInfo, data_root: &str) -> Option<PathBuf> {
    let inside = Path::new(data_root);
    container
        .mounts
        .iter()
        .filter(|mount| !mount.source.is_empty())
        .filter_map(|mount| {
            let rest = inside.strip_prefix(&mount.destination).ok()?;
            Some((mount.destination.len(), Path::new(&mount.source).join(rest)))
        })
        .max_by_key(|(length, _)| *length)
        .map(|(_, path)| path)
}
