//! What the last `berth apply` did, kept for `berth status` and for monitoring: the run report
//! `<root>/var/lib/berth/last-run.json` and, when configured, a node_exporter textfile with the
//! same facts as metrics. Both are written atomically, so a reader never sees half a file.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::{
    engine::Report,
    host::{Host, HostPath, host_path},
    output::json,
};

pub(crate) const LAST_RUN: &str = "/var/lib/berth/last-run.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LastRun {
    pub schema_version: u32,
    pub berth_version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_seconds: f64,
    pub profiles: Vec<String>,
    /// Everything converged.
    pub success: bool,
    /// The host differed from its profiles when the run started.
    pub drift_detected: bool,
    /// Each change made, failed or skipped, as `apply --json` shows it.
    pub changes: Vec<Json>,
    pub errors: Vec<Json>,
    pub summary: Json,
    /// Changes made, by resource kind; every kind the profiles declare appears, with 0.
    pub changes_by_kind: BTreeMap<String, u64>,
    /// RFC 3339, UTC: when the last apply that converged started, this one or an earlier one;
    /// absent while none has. Carried over a failed run, so monitoring can tell how long a
    /// host has been failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    /// Each runner berth answers for, as the host held it after the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runners: Vec<RunnerReport>,
    /// `[fleet]` only: what waits for a slot, and whether this host holds one after the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::fleet::FleetRun>,
    /// `[source]` only: the commit converged to and what is known of the ref.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::source::SourceRun>,
    /// `[hygiene]` only: each daemon's free space and what berth pruned of it, ever.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskReport>,
}

/// One daemon's disk, as `[hygiene]` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DiskReport {
    /// `host`, or the dind container's name.
    pub daemon: String,
    /// Free bytes on the filesystem of its data root, when this run measured them.
    pub free_bytes: Option<u64>,
    /// Bytes berth pruned of it, ever (as Docker counted them before removal), by what:
    /// `images`, `volumes`, `build_cache`.
    pub pruned_bytes: BTreeMap<String, u64>,
}

/// One runner's identity and token lifetime after the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunnerReport {
    pub runner: String,
    /// Its `.runner_system_id`; `None` while there is none.
    pub system_id: Option<String>,
    /// RFC 3339, UTC; `None` when the token never expires.
    pub token_expires_at: Option<jiff::Timestamp>,
}

impl LastRun {
    /// A run that changed nothing and found nothing wrong; the constructors below fill in
    /// what happened.
    fn new(started: jiff::Timestamp, duration: Duration, profiles: &[String]) -> Self {
        Self {
            schema_version: json::SCHEMA_VERSION,
            berth_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: started.to_string(),
            duration_seconds: duration.as_secs_f64(),
            profiles: profiles.to_vec(),
            success: true,
            drift_detected: false,
            changes: Vec::new(),
            errors: Vec::new(),
            summary: serde_json::json!({"add": 0, "change": 0, "destroy": 0, "refused": 0, "failed": 0}),
            changes_by_kind: BTreeMap::new(),
            last_success_at: None,
            runners: Vec::new(),
            fleet: None,
            source: None,
            disks: Vec::new(),
        }
    }

    /// The report with what `[source]` gave the run.
    pub(crate) fn with_source(mut self, source: Option<crate::source::SourceRun>) -> Self {
        self.source = source;
        self
    }

    /// This run's report with the last success filled in: this run if it converged, else
    /// what the previous report knew (a report older than the field: its own run, if it
    /// converged).
    pub(crate) fn after(mut self, previous: Option<&LastRun>) -> Self {
        self.last_success_at = if self.success {
            Some(self.started_at.clone())
        } else {
            previous.and_then(|previous| {
                previous
                    .last_success_at
                    .clone()
                    .or_else(|| previous.success.then(|| previous.started_at.clone()))
            })
        };
        self
    }

    /// The report of a run that got as far as the engine.
    pub(crate) fn from_report(
        report: &Report,
        started: jiff::Timestamp,
        duration: Duration,
        profiles: &[String],
        kinds: impl IntoIterator<Item = String>,
        fleet: Option<crate::fleet::FleetRun>,
    ) -> Self {
        let mut changes_by_kind: BTreeMap<String, u64> =
            kinds.into_iter().map(|kind| (kind, 0)).collect();
        for entry in &report.entries {
            if entry.status == crate::engine::Status::Done {
                *changes_by_kind
                    .entry(entry.change.id.kind.as_str().to_owned())
                    .or_default() += 1;
            }
        }
        Self {
            success: !report.failed(),
            drift_detected: report.has_changes(),
            changes: json::changes(report),
            errors: json::errors(report),
            summary: json::summary(report),
            changes_by_kind,
            fleet,
            ..Self::new(started, duration, profiles)
        }
    }

