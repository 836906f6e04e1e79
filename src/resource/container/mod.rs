//! `container/NAME`: a container the profile declares, created, started and kept as declared.
//!
//! Drift is explained field by field and acted on only when it is real:
//! - replaced when its spec hash (label `berth.spec-hash`) differs from the profile's, or when its
//!   live config contradicts what berth set: the tag now names another image, env, command,
//!   entrypoint, binds, ports, privileged, capabilities, devices, user, stop signal... Never for
//!   what the image contributes (its env, labels, VOLUMEs, CMD when the profile sets none) or
//!   what the daemon fills in (the container-ID alias, a default PATH).
//! - repaired in place, without interrupting a running job, when Docker can: a restart policy
//!   changed by hand (`docker update`), a network disconnected, reconnected with other aliases,
//!   or recreated under it (`docker network connect`).
//! - started when stopped; created when missing; restarted when a container in its `after` was
//!   replaced and writes a named volume it reads (TLS certificates a dind daemon generates).
//!
//! A replacement keeps data and running jobs: the image is pulled before anything is stopped;
//! the old container is stopped with its own stop signal and timeout (gitlab-runner drains on
//! SIGQUIT), set aside, and removed only once the new one runs (named volumes survive, anonymous
//! ones go with it); if the new one cannot be created or started, the old one is put back.
//! A container with the profile's name that berth did not create is a conflict, replaced only
//! with `--adopt`.

mod apply;
mod drift;
mod replace;
pub(crate) mod spec;
pub(crate) mod values;

use std::{collections::BTreeMap, rc::Rc, time::Duration};

use anyhow::{Context as _, Result};

use crate::docker::{
    DaemonStatus, ObjectNames, drain,
    labels::Labelled,
    wire::{ContainerInfo, ContainerStatus, ImageInfo, NetworkId, NetworkInfo},
};
use crate::{
    host::{Host, HostPath},
    output::progress,
    plan::{Action, Change, Diff, FieldChange, Kind, ResourceId},
    resource::{
        Context, Earlier, Made, Resource,
        daemon::service::DaemonService,
        docker_object::{self, ObjectName, Observed, Owner},
        journal,
    },
};
use apply::is_socket_path;
use drift::{RecordedHash, Repair, text};
pub(crate) use replace::set_aside_name;
use replace::{Leftover, ReplaceIntent};
use spec::{ContainerSpec, SYSBOX_RUNTIME};
use values::{MountSource, PullPolicy, seccomp_file};

/// How long a `docker pull` may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub(crate) struct Container {
    /// Boxed: the spec is most of a container's size, and resources live in one enum.
    spec: Box<ContainerSpec>,
    hash: String,
    owner: Owner,
    names: Rc<ObjectNames>,
    adopt: bool,
    /// Declared networks and volumes it uses and the containers in its `after`.
    dependencies: Vec<ResourceId>,
    /// Containers in its `after` that write a named volume this one mounts read-only.
    producers: Vec<(ObjectName, ObjectName)>,
    /// It runs gitlab-runner on the profile's config.toml (it bind-mounts its directory), so
    /// it restarts when a key gitlab-runner reads only at start changed.
    runs_gitlab_runner: bool,
    /// The bind source that is config.toml's directory, created with gitlab-runner's mode
    /// should this container create it.
    runner_directory: Option<RunnerDirectory>,
}

/// What the profile says of a container beyond its own spec: its relations to the other kinds,
/// worked out once by `Profile::resolve` (docs/ARCHITECTURE.md lists them), so that a container
/// never reads another kind's section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ContainerFacts {
    /// The networks it joins that the profile declares: made before it.
    pub networks: Vec<ObjectName>,
    /// Containers in its `after` that write a named volume this one mounts read-only, with
    /// the volume: their replacement restarts this one.
    pub producers: Vec<(ObjectName, ObjectName)>,
    /// It is the container that runs gitlab-runner on the profile's config.toml, so it
    /// restarts when a key gitlab-runner reads only at start changed.
    pub runs_gitlab_runner: bool,
    /// config.toml's directory, for the container that runs gitlab-runner.
    pub runner_directory: Option<RunnerDirectory>,
}

/// config.toml's directory on the host (the profile's, or gitlab-runner's default) and the
/// mode gitlab-runner keeps it at (it will hold runner tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunnerDirectory {
    pub path: HostPath,
    pub mode: u32,
}

