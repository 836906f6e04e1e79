//! `volume/NAME`: a named Docker volume (driver, options, labels), declared in the profile or
//! mounted by one of its containers.
//!
//! A volume holds data (dind's layer cache, TLS certificates), so berth never removes one: a
//! volume whose spec changed is a refused replacement that says how to do it by hand. A volume
//! with the profile's name that berth did not create is a conflict; `--adopt` takes it over as it
//! is, data included. Docker cannot add labels to an existing volume, so the adoption is
//! recorded in `/var/lib/berth/adopted-volumes.json` with the volume's creation time (a volume
//! removed and created again by someone else is not adopted by that record).

use std::{collections::BTreeMap, rc::Rc};

use anyhow::{Context as _, Result};
use indexmap::IndexMap;
use serde::Deserialize;

use crate::{
    docker::{ObjectNames, labels::Labelled, wire::VolumeInfo},
    host::{HostPath, host_path},
    plan::{Action, Change, Diff, FieldChange, Kind, ResourceId},
    resource::{
        Context, Earlier, Resource,
        daemon::service::DaemonService,
        docker_object::{self, Driven, ObjectName, Observed, Owner, spec_hash},
    },
};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VolumeSection {
    pub driver: Option<String>,
    pub options: Option<IndexMap<String, String>>,
    pub labels: Option<IndexMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeSpec {
    pub name: ObjectName,
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl VolumeSpec {
    pub(crate) fn with_defaults(name: ObjectName) -> Self {
        Self {
            name,
            driver: "local".into(),
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }

    pub(crate) fn spec_hash(&self) -> String {
        spec_hash(&serde_json::json!({
            "driver": self.driver,
            "options": self.options,
            "labels": self.labels,
        }))
    }
}

/// Volume name → `CreatedAt` of the volume adopted with `--adopt`.
pub(crate) const ADOPTED_VOLUMES: &str = "/var/lib/berth/adopted-volumes.json";

pub(crate) struct Volume {
    spec: VolumeSpec,
    hash: String,
    owner: Owner,
    names: Rc<ObjectNames>,
    adopt: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct SeenVolume {
    volume: Option<VolumeInfo>,
    /// The creation time recorded when this volume was adopted.
    adopted: Option<String>,
}

/// What apply does for a volume. A volume is never replaced: that would delete its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VolumeOp {
    Create,
    /// Takes over a volume berth did not create, as it is: records its creation time.
    Adopt {
        created_at: String,
    },
}

impl Volume {
    pub(crate) fn new(spec: VolumeSpec, owner: Owner, names: Rc<ObjectNames>, adopt: bool) -> Self {
        Self {
            hash: spec.spec_hash(),
            spec,
            owner,
            names,
            adopt,
        }
    }

    fn record() -> HostPath {
        host_path(ADOPTED_VOLUMES)
    }

    /// Driver and options: what makes the data what it is. Labels are compared separately.
    fn storage_fields(&self, live: &VolumeInfo) -> Vec<FieldChange> {
        self.driven().fields(&live.driver, live.options.as_ref())
    }

    fn driven(&self) -> Driven<'_> {
        Driven {
            driver: &self.spec.driver,
            options: &self.spec.options,
        }
    }

    fn refuse_replacement(&self, diff: &mut Diff<VolumeOp>, fields: Vec<FieldChange>) {
        let name = &self.spec.name;
        diff.refuse(Change::new(
            self.id(),
            Action::Replace,
            format!("{} changed", docker_object::field_paths(&fields)),
        )
        .with_fields(fields), format!(
            "replacing a volume deletes its data; save what `{name}` holds, remove it and the containers that use it (`docker volume rm {name}`), then apply again, or undo the profile change"
        ));
    }

    fn adopt_record(&self, context: &Context, created_at: &str) -> Result<()> {
        let path = Self::record();
        let mut record: BTreeMap<String, String> = match context.host.read_optional(&path)? {
            Some(text) => serde_json::from_str(&text)
                .with_context(|| format!("`{path}` is not valid JSON"))?,
            None => BTreeMap::new(),
        };
        record.insert(self.spec.name.to_string(), created_at.to_owned());
        let text = serde_json::to_string_pretty(&record).expect("a map serializes") + "\n";
        context.host.write_atomic(&path, text.as_bytes(), 0o644)
    }
}

impl Resource for Volume {
    type Observed = Observed<SeenVolume>;
    type Op = VolumeOp;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Volume, self.spec.name.as_str())
    }

    fn depends_on(&self) -> Vec<ResourceId> {
        vec![DaemonService::id()]
    }

    fn observe(&self, context: &Context) -> Result<Self::Observed> {
        Observed::of(context, || self.look(context))
    }

    fn diff(&self, observed: &Self::Observed, _earlier: &Earlier) -> Diff<VolumeOp> {
        let mut diff = Diff::none();
        let create = || {
            (
                Change::new(
                    self.id(),
                    Action::Create,
                    format!("driver={}", self.spec.driver),
                ),
                VolumeOp::Create,
            )
        };
        let Some(SeenVolume { volume, adopted }) = observed.seen(&mut diff, create) else {
            return diff;
        };
        let Some(live) = volume else {
            let (change, op) = create();
            diff.push(change, op);
            return diff;
        };
        self.compare(live, adopted.as_deref(), &mut diff);
        diff
    }

    fn action(&self, op: &VolumeOp) -> Action {
        match op {
            VolumeOp::Create => Action::Create,
            // Taken over as it is: its data stays.
            VolumeOp::Adopt { .. } => Action::Update,
        }
    }

    fn apply(&self, context: &Context, op: &VolumeOp) -> Result<()> {
        match op {
            VolumeOp::Create => {
                let name = self.spec.name.as_str();
                context
                    .docker
                    .engine()
                    .create_volume(
                        name,
                        &self.spec.driver,
                        &self.spec.options,
                        &docker_object::labels_of(&self.owner, &self.hash, &self.spec.labels),
                    )
                    .with_context(|| format!("failed to create volume `{name}`"))?;
                Ok(())
            }
            VolumeOp::Adopt { created_at } => self.adopt_record(context, created_at),
        }
    }
}

