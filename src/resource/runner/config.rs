//! `runner-config`: gitlab-runner's config.toml, key by key.
//!
//! berth owns the global keys the profile gives (`concurrent`, `check_interval`, ...) and, in
//! each `[[runners]]` entry the profile declares (found by `name`), the settings it gives
//! (`executor`, `[runners.docker]`, ...). Everything else stays as it is: comments, key order,
//! entries berth does not manage, keys it does not know, and the credentials (`url`, `id`,
//! `token`, `token_obtained_at`, `token_expires_at`), which `runner/NAME` writes and
//! gitlab-runner rewrites when it rotates its token. A key dropped from the profile stays in
//! the file.
//!
//! An entry is written here only once it exists, that is once `runner/NAME` registered it
//! (which comes first); a runner whose registration failed gets no half-made entry. The file is
//! written atomically with mode 0600 (its directory created 0700) and gets a fresh mtime, which
//! is all gitlab-runner needs to reload it (it checks every 3 s). A config.toml that does not
//! parse is never overwritten. Diffs show every token as `"***"`.

use anyhow::{Context as _, Result};
use serde_json::Value as Json;
use toml_edit::DocumentMut;

use crate::{
    host::{self, FileMode, Host, HostPath, facts::HostFacts},
    plan::{self, Action, Change, Diff, FieldChange, Kind, ResourceId},
    resource::{
        Context, Earlier, Made, Resource,
        runner::{
            self, TokenFile, config_toml,
            secret_files::{self, SecretFile},
            section::{RunnerSettings, normalize_url},
            sizing::{Sized, Sizing},
        },
    },
    secret::Secret,
};

/// config.toml holds runner tokens: only its owner may read it, as gitlab-runner writes it.
pub(crate) const FILE_MODE: u32 = 0o600;
pub(crate) const DIR_MODE: u32 = 0o700;

pub(crate) struct RunnerConfig {
    path: HostPath,
    globals: toml::Table,
    /// Secrets read from files: for the entry of the runner named, or the globals (`None`).
    secret_files: Vec<(Option<String>, SecretFile)>,
    runners: Vec<Declared>,
    /// The private CAs of the runners' GitLabs, placed where gitlab-runner looks for them.
    certificates: Vec<Certificate>,
    /// Which numbers are "auto", worked out from the host's facts when observed.
    sizing: Sizing,
    /// The profile's runner settings, kept when something is "auto": the numbers it stands
    /// for are judged as gitlab-runner would (`long_polling`) once worked out.
    settings: Option<Box<RunnerSettings>>,
}

struct Declared {
    name: String,
    url: String,
    settings: toml::Table,
}

/// A runner's `tls_ca_file`, copied to `certs/HOST.crt` beside config.toml: where gitlab-runner
/// looks for a GitLab's CA (`network/client.go`: `CertificateDirectory`, `HOST.crt`), and what
/// the entry's `tls-ca-file` names as gitlab-runner sees it. Without it berth registers fine
/// against a GitLab with a private CA, but gitlab-runner cannot poll.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Certificate {
    source: HostPath,
    target: HostPath,
}

/// A certificate's source and copy as they are.
#[derive(Debug, Clone, Default)]
pub(crate) struct CertificateState {
    source: Option<String>,
    target: Option<String>,
}

pub(crate) struct ConfigTomlState {
    /// The file as it is, parsed; `None` when it does not exist.
    current: Option<(String, DocumentMut)>,
    /// Each of [`RunnerConfig::certificates`], in order.
    certificates: Vec<CertificateState>,
    /// Each of [`RunnerConfig::secret_files`], in order.
    secrets: Vec<TokenFile>,
    mode: Option<FileMode>,
    /// Why the file could not be read by this user (`plan` as non-root), if so.
    unreadable: Option<String>,
    /// The host's CPUs and memory, read when a number is "auto".
    facts: Option<HostFacts>,
}

/// What apply would write.
struct PlannedConfigToml {
    text: String,
    fields: Vec<FieldChange>,
}

