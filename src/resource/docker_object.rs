//! What `network/NAME`, `volume/NAME` and `container/NAME` share: the names every one of them asks
//! the daemon about (so each kind costs one batched inspect per run), whether the daemon can be
//! asked at all, the labels that mark what berth created, and the wording of a conflict.
//! Read-only helpers: nothing here changes the daemon.

use std::{collections::BTreeMap, fmt};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use anyhow::Result;
use serde_json::Value as Json;

use crate::{
    docker::{DaemonStatus, unit},
    plan::{Change, Diff, FieldChange},
    profile::{
        Layers,
        source::{KeyPath, LocatedError},
    },
    resource::Context,
};

/// Profiles may not set labels under berth's own prefix: they would forge ownership.
const RESERVED_LABEL_PREFIX: &str = "berth.";

/// Labels berth puts on every network, volume and container it creates, and reads back.
pub(crate) const LABEL_MANAGED: &str = "berth.managed";
pub(crate) const LABEL_PROFILE: &str = "berth.profile";
pub(crate) const LABEL_SPEC_HASH: &str = "berth.spec-hash";
/// Which berth configuration made the object (`instance`, by default an HMAC of the machine
/// id), so that two on one daemon never take each other's objects for orphans.
pub(crate) const LABEL_INSTANCE: &str = "berth.instance";

/// Which berth configuration this is, as the `berth.instance` label of its objects says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instance {
    /// What berth labels the objects it makes with.
    pub label: String,
    /// What an earlier berth labelled this same instance's objects with: the raw machine id,
    /// before the default became its HMAC. Still this instance's, so an upgrade replaces and
    /// orphans nothing.
    pub earlier: Option<String>,
}

impl Instance {
    /// True when an object labelled `label` (empty: no label) is this instance's: its label,
    /// the earlier one, or none at all (made by a berth from before the label).
    pub(crate) fn owns(&self, label: &str) -> bool {
        label.is_empty() || label == self.label || self.earlier.as_deref() == Some(label)
    }
}

/// True when `text` holds a control character (a newline, a tab, an escape): no name or label
/// berth gives has one, and printed or parsed as text one can forge what follows it.
pub(crate) fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// Who makes an object: the profiles (recorded as `berth.profile`) and the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    /// `dind+site`: the names of the profile layers.
    pub profile: String,
    pub instance: String,
}

pub(crate) type Labels = BTreeMap<String, String>;

/// Anything Docker labels: containers (their config), networks and volumes.
pub(crate) trait Labelled {
    fn labels(&self) -> Option<&Labels>;

    fn label(&self, key: &str) -> Option<&str> {
        self.labels()?.get(key).map(String::as_str)
    }

    /// True when berth created the object: only berth sets `berth.managed=true`.
    fn managed(&self) -> bool {
        self.label(LABEL_MANAGED) == Some("true")
    }

    /// The hash of the spec berth created the object from.
    fn spec_hash(&self) -> Option<&str> {
        self.label(LABEL_SPEC_HASH)
    }
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

/// The names a profile's Docker objects go by. Every resource of a kind asks about all of its
/// kind's names at once, so the first asks the daemon and the rest read the cached answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObjectNames {
    pub containers: Vec<String>,
    /// Declared networks and those containers join without declaring them.
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    /// The images the profile's containers name.
    pub images: Vec<String>,
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
        DaemonStatus::CliMissing | DaemonStatus::Unreachable(_) | DaemonStatus::NotAnswering(_) => {
            Reach::Down
        }
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

/// Asks the daemon everything this run's resources will ask, at once: `docker info` and the
/// batched inspects of networks, volumes and containers run side by side (images follow the
/// containers, whose images they include), and their answers are kept as the run's. The same
/// queries as one after another, in the time of the slowest; a query that fails is left for
/// its resource to ask again and report.
///
/// berth's three listings of what it made (`resource::orphan::list`) run beside them; their
/// outcome is returned when the daemon answers.
pub(crate) fn prefetch(
    context: &Context,
    names: &ObjectNames,
    instance: &Instance,
) -> Option<Result<crate::resource::orphan::Listing>> {
    use crate::{
        docker::{self as client},
        resource::{
            container::{self, inspect::ContainerInfo, inspect::ImageInfo},
            network::NetworkInfo,
            volume::VolumeInfo,
        },
    };
    let program = context.docker.program();
    let (status, networks, volumes, containers, listing) = std::thread::scope(|scope| {
        let status = scope.spawn(|| client::query_status(program));
        let listing = scope.spawn(|| crate::resource::orphan::list(program, instance, names));
        let networks = scope.spawn(|| client::fetch::<NetworkInfo>(program, &names.networks));
        let volumes = scope.spawn(|| client::fetch::<VolumeInfo>(program, &names.volumes));
        let containers = scope.spawn(|| {
            let containers = client::fetch::<ContainerInfo>(program, &names.containers)?;
            let references = container::image_references(&names.images, &containers.found);
            let images = client::fetch::<ImageInfo>(program, &references)?;
            Ok::<_, anyhow::Error>((containers, references, images))
        });
        (
            status.join().ok(),
            networks.join().ok().and_then(Result::ok),
            volumes.join().ok().and_then(Result::ok),
            containers.join().ok().and_then(Result::ok),
            listing.join().ok(),
        )
    });
    let status = status?;
    let running = matches!(status, DaemonStatus::Running(_));
    context.docker.remember_status(status);
    if !running {
        return None;
    }
    if let Some(networks) = networks {
        context.docker.remember(&names.networks, networks);
    }
    if let Some(volumes) = volumes {
        context.docker.remember(&names.volumes, volumes);
    }
    if let Some((containers, references, images)) = containers {
        context.docker.remember(&names.containers, containers);
        context.docker.remember(&references, images);
    }
    listing
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

    /// `docker KIND create --driver D [FLAGS] --opt K=V... --label ... NAME`, labelled as berth's.
    pub(crate) fn create_arguments(
        &self,
        kind: &str,
        flags: &[&str],
        (owner, hash): (&Owner, &str),
        labels: &BTreeMap<String, String>,
        name: &str,
    ) -> Vec<String> {
        let mut args: Vec<String> = vec![
            kind.into(),
            "create".into(),
            "--driver".into(),
            self.driver.into(),
        ];
        args.extend(flags.iter().map(|flag| (*flag).to_owned()));
        for (key, value) in self.options {
            args.extend(["--opt".into(), format!("{key}={value}")]);
        }
        args.extend(ownership_labels(owner, hash));
        for (key, value) in labels {
            args.extend(["--label".into(), format!("{key}={value}")]);
        }
        args.push(name.to_owned());
        args
    }
}

/// `--label` arguments that mark an object as berth's.
pub(crate) fn ownership_labels(owner: &Owner, spec_hash: &str) -> Vec<String> {
    [
        format!("{LABEL_MANAGED}=true"),
        format!("{LABEL_PROFILE}={}", owner.profile),
        format!("{LABEL_INSTANCE}={}", owner.instance),
        format!("{LABEL_SPEC_HASH}={spec_hash}"),
    ]
    .into_iter()
    .flat_map(|label| ["--label".to_owned(), label])
    .collect()
}

pub(crate) fn conflict_detail(kind: &str, name: &str) -> String {
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
