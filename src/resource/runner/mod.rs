//! `runner/NAME`: one runner's registration with GitLab, which never happens twice.
//!
//! What is registered is known from berth's ledger (`/var/lib/berth/state.json`) and the
//! runner's `[[runners]]` entry in config.toml, so `plan` asks GitLab nothing; `apply` makes the
//! one call the plan listed:
//!
//! - `token_file` (a `glrt-` runner authentication token, created in GitLab): verified with
//!   `POST /runners/verify` and this host's system ID, as `gitlab-runner register` does, then
//!   written to the entry. A new token in the file (found by fingerprint) is verified and
//!   written the same way; gitlab-runner rotating its own token later changes nothing.
//! - `registration_token_file` (deprecated): `POST /runners`, only when no entry of this name
//!   and URL exists.
//! - `create_token_file`: `POST /user/runners` creates the runner once; its token is kept.
//! - an entry already in config.toml is adopted (recorded) without a call.
//!
//! A runner that left the profile but is in the ledger is unregistered: `DELETE /runners` when
//! berth registered or created it (or `delete_on_remove`), only this host's runner manager
//! (`DELETE /runners/managers`) for a glrt- token, no call for an adopted one; then its entry
//! and its ledger record go. Entries not in the ledger are never touched. An HTTP failure fails
//! this runner only. Tokens never reach output, errors or the ledger (see `secret`).

pub(crate) mod config;
pub(crate) mod config_toml;
mod decision;
mod feature_flags;
pub(crate) mod gitlab;
pub(crate) mod helper_image;
pub(crate) mod identity;
mod keys;
pub(crate) mod ledger;
mod long_polling;
pub(crate) mod secret_files;
pub(crate) mod section;
pub(crate) mod sizing;
pub(crate) mod system_id;
pub(crate) mod version;

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use toml_edit::DocumentMut;

use crate::{
    host::{FileMode, Host, HostPath},
    plan::{Action, Change, Diff, FieldChange, Kind, ResourceId},
    resource::{Context, Earlier, Made, Resource, journal},
    secret::{Fingerprint, Secret},
};
use config::FILE_MODE;
use config_toml::Credentials;
use decision::{Call, Decision, RunnerOp};
use gitlab::{Deleted, GitLab, MayHaveArrived, RunnerInfo};
use ledger::{Ledger, Origin, Recorded};
use section::{RunnerScope, RunnerSettings, RunnerSpec, ServerParams, TokenSource, normalize_url};

pub(crate) struct Runner {
    name: String,
    /// config.toml: the profile's for a declared runner, the ledger's for a removed one.
    config: HostPath,
    role: Role,
}

enum Role {
    Declared(Box<RunnerSpec>),
    /// In the ledger, gone from the profile.
    Removed,
    /// The ledger could not be read, so removed runners cannot be known: a failure, or a
    /// warning when only this user may not read it (`plan` as non-root).
    UnreadableLedger {
        message: String,
        permission: bool,
    },
}

pub(crate) struct RunnerState {
    /// Why this user cannot read what the runner's state is made of (`plan` as non-root).
    unreadable: Option<String>,
    entry: Option<RunnerEntry>,
    recorded: Option<Recorded>,
    /// The declared runner's token file.
    token: TokenFile,
    /// This host's valid `.runner_system_id`, if there is one.
    system_id: Option<String>,
    /// A registration an earlier run sent without hearing how it ended.
    pending: Option<Registering>,
    /// The system ID, when berth recorded it on another machine than this one.
    copied_system_id: Option<String>,
}

/// What the journal keeps while a runner is requested from GitLab: nothing secret, enough for
/// an operator to find the runner GitLab may have created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Registering {
    url: String,
    /// When the request was sent (RFC 3339 in the journal, whole seconds as GitLab's runner
    /// list shows them): a runner created then, named like this one, is it.
    sent_at: jiff::Timestamp,
}

/// `at` without its fraction of a second: an operator compares it with GitLab's list by eye.
fn whole_seconds(at: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(at.as_second()).unwrap_or(at)
}

/// The runner's `[[runners]]` entry as found by name.
struct RunnerEntry {
    url: Option<String>,
    id: Option<i64>,
    token: Option<Secret>,
}

