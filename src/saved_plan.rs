//! A plan saved by `berth plan --out FILE` and carried out by `berth apply FILE`, as Terraform's
//! `plan -out` and `apply PLANFILE`: the changes a person reviewed, the profiles and flags they
//! came from, and a fingerprint of everything the plan observed. `apply FILE` plans again and
//! goes ahead only when it observes the same and plans the same; otherwise it changes nothing.
//!
//! What "observed" covers (see [`Observation`]): the text of every profile layer; every file
//! read through `Host` outside `/proc` and `/sys` (daemon.json, the docker unit, config.toml,
//! berth's ledger and journal, ...); for every Docker object the profile names, its identity
//! (ID, creation time, state and start time, health, the spec hash berth stamped, its
//! networks); the daemon's version, storage and logging drivers, mirrors; and the planned
//! changes themselves, which carry what the kernel and GitLab answered. Nothing here holds a
//! secret: files are digests, changes are as `plan` prints them.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::{host::FileReads, profile::ProfileRef, resource::Options};

/// Bumped when a saved plan's fields change meaning: a plan from another berth is refused.
const PLAN_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedPlan {
    schema_version: u32,
    berth_version: String,
    created_at: String,
    /// The profiles, as `apply FILE` reads them again (relative paths made absolute).
    pub(crate) profiles: Vec<ProfileRef>,
    pub(crate) adopt: bool,
    pub(crate) allow_storage_driver_change: bool,
    /// `--keep-orphans`: the plan left what the profiles no longer declare in place.
    #[serde(default)]
    pub(crate) keep_orphans: bool,
    /// sha256 over `observed` and `changes`: two plans with the same fingerprint saw and
    /// planned the same.
    fingerprint: String,
    observed: Observation,
    /// Each change as `plan --json` prints it.
    pub(crate) changes: Vec<Json>,
}

/// What one plan observed, as digests and identities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Observation {
    /// Each layer's file name and the sha256 of its text, in layering order.
    pub(crate) layers: Vec<(String, String)>,
    /// Host path → sha256 of the file when it was read, `null` when it did not exist.
    pub(crate) files: FileReads,
    /// `container/NAME`, `network/NAME`, `image/REF`, `daemon` → what identifies its state.
    pub(crate) docker: BTreeMap<String, Json>,
}

impl SavedPlan {
    pub(crate) fn new(
        profiles: Vec<ProfileRef>,
        options: &Options,
        observed: Observation,
        changes: Vec<Json>,
    ) -> Self {
        Self {
            schema_version: PLAN_SCHEMA_VERSION,
            berth_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: jiff::Timestamp::now().to_string(),
            profiles,
            adopt: options.adopt,
            allow_storage_driver_change: options.allow_storage_driver_change,
            keep_orphans: options.keep_orphans,
            fingerprint: fingerprint(&observed, &changes),
            observed,
            changes,
        }
    }

    pub(crate) fn options(&self) -> Options {
        Options {
            allow_storage_driver_change: self.allow_storage_driver_change,
            adopt: self.adopt,
            keep_orphans: self.keep_orphans,
            sandboxed: false,
        }
    }

    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a plan serializes") + "\n";
        crate::host::write_local(path, &text)
    }

    pub(crate) fn read(path: &Path) -> Result<Self> {
        let (text, _) = crate::host::read_local(path, crate::host::SAVED_PLAN_LIMIT)?;
        let plan: Self = serde_json::from_str(&text).with_context(|| {
            format!(
                "`{}` is not a plan saved by `berth plan --out`",
                path.display()
            )
        })?;
        if plan.schema_version != PLAN_SCHEMA_VERSION {
            bail!(
                "`{}` was saved by berth {} in a format this berth does not read (schema {}, expected {PLAN_SCHEMA_VERSION}); run `berth plan --out` again",
                path.display(),
                plan.berth_version,
                plan.schema_version
            );
        }
        Ok(plan)
    }

    /// When the plan was made, for the message that applies it.
    pub(crate) fn created_at(&self) -> &str {
        &self.created_at
    }

    /// What differs between this plan and one made now, each as a sentence; empty when the
    /// host and the profiles are as this plan saw them and the same changes are planned.
    pub(crate) fn differences(&self, now: &Observation, changes: &[Json]) -> Vec<String> {
        let mut differences = Vec::new();
        let then = &self.observed;
        let layer_names = |layers: &[(String, String)]| -> Vec<String> {
            layers.iter().map(|(name, _)| name.clone()).collect()
        };
        if layer_names(&then.layers) != layer_names(&now.layers) {
            differences.push(format!(
                "the profiles are not the same layers: the plan was made from {}, now {}",
                layer_names(&then.layers).join(", "),
                layer_names(&now.layers).join(", ")
            ));
        } else {
            for ((name, before), (_, after)) in then.layers.iter().zip(&now.layers) {
                if before != after {
                    differences.push(format!("the profile `{name}` was edited"));
                }
            }
        }
        for (path, before, after) in changed_entries(&then.files, &now.files) {
            let what = match (before, after) {
                (Some(Some(_)), Some(None) | None) => "was removed",
                (Some(None) | None, Some(Some(_))) => "was created",
                _ => "was changed",
            };
            differences.push(format!("`{path}` {what}"));
        }
        for (name, before, after) in changed_entries(&then.docker, &now.docker) {
            let what = match (before, after) {
                (Some(Json::Null) | None, Some(value)) if !value.is_null() => "was created",
                (Some(value), Some(Json::Null) | None) if !value.is_null() => "was removed",
                _ => "changed (recreated, stopped, started or restarted)",
            };
            differences.push(format!("{name} {what}"));
        }
        if differences.is_empty() && self.changes != changes {
            differences.push(
                "the changes planned now differ from the saved ones (the host changed where berth reads it afresh, such as the kernel or GitLab)"
                    .to_owned(),
            );
        }
        differences
    }
}

