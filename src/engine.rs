//! Drives resources through observe → diff → apply, in order. `plan` and `apply` are one loop:
//! plan stops before the last step. A failure is recorded against its resource and the run goes
//! on with the resources that do not depend on it, so one broken piece does not stop the rest of
//! the host from converging.

use std::{
    collections::BTreeSet,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::anyhow;
use serde::Serialize;

use crate::{
    fleet::Gate,
    host,
    plan::{Change, ResourceId, Summary},
    resource::{AnyResource, Context, Earlier, Resource, with_resource},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    Plan,
    Apply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// plan: would be done.
    Planned,
    /// plan: apply would refuse it (its `refused` says why); plan exits 1.
    Refused,
    /// apply: done.
    Done,
    /// apply: attempted and failed, or refused.
    Failed,
    /// apply: not attempted because an earlier change of the same resource failed.
    Skipped,
    /// apply: a disruptive step (or one after it) not attempted because no fleet slot was
    /// given; the next run tries again.
    Waiting,
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub change: Change,
    pub status: Status,
}

#[derive(Debug)]
pub(crate) struct Failure {
    pub id: ResourceId,
    pub error: anyhow::Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Notice {
    pub id: ResourceId,
    pub message: String,
}

#[derive(Debug)]
pub(crate) struct Report {
    pub mode: Mode,
    pub entries: Vec<Entry>,
    pub notices: Vec<Notice>,
    pub failures: Vec<Failure>,
}

impl Report {
    /// What was planned (plan) or done (apply).
    pub(crate) fn summary(&self) -> Summary {
        let counted = match self.mode {
            Mode::Plan => Status::Planned,
            Mode::Apply => Status::Done,
        };
        Summary::count(
            self.entries
                .iter()
                .filter(|entry| entry.status == counted)
                .map(|entry| &entry.change),
        )
    }

    /// True when something was planned or done; a note (a volume kept) is not a change.
    pub(crate) fn has_changes(&self) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.change.action.changes_host())
    }

    pub(crate) fn failed(&self) -> bool {
        !self.failures.is_empty()
    }

    /// apply: the changes that wait for a fleet slot.
    pub(crate) fn waiting(&self) -> usize {
        self.entries
            .iter()
            .filter(|entry| entry.status == Status::Waiting)
            .count()
    }

    /// plan: the changes apply would refuse.
    pub(crate) fn refused(&self) -> usize {
        self.entries
            .iter()
            .filter(|entry| entry.status == Status::Refused)
            .count()
    }
}

/// Set by `berth watch` on SIGTERM: the run ends after the step it is in, so a multi-step change
/// is finished or left journaled, never cut mid-command.
static STOP: AtomicBool = AtomicBool::new(false);

pub(crate) fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

pub(crate) fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The changes a person reviewed (a saved plan, or the plan apply showed before asking): apply
/// changes no resource the plan did not list, and makes nothing that cannot be taken back
/// unless the plan showed exactly that action. Matched by resource, not word for word: once the
/// changes before it are made, a change may read differently (config.toml planned as `create`
/// is an `update` after the runner's registration wrote its entry).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reviewed<'a>(pub(crate) &'a [Change]);

impl Reviewed<'_> {
    fn allows(&self, change: &Change) -> bool {
        self.0.iter().any(|reviewed| {
            reviewed.id == change.id
                && (!change.needs_consent() || reviewed.action == change.action)
        })
    }

    fn refusal(change: &Change) -> anyhow::Error {
        anyhow!(
            "`{}` of `{}` is not in the plan that was reviewed; run `berth plan` again",
            change.action.as_str(),
            change.id
        )
    }
}

/// How one pass over the resources runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pass<'a> {
    pub(crate) mode: Mode,
    /// apply: the only changes it may make.
    pub(crate) reviewed: Option<Reviewed<'a>>,
    /// False for the plan apply makes before it asks or checks a saved plan: the apply that
    /// follows logs the same warnings.
    pub(crate) log_warnings: bool,
    /// `[fleet]`: the slot a disruptive step takes first, or waits for.
    pub(crate) fleet: Option<&'a Gate<'a>>,
}

pub(crate) fn run(resources: &[AnyResource], context: &Context, pass: Pass) -> Report {
    let mode = pass.mode;
    let mut report = Report {
        mode,
        entries: Vec::new(),
        notices: Vec::new(),
        failures: Vec::new(),
    };
    let mut earlier = Earlier::default();
    let mut failed: BTreeSet<ResourceId> = BTreeSet::new();
    let mut journal_unreadable = false;
    // Recovery first: what an interrupted run left half done is finished or undone before
    // anything else is observed, so the rest converges from a host in one state.
    for resource in resources {
        with_resource!(resource, resource => {
            recover(resource, context, pass, &mut report, &mut failed, &mut journal_unreadable)
        });
    }
    for resource in resources {
        with_resource!(resource, resource => {
            step(resource, context, pass, &mut report, &mut earlier, &mut failed)
        });
    }
    report
}

