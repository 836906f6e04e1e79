//! Orphans: containers, networks and volumes berth made (`berth.managed=true`, this instance's
//! `berth.instance`) that the profiles no longer declare, and everything berth made when
//! `berth destroy` runs. Each is a resource of its own, `container/NAME`, `network/NAME` or
//! `volume/NAME`, built from one listing per kind (filtered on berth's label) as removed
//! runners are built from the ledger.
//!
//! - A container is drained as a replacement drains it: its restart policy turned off (so a
//!   daemon restart cannot revive it), stopped with its own stop signal and timeout
//!   (gitlab-runner finishes its jobs on SIGQUIT), then removed with its anonymous volumes.
//! - A network is removed once its members are gone: orphan containers converge before the
//!   profile's networks, orphan networks after the profile's containers.
//! - A named volume holds data: it is listed as kept and never removed, except by
//!   `berth destroy --purge`.
//!
//! An object another instance made (another `instance`, another machine on a shared daemon) is
//! never listed; one without an instance label (made before berth had it) is this instance's.
//!
//! Whoever can start a container here (a CI job on the `socket` topology) can label it as they
//! like, so a listing is read as Docker's JSON, never as text a label value could forge lines
//! of: each listing prints one JSON array a line (ID, name and instance label, escaped by
//! Docker's `json`), and one batched `inspect` of the IDs that may be orphans gives each
//! object's name and labels as Docker's own document. An object whose name or
//! labels hold a control character is not berth's (berth never makes one): it is reported as
//! refused and never acted on. Every removal re-inspects its object by ID first and goes ahead
//! only if it still carries `berth.managed=true` and this instance's label, so an object
//! swapped in since the listing is never removed; and it removes by ID, never by a name.

use std::{collections::BTreeMap, rc::Rc};

use anyhow::{Context as _, Result, bail};
use bollard::models::{RestartPolicy, RestartPolicyNameEnum};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::{
    docker::{
        self, Inspect, ObjectNames,
        drain::{drain, own_stop_timeout},
        labels::{Instance, LABEL_INSTANCE, LABEL_MANAGED, LABEL_SPEC_HASH},
        listing::{Listed, Listing, escaped, from_inspect, word},
        wire::ContainerInfo,
    },
    plan::{Action, Change, Diff, Kind, ResourceId},
    resource::{
        Context, Earlier, Resource, daemon::service::DaemonService, docker_object::Observed,
    },
};

/// What berth calls the probe network of a network replacement: made and removed at once, by
/// the replacement itself.
const PROBE_SUFFIX: &str = ".berth-probe";

/// Why an object is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The profiles no longer declare it.
    Undeclared,
    /// It carries the spec of the declared object of this name, under another name.
    Renamed { declared: String },
    /// `berth destroy`.
    Destroy,
}

impl Reason {
    fn describe(&self, name: &str) -> String {
        match self {
            Self::Undeclared => "no longer in the profile".to_owned(),
            Self::Renamed { declared } => {
                format!("`{declared}` renamed by hand to {name}; berth makes `{declared}` again")
            }
            Self::Destroy => "made by berth".to_owned(),
        }
    }
}

/// What `--keep-orphans`, `destroy` and `--purge` ask of the orphans of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Handling {
    /// `--keep-orphans`: list them as kept, remove nothing.
    pub keep: bool,
    /// `destroy --purge`: volumes go too.
    pub purge: bool,
}

/// One object berth made and will remove (or keep, and say so), or one labelled as berth's that
/// berth refuses to touch.
pub(crate) struct Orphan {
    kind: Kind,
    /// The full ID (a volume's name): what a removal re-inspects and removes.
    object_id: String,
    /// What the output calls it (see [`Listed::shown_name`]).
    name: String,
    reason: Reason,
    handling: Handling,
    /// Set when berth will not act on it, and why.
    refused: Option<String>,
    instance: Rc<Instance>,
    /// Every orphan container's ID, so that observing them is one batched inspect.
    containers: Rc<Vec<String>>,
}