impl RunnerConfig {
    pub(crate) fn new(settings: &RunnerSettings) -> Self {
        let directory = settings.config.parent();
        let mut certificates = Vec::new();
        let mut runners = Vec::new();
        for runner in &settings.runners {
            let mut entry = runner.settings.clone();
            if let (Some(source), Some(directory), Some(host)) =
                (&runner.tls_ca_file, &directory, url_host(&runner.url))
            {
                let file = format!("certs/{host}.crt");
                let certificate = Certificate {
                    source: source.clone(),
                    target: directory.join(&file),
                };
                if !certificates.contains(&certificate) {
                    certificates.push(certificate);
                }
                if let Some(seen) = &settings.seen_directory
                    && !entry.contains_key("tls-ca-file")
                {
                    entry.insert(
                        "tls-ca-file".into(),
                        toml::Value::String(format!("{seen}/{file}")),
                    );
                }
            }
            runners.push(Declared {
                name: runner.name.clone(),
                url: runner.url.clone(),
                settings: entry,
            });
        }
        let secret_files = settings
            .secret_files
            .iter()
            .map(|file| (None, file.clone()))
            .chain(settings.runners.iter().flat_map(|runner| {
                runner
                    .secret_files
                    .iter()
                    .map(|file| (Some(runner.name.clone()), file.clone()))
            }))
            .collect();
        Self {
            path: settings.config.clone(),
            globals: settings.globals.clone(),
            secret_files,
            runners,
            certificates,
            sizing: settings.sizing.clone(),
            settings: settings
                .sizing
                .is_auto()
                .then(|| Box::new(settings.clone())),
        }
    }

    /// The certificates whose copy differs from their source, with the change each makes.
    fn certificate_updates(
        &self,
        observed: &ConfigTomlState,
        diff: &mut Diff<MergeConfigToml>,
    ) -> (Vec<FieldChange>, Vec<(HostPath, String)>) {
        let mut fields = Vec::new();
        let mut writes = Vec::new();
        for (certificate, state) in self.certificates.iter().zip(&observed.certificates) {
            let Some(source) = &state.source else {
                diff.warn(format!(
                    "`tls_ca_file` `{}` does not exist: gitlab-runner gets no CA for its GitLab",
                    certificate.source
                ));
                continue;
            };
            if state.target.as_ref() == Some(source) {
                continue;
            }
            let fingerprint = |text: &str| {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(text.as_bytes());
                Json::from(format!("sha256:{}", &hex::encode(digest)[..16]))
            };
            fields.push(FieldChange::new(
                certificate.target.to_string(),
                state.target.as_deref().map(fingerprint),
                Some(fingerprint(source)),
            ));
            writes.push((certificate.target.clone(), source.clone()));
        }
        (fields, writes)
    }

    /// The file with the profile's keys merged in; `None` when nothing would change.
    fn planned(
        &self,
        current: Option<&(String, DocumentMut)>,
        registered: &[String],
        secrets: &[ReadSecret],
        sized: Option<&Sized>,
    ) -> Option<PlannedConfigToml> {
        let with_secrets = |settings: &toml::Table, runner: Option<&str>| {
            with_sized(with_secrets(settings, runner, secrets), runner, sized)
        };
        let mut document = current.map_or_else(DocumentMut::new, |(_, document)| document.clone());
        let mut fields = config_toml::merge(
            document.as_table_mut(),
            &with_secrets(&self.globals, None),
            "",
        );
        for runner in &self.runners {
            let index = match config_toml::find(&document, &runner.name) {
                Some(index)
                    if config_toml::entry_str(&document, index, "url")
                        .is_some_and(|url| normalize_url(&url) == normalize_url(&runner.url)) =>
                {
                    index
                }
                // Another GitLab's entry of that name: `runner/NAME` refuses it, and so does this.
                Some(_) => continue,
                // Not registered yet: shown as it will be after `runner/NAME` registered it in
                // this run; left out when that is not planned (it failed or was refused).
                None if registered.contains(&runner.name) => {
                    let index = config_toml::add_entry(&mut document, &runner.name);
                    let entry = config_toml::entry_mut(&mut document, index).expect("just added");
                    entry.insert("url", toml_edit::value(runner.url.as_str()));
                    index
                }
                None => continue,
            };
            let entry = config_toml::entry_mut(&mut document, index).expect("found above");
            fields.extend(config_toml::merge(
                entry,
                &with_secrets(&runner.settings, Some(&runner.name)),
                &format!("runners.{}", runner.name),
            ));
        }
        if fields.is_empty() {
            return None;
        }
        config_toml::separate_globals(&mut document);
        Some(PlannedConfigToml {
            text: document.to_string(),
            fields,
        })
    }
}

/// `settings` with the secrets read from files for `runner` (`None`: the globals) put in.
fn with_secrets(
    settings: &toml::Table,
    runner: Option<&str>,
    secrets: &[ReadSecret],
) -> toml::Table {
    let mut settings = settings.clone();
    for (owner, key, secret) in secrets {
        if owner.as_deref() == runner {
            secret_files::insert(&mut settings, key, secret);
        }
    }
    settings
}

