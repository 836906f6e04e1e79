//! The drain before a restart (issue 21): a dockerd without live-restore stops every container
//! when it stops, and with the runner container the jobs it runs die half done. So a restart of
//! such a daemon first drains the container that runs gitlab-runner (a stop with its own
//! signal and timeout: SIGQUIT, and gitlab-runner finishes its running jobs), then restarts
//! Docker, then starts that container again.
//!
//! Which container runs gitlab-runner is a fact `Relations` works out from the profile (the one
//! rule, `resource::profile`), handed to `daemon/docker` by name; the container found under that
//! name is drained by its ID, the one seen when the restart was planned. The drain is part of
//! the restart's op ([`super::service::DaemonOp`]), so plan says it exactly when apply does it.

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::{
    docker::{
        self, drain,
        wire::{ContainerId, ContainerInfo},
    },
    plan::ResourceId,
    resource::{Context, docker_object::ObjectName},
};

/// The container that runs gitlab-runner, drained before the restart and started after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunnerDrain {
    /// Its name in the profile.
    pub(crate) container: ObjectName,
    /// The container seen under that name when the restart was planned: only that one is
    /// stopped and started.
    pub(crate) id: ContainerId,
    /// It ran when planned (it is drained); a stopped one is only started after the restart.
    pub(crate) running: bool,
}

impl RunnerDrain {
    /// What the plan line says of it.
    pub(crate) fn describe(&self) -> &'static str {
        if self.running {
            "drains gitlab-runner first"
        } else {
            "starts gitlab-runner again after"
        }
    }

    /// The drain a restart of a daemon needs: the runner container when it runs and the daemon
    /// would stop it (live-restore off).
    pub(crate) fn before_restart(
        container: Option<&ObjectName>,
        seen: Option<&ContainerInfo>,
        live_restore: bool,
    ) -> Option<Self> {
        let (container, seen) = (container?, seen?);
        (!live_restore && seen.state.running).then(|| Self {
            container: container.clone(),
            id: seen.id.clone(),
            running: true,
        })
    }

    /// The container as Docker has it now; `None` once it is gone.
    fn look(&self, context: &Context) -> Result<Option<ContainerInfo>> {
        let found: Vec<ContainerInfo> =
            docker::inspect(context.docker.engine(), "container", &[self.id.to_string()])?;
        Ok(found.into_iter().find(|live| live.id == self.id))
    }

    /// Drains it when it runs: a stop with its own signal and timeout, so its jobs
    /// finish first. `daemon` names the resource whose restart waits, in the log.
    pub(crate) fn drain(&self, context: &Context, daemon: &ResourceId) -> Result<()> {
        let Some(live) = self.look(context)? else {
            return Ok(());
        };
        if !live.state.running {
            return Ok(());
        }
        tracing::info!(
            "{daemon}: draining `{}` (gitlab-runner) before the restart: up to {} s for its running jobs",
            self.container.as_str(),
            drain::own_stop_timeout(&live)
        );
        drain::drain(
            context.docker,
            daemon,
            &live,
            &format!("`{}`", self.container.as_str()),
        )
        .with_context(|| {
            format!(
                "failed to drain `{}` before restarting Docker; Docker was not restarted",
                self.container.as_str()
            )
        })
    }

    /// Starts it again after the restart, when it is not running (a restart policy may have
    /// brought it back already). A failure is said, not returned: the container's own resource,
    /// later in the run, starts it.
    pub(crate) fn start_again(&self, context: &Context, daemon: &ResourceId) {
        let started = self.look(context).and_then(|live| match live {
            Some(live) if !live.state.running => context
                .docker
                .engine()
                .start_container(self.id.as_str())
                .map_err(anyhow::Error::new),
            _ => Ok(()),
        });
        if let Err(error) = started {
            tracing::warn!(
                "{daemon}: failed to start `{}` again after the restart ({error:#}); its container resource starts it",
                self.container.as_str()
            );
        }
    }
}