/// The orphans of one run, in the three places they converge.
#[derive(Default)]
pub(crate) struct Orphans {
    /// Before the profile's networks: a network replaced or removed has them gone already.
    pub containers: Vec<Orphan>,
    /// After the profile's containers, which may have left them in this run.
    pub networks: Vec<Orphan>,
    pub volumes: Vec<Orphan>,
}

/// What apply does with an orphan.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OrphanOp {
    /// Restart policy off, drained (stopped with its own signal and timeout), removed with
    /// its anonymous volumes.
    DrainContainer {
        live: Box<ContainerInfo>,
    },
    RemoveNetwork,
    RemoveVolume,
}

/// What the profiles declare, as far as orphans care: every name, and the spec hash of each
/// declared container and network (an object carrying one under another name was renamed).
/// Worked out by the profile (`Profile::declared`), so the orphan kind reads no other kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeclaredObjects {
    pub names: ObjectNames,
    /// A declared object's spec, as its `berth.spec-hash` label records it, by kind: its name.
    pub hashes: BTreeMap<(Kind, String), String>,
}

/// The objects of `listing` that `instance` made and `declared` does not name, and those
/// labelled as berth's that berth refuses to touch (whatever their instance: someone forged
/// them, which is worth saying). `declared` is empty for `berth destroy`, which makes every
/// one of this instance's objects an orphan.
pub(crate) fn find(
    listing: &Listing,
    instance: &Instance,
    declared: Option<&DeclaredObjects>,
    handling: Handling,
) -> Orphans {
    let names = declared
        .map(|declared| declared.names.clone())
        .unwrap_or_default();
    let hashes = declared.map(|declared| &declared.hashes);
    let reason = |kind: Kind, listed: &Listed| match hashes {
        None => Reason::Destroy,
        Some(hashes) => match hashes.get(&(kind, listed.label(LABEL_SPEC_HASH).to_owned())) {
            Some(declared) => Reason::Renamed {
                declared: declared.clone(),
            },
            None => Reason::Undeclared,
        },
    };
    // (listed, why it is removed, why berth refuses it)
    let found = |listed: &[Listed], known: &[String], kind: Kind| {
        listed
            .iter()
            .filter_map(|listed| match listed.refusal() {
                Some(refusal) => Some((listed.clone(), Reason::Destroy, Some(refusal))),
                None if !instance.owns(listed.label(LABEL_INSTANCE))
                    || known.contains(&listed.name)
                    || (kind == Kind::Network && listed.name.ends_with(PROBE_SUFFIX)) =>
                {
                    None
                }
                None => Some((listed.clone(), reason(kind, listed), None)),
            })
            .collect::<Vec<_>>()
    };
    let containers = found(&listing.containers, &names.containers, Kind::Container);
    let container_ids = Rc::new(
        containers
            .iter()
            .filter(|(_, _, refused)| refused.is_none())
            .map(|(listed, _, _)| listed.id.clone())
            .collect(),
    );
    let instance = Rc::new(instance.clone());
    let make = |kind: Kind, found: Vec<(Listed, Reason, Option<String>)>| -> Vec<Orphan> {
        found
            .into_iter()
            .map(|(listed, reason, refused)| Orphan {
                kind,
                name: listed.shown_name(kind),
                object_id: listed.id,
                reason,
                handling,
                refused,
                instance: Rc::clone(&instance),
                containers: Rc::clone(&container_ids),
            })
            .collect()
    };
    Orphans {
        containers: make(Kind::Container, containers),
        networks: make(
            Kind::Network,
            found(&listing.networks, &names.networks, Kind::Network),
        ),
        volumes: make(
            Kind::Volume,
            found(&listing.volumes, &names.volumes, Kind::Volume),
        ),
    }
}

/// How the plan line says a container is drained.
fn drain_note(live: &ContainerInfo) -> String {
    let signal = live
        .config
        .stop_signal
        .clone()
        .filter(|signal| !signal.is_empty())
        .unwrap_or_else(|| "SIGTERM".to_owned());
    let timeout = own_stop_timeout(live);
    if live.state.running {
        format!("; drained: {signal}, up to {timeout} s")
    } else {
        String::new()
    }
}

/// A container's inspect answering to its full ID only: an orphan is observed by the ID its
/// listing found, never by a name another container may have taken since.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
struct ById(ContainerInfo);

