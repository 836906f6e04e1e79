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
pub(crate) mod gitlab;
pub(crate) mod ledger;
pub(crate) mod section;
pub(crate) mod system_id;

use anyhow::{Context as _, Result, anyhow, bail};
use toml_edit::DocumentMut;

use crate::{
    host::{FileMode, Host, HostPath},
    plan::{Action, Change, Diff, FieldChange, ResourceId},
    resource::{Context, Resource},
    secret::{Fingerprint, Secret},
};
use config::FILE_MODE;
use config_toml::Credentials;
use gitlab::{Deleted, GitLab};
use ledger::{Ledger, Recorded, Source};
use section::{RunnerSettings, RunnerSpec, TokenSource, normalize_url};

pub struct Runner {
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

pub struct RunnerState {
    /// Why this user cannot read what the runner's state is made of (`plan` as non-root).
    unreadable: Option<String>,
    entry: Option<Entry>,
    recorded: Option<Recorded>,
    /// The declared runner's token file.
    token: TokenFile,
    /// This host's valid `.runner_system_id`, if there is one.
    system_id: Option<String>,
}

/// The runner's `[[runners]]` entry as found by name.
struct Entry {
    url: Option<String>,
    id: Option<i64>,
    token: Option<Secret>,
}

impl Entry {
    /// Has what gitlab-runner needs to run it.
    fn is_complete(&self) -> bool {
        self.token.is_some() && self.id.is_some()
    }
}

enum TokenFile {
    NotNeeded,
    Missing,
    Empty,
    Present { token: Secret, mode: u32 },
}

/// What apply will call, decided from the observed state alone.
#[derive(Debug, Clone, PartialEq)]
enum Decision {
    InSync,
    Refuse {
        detail: String,
        reason: String,
    },
    /// `POST /runners/verify` with the token file's glrt- token, then write it.
    Verify {
        changed_from: Option<Fingerprint>,
    },
    /// `POST /runners` with a registration token.
    Register,
    /// `POST /user/runners`, then verify.
    Create,
    /// Record an existing entry in the ledger; no GitLab call.
    Adopt {
        source: Source,
        fingerprint: Fingerprint,
        id: i64,
    },
    /// Update what the ledger remembers for removal.
    Record(Vec<FieldChange>),
    /// Removed from the profile: call GitLab (or not), then drop the entry and the record.
    Unregister(Call),
    /// Removed from the profile, but its entry (and token) are already gone.
    Forget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    DeleteRunner,
    DeleteManager,
    None,
}

/// The runners in berth's ledger that the profile no longer declares, to unregister. A ledger
/// that cannot be read becomes one resource that fails, so the run exits 1 and says why.
pub fn removed(settings: &RunnerSettings, host: &Host) -> Vec<Runner> {
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
                permission: config::permission_denied(&error),
            },
        }],
    }
}