    /// The report of a run that failed before it looked at the host (a profile error).
    pub(crate) fn from_error(
        error: &anyhow::Error,
        started: jiff::Timestamp,
        duration: Duration,
        profiles: &[String],
    ) -> Self {
        Self {
            success: false,
            errors: vec![json::error(None, error)],
            summary: serde_json::json!({"add": 0, "change": 0, "destroy": 0, "refused": 0, "failed": 1}),
            ..Self::new(started, duration, profiles)
        }
    }

    pub(crate) fn started(&self) -> Option<jiff::Timestamp> {
        self.started_at.parse().ok()
    }

    pub(crate) fn write(&self, host: &Host) -> Result<()> {
        host.write_json(&host_path(LAST_RUN), self, 0o600)
    }

    /// The last run's report; `None` when berth has not applied on this host yet.
    pub(crate) fn read(host: &Host) -> Result<Option<Self>> {
        let path = host_path(LAST_RUN);
        let Some(text) = host.read_optional(&path)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("`{path}` is not a berth run report"))
    }

    /// The report as node_exporter textfile metrics.
    pub(crate) fn metrics(&self) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let started = self
            .started()
            .map_or(0.0, |started| started.as_millisecond() as f64 / 1000.0);
        let flag = |yes: bool| if yes { "1" } else { "0" }.to_owned();
        gauge(
            "berth_last_run_timestamp_seconds",
            "Unix time at which the last berth apply started.",
            &[(String::new(), format_float(started))],
        );
        gauge(
            "berth_last_run_success",
            "1 when the last berth apply converged the host, 0 when something failed.",
            &[(String::new(), flag(self.success))],
        );
        gauge(
            "berth_last_run_duration_seconds",
            "How long the last berth apply took.",
            &[(String::new(), format_float(self.duration_seconds))],
        );
        let by_kind: Vec<_> = self
            .changes_by_kind
            .iter()
            .map(|(kind, count)| {
                (
                    format!("{{kind=\"{}\"}}", escape_label(kind)),
                    count.to_string(),
                )
            })
            .collect();
        gauge(
            "berth_changes",
            "Changes the last berth apply made, by resource kind.",
            &by_kind,
        );
        gauge(
            "berth_drift_detected",
            "1 when the last berth apply found the host differing from its profiles.",
            &[(String::new(), flag(self.drift_detected))],
        );
        let last_success = self
            .last_success_at
            .as_deref()
            .and_then(|text| text.parse::<jiff::Timestamp>().ok())
            .map_or(0.0, |at| at.as_millisecond() as f64 / 1000.0);
        gauge(
            "berth_last_success_timestamp_seconds",
            "Unix time at which the last berth apply that converged the host started; 0 while none has.",
            &[(String::new(), format_float(last_success))],
        );
        let (info, expiry) = runner_samples(&self.runners);
        gauge(
            "berth_runner_info",
            "Each runner berth answers for, with the system ID this host presents to GitLab.",
            &info,
        );
        gauge(
            "berth_runner_token_expiry_timestamp_seconds",
            "Unix time at which the runner's authentication token expires (token_expires_at); absent for a token that never expires.",
            &expiry,
        );
        gauge(
            "berth_disk_free_bytes",
            "Free bytes on the filesystem of each daemon's data root ([hygiene]).",
            &disk_free_samples(&self.disks),
        );
        gauge(
            "berth_build_info",
            "The berth that wrote these metrics: its version and the commit it was built from.",
            &[(
                format!(
                    "{{version=\"{}\",commit=\"{}\"}}",
                    escape_label(env!("CARGO_PKG_VERSION")),
                    escape_label(env!("BERTH_COMMIT"))
                ),
                "1".to_owned(),
            )],
        );
        out.push_str(&pruned_counter(&self.disks));
        out
    }
}

