//! The resource model. Every kind of thing berth manages follows one shape:
//!
//! 1. `observe` reads the host (files under the root, the Docker daemon) and changes nothing;
//! 2. `diff` compares what was observed with the profile; it is pure, no I/O;
//! 3. `apply` carries out one change that `diff` listed, and nothing else.
//!
//! `plan` is steps 1 and 2; `apply` is all three. The contract every kind is tested for: after
//! `apply`, `diff(observe())` is empty.
//!
//! Kinds are a closed enum ([`AnyResource`]) dispatched with `match`, so the compiler checks
//! that every kind is handled everywhere. One kind per file.

pub(crate) mod berth_unit;
pub(crate) mod container;
pub(crate) mod daemon;
pub(crate) mod docker_object;
pub(crate) mod hygiene;
pub(crate) mod journal;
pub(crate) mod kernel_module;
pub(crate) mod network;
pub(crate) mod orphan;
pub(crate) mod package;
pub(crate) mod prefetch;
pub(crate) mod profile;
pub(crate) mod runner;
pub(crate) mod volume;

use std::rc::Rc;

use anyhow::Result;

use crate::{
    docker::Docker,
    host::Host,
    plan::{Action, Change, Diff, Kind, ResourceId},
    resource::profile::Profile,
};

/// What every resource may use while it observes and applies.
pub(crate) struct Context<'a> {
    pub host: &'a Host,
    pub docker: &'a Docker,
}

/// Choices the operator makes on the command line that change what apply may do.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// Let daemon-config switch the storage driver even though images and containers would
    /// vanish from view until it is switched back.
    pub allow_storage_driver_change: bool,
    /// Let berth replace (containers, networks) or take over (volumes) objects with a profile's
    /// name that it did not create.
    pub adopt: bool,
    /// Leave what the profiles no longer declare in place for this run.
    pub keep_orphans: bool,
    /// Started by berth's units (`--from-timer`), whose sandbox forbids installing packages:
    /// `package/docker` refuses and says to run `berth apply` by hand once.
    pub sandboxed: bool,
}

pub(crate) trait Resource {
    /// What `observe` found; `diff` and `apply` read it.
    type Observed;
    /// What apply does for one change: decided by `diff`, carried out by `apply` as it is.
    type Op;

    fn id(&self) -> ResourceId;

    /// Resources whose failure in this run means this one must not be applied.
    fn depends_on(&self) -> Vec<ResourceId> {
        Vec::new()
    }

    /// Reads the current state. Changes nothing on the host, the daemon or any remote service.
    fn observe(&self, context: &Context) -> Result<Self::Observed>;

    /// The changes that would bring the observed state to the profile, each with the operation
    /// that makes it. Pure. `earlier` holds what the ops planned (plan) or made (apply) for the
    /// resources before this one made, so that, for instance, the Docker service restarts only
    /// when its configuration changed; ask it by kind ([`Earlier`]).
    fn diff(&self, observed: &Self::Observed, earlier: &Earlier) -> Diff<Self::Op>;

    /// The action the plan shows for `op`, which consent and the summary count go by: the
    /// engine prints every change with an op with its op's action, so what plan shows, asks
    /// about and counts is what apply does.
    fn action(&self, op: &Self::Op) -> Action;

    /// True when `op` disrupts the host's work (stops Docker, the runner or a dind daemon, or
    /// cuts running containers off their network): with `[fleet]`, apply takes a fleet slot
    /// before it, and without one it waits. Declared beside `action`, by the kind that knows
    /// what its op does; nothing is disruptive by default.
    fn disrupts(&self, _op: &Self::Op) -> bool {
        false
    }

    /// What `op` makes that a later kind decides on (see [`Made`]); nothing by default. The
    /// engine records it in [`Earlier`] once the op is planned (plan) or done (apply).
    fn made(&self, _op: &Self::Op) -> Vec<Made> {
        Vec::new()
    }

    /// Carries out exactly one operation that `diff` returned.
    fn apply(&self, context: &Context, op: &Self::Op) -> Result<()>;

    /// What an interrupted run left of a multi-step change of this resource (its journal
    /// entry, or what it finds on the host, such as a container set aside), as the change that
    /// finishes or undoes it. Read-only. The engine asks every resource before anything else,
    /// and apply carries these out first.
    fn leftover(&self, _context: &Context) -> Result<Option<(Change, Self::Op)>> {
        Ok(None)
    }
}