/// The keys whose values differ between two maps, with both sides (`None`: not in that map).
fn changed_entries<'a, V: PartialEq>(
    then: &'a BTreeMap<String, V>,
    now: &'a BTreeMap<String, V>,
) -> Vec<(&'a str, Option<&'a V>, Option<&'a V>)> {
    let mut keys: Vec<&String> = then.keys().chain(now.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let (before, after) = (then.get(key), now.get(key));
            (before != after).then_some((key.as_str(), before, after))
        })
        .collect()
}

fn fingerprint(observed: &Observation, changes: &[Json]) -> String {
    let document = serde_json::json!({"observed": observed, "changes": changes});
    let bytes = serde_json::to_vec(&document).expect("serializes");
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation() -> Observation {
        Observation {
            layers: vec![("dind (embedded)".into(), "aa".into())],
            files: BTreeMap::from([
                ("/etc/docker/daemon.json".into(), Some("11".into())),
                ("/var/lib/berth/journal.json".into(), None),
            ]),
            docker: BTreeMap::from([(
                "container/gitlab-runner".into(),
                serde_json::json!({"/Id": "c1", "/State/StartedAt": "t1"}),
            )]),
        }
    }

    fn saved() -> SavedPlan {
        SavedPlan::new(
            vec![ProfileRef::Name("dind".into())],
            &Options::default(),
            observation(),
            vec![serde_json::json!({"id": "daemon-config", "action": "update"})],
        )
    }

    #[test]
    fn the_same_host_and_profiles_make_no_difference() {
        let plan = saved();
        assert_eq!(
            plan.differences(&observation(), &plan.changes),
            Vec::<String>::new()
        );
    }

    #[test]
    fn each_difference_is_named() {
        let plan = saved();
        let mut now = observation();
        now.layers[0].1 = "bb".into();
        now.files
            .insert("/etc/docker/daemon.json".into(), Some("22".into()));
        now.files
            .insert("/var/lib/berth/journal.json".into(), Some("33".into()));
        now.docker.insert(
            "container/gitlab-runner".into(),
            serde_json::json!({"/Id": "c1", "/State/StartedAt": "t2"}),
        );
        now.docker
            .insert("network/ci".into(), serde_json::json!({"/Id": "n1"}));
        assert_eq!(
            plan.differences(&now, &plan.changes),
            [
                "the profile `dind (embedded)` was edited",
                "`/etc/docker/daemon.json` was changed",
                "`/var/lib/berth/journal.json` was created",
                "container/gitlab-runner changed (recreated, stopped, started or restarted)",
                "network/ci was created",
            ]
        );
    }

    #[test]
    fn a_forgotten_layer_is_named_and_other_changes_alone_count() {
        let plan = saved();
        let mut now = observation();
        now.layers.push(("site.toml".into(), "cc".into()));
        assert_eq!(
            plan.differences(&now, &plan.changes),
            [
                "the profiles are not the same layers: the plan was made from dind (embedded), now dind (embedded), site.toml"
            ]
        );
        assert_eq!(plan.differences(&observation(), &[]).len(), 1);
    }

    #[test]
    fn the_fingerprint_follows_what_was_observed() {
        let mut other = observation();
        other.files.clear();
        assert_eq!(saved().fingerprint, saved().fingerprint);
        assert_ne!(
            saved().fingerprint,
            SavedPlan::new(Vec::new(), &Options::default(), other, saved().changes).fingerprint
        );
    }
}