/// What apply does for a container.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ContainerOp {
    /// Pull the image when it is missing (or always), then create, connect and start.
    Create {
        image_present: bool,
    },
    /// Pull first, stop the old one with its own signal and timeout, set it aside, create the
    /// new one, and remove the old one once the new one runs (or put it back).
    Replace {
        old: Box<ContainerInfo>,
        image_present: bool,
    },
    /// Repairs in place, without stopping it.
    Repair(Vec<Repair>),
    Start,
    /// `docker restart`, within its stop timeout.
    Restart {
        stop_timeout: u64,
    },
    /// `docker pull`, then replace it if the tag moved.
    Pull,
    /// Finish or undo what an interrupted replacement left.
    Recover(Leftover),
}

impl ContainerOp {
    /// The action the plan shows for this op, which consent and the summary go by: a pull may
    /// drain and replace the running container (the tag moved), so it counts as a replace.
    fn action(&self) -> Action {
        match self {
            Self::Create { .. } => Action::Create,
            Self::Replace { .. } => Action::Replace,
            Self::Repair(_) => Action::Update,
            Self::Start => Action::Start,
            Self::Restart { .. } => Action::Restart,
            Self::Pull => Action::Pull,
            Self::Recover(_) => Action::Recover,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// To resolve bind sources under the root (a pure join).
    pub host: Host,
    pub container: Option<ContainerInfo>,
    /// The image the profile names, as the host has it now.
    pub image: Option<ImageInfo>,
    /// The image the container was created from, to tell what it contributed.
    pub running_image: Option<ImageInfo>,
    /// The IDs of the networks the profile's containers use that exist now.
    pub network_ids: BTreeMap<String, NetworkId>,
    /// Bind sources that do not exist on the host.
    pub missing_sources: Vec<HostPath>,
    /// The text of each seccomp profile file the profile's `security_opt` names (`None`: the
    /// file does not exist), keyed by the option as the profile spells it.
    pub seccomp_profiles: BTreeMap<String, Option<String>>,
    /// The runtimes the daemon has registered (`docker info`), when it told.
    pub runtimes: Option<Vec<String>>,
    /// A container of this one's set-aside name (`NAME.berth-old`).
    pub set_aside: Option<ContainerInfo>,
    /// The replacement an interrupted run journaled.
    pub intent: Option<ReplaceIntent>,
}

impl Container {
    pub(crate) fn new(
        spec: ContainerSpec,
        facts: ContainerFacts,
        owner: Owner,
        names: Rc<ObjectNames>,
        adopt: bool,
    ) -> Self {
        let mut dependencies = vec![DaemonService::id()];
        for network in &facts.networks {
            dependencies.push(ResourceId::new(Kind::Network, network.as_str()));
        }
        for volume in spec.volume_names() {
            dependencies.push(ResourceId::new(Kind::Volume, volume.as_str()));
        }
        for before in &spec.after {
            dependencies.push(ResourceId::new(Kind::Container, before.as_str()));
        }
        Self {
            hash: spec.spec_hash(),
            spec: Box::new(spec),
            owner,
            names,
            adopt,
            dependencies,
            producers: facts.producers,
            runs_gitlab_runner: facts.runs_gitlab_runner,
            runner_directory: facts.runner_directory,
        }
    }

    fn name(&self) -> &str {
        self.spec.name.as_str()
    }

    /// What the plan line says about the image and bind sources a create or replace needs.
    fn preparation_note(&self, seen: &Seen) -> String {
        let mut note = String::new();
        match (self.spec.pull, &seen.image) {
            (PullPolicy::Always, _) => note.push_str(&format!("; pulls {}", self.spec.image)),
            (PullPolicy::Missing, None) => {
                note.push_str(&format!("; pulls {} (not on the host)", self.spec.image));
            }
            _ => {}
        }
        if !seen.missing_sources.is_empty() {
            let sources: Vec<String> = seen
                .missing_sources
                .iter()
                .map(ToString::to_string)
                .collect();
            note.push_str(&format!("; creates {}", sources.join(", ")));
        }
        note
    }

    /// Why a create or replace cannot go ahead, if it cannot.
    fn preparation_refusal(&self, seen: &Seen) -> Option<String> {
        if self.spec.pull == PullPolicy::Never && seen.image.is_none() {
            return Some(format!(
                "image `{}` is not on the host and pull = \"never\"; load it (`docker load`) or allow pulling",
                self.spec.image
            ));
        }
        if let Some(runtime) = &self.spec.runtime
            && let Some(registered) = &seen.runtimes
            && !registered.contains(runtime)
        {
            return Some(unregistered_runtime(runtime, registered));
        }
        seen.missing_sources
            .iter()
            .find(|source| is_socket_path(source))
            .map(|source| {
                format!("the bind source `{source}` does not exist, and berth will not make a directory where a socket belongs; is the service that creates it running?")
            })
    }
}

impl Resource for Container {
    type Observed = Observed<Box<Seen>>;
    type Op = ContainerOp;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Container, self.name())
    }

