//! Replacing a container without a window in which an interrupted run leaves two of it, or
//! none. The steps, each one journaled first:
//!
//! 1. pull the image and make the bind sources (nothing stopped yet);
//! 2. turn the old container's restart policy off, so a daemon restart cannot revive it once it
//!    is set aside (a second gitlab-runner on one config.toml);
//! 3. stop it with its own stop signal and timeout (gitlab-runner drains on SIGQUIT);
//! 4. set it aside as `NAME.berth-old`;
//! 5. create, connect and start the new one;
//! 6. remove the old one (named volumes stay, anonymous ones go with it).
//!
//! If step 5 fails, the old one is put back as it was. A run killed anywhere in between leaves
//! a journal entry or a set-aside container (berth's labels, `.berth-old` name): the next run
//! finishes (the new one exists: the set-aside goes) or undoes (it does not: the set-aside is
//! renamed back, its restart policy restored) before anything else.

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::{Container, ContainerOp, Seen, apply::restart_policy, values::RestartPolicy};
use crate::{
    docker::{
        drain::drain,
        labels::Labelled,
        wire::{ContainerInfo, RestartPolicyName},
    },
    plan::Change,
    resource::{Context, Resource, journal},
};

/// What a container set aside by berth is called while its replacement is made.
pub(crate) fn set_aside_name(name: &str) -> String {
    format!("{name}.berth-old")
}

/// What the journal keeps while a container is replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ReplaceIntent {
    /// The container being replaced.
    old_id: String,
    /// Its restart policy, to give it back on undo. Persisted as `docker update --restart`
    /// spells it (`on-failure:3`), as the journal of earlier releases holds it.
    restart: RestartPolicy,
}

/// What recovery does with what an interrupted replacement left.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Leftover {
    /// The new container exists: remove the set-aside one (if any) and forget the step.
    Finish { set_aside: Option<String> },
    /// No new container: put the set-aside one back under its name with its restart policy.
    Undo {
        set_aside: String,
        restart: RestartPolicy,
    },
    /// The old container was never set aside: give it its restart policy back.
    Restore { id: String, restart: RestartPolicy },
}

impl Container {
    /// What an interrupted replacement left, from the journal and what `look` saw.
    pub(super) fn leftover_of(&self, seen: &Seen) -> Option<(Change, ContainerOp)> {
        // Only berth's: a container someone else named so is not berth's to touch.
        let set_aside = seen.set_aside.as_ref().filter(|info| info.config.managed());
        let parked = set_aside_name(self.name());
        let restart = |info: Option<&ContainerInfo>| match (&seen.intent, info) {
            (Some(intent), _) => intent.restart,
            (None, Some(info)) if info.host_config.restart_policy.name != RestartPolicyName::No => {
                RestartPolicy::from_docker(&info.host_config.restart_policy)
            }
            (None, _) => self.spec.restart,
        };
        let new_exists = seen.container.is_some();
        let (detail, leftover) = match (set_aside, &seen.intent) {
            (Some(_), _) if new_exists => (
                format!("an interrupted replacement left `{parked}` beside the new container: remove it"),
                Leftover::Finish {
                    set_aside: Some(parked),
                },
            ),
            (Some(info), _) => (
                format!("an interrupted replacement left `{parked}` and no new container: put it back as `{}`", self.name()),
                Leftover::Undo {
                    set_aside: parked,
                    restart: restart(Some(info)),
                },
            ),
            (None, None) => return None,
            (None, Some(intent)) => match &seen.container {
                Some(live) if live.id.as_str() == intent.old_id => (
                    "an interrupted replacement stopped before the container was set aside: give it its restart policy back".to_owned(),
                    Leftover::Restore {
                        id: intent.old_id.clone(),
                        restart: intent.restart,
                    },
                ),
                _ => (
                    "an interrupted replacement had finished".to_owned(),
                    Leftover::Finish { set_aside: None },
                ),
            },
        };
        let op = ContainerOp::Recover(leftover);
        Some((self.change(&op, detail), op))
    }

