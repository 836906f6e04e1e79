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

pub(crate) mod container;
pub(crate) mod daemon;
pub(crate) mod docker_object;
pub(crate) mod kernel_module;
pub(crate) mod network;
pub(crate) mod profile;
pub(crate) mod runner;
pub(crate) mod volume;

use std::rc::Rc;

use anyhow::Result;

use crate::{
    docker::Docker,
    host::Host,
    plan::{Change, Diff, ResourceId},
    resource::profile::Profile,
};

/// What every resource may use while it observes and applies.
pub struct Context<'a> {
    pub host: &'a Host,
    pub docker: &'a Docker,
}

/// Choices the operator makes on the command line that change what apply may do.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Let daemon-config switch the storage driver even though images and containers would
    /// vanish from view until it is switched back.
    pub allow_storage_driver_change: bool,
    /// Let berth replace (containers, networks) or take over (volumes) objects with a profile's
    /// name that it did not create.
    pub adopt: bool,
}

pub trait Resource {
    /// What `observe` found; `diff` and `apply` read it.
    type Observed;

    fn id(&self) -> ResourceId;

    /// Resources whose failure in this run means this one must not be applied.
    fn depends_on(&self) -> Vec<ResourceId> {
        Vec::new()
    }

    /// Reads the current state. Changes nothing on the host, the daemon or any remote service.
    fn observe(&self, cx: &Context) -> Result<Self::Observed>;

    /// The changes that would bring the observed state to the profile. Pure. `earlier` holds
    /// the changes planned (plan) or made (apply) for the resources before this one, so that,
    /// for instance, the Docker service restarts only when its configuration changed.
    fn diff(&self, observed: &Self::Observed, earlier: &[Change]) -> Diff;

    /// Carries out one change from `diff`.
    fn apply(
        &self,
        cx: &Context,
        observed: &Self::Observed,
        change: &Change,
        earlier: &[Change],
    ) -> Result<()>;
}

/// Every kind of resource berth manages.
pub enum AnyResource {
    KernelModule(kernel_module::KernelModule),
    DaemonConfig(daemon::config::DaemonConfig),
    DockerDaemon(daemon::service::DockerDaemon),
    Runner(runner::Runner),
    RunnerConfig(runner::config::RunnerConfig),
    Network(network::Network),
    Volume(volume::Volume),
    Container(container::Container),
}

/// Calls `$body` with `$resource` bound to the concrete resource inside an [`AnyResource`].
#[macro_export]
macro_rules! with_resource {
    ($any:expr, $resource:ident => $body:expr) => {
        match $any {
            $crate::resource::AnyResource::KernelModule($resource) => $body,
            $crate::resource::AnyResource::DaemonConfig($resource) => $body,
            $crate::resource::AnyResource::DockerDaemon($resource) => $body,
            $crate::resource::AnyResource::Runner($resource) => $body,
            $crate::resource::AnyResource::RunnerConfig($resource) => $body,
            $crate::resource::AnyResource::Network($resource) => $body,
            $crate::resource::AnyResource::Volume($resource) => $body,
            $crate::resource::AnyResource::Container($resource) => $body,
        }
    };
}

impl AnyResource {
    pub fn id(&self) -> ResourceId {
        with_resource!(self, resource => resource.id())
    }
}

/// The resources a profile declares, in the order they must converge: the kernel first (Docker
/// needs overlay), then daemon.json, then the daemon that reads it, then the runners'
/// registrations and their config.toml (files and HTTP, no Docker), which must exist before
/// the runner container that mounts it is created, then the networks and volumes containers
/// use, then the containers, each after those in its `after`.
pub fn from_profile(profile: &Profile, options: &Options) -> Vec<AnyResource> {
    let mut resources = Vec::new();
    for module in &profile.kernel_modules {
        resources.push(AnyResource::KernelModule(kernel_module::KernelModule::new(
            module.clone(),
        )));
    }
    if !profile.docker.daemon.is_empty() {
        resources.push(AnyResource::DaemonConfig(
            daemon::config::DaemonConfig::new(&profile.docker, options.allow_storage_driver_change),
        ));
    }
    resources.push(AnyResource::DockerDaemon(
        daemon::service::DockerDaemon::new(&profile.docker, options.allow_storage_driver_change),
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
    let names = Rc::new(docker_object::ObjectNames::from_profile(profile));
    let label = profile.label();
    for spec in &profile.networks {
        resources.push(AnyResource::Network(network::Network::new(
            spec.clone(),
            label.clone(),
            Rc::clone(&names),
            options.adopt,
        )));
    }
    for spec in &profile.volumes {
        resources.push(AnyResource::Volume(volume::Volume::new(
            spec.clone(),
            label.clone(),
            Rc::clone(&names),
            options.adopt,
        )));
    }
    for spec in &profile.containers {
        resources.push(AnyResource::Container(container::Container::new(
            spec.clone(),
            profile,
            Rc::clone(&names),
            options.adopt,
        )));
    }
    resources
}

/// The runners berth registered that the profile no longer declares, read from berth's ledger
/// (which `from_profile` cannot: it does not look at the host). They go last: unregistering
/// waits for nothing else.
pub fn removed_runners(profile: &Profile, host: &Host) -> Vec<AnyResource> {
    runner::removed(&profile.runner, host)
        .into_iter()
        .map(AnyResource::Runner)
        .collect()
}