/// What an op makes that a later kind decides on: kinds meet through these typed facts,
/// which the engine hands on in [`Earlier`], never through another kind's printed [`Change`]
/// (its paths and detail are for people, and may be worded differently tomorrow).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Made {
    /// `package/docker` installs Docker: `daemon/docker` starts it after.
    DockerInstalled,
    /// `daemon-config` writes daemon.json: `daemon/docker` reloads or restarts for its keys.
    DaemonJson(DaemonJsonChange),
    /// `runner/NAME` registers the runner: its entry in config.toml exists after.
    Registered,
    /// `runner-config` changes config.toml keys gitlab-runner reads only when it starts (each
    /// named as the plan names it, for the restart's detail), or `runner/NAME` writes a new
    /// `.runner_system_id`: the container that runs it restarts.
    ReadAtStart(Vec<String>),
    /// `container/NAME` is new (created or replaced): a container reading a volume it writes
    /// restarts.
    NewContainer,
}

/// A daemon.json written in this run, as the Docker service needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DaemonJsonChange {
    /// Each key written, with its new value.
    pub(crate) keys: Vec<(String, serde_json::Value)>,
    /// The file existed before, so its backup can be put back.
    pub(crate) had_file: bool,
}

/// What the ops planned (plan) or made (apply) so far in this run made, by resource: asked by
/// kind and name, never by reading a printed change.
#[derive(Debug, Default)]
pub(crate) struct Earlier(Vec<(ResourceId, Made)>);

impl Earlier {
    /// Records what the op of `change` made. A refused change made nothing (it has no op).
    pub(crate) fn push(&mut self, change: &Change, made: Vec<Made>) {
        if change.refused.is_some() {
            return;
        }
        self.0
            .extend(made.into_iter().map(|made| (change.id.clone(), made)));
    }

    fn of_kind(&self, kind: Kind) -> impl Iterator<Item = (&ResourceId, &Made)> {
        self.0
            .iter()
            .filter(move |(id, _)| id.kind == kind)
            .map(|(id, made)| (id, made))
    }

    /// True when this run installs (plan: would install) Docker.
    pub(crate) fn installs_docker(&self) -> bool {
        self.of_kind(Kind::Package)
            .any(|(_, made)| *made == Made::DockerInstalled)
    }

    /// What this run writes (plan: would write) to daemon.json.
    pub(crate) fn daemon_json(&self) -> Option<&DaemonJsonChange> {
        self.of_kind(Kind::DaemonConfig)
            .find_map(|(_, made)| match made {
                Made::DaemonJson(change) => Some(change),
                _ => None,
            })
    }

    /// True when `runner/NAME` registers (plan: would register) in this run.
    pub(crate) fn registers(&self, runner: &str) -> bool {
        self.of_kind(Kind::Runner)
            .any(|(id, made)| id.name.as_deref() == Some(runner) && *made == Made::Registered)
    }

    /// What gitlab-runner reads only at start that this run changes: config.toml keys, or a
    /// runner's new `.runner_system_id`.
    pub(crate) fn read_at_start(&self) -> Vec<&str> {
        self.of_kind(Kind::RunnerConfig)
            .chain(self.of_kind(Kind::Runner))
            .flat_map(|(_, made)| match made {
                Made::ReadAtStart(keys) => keys.as_slice(),
                _ => &[],
            })
            .map(String::as_str)
            .collect()
    }

    /// True when `container/NAME` is created or replaced (plan: would be) in this run.
    pub(crate) fn new_container(&self, name: &str) -> bool {
        self.of_kind(Kind::Container)
            .any(|(id, made)| id.name.as_deref() == Some(name) && *made == Made::NewContainer)
    }

    /// What tests hand a kind's diff: each change, as the engine records it, with what its op
    /// made.
    #[cfg(test)]
    pub(crate) fn from_changes(changes: Vec<(Change, Made)>) -> Self {
        let mut earlier = Self::default();
        for (change, made) in changes {
            earlier.push(&change, vec![made]);
        }
        earlier
    }
}