    fn depends_on(&self) -> Vec<ResourceId> {
        self.dependencies.clone()
    }

    fn observe(&self, context: &Context) -> Result<Self::Observed> {
        Observed::of(context, || self.look(context).map(Box::new))
    }

    fn diff(&self, observed: &Self::Observed, earlier: &Earlier) -> Diff<ContainerOp> {
        let mut diff = Diff::none();
        let create = || {
            let op = ContainerOp::Create {
                image_present: false,
            };
            (self.change(&op, format!("image {}", self.spec.image)), op)
        };
        let Some(seen) = observed.seen(&mut diff, create) else {
            return diff;
        };
        self.compare(seen, earlier, &mut diff);
        diff
    }

    /// A new container: those reading a volume it writes restart after it. A pull replaces it
    /// only if the tag moved, which is known only once pulled: not a new container here, or
    /// its readers would restart at every run of a `pull = "always"` container.
    fn made(&self, op: &ContainerOp) -> Vec<Made> {
        match op {
            ContainerOp::Create { .. } | ContainerOp::Replace { .. } => vec![Made::NewContainer],
            ContainerOp::Repair(_)
            | ContainerOp::Start
            | ContainerOp::Restart { .. }
            | ContainerOp::Pull
            | ContainerOp::Recover(_) => Vec::new(),
        }
    }

    fn action(&self, op: &ContainerOp) -> Action {
        op.action()
    }

    /// Replacing (a pull may replace) or restarting the container that runs gitlab-runner
    /// drains its jobs; doing it to a dind daemon stops every build in it. Other containers'
    /// changes, and every repair in place, disrupt nothing a fleet counts.
    fn disrupts(&self, op: &ContainerOp) -> bool {
        let runs_jobs = self.runs_gitlab_runner || self.spec.dind;
        match op {
            ContainerOp::Replace { .. } | ContainerOp::Pull | ContainerOp::Restart { .. } => {
                runs_jobs
            }
            ContainerOp::Create { .. }
            | ContainerOp::Repair(_)
            | ContainerOp::Start
            | ContainerOp::Recover(_) => false,
        }
    }

    fn apply(&self, context: &Context, op: &ContainerOp) -> Result<()> {
        match op {
            ContainerOp::Create { image_present } => {
                self.ensure_image(context, *image_present)?;
                self.ensure_sources(context)?;
                self.create_and_start(context)
            }
            ContainerOp::Replace { old, image_present } => {
                self.replace(context, old, *image_present)
            }
            ContainerOp::Repair(repairs) => self.repair(context, repairs),
            ContainerOp::Start => context
                .docker
                .engine()
                .start_container(self.name())
                .with_context(|| format!("failed to start container `{}`", self.name())),
            ContainerOp::Restart { stop_timeout } => {
                let timeout = Duration::from_secs(*stop_timeout);
                context
                    .docker
                    .engine()
                    .restart_container(self.name(), timeout, |elapsed| {
                        let what =
                            format!("`{}` to restart (it drains its running jobs)", self.name());
                        tracing::info!(
                            "{}: {}",
                            self.id(),
                            progress::waiting(&what, elapsed, timeout)
                        );
                    })
                    .with_context(|| format!("failed to restart container `{}`", self.name()))
            }
            ContainerOp::Pull => self.pull_and_follow(context),
            ContainerOp::Recover(leftover) => self.recover(context, leftover),
        }
    }

    fn leftover(&self, context: &Context) -> Result<Option<(Change, ContainerOp)>> {
        Ok(match self.observe(context)? {
            Observed::Seen(seen) => self.leftover_of(&seen),
            Observed::Unavailable(_) => None,
        })
    }
}

