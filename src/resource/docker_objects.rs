//! What `network/NAME`, `volume/NAME` and `container/NAME` share: the names every one of them asks
//! the daemon about (so each kind costs one batched inspect per run), whether the daemon can be
//! asked at all, the labels that mark what berth created, and the wording of a conflict.
//! Read-only helpers: nothing here changes the daemon.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::{
    container_spec::{LABEL_MANAGED, LABEL_PROFILE, LABEL_SPEC_HASH},
    docker::DaemonStatus,
    plan::FieldChange,
    profile::Profile,
    resource::Context,
    service_unit,
};

/// The names a profile's Docker objects go by. Every resource of a kind asks about all of its
/// kind's names at once, so the first asks the daemon and the rest read the cached answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectNames {
    pub containers: Vec<String>,
    /// Declared networks and those containers join without declaring them.
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    /// The images the profile's containers name.
    pub images: Vec<String>,
}

impl ObjectNames {
    pub fn from_profile(profile: &Profile) -> Self {
        let mut names = Self::default();
        let add = |list: &mut Vec<String>, name: &str| {
            if !list.iter().any(|known| known == name) {
                list.push(name.to_owned());
            }
        };
        for network in &profile.networks {
            add(&mut names.networks, network.name.as_str());
        }
        for volume in &profile.volumes {
            add(&mut names.volumes, volume.name.as_str());
        }
        for container in &profile.containers {
            add(&mut names.containers, container.name.as_str());
            add(&mut names.images, &container.image);
            for network in container.networks.keys() {
                add(&mut names.networks, network.as_str());
            }
        }
        names
    }
}

/// Whether Docker objects can be observed in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    Running,
    /// Docker is installed but does not answer (stopped, hung, no permission).
    Unreachable(String),
    /// No Docker under the root: `daemon/docker` already says so.
    NotInstalled,
}

pub fn reach(cx: &Context) -> Reach {
    match cx.docker.status() {
        DaemonStatus::Running(_) => Reach::Running,
        _ if !service_unit::docker_installed(cx.host) => Reach::NotInstalled,
        DaemonStatus::CliMissing => Reach::Unreachable("the `docker` CLI is not installed".into()),
        DaemonStatus::Unreachable(reason) | DaemonStatus::PermissionDenied(reason) => {
            Reach::Unreachable(reason)
        }
    }
}

/// What `plan` says when it cannot look at a Docker object. In `apply`, `daemon/docker` starts
/// Docker first and the object is observed afresh, so this is a plan-time notice.
pub fn unreachable_warning(reason: &str) -> String {
    format!(
        "not compared: Docker does not answer ({reason}); apply starts Docker first and then converges it"
    )
}

/// `--label` arguments that mark an object as berth's.
pub fn ownership_labels(profile: &str, spec_hash: &str) -> Vec<String> {
    [
        format!("{LABEL_MANAGED}=true"),
        format!("{LABEL_PROFILE}={profile}"),
        format!("{LABEL_SPEC_HASH}={spec_hash}"),
    ]
    .into_iter()
    .flat_map(|label| ["--label".to_owned(), label])
    .collect()
}

pub fn conflict_detail(kind: &str, name: &str) -> String {
    format!("a {kind} named `{name}` exists but berth did not create it (no {LABEL_MANAGED} label)")
}

/// The field that says why a conflict is one.
pub fn conflict_field() -> FieldChange {
    FieldChange::new(
        format!("labels.{LABEL_MANAGED}"),
        None,
        Some(Json::from("true")),
    )
}

/// When the spec hash is all that tells a change (nothing observable differs).
pub fn hash_field(before: Option<&str>, after: &str) -> FieldChange {
    FieldChange::new(
        "spec-hash",
        before.map(|hash| Json::from(short_hash(hash))),
        Some(Json::from(short_hash(after))),
    )
}

pub fn short_hash(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// One field change per key whose value differs between `live` and `wanted` (present on one
/// side only counts), in key order; `path` names the field, `json` shows a value.
pub fn keyed_fields<V: PartialEq>(
    live: &BTreeMap<String, V>,
    wanted: &BTreeMap<String, V>,
    path: impl Fn(&str) -> String,
    json: impl Fn(&V) -> Json,
) -> Vec<FieldChange> {
    let keys: std::collections::BTreeSet<&String> = live.keys().chain(wanted.keys()).collect();
    keys.into_iter()
        .filter(|key| live.get(*key) != wanted.get(*key))
        .map(|key| {
            FieldChange::new(
                path(key),
                live.get(key).map(&json),
                wanted.get(key).map(&json),
            )
        })
        .collect()
}

/// Field changes between two string maps (options, labels): `prefix.KEY`, one per key that
/// differs, keys in order. Labels under `berth.` are berth's bookkeeping and never compared.
pub fn map_fields(
    prefix: &str,
    live: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> Vec<FieldChange> {
    let bookkeeping = format!("{prefix}.berth.");
    keyed_fields(
        live,
        wanted,
        |key| format!("{prefix}.{key}"),
        |value| Json::from(value.as_str()),
    )
    .into_iter()
    .filter(|field| !field.path.starts_with(&bookkeeping))
    .collect()
}

/// `a, b, c`: the paths of the fields that differ, for a change's one-line detail.
pub fn field_paths(fields: &[FieldChange]) -> String {
    fields
        .iter()
        .map(|field| field.path.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_fields_name_each_key_that_differs_and_skip_berth_labels() {
        let live = BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
            ("berth.spec-hash".to_owned(), "x".to_owned()),
        ]);
        let wanted = BTreeMap::from([
            ("b".to_owned(), "3".to_owned()),
            ("c".to_owned(), "4".to_owned()),
        ]);
        let fields = map_fields("labels", &live, &wanted);
        assert_eq!(field_paths(&fields), "labels.a, labels.b, labels.c");
        assert_eq!(fields[0].after, None);
        assert_eq!(fields[1].before, Some(Json::from("2")));
    }
}
