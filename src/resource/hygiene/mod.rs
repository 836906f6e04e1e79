//! `hygiene/host` and `hygiene/NAME` (each container with `dind = true`): keeps each daemon
//! berth manages below the thresholds of `[hygiene]` (issue 22). One resource per daemon.
//!
//! observe (`observe.rs`) asks the daemon what it holds and statvfs(2) the filesystem of its data
//! root; diff (`diff.rs`) picks what may go, oldest first, until the thresholds would hold, as
//! one `~ prune` op; apply (`apply.rs`) removes exactly those, by ID, each looked at again just
//! before, and stops once the thresholds hold. What is never removed is decided in one place,
//! [`diff::keeps_image`] and [`diff::keeps_volume`], which apply asks again. docs/hygiene.md says
//! the rule.

mod apply;
mod diff;
mod observe;
pub(crate) mod pruned;
pub(crate) mod section;

use anyhow::Result;

use crate::{
    plan::{Action, Diff, Kind, ResourceId},
    resource::{Context, Earlier, Resource, docker_object::ObjectName},
};

pub(crate) use diff::{HygieneOp, PruneItem, PruneOp};
pub(crate) use observe::SeenDaemon;
use section::HygieneSpec;

/// Which daemon a hygiene resource keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Daemon {
    /// The host's own daemon.
    Host,
    /// The daemon inside a container with `dind = true`, reached through that container.
    Dind(ObjectName),
}

/// What the profile says of the images a daemon must keep, worked out by `Relations`: the
/// declared containers' images (on the host's daemon), the images a dind container prepulls
/// (in it), and the gitlab-runner version whose helper image stays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HygieneFacts {
    /// Image references that stay on this daemon: the declared containers' (host).
    pub kept_images: Vec<String>,
    /// What the dind container's `prepull` lists: pulled when missing, never removed.
    pub prepull: Vec<String>,
    /// The pinned gitlab-runner version (`17.11.0`): its helper image stays.
    pub runner_version: Option<String>,
}

pub(crate) struct Hygiene {
    /// `None` without `[hygiene]`: a dind daemon's prepull alone.
    spec: Option<HygieneSpec>,
    daemon: Daemon,
    facts: HygieneFacts,
    /// The free bytes of the data root's filesystem this run last measured: for the run
    /// report and `berth_disk_free_bytes`, kept in memory (observe writes nothing).
    free: std::cell::Cell<Option<u64>>,
}

impl Hygiene {
    pub(crate) fn new(spec: Option<HygieneSpec>, daemon: Daemon, facts: HygieneFacts) -> Self {
        Self {
            spec,
            daemon,
            facts,
            free: std::cell::Cell::new(None),
        }
    }

    /// The daemon's name and the free bytes this run measured, for the run report.
    pub(crate) fn disk_free(&self) -> (String, Option<u64>) {
        (self.daemon_name().to_owned(), self.free.get())
    }

    /// The daemon's name as ids and metrics say it: `host`, or the dind container's name.
    pub(crate) fn daemon_name(&self) -> &str {
        match &self.daemon {
            Daemon::Host => "host",
            Daemon::Dind(name) => name.as_str(),
        }
    }
}

impl Resource for Hygiene {
    type Observed = SeenDaemon;
    type Op = HygieneOp;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Hygiene, self.daemon_name())
    }

    fn depends_on(&self) -> Vec<ResourceId> {
        // Named by kind, not by importing those kinds: the daemon must answer, and a dind
        // daemon's container must be converged first.
        match &self.daemon {
            Daemon::Host => vec![ResourceId::new(Kind::Daemon, "docker")],
            Daemon::Dind(name) => vec![ResourceId::new(Kind::Container, name.as_str())],
        }
    }

    fn observe(&self, context: &Context) -> Result<SeenDaemon> {
        let seen = observe::observe(context, &self.daemon)?;
        if let SeenDaemon::Seen(disk) = &seen {
            self.free.set(Some(disk.space.available));
        }
        Ok(seen)
    }

    fn diff(&self, observed: &SeenDaemon, _earlier: &Earlier) -> Diff<HygieneOp> {
        diff::diff(self, observed)
    }

    fn action(&self, op: &HygieneOp) -> Action {
        match op {
            HygieneOp::Prune(_) => Action::Prune,
            HygieneOp::Prepull(_) => Action::Prepull,
        }
    }

    fn apply(&self, context: &Context, op: &HygieneOp) -> Result<()> {
        apply::apply(self, context, op)
    }
}