/// `settings` with the numbers "auto" stands for on this host put in: `concurrent` in the
/// globals (`runner` is `None`), `limit` in a runner's entry.
fn with_sized(
    mut settings: toml::Table,
    runner: Option<&str>,
    sized: Option<&Sized>,
) -> toml::Table {
    let Some(sized) = sized else {
        return settings;
    };
    match runner {
        None => {
            if let Some(concurrent) = sized.concurrent {
                settings.insert("concurrent".into(), toml::Value::Integer(concurrent));
            }
        }
        Some(runner) => {
            if let Some((_, limit)) = sized.limits.iter().find(|(name, _)| name == runner) {
                settings.insert("limit".into(), toml::Value::Integer(*limit));
            }
        }
    }
    settings
}

/// Global keys gitlab-runner reads only when it starts (`commands/multi.go`, 17.11: `run` sets
/// up the metrics and debug server from `listen_address` and the session server from
/// `[session_server]` once; `reloadConfig` re-reads the log level and format, `concurrent`,
/// `check_interval`, `sentry_dsn`, `connection_max_age` and the runners, but not these).
const READ_AT_START: &[&str] = &["listen_address", "session_server"];

impl RunnerConfig {
    pub(crate) fn id() -> ResourceId {
        ResourceId::singleton(Kind::RunnerConfig)
    }

    /// The keys gitlab-runner reads only at start that merging the profile's globals into
    /// `current` changes, each named as the plan names it: the container that runs
    /// gitlab-runner restarts for them. Decided by merging those keys alone, never by reading
    /// the printed change.
    fn read_at_start(
        &self,
        current: Option<&(String, DocumentMut)>,
        secrets: &[ReadSecret],
    ) -> Vec<String> {
        let read_at_start: toml::Table = with_secrets(&self.globals, None, secrets)
            .into_iter()
            .filter(|(key, _)| READ_AT_START.contains(&key.as_str()))
            .collect();
        if read_at_start.is_empty() {
            return Vec::new();
        }
        let mut document = current.map_or_else(DocumentMut::new, |(_, document)| document.clone());
        config_toml::merge(document.as_table_mut(), &read_at_start, "")
            .into_iter()
            .map(|field| field.path)
            .collect()
    }
}

/// What apply does to config.toml: merge the profile's keys into the file as it is then (the
/// runner's registration may have written an entry since it was observed, and gitlab-runner
/// may have rotated a token), and make it mode 0600.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MergeConfigToml {
    /// Runners registered earlier in this run, whose entries get the profile's settings too.
    registered: Vec<String>,
    /// CA certificates to place beside config.toml (`certs/HOST.crt`), with their text.
    certificates: Vec<(HostPath, String)>,
    /// The secrets read from their files, as observed.
    secrets: Vec<ReadSecret>,
    /// The keys gitlab-runner reads only at start that the merge changes.
    read_at_start: Vec<String>,
    /// config.toml does not exist yet.
    creates: bool,
    /// What "auto" stands for on this host, as observed.
    sized: Option<Sized>,
}

/// A secret read from its file: the runner whose entry it goes to (`None`: the globals), its key
/// there, its text.
type ReadSecret = (Option<String>, Vec<String>, Secret);

impl Resource for RunnerConfig {
    type Observed = ConfigTomlState;
    type Op = MergeConfigToml;

    fn id(&self) -> ResourceId {
        Self::id()
    }

    fn observe(&self, context: &Context) -> Result<ConfigTomlState> {
        distrust_directory(context.host, &self.path);
        let read_both = || -> Result<_> {
            Ok((
                context.host.mode(&self.path)?,
                read(context.host, &self.path)?,
            ))
        };
        let read_certificates = || -> Result<Vec<CertificateState>> {
            self.certificates
                .iter()
                .map(|certificate| {
                    Ok(CertificateState {
                        source: context.host.read_optional(&certificate.source)?,
                        target: context.host.read_optional(&certificate.target)?,
                    })
                })
                .collect()
        };
        let read_secrets = || -> Result<Vec<TokenFile>> {
            self.secret_files
                .iter()
                .map(|(_, secret)| runner::read_token_file(context.host, &secret.file))
                .collect()
        };
        match read_both()
            .and_then(|(mode, current)| Ok((mode, current, read_certificates()?, read_secrets()?)))
        {
            Ok((mode, current, certificates, secrets)) => Ok(ConfigTomlState {
                current,
                certificates,
                secrets,
                mode,
                unreadable: None,
                facts: if self.sizing.is_auto() {
                    Some(HostFacts::read(context.host).context(
                        "`concurrent` or `limit` is \"auto\", sized to the host's CPUs and memory",
                    )?)
                } else {
                    None
                },
            }),
            Err(error) if host::permission_denied(&error) => Ok(ConfigTomlState {
                current: None,
                certificates: Vec::new(),
                secrets: Vec::new(),
                mode: None,
                unreadable: Some(format!("{error:#}")),
                facts: None,
            }),
            Err(error) => Err(error),
        }
    }