/// Writes to `path` (a node_exporter textfile, e.g.
/// `/var/lib/prometheus/node-exporter/berth.prom`) the last run's [`LastRun::metrics`] (when berth has applied here), `berth watch`'s
/// (when it has run here) and `berth_paused` to `path`.
pub(crate) fn write_metrics(
    host: &Host,
    last_run: Option<&LastRun>,
    path: &HostPath,
) -> Result<()> {
    let mut text = last_run.map(LastRun::metrics).unwrap_or_default();
    if let Ok(Some(watch)) = crate::watch::state::WatchState::read(host) {
        text.push_str(&watch.metrics());
    }
    if let Some(source) = last_run.and_then(|run| run.source.as_ref()) {
        text.push_str(&source.metrics());
    }
    if let Some(fleet) = last_run.and_then(|run| run.fleet.as_ref()) {
        // The slot from berth's state, not the run: a release by hand shows at once.
        let held = crate::fleet::SlotHeld::read(host)?.is_some();
        let _ = writeln!(
            text,
            "# HELP berth_fleet_waiting 1 while disruptive steps wait for a fleet slot.\n# TYPE berth_fleet_waiting gauge\nberth_fleet_waiting {}",
            u8::from(!fleet.waiting.is_empty())
        );
        let _ = writeln!(
            text,
            "# HELP berth_fleet_slot_held 1 while this host holds a fleet slot.\n# TYPE berth_fleet_slot_held gauge\nberth_fleet_slot_held {}",
            u8::from(held)
        );
    }
    let paused = crate::pause::Pause::read(host)?.is_some();
    let _ = writeln!(
        text,
        "# HELP berth_paused 1 while `berth pause` keeps apply from changing anything.\n# TYPE berth_paused gauge\nberth_paused {}",
        u8::from(paused)
    );
    // The textfile directory is often the exporter's user's: a link planted there is refused.
    if let Some(directory) = path.parent() {
        host.distrust(&directory);
    }
    host.write_atomic(path, text.as_bytes(), 0o644)
}

type Samples = Vec<(String, String)>;

/// The runners' samples: `berth_runner_info` for each with a system ID, and the token expiry
/// for each whose token expires.
fn runner_samples(runners: &[RunnerReport]) -> (Samples, Samples) {
    let info = runners
        .iter()
        .filter_map(|runner| {
            let system_id = runner.system_id.as_deref()?;
            Some((
                format!(
                    "{{runner=\"{}\",system_id=\"{}\"}}",
                    escape_label(&runner.runner),
                    escape_label(system_id)
                ),
                "1".to_owned(),
            ))
        })
        .collect();
    let expiry = runners
        .iter()
        .filter_map(|runner| {
            let at = runner.token_expires_at?;
            Some((
                format!("{{runner=\"{}\"}}", escape_label(&runner.runner)),
                at.as_second().to_string(),
            ))
        })
        .collect();
    (info, expiry)
}

/// `berth_disk_free_bytes{daemon}` of each daemon measured.
fn disk_free_samples(disks: &[DiskReport]) -> Samples {
    disks
        .iter()
        .filter_map(|disk| {
            Some((
                format!("{{daemon=\"{}\"}}", escape_label(&disk.daemon)),
                disk.free_bytes?.to_string(),
            ))
        })
        .collect()
}

/// `berth_pruned_bytes_total{daemon,what}`: a counter, kept across runs in berth's state.
fn pruned_counter(disks: &[DiskReport]) -> String {
    if disks.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "# HELP berth_pruned_bytes_total Bytes [hygiene] pruned of each daemon, by what.\n# TYPE berth_pruned_bytes_total counter\n",
    );
    for disk in disks {
        for (what, bytes) in &disk.pruned_bytes {
            let _ = writeln!(
                out,
                "berth_pruned_bytes_total{{daemon=\"{}\",what=\"{}\"}} {bytes}",
                escape_label(&disk.daemon),
                escape_label(what)
            );
        }
    }
    out
}

