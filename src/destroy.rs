//! `berth destroy` and `berth plan --destroy`: everything berth made on this host, as resources
//! that remove it, through the same engine as apply.
//!
//! In order: berth's timer and watch service are disabled (nothing converges the host back
//! meanwhile), the containers berth made are drained and removed, every runner in the ledger is
//! unregistered through the flow that unregisters a runner dropped from the profile (its
//! config.toml entry and ledger record go with it), then the networks; volumes and the module
//! files are listed as kept unless `--purge`. Only this instance's objects (`berth.instance`) are touched.
//!
//! A destroy killed midway is finished by the next one: what is left is found again from the
//! daemon's listing and the ledger, and a runner leaves the ledger as soon as it is unregistered,
//! so none is unregistered twice.

use anyhow::{Result, bail};

use crate::{
    cli::{DestroyArgs, exit},
    docker::{Docker, ObjectNames, labels::Instance, listing::Listing},
    engine::{self, Mode, Pass, Reviewed},
    fleet::{Gate, SlotHeld},
    host::lock::RunLock,
    output::{
        Printer,
        confirm::{Consent, confirm},
        ignore_broken_pipe,
    },
    plan::Change,
    resource::{
        self, AnyResource, Context,
        berth_unit::BerthUnit,
        docker_object::Reach,
        kernel_module::KernelModule,
        orphan::{self, Handling},
        prefetch::prefetch,
        profile::Profile,
    },
    settings::{Settings, require_root},
};

/// What the command line asked of one destroy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request {
    /// `plan --destroy` (show) or `destroy` (ask, then do).
    mode: Mode,
    consent: Consent,
    purge: bool,
}

impl Request {
    /// `plan --destroy [--purge]`: shows, asks nothing.
    pub(crate) fn plan(purge: bool) -> Self {
        Self {
            mode: Mode::Plan,
            consent: Consent::Ask,
            purge,
        }
    }

    /// `destroy [--yes] [--purge]`.
    pub(crate) fn destroy(args: &DestroyArgs) -> Self {
        Self {
            mode: Mode::Apply,
            consent: if args.yes {
                Consent::Given
            } else {
                Consent::Ask
            },
            purge: args.purge,
        }
    }
}

/// `plan --destroy` or `destroy`.
pub(crate) fn run(settings: &Settings, printer: &Printer, request: Request) -> Result<u8> {
    let profile = resource::profile::load(&settings.profiles, &settings.host)?;
    let _lock = match request.mode {
        Mode::Plan => None,
        Mode::Apply => {
            require_root(settings, "destroy")?;
            Some(RunLock::acquire(&settings.host, settings.lock_timeout)?)
        }
    };
    let docker = Docker::default();
    let context = Context {
        host: &settings.host,
        docker: &docker,
    };
    let listing = listing(&context, &profile.instance)?;
    let resources = resources(&profile, &settings.host, listing.as_ref(), request.purge);
    let plan = engine::run(
        &resources,
        &context,
        Pass {
            mode: Mode::Plan,
            reviewed: None,
            log_warnings: true,
            fleet: None,
        },
    );
    if request.mode == Mode::Plan || !plan.has_changes() || plan.failed() {
        let plan = mark_waiting(settings, request.mode, plan);
        ignore_broken_pipe(printer.destroy_report(&plan, &profile.names))?;
        return Ok(match () {
            () if plan.failed() => exit::FAILURE,
            () if plan.has_changes() && request.mode == Mode::Plan => exit::CHANGES_PENDING,
            () => exit::OK,
        });
    }
    // Whoever is asked sees what they agree to: the plan as text, or with `--json` (whose
    // one document is the report after) in the question itself.
    if request.consent == Consent::Ask {
        ignore_broken_pipe(printer.review(&plan))?;
    }
    let going: Vec<String> = plan
        .entries
        .iter()
        .filter(|entry| entry.change.action.changes_host())
        .map(|entry| entry.change.id.to_string())
        .collect();
    let question = format!(
        "Destroy what berth made here ({} to destroy: {})?",
        plan.summary().destroy,
        going.join(", ")
    );
    if !confirm(
        request.consent,
        &question,
        "pass --yes to destroy without asking",
    )? {
        bail!("destroy cancelled: nothing was changed");
    }
    // Taking the host down is disruptive as a whole: with `[fleet]`, it goes only with a slot,
    // and hands it back once everything is gone.
    let gate = match &settings.fleet {
        Some(fleet) => Some(Gate::new(
            fleet,
            &settings.host,
            SlotHeld::read(&settings.host)?.is_some(),
        )),
        None => None,
    };
    if let Some(gate) = &gate
        && !gate.holds()
        && !gate.take()
    {
        tracing::warn!(
            "destroy waits for a fleet slot in `{}`: nothing was changed; run it again",
            gate.group()
        );
        return Ok(exit::WAITING_FOR_FLEET_SLOT);
    }
    docker.invalidate();
    // Exactly what was shown, and asked about.
    let shown: Vec<Change> = plan
        .entries
        .iter()
        .map(|entry| entry.change.clone())
        .collect();
    let report = engine::run(
        &resources,
        &context,
        Pass {
            mode: Mode::Apply,
            reviewed: Some(Reviewed(&shown)),
            log_warnings: false,
            fleet: None,
        },
    );
    ignore_broken_pipe(printer.destroy_report(&report, &profile.names))?;
    if report.failed() {
        return Ok(exit::FAILURE);
    }
    if let Some(gate) = &gate
        && let Err(error) = gate.release()
    {
        tracing::error!("{error:#}");
        return Ok(exit::FAILURE);
    }
    Ok(exit::OK)
}

