//! Each runner's identity and token lifetime as the host holds them: the `.runner_system_id`
//! beside config.toml, the machine it was made on, and `token_expires_at` in the runner's
//! entry.
//!
//! A system ID copied to another machine (a cloned image, a restored snapshot) makes two hosts
//! one runner manager in GitLab, and jobs go to whichever asked last (gitlab-runner #38858). So
//! berth's ledger keeps, for each system ID it wrote or verified with, a hash of the machine ID
//! it was made on (its app-specific ID, never the ID itself, as machine-id(5)
//! asks); on a machine whose hash differs, the runner plans a new one. Reads only here; the
//! runner's apply writes.

use anyhow::Result;
use serde::Serialize;

use super::{config, config_toml, ledger::Ledger, system_id};
use crate::host::{Host, HostPath, machine_id};

/// The app ID of this use of the machine id (made once with `systemd-id128 new`), so the hash
/// matches no other program's, nor berth's instance label or FleetLock id.
const APP_ID: [u8; 16] = [
    0x5b, 0x1e, 0x93, 0x0c, 0x7a, 0x42, 0x4f, 0x11, 0xa8, 0x36, 0x2d, 0xe4, 0x90, 0x6f, 0xb7, 0x25,
];

/// This machine, as berth's ledger records it: an HMAC keyed by the machine ID; `None` on a
/// machine without one (its system ID is random, `r_...`, and cannot have been copied from
/// the machine ID).
pub(crate) fn machine(host: &Host) -> Result<Option<String>> {
    Ok(system_id::machine_id(host)?.map(|id| machine_id::app_specific(&id, &APP_ID)))
}

/// True when the ledger says `system_id` was made on another machine than this one.
pub(crate) fn made_elsewhere(ledger: &Ledger, system_id: &str, here: Option<&str>) -> bool {
    match (ledger.system_ids.get(system_id), here) {
        (Some(recorded), Some(here)) => recorded != here,
        _ => false,
    }
}

/// Records in the ledger that the system ID beside `config` belongs to this machine.
pub(crate) fn remember(host: &Host, config: &HostPath) -> Result<()> {
    let (Some(id), Some(here)) = (system_id::read(host, config)?, machine(host)?) else {
        return Ok(());
    };
    Ledger::update(host, |ledger| {
        ledger.system_ids.insert(id, here);
    })
}

/// Replaces `copied`, the system ID beside `config` made on another machine, with one made
/// here, and records it in its place; returns it. Runners sharing one config.toml share its
/// system ID, so only the first of them finds it still copied: `None` for the rest.
pub(crate) fn regenerate(host: &Host, config: &HostPath, copied: &str) -> Result<Option<String>> {
    let here = machine(host)?;
    let current = system_id::read(host, config)?;
    if current.as_deref() != Some(copied)
        || !made_elsewhere(&Ledger::load(host)?, copied, here.as_deref())
    {
        return Ok(None);
    }
    let new = system_id::regenerate(host, config)?;
    Ledger::update(host, |ledger| {
        ledger.system_ids.shift_remove(copied);
    })?;
    remember(host, config)?;
    Ok(Some(new))
}

/// Records the system ID of every runner in the ledger that it does not know yet (a ledger an
/// older berth wrote), as made on this machine; called after an apply, under its lock, so a
/// host later cloned from this one is found. Writes only when something is new.
pub(crate) fn remember_unrecorded(host: &Host) -> Result<()> {
    let Some(here) = machine(host)? else {
        return Ok(());
    };
    let ledger = Ledger::load(host)?;
    let mut new = Vec::new();
    for recorded in ledger.runners.values() {
        if let Some(id) = system_id::read(host, &recorded.config)?
            && !ledger.system_ids.contains_key(&id)
            && !new.contains(&id)
        {
            new.push(id);
        }
    }
    if new.is_empty() {
        return Ok(());
    }
    Ledger::update(host, |ledger| {
        for id in new {
            ledger.system_ids.insert(id, here.clone());
        }
    })
}

/// One runner's identity and token lifetime, for status, the run report and the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Facts {
    pub runner: String,
    /// `.runner_system_id` beside its config.toml.
    pub system_id: Option<String>,
    /// `token_expires_at` of its entry; `None` when the token never expires (gitlab-runner
    /// writes Go's zero time then) or the entry has none.
    pub token_expires_at: Option<jiff::Timestamp>,
}

/// The facts of every runner in berth's ledger, read from the host.
pub(crate) fn facts(host: &Host) -> Result<Vec<Facts>> {
    let ledger = Ledger::load(host)?;
    let mut all = Vec::new();
    for (runner, recorded) in &ledger.runners {
        let expiry = config::read(host, &recorded.config)?.and_then(|(_, document)| {
            let index = config_toml::find(&document, runner)?;
            config_toml::entry_expiry(&document, index)
        });
        all.push(Facts {
            runner: runner.clone(),
            system_id: system_id::read(host, &recorded.config)?,
            token_expires_at: expiry,
        });
    }
    Ok(all)
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests build fixture trees beside the host layer"
)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_is_a_keyed_hash_never_the_id_and_a_different_one_is_found() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        assert_eq!(machine(&host).unwrap(), None);
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        let raw = "b08dfa6083e7567a1921a715000001fb";
        std::fs::write(root.path().join("etc/machine-id"), format!("{raw}\n")).unwrap();
        let first = machine(&host).unwrap().unwrap();
        // systemd's app-specific ID of this use: 32 hexadecimal digits, not the id.
        assert!(!first.contains(raw) && first.len() == 32, "{first}");
        assert_eq!(first, machine_id::app_specific(raw, &APP_ID));
        let mut ledger = Ledger::default();
        ledger
            .system_ids
            .insert("s_0123456789ab".into(), first.clone());
        assert!(!made_elsewhere(&ledger, "s_0123456789ab", Some(&first)));
        assert!(made_elsewhere(&ledger, "s_0123456789ab", Some("other")));
        assert!(!made_elsewhere(&ledger, "s_unrecorded01", Some("other")));
        assert!(!made_elsewhere(&ledger, "s_0123456789ab", None));
    }
}