impl Runner {
    pub fn declared(settings: &RunnerSettings, spec: &RunnerSpec) -> Self {
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

    fn decide(&self, observed: &RunnerState) -> Decision {
        match &self.role {
            Role::Declared(spec) => self.decide_declared(spec, observed),
            Role::Removed => self.decide_removed(observed),
            Role::UnreadableLedger { .. } => Decision::InSync,
        }
    }

    fn decide_declared(&self, spec: &RunnerSpec, observed: &RunnerState) -> Decision {
        let same_url = |url: &str| normalize_url(url) == normalize_url(&spec.url);
        if let Some(recorded) = &observed.recorded
            && !same_url(&recorded.url)
        {
            return Decision::Refuse {
                detail: format!("move to {}", spec.url),
                reason: format!(
                    "berth registered `{}` with `{}` (runner #{}); it does not move a runner to another GitLab: remove the runner from the profile and apply (which unregisters it), then add it back with the new url",
                    self.name, recorded.url, recorded.id
                ),
            };
        }
        let entry = observed.entry.as_ref();
        if observed.recorded.is_none()
            && let Some(url) = entry.and_then(|entry| entry.url.as_deref())
            && !same_url(url)
        {
            return Decision::Refuse {
                detail: format!("register with {}", spec.url),
                reason: format!(
                    "`{}` already has a runner named `{}` for `{url}`, which berth did not register; rename the runner in the profile, or remove that entry by hand",
                    self.config, self.name
                ),
            };
        }
        let complete = entry.is_some_and(Entry::is_complete);
        let file = spec.token.file();
        let missing = |what: &str| Decision::Refuse {
            detail: self.register_detail(spec, observed),
            reason: format!(
                "the {} `{file}` {what}: {}",
                spec.token.key(),
                token_hint(&spec.token)
            ),
        };
        match &spec.token {
            TokenSource::Authentication { .. } => {
                let token = match &observed.token {
                    TokenFile::Present { token, .. } => token,
                    // Registered already: the token file may have been removed on purpose.
                    _ if complete && observed.recorded.is_some() => {
                        return self.record_changes(spec, observed);
                    }
                    TokenFile::Empty => return missing("is empty"),
                    _ => return missing("does not exist"),
                };
                let fingerprint = token.fingerprint();
                let entry_token = entry.and_then(|entry| entry.token.as_ref());
                match (&observed.recorded, entry_token) {
                    _ if !complete => Decision::Verify { changed_from: None },
                    (None, Some(current)) if current == token => Decision::Adopt {
                        source: Source::Verified,
                        fingerprint,
                        id: entry.and_then(|entry| entry.id).unwrap_or_default(),
                    },
                    (None, current) => Decision::Verify {
                        changed_from: current.map(Secret::fingerprint),
                    },
                    (Some(recorded), _) if recorded.token_fingerprint == fingerprint => {
                        self.record_changes(spec, observed)
                    }
                    (Some(recorded), _) => Decision::Verify {
                        changed_from: Some(recorded.token_fingerprint.clone()),
                    },
                }
            }
            TokenSource::Registration { .. } | TokenSource::Create { .. } => {
                if complete {
                    return match (&observed.recorded, entry) {
                        (None, Some(entry)) => Decision::Adopt {
                            source: Source::Adopted,
                            fingerprint: entry.token.as_ref().expect("complete").fingerprint(),
                            id: entry.id.unwrap_or_default(),
                        },
                        _ => self.record_changes(spec, observed),
                    };
                }
                if let Some(recorded) = &observed.recorded {
                    return Decision::Refuse {
                        detail: self.register_detail(spec, observed),
                        reason: format!(
                            "berth registered `{}` as runner #{} but its entry in `{}` is gone, and its token with it; registering again would leave runner #{} behind in GitLab: delete it there, then remove `{}` from `{}` to register anew",
                            self.name,
                            recorded.id,
                            self.config,
                            recorded.id,
                            self.name,
                            ledger::PATH
                        ),
                    };
                }
                match observed.token {
                    TokenFile::Present { .. }
                        if matches!(spec.token, TokenSource::Create { .. }) =>
                    {
                        Decision::Create
                    }
                    TokenFile::Present { .. } => Decision::Register,
                    TokenFile::Empty => missing("is empty"),
                    _ => missing("does not exist"),
                }
            }
        }
    }

    /// What the ledger must learn when everything else is in sync.
    fn record_changes(&self, spec: &RunnerSpec, observed: &RunnerState) -> Decision {
        let Some(recorded) = &observed.recorded else {
            return Decision::InSync;
        };
        let mut fields = Vec::new();
        if recorded.delete_on_remove != spec.delete_on_remove {
            fields.push(FieldChange::new(
                "delete_on_remove",
                Some(recorded.delete_on_remove.into()),
                Some(spec.delete_on_remove.into()),
            ));
        }
        if recorded.tls_ca_file != spec.tls_ca_file {
            let show = |path: &Option<HostPath>| path.as_ref().map(|path| path.to_string().into());
            fields.push(FieldChange::new(
                "tls_ca_file",
                show(&recorded.tls_ca_file),
                show(&spec.tls_ca_file),
            ));
        }
        if recorded.config != self.config {
            fields.push(FieldChange::new(
                "config",
                Some(recorded.config.to_string().into()),
                Some(self.config.to_string().into()),
            ));
        }
        if fields.is_empty() {
            Decision::InSync
        } else {
            Decision::Record(fields)
        }
    }

    fn decide_removed(&self, observed: &RunnerState) -> Decision {
        let Some(recorded) = &observed.recorded else {
            return Decision::InSync;
        };
        let ours = observed.entry.as_ref().filter(|entry| {
            entry.token.is_some()
                && entry
                    .url
                    .as_deref()
                    .is_none_or(|url| normalize_url(url) == normalize_url(&recorded.url))
        });
        if ours.is_none() {
            return Decision::Forget;
        }
        let call = match recorded.source {
            _ if recorded.delete_on_remove => Call::DeleteRunner,
            Source::Registered | Source::Created => Call::DeleteRunner,
            Source::Verified if observed.system_id.is_some() => Call::DeleteManager,
            Source::Verified | Source::Adopted => Call::None,
        };
        Decision::Unregister(call)
    }

    fn register_detail(&self, spec: &RunnerSpec, observed: &RunnerState) -> String {
        let system_id = if observed.system_id.is_none() {
            format!("; writes `{}` first", system_id::path(&self.config))
        } else {
            String::new()
        };
        match &spec.token {
            TokenSource::Authentication { file } => format!(
                "verify the glrt- token in `{file}` with {} (POST /api/v4/runners/verify){system_id}",
                spec.url
            ),
            TokenSource::Registration { .. } => format!(
                "register with {} using a registration token (POST /api/v4/runners; deprecated)",
                spec.url
            ),
            TokenSource::Create { scope, .. } => format!(
                "create the runner ({}) in {} (POST /api/v4/user/runners) and verify it{system_id}",
                scope.runner_type(),
                spec.url
            ),
        }
    }

    fn change(&self, decision: &Decision, observed: &RunnerState) -> Option<Change> {
        let id = self.id();
        let recorded = observed.recorded.as_ref();
        Some(match decision {
            Decision::InSync => return None,
            Decision::Refuse { detail, reason } => {
                Change::new(id, Action::Register, detail.clone()).refused_because(reason.clone())
            }
            Decision::Verify { changed_from: None } | Decision::Register | Decision::Create => {
                let spec = self.spec().expect("declared");
                Change::new(id, Action::Register, self.register_detail(spec, observed))
            }
            Decision::Verify {
                changed_from: Some(before),
            } => {
                let after = match &observed.token {
                    TokenFile::Present { token, .. } => token.fingerprint(),
                    _ => unreachable!("a verify has a token"),
                };
                Change::new(
                    id,
                    Action::Update,
                    format!("token (fingerprint {} → {})", before.short(), after.short()),
                )
                .with_fields(vec![FieldChange::new(
                    "token_fingerprint",
                    Some(before.as_str().into()),
                    Some(after.as_str().into()),
                )])
            }
            Decision::Adopt {
                source,
                id: runner_id,
                ..
            } => Change::new(
                id,
                Action::Update,
                format!(
                    "record the existing entry (runner #{runner_id}) in berth's ledger as {}; no GitLab call",
                    source.as_str()
                ),
            ),
            Decision::Record(fields) => Change::new(
                id,
                Action::Update,
                format!(
                    "record {} in berth's ledger",
                    fields
                        .iter()
                        .map(|field| field.path.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .with_fields(fields.clone()),
            Decision::Unregister(call) => {
                let recorded = recorded.expect("an unregister has a record");
                let what = match call {
                    Call::DeleteRunner => format!(
                        "delete runner #{} in {} (DELETE /api/v4/runners)",
                        recorded.id, recorded.url
                    ),
                    Call::DeleteManager => format!(
                        "remove this host's runner manager from runner #{} (DELETE /api/v4/runners/managers); the runner stays in GitLab",
                        recorded.id
                    ),
                    Call::None => format!(
                        "no GitLab call: berth did not create runner #{}, it stays in GitLab",
                        recorded.id
                    ),
                };
                let mut change = Change::new(
                    id,
                    Action::Unregister,
                    format!("{what}; its entry leaves `{}`", self.config),
                );
                if *call == Call::None && recorded.source == Source::Verified {
                    change = change.with_warning(format!(
                        "`{}` is missing, so this host's runner manager cannot be named; it stays in GitLab until GitLab drops stale managers",
                        system_id::path(&self.config)
                    ));
                }
                change
            }
            Decision::Forget => {
                let recorded = recorded.expect("a forget has a record");
                Change::new(
                    id,
                    Action::Delete,
                    format!(
                        "forget it in berth's ledger: its entry in `{}` is gone, and its token with it, so GitLab cannot be told",
                        self.config
                    ),
                )
                .with_warning(format!(
                    "runner #{} may still be listed in {}; delete it there if so",
                    recorded.id, recorded.url
                ))
            }
        })
    }

    fn read_state(&self, host: &Host) -> Result<RunnerState> {
        let recorded = Ledger::load(host)?.runners.shift_remove(&self.name);
        let entry = config::read(host, &self.config)?.and_then(|(_, document)| {
            let index = config_toml::find(&document, &self.name)?;
            Some(Entry {
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
            system_id: system_id::read(host, &self.config)?,
        })
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
        source: Source,
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

    fn apply_declared(
        &self,
        cx: &Context,
        spec: &RunnerSpec,
        observed: &RunnerState,
        decision: &Decision,
    ) -> Result<()> {
        let host = cx.host;
        let token = || match &observed.token {
            TokenFile::Present { token, .. } => Ok(token.clone()),
            _ => Err(anyhow!(
                "the {} `{}` is missing",
                spec.token.key(),
                spec.token.file()
            )),
        };
        match decision {
            Decision::Verify { .. } => {
                let token = token()?;
                let system_id = system_id::ensure(host, &self.config)?;
                let registration = self
                    .gitlab(host, &spec.url, spec.tls_ca_file.as_ref())?
                    .verify(&token, &system_id)?;
                self.write_entry(host, &spec.url, &registration)?;
                self.record(
                    host,
                    spec,
                    registration.id,
                    Source::Verified,
                    token.fingerprint(),
                )
            }
            Decision::Register => {
                let TokenSource::Registration { params, .. } = &spec.token else {
                    bail!("not a registration-token runner");
                };
                let registration = self
                    .gitlab(host, &spec.url, spec.tls_ca_file.as_ref())?
                    .register(&token()?, &self.name, params)?;
                self.keep(host, spec, &registration, Source::Registered)
            }
            Decision::Create => {
                let TokenSource::Create { scope, params, .. } = &spec.token else {
                    bail!("not a create-token runner");
                };
                let gitlab = self.gitlab(host, &spec.url, spec.tls_ca_file.as_ref())?;
                let registration = gitlab.create(&token()?, &self.name, scope, params)?;
                self.keep(host, spec, &registration, Source::Created)?;
                // As `gitlab-runner register --token` would next: make this host a manager.
                let system_id = system_id::ensure(host, &self.config)?;
                gitlab.verify(&registration.token, &system_id).with_context(|| {
                    format!(
                        "runner #{} was created and written to `{}`, but verifying it failed; gitlab-runner retries when it asks for jobs",
                        registration.id, self.config
                    )
                })?;
                Ok(())
            }
            Decision::Adopt {
                source,
                fingerprint,
                id,
            } => self.record(host, spec, *id, *source, fingerprint.clone()),
            Decision::Record(_) => {
                let recorded = observed.recorded.as_ref().context("no ledger record")?;
                self.record(
                    host,
                    spec,
                    recorded.id,
                    recorded.source,
                    recorded.token_fingerprint.clone(),
                )
            }
            Decision::InSync | Decision::Refuse { .. } => Ok(()),
            Decision::Unregister(_) | Decision::Forget => bail!("`{}` is declared", self.id()),
        }
    }

    /// Writes what GitLab just created; if that fails, says which runner now exists in GitLab
    /// without a home, since its token is shown only once.
    fn keep(
        &self,
        host: &Host,
        spec: &RunnerSpec,
        registration: &crate::resource::runner::gitlab::Registration,
        source: Source,
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

    fn apply_removed(
        &self,
        cx: &Context,
        observed: &RunnerState,
        decision: &Decision,
    ) -> Result<()> {
        let host = cx.host;
        let recorded = observed.recorded.as_ref().context("no ledger record")?;
        if let Decision::Unregister(call) = decision {
            let token = observed
                .entry
                .as_ref()
                .and_then(|entry| entry.token.clone())
                .context("the entry has no token")?;
            let gitlab = || self.gitlab(host, &recorded.url, recorded.tls_ca_file.as_ref());
            let outcome = match call {
                Call::DeleteRunner => Some(gitlab()?.delete_runner(&token)?),
                Call::DeleteManager => {
                    let system_id = observed.system_id.as_deref().context("no system id")?;
                    Some(gitlab()?.delete_manager(&token, system_id)?)
                }
                Call::None => None,
            };
            match outcome {
                Some(Deleted::UnknownToken) => tracing::warn!(
                    "{}: GitLab does not know the runner's token any more (deleted or revoked there); removing the entry",
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
        }
        Ledger::update(host, |ledger| {
            ledger.runners.shift_remove(&self.name);
        })
    }
}

/// Where to get the token a flow needs.
fn token_hint(source: &TokenSource) -> &'static str {
    match source {
        TokenSource::Authentication { .. } => {
            "create the runner in GitLab (Settings > CI/CD > Runners) and put its glrt- token there, readable by root only"
        }
        TokenSource::Registration { .. } => {
            "put the registration token there, readable by root only"
        }
        TokenSource::Create { .. } => {
            "put an access token with the create_runner scope there, readable by root only"
        }
    }
}

impl Resource for Runner {
    type Observed = RunnerState;

    fn id(&self) -> ResourceId {
        match self.role {
            Role::UnreadableLedger { .. } => ResourceId::singleton("runner-ledger"),
            _ => ResourceId::new("runner", &self.name),
        }
    }

    fn observe(&self, cx: &Context) -> Result<RunnerState> {
        let state = match &self.role {
            Role::UnreadableLedger {
                message,
                permission,
            } if *permission => Err(anyhow!("{message}")),
            Role::UnreadableLedger { message, .. } => bail!("{message}"),
            _ => self.read_state(cx.host),
        };
        let denied = |error: &anyhow::Error| {
            matches!(
                self.role,
                Role::UnreadableLedger {
                    permission: true,
                    ..
                }
            ) || config::permission_denied(error)
        };
        match state {
            Err(error) if denied(&error) => Ok(RunnerState {
                unreadable: Some(format!("{error:#}")),
                entry: None,
                recorded: None,
                token: TokenFile::NotNeeded,
                system_id: None,
            }),
            other => other,
        }
    }

    fn diff(&self, observed: &RunnerState, _earlier: &[Change]) -> Diff {
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
        if let Some(change) = self.change(&self.decide(observed), observed) {
            diff.push(change);
        }
        diff
    }

    fn apply(
        &self,
        cx: &Context,
        observed: &RunnerState,
        change: &Change,
        _earlier: &[Change],
    ) -> Result<()> {
        let decision = self.decide(observed);
        let expected = self
            .change(&decision, observed)
            .map(|expected| expected.action);
        if expected != Some(change.action) {
            bail!("`{}` cannot `{}` now", self.id(), change.action.as_str());
        }
        match &self.role {
            Role::Declared(spec) => self.apply_declared(cx, spec, observed, &decision),
            Role::Removed => self.apply_removed(cx, observed, &decision),
            Role::UnreadableLedger { message, .. } => bail!("{message}"),
        }
    }
}

/// Reads a token file: trimmed, since `echo token > file` adds a newline.
fn read_token_file(host: &Host, file: &HostPath) -> Result<TokenFile> {
    let Some(text) = host
        .read_optional(file)
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
mod tests {
    use super::*;
    use crate::host::host_path;
    use section::ServerParams;

    const URL: &str = "https://gitlab.example.com";

    fn spec(token: TokenSource) -> RunnerSpec {
        RunnerSpec {
            name: "r".into(),
            url: URL.into(),
            token,
            tls_ca_file: None,
            delete_on_remove: false,
            settings: toml::Table::new(),
        }
    }

    fn glrt() -> TokenSource {
        TokenSource::Authentication {
            file: host_path("/etc/berth/tokens/r"),
        }
    }

    fn legacy() -> TokenSource {
        TokenSource::Registration {
            file: host_path("/etc/berth/tokens/reg"),
            params: ServerParams::default(),
        }
    }

    fn runner(token: TokenSource) -> Runner {
        Runner::declared(&RunnerSettings::default(), &spec(token))
    }

    fn removed_runner() -> Runner {
        Runner {
            name: "r".into(),
            config: host_path(crate::resource::runner::section::DEFAULT_CONFIG),
            role: Role::Removed,
        }
    }

    fn recorded(source: Source, token: &str) -> Recorded {
        Recorded {
            url: URL.into(),
            id: 18,
            source,
            token_fingerprint: Fingerprint::of(token),
            config: host_path(crate::resource::runner::section::DEFAULT_CONFIG),
            delete_on_remove: false,
            tls_ca_file: None,
        }
    }

    fn entry(token: &str) -> Entry {
        Entry {
            url: Some(format!("{URL}/")),
            id: Some(18),
            token: Some(Secret::new(token)),
        }
    }

    fn state(
        entry: Option<Entry>,
        recorded: Option<Recorded>,
        file_token: Option<&str>,
    ) -> RunnerState {
        RunnerState {
            unreadable: None,
            entry,
            recorded,
            token: file_token.map_or(TokenFile::Missing, |token| TokenFile::Present {
                token: Secret::new(token),
                mode: 0o600,
            }),
            system_id: Some("s_0123456789ab".into()),
        }
    }

    #[test]
    fn a_glrt_token_is_verified_once_and_then_in_sync() {
        let runner = runner(glrt());
        assert_eq!(
            runner.decide(&state(None, None, Some("glrt-a"))),
            Decision::Verify { changed_from: None }
        );
        let registered = state(
            Some(entry("glrt-a")),
            Some(recorded(Source::Verified, "glrt-a")),
            Some("glrt-a"),
        );
        assert_eq!(runner.decide(&registered), Decision::InSync);
        assert!(runner.diff(&registered, &[]).changes.is_empty());
    }

    #[test]
    fn a_token_the_runner_rotated_itself_is_in_sync() {
        let runner = runner(glrt());
        let rotated = state(
            Some(entry("glrt-rotated")),
            Some(recorded(Source::Verified, "glrt-a")),
            Some("glrt-a"),
        );
        assert_eq!(runner.decide(&rotated), Decision::InSync);
    }

    #[test]
    fn a_new_token_in_the_file_is_an_update_shown_by_fingerprint() {
        let runner = runner(glrt());
        let observed = state(
            Some(entry("glrt-a")),
            Some(recorded(Source::Verified, "glrt-a")),
            Some("glrt-b"),
        );
        let diff = runner.diff(&observed, &[]);
        let change = &diff.changes[0];
        assert_eq!(change.action, Action::Update);
        let (before, after) = (Fingerprint::of("glrt-a"), Fingerprint::of("glrt-b"));
        assert_eq!(
            change.detail,
            format!("token (fingerprint {} → {})", before.short(), after.short())
        );
        let json = serde_json::to_string(change).unwrap();
        assert!(!json.contains("glrt-"), "{json}");
    }

    #[test]
    fn legacy_registration_happens_only_without_an_entry() {
        let runner = runner(legacy());
        assert_eq!(
            runner.decide(&state(None, None, Some("reg-token"))),
            Decision::Register
        );
        let existing = state(Some(entry("glrtr-issued")), None, Some("reg-token"));
        assert_eq!(
            runner.decide(&existing),
            Decision::Adopt {
                source: Source::Adopted,
                fingerprint: Fingerprint::of("glrtr-issued"),
                id: 18
            }
        );
        let lost = state(
            None,
            Some(recorded(Source::Registered, "glrtr-issued")),
            Some("reg-token"),
        );
        let Decision::Refuse { reason, .. } = runner.decide(&lost) else {
            panic!("a lost entry is never registered again");
        };
        assert!(
            reason.contains("registering again would leave runner #18 behind"),
            "{reason}"
        );
    }

    #[test]
    fn a_missing_token_file_is_a_refused_registration_not_an_error() {
        let runner = runner(glrt());
        let diff = runner.diff(&state(None, None, None), &[]);
        let change = &diff.changes[0];
        assert_eq!(change.action, Action::Register);
        assert!(
            change
                .refused
                .as_deref()
                .unwrap()
                .starts_with("the token_file `/etc/berth/tokens/r` does not exist")
        );
    }

    #[test]
    fn a_foreign_entry_of_the_same_name_is_not_taken_over() {
        let runner = runner(legacy());
        let mut foreign = entry("glrt-foreign");
        foreign.url = Some("https://other.example".into());
        let Decision::Refuse { reason, .. } =
            runner.decide(&state(Some(foreign), None, Some("reg")))
        else {
            panic!("refused");
        };
        assert!(reason.contains("which berth did not register"), "{reason}");
    }

    #[test]
    fn removal_calls_what_the_source_allows() {
        let runner = removed_runner();
        let with = |source, delete_on_remove| {
            let mut record = recorded(source, "t");
            record.delete_on_remove = delete_on_remove;
            runner.decide(&state(Some(entry("t")), Some(record), None))
        };
        assert_eq!(
            with(Source::Verified, false),
            Decision::Unregister(Call::DeleteManager)
        );
        assert_eq!(
            with(Source::Verified, true),
            Decision::Unregister(Call::DeleteRunner)
        );
        assert_eq!(
            with(Source::Registered, false),
            Decision::Unregister(Call::DeleteRunner)
        );
        assert_eq!(
            with(Source::Created, false),
            Decision::Unregister(Call::DeleteRunner)
        );
        assert_eq!(
            with(Source::Adopted, false),
            Decision::Unregister(Call::None)
        );
        assert_eq!(
            runner.decide(&state(None, Some(recorded(Source::Registered, "t")), None)),
            Decision::Forget
        );
        assert_eq!(
            runner.decide(&state(Some(entry("t")), None, None)),
            Decision::InSync
        );
    }
}