impl RunnerEntry {
    /// Has what gitlab-runner needs to run it.
    fn is_complete(&self) -> bool {
        self.token.is_some() && self.id.is_some()
    }
}

pub(super) enum TokenFile {
    NotNeeded,
    Missing,
    Empty,
    Present { token: Secret, mode: u32 },
}

/// The runners in berth's ledger that the profile no longer declares, to unregister. A ledger
/// that cannot be read becomes one resource that fails, so the run exits 1 and says why.
pub(crate) fn removed(settings: &RunnerSettings, host: &Host) -> Vec<Runner> {
    match Ledger::load(host) {
        Ok(ledger) => ledger
            .runners
            .into_iter()
            .filter(|(name, _)| !settings.runners.iter().any(|spec| &spec.name == name))
            .map(|(name, recorded)| Runner {
                name,
                config: recorded.config,
                role: Role::Removed,
            })
            .collect(),
        Err(error) => vec![Runner {
            name: String::new(),
            config: settings.config.clone(),
            role: Role::UnreadableLedger {
                message: format!("{error:#}"),
                permission: crate::host::permission_denied(&error),
            },
        }],
    }
}

impl Runner {
    pub(crate) fn declared(settings: &RunnerSettings, spec: &RunnerSpec) -> Self {
        Self {
            name: spec.name.clone(),
            config: settings.config.clone(),
            role: Role::Declared(Box::new(spec.clone())),
        }
    }

    fn spec(&self) -> Option<&RunnerSpec> {
        match &self.role {
            Role::Declared(spec) => Some(spec),
            _ => None,
        }
    }

    fn read_state(&self, host: &Host) -> Result<RunnerState> {
        let mut ledger = Ledger::load(host)?;
        let system_id = system_id::read(host, &self.config)?;
        let here = identity::machine(host)?;
        let copied_system_id = system_id
            .clone()
            .filter(|id| identity::made_elsewhere(&ledger, id, here.as_deref()));
        let recorded = ledger.runners.shift_remove(&self.name);
        let entry = config::read(host, &self.config)?.and_then(|(_, document)| {
            let index = config_toml::find(&document, &self.name)?;
            Some(RunnerEntry {
                url: config_toml::entry_str(&document, index, "url"),
                id: config_toml::entry_id(&document, index),
                token: config_toml::entry_token(&document, index),
            })
        });
        let token = match self.spec() {
            None => TokenFile::NotNeeded,
            Some(spec) => read_token_file(host, spec.token.file())?,
        };
        Ok(RunnerState {
            unreadable: None,
            entry,
            recorded,
            token,
            system_id,
            pending: journal::read(host, &self.id())?,
            copied_system_id,
        })
    }

    /// A request that may create a runner in GitLab: the config.toml directory is checked
    /// writable first (a runner created whose token cannot be kept is an orphan), the request
    /// is journaled, and the entry cleared only once its answer is kept or GitLab surely did
    /// not act on it.
    fn requesting<T>(
        &self,
        host: &Host,
        url: &str,
        request: impl FnOnce() -> Result<T>,
        keep: impl FnOnce(T) -> Result<()>,
    ) -> Result<()> {
        check_writable(host, &self.config)?;
        let id = self.id();
        journal::record(
            host,
            &id,
            &Registering {
                url: url.to_owned(),
                sent_at: whole_seconds(jiff::Timestamp::now()),
            },
        )?;
        let answer = match request() {
            Ok(answer) => answer,
            Err(error) if error.downcast_ref::<MayHaveArrived>().is_some() => {
                return Err(error.context(format!(
                    "not retried: GitLab may have created the runner before failing; berth will not register `{}` again until that is looked into (see the next plan)",
                    self.name
                )));
            }
            Err(error) => {
                journal::clear(host, &id)?;
                return Err(error);
            }
        };
        // A kept answer clears the entry; one that could not be kept leaves it, and the
        // refusal the next run prints names the runner to delete.
        keep(answer)?;
        journal::clear(host, &id)
    }

    fn gitlab(&self, host: &Host, url: &str, tls_ca_file: Option<&HostPath>) -> Result<GitLab> {
        GitLab::new(host, url, tls_ca_file)
    }