/// `plan --destroy` with `[fleet]` and no slot held: destroy takes one before it removes
/// anything, so every step that changes the host waits for it, and says so as `plan` does (plan
/// asks no server).
fn mark_waiting(settings: &Settings, mode: Mode, mut plan: engine::Report) -> engine::Report {
    let Some(fleet) = &settings.fleet else {
        return plan;
    };
    // Apply marks nothing: it takes the slot before its first step, or changes nothing. As
    // another user, berth's state is root's: plan as if no slot is held.
    if mode == Mode::Apply || SlotHeld::read(&settings.host).is_ok_and(|held| held.is_some()) {
        return plan;
    }
    for entry in &mut plan.entries {
        if entry.change.action.changes_host() && entry.change.refused.is_none() {
            engine::mark_waiting(&mut entry.change, &fleet.group);
        }
    }
    plan
}

/// What berth made on this daemon; `None` when no Docker is installed (runners still go).
fn listing(context: &Context, instance: &Instance) -> Result<Option<Listing>> {
    let listed = prefetch(context, &ObjectNames::default(), instance);
    Ok(match listed {
        Some(listing) => Some(listing?),
        None => match resource::docker_object::reach(context) {
            Reach::NotInstalled => None,
            Reach::Down => bail!(
                "Docker does not answer: berth cannot tell what it made there; start Docker and run `berth destroy` again"
            ),
            Reach::NotPermitted => {
                bail!("this user may not ask Docker what berth made there; run as root")
            }
            Reach::Running => bail!(
                "berth could not list what it made: Docker answered only after the listing; run `berth destroy` again"
            ),
        },
    })
}

/// What destroy removes, in the order it goes.
fn resources(
    profile: &Profile,
    host: &crate::host::Host,
    listing: Option<&Listing>,
    purge: bool,
) -> Vec<AnyResource> {
    let mut resources: Vec<AnyResource> = BerthUnit::units().map(AnyResource::BerthUnit).collect();
    let orphans = listing
        .map(|listing| {
            orphan::find(
                listing,
                &profile.instance,
                None,
                Handling { keep: false, purge },
            )
        })
        .unwrap_or_default();
    resources.extend(orphans.containers.into_iter().map(AnyResource::Orphan));
    resources.extend(resource::recorded_runners(profile, host));
    resources.extend(orphans.networks.into_iter().map(AnyResource::Orphan));
    resources.extend(orphans.volumes.into_iter().map(AnyResource::Orphan));
    for module in &profile.kernel_modules {
        resources.push(AnyResource::KernelModule(KernelModule::forgotten(
            module.clone(),
            purge,
        )));
    }
    resources
}