impl Volume {
    fn look(&self, context: &Context) -> Result<SeenVolume> {
        let found = context
            .docker
            .inspect_all::<VolumeInfo>(&self.names.volumes)?;
        let path = Self::record();
        // A record that does not parse adopts nothing; apply reports it when it writes.
        let adopted = context
            .host
            .read_optional(&path)?
            .and_then(|text| serde_json::from_str::<BTreeMap<String, String>>(&text).ok())
            .and_then(|mut record| record.remove(self.spec.name.as_str()));
        Ok(SeenVolume {
            volume: found.get(self.spec.name.as_str()).cloned(),
            adopted,
        })
    }

    /// Compares a volume that exists with the profile.
    fn compare(&self, live: &VolumeInfo, adopted: Option<&str>, diff: &mut Diff<VolumeOp>) {
        let storage = self.storage_fields(live);
        if !live.managed() {
            if adopted == Some(live.created_at.as_str()) {
                // Adopted: its labels cannot be changed, only its storage compared.
                if !storage.is_empty() {
                    self.refuse_replacement(diff, storage);
                }
                return;
            }
            let change = Change::new(
                self.id(),
                Action::Update,
                format!(
                    "{}; adopt it, data included",
                    docker_object::conflict_detail(Kind::Volume, self.spec.name.as_str())
                ),
            )
            .with_fields([vec![docker_object::conflict_field()], storage.clone()].concat());
            if !self.adopt {
                diff.refuse(change,
                    "berth does not touch a volume it did not create; rerun with --adopt to take it over as it is",
                );
            } else if !storage.is_empty() {
                diff.refuse(change, format!(
                    "its {} differ from the profile's, and a volume cannot be changed without deleting its data",
                    docker_object::field_paths(&storage)
                ));
            } else {
                diff.push(
                    change,
                    VolumeOp::Adopt {
                        created_at: live.created_at.clone(),
                    },
                );
            }
            return;
        }
        let mut fields = storage;
        fields.extend(docker_object::map_fields(
            "labels",
            &live.labels.clone().unwrap_or_default(),
            &self.spec.labels,
        ));
        let recorded = live.spec_hash();
        if fields.is_empty() && recorded == Some(self.hash.as_str()) {
            return;
        }
        if fields.is_empty() {
            fields.push(docker_object::hash_field(recorded, &self.hash));
        }
        self.refuse_replacement(diff, fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::labels::{LABEL_MANAGED, LABEL_SPEC_HASH};

    fn volume(adopt: bool) -> Volume {
        Volume::new(
            VolumeSpec {
                name: ObjectName::try_from("dind-data".to_owned()).unwrap(),
                driver: "local".into(),
                options: BTreeMap::new(),
                labels: BTreeMap::new(),
            },
            Owner {
                profile: "dind".into(),
                instance: "test".into(),
            },
            Rc::new(ObjectNames::default()),
            adopt,
        )
    }

    fn live(labels: &[(&str, &str)], driver: &str) -> VolumeInfo {
        VolumeInfo {
            name: "dind-data".into(),
            driver: driver.into(),
            options: None,
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            created_at: "2025-01-01T00:00:00Z".into(),
        }
    }

    fn seen(volume: Option<VolumeInfo>, adopted: Option<&str>) -> Observed<SeenVolume> {
        Observed::Seen(SeenVolume {
            volume,
            adopted: adopted.map(str::to_owned),
        })
    }

    #[test]
    fn volume_diff_table() {
        let resource = volume(false);
        let hash = resource.hash.clone();
        let ours = [(LABEL_MANAGED, "true"), (LABEL_SPEC_HASH, hash.as_str())];
        type Case = (&'static str, Observed<SeenVolume>, Vec<(Action, bool)>);
        let cases: Vec<Case> = vec![
            (
                "absent: created",
                seen(None, None),
                vec![(Action::Create, false)],
            ),
            (
                "ours and equal: nothing",
                seen(Some(live(&ours, "local")), None),
                vec![],
            ),
            (
                "driver changed: refused, data is never dropped",
                seen(Some(live(&ours, "other")), None),
                vec![(Action::Replace, true)],
            ),
            (
                "foreign: a refused adoption",
                seen(Some(live(&[], "local")), None),
                vec![(Action::Update, true)],
            ),
            (
                "foreign but adopted earlier: nothing",
                seen(Some(live(&[], "local")), Some("2025-01-01T00:00:00Z")),
                vec![],
            ),
            (
                "an adoption record of another volume of that name: conflict again",
                seen(Some(live(&[], "local")), Some("2024-01-01T00:00:00Z")),
                vec![(Action::Update, true)],
            ),
        ];
        for (name, observed, expected) in cases {
            let got: Vec<(Action, bool)> = resource
                .diff(&observed, &Earlier::default())
                .printed()
                .map(|change| (change.action, change.refused.is_some()))
                .collect();
            assert_eq!(got, expected, "{name}");
        }
        let adopting =
            volume(true).diff(&seen(Some(live(&[], "local")), None), &Earlier::default());
        assert_eq!(adopting.changes[0].0.action, Action::Update);
        assert!(adopting.changes[0].0.refused.is_none());
    }
}