/// Every kind of resource berth manages.
pub(crate) enum AnyResource {
    KernelModule(kernel_module::KernelModule),
    DockerPackage(package::DockerPackage),
    DaemonConfig(daemon::config::DaemonConfig),
    DaemonService(daemon::service::DaemonService),
    Runner(runner::Runner),
    RunnerConfig(runner::config::RunnerConfig),
    Network(network::Network),
    Volume(volume::Volume),
    Container(container::Container),
    /// A container, network or volume berth made that the profiles no longer declare.
    Orphan(orphan::Orphan),
    /// A systemd unit that runs berth, which `berth destroy` disables.
    BerthUnit(berth_unit::BerthUnit),
    /// A daemon kept below `[hygiene]`'s thresholds.
    Hygiene(hygiene::Hygiene),
}

/// Calls `$body` with `$resource` bound to the concrete resource inside an [`AnyResource`].
macro_rules! with_resource {
    ($any:expr, $resource:ident => $body:expr) => {
        match $any {
            $crate::resource::AnyResource::KernelModule($resource) => $body,
            $crate::resource::AnyResource::DockerPackage($resource) => $body,
            $crate::resource::AnyResource::DaemonConfig($resource) => $body,
            $crate::resource::AnyResource::DaemonService($resource) => $body,
            $crate::resource::AnyResource::Runner($resource) => $body,
            $crate::resource::AnyResource::RunnerConfig($resource) => $body,
            $crate::resource::AnyResource::Network($resource) => $body,
            $crate::resource::AnyResource::Volume($resource) => $body,
            $crate::resource::AnyResource::Container($resource) => $body,
            $crate::resource::AnyResource::Orphan($resource) => $body,
            $crate::resource::AnyResource::BerthUnit($resource) => $body,
            $crate::resource::AnyResource::Hygiene($resource) => $body,
        }
    };
}
pub(crate) use with_resource;

impl AnyResource {
    pub(crate) fn id(&self) -> ResourceId {
        with_resource!(self, resource => resource.id())
    }

    /// A hygiene resource's daemon and the free bytes this run measured of it.
    pub(crate) fn disk_free(&self) -> Option<(String, Option<u64>)> {
        match self {
            Self::Hygiene(hygiene) => Some(hygiene.disk_free()),
            _ => None,
        }
    }
}

/// `hygiene/host` when `[hygiene]` is there, and `hygiene/NAME` for each dind daemon it keeps
/// or prepulls into.
fn hygiene_resources(profile: &Profile) -> Vec<AnyResource> {
    let mut resources = Vec::new();
    let facts = |kept_images: Vec<String>, prepull: Vec<String>| hygiene::HygieneFacts {
        kept_images,
        prepull,
        runner_version: profile.relations.runner_version.clone(),
    };
    if profile.hygiene.is_some() {
        let declared = profile.containers.iter().map(|c| c.image.clone()).collect();
        resources.push(AnyResource::Hygiene(hygiene::Hygiene::new(
            profile.hygiene,
            hygiene::Daemon::Host,
            facts(declared, Vec::new()),
        )));
    }
    for (name, prepull) in &profile.relations.dind {
        // Without `[hygiene]` a dind daemon is only prepulled into, when it lists images.
        if profile.hygiene.is_some() || !prepull.is_empty() {
            resources.push(AnyResource::Hygiene(hygiene::Hygiene::new(
                profile.hygiene,
                hygiene::Daemon::Dind(name.clone()),
                facts(Vec::new(), prepull.clone()),
            )));
        }
    }
    resources
}

