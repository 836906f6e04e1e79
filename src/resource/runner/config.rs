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

use anyhow::Result;
use serde_json::Value as Json;
use toml_edit::DocumentMut;

use crate::{
    host::{self, FileMode, Host, HostPath},
    plan::{self, Action, Change, Diff, FieldChange, Kind, ResourceId},
    resource::{
        Context, Earlier, Made, Resource,
        runner::{
            self, TokenFile, config_toml,
            secret_files::{self, SecretFile},
            section::{RunnerSettings, normalize_url},
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
    ) -> Option<PlannedConfigToml> {
        let with_secrets =
            |settings: &toml::Table, runner: Option<&str>| with_secrets(settings, runner, secrets);
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
            }),
            Err(error) if host::permission_denied(&error) => Ok(ConfigTomlState {
                current: None,
                certificates: Vec::new(),
                secrets: Vec::new(),
                mode: None,
                unreadable: Some(format!("{error:#}")),
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
        let planned = self.planned(observed.current.as_ref(), &registered, &secrets);
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
        if let Some(planned) = self.planned(current.as_ref(), &op.registered, &op.secrets) {
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

impl RunnerConfig {
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
mod tests {
    use super::*;
    use crate::resource::Made;
    use crate::{host::host_path, resource::runner::section::RunnerSettings};

    fn resource(globals: &str, runners: &[(&str, &str, &str)]) -> RunnerConfig {
        RunnerConfig {
            path: host_path("/srv/gitlab-runner/config.toml"),
            globals: toml::from_str(globals).unwrap(),
            runners: runners
                .iter()
                .map(|(name, url, settings)| Declared {
                    name: (*name).into(),
                    url: (*url).into(),
                    settings: toml::from_str(settings).unwrap(),
                })
                .collect(),
            certificates: Vec::new(),
            secret_files: Vec::new(),
        }
    }

    fn state(text: Option<&str>, mode: u32) -> ConfigTomlState {
        ConfigTomlState {
            certificates: Vec::new(),
            secrets: Vec::new(),
            current: text.map(|text| {
                (
                    text.to_owned(),
                    config_toml::parse(&host_path("/c.toml"), text).unwrap(),
                )
            }),
            mode: text.map(|_| FileMode(mode)),
            unreadable: None,
        }
    }

    const FILE: &str = "concurrent = 4\n\n[[runners]]\n  name = \"r\"\n  url = \"https://g.example/\"\n  id = 1\n  token = \"glrt-secret\"\n  executor = \"docker\"\n";

    #[test]
    fn in_sync_is_no_change_and_a_wrong_mode_is_one() {
        let resource = resource(
            "concurrent = 4\n",
            &[("r", "https://g.example", "executor = \"docker\"\n")],
        );
        assert_eq!(
            resource.diff(&state(Some(FILE), 0o600), &Earlier::default()),
            Diff::none()
        );
        let diff = resource.diff(&state(Some(FILE), 0o644), &Earlier::default());
        assert_eq!(diff.changes[0].0.fields[0].path, "mode");
        assert!(diff.changes[0].0.diff.is_none());
    }

    #[test]
    fn the_diff_shows_tokens_as_stars() {
        let resource = resource("concurrent = 8\n", &[]);
        let diff = resource.diff(&state(Some(FILE), 0o600), &Earlier::default());
        let text = diff.changes[0].0.diff.clone().unwrap();
        assert!(
            text.contains("-concurrent = 4\n+concurrent = 8\n"),
            "{text}"
        );
        assert!(!text.contains("glrt-secret"), "{text}");
        let whole = config_toml::redact(FILE);
        assert!(whole.contains("token = \"***\""), "{whole}");
    }

    #[test]
    fn an_entry_appears_only_when_its_registration_is_planned() {
        let resource = resource(
            "",
            &[("new", "https://g.example", "executor = \"shell\"\n")],
        );
        assert_eq!(
            resource.diff(&state(None, 0), &Earlier::default()),
            Diff::none()
        );
        let register = Change::new(ResourceId::new(Kind::Runner, "new"), Action::Register, "");
        let diff = resource.diff(
            &state(None, 0),
            &Earlier::from_changes(vec![(register.clone(), Made::Registered)]),
        );
        let change = &diff.changes[0];
        assert_eq!(change.0.action, Action::Create);
        assert!(
            change
                .0
                .diff
                .as_ref()
                .unwrap()
                .contains("+name = \"new\"\n+url = \"https://g.example\"\n+executor = \"shell\"\n"),
            "{:?}",
            change.0.diff
        );
        let refused = (register.refused_because("no token"), Made::Registered);
        assert_eq!(
            resource.diff(&state(None, 0), &Earlier::from_changes(vec![refused])),
            Diff::none()
        );
    }

    /// Issue 12, item 7: a private GitLab CA reaches gitlab-runner, not only berth's client.
    #[test]
    fn a_private_ca_is_placed_for_gitlab_runner_and_named_in_the_entry() {
        let mut settings = RunnerSettings {
            seen_directory: Some("/etc/gitlab-runner".into()),
            ..RunnerSettings::default()
        };
        settings
            .runners
            .push(crate::resource::runner::section::RunnerSpec {
                name: "r".into(),
                url: "https://g.example:8443/".into(),
                token: crate::resource::runner::section::TokenSource::Authentication {
                    file: host_path("/t"),
                },
                tls_ca_file: Some(host_path("/etc/berth/ca.pem")),
                delete_on_remove: false,
                settings: toml::from_str("executor = \"shell\"\n").unwrap(),
                runner_image: None,
                secret_files: Vec::new(),
            });
        let resource = RunnerConfig::new(&settings);
        let file = "[[runners]]\n  name = \"r\"\n  url = \"https://g.example:8443/\"\n  id = 1\n  token = \"glrt-x\"\n  executor = \"shell\"\n";
        let mut observed = state(Some(file), 0o600);
        observed.certificates = vec![CertificateState {
            source: Some("-----BEGIN CERTIFICATE-----\n".into()),
            target: None,
        }];
        let diff = resource.diff(&observed, &Earlier::default());
        let (change, op) = &diff.changes[0];
        assert!(
            change
                .diff
                .as_deref()
                .unwrap()
                .contains("+  tls-ca-file = \"/etc/gitlab-runner/certs/g.example.crt\""),
            "{:?}",
            change.diff
        );
        assert!(
            change
                .fields
                .iter()
                .any(|field| field.path == "/srv/gitlab-runner/certs/g.example.crt")
        );
        assert_eq!(
            op.as_ref().unwrap().certificates,
            [(
                host_path("/srv/gitlab-runner/certs/g.example.crt"),
                "-----BEGIN CERTIFICATE-----\n".to_owned()
            )]
        );
    }

    /// Issue 12, item 8: the keys gitlab-runner reads only at start are named for the runner
    /// container; the others it reloads by itself.
    #[test]
    fn keys_read_only_at_start_are_told_apart() {
        let restarting = resource(
            "concurrent = 8\nlisten_address = \":9252\"\n[session_server]\nlisten_address = \"[::]:8093\"\n",
            &[],
        );
        let mut earlier = Earlier::default();
        record(&restarting, &mut earlier, |_| {});
        assert_eq!(
            earlier.read_at_start(),
            ["listen_address", "session_server.listen_address"]
        );
        let reloaded = resource("concurrent = 8\n", &[]);
        let mut earlier = Earlier::default();
        record(&reloaded, &mut earlier, |_| {});
        assert!(earlier.read_at_start().is_empty());
    }

    /// Records `resource`'s one change in `earlier` as the engine does, with what its op made,
    /// after `reword` changed how the change reads.
    fn record(resource: &RunnerConfig, earlier: &mut Earlier, reword: impl Fn(&mut Change)) {
        let diff = resource.diff(&state(Some(FILE), 0o600), &Earlier::default());
        let (mut change, op) = diff.changes.into_iter().next().unwrap();
        reword(&mut change);
        earlier.push(&change, resource.made(&op.unwrap()));
    }

    /// Issue 19: what restarts gitlab-runner is what the op merges, not how the plan prints it.
    /// Field paths printed another way (or a detail naming a key read at start) decide nothing.
    #[test]
    fn the_restart_follows_the_op_not_the_printed_change() {
        let restarting = resource("[session_server]\nlisten_address = \"[::]:8093\"\n", &[]);
        let mut earlier = Earlier::default();
        record(&restarting, &mut earlier, |change| {
            for field in &mut change.fields {
                field.path = format!("[{}]", field.path.replace('.', "] "));
            }
            change.detail = "reworded".into();
        });
        assert_eq!(earlier.read_at_start(), ["session_server.listen_address"]);
        let reloaded = resource("concurrent = 8\n", &[]);
        let mut earlier = Earlier::default();
        record(&reloaded, &mut earlier, |change| {
            change.fields[0].path = "listen_address".into();
            change.detail = "session_server.listen_address changed".into();
        });
        assert!(earlier.read_at_start().is_empty());
    }

    #[test]
    fn an_entry_of_the_same_name_for_another_gitlab_is_not_touched() {
        let resource = resource(
            "",
            &[("r", "https://other.example", "executor = \"shell\"\n")],
        );
        assert_eq!(
            resource.diff(&state(Some(FILE), 0o600), &Earlier::default()),
            Diff::none()
        );
    }
}
