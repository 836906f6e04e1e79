//! The JSON documents berth prints with `--json` and keeps as its run report: a report's
//! changes with their status, its errors with their causes, and its summary. One shape for all
//! three places, so a monitoring script reads `plan --json`, `apply --json` and `last-run.json`
//! alike.

use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::{
    engine::{Report, Status},
    plan::Change,
};

/// Bumped when a field changes meaning or disappears; new fields do not bump it.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Each change with its status, as `--json`, the run report and `status` show them.
pub(crate) fn changes(report: &Report) -> Vec<Json> {
    #[derive(Serialize)]
    struct EntryJson<'a> {
        #[serde(flatten)]
        change: &'a Change,
        status: Status,
    }
    report
        .entries
        .iter()
        .map(|entry| {
            serde_json::to_value(EntryJson {
                change: &entry.change,
                status: entry.status,
            })
            .expect("a change serializes")
        })
        .collect()
}

pub(crate) fn errors(report: &Report) -> Vec<Json> {
    report
        .failures
        .iter()
        .map(|failure| error(Some(&failure.id.to_string()), &failure.error))
        .collect()
}

pub(crate) fn summary(report: &Report) -> Json {
    let summary = report.summary();
    json!({
        "add": summary.add,
        "change": summary.change,
        "destroy": summary.destroy,
        "refused": report.refused(),
        "failed": report.failures.len(),
    })
}

/// An error as JSON: its message, the causes beneath it, and the resource it belongs to.
pub(crate) fn error(id: Option<&str>, error: &anyhow::Error) -> Json {
    let mut chain = error.chain().map(ToString::to_string);
    let message = chain.next().unwrap_or_default();
    let mut value = json!({ "message": message, "causes": chain.collect::<Vec<_>>() });
    if let Some(id) = id {
        value["id"] = Json::from(id);
    }
    value
}