/// The resources a profile declares, in the order they must converge: the kernel first (Docker
/// needs overlay), then Docker itself when the host has none, then daemon.json, then the daemon that reads it, then the runners'
/// registrations and their config.toml (files and HTTP, no Docker), which must exist before
/// the runner container that mounts it is created, then the networks and volumes containers
/// use, then the containers, each after those in its `after`.
pub(crate) fn from_profile(profile: &Profile, options: &Options) -> Vec<AnyResource> {
    let mut resources = Vec::new();
    for module in &profile.kernel_modules {
        resources.push(AnyResource::KernelModule(kernel_module::KernelModule::new(
            module.clone(),
        )));
    }
    // Docker is installed for what must run on it; a profile of files and runners alone
    // (daemon.json included) needs no Docker to converge, unless it asks for the install.
    let runs_docker_objects = !(profile.networks.is_empty()
        && profile.volumes.is_empty()
        && profile.containers.is_empty());
    if runs_docker_objects || profile.docker.install.is_some() {
        resources.push(AnyResource::DockerPackage(package::DockerPackage::new(
            profile
                .docker
                .install
                .unwrap_or(package::InstallSource::Distro),
            options.sandboxed,
        )));
    }
    if !profile.docker.daemon.is_empty() {
        resources.push(AnyResource::DaemonConfig(
            daemon::config::DaemonConfig::new(
                &profile.docker,
                options.allow_storage_driver_change,
                profile
                    .containers
                    .iter()
                    .map(|container| container.name.to_string())
                    .collect(),
            ),
        ));
    }
    resources.push(AnyResource::DaemonService(
        daemon::service::DaemonService::new(
            &profile.docker,
            options.allow_storage_driver_change,
            runs_docker_objects,
            profile.relations.runner_container.clone(),
        ),
    ));
    // Registration first: it writes a runner's entry with its token, so config.toml never
    // holds an entry gitlab-runner cannot use.
    for spec in &profile.runner.runners {
        resources.push(AnyResource::Runner(runner::Runner::declared(
            &profile.runner,
            spec,
        )));
    }
    if profile.runner.is_declared() {
        resources.push(AnyResource::RunnerConfig(
            runner::config::RunnerConfig::new(&profile.runner),
        ));
    }
    let names = Rc::new(crate::docker::ObjectNames::from_profile(profile));
    let owner = profile.owner();
    for spec in &profile.networks {
        resources.push(AnyResource::Network(network::Network::new(
            spec.clone(),
            owner.clone(),
            Rc::clone(&names),
            options.adopt,
        )));
    }
    for spec in &profile.volumes {
        resources.push(AnyResource::Volume(volume::Volume::new(
            spec.clone(),
            owner.clone(),
            Rc::clone(&names),
            options.adopt,
        )));
    }
    for spec in &profile.containers {
        resources.push(AnyResource::Container(container::Container::new(
            spec.clone(),
            profile
                .relations
                .containers
                .get(&spec.name)
                .cloned()
                .unwrap_or_default(),
            owner.clone(),
            Rc::clone(&names),
            options.adopt,
        )));
    }
    // Last: what the profile's containers use is in use by then, and a dind daemon runs.
    resources.extend(hygiene_resources(profile));
    resources
}

/// Puts the orphans among the profile's resources where they converge: containers before the
/// profile's networks (a network replaced then does not reconnect them, a network removed has
/// lost its members), networks after the profile's containers (which may leave them in this
/// run), and volumes last.
pub(crate) fn with_orphans(
    resources: Vec<AnyResource>,
    orphans: orphan::Orphans,
) -> Vec<AnyResource> {
    let first_object = resources
        .iter()
        .position(|resource| resource.id().kind.is_docker_object())
        .unwrap_or(resources.len());
    let mut resources = resources;
    let tail = resources.split_off(first_object);
    resources.extend(orphans.containers.into_iter().map(AnyResource::Orphan));
    resources.extend(tail);
    resources.extend(orphans.networks.into_iter().map(AnyResource::Orphan));
    resources.extend(orphans.volumes.into_iter().map(AnyResource::Orphan));
    resources
}

/// The runners berth registered that the profile no longer declares, read from berth's ledger
/// (which `from_profile` cannot: it does not look at the host). They go last: unregistering
/// waits for nothing else.
pub(crate) fn removed_runners(profile: &Profile, host: &Host) -> Vec<AnyResource> {
    runner::removed(&profile.runner, host)
        .into_iter()
        .map(AnyResource::Runner)
        .collect()
}

/// Every runner in berth's ledger, declared or not, for `berth destroy` to unregister.
pub(crate) fn recorded_runners(profile: &Profile, host: &Host) -> Vec<AnyResource> {
    let nothing_declared = runner::section::RunnerSettings {
        runners: Vec::new(),
        ..profile.runner.clone()
    };
    runner::removed(&nothing_declared, host)
        .into_iter()
        .map(AnyResource::Runner)
        .collect()
}
