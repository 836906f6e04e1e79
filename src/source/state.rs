//! What berth keeps of its source between runs, in `/var/lib/berth/source.json` (root's,
//! 0600): the last commit applied (the one a refused or unreachable ref falls back to), the
//! ref's head at the last fetch, the refusal in force, and the fetch failures counted so far.
//! Never a token: the URL is kept as `[source]` writes it, which holds no credentials.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::host::{Host, host_path};

pub(super) const STATE: &str = "/var/lib/berth/source.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct State {
    /// The repository these commits came from: a new `git` starts over.
    pub url: String,
    /// The last commit a run converged to (verified when it was applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Commit>,
    /// The ref's head at the last fetch that succeeded, verified or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Commit>,
    /// Why the ref's head is not applied, while it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<super::Refused>,
    /// Fetches that failed, counted across runs (a Prometheus counter).
    #[serde(default)]
    pub fetch_failures_total: u64,
}

/// A commit and what berth knows of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Commit {
    pub commit: String,
    /// Committer time, Unix seconds.
    pub committed_at: i64,
    /// The allowed-signers principal that signed it, once verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}

impl State {
    pub(super) fn read(host: &Host, url: &str) -> Result<Self> {
        let path = host_path(STATE);
        let Some(text) = host.read_optional(&path)? else {
            return Ok(Self::fresh(url));
        };
        let state: Self = serde_json::from_str(&text)
            .with_context(|| format!("`{path}` is not berth's source state"))?;
        if state.url != url {
            // Commits of another repository say nothing of this one's history.
            return Ok(Self {
                fetch_failures_total: state.fetch_failures_total,
                ..Self::fresh(url)
            });
        }
        Ok(state)
    }

    fn fresh(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            ..Self::default()
        }
    }

    pub(super) fn write(&self, host: &Host) -> Result<()> {
        host.write_json(&host_path(STATE), self, 0o600)
    }
}