impl Container {
    fn look(&self, context: &Context) -> Result<Seen> {
        let containers = context
            .docker
            .inspect_all::<ContainerInfo>(&self.names.containers)?;
        let references = image_references(&self.names.images, &containers);
        let images = context.docker.inspect_all::<ImageInfo>(&references)?;
        let networks = context
            .docker
            .inspect_all::<NetworkInfo>(&self.names.networks)?;
        let container = containers.get(self.name()).cloned();
        let set_aside = containers.get(&set_aside_name(self.name())).cloned();
        let intent = journal::read(context.host, &self.id())?;
        let running_image = container
            .as_ref()
            .and_then(|info| images.get(info.image.as_str()))
            .cloned();
        let missing_sources = self
            .spec
            .mounts
            .iter()
            .filter_map(|mount| match &mount.source {
                MountSource::Bind(source) if !context.host.exists_for_docker(source) => {
                    Some(source.clone())
                }
                _ => None,
            })
            .collect();
        let seccomp_profiles = self.seccomp_profiles(context.host)?;
        let runtimes = match context.docker.status() {
            DaemonStatus::Running(info) => info
                .runtimes
                .as_ref()
                .map(|runtimes| runtimes.keys().cloned().collect()),
            _ => None,
        };
        Ok(Seen {
            runtimes,
            seccomp_profiles,
            host: context.host.clone(),
            container,
            image: images.get(&self.spec.image).cloned(),
            running_image,
            network_ids: networks
                .iter()
                .map(|(name, info)| (name.clone(), info.id.clone()))
                .collect(),
            missing_sources,
            set_aside,
            intent,
        })
    }

    /// The text of each seccomp profile file the spec's `security_opt` names (`None`: there is
    /// no such file), read through `Host` under the root: what observe compares with and what
    /// create sends.
    fn seccomp_profiles(&self, host: &Host) -> Result<BTreeMap<String, Option<String>>> {
        let mut profiles = BTreeMap::new();
        for option in &self.spec.security_opt {
            if let Some(Ok(file)) = seccomp_file(option) {
                profiles.insert(option.clone(), host.read_optional(&file)?);
            }
        }
        Ok(profiles)
    }

    /// Time for `docker stop` or `restart` of `live`: its own stop timeout, and a margin.
    fn stop_timeout(live: &ContainerInfo) -> u64 {
        drain::stop_timeout(live)
    }

    /// The change that shows `op` in the plan: its action is the op's ([`ContainerOp::action`]),
    /// so what plan shows, asks about and counts is what apply does.
    pub(super) fn change(&self, op: &ContainerOp, detail: impl Into<String>) -> Change {
        Change::new(self.id(), op.action(), detail)
    }

