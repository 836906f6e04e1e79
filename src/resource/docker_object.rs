//! What `network/NAME`, `volume/NAME` and `container/NAME` share: their names, how their
//! sections' maps and labels resolve, whether the daemon can be asked at all, the labels that
//! mark what berth created (as `docker create` arguments), and the wording of a conflict.
//! The shared base of the kinds, so it knows none of them: whatever needs every kind
//! (`prefetch`, `from_profile`) sits above them; what Docker reports is `docker::wire`.
//! Read-only helpers: nothing here changes the daemon.

use std::{collections::BTreeMap, fmt};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use anyhow::Result;
use serde_json::Value as Json;

use crate::{
    docker::{
        DaemonStatus,
        labels::{
            LABEL_INSTANCE, LABEL_MANAGED, LABEL_PROFILE, LABEL_SPEC_HASH, Labels, has_control,
        },
        unit,
    },
    plan::{Change, Diff, FieldChange, Kind},
    profile::{
        Layers,
        source::{KeyPath, LocatedError},
    },
    resource::Context,
};

/// Profiles may not set labels under berth's own prefix: they would forge ownership.
const RESERVED_LABEL_PREFIX: &str = "berth.";

/// Who makes an object: the profiles (recorded as `berth.profile`) and the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    /// `dind+site`: the names of the profile layers.
    pub profile: String,
    pub instance: String,
}

/// A container, network or volume name as Docker accepts it: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
/// Docker refuses one-character container names, so berth refuses them for every kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectName(String);

impl ObjectName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ObjectName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let mut chars = name.chars();
        let valid = name.len() >= 2
            && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if valid {
            Ok(Self(name))
        } else {
            Err(format!(
                "`{name}` is not a Docker object name (at least two characters: a letter or digit, then letters, digits, `_`, `.` or `-`)"
            ))
        }
    }
}

impl From<ObjectName> for String {
    fn from(name: ObjectName) -> String {
        name.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// sha256 of a normalized spec, as berth stamps it on what it creates (`berth.spec-hash`).
pub(crate) fn spec_hash(value: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(value).expect("a spec serializes");
    hex::encode(Sha256::digest(&bytes))
}

// ---------------------------------------------------------------------------------------------
// Resolving

pub(crate) fn non_empty(
    value: Option<String>,
    default: &str,
    key: &KeyPath,
    layers: &Layers,
) -> Result<String, LocatedError> {
    match value {
        Some(value) if value.trim().is_empty() => Err(layers.error_at(key, "must not be empty")),
        Some(value) => Ok(value),
        None => Ok(default.to_owned()),
    }
}

pub(crate) fn string_map(
    map: Option<IndexMap<String, String>>,
    key: &KeyPath,
    layers: &Layers,
) -> Result<BTreeMap<String, String>, LocatedError> {
    let mut resolved = BTreeMap::new();
    for (name, value) in map.unwrap_or_default() {
        if name.is_empty() {
            return Err(layers.error_at(key, "a key must not be empty"));
        }
        resolved.insert(name, value);
    }
    Ok(resolved)
}

pub(crate) fn labels(
    map: Option<IndexMap<String, String>>,
    key: &KeyPath,
    layers: &Layers,
) -> Result<BTreeMap<String, String>, LocatedError> {
    let labels = string_map(map, key, layers)?;
    // berth refuses to remove an object whose labels hold one (see `orphan`): it never makes one.
    if let Some((label, _)) = labels
        .iter()
        .find(|(label, value)| has_control(label) || has_control(value))
    {
        return Err(layers.error_at(
            &key.key(label),
            "a label must not hold a control character (a newline, a tab)",
        ));
    }
    if let Some(reserved) = labels
        .keys()
        .find(|label| label.starts_with(RESERVED_LABEL_PREFIX))
    {
        return Err(layers.error_at(
            &key.key(reserved),
            format!("labels under `{RESERVED_LABEL_PREFIX}` are berth's own: they say which objects berth created"),
        ));
    }
    Ok(labels)
}

/// Whether Docker objects can be observed in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    Running,
    /// Docker is installed but does not answer (stopped, hung, or no `docker` CLI).
    Down,
    /// The daemon runs but this user may not ask it (plan as non-root).
    NotPermitted,
    /// No Docker under the root (yet).
    NotInstalled,
}

pub(crate) fn reach(context: &Context) -> Reach {
    match context.docker.status() {
        DaemonStatus::Running(_) => Reach::Running,
        _ if !unit::docker_installed(context.host) => Reach::NotInstalled,
        DaemonStatus::PermissionDenied(_) => Reach::NotPermitted,
        DaemonStatus::Unreachable(_) | DaemonStatus::NotAnswering(_) => Reach::Down,
    }
}

/// What a network, volume or container resource observed: its `T`, or nothing when the daemon
/// cannot be asked.
#[derive(Debug, Clone)]
pub(crate) enum Observed<T> {
    Unavailable(Reach),
    Seen(T),
}

impl<T> Observed<T> {
    /// Asks the daemon through `look` when it can be asked.
    pub(crate) fn of(context: &Context, look: impl FnOnce() -> Result<T>) -> Result<Self> {
        match reach(context) {
            Reach::Running => Ok(Self::Seen(look()?)),
            other => Ok(Self::Unavailable(other)),
        }
    }

