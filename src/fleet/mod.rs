//! `[fleet]` in berth.toml: a FleetLock slot (the protocol of Zincati's docs, served by airlock
//! or any server that speaks it) taken before the first disruptive step of a run and released
//! once the run converged, so that one merged profile change never disrupts more hosts of a
//! group at once than the server has slots. Which steps are disruptive each kind says
//! (`Resource::disrupts`); this module only asks the server and remembers what it holds.
//! It never decides what a step does.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::host::{Host, HostPath, host_path};
use crate::plan::ResourceId;

/// Where berth remembers a slot it holds: a run killed between taking and releasing it leaves
/// this behind, and the next run (or `berth status`) knows.
pub(crate) const SLOT_HELD: &str = "/var/lib/berth/fleet-slot.json";

/// The FleetLock group when berth.toml names none, as Zincati's.
pub(crate) const DEFAULT_GROUP: &str = "default";

/// A server that does not answer in this time is as good as a "no": the disruptive steps wait
/// for the next run, the rest converges now.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// `[fleet]`, resolved: the server, the group and this host's client id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fleet {
    pub lock: String,
    pub group: String,
    pub id: String,
}

/// What `SLOT_HELD` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SlotHeld {
    pub lock: String,
    pub group: String,
    pub id: String,
    /// When the slot was taken (RFC 3339, UTC, as jiff writes it).
    pub since: jiff::Timestamp,
}

impl SlotHeld {
    /// The slot this host holds; `None` when it holds none.
    pub(crate) fn read(host: &Host) -> Result<Option<Self>> {
        let Some(text) = host.read_optional(&path())? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("`{}` is not a fleet slot berth holds", path()))
    }
}

fn path() -> HostPath {
    host_path(SLOT_HELD)
}

/// A run's dealings with its FleetLock group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FleetRun {
    pub group: String,
    /// The resources whose disruptive steps wait for a slot.
    pub waiting: Vec<String>,
    /// A slot is held once the run ended (it took one and did not converge, or its release
    /// failed).
    pub slot_held: bool,
}

/// One run's dealings with the FleetLock server: asks for a slot at most once, and keeps
/// which disruptive steps wait for one.
#[derive(Debug)]
pub(crate) struct Gate<'a> {
    fleet: &'a Fleet,
    host: &'a Host,
    /// A slot is held: taken in this run, or by an earlier run that ended before releasing it.
    held: Cell<bool>,
    /// The server's answer in this run, once asked.
    answer: Cell<Option<bool>>,
    waiting: RefCell<Vec<ResourceId>>,
}

impl<'a> Gate<'a> {
    /// `held`: [`SlotHeld::read`] found a slot an earlier run took and did not release.
    pub(crate) fn new(fleet: &'a Fleet, host: &'a Host, held: bool) -> Self {
        Self {
            fleet,
            host,
            held: Cell::new(held),
            answer: Cell::new(None),
            waiting: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn group(&self) -> &str {
        &self.fleet.group
    }

    /// True while this host holds a slot.
    pub(crate) fn holds(&self) -> bool {
        self.held.get()
    }

    /// apply, before a disruptive step: true when it may go ahead. The first call of a run
    /// takes a slot (`pre-reboot`, which a slot this id already holds answers yes to: the
    /// protocol is recursive per id); a refusal or a server that does not answer is said once
    /// and holds for the rest of the run.
    pub(crate) fn take(&self) -> bool {
        if let Some(answer) = self.answer.get() {
            return answer;
        }
        let answer = match call(self.fleet, "pre-reboot") {
            Ok(()) => {
                let held = SlotHeld {
                    lock: self.fleet.lock.clone(),
                    group: self.fleet.group.clone(),
                    id: self.fleet.id.clone(),
                    since: jiff::Timestamp::now(),
                };
                // A slot berth cannot remember would never be released by a later run.
                match self.host.write_json(&path(), &held, 0o644) {
                    Ok(()) => {
                        self.held.set(true);
                        tracing::info!("took a fleet slot in `{}`", self.fleet.group);
                        true
                    }
                    Err(error) => {
                        tracing::warn!("{error:#}: the disruptive steps wait");
                        false
                    }
                }
            }
            Err(error) => {
                tracing::warn!(
                    "no fleet slot in `{}`: {error:#}; the disruptive steps wait for the next run",
                    self.fleet.group
                );
                false
            }
        };
        self.answer.set(Some(answer));
        answer
    }

    /// Records that a disruptive step of `id` waits for a slot.
    pub(crate) fn wait(&self, id: &ResourceId) {
        let mut waiting = self.waiting.borrow_mut();
        if !waiting.contains(id) {
            waiting.push(id.clone());
        }
    }

    /// The resources whose disruptive steps wait for a slot, in converge order.
    pub(crate) fn waiting(&self) -> Vec<ResourceId> {
        self.waiting.borrow().clone()
    }

    /// What the run report keeps of this run.
    pub(crate) fn run(&self) -> FleetRun {
        FleetRun {
            group: self.fleet.group.clone(),
            waiting: self.waiting().iter().map(ToString::to_string).collect(),
            slot_held: self.holds(),
        }
    }

    /// After a run that converged (nothing failed, nothing waits): gives back the slot held,
    /// this run's or one an earlier run left (`steady-state`).
    pub(crate) fn release(&self) -> Result<()> {
        if !self.held.get() {
            return Ok(());
        }
        call(self.fleet, "steady-state").with_context(|| {
            format!(
                "failed to release the fleet slot in `{}`; the next run tries again",
                self.fleet.group
            )
        })?;
        self.host.remove_file(&path())?;
        self.held.set(false);
        tracing::info!("released the fleet slot in `{}`", self.fleet.group);
        Ok(())
    }
}

/// `POST /v1/{endpoint}` as Zincati's docs give the protocol: the `fleet-lock-protocol`
/// header, the client's id and group in the body; 200 is yes, anything else no.
fn call(fleet: &Fleet, endpoint: &str) -> Result<()> {
    let url = format!("{}/v1/{endpoint}", fleet.lock.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(CALL_TIMEOUT))
        .user_agent(format!("berth/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let body = serde_json::json!({"client_params": {"id": fleet.id, "group": fleet.group}});
    let mut response = agent
        .post(&url)
        .header("fleet-lock-protocol", "true")
        .header("content-type", "application/json")
        .send(body.to_string())
        .with_context(|| format!("`{url}` does not answer"))?;
    let status = response.status();
    if status == 200 {
        return Ok(());
    }
    // The protocol's error body is `{"kind": ..., "value": ...}`; enough of it to say why.
    let text = response
        .body_mut()
        .with_config()
        .limit(4096)
        .read_to_string()
        .unwrap_or_default();
    let reason: String = text.trim().chars().take(200).collect();
    bail!("`{url}` answered {status}: {reason}");
}