impl Inspect for ById {
    const KIND: &'static str = "container";

    fn answers_to(&self, id: &str) -> bool {
        self.0.id.as_str() == id
    }
}

impl Orphan {
    /// Re-inspects the object by its ID right before it is removed: `Ok(false)` when it is gone
    /// already, an error when it no longer carries `berth.managed=true` and this instance's
    /// label (or carries a control character), so nothing swapped in is ever removed.
    fn still_ours(&self, context: &Context) -> Result<bool> {
        let raw: Vec<Json> = docker::inspect(
            context.docker.engine(),
            word(self.kind),
            std::slice::from_ref(&self.object_id),
        )?;
        let Some(object) = raw.first() else {
            return Ok(false);
        };
        let now = from_inspect(self.kind, object)?;
        let why_not = if now.id != self.object_id {
            Some("Docker answered with another object".to_owned())
        } else if let Some(refusal) = now.refusal() {
            Some(refusal)
        } else if now.label(LABEL_MANAGED) != "true" {
            Some(format!("it no longer carries `{LABEL_MANAGED}=true`"))
        } else if !self.instance.owns(now.label(LABEL_INSTANCE)) {
            Some(format!(
                "its `{LABEL_INSTANCE}` is now {}",
                escaped(now.label(LABEL_INSTANCE))
            ))
        } else {
            None
        };
        // A volume has no ID: its name is all Docker knows it by.
        let by = if self.kind == Kind::Volume {
            "name"
        } else {
            "ID"
        };
        match why_not {
            Some(why_not) => bail!(
                "refused to remove {} `{}`: looked at again by its {by}, {why_not}",
                word(self.kind),
                self.name
            ),
            None => Ok(true),
        }
    }
}

impl Resource for Orphan {
    /// A container's inspect (`None`: gone since the listing); networks and volumes need
    /// nothing beyond the listing.
    type Observed = Observed<Option<ContainerInfo>>;
    type Op = OrphanOp;

    fn id(&self) -> ResourceId {
        ResourceId::new(self.kind, &self.name)
    }

    fn depends_on(&self) -> Vec<ResourceId> {
        vec![DaemonService::id()]
    }

    fn observe(&self, context: &Context) -> Result<Self::Observed> {
        Observed::of(context, || {
            if self.kind != Kind::Container || self.handling.keep || self.refused.is_some() {
                return Ok(None);
            }
            let found = context.docker.inspect_all::<ById>(&self.containers)?;
            Ok(found.get(&self.object_id).map(|found| found.0.clone()))
        })
    }

    fn diff(&self, observed: &Self::Observed, _earlier: &Earlier) -> Diff<OrphanOp> {
        let mut diff = Diff::none();
        // Listed while Docker answered; if it stopped answering since, nothing can be removed.
        let Observed::Seen(seen) = observed else {
            return diff;
        };
        let reason = self.reason.describe(&self.name);
        let keep = |diff: &mut Diff<OrphanOp>, detail: String| {
            diff.changes
                .push((Change::new(self.id(), Action::Keep, detail), None));
        };
        if let Some(refused) = &self.refused {
            keep(
                &mut diff,
                format!(
                    "refused: labelled `{LABEL_MANAGED}=true`, but {refused}; berth made no such object and never touches it"
                ),
            );
            return diff;
        }
        if self.handling.keep {
            keep(
                &mut diff,
                format!("kept for this run (--keep-orphans): {reason}"),
            );
            return diff;
        }
        match self.kind {
            Kind::Container => {
                let Some(live) = seen else {
                    return diff;
                };
                diff.push(
                    Change::new(
                        self.id(),
                        Action::Destroy,
                        format!("{reason}{}", drain_note(live)),
                    ),
                    OrphanOp::DrainContainer {
                        live: Box::new(live.clone()),
                    },
                );
            }
            Kind::Network => diff.push(
                Change::new(self.id(), Action::Destroy, reason),
                OrphanOp::RemoveNetwork,
            ),
            _ if self.handling.purge => diff.push(
                Change::new(
                    self.id(),
                    Action::Destroy,
                    format!("{reason}; --purge: its data goes with it"),
                ),
                OrphanOp::RemoveVolume,
            ),
            _ => keep(
                &mut diff,
                "kept: holds data; berth destroy --purge removes it".to_owned(),
            ),
        }
        diff
    }

