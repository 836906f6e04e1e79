//! Orphans: containers, networks and volumes berth made (`berth.managed=true`, this instance's
//! `berth.instance`) that the profiles no longer declare, and everything berth made when
//! `berth destroy` runs. Each is a resource of its own, `container/NAME`, `network/NAME` or
//! `volume/NAME`, built from one listing per kind (`docker ps -a`, `network ls`, `volume ls`,
//! filtered on berth's label) as removed runners are built from the ledger.
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

use std::{collections::BTreeMap, rc::Rc, time::Duration};

use anyhow::{Context as _, Result};

use crate::{
    host::exec::{self, CommandLine},
    plan::{Action, Change, Diff, Kind, ResourceId},
    resource::{
        Context, Earlier, Resource,
        container::{self, inspect::ContainerInfo},
        daemon::service::DaemonService,
        docker_object::{LABEL_INSTANCE, LABEL_MANAGED, LABEL_SPEC_HASH, ObjectNames, Observed},
        profile::Profile,
    },
};

/// How long one listing may take before berth treats the daemon as hung.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// What berth calls the probe network of a network replacement: made and removed at once, by
/// the replacement itself.
const PROBE_SUFFIX: &str = ".berth-probe";

/// One object a listing found with berth's label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub name: String,
    /// `berth.instance`, empty when the object has none.
    pub instance: String,
    pub spec_hash: String,
}

/// What berth made on this daemon, by kind, from one listing each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Listing {
    pub containers: Vec<Listed>,
    pub networks: Vec<Listed>,
    pub volumes: Vec<Listed>,
}

/// The three listings, run side by side; callable from any thread (`prefetch` runs it beside
/// its inspects).
pub(crate) fn list(program: &str) -> Result<Listing> {
    let (containers, networks, volumes) = std::thread::scope(|scope| {
        let containers = scope.spawn(|| list_kind(program, &["ps", "--all"]));
        let networks = scope.spawn(|| list_kind(program, &["network", "ls"]));
        let volumes = scope.spawn(|| list_kind(program, &["volume", "ls"]));
        (containers.join(), networks.join(), volumes.join())
    });
    let joined = |result: std::thread::Result<Result<Vec<Listed>>>| {
        result.unwrap_or_else(|_| Err(anyhow::anyhow!("a docker listing panicked")))
    };
    Ok(Listing {
        containers: joined(containers)?,
        networks: joined(networks)?,
        volumes: joined(volumes)?,
    })
}

/// `docker … ls --filter label=berth.managed=true`, one object a line: its name, instance and
/// spec hash, tab-separated (names and label values hold no tab).
fn list_kind(program: &str, command: &[&str]) -> Result<Vec<Listed>> {
    let format = format!(
        "{{{{.Name{}}}}}\t{{{{.Label \"{LABEL_INSTANCE}\"}}}}\t{{{{.Label \"{LABEL_SPEC_HASH}\"}}}}",
        // `docker ps` calls the field `Names`.
        if command[0] == "ps" { "s" } else { "" }
    );
    let mut args: Vec<String> = command.iter().map(|word| (*word).to_owned()).collect();
    args.extend([
        "--filter".into(),
        format!("label={LABEL_MANAGED}=true"),
        "--format".into(),
        format,
    ]);
    let line = CommandLine::new(program, args);
    let output = exec::run_with_timeout(&line, LIST_TIMEOUT)
        .with_context(|| format!("failed to list what berth made (`{line}`)"))?;
    Ok(output
        .stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut fields = line.split('\t');
            let mut next = || fields.next().unwrap_or_default().trim().to_owned();
            Listed {
                name: next(),
                instance: next(),
                spec_hash: next(),
            }
        })
        .collect())
}

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

/// One object berth made and will remove (or keep, and say so).
pub(crate) struct Orphan {
    kind: Kind,
    name: String,
    reason: Reason,
    handling: Handling,
    /// Every orphan container's name, so that observing them is one batched inspect.
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
    /// Restart policy off, drained (`docker stop` with its own signal and timeout),
    /// `docker rm --volumes`.
    DrainContainer {
        live: Box<ContainerInfo>,
    },
    RemoveNetwork,
    RemoveVolume,
}