/// Plan shows what an interrupted run left; apply finishes or undoes it. A resource whose
/// recovery fails is not converged in this run: its state is not what diff would assume.
fn recover<R: Resource>(
    resource: &R,
    context: &Context,
    Pass { mode, reviewed, .. }: Pass,
    report: &mut Report,
    failed: &mut BTreeSet<ResourceId>,
    journal_unreadable: &mut bool,
) {
    let id = resource.id();
    let leftover = match resource.leftover(context) {
        Ok(Some(leftover)) => leftover,
        Ok(None) => return,
        // `plan` as non-root: berth's state is root's alone. Said once, not per resource.
        Err(error) if host::permission_denied(&error) => {
            if !std::mem::replace(journal_unreadable, true) {
                let message = format!(
                    "{error:#}: what an interrupted run left is not shown; run as root to see it"
                );
                tracing::warn!("{message}");
                report.notices.push(Notice { id, message });
            }
            return;
        }
        Err(error) => {
            report.failures.push(Failure {
                error: error.context(format!(
                    "failed to read what an interrupted run left of `{id}`"
                )),
                id: id.clone(),
            });
            failed.insert(id);
            return;
        }
    };
    let (mut change, op) = leftover;
    change.action = resource.action(&op);
    if mode == Mode::Plan {
        report.entries.push(Entry {
            change,
            status: Status::Planned,
        });
        return;
    }
    if let Some(reviewed) = reviewed
        && !reviewed.allows(&change)
    {
        let error = Reviewed::refusal(&change);
        settle(report, &id, change, Err(error));
        failed.insert(id);
        return;
    }
    tracing::info!("{id}: recover {}", change.detail);
    let outcome = resource
        .apply(context, &op)
        .map_err(|error| error.context(format!("failed to recover `{id}`")));
    context.docker.invalidate();
    if !settle(report, &id, change, outcome) {
        failed.insert(id);
    }
}

/// Records what one applied change came to; true when it was done.
fn settle(
    report: &mut Report,
    id: &ResourceId,
    change: Change,
    outcome: anyhow::Result<()>,
) -> bool {
    let done = outcome.is_ok();
    report.entries.push(Entry {
        change,
        status: if done { Status::Done } else { Status::Failed },
    });
    if let Err(error) = outcome {
        report.failures.push(Failure {
            id: id.clone(),
            error,
        });
    }
    done
}

/// What plan says of a step that waits for a fleet slot of `group`.
pub(crate) fn mark_waiting(change: &mut Change, group: &str) {
    change.detail = format!("{} (waits for a fleet slot in {group})", change.detail)
        .trim_start()
        .to_owned();
}

