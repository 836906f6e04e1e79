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
use serde::{Deserialize, Serialize};

use super::{Network, NetworkOp, kept_aliases, run};
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
        for (member, _) in &members {
            run(context, &["network", "disconnect", "--force", name, member])
                .with_context(|| format!("failed to disconnect `{member}` from `{name}`"))?;
        }
        run(context, &["network", "rm", name])?;
        if let Err(error) = self.create(context) {
            let restored = run(context, &recreate_arguments(old))
                .map(drop)
                .and_then(|()| self.reconnect(context, &members));
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
        let probe = format!("{}.berth-probe", self.spec.name);
        // One left by a run killed between the two steps is in the way.
        let _ = run(context, &["network", "rm", &probe]);
        let mut args = self.create_arguments();
        *args.last_mut().expect("a create names the network") = probe.clone();
        run(context, &args).with_context(|| {
            format!(
                "Docker refuses the profile's `{}`; the network and its containers are left as they are",
                self.spec.name
            )
        })?;
        run(context, &["network", "rm", &probe]).map(drop)
    }

    /// The containers on the network, running or not, with the aliases someone gave them.
    fn members(&self, context: &Context) -> Result<Vec<(String, Vec<String>)>> {
        let name = self.spec.name.as_str();
        // `network inspect` lists only running containers; `ps --filter network` all of them.
        let members: Vec<String> = run(
            context,
            &[
                "container",
                "ls",
                "--all",
                "--filter",
                &format!("network={name}"),
                "--format",
                "{{.Names}}",
            ],
        )?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
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
            let mut args = vec!["network".to_owned(), "connect".to_owned()];
            for alias in aliases {
                args.extend(["--alias".to_owned(), alias.clone()]);
            }
            args.extend([name.to_owned(), member.clone()]);
            run(context, &args)
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

/// `docker network create` for a network as `docker network inspect` reported it: the way
/// back when Docker refuses its replacement.
fn recreate_arguments(old: &NetworkInfo) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "network".into(),
        "create".into(),
        "--driver".into(),
        old.driver.clone(),
    ];
    if old.internal {
        args.push("--internal".into());
    }
    for (key, value) in old.options.iter().flatten() {
        args.extend(["--opt".into(), format!("{key}={value}")]);
    }
    for (key, value) in old.labels.iter().flatten() {
        args.extend(["--label".into(), format!("{key}={value}")]);
    }
    args.push(old.name.clone());
    args
}