    /// Writes the credentials into the entry (added when missing), reading config.toml afresh:
    /// gitlab-runner may have rewritten it while GitLab answered.
    fn write_entry(
        &self,
        host: &Host,
        url: &str,
        registration: &crate::resource::runner::gitlab::Registration,
    ) -> Result<()> {
        let mut document = config::read(host, &self.config)?
            .map_or_else(DocumentMut::new, |(_, document)| document);
        let index = match config_toml::find(&document, &self.name) {
            Some(index) => index,
            None => config_toml::add_entry(&mut document, &self.name),
        };
        config_toml::write_credentials(
            &mut document,
            index,
            &Credentials {
                url,
                id: registration.id,
                token: &registration.token,
                token_obtained_at: config_toml::now(),
                token_expires_at: config_toml::expiry(registration.token_expires_at.as_deref()),
            },
        );
        config::write(host, &self.config, &document.to_string())
    }

    fn record(
        &self,
        host: &Host,
        spec: &RunnerSpec,
        id: i64,
        source: Origin,
        fingerprint: Fingerprint,
    ) -> Result<()> {
        let recorded = Recorded {
            url: spec.url.clone(),
            id,
            source,
            token_fingerprint: fingerprint,
            config: self.config.clone(),
            delete_on_remove: spec.delete_on_remove,
            tls_ca_file: spec.tls_ca_file.clone(),
        };
        Ledger::update(host, |ledger| {
            ledger.runners.insert(self.name.clone(), recorded);
        })
    }

    /// Carries out what `diff` decided.
    fn carry_out(&self, context: &Context, op: &RunnerOp) -> Result<()> {
        let host = context.host;
        match op {
            RunnerOp::Verify { spec, token, .. } => {
                let system_id = system_id::ensure(host, &self.config)?;
                let registration = self
                    .gitlab(host, &spec.url, spec.tls_ca_file.as_ref())?
                    .verify(token, &system_id, &RunnerInfo::of(spec))?;
                self.write_entry(host, &spec.url, &registration)?;
                self.record(
                    host,
                    spec,
                    registration.id,
                    Origin::Verified,
                    token.fingerprint(),
                )?;
                identity::remember(host, &self.config)
            }
            RunnerOp::Register {
                spec,
                token,
                params,
            } => {
                let gitlab = self.gitlab(host, &spec.url, spec.tls_ca_file.as_ref())?;
                self.requesting(
                    host,
                    &spec.url,
                    || gitlab.register(token, &self.name, params, &RunnerInfo::of(spec)),
                    |registration| self.keep(host, spec, &registration, Origin::Registered),
                )
            }
            RunnerOp::Create {
                spec,
                token,
                scope,
                params,
            } => {
                let gitlab = self.gitlab(host, &spec.url, spec.tls_ca_file.as_ref())?;
                let mut created = None;
                self.requesting(
                    host,
                    &spec.url,
                    || gitlab.create(token, &self.name, scope, params),
                    |registration| {
                        self.keep(host, spec, &registration, Origin::Created)?;
                        created = Some(registration);
                        Ok(())
                    },
                )?;
                let registration = created.context("a kept registration")?;
                // As `gitlab-runner register --token` would next: make this host a manager.
                let system_id = system_id::ensure(host, &self.config)?;
                gitlab
                    .verify(&registration.token, &system_id, &RunnerInfo::of(spec))
                    .with_context(|| {
                    format!(
                        "runner #{} was created and written to `{}`, but verifying it failed; gitlab-runner retries when it asks for jobs",
                        registration.id, self.config
                    )
                })?;
                identity::remember(host, &self.config)
            }
            RunnerOp::Adopt {
                spec,
                source,
                fingerprint,
                id,
            } => {
                self.record(host, spec, *id, *source, fingerprint.clone())?;
                identity::remember(host, &self.config)
            }
            RunnerOp::RegenerateSystemId { system_id: copied } => {
                if let Some(new) = identity::regenerate(host, &self.config, copied)? {
                    tracing::info!(
                        "{}: new system ID `{new}` in place of `{copied}`",
                        self.id()
                    );
                }
                Ok(())
            }
            RunnerOp::Record { spec, recorded, .. } => self.record(
                host,
                spec,
                recorded.id,
                recorded.source,
                recorded.token_fingerprint.clone(),
            ),
            RunnerOp::Unregister {
                call,
                token,
                recorded,
            } => {
                self.unregister(host, call, token, recorded)?;
                self.forget(host)
            }
            RunnerOp::Forget { .. } => self.forget(host),
            RunnerOp::ForgetRequest => journal::clear(host, &self.id()),
        }
    }

