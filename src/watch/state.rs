//! What `berth watch` tells `status` and the metrics: that it runs (its pid), and how fast it
//! heals: `/var/lib/berth/watch.json`, rewritten after every converge it runs.

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::host::{Host, HostPath, host_path};

pub(crate) const PATH: &str = "/var/lib/berth/watch.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct WatchState {
    pub(crate) pid: u32,
    pub(crate) started_at: String,
    /// Converges run since start, healing or not.
    pub(crate) converges: u64,
    /// Converges that changed something: each a heal, timed from the first event to done.
    pub(crate) heals: u64,
    pub(crate) heal_seconds_sum: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_heal_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_heal_seconds: Option<f64>,
}

fn path() -> HostPath {
    host_path(PATH)
}

impl WatchState {
    pub(crate) fn started(pid: u32) -> Self {
        Self {
            pid,
            started_at: now(),
            ..Self::default()
        }
    }

    pub(crate) fn read(host: &Host) -> Result<Option<Self>> {
        let Some(text) = host.read_optional(&path())? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("`{}` is not valid", path()))
    }

    pub(crate) fn write(&self, host: &Host) -> Result<()> {
        host.write_json(&path(), self, 0o644)
    }

    /// Gone with the watcher: `status` then says it does not run.
    pub(crate) fn remove(host: &Host) -> Result<()> {
        host.remove_file(&path())
    }

    pub(crate) fn healed(&mut self, seconds: f64) {
        self.heals += 1;
        self.heal_seconds_sum += seconds;
        self.last_heal_at = Some(now());
        self.last_heal_seconds = Some(seconds);
    }

    /// True when the process that wrote this still runs.
    pub(crate) fn running(&self) -> bool {
        i32::try_from(self.pid)
            .is_ok_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
    }

    /// The lines node_exporter's textfile collector reads: a summary of heal latency.
    pub(crate) fn metrics(&self) -> String {
        let running = u8::from(self.running());
        let mut text = format!(
            "# HELP berth_watch_running Whether `berth watch` runs.\n# TYPE berth_watch_running gauge\nberth_watch_running {running}\n# HELP berth_heal_seconds From the first event of a drift to the host converged again.\n# TYPE berth_heal_seconds summary\nberth_heal_seconds_sum {:.3}\nberth_heal_seconds_count {}\n",
            self.heal_seconds_sum, self.heals
        );
        if let Some(seconds) = self.last_heal_seconds {
            text.push_str(&format!(
                "# HELP berth_last_heal_seconds How long the last heal took.\n# TYPE berth_last_heal_seconds gauge\nberth_last_heal_seconds {seconds:.3}\n"
            ));
        }
        text
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