    /// Every op removes (a volume kept is a note, without an op).
    fn action(&self, _op: &OrphanOp) -> Action {
        Action::Destroy
    }

    /// Removing a running container berth made drains what runs in it (a runner's jobs, a
    /// dind daemon's builds); berth cannot tell from an orphan what it ran, so every running
    /// one counts.
    fn disrupts(&self, op: &OrphanOp) -> bool {
        match op {
            OrphanOp::DrainContainer { live } => live.state.running,
            OrphanOp::RemoveNetwork | OrphanOp::RemoveVolume => false,
        }
    }

    fn apply(&self, context: &Context, op: &OrphanOp) -> Result<()> {
        if !self.still_ours(context)? {
            return Ok(());
        }
        let engine = context.docker.engine();
        let id = self.object_id.as_str();
        match op {
            OrphanOp::DrainContainer { live } => {
                let name = &self.name;
                let off = RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: Some(0),
                };
                engine
                    .update_restart_policy(id, off)
                    .with_context(|| format!("failed to turn off `{name}`'s restart policy"))?;
                drain(context.docker, &self.id(), live, &format!("`{name}`"))
                    .with_context(|| format!("failed to stop `{name}`"))?;
                engine
                    .remove_container(id, false)
                    .with_context(|| format!("failed to remove container `{name}`"))
            }
            OrphanOp::RemoveNetwork => engine
                .remove_network(id)
                .with_context(|| format!("failed to remove network `{}`", self.name)),
            OrphanOp::RemoveVolume => context
                .docker
                .engine()
                .remove_volume(id)
                .with_context(|| format!("failed to remove volume `{id}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::labels::Labels;

    fn listed(name: &str, instance: &str, spec_hash: &str) -> Listed {
        let mut labels = Labels::from([(LABEL_MANAGED.to_owned(), "true".to_owned())]);
        for (key, value) in [(LABEL_INSTANCE, instance), (LABEL_SPEC_HASH, spec_hash)] {
            if !value.is_empty() {
                labels.insert(key.to_owned(), value.to_owned());
            }
        }
        Listed {
            id: format!("{:0>64}", hex::encode(name)),
            name: name.into(),
            labels,
        }
    }

    fn me() -> Instance {
        Instance {
            label: "me".into(),
            earlier: Some("raw-machine-id".into()),
        }
    }

    /// What a profile of one network `net`, one volume `data` and one container `runner`
    /// declares (`Profile::declared`'s own test checks how a profile says it).
    fn declared() -> DeclaredObjects {
        DeclaredObjects {
            names: ObjectNames {
                containers: vec!["runner".into(), "runner.berth-old".into()],
                networks: vec!["net".into()],
                volumes: vec!["data".into()],
                images: vec!["busybox".into()],
            },
            hashes: BTreeMap::from([
                (
                    (Kind::Container, RUNNER_HASH.to_owned()),
                    "runner".to_owned(),
                ),
                ((Kind::Network, "net-hash".to_owned()), "net".to_owned()),
            ]),
        }
    }

    const RUNNER_HASH: &str = "runner-hash";

    fn ids(orphans: &[Orphan]) -> Vec<(String, Reason)> {
        orphans
            .iter()
            .map(|orphan| (orphan.id().to_string(), orphan.reason.clone()))
            .collect()
    }

    #[test]
    fn only_this_instances_undeclared_objects_are_orphans() {
        let runner_hash = RUNNER_HASH;
        let listing = Listing {
            containers: vec![
                listed("runner", "me", runner_hash),
                listed("runner.berth-old", "me", runner_hash),
                listed("runner-2", "me", runner_hash),
                listed("dind", "", "old"),
                listed("theirs", "other", "x"),
            ],
            networks: vec![
                listed("net", "me", ""),
                listed("net.berth-probe", "me", ""),
                listed("old-net", "me", ""),
            ],
            volumes: vec![listed("data", "me", ""), listed("cache", "me", "")],
        };
        let orphans = find(&listing, &me(), Some(&declared()), Handling::default());
        assert_eq!(
            ids(&orphans.containers),
            vec![
                (
                    "container/runner-2".to_owned(),
                    Reason::Renamed {
                        declared: "runner".into()
                    }
                ),
                ("container/dind".to_owned(), Reason::Undeclared),
            ]
        );
        assert_eq!(
            ids(&orphans.networks),
            vec![("network/old-net".to_owned(), Reason::Undeclared)]
        );
        assert_eq!(
            ids(&orphans.volumes),
            vec![("volume/cache".to_owned(), Reason::Undeclared)]
        );
        let everything = find(&listing, &me(), None, Handling::default());
        assert_eq!(
            everything.containers.len(),
            4,
            "all but the other instance's"
        );
        assert_eq!(everything.volumes.len(), 2);
    }

    #[test]
    fn a_volume_is_kept_unless_purged_and_keep_orphans_keeps_everything() {
        let listing = Listing {
            volumes: vec![listed("cache", "me", "")],
            networks: vec![listed("old-net", "me", "")],
            ..Listing::default()
        };
        let seen = Observed::Seen(None);
        let plan = |handling: Handling| -> Vec<(Action, String, bool)> {
            let orphans = find(&listing, &me(), Some(&declared()), handling);
            orphans
                .networks
                .iter()
                .chain(&orphans.volumes)
                .flat_map(|orphan| orphan.diff(&seen, &Earlier::default()).changes)
                .map(|(change, op)| (change.action, change.detail, op.is_some()))
                .collect()
        };
        assert_eq!(
            plan(Handling::default()),
            vec![
                (Action::Destroy, "no longer in the profile".into(), true),
                (
                    Action::Keep,
                    "kept: holds data; berth destroy --purge removes it".into(),
                    false
                ),
            ]
        );
        assert_eq!(
            plan(Handling {
                purge: true,
                keep: false
            })[1]
                .0,
            Action::Destroy
        );
        assert!(
            plan(Handling {
                keep: true,
                purge: false
            })
            .iter()
            .all(|(action, detail, op)| *action == Action::Keep
                && detail.starts_with("kept for this run (--keep-orphans)")
                && !op)
        );
    }

    #[test]
    fn a_forged_name_or_label_is_refused_whatever_its_instance_and_an_earlier_label_is_ours() {
        let forged_label = listed("forger", "x\nvictim\tme\t", "");
        let mut forged_name = listed("victim\tme", "me", "");
        // Named by its short ID: its name cannot be printed as it is.
        forged_name.id = "f".repeat(64);
        let listing = Listing {
            containers: vec![
                forged_label,
                forged_name,
                listed("upgraded", "raw-machine-id", ""),
                listed("theirs", "other-machine-id", ""),
            ],
            ..Listing::default()
        };
        let orphans = find(&listing, &me(), None, Handling::default());
        let lines: Vec<(String, Action, String, bool)> = orphans
            .containers
            .iter()
            .flat_map(|orphan| {
                orphan
                    .diff(&Observed::Seen(None), &Earlier::default())
                    .changes
            })
            .map(|(change, op)| {
                (
                    change.id.to_string(),
                    change.action,
                    change.detail,
                    op.is_some(),
                )
            })
            .collect();
        assert_eq!(
            lines,
            vec![
                (
                    "container/forger".to_owned(),
                    Action::Keep,
                    "refused: labelled `berth.managed=true`, but its label \"berth.instance\" holds a control character; berth made no such object and never touches it".to_owned(),
                    false
                ),
                (
                    "container/ffffffffffff".to_owned(),
                    Action::Keep,
                    "refused: labelled `berth.managed=true`, but its name \"victim\\tme\" holds a control character; berth made no such object and never touches it".to_owned(),
                    false
                ),
            ],
            "the container labelled with the raw machine id is observed (and removed) as ours"
        );
        assert_eq!(orphans.containers.len(), 3);
        assert_eq!(orphans.containers[2].id().to_string(), "container/upgraded");
        assert_eq!(
            *orphans.containers[2].containers,
            vec![listing.containers[2].id.clone()],
            "observed by ID, and only what berth may remove"
        );
    }
}