/// The objects of `listing` that `instance` made and `declared` does not name. `declared`
/// is empty for `berth destroy`, which makes every one of them an orphan.
pub(crate) fn find(
    listing: &Listing,
    instance: &str,
    declared: Option<&Profile>,
    handling: Handling,
) -> Orphans {
    let names = declared.map(ObjectNames::from_profile).unwrap_or_default();
    // A declared object's spec, as its `berth.spec-hash` label records it, by kind.
    let mut hashes: BTreeMap<(Kind, String), String> = BTreeMap::new();
    if let Some(profile) = declared {
        for container in &profile.containers {
            hashes.insert(
                (Kind::Container, container.spec_hash()),
                container.name.to_string(),
            );
        }
        for network in &profile.networks {
            hashes.insert(
                (Kind::Network, network.spec_hash()),
                network.name.to_string(),
            );
        }
    }
    let ours = |listed: &&Listed| listed.instance.is_empty() || listed.instance == instance;
    let reason = |kind: Kind, listed: &Listed| match (
        declared,
        hashes.get(&(kind, listed.spec_hash.clone())),
    ) {
        (None, _) => Reason::Destroy,
        (Some(_), Some(declared)) => Reason::Renamed {
            declared: declared.clone(),
        },
        (Some(_), None) => Reason::Undeclared,
    };
    let undeclared = |listed: &[Listed], known: &[String], kind: Kind| -> Vec<(String, Reason)> {
        listed
            .iter()
            .filter(ours)
            .filter(|listed| !known.contains(&listed.name))
            .filter(|listed| !(kind == Kind::Network && listed.name.ends_with(PROBE_SUFFIX)))
            .map(|listed| (listed.name.clone(), reason(kind, listed)))
            .collect()
    };
    let containers = undeclared(&listing.containers, &names.containers, Kind::Container);
    let container_names = Rc::new(containers.iter().map(|(name, _)| name.clone()).collect());
    let make = |kind: Kind, found: Vec<(String, Reason)>| -> Vec<Orphan> {
        found
            .into_iter()
            .map(|(name, reason)| Orphan {
                kind,
                name,
                reason,
                handling,
                containers: Rc::clone(&container_names),
            })
            .collect()
    };
    Orphans {
        containers: make(Kind::Container, containers),
        networks: make(
            Kind::Network,
            undeclared(&listing.networks, &names.networks, Kind::Network),
        ),
        volumes: make(
            Kind::Volume,
            undeclared(&listing.volumes, &names.volumes, Kind::Volume),
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
    let timeout = container::own_stop_timeout(live);
    if live.state.running {
        format!("; drained: {signal}, up to {timeout} s")
    } else {
        String::new()
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
            if self.kind != Kind::Container || self.handling.keep {
                return Ok(None);
            }
            let found = context
                .docker
                .inspect_all::<ContainerInfo>(&self.containers)?;
            Ok(found.get(&self.name).cloned())
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

    fn apply(&self, context: &Context, op: &OrphanOp) -> Result<()> {
        let run = |args: &[&str]| -> Result<()> {
            context.docker.run(args)?;
            Ok(())
        };
        match op {
            OrphanOp::DrainContainer { live } => {
                let name = &self.name;
                run(&["container", "update", "--restart", "no", &live.id])
                    .with_context(|| format!("failed to turn off `{name}`'s restart policy"))?;
                container::drain(context, &self.id(), live, &format!("`{name}`"))
                    .with_context(|| format!("failed to stop `{name}`"))?;
                run(&["container", "rm", "--volumes", &live.id])
            }
            OrphanOp::RemoveNetwork => run(&["network", "rm", &self.name]),
            OrphanOp::RemoveVolume => run(&["volume", "rm", &self.name]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::source::TomlFile;

    fn listed(name: &str, instance: &str, spec_hash: &str) -> Listed {
        Listed {
            name: name.into(),
            instance: instance.into(),
            spec_hash: spec_hash.into(),
        }
    }

    fn profile() -> Profile {
        let text = r#"
[networks.net]
[containers.runner]
image = "busybox"
networks = ["net"]
volumes = ["data:/data"]
"#;
        Profile::from_sources(vec!["t".into()], &[TomlFile::new("t.toml", text)])
            .unwrap_or_else(|error| panic!("{}", error.problem()))
    }

    fn ids(orphans: &[Orphan]) -> Vec<(String, Reason)> {
        orphans
            .iter()
            .map(|orphan| (orphan.id().to_string(), orphan.reason.clone()))
            .collect()
    }

    #[test]
    fn only_this_instances_undeclared_objects_are_orphans() {
        let profile = profile();
        let runner_hash = profile.containers[0].spec_hash();
        let listing = Listing {
            containers: vec![
                listed("runner", "me", &runner_hash),
                listed("runner.berth-old", "me", &runner_hash),
                listed("runner-2", "me", &runner_hash),
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
        let orphans = find(&listing, "me", Some(&profile), Handling::default());
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
        let everything = find(&listing, "me", None, Handling::default());
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
            let orphans = find(&listing, "me", Some(&profile()), handling);
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
}
