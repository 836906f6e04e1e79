//! berth's ledger of runners: `/var/lib/berth/state.json`, mode 0600.
//!
//! It records every runner berth registered, created or adopted: its name, GitLab URL, id, how
//! berth got its token, and a fingerprint of that token, never the token. The ledger is how
//! `plan` knows what is registered without asking GitLab, how a token change is found, and what
//! makes a runner berth's to remove: an entry of config.toml that is not in the ledger is never
//! touched. A ledger berth cannot read is an error, never silently replaced, since losing it
//! would make berth forget what it owns.

use anyhow::{Context as _, Result, bail};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::{
    host::{Host, HostPath, host_path},
    secret::Fingerprint,
};

/// Where the ledger lives.
pub(crate) const PATH: &str = "/var/lib/berth/state.json";

/// Bumped when a field changes meaning.
const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Ledger {
    #[serde(default)]
    pub schema_version: u32,
    /// By runner name, in the order berth recorded them.
    #[serde(default)]
    pub runners: IndexMap<String, Recorded>,
    /// By `.runner_system_id` berth wrote or verified with: the machine it was made on, as
    /// `identity::machine` hashes it (never the machine ID itself). A system ID found on
    /// another machine was copied there, and is made anew.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub system_ids: IndexMap<String, String>,
}

/// One runner berth answers for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Recorded {
    pub url: String,
    /// GitLab's runner id.
    pub id: i64,
    pub source: Origin,
    /// Of the token berth was given (glrt- token file) or got from GitLab (registered,
    /// created). For a verified runner it tells when the operator put a new token in place;
    /// gitlab-runner rotating its own token later does not change it.
    pub token_fingerprint: Fingerprint,
    /// gitlab-runner's config.toml holding the runner's entry (and token).
    pub config: HostPath,
    /// Delete the runner in GitLab when it leaves the profile.
    #[serde(default)]
    pub delete_on_remove: bool,
    /// The CA file trusted for this GitLab, still needed to unregister after the runner left
    /// the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<HostPath>,
}

/// How berth came to answer for a runner; decides what removal does in GitLab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Origin {
    /// A glrt- token from `token_file`, verified with `POST /runners/verify`. On removal only
    /// this host's runner manager goes; the runner was created in GitLab and stays there.
    Verified,
    /// berth registered it with a registration token (`POST /runners`). Deleted on removal.
    Registered,
    /// berth created it (`POST /user/runners`). Deleted on removal.
    Created,
    /// An entry already in config.toml when the profile declared it; berth made no call. On
    /// removal only the entry goes, unless `delete_on_remove`.
    Adopted,
}

impl Origin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Registered => "registered",
            Self::Created => "created",
            Self::Adopted => "adopted",
        }
    }
}

pub(crate) fn path() -> HostPath {
    host_path(PATH)
}

impl Ledger {
    /// Reads the ledger; an absent one is empty.
    pub(crate) fn load(host: &Host) -> Result<Self> {
        let path = path();
        let Some(text) = host.read_optional(&path)? else {
            return Ok(Self::default());
        };
        let ledger: Self = serde_json::from_str(&text).with_context(|| {
            format!("berth's ledger `{path}` is not valid; berth will not overwrite it: fix or remove it by hand (it lists the runners berth registered)")
        })?;
        if ledger.schema_version > SCHEMA_VERSION {
            bail!(
                "berth's ledger `{path}` was written by a newer berth (schema {}); this one reads schema {SCHEMA_VERSION}",
                ledger.schema_version
            );
        }
        Ok(ledger)
    }

    /// Writes the ledger atomically, mode 0600 in a 0700 directory.
    pub(crate) fn save(&self, host: &Host) -> Result<()> {
        let mut ledger = self.clone();
        ledger.schema_version = SCHEMA_VERSION;
        host.write_json(&path(), &ledger, 0o600)
    }

    /// Loads, changes and saves the ledger in one step.
    pub(crate) fn update(host: &Host, change: impl FnOnce(&mut Self)) -> Result<()> {
        let mut ledger = Self::load(host)?;
        change(&mut ledger);
        ledger.save(host)
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests build fixture trees beside the host layer"
)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_round_trips_with_mode_0600_and_holds_no_token() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        assert_eq!(Ledger::load(&host).unwrap(), Ledger::default());
        let token = "glrt-secret-value";
        Ledger::update(&host, |ledger| {
            ledger.runners.insert(
                "r".into(),
                Recorded {
                    url: "https://g.example".into(),
                    id: 7,
                    source: Origin::Verified,
                    token_fingerprint: Fingerprint::of(token),
                    config: host_path("/srv/gitlab-runner/config.toml"),
                    delete_on_remove: false,
                    tls_ca_file: None,
                },
            );
        })
        .unwrap();
        let loaded = Ledger::load(&host).unwrap();
        assert_eq!(loaded.runners["r"].id, 7);
        assert_eq!(loaded.runners["r"].source, Origin::Verified);
        let text = std::fs::read_to_string(root.path().join("var/lib/berth/state.json")).unwrap();
        assert!(!text.contains(token));
        assert!(text.contains("\"source\": \"verified\""), "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &str| {
            std::fs::metadata(root.path().join(path))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("var/lib/berth/state.json"), 0o600);
        assert_eq!(mode("var/lib/berth"), 0o700);
    }

    #[test]
    fn an_unreadable_ledger_is_an_error_not_a_fresh_start() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        std::fs::create_dir_all(root.path().join("var/lib/berth")).unwrap();
        std::fs::write(root.path().join("var/lib/berth/state.json"), "{ broken").unwrap();
        let error = Ledger::load(&host).unwrap_err();
        assert!(
            format!("{error:#}").contains("will not overwrite it"),
            "{error:#}"
        );
    }
}
