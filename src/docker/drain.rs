//! Draining a container: `POST /containers/ID/stop` with its own stop signal and timeout (as
//! `docker stop` without `-t`), so gitlab-runner finishes its running jobs (SIGQUIT). A
//! replacement and an orphan's removal drain alike.

use std::time::Duration;

use anyhow::Result;

use crate::{
    docker::{Docker, wire::ContainerInfo},
    output::progress,
    plan::ResourceId,
};

/// Docker's stop timeout when a container sets none.
const DEFAULT_STOP_TIMEOUT: u64 = 10;
/// Added to a container's stop timeout for the stop request itself.
const STOP_MARGIN: u64 = 60;

/// Time for `docker stop` or `restart` of `live`: its own stop timeout, and a margin.
pub(crate) fn stop_timeout(live: &ContainerInfo) -> u64 {
    own_stop_timeout(live) + STOP_MARGIN
}

/// The seconds `docker stop` gives `live` before it kills it.
pub(crate) fn own_stop_timeout(live: &ContainerInfo) -> u64 {
    live.config
        .stop_timeout
        .map_or(DEFAULT_STOP_TIMEOUT, u64::from)
}

/// Drains `live`: a stop without `t`, so with its own stop signal and timeout
/// (gitlab-runner finishes its running jobs on SIGQUIT), saying every ten seconds that it
/// waits, as `resource` (`what` names it in that line).
pub(crate) fn drain(
    docker: &Docker,
    resource: &ResourceId,
    live: &ContainerInfo,
    what: &str,
) -> Result<()> {
    let timeout = Duration::from_secs(stop_timeout(live));
    docker
        .engine()
        .stop_container(live.id.as_str(), timeout, |elapsed| {
            tracing::info!(
                "{resource}: {}",
                progress::waiting(
                    &format!("{what} to stop (it drains its running jobs)"),
                    elapsed,
                    timeout
                )
            );
        })?;
    Ok(())
}