fn format_float(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LastRun {
        LastRun {
            schema_version: 1,
            berth_version: "0.1.0".into(),
            started_at: "2026-11-23T18:31:02.5Z".into(),
            duration_seconds: 3.25,
            profiles: vec!["dind".into()],
            success: true,
            drift_detected: true,
            changes: Vec::new(),
            errors: Vec::new(),
            summary: serde_json::json!({}),
            changes_by_kind: [("container".to_owned(), 2), ("daemon-config".to_owned(), 0)].into(),
            last_success_at: None,
            runners: Vec::new(),
            fleet: None,
            source: None,
            disks: Vec::new(),
        }
    }

    #[test]
    fn each_hygiene_daemon_has_its_free_space_and_a_pruned_counter() {
        let run = LastRun {
            disks: vec![DiskReport {
                daemon: "gitlab-dind".into(),
                free_bytes: Some(1_000),
                pruned_bytes: [("images".to_owned(), 42)].into(),
            }],
            ..sample()
        };
        let metrics = run.metrics();
        assert!(
            metrics.contains("berth_disk_free_bytes{daemon=\"gitlab-dind\"} 1000\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("# TYPE berth_pruned_bytes_total counter\nberth_pruned_bytes_total{daemon=\"gitlab-dind\",what=\"images\"} 42\n"),
            "{metrics}"
        );
        assert!(!sample().metrics().contains("berth_pruned_bytes_total"));
    }

    #[test]
    fn metrics_are_node_exporter_textfile_gauges() {
        let metrics = sample().metrics();
        assert!(metrics.contains("# TYPE berth_last_run_timestamp_seconds gauge\nberth_last_run_timestamp_seconds 1795458662.5\n"), "{metrics}");
        assert!(metrics.contains("berth_last_run_success 1\n"));
        assert!(metrics.contains("berth_last_run_duration_seconds 3.25\n"));
        assert!(metrics.contains(
            "berth_changes{kind=\"container\"} 2\nberth_changes{kind=\"daemon-config\"} 0\n"
        ));
        assert!(metrics.contains("berth_drift_detected 1\n"));
    }

    #[test]
    fn the_last_success_survives_a_failed_run() {
        let converged = sample().after(None);
        assert_eq!(
            converged.last_success_at.as_deref(),
            Some("2026-11-23T18:31:02.5Z")
        );
        let failed = LastRun {
            success: false,
            started_at: "2026-11-23T18:46:02Z".into(),
            ..sample()
        }
        .after(Some(&converged));
        assert_eq!(failed.last_success_at, converged.last_success_at);
        let metrics = failed.metrics();
        assert!(metrics.contains("berth_last_run_success 0\n"), "{metrics}");
        assert!(
            metrics.contains("berth_last_success_timestamp_seconds 1795458662.5\n"),
            "{metrics}"
        );
        // A report written before the field existed still counts, when it converged.
        let older = LastRun {
            last_success_at: None,
            ..converged
        };
        let failed_again = LastRun {
            success: false,
            ..sample()
        }
        .after(Some(&older));
        assert_eq!(failed_again.last_success_at, older.started_at.into());
    }

    #[test]
    fn a_host_that_never_converged_has_no_last_success() {
        let failed = LastRun {
            success: false,
            ..sample()
        }
        .after(None);
        assert!(
            failed
                .metrics()
                .contains("berth_last_success_timestamp_seconds 0\n")
        );
    }

    #[test]
    fn each_runner_has_its_system_id_and_token_expiry_as_metrics() {
        let run = LastRun {
            runners: vec![
                RunnerReport {
                    runner: "docker".into(),
                    system_id: Some("s_0123456789ab".into()),
                    token_expires_at: Some("2031-01-02T03:04:05Z".parse().unwrap()),
                },
                RunnerReport {
                    runner: "never".into(),
                    system_id: None,
                    token_expires_at: None,
                },
            ],
            ..sample()
        };
        let metrics = run.metrics();
        assert!(
            metrics
                .contains("berth_runner_info{runner=\"docker\",system_id=\"s_0123456789ab\"} 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                "berth_runner_token_expiry_timestamp_seconds{runner=\"docker\"} 1925089445\n"
            ),
            "{metrics}"
        );
        assert!(!metrics.contains("runner=\"never\""), "{metrics}");
        let read: LastRun = serde_json::from_str(&serde_json::to_string(&run).unwrap()).unwrap();
        assert_eq!(read, run);
    }

    #[test]
    fn build_info_names_the_version_and_commit() {
        let metrics = sample().metrics();
        let line = format!(
            "berth_build_info{{version=\"{}\",commit=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION"),
            env!("BERTH_COMMIT")
        );
        assert!(metrics.contains(&line), "{metrics}");
    }
}