    fn diff(&self, observed: &ConfigTomlState, earlier: &Earlier) -> Diff<MergeConfigToml> {
        let mut diff = Diff::none();
        if let Some(reason) = &observed.unreadable {
            diff.warn(not_planned(reason));
            return diff;
        }
        if let Some((_, document)) = &observed.current {
            for (name, count) in config_toml::duplicate_names(document) {
                diff.warn(format!(
                    "`{}` has {count} `[[runners]]` entries named `{name}`: gitlab-runner runs each of them, while berth manages only the first; remove the others by hand",
                    self.path
                ));
            }
        }
        // Not registered yet: an entry is shown as it will be after `runner/NAME` registered it
        // in this run, and left out when that is not planned (it failed or was refused).
        let registered: Vec<String> = self
            .runners
            .iter()
            .filter(|runner| earlier.registers(&runner.name))
            .map(|runner| runner.name.clone())
            .collect();
        let secrets = self.read_secrets(observed, &mut diff);
        let sized = self.sized(observed, &mut diff);
        let planned = self.planned(
            observed.current.as_ref(),
            &registered,
            &secrets,
            sized.as_ref(),
        );
        let read_at_start = self.read_at_start(observed.current.as_ref(), &secrets);
        let mode_wrong = observed
            .mode
            .is_some_and(|FileMode(mode)| mode != FILE_MODE);
        let (certificate_fields, certificates) = self.certificate_updates(observed, &mut diff);
        if planned.is_none() && !mode_wrong && certificates.is_empty() {
            return diff;
        }
        let op = MergeConfigToml {
            registered,
            certificates,
            secrets,
            read_at_start,
            creates: observed.current.is_none(),
            sized,
        };
        let mut change = Change::new(self.id(), self.action(&op), self.path.to_string());
        let mut fields = Vec::new();
        if let Some(planned) = planned {
            let before = observed
                .current
                .as_ref()
                .map_or("", |(text, _)| text.as_str());
            let (before, after) = (
                config_toml::redact(before),
                config_toml::redact(&planned.text),
            );
            // Only a secret changed (a rotated S3 key): the redacted texts agree, so the fields
            // say which key changed.
            if before != after {
                change =
                    change.with_diff(plan::unified_diff(&self.path.to_string(), &before, &after));
            }
            fields = planned.fields;
        }
        if let Some(FileMode(mode)) = observed.mode.filter(|_| mode_wrong) {
            fields.push(FieldChange::new(
                "mode",
                Some(format!("{mode:04o}").into()),
                Some(format!("{FILE_MODE:04o}").into()),
            ));
            if change.diff.is_none() {
                change.detail = format!(
                    "{} (mode {mode:04o} → {FILE_MODE:04o}: it holds runner tokens)",
                    self.path
                );
            }
        }
        if change.diff.is_none() && !mode_wrong {
            change.detail = if fields.is_empty() {
                format!("{} (the CA certificate of its GitLab beside it)", self.path)
            } else {
                format!("{} (a secret it holds changed)", self.path)
            };
        }
        explain_sizing(&mut change, op.sized.as_ref(), &fields);
        fields.extend(certificate_fields);
        diff.push(change.with_fields(fields), op);
        diff
    }

    fn action(&self, op: &MergeConfigToml) -> Action {
        if op.creates {
            Action::Create
        } else {
            Action::Update
        }
    }

    fn made(&self, op: &MergeConfigToml) -> Vec<Made> {
        if op.read_at_start.is_empty() {
            Vec::new()
        } else {
            vec![Made::ReadAtStart(op.read_at_start.clone())]
        }
    }

    fn apply(&self, context: &Context, op: &MergeConfigToml) -> Result<()> {
        // Read again: gitlab-runner may have rewritten the file (a token rotation) since.
        let current = read(context.host, &self.path)?;
        for (target, text) in &op.certificates {
            distrust_directory(context.host, target);
            if let Some(dir) = target.parent() {
                context.host.ensure_dir(&dir, DIR_MODE)?;
            }
            context.host.write_atomic(target, text.as_bytes(), 0o644)?;
        }
        if let Some(planned) = self.planned(
            current.as_ref(),
            &op.registered,
            &op.secrets,
            op.sized.as_ref(),
        ) {
            write(context.host, &self.path, &planned.text)?;
        }
        if context
            .host
            .mode(&self.path)?
            .is_some_and(|FileMode(mode)| mode != FILE_MODE)
        {
            context.host.set_mode(&self.path, FILE_MODE)?;
        }
        Ok(())
    }
}

