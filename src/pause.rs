//! `berth pause "reason"` and `berth resume`, as `puppet agent --disable "why"`: while
//! `/var/lib/berth/paused.json` exists, `apply` (and each converge of `watch`) changes nothing
//! and says who paused the host, why and when; `plan`, `status` and the metrics say it too.
//! Nothing here looks at what berth manages.

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::host::{Host, HostPath, host_path};

pub(crate) const PATH: &str = "/var/lib/berth/paused.json";

fn path() -> HostPath {
    host_path(PATH)
}

/// Who paused berth on this host, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pause {
    pub reason: String,
    /// The operator: `SUDO_USER` (who ran `sudo berth pause`), else `USER`, else `uid N`.
    pub by: String,
    /// RFC 3339, UTC.
    pub at: String,
}

impl Pause {
    /// A pause by the user running berth, now.
    pub(crate) fn now(reason: &str) -> Self {
        let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let by = variable("SUDO_USER")
            .or_else(|| variable("USER"))
            .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()));
        Self {
            reason: reason.trim().to_owned(),
            by,
            at: jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        }
    }

    /// The pause in force; `None` when berth is not paused.
    pub(crate) fn read(host: &Host) -> Result<Option<Self>> {
        let Some(text) = host.read_optional(&path())? else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).with_context(|| {
            format!(
                "`{}` is not a berth pause (remove it with `berth resume`)",
                path()
            )
        })
    }

    pub(crate) fn write(&self, host: &Host) -> Result<()> {
        host.write_json(&path(), self, 0o644)
    }

    /// Ends the pause; true when there was one.
    pub(crate) fn remove(host: &Host) -> Result<bool> {
        if !host.exists(&path()) {
            return Ok(false);
        }
        host.remove_file(&path())?;
        Ok(true)
    }

    /// `paused by alice since 2026-12-01T14:00:00Z (5 min ago): kernel upgrade`.
    pub(crate) fn describe(&self) -> String {
        let ago = self
            .at
            .parse::<jiff::Timestamp>()
            .map(|at| {
                format!(
                    " ({})",
                    crate::output::time::ago(jiff::Timestamp::now().duration_since(at).as_secs())
                )
            })
            .unwrap_or_default();
        format!(
            "paused by {} since {}{ago}: {}",
            self.by, self.at, self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_round_trips_and_resume_ends_it() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path().to_path_buf());
        assert_eq!(Pause::read(&host).unwrap(), None);
        let pause = Pause::now("  kernel upgrade\n");
        pause.write(&host).unwrap();
        let read = Pause::read(&host).unwrap().unwrap();
        assert_eq!(read.reason, "kernel upgrade");
        assert!(!read.by.is_empty());
        assert!(
            read.describe().ends_with("ago): kernel upgrade"),
            "{}",
            read.describe()
        );
        assert!(Pause::remove(&host).unwrap());
        assert!(!Pause::remove(&host).unwrap());
        assert_eq!(Pause::read(&host).unwrap(), None);
    }
}