/// A disruptive step and the fleet's slot. Plan shows the step as waiting while no slot is
/// held (plan asks no server); apply takes one first, and true means it did not get one.
/// Recovery is not gated: finishing what a run left half done heals the host.
fn waits_for_slot(gate: &Gate, mode: Mode, change: &mut Change) -> bool {
    if gate.holds() {
        return false;
    }
    match mode {
        Mode::Plan => {
            mark_waiting(change, gate.group());
            false
        }
        Mode::Apply => change.refused.is_none() && !gate.take(),
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one step's ladder: dependency, observe, diff, fleet slot, consent, apply"
)]
fn step<R: Resource>(
    resource: &R,
    context: &Context,
    Pass {
        mode,
        reviewed,
        log_warnings,
        fleet,
    }: Pass,
    report: &mut Report,
    earlier: &mut Earlier,
    failed: &mut BTreeSet<ResourceId>,
) {
    let id = resource.id();
    if stop_requested() {
        report.failures.push(Failure {
            error: anyhow!("not attempted: berth is stopping"),
            id: id.clone(),
        });
        return;
    }
    let failed_dependency = resource
        .depends_on()
        .into_iter()
        .find(|dependency| failed.contains(dependency));
    if let Some(dependency) = failed_dependency
        && mode == Mode::Apply
    {
        report.failures.push(Failure {
            error: anyhow!("not attempted because `{dependency}` failed"),
            id: id.clone(),
        });
        failed.insert(id);
        return;
    }
    let observed = match resource.observe(context) {
        Ok(observed) => observed,
        Err(error) => {
            report.failures.push(Failure {
                error: error.context(format!("failed to observe `{id}`")),
                id: id.clone(),
            });
            failed.insert(id);
            return;
        }
    };
    let diff = resource.diff(&observed, earlier);
    for message in diff.warnings {
        if log_warnings {
            tracing::warn!("{id}: {message}");
        }
        report.notices.push(Notice {
            id: id.clone(),
            message,
        });
    }
    // What plan shows, asks about and counts is what apply does: a change with an op is shown
    // with its op's action.
    let mut changes = diff.changes.into_iter().map(|(mut change, op)| {
        if let Some(op) = &op {
            change.action = resource.action(op);
        }
        (change, op)
    });
    while let Some((mut change, op)) = changes.next() {
        if let Some(gate) = fleet
            && op.as_ref().is_some_and(|op| resource.disrupts(op))
            && waits_for_slot(gate, mode, &mut change)
        {
            // This step and the rest of the resource's wait; the resources after it
            // converge, since nothing failed.
            gate.wait(&id);
            let rest = changes.by_ref().map(|(rest, _)| rest);
            report
                .entries
                .extend(std::iter::once(change).chain(rest).map(|change| Entry {
                    change,
                    status: Status::Waiting,
                }));
            return;
        }
        if stop_requested() && mode == Mode::Apply {
            report.entries.push(Entry {
                change,
                status: Status::Skipped,
            });
            continue;
        }
        let made = op.as_ref().map(|op| resource.made(op)).unwrap_or_default();
        // A note is printed in both modes and carried out in neither.
        if mode == Mode::Plan || !change.action.changes_host() {
            earlier.push(&change, made);
            let status = if change.refused.is_some() {
                Status::Refused
            } else {
                Status::Planned
            };
            report.entries.push(Entry { change, status });
            continue;
        }
        let outcome = match (&change.refused, &op) {
            _ if reviewed.is_some_and(|reviewed| !reviewed.allows(&change)) => {
                Err(Reviewed::refusal(&change))
            }
            (Some(reason), _) => Err(anyhow!("{reason}")
                .context(format!("refused to {} `{id}`", change.action.as_str()))),
            (None, Some(op)) => {
                tracing::info!("{id}: {} {}", change.action.as_str(), change.detail);
                resource.apply(context, op).map_err(|error| {
                    error.context(format!("failed to {} `{id}`", change.action.as_str()))
                })
            }
            (None, None) => Err(anyhow!(
                "berth planned `{}` of `{id}` without saying how; please report this",
                change.action.as_str()
            )),
        };
        // Whatever happened, the daemon may have changed: the next resource observes afresh.
        context.docker.invalidate();
        let planned = change.clone();
        if settle(report, &id, change, outcome) {
            earlier.push(&planned, made);
        } else {
            for (rest, _) in changes.by_ref() {
                report.entries.push(Entry {
                    change: rest,
                    status: Status::Skipped,
                });
            }
            failed.insert(id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        docker::Docker,
        host::Host,
        plan::{Action, Diff, Kind},
        resource::Made,
    };

    /// A kind whose diff prints an update for an op that replaces the container.
    struct Misprinted;

    impl Resource for Misprinted {
        type Observed = ();
        type Op = ();

        fn id(&self) -> ResourceId {
            ResourceId::new(Kind::Container, "ci")
        }

        fn observe(&self, _context: &Context) -> anyhow::Result<()> {
            Ok(())
        }

        fn diff(&self, _observed: &(), _earlier: &Earlier) -> Diff<()> {
            let mut diff = Diff::none();
            diff.push(Change::new(self.id(), Action::Update, "looks harmless"), ());
            diff
        }

        fn action(&self, _op: &()) -> Action {
            Action::Replace
        }

        fn made(&self, _op: &()) -> Vec<Made> {
            vec![Made::NewContainer]
        }

        fn apply(&self, _context: &Context, _op: &()) -> anyhow::Result<()> {
            Ok(())
        }
    }

    /// Issue 19: what plan shows, asks about and counts is what the op does, and what the op
    /// makes is what later kinds are told.
    #[test]
    fn a_change_is_shown_asked_about_and_counted_as_its_op_does() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        let docker = Docker::default();
        let context = Context {
            host: &host,
            docker: &docker,
        };
        let mut report = Report {
            mode: Mode::Plan,
            entries: Vec::new(),
            notices: Vec::new(),
            failures: Vec::new(),
        };
        let mut earlier = Earlier::default();
        let pass = Pass {
            mode: Mode::Plan,
            reviewed: None,
            log_warnings: false,
            fleet: None,
        };
        step(
            &Misprinted,
            &context,
            pass,
            &mut report,
            &mut earlier,
            &mut BTreeSet::new(),
        );
        let change = &report.entries[0].change;
        assert_eq!(change.action, Action::Replace);
        assert!(change.needs_consent());
        assert_eq!(
            report.summary(),
            Summary {
                add: 1,
                change: 0,
                destroy: 1
            }
        );
        assert!(earlier.new_container("ci"));
    }
}