    /// Compares what was seen with the profile.
    #[expect(
        clippy::too_many_lines,
        reason = "one decision ladder: create, conflict, replace, repair, start, restart, pull"
    )]
    fn compare(&self, seen: &Seen, earlier: &Earlier, diff: &mut Diff<ContainerOp>) {
        // Left by an interrupted run and not recovered yet (the daemon was down when the run
        // began): that first; the rest is compared once it is done.
        if let Some((change, op)) = self.leftover_of(seen) {
            diff.push(change, op);
            return;
        }
        let note = self.preparation_note(seen);
        let refusal = self.preparation_refusal(seen);
        let image_present = seen.image.is_some();
        // A create or replace that cannot be prepared (an image that cannot be had, a missing
        // socket) is refused, with what it would have done.
        let mut create_or_replace = |op: ContainerOp, detail: String, fields: Vec<FieldChange>| {
            let change = self.change(&op, detail).with_fields(fields);
            match &refusal {
                Some(reason) => diff.refuse(change, reason.clone()),
                None => diff.push(change, op),
            }
        };
        let Some(live) = &seen.container else {
            create_or_replace(
                ContainerOp::Create { image_present },
                format!("image {}{note}", self.spec.image),
                Vec::new(),
            );
            return;
        };
        let replace_op = || ContainerOp::Replace {
            old: Box::new(live.clone()),
            image_present,
        };
        if !live.config.managed() {
            let detail = docker_object::conflict_detail(Kind::Container, self.name());
            let fields = vec![docker_object::conflict_field()];
            if self.adopt {
                create_or_replace(replace_op(), detail, fields);
            } else {
                diff.refuse(self.change(&replace_op(), detail).with_fields(fields), "berth does not touch a container it did not create; rerun with --adopt to replace it with the profile's (named volumes are kept)");
            }
            return;
        }
        let drift = self.drift(live, seen);
        let dead = live.state.status == ContainerStatus::Dead;
        if drift.hash_changed.is_some() || !drift.replace.is_empty() || dead {
            let mut fields = drift.replace;
            fields.extend(drift.update.into_iter().map(|(field, _)| field));
            if dead {
                fields.push(FieldChange::new(
                    "state",
                    Some(text("dead")),
                    Some(text("running")),
                ));
            }
            let why = match &drift.hash_changed {
                Some(_) => "the profile changed",
                None => "changed outside berth",
            };
            if fields.is_empty()
                && let Some(RecordedHash(recorded)) = &drift.hash_changed
            {
                fields.push(docker_object::hash_field(recorded.as_deref(), &self.hash));
            }
            let detail = format!("{why}: {}{note}", docker_object::field_paths(&fields));
            create_or_replace(replace_op(), detail, fields);
            return;
        }
        if !drift.update.is_empty() {
            let (fields, repairs): (Vec<FieldChange>, Vec<Repair>) =
                drift.update.into_iter().unzip();
            let detail = format!(
                "changed outside berth: {} (repaired in place)",
                docker_object::field_paths(&fields)
            );
            let op = ContainerOp::Repair(repairs);
            diff.push(self.change(&op, detail).with_fields(fields), op);
        }
        match &live.state.status {
            ContainerStatus::Running | ContainerStatus::Restarting => {}
            ContainerStatus::Paused => diff
                .warn("the container is paused; berth leaves it so (`docker unpause` resumes it)"),
            ContainerStatus::Removing => {
                diff.warn("the container is being removed; the next run creates it again")
            }
            status => {
                let op = ContainerOp::Start;
                diff.push(self.change(&op, format!("the container is {status}")), op);
                return;
            }
        }
        if !diff.changes.is_empty() {
            return;
        }
        let replaced_producer = self
            .producers
            .iter()
            .find(|(producer, _)| earlier.new_container(producer.as_str()));
        let restart = ContainerOp::Restart {
            stop_timeout: Self::stop_timeout(live),
        };
        if let Some((producer, volume)) = replaced_producer {
            diff.push(
                self.change(&restart, format!("`container/{producer}` is new and writes volume `{volume}`, which this container reads")),
                restart,
            );
            return;
        }
        let read_at_start = if self.runs_gitlab_runner {
            earlier.read_at_start()
        } else {
            Vec::new()
        };
        if !read_at_start.is_empty() {
            let drained = match (&self.spec.stop_signal, self.spec.stop_timeout) {
                (Some(signal), Some(timeout)) => {
                    format!(", drained: {signal}, up to {timeout} s for running jobs")
                }
                (Some(signal), None) => format!(", drained: {signal}"),
                _ => String::new(),
            };
            let detail = format!(
                "{} changed, which gitlab-runner reads only when it starts{drained}",
                read_at_start
                    .iter()
                    .map(|key| format!("`{key}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            diff.push(self.change(&restart, detail), restart);
            return;
        }
        if self.spec.pull == PullPolicy::Always {
            let op = ContainerOp::Pull;
            let detail = format!(
                "{} (pull = \"always\"); replaces the container if the tag moved",
                self.spec.image
            );
            diff.push(self.change(&op, detail), op);
        }
    }
}

/// Why a container cannot be created with a runtime the daemon does not have, and how to get it.
fn unregistered_runtime(runtime: &str, registered: &[String]) -> String {
    let known = registered
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let install = if runtime == SYSBOX_RUNTIME {
        "; install sysbox on the host (Nestybox's sysbox-ce package: its installer registers `sysbox-runc` in daemon.json and restarts Docker), then run berth again"
    } else {
        "; register it in daemon.json's `runtimes` (`[docker.daemon.runtimes]`) or install the package that does"
    };
    format!("the Docker daemon has no runtime `{runtime}` (it has {known}){install}")
}

/// The images the profile names and those the containers run, in one batch that every
/// container resource asks for alike (so it is asked once).
pub(crate) fn image_references(
    profile_images: &[String],
    containers: &BTreeMap<String, ContainerInfo>,
) -> Vec<String> {
    let mut references = profile_images.to_vec();
    for info in containers.values() {
        let image = info.image.as_str();
        if !image.is_empty() && !references.iter().any(|known| known == image) {
            references.push(image.to_owned());
        }
    }
    references
}

#[cfg(test)]
mod fields;
#[cfg(test)]
mod tests;
