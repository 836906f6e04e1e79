//! What a runner's observed state calls for: nothing, a refusal with its reason, or one
//! [`RunnerOp`] with everything apply needs, and the plan line that shows it. Decided from the
//! observed state alone, once, by `diff`; nothing here calls GitLab or writes a file.

use super::*;

/// What the observed state calls for, decided from it alone.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Decision {
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
        source: Origin,
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
    /// A registration an interrupted run sent was kept after all: clear its journal entry.
    ForgetRequest,
    /// `.runner_system_id` was made on another machine (a cloned image or snapshot): write
    /// one made on this machine, so two hosts never share a runner manager. No GitLab call:
    /// the runner's next request for jobs makes the new ID a manager.
    RegenerateSystemId { system_id: String },
}

impl RunnerOp {
    /// The action the plan shows for this op, which consent and the summary go by.
    pub(super) fn action(&self) -> Action {
        match self {
            Self::ForgetRequest => Action::Recover,
            Self::Verify {
                changed_from: None, ..
            }
            | Self::Register { .. }
            | Self::Create { .. } => Action::Register,
            Self::Verify {
                changed_from: Some(_),
                ..
            }
            | Self::Adopt { .. }
            | Self::Record { .. }
            | Self::RegenerateSystemId { .. } => Action::Update,
            Self::Unregister { .. } => Action::Unregister,
            Self::Forget { .. } => Action::Delete,
        }
    }
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

impl Runner {
    pub(super) fn decide(&self, observed: &RunnerState) -> Decision {
        match &self.role {
            Role::Declared(spec) => match self.decide_declared(spec, observed) {
                Decision::InSync => {
                    observed
                        .copied_system_id
                        .as_ref()
                        .map_or(Decision::InSync, |system_id| {
                            Decision::Do(RunnerOp::RegenerateSystemId {
                                system_id: system_id.clone(),
                            })
                        })
                }
                other => other,
            },
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
        let complete = entry.is_some_and(RunnerEntry::is_complete);
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
                        source: Origin::Verified,
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
                if let Some(RunnerEntry {
                    token: Some(token),
                    id: Some(id),
                    ..
                }) = entry
                {
                    return match &observed.recorded {
                        None => Decision::Do(RunnerOp::Adopt {
                            spec: Box::new(spec.clone()),
                            source: Origin::Adopted,
                            fingerprint: token.fingerprint(),
                            id: *id,
                        }),
                        Some(_) => self.record_changes(spec, observed),
                    };
                }
                if let Some(pending) = &observed.pending {
                    return Decision::Refuse {
                        detail: self.register_detail(spec, observed),
                        reason: format!(
                            "a registration of `{}` was sent to {} at {} and its answer was lost (a timeout or a server error): GitLab may hold a runner berth has no token for, and registering again would make a second one; look in GitLab for a runner `{}` created then and delete it, then remove `{}` (it lists only such unfinished steps) and apply again",
                            self.name,
                            pending.url,
                            pending.sent_at,
                            self.name,
                            crate::resource::journal::PATH
                        ),
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
            (Origin::Registered | Origin::Created, _) => Call::DeleteRunner,
            (Origin::Verified, Some(system_id)) => Call::DeleteManager {
                system_id: system_id.clone(),
            },
            (Origin::Verified | Origin::Adopted, _) => Call::None,
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
    #[expect(clippy::too_many_lines, reason = "one plan line per operation")]
    pub(super) fn change(&self, op: &RunnerOp, observed: &RunnerState) -> Change {
        let id = self.id();
        let action = op.action();
        match op {
            RunnerOp::ForgetRequest => Change::new(
                id,
                action,
                "an interrupted registration had finished: its answer is kept",
            ),
            RunnerOp::Verify {
                spec,
                changed_from: None,
                ..
            }
            | RunnerOp::Register { spec, .. }
            | RunnerOp::Create { spec, .. } => {
                Change::new(id, action, self.register_detail(spec, observed))
            }
            RunnerOp::Verify {
                token,
                changed_from: Some(before),
                ..
            } => {
                let after = token.fingerprint();
                Change::new(
                    id,
                    action,
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
                action,
                format!(
                    "record the existing entry (runner #{runner_id}) in berth's ledger as {}; no GitLab call",
                    source.as_str()
                ),
            ),
            RunnerOp::Record { fields, .. } => Change::new(
                id,
                action,
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
                    action,
                    format!("{what}; its entry leaves `{}`", self.config),
                );
                if *call == Call::None && recorded.source == Origin::Verified {
                    change = change.with_warning(format!(
                        "`{}` is missing, so this host's runner manager cannot be named; it stays in GitLab until GitLab drops stale managers",
                        system_id::path(&self.config)
                    ));
                }
                change
            }
            RunnerOp::RegenerateSystemId { system_id } => Change::new(
                id,
                action,
                "system-id  regenerate: made on another machine",
            )
            .with_warning(format!(
                "`{}` holds `{system_id}`, which berth recorded on another machine (a cloned image or snapshot): two hosts with one system ID are one runner manager in GitLab",
                system_id::path(&self.config)
            )),
            RunnerOp::Forget { recorded } => {
                Change::new(
                    id,
                    action,
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
