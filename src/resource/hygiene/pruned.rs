//! What berth pruned of each daemon, ever: `/var/lib/berth/hygiene-pruned.json`, the counter
//! behind `berth_pruned_bytes_total{daemon,what}`. Added to after each removal, so a run killed
//! midway has counted what it removed.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};

use crate::host::{Host, host_path};

pub(crate) const PRUNED: &str = "/var/lib/berth/hygiene-pruned.json";

/// Daemon → what (`images`, `volumes`, `build_cache`) → bytes.
pub(crate) type PrunedTotals = BTreeMap<String, BTreeMap<String, u64>>;

/// Every daemon's totals; none before the first prune.
pub(crate) fn totals(host: &Host) -> Result<PrunedTotals> {
    let path = host_path(PRUNED);
    match host.read_optional(&path)? {
        Some(text) => serde_json::from_str(&text)
            .with_context(|| format!("`{path}` is not berth's record of what it pruned")),
        None => Ok(PrunedTotals::new()),
    }
}

/// Adds `bytes` pruned of `daemon` as `what`.
pub(super) fn add(host: &Host, daemon: &str, what: &str, bytes: u64) -> Result<()> {
    // A record that does not parse starts again rather than stopping the prune.
    let mut all = totals(host).unwrap_or_default();
    let total = all
        .entry(daemon.to_owned())
        .or_default()
        .entry(what.to_owned())
        .or_default();
    *total = total.saturating_add(bytes);
    host.write_json(&host_path(PRUNED), &all, 0o644)
}