    /// Writes what GitLab just created; if that fails, says which runner now exists in GitLab
    /// without a home, since its token is shown only once.
    fn keep(
        &self,
        host: &Host,
        spec: &RunnerSpec,
        registration: &crate::resource::runner::gitlab::Registration,
        source: Origin,
    ) -> Result<()> {
        self.write_entry(host, &spec.url, registration)
            .and_then(|()| self.record(host, spec, registration.id, source, registration.token.fingerprint()))
            .with_context(|| {
                format!(
                    "GitLab created runner #{} but berth could not keep its token; delete runner #{} in GitLab before running berth again",
                    registration.id, registration.id
                )
            })
    }

    /// Tells GitLab (or not, as `call` says), then drops the runner's entry from config.toml.
    fn unregister(
        &self,
        host: &Host,
        call: &Call,
        token: &Secret,
        recorded: &Recorded,
    ) -> Result<()> {
        let gitlab = || self.gitlab(host, &recorded.url, recorded.tls_ca_file.as_ref());
        let outcome = match call {
            Call::DeleteRunner => Some(gitlab()?.delete_runner(token)?),
            Call::DeleteManager { system_id } => Some(gitlab()?.delete_manager(token, system_id)?),
            Call::None => None,
        };
        match outcome {
            Some(Deleted::UnknownToken) => tracing::warn!(
                "{}: GitLab does not know the runner's token any more (deleted or revoked there); removing the entry",
                self.id()
            ),
            Some(Deleted::Orphaned) => tracing::warn!(
                "{}: GitLab answers that the runner is orphaned (its project or group is gone); removing the entry",
                self.id()
            ),
            Some(Deleted::NoSuchManager) => tracing::warn!(
                "{}: GitLab lists no runner manager for this host; removing the entry",
                self.id()
            ),
            Some(Deleted::Done) | None => {}
        }
        if let Some((_, mut document)) = config::read(host, &self.config)?
            && let Some(index) = config_toml::find(&document, &self.name)
        {
            config_toml::remove_entry(&mut document, index);
            config::write(host, &self.config, &document.to_string())?;
        }
        Ok(())
    }

    /// Drops the runner from berth's ledger.
    fn forget(&self, host: &Host) -> Result<()> {
        Ledger::update(host, |ledger| {
            ledger.runners.shift_remove(&self.name);
        })
    }
}

impl Resource for Runner {
    type Observed = RunnerState;
    type Op = RunnerOp;

    fn id(&self) -> ResourceId {
        match self.role {
            Role::UnreadableLedger { .. } => ResourceId::singleton(Kind::RunnerLedger),
            _ => ResourceId::new(Kind::Runner, &self.name),
        }
    }

    fn observe(&self, context: &Context) -> Result<RunnerState> {
        let state = match &self.role {
            Role::UnreadableLedger {
                message,
                permission,
            } if *permission => Err(anyhow!("{message}")),
            Role::UnreadableLedger { message, .. } => bail!("{message}"),
            _ => self.read_state(context.host),
        };
        let denied = |error: &anyhow::Error| {
            matches!(
                self.role,
                Role::UnreadableLedger {
                    permission: true,
                    ..
                }
            ) || crate::host::permission_denied(error)
        };
        match state {
            Err(error) if denied(&error) => Ok(RunnerState {
                unreadable: Some(format!("{error:#}")),
                entry: None,
                recorded: None,
                token: TokenFile::NotNeeded,
                system_id: None,
                pending: None,
                copied_system_id: None,
            }),
            other => other,
        }
    }