    /// What was seen. When Docker is not installed yet or does not answer, the object is
    /// planned as the create it will be once Docker runs (`create` makes that change), so a
    /// plan on a bare host lists, counts and exits 2 for everything still to make, never "no
    /// changes". `daemon/docker` says once why Docker cannot be asked, not every object. In
    /// apply an object is only reached that way when Docker could not be made to run, and its
    /// dependency on `daemon/docker` stops it first. A daemon this user may not ask is running:
    /// its objects are not compared, and `daemon/docker` says so.
    pub(crate) fn seen<Op>(
        &self,
        diff: &mut Diff<Op>,
        create: impl FnOnce() -> (Change, Op),
    ) -> Option<&T> {
        let after = match self {
            Self::Seen(seen) => return Some(seen),
            Self::Unavailable(Reach::NotInstalled) => "after Docker is installed",
            Self::Unavailable(Reach::Down) => "after Docker starts",
            Self::Unavailable(Reach::NotPermitted | Reach::Running) => return None,
        };
        let (mut change, op) = create();
        change.detail = format!("{} ({after})", change.detail);
        diff.push(change, op);
        None
    }
}

/// What a network or a volume is made of: its driver and the options it takes, as written
/// for `docker KIND create` and compared with what `docker KIND inspect` reports.
pub(crate) struct Driven<'a> {
    pub(crate) driver: &'a str,
    pub(crate) options: &'a BTreeMap<String, String>,
}

impl Driven<'_> {
    /// `driver` and `options.KEY` fields where `live` differs.
    pub(crate) fn fields(
        &self,
        live_driver: &str,
        live_options: Option<&Labels>,
    ) -> Vec<FieldChange> {
        let mut fields = Vec::new();
        if live_driver != self.driver {
            fields.push(FieldChange::new(
                "driver",
                Some(Json::from(live_driver)),
                Some(Json::from(self.driver)),
            ));
        }
        fields.extend(map_fields(
            "options",
            &live_options.cloned().unwrap_or_default(),
            self.options,
        ));
        fields
    }
}

/// berth's labels in the order the `--label` arguments have always given them.
fn ownership(owner: &Owner, spec_hash: &str) -> [(&'static str, String); 4] {
    [
        (LABEL_MANAGED, "true".to_owned()),
        (LABEL_PROFILE, owner.profile.clone()),
        (LABEL_INSTANCE, owner.instance.clone()),
        (LABEL_SPEC_HASH, spec_hash.to_owned()),
    ]
}

/// The labels that mark an object as berth's, for the Engine API; then the profile's own
/// `labels`, as `--label` arguments in that order set them.
pub(crate) fn labels_of(
    owner: &Owner,
    spec_hash: &str,
    labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    ownership(owner, spec_hash)
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .chain(labels.clone())
        .collect()
}

/// Why an object of the profile's name is not berth's to change: `kind` is a Docker object's
/// (a network, a volume, a container), whose word is also what Docker calls it.
pub(crate) fn conflict_detail(kind: Kind, name: &str) -> String {
    format!("a {kind} named `{name}` exists but berth did not create it (no {LABEL_MANAGED} label)")
}

/// The field that says why a conflict is one.
pub(crate) fn conflict_field() -> FieldChange {
    FieldChange::new(
        format!("labels.{LABEL_MANAGED}"),
        None,
        Some(Json::from("true")),
    )
}

/// When the spec hash is all that tells a change (nothing observable differs).
pub(crate) fn hash_field(before: Option<&str>, after: &str) -> FieldChange {
    FieldChange::new(
        "spec-hash",
        before.map(|hash| Json::from(short_hash(hash))),
        Some(Json::from(short_hash(after))),
    )
}

pub(crate) fn short_hash(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// One field change per key whose value differs between `live` and `wanted` (present on one
/// side only counts), in key order; `path` names the field, `json` shows a value.
pub(crate) fn keyed_fields<V: PartialEq>(
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
pub(crate) fn map_fields(
    prefix: &str,
    live: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> Vec<FieldChange> {
    // Told apart by the key, not by the path printed for it.
    let compared = |map: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        map.iter()
            .filter(|(key, _)| !key.starts_with("berth."))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    };
    keyed_fields(
        &compared(live),
        &compared(wanted),
        |key| format!("{prefix}.{key}"),
        |value| Json::from(value.as_str()),
    )
}

/// `a, b, c`: the paths of the fields that differ, for a change's one-line detail.
pub(crate) fn field_paths(fields: &[FieldChange]) -> String {
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

    #[test]
    fn names_follow_docker_rules() {
        assert!(ObjectName::try_from("gitlab-runner".to_owned()).is_ok());
        assert!(ObjectName::try_from("a".to_owned()).is_err());
        assert!(ObjectName::try_from("-x".to_owned()).is_err());
        assert!(ObjectName::try_from("a b".to_owned()).is_err());
    }
}