/// What "auto" became, with the facts it was worked out from, added to the change's detail
/// where the change sets it.
fn explain_sizing(change: &mut Change, sized: Option<&Sized>, fields: &[FieldChange]) {
    let Some(sized) = sized else {
        return;
    };
    let explained: Vec<String> = sized
        .explain()
        .into_iter()
        .filter(|line| {
            let key = line.split(" = ").next().unwrap_or_default();
            fields.iter().any(|field| field.path == key)
        })
        .collect();
    if !explained.is_empty() {
        change.detail = format!("{} ({})", change.detail, explained.join(", "));
    }
}

impl RunnerConfig {
    /// What "auto" stands for on the host observed, with what gitlab-runner would warn about
    /// once the numbers are known.
    fn sized(&self, observed: &ConfigTomlState, diff: &mut Diff<MergeConfigToml>) -> Option<Sized> {
        let sized = observed.facts.map(|facts| self.sizing.size(facts))?;
        if let Some(settings) = &self.settings {
            // Those the profile's own numbers draw, `validate` and the profile's warnings said.
            let (mut profile, mut warnings) = (Vec::new(), Vec::new());
            settings.long_polling_warnings(None, &mut profile);
            settings.long_polling_warnings(Some(&sized), &mut warnings);
            warnings.retain(|warning| !profile.contains(warning));
            for (key, message) in warnings {
                diff.warn(format!("key `{key}`: {message}"));
            }
        }
        Some(sized)
    }

    /// The secrets whose files hold one, with a warning for each file that is missing, empty
    /// (its key is left out of config.toml) or readable by other users.
    fn read_secrets(
        &self,
        observed: &ConfigTomlState,
        diff: &mut Diff<MergeConfigToml>,
    ) -> Vec<ReadSecret> {
        let mut secrets = Vec::new();
        for ((runner, secret_file), state) in self.secret_files.iter().zip(&observed.secrets) {
            let SecretFile {
                key,
                file,
                profile_key,
            } = secret_file;
            match state {
                TokenFile::Present { token, mode } => {
                    if mode & 0o077 != 0 {
                        diff.warn(format!(
                            "the {profile_key} `{file}` is readable by other users (mode {mode:04o}); `chmod {FILE_MODE:o}` it"
                        ));
                    }
                    secrets.push((runner.clone(), key.clone(), token.clone()));
                }
                TokenFile::Missing | TokenFile::Empty | TokenFile::NotNeeded => {
                    diff.warn(format!(
                        "the {profile_key} `{file}` is missing or empty: `{}` is left out of config.toml until it holds the secret",
                        key.join(".")
                    ));
                }
            }
        }
        secrets
    }
}

/// The host of a GitLab URL, as gitlab-runner names its CA file after it (`url.Host` up to the
/// first `:`).
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    let host = authority.split(':').next()?;
    (!host.is_empty()).then_some(host)
}

/// The warning for what could not be read.
pub(crate) fn not_planned(reason: &str) -> String {
    format!("{reason}: its changes are not planned; run as root to see them")
}

/// Reads and parses config.toml; `None` when absent. Unparseable text is an error.
pub(crate) fn read(host: &Host, path: &HostPath) -> Result<Option<(String, DocumentMut)>> {
    distrust_directory(host, path);
    let Some(text) = host.read_optional(path)? else {
        return Ok(None);
    };
    let document = config_toml::parse(path, &text)?;
    Ok(Some((text, document)))
}

/// Writes config.toml atomically at mode 0600 (set before the rename: it holds tokens), its
/// directory created 0700.
pub(crate) fn write(host: &Host, path: &HostPath, text: &str) -> Result<()> {
    distrust_directory(host, path);
    if let Some(dir) = path.parent() {
        host.ensure_dir(&dir, DIR_MODE)?;
    }
    host.write_secret(path, text.as_bytes(), FILE_MODE)
}

/// The runner's directory is mounted read-write into its container: whoever controls that
/// container can plant links there, so no link in it is ever followed (issue 18).
pub(crate) fn distrust_directory(host: &Host, config: &HostPath) {
    if let Some(dir) = config.parent() {
        host.distrust(&dir);
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
