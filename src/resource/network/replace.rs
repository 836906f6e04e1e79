//! Replacing a network without a window where its containers are cut off for good. Docker
//! cannot change a network's options or rename one, so:
//!
//! 1. the new options are tried first on a probe network (`NAME.berth-probe`), created and
//!    removed at once: options Docker refuses fail here, with the old network untouched;
//! 2. the members and their aliases are journaled;
//! 3. the members are disconnected, the old network removed, the new one created, the members
//!    reconnected with their aliases;
//! 4. if the create fails anyway, the old network is created again as it was and the members
//!    go back on it.
//!
//! A run killed in between leaves the journal entry: the next run creates the network if it is
//! missing and reconnects every member that is not on it, before anything else.

use anyhow::{Context as _, Result, anyhow};
use bollard::models::{Ipam, NetworkCreateRequest};
use serde::{Deserialize, Serialize};

use super::{Network, NetworkOp, kept_aliases};
use crate::{
    docker::wire::{ContainerInfo, NetworkInfo},
    plan::{Action, Change},
    resource::{Context, Resource, journal},
};

/// What the journal keeps while a network is replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NetworkReplaceIntent {
    /// Each container that was on the network, with the aliases it had there.
    members: Vec<(String, Vec<String>)>,
}

impl Network {
    pub(super) fn replace(&self, context: &Context, old: &NetworkInfo) -> Result<()> {
        let name = self.spec.name.as_str();
        self.probe(context)?;
        let members = self.members(context)?;
        journal::record(
            context.host,
            &self.id(),
            &NetworkReplaceIntent {
                members: members.clone(),
            },
        )?;
        let engine = context.docker.engine();
        for (member, _) in &members {
            engine
                .disconnect_network(name, member)
                .with_context(|| format!("failed to disconnect `{member}` from `{name}`"))?;
        }
        engine
            .remove_network(name)
            .with_context(|| format!("failed to remove network `{name}`"))?;
        if let Err(error) = self.create(context) {
            let restored = engine
                .create_network(recreate_request(old))
                .map_err(anyhow::Error::new)
                .and_then(|_| self.reconnect(context, &members));
            return Err(match restored {
                Ok(()) => {
                    journal::clear(context.host, &self.id())?;
                    error.context(format!(
                        "Docker refused the new `{name}`; the old one is back, with its containers"
                    ))
                }
                Err(second) => error.context(format!(
                    "Docker refused the new `{name}`, and bringing back the old one failed ({second:#}); the next run reconnects its containers"
                )),
            });
        }
        self.reconnect(context, &members)?;
        journal::clear(context.host, &self.id())
    }

    /// Creates and removes a network with the profile's driver and options under another name,
    /// so that options Docker refuses are found before anything is taken apart.
    fn probe(&self, context: &Context) -> Result<()> {
        // A bridge with a fixed name cannot have a twin: only the way back covers that one.
        if self
            .spec
            .options
            .contains_key("com.docker.network.bridge.name")
        {
            return Ok(());
        }
        let engine = context.docker.engine();
        let probe = format!("{}.berth-probe", self.spec.name);
        // One left by a run killed between the two steps is in the way.
        let _ = engine.remove_network(&probe);
        engine
            .create_network(self.create_request(&probe))
            .with_context(|| {
                format!(
                    "Docker refuses the profile's `{}`; the network and its containers are left as they are",
                    self.spec.name
                )
            })?;
        engine
            .remove_network(&probe)
            .with_context(|| format!("failed to remove the probe network `{probe}`"))
    }

    /// The containers on the network, running or not, with the aliases someone gave them.
    fn members(&self, context: &Context) -> Result<Vec<(String, Vec<String>)>> {
        let name = self.spec.name.as_str();
        let members = context
            .docker
            .engine()
            .containers_on(name)
            .with_context(|| format!("failed to list the containers on network `{name}`"))?;
        let found = context.docker.inspect_all::<ContainerInfo>(&members)?;
        Ok(members
            .into_iter()
            .map(|member| {
                let aliases = found
                    .get(&member)
                    .map(|info| kept_aliases(info, name))
                    .unwrap_or_default();
                (member, aliases)
            })
            .collect())
    }

    /// Connects each member that is not on the network yet, with its aliases.
    fn reconnect(&self, context: &Context, members: &[(String, Vec<String>)]) -> Result<()> {
        let name = self.spec.name.as_str();
        context.docker.invalidate();
        let names: Vec<String> = members.iter().map(|(member, _)| member.clone()).collect();
        let found = context.docker.inspect_all::<ContainerInfo>(&names)?;
        for (member, aliases) in members {
            let Some(info) = found.get(member) else {
                continue; // removed since: nothing to reconnect
            };
            if info.networks().contains_key(name) {
                continue;
            }
            context
                .docker
                .engine()
                .connect_network(name, member, aliases)
                .with_context(|| format!("failed to reconnect `{member}` to `{name}`"))?;
        }
        Ok(())
    }

    /// What an interrupted replacement left: the network to create and members to reconnect.
    pub(super) fn leftover_of(
        &self,
        intent: Option<NetworkReplaceIntent>,
    ) -> Option<(Change, NetworkOp)> {
        let intent = intent?;
        let members: Vec<&str> = intent
            .members
            .iter()
            .map(|(member, _)| member.as_str())
            .collect();
        let detail = format!(
            "an interrupted replacement of `{}` may have left it missing or its containers cut off: create it if it is missing and reconnect {}",
            self.spec.name,
            if members.is_empty() {
                "nothing".to_owned()
            } else {
                members.join(", ")
            }
        );
        Some((
            Change::new(self.id(), Action::Recover, detail),
            NetworkOp::Recover(intent),
        ))
    }

    pub(super) fn recover(&self, context: &Context, intent: &NetworkReplaceIntent) -> Result<()> {
        let name = self.spec.name.as_str();
        let exists = context
            .docker
            .inspect_all::<NetworkInfo>(&[name.to_owned()])?
            .contains_key(name);
        if !exists {
            self.create(context)
                .map_err(|error| anyhow!("{error:#}"))
                .with_context(|| format!("failed to create `{name}` again"))?;
        }
        self.reconnect(context, &intent.members)?;
        journal::clear(context.host, &self.id())
    }
}

/// The create request for a network as its inspect reported it: the way back when Docker
/// refuses its replacement.
fn recreate_request(old: &NetworkInfo) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: old.name.clone(),
        driver: Some(old.driver.clone()),
        internal: Some(old.internal),
        ipam: Some(Ipam {
            driver: Some("default".to_owned()),
            ..Ipam::default()
        }),
        options: Some(
            old.options
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        ),
        labels: Some(old.labels.clone().unwrap_or_default().into_iter().collect()),
        ..NetworkCreateRequest::default()
    }
}
