//! `network/NAME`: a Docker network the profile declares (driver, options, internal, labels).
//!
//! Docker cannot change a network in place, so a network whose spec changed is replaced: its
//! containers (running or not) are disconnected, the network is removed and created again, and
//! every container is reconnected with the aliases it had. A network with the profile's name
//! that berth did not create is a conflict, replaced only with `--adopt`.

use std::{collections::BTreeMap, rc::Rc};

use indexmap::IndexMap;
use serde::Deserialize;

use anyhow::{Context as _, Result};
use bollard::models::{Ipam, NetworkCreateRequest};
use serde_json::Value as Json;

mod replace;

use replace::NetworkReplaceIntent;

use crate::{
    docker::{
        ObjectNames,
        labels::Labelled,
        wire::{ContainerInfo, NetworkInfo},
    },
    plan::{Action, Change, Diff, FieldChange, Kind, ResourceId},
    profile::{
        Layers,
        source::{KeyPath, LocatedError},
    },
    resource::{
        Context, Earlier, Resource,
        daemon::service::DaemonService,
        docker_object::{
            self, Driven, ObjectName, Observed, Owner, labels, non_empty, spec_hash, string_map,
        },
        journal,
    },
};

/// The option through which bridge and overlay networks take their MTU.
pub(crate) const NETWORK_MTU_OPTION: &str = "com.docker.network.driver.mtu";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworkSection {
    pub driver: Option<String>,
    pub options: Option<IndexMap<String, String>>,
    pub internal: Option<bool>,
    pub labels: Option<IndexMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetworkSpec {
    pub name: ObjectName,
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

impl NetworkSpec {
    pub(crate) fn spec_hash(&self) -> String {
        spec_hash(&serde_json::json!({
            "driver": self.driver,
            "options": self.options,
            "internal": self.internal,
            "labels": self.labels,
        }))
    }
}

pub(crate) fn resolve_network(
    name: ObjectName,
    layer: NetworkSection,
    mtu: Option<u32>,
    layers: &Layers,
) -> Result<NetworkSpec, LocatedError> {
    let key = KeyPath::parse_dotted("networks").key(name.as_str());
    let driver = non_empty(layer.driver, "bridge", &key.key("driver"), layers)?;
    let mut options = string_map(layer.options, &key.key("options"), layers)?;
    // Only the bridge and overlay drivers take an MTU option; others refuse unknown options.
    if let Some(mtu) = mtu
        && matches!(driver.as_str(), "bridge" | "overlay")
    {
        let wanted = mtu.to_string();
        match options.get(NETWORK_MTU_OPTION) {
            Some(set) if *set != wanted => {
                return Err(layers.error_at(
                    &key.key("options").key(NETWORK_MTU_OPTION),
                    format!("`{set}` contradicts the top-level `mtu = {mtu}`; set one MTU, at the top level"),
                ));
            }
            _ => {
                options.insert(NETWORK_MTU_OPTION.to_owned(), wanted);
            }
        }
    }
    Ok(NetworkSpec {
        driver,
        options,
        internal: layer.internal.unwrap_or(false),
        labels: labels(layer.labels, &key.key("labels"), layers)?,
        name,
    })
}

pub(crate) struct Network {
    spec: NetworkSpec,
    hash: String,
    owner: Owner,
    names: Rc<ObjectNames>,
    adopt: bool,
}

/// What apply does for a network.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NetworkOp {
    Create,
    /// Recreates it with the profile's options and reconnects its containers (see `replace`);
    /// `old` is the way back if Docker refuses the new one.
    Replace {
        old: Box<NetworkInfo>,
    },
    /// Create it if missing and reconnect what an interrupted replacement left cut off.
    Recover(NetworkReplaceIntent),
}

impl Network {
    pub(crate) fn new(
        spec: NetworkSpec,
        owner: Owner,
        names: Rc<ObjectNames>,
        adopt: bool,
    ) -> Self {
        Self {
            hash: spec.spec_hash(),
            spec,
            owner,
            names,
            adopt,
        }
    }

    fn driven(&self) -> Driven<'_> {
        Driven {
            driver: &self.spec.driver,
            options: &self.spec.options,
        }
    }

    fn fields(&self, live: &NetworkInfo) -> Vec<FieldChange> {
        let mut fields = self.driven().fields(&live.driver, live.options.as_ref());
        if live.internal != self.spec.internal {
            fields.push(FieldChange::new(
                "internal",
                Some(Json::from(live.internal)),
                Some(Json::from(self.spec.internal)),
            ));
        }
        fields.extend(docker_object::map_fields(
            "labels",
            &live.labels.clone().unwrap_or_default(),
            &self.spec.labels,
        ));
        fields
    }

    /// The `POST /networks/create` body for the profile's network under `name` (its own, or a
    /// probe's): as `docker network create --driver D [--internal] --opt K=V --label ...`
    /// sent it, with the default IPAM driver the CLI named.
    pub(super) fn create_request(&self, name: &str) -> NetworkCreateRequest {
        NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some(self.spec.driver.clone()),
            internal: Some(self.spec.internal),
            ipam: Some(Ipam {
                driver: Some("default".to_owned()),
                ..Ipam::default()
            }),
            options: Some(self.spec.options.clone().into_iter().collect()),
            labels: Some(
                docker_object::labels_of(&self.owner, &self.hash, &self.spec.labels)
                    .into_iter()
                    .collect(),
            ),
            ..NetworkCreateRequest::default()
        }
    }

    fn create_change(&self) -> (Change, NetworkOp) {
        let mut detail = format!("driver={}", self.spec.driver);
        if self.spec.internal {
            detail.push_str(" internal");
        }
        for (key, value) in &self.spec.options {
            detail.push_str(&format!(" {key}={value}"));
        }
        (
            Change::new(self.id(), Action::Create, detail),
            NetworkOp::Create,
        )
    }

    pub(super) fn create(&self, context: &Context) -> Result<()> {
        let name = self.spec.name.as_str();
        context
            .docker
            .engine()
            .create_network(self.create_request(name))
            .with_context(|| format!("failed to create network `{name}`"))?;
        Ok(())
    }
}

