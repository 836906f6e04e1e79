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
    plan::{Action, Change, Diff, FieldChange, Kind, ResourceId},
    resource::{Context, Earlier, Resource},
    secret::{Fingerprint, Secret},
};
use config::FILE_MODE;
use config_toml::Credentials;
use gitlab::{Deleted, GitLab};
use ledger::{Ledger, Recorded, Source};
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

/// What the observed state calls for, decided from it alone.
#[derive(Debug, Clone, PartialEq)]
enum Decision {
    InSync,
    Refuse { detail: String, reason: String },
    Do(RunnerOp),
}

/// What apply calls and writes, with everything it needs: decided once, by `diff`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RunnerOp {
    /// `POST /runners/verify` with the token file's glrt- token, then write it.
    Verify {
        spec: Box<RunnerSpec>,
        token: Secret,
        /// The token it replaces, when it replaces one.
        changed_from: Option<Fingerprint>,
    },
    /// `POST /runners` with a registration token.
    Register {
        spec: Box<RunnerSpec>,
        token: Secret,
        params: ServerParams,
    },
    /// `POST /user/runners`, then verify.
    Create {
        spec: Box<RunnerSpec>,
        token: Secret,
        scope: RunnerScope,
        params: ServerParams,
    },
    /// Record an existing entry in the ledger; no GitLab call.
    Adopt {
        spec: Box<RunnerSpec>,
        source: Source,
        fingerprint: Fingerprint,
        id: i64,
    },
    /// Update what the ledger remembers for removal.
    Record {
        spec: Box<RunnerSpec>,
        recorded: Recorded,
        fields: Vec<FieldChange>,
    },
    /// Removed from the profile: call GitLab (or not), then drop the entry and the record.
    Unregister {
        call: Call,
        token: Secret,
        recorded: Recorded,
    },
    /// Removed from the profile, but its entry (and token) are already gone.
    Forget { recorded: Recorded },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    DeleteRunner,
    /// This host's manager, named by its system id.
    DeleteManager {
        system_id: String,
    },
    None,
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
                permission: config::permission_denied(&error),
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

    fn decide(&self, observed: &RunnerState) -> Decision {
        match &self.role {
            Role::Declared(spec) => self.decide_declared(spec, observed),
            Role::Removed => self.decide_removed(observed),
            Role::UnreadableLedger { .. } => Decision::InSync,
        }
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one decision table over token source, entry and ledger record"
    )]
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
                let verify = |changed_from| {
                    Decision::Do(RunnerOp::Verify {
                        spec: Box::new(spec.clone()),
                        token: token.clone(),
                        changed_from,
                    })
                };
                match (&observed.recorded, entry_token) {
                    _ if !complete => verify(None),
                    (None, Some(current)) if current == token => Decision::Do(RunnerOp::Adopt {
                        spec: Box::new(spec.clone()),
                        source: Source::Verified,
                        fingerprint,
                        id: entry.and_then(|entry| entry.id).unwrap_or_default(),
                    }),
                    (None, current) => verify(current.map(Secret::fingerprint)),
                    (Some(recorded), _) if recorded.token_fingerprint == fingerprint => {
                        self.record_changes(spec, observed)
                    }
                    (Some(recorded), _) => verify(Some(recorded.token_fingerprint.clone())),
                }
            }
            TokenSource::Registration { params, .. } | TokenSource::Create { params, .. } => {
                if let Some(Entry {
                    token: Some(token),
                    id: Some(id),
                    ..
                }) = entry
                {
                    return match &observed.recorded {
                        None => Decision::Do(RunnerOp::Adopt {
                            spec: Box::new(spec.clone()),
                            source: Source::Adopted,
                            fingerprint: token.fingerprint(),
                            id: *id,
                        }),
                        Some(_) => self.record_changes(spec, observed),
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
                match (&observed.token, &spec.token) {
                    (TokenFile::Present { token, .. }, TokenSource::Create { scope, .. }) => {
                        Decision::Do(RunnerOp::Create {
                            spec: Box::new(spec.clone()),
                            token: token.clone(),
                            scope: scope.clone(),
                            params: params.clone(),
                        })
                    }
                    (TokenFile::Present { token, .. }, _) => Decision::Do(RunnerOp::Register {
                        spec: Box::new(spec.clone()),
                        token: token.clone(),
                        params: params.clone(),
                    }),
                    (TokenFile::Empty, _) => missing("is empty"),
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
            Decision::Do(RunnerOp::Record {
                spec: Box::new(spec.clone()),
                recorded: recorded.clone(),
                fields,
            })
        }
    }

    fn decide_removed(&self, observed: &RunnerState) -> Decision {
        let Some(recorded) = &observed.recorded else {
            return Decision::InSync;
        };
        let ours = observed.entry.as_ref().filter(|entry| {
            entry
                .url
                .as_deref()
                .is_none_or(|url| normalize_url(url) == normalize_url(&recorded.url))
        });
        let Some(token) = ours.and_then(|entry| entry.token.clone()) else {
            return Decision::Do(RunnerOp::Forget {
                recorded: recorded.clone(),
            });
        };
        let call = match (&recorded.source, &observed.system_id) {
            _ if recorded.delete_on_remove => Call::DeleteRunner,
            (Source::Registered | Source::Created, _) => Call::DeleteRunner,
            (Source::Verified, Some(system_id)) => Call::DeleteManager {
                system_id: system_id.clone(),
            },
            (Source::Verified | Source::Adopted, _) => Call::None,
        };
        Decision::Do(RunnerOp::Unregister {
            call,
            token,
            recorded: recorded.clone(),
        })
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

    /// The change that shows `op` in the plan.
    fn change(&self, op: &RunnerOp, observed: &RunnerState) -> Change {
        let id = self.id();
        match op {
            RunnerOp::Verify {
                spec,
                changed_from: None,
                ..
            }
            | RunnerOp::Register { spec, .. }
            | RunnerOp::Create { spec, .. } => {
                Change::new(id, Action::Register, self.register_detail(spec, observed))
            }
            RunnerOp::Verify {
                token,
                changed_from: Some(before),
                ..
            } => {
                let after = token.fingerprint();
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
            RunnerOp::Adopt {
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
            RunnerOp::Record { fields, .. } => Change::new(
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
            RunnerOp::Unregister { call, recorded, .. } => {
                let what = match call {
                    Call::DeleteRunner => format!(
                        "delete runner #{} in {} (DELETE /api/v4/runners)",
                        recorded.id, recorded.url
                    ),
                    Call::DeleteManager { .. } => format!(
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
            RunnerOp::Forget { recorded } => {
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
        }
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

    /// Carries out what `diff` decided.
    fn carry_out(&self, context: &Context, op: &RunnerOp) -> Result<()> {
        let host = context.host;
        match op {
            RunnerOp::Verify { spec, token, .. } => {
                let system_id = system_id::ensure(host, &self.config)?;
                let registration = self
                    .gitlab(host, &spec.url, spec.tls_ca_file.as_ref())?
                    .verify(token, &system_id)?;
                self.write_entry(host, &spec.url, &registration)?;
                self.record(
                    host,
                    spec,
                    registration.id,
                    Source::Verified,
                    token.fingerprint(),
                )
            }
            RunnerOp::Register {
                spec,
                token,
                params,
            } => {
                let registration = self
                    .gitlab(host, &spec.url, spec.tls_ca_file.as_ref())?
                    .register(token, &self.name, params)?;
                self.keep(host, spec, &registration, Source::Registered)
            }
            RunnerOp::Create {
                spec,
                token,
                scope,
                params,
            } => {
                let gitlab = self.gitlab(host, &spec.url, spec.tls_ca_file.as_ref())?;
                let registration = gitlab.create(token, &self.name, scope, params)?;
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
            RunnerOp::Adopt {
                spec,
                source,
                fingerprint,
                id,
            } => self.record(host, spec, *id, *source, fingerprint.clone()),
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

    /// True when `runner/NAME` plans (plan) or made (apply) a registration in this run.
    pub(crate) fn registers_in(earlier: &Earlier, name: &str) -> bool {
        earlier
            .of(&ResourceId::new(Kind::Runner, name))
            .any(|change| change.action == Action::Register)
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

    fn apply(&self, context: &Context, _observed: &RunnerState, op: &RunnerOp) -> Result<()> {
        self.carry_out(context, op)
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
        assert!(matches!(
            runner.decide(&state(None, None, Some("glrt-a"))),
            Decision::Do(RunnerOp::Verify {
                changed_from: None,
                ..
            })
        ));
        let registered = state(
            Some(entry("glrt-a")),
            Some(recorded(Source::Verified, "glrt-a")),
            Some("glrt-a"),
        );
        assert_eq!(runner.decide(&registered), Decision::InSync);
        assert!(
            runner
                .diff(&registered, &Earlier::default())
                .changes
                .is_empty()
        );
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
        let diff = runner.diff(&observed, &Earlier::default());
        let change = &diff.changes[0];
        assert_eq!(change.0.action, Action::Update);
        let (before, after) = (Fingerprint::of("glrt-a"), Fingerprint::of("glrt-b"));
        assert_eq!(
            change.0.detail,
            format!("token (fingerprint {} → {})", before.short(), after.short())
        );
        let json = serde_json::to_string(&change.0).unwrap();
        assert!(!json.contains("glrt-"), "{json}");
    }

    #[test]
    fn legacy_registration_happens_only_without_an_entry() {
        let runner = runner(legacy());
        assert!(matches!(
            runner.decide(&state(None, None, Some("reg-token"))),
            Decision::Do(RunnerOp::Register { .. })
        ));
        let existing = state(Some(entry("glrtr-issued")), None, Some("reg-token"));
        let Decision::Do(RunnerOp::Adopt {
            source,
            fingerprint,
            id,
            ..
        }) = runner.decide(&existing)
        else {
            panic!("an existing entry is adopted");
        };
        assert_eq!(
            (source, fingerprint, id),
            (Source::Adopted, Fingerprint::of("glrtr-issued"), 18)
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
        let diff = runner.diff(&state(None, None, None), &Earlier::default());
        let change = &diff.changes[0];
        assert_eq!(change.0.action, Action::Register);
        assert!(
            change
                .0
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
            match runner.decide(&state(Some(entry("t")), Some(record), None)) {
                Decision::Do(RunnerOp::Unregister { call, .. }) => call,
                other => panic!("not an unregister: {other:?}"),
            }
        };
        assert_eq!(
            with(Source::Verified, false),
            Call::DeleteManager {
                system_id: "s_0123456789ab".into()
            }
        );
        assert_eq!(with(Source::Verified, true), Call::DeleteRunner);
        assert_eq!(with(Source::Registered, false), Call::DeleteRunner);
        assert_eq!(with(Source::Created, false), Call::DeleteRunner);
        assert_eq!(with(Source::Adopted, false), Call::None);
        assert!(matches!(
            runner.decide(&state(None, Some(recorded(Source::Registered, "t")), None)),
            Decision::Do(RunnerOp::Forget { .. })
        ));
        assert_eq!(
            runner.decide(&state(Some(entry("t")), None, None)),
            Decision::InSync
        );
    }
}