    fn diff(&self, observed: &RunnerState, _earlier: &Earlier) -> Diff<RunnerOp> {
        let mut diff = Diff::none();
        if let Some(reason) = &observed.unreadable {
            diff.warn(config::not_planned(reason));
            return diff;
        }
        if let (Some(spec), TokenFile::Present { mode, .. }) = (self.spec(), &observed.token)
            && mode & 0o077 != 0
        {
            diff.warn(format!(
                "the {} `{}` is readable by other users (mode {mode:04o}); `chmod {FILE_MODE:o}` it",
                spec.token.key(),
                spec.token.file()
            ));
        }
        match self.decide(observed) {
            Decision::InSync => {}
            Decision::Refuse { detail, reason } => {
                diff.refuse(Change::new(self.id(), Action::Register, detail), reason);
            }
            Decision::Do(op) => diff.push(self.change(&op, observed), op),
        }
        diff
    }

    /// A registration writes the runner's entry in config.toml, which `runner-config` then
    /// fills with the profile's settings.
    fn action(&self, op: &RunnerOp) -> Action {
        op.action()
    }

    fn made(&self, op: &RunnerOp) -> Vec<Made> {
        match op {
            RunnerOp::Verify {
                changed_from: None, ..
            }
            | RunnerOp::Register { .. }
            | RunnerOp::Create { .. } => vec![Made::Registered],
            // gitlab-runner reads `.runner_system_id` when it starts.
            RunnerOp::RegenerateSystemId { .. } => {
                vec![Made::ReadAtStart(vec![system_id::FILE_NAME.to_owned()])]
            }
            RunnerOp::Verify {
                changed_from: Some(_),
                ..
            }
            | RunnerOp::Adopt { .. }
            | RunnerOp::Record { .. }
            | RunnerOp::Unregister { .. }
            | RunnerOp::Forget { .. }
            | RunnerOp::ForgetRequest => Vec::new(),
        }
    }

    fn apply(&self, context: &Context, op: &RunnerOp) -> Result<()> {
        self.carry_out(context, op)
    }

    fn leftover(&self, context: &Context) -> Result<Option<(Change, RunnerOp)>> {
        // Only a request whose answer was kept after all is finished here; one whose answer
        // was lost is refused by `diff` until the operator looked.
        let Ok(state) = self.read_state(context.host) else {
            return Ok(None);
        };
        let kept =
            state.entry.as_ref().is_some_and(RunnerEntry::is_complete) && state.recorded.is_some();
        Ok((state.pending.is_some() && kept).then(|| {
            let op = RunnerOp::ForgetRequest;
            (self.change(&op, &state), op)
        }))
    }
}

/// Fails unless a file can be written, synced and removed beside config.toml: berth asks
/// GitLab for a runner only when it can keep the answer.
fn check_writable(host: &Host, config: &HostPath) -> Result<()> {
    let dir = config
        .parent()
        .with_context(|| format!("`{config}` has no directory"))?;
    let probe = dir.join(".berth-write-check");
    config::distrust_directory(host, config);
    host.ensure_dir(&dir, 0o700)?;
    // About what an entry with its token takes.
    host.write_secret(&probe, &[b'#'; 4096], 0o600)
        .and_then(|()| host.remove_file(&probe))
        .with_context(|| {
            format!("`{dir}` cannot take config.toml's new entry (disk full or read-only?); GitLab was not asked for a runner")
        })
}

/// Far more than any GitLab token takes.
const TOKEN_LIMIT: u64 = 64 << 10;

/// Reads a token file: trimmed, since `echo token > file` adds a newline.
pub(super) fn read_token_file(host: &Host, file: &HostPath) -> Result<TokenFile> {
    let Some(text) = host
        .read_limited(file, TOKEN_LIMIT)
        .with_context(|| format!("failed to read the token file `{file}`"))?
    else {
        return Ok(TokenFile::Missing);
    };
    let token = text.trim();
    if token.is_empty() {
        return Ok(TokenFile::Empty);
    }
    let mode = host.mode(file)?.map_or(0, |FileMode(mode)| mode);
    Ok(TokenFile::Present {
        token: Secret::new(token),
        mode,
    })
}

#[cfg(test)]
mod tests;