/// The aliases a container has on `network` that someone gave it: Docker adds the short ID.
pub(super) fn kept_aliases(info: &ContainerInfo, network: &str) -> Vec<String> {
    info.networks()
        .get(network)
        .and_then(|endpoint| endpoint.aliases.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|alias| !info.is_automatic_alias(alias))
        .collect()
}

impl Resource for Network {
    type Observed = Observed<Option<NetworkInfo>>;
    type Op = NetworkOp;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Network, self.spec.name.as_str())
    }

    fn depends_on(&self) -> Vec<ResourceId> {
        vec![DaemonService::id()]
    }

    fn observe(&self, context: &Context) -> Result<Self::Observed> {
        Observed::of(context, || {
            let found = context
                .docker
                .inspect_all::<NetworkInfo>(&self.names.networks)?;
            Ok(found.get(self.spec.name.as_str()).cloned())
        })
    }

    fn diff(&self, observed: &Self::Observed, _earlier: &Earlier) -> Diff<NetworkOp> {
        let mut diff = Diff::none();
        let Some(seen) = observed.seen(&mut diff, || self.create_change()) else {
            return diff;
        };
        let Some(live) = seen else {
            let (change, op) = self.create_change();
            diff.push(change, op);
            return diff;
        };
        // Keyed by container ID: sort by name so the plan reads the same every time.
        let mut members: Vec<&str> = live
            .containers
            .iter()
            .flatten()
            .map(|(_, member)| member.name.as_str())
            .collect();
        members.sort_unstable();
        let reconnects = if members.is_empty() {
            String::new()
        } else {
            format!("; reconnects {}", members.join(", "))
        };
        let fields = self.fields(live);
        if !live.managed() {
            let change = Change::new(
                self.id(),
                Action::Replace,
                format!(
                    "{}{reconnects}",
                    docker_object::conflict_detail(Kind::Network, self.spec.name.as_str())
                ),
            )
            .with_fields([vec![docker_object::conflict_field()], fields].concat());
            if self.adopt {
                diff.push(
                    change,
                    NetworkOp::Replace {
                        old: Box::new(live.clone()),
                    },
                );
            } else {
                diff.refuse(change, "berth does not touch a network it did not create; rerun with --adopt to replace it with the profile's (its containers are reconnected)");
            }
            return diff;
        }
        let recorded = live.spec_hash();
        if fields.is_empty() && recorded == Some(self.hash.as_str()) {
            return diff;
        }
        let fields = if fields.is_empty() {
            vec![docker_object::hash_field(recorded, &self.hash)]
        } else {
            fields
        };
        let detail = format!(
            "{} changed{reconnects}",
            docker_object::field_paths(&fields)
        );
        diff.push(
            Change::new(self.id(), Action::Replace, detail).with_fields(fields),
            NetworkOp::Replace {
                old: Box::new(live.clone()),
            },
        );
        diff
    }

    fn action(&self, op: &NetworkOp) -> Action {
        match op {
            NetworkOp::Create => Action::Create,
            NetworkOp::Replace { .. } => Action::Replace,
            NetworkOp::Recover(_) => Action::Recover,
        }
    }

    /// Replacing a network cuts its running members off it until they are reconnected.
    fn disrupts(&self, op: &NetworkOp) -> bool {
        match op {
            NetworkOp::Replace { old } => old
                .containers
                .as_ref()
                .is_some_and(|members| !members.is_empty()),
            NetworkOp::Create | NetworkOp::Recover(_) => false,
        }
    }

    fn apply(&self, context: &Context, op: &NetworkOp) -> Result<()> {
        match op {
            NetworkOp::Create => self.create(context),
            NetworkOp::Replace { old } => self.replace(context, old),
            NetworkOp::Recover(intent) => self.recover(context, intent),
        }
    }

    fn leftover(&self, context: &Context) -> Result<Option<(Change, NetworkOp)>> {
        Ok(self.leftover_of(journal::read(context.host, &self.id())?))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::docker::{
        labels::{LABEL_MANAGED, LABEL_SPEC_HASH},
        wire::NetworkMember,
    };
    use crate::resource::docker_object::Reach;

    fn network(options: &[(&str, &str)], adopt: bool) -> Network {
        Network::new(
            NetworkSpec {
                name: ObjectName::try_from("ci-net".to_owned()).unwrap(),
                driver: "bridge".into(),
                options: options
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                internal: false,
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

    fn live(of: &Network, options: &[(&str, &str)], labels: &[(&str, &str)]) -> NetworkInfo {
        let mut all_labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        all_labels
            .entry(LABEL_SPEC_HASH.into())
            .or_insert_with(|| of.hash.clone());
        NetworkInfo {
            name: "ci-net".into(),
            id: "n1".into(),
            driver: "bridge".into(),
            options: Some(
                options
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            internal: false,
            labels: Some(all_labels),
            containers: Some(BTreeMap::from([(
                "abc".to_owned(),
                NetworkMember {
                    name: "gitlab-runner".into(),
                },
            )])),
        }
    }

    fn actions(diff: &Diff<NetworkOp>) -> Vec<(Action, String, bool)> {
        diff.printed()
            .map(|c| (c.action, c.detail.clone(), c.refused.is_some()))
            .collect()
    }

    #[test]
    fn network_diff_table() {
        let mtu = [("com.docker.network.driver.mtu", "1450")];
        let managed = [(LABEL_MANAGED, "true")];
        let resource = network(&mtu, false);
        type Case = (
            &'static str,
            Observed<Option<NetworkInfo>>,
            Vec<(Action, String, bool)>,
        );
        let cases: Vec<Case> = vec![
            (
                "absent: created",
                Observed::Seen(None),
                vec![(
                    Action::Create,
                    "driver=bridge com.docker.network.driver.mtu=1450".into(),
                    false,
                )],
            ),
            (
                "same spec: nothing",
                Observed::Seen(Some(live(&resource, &mtu, &managed))),
                vec![],
            ),
            (
                "option changed: replaced and reconnected",
                Observed::Seen(Some(live(
                    &resource,
                    &[("com.docker.network.driver.mtu", "1500")],
                    &managed,
                ))),
                vec![(
                    Action::Replace,
                    "options.com.docker.network.driver.mtu changed; reconnects gitlab-runner"
                        .into(),
                    false,
                )],
            ),
            (
                "not berth's: refused conflict",
                Observed::Seen(Some(live(&resource, &mtu, &[]))),
                vec![(
                    Action::Replace,
                    "a network named `ci-net` exists but berth did not create it (no berth.managed label); reconnects gitlab-runner".into(),
                    true,
                )],
            ),
            (
                "docker not installed: the create it will be",
                Observed::Unavailable(Reach::NotInstalled),
                vec![(
                    Action::Create,
                    "driver=bridge com.docker.network.driver.mtu=1450 (after Docker is installed)"
                        .into(),
                    false,
                )],
            ),
        ];
        for (name, observed, expected) in cases {
            assert_eq!(
                actions(&resource.diff(&observed, &Earlier::default())),
                expected,
                "{name}"
            );
        }
        // One warning for all objects comes from `daemon/docker`, none from each.
        let down = resource.diff(&Observed::Unavailable(Reach::Down), &Earlier::default());
        assert_eq!(
            actions(&down),
            [(
                Action::Create,
                "driver=bridge com.docker.network.driver.mtu=1450 (after Docker starts)".into(),
                false
            )]
        );
        assert!(down.warnings.is_empty());
    }

    #[test]
    fn adopt_lifts_the_refusal_and_a_stale_hash_alone_replaces() {
        let resource = network(&[], true);
        let foreign = live(&resource, &[], &[]);
        assert!(
            resource
                .diff(&Observed::Seen(Some(foreign)), &Earlier::default())
                .changes[0]
                .0
                .refused
                .is_none()
        );
        let mut old = live(&resource, &[], &[(LABEL_MANAGED, "true")]);
        old.labels
            .as_mut()
            .unwrap()
            .insert(LABEL_SPEC_HASH.into(), "0123456789abcdef".into());
        let diff = resource.diff(&Observed::Seen(Some(old)), &Earlier::default());
        assert_eq!(diff.changes[0].0.fields[0].path, "spec-hash");
    }

    #[test]
    fn the_create_request_labels_the_network() {
        let request = network(&[("com.docker.network.driver.mtu", "1450")], false)
            .create_request("ci-net.berth-probe");
        let labels: BTreeMap<String, String> =
            request.labels.clone().unwrap().into_iter().collect();
        let mut json = serde_json::to_value(&request).unwrap();
        json["Labels"] = serde_json::to_value(&labels).unwrap();
        json["Labels"][LABEL_SPEC_HASH] = "[HASH]".into();
        insta::assert_snapshot!(serde_json::to_string_pretty(&json).unwrap(), @r#"
        {
          "Name": "ci-net.berth-probe",
          "Driver": "bridge",
          "Internal": false,
          "IPAM": {
            "Driver": "default"
          },
          "Options": {
            "com.docker.network.driver.mtu": "1450"
          },
          "Labels": {
            "berth.instance": "test",
            "berth.managed": "true",
            "berth.profile": "dind",
            "berth.spec-hash": "[HASH]"
          }
        }
        "#);
    }
}