    pub(super) fn recover(&self, context: &Context, leftover: &Leftover) -> Result<()> {
        let engine = context.docker.engine();
        let name = self.name();
        match leftover {
            Leftover::Finish { set_aside } => {
                if let Some(set_aside) = set_aside {
                    engine
                        .remove_container(set_aside, true)
                        .with_context(|| format!("failed to remove `{set_aside}`"))?;
                }
            }
            Leftover::Undo { set_aside, restart } => {
                engine
                    .rename_container(set_aside, name)
                    .with_context(|| format!("failed to rename `{set_aside}` back to `{name}`"))?;
                engine
                    .update_restart_policy(name, restart_policy(*restart))
                    .with_context(|| format!("failed to give `{name}` its restart policy back"))?;
            }
            Leftover::Restore { id, restart } => {
                engine
                    .update_restart_policy(id, restart_policy(*restart))
                    .with_context(|| format!("failed to give `{name}` its restart policy back"))?;
            }
        }
        journal::clear(context.host, &self.id())
    }

    pub(super) fn replace(
        &self,
        context: &Context,
        live: &ContainerInfo,
        image_present: bool,
    ) -> Result<()> {
        self.ensure_image(context, image_present)?;
        self.ensure_sources(context)?;
        let engine = context.docker.engine();
        let name = self.name();
        let old = live.id.as_str();
        let parked = set_aside_name(name);
        let policy = RestartPolicy::from_docker(&live.host_config.restart_policy);
        journal::record(
            context.host,
            &self.id(),
            &ReplaceIntent {
                old_id: live.id.to_string(),
                restart: policy,
            },
        )?;
        engine
            .update_restart_policy(old, restart_policy(RestartPolicy::No))
            .with_context(|| format!("failed to turn off the old `{name}`'s restart policy"))?;
        drain(
            context.docker,
            &self.id(),
            live,
            &format!("the old `{name}`"),
        )
        .with_context(|| format!("failed to stop the old `{name}`"))?;
        engine
            .rename_container(old, &parked)
            .with_context(|| format!("failed to set the old `{name}` aside as `{parked}`"))?;
        let outcome = match self.create_and_start(context) {
            Ok(()) => engine.remove_container(old, false).with_context(|| {
                format!("the new `{name}` runs, but the old one (`{parked}`) could not be removed")
            }),
            Err(error) => {
                let restored = engine
                    .rename_container(old, name)
                    .and_then(|()| engine.update_restart_policy(name, restart_policy(policy)))
                    .and_then(|()| {
                        if live.state.running {
                            engine.start_container(name)
                        } else {
                            Ok(())
                        }
                    });
                match restored {
                    Ok(()) => {
                        journal::clear(context.host, &self.id())?;
                        Err(error.context(format!("the new `{name}` did not start; the previous container is back in place")))
                    }
                    // Still journaled: the next run puts it back.
                    Err(second) => Err(error.context(format!(
                        "the new `{name}` did not start, and putting the previous one back failed ({second}); it is kept as `{parked}`, and the next run puts it back"
                    ))),
                }
            }
        };
        if outcome.is_ok() {
            journal::clear(context.host, &self.id())?;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        host::Host,
        plan::{Kind, ResourceId},
    };

    /// The journal outlives an upgrade: an entry the previous release wrote (the policy as the
    /// string `docker update --restart` takes) loads as the enum, and is written back the same.
    #[test]
    fn a_journal_entry_of_the_previous_release_still_loads() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        let id = ResourceId::new(Kind::Container, "gitlab-runner");
        let old_release = r#"{"schema_version":1,"intents":{"container/gitlab-runner":{"old_id":"4f2a9c","restart":"on-failure:3"}}}"#;
        host.write_atomic(&journal::path(), old_release.as_bytes(), 0o600)
            .unwrap();
        let intent = journal::read::<ReplaceIntent>(&host, &id).unwrap().unwrap();
        assert_eq!(
            intent,
            ReplaceIntent {
                old_id: "4f2a9c".into(),
                restart: RestartPolicy::OnFailure(Some(3)),
            }
        );
        assert_eq!(
            serde_json::to_value(&intent).unwrap(),
            serde_json::json!({"old_id": "4f2a9c", "restart": "on-failure:3"})
        );
        for (text, policy) in [
            ("no", RestartPolicy::No),
            ("always", RestartPolicy::Always),
            ("unless-stopped", RestartPolicy::UnlessStopped),
            ("on-failure", RestartPolicy::OnFailure(None)),
        ] {
            let entry = serde_json::json!({"old_id": "4f2a9c", "restart": text});
            assert_eq!(
                serde_json::from_value::<ReplaceIntent>(entry)
                    .unwrap()
                    .restart,
                policy,
                "{text}"
            );
        }
    }
}
