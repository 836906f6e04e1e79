//! The profile's `[runner]` and `[runners.NAME]` sections: gitlab-runner's global settings and
//! the runners this host runs, resolved into typed settings.
//!
//! berth reads its own keys (where the token comes from, which CA to trust, what to do on
//! removal, the server-side settings of a registration) and passes every other key through to
//! gitlab-runner's config.toml as it is, nested tables included, so any gitlab-runner setting can
//! be declared. Keys whose meaning is known are checked here, with the file, line and key of the
//! layer that set them, because gitlab-runner would only complain in its own log after the fact.
//! Nothing here reads token files or touches the host.

use std::collections::BTreeMap;

use anyhow::Result;

use super::feature_flags;
use super::keys::{OWN_KEYS, SERVER_KEYS, check_entry, resolve_globals};
use super::long_polling::{self, RunnerNumbers};
use super::secret_files::{self, SecretFile};
use super::sizing::{AUTO, Sizing};
use super::version::{release, runner_version};
use crate::{
    host::{HostPath, host_path},
    profile::{
        Layers, Problems,
        source::{KeyPath, LocatedError, did_you_mean},
    },
};

/// Where the runner's config.toml lives when the profile does not say: the directory the
/// runner container bind-mounts as `/etc/gitlab-runner`.
pub(crate) const DEFAULT_CONFIG: &str = "/srv/gitlab-runner/config.toml";

/// `[runner]` and `[runners.*]`, resolved.
#[derive(Debug, Clone)]
pub(crate) struct RunnerSettings {
    /// Host path of gitlab-runner's config.toml.
    pub config: HostPath,
    /// The global keys berth owns (`concurrent`, `check_interval`, `[session_server]`, ...), in
    /// profile order.
    pub globals: toml::Table,
    /// The runners, in profile order.
    pub runners: Vec<RunnerSpec>,
    /// config.toml's directory as gitlab-runner sees it: the mount target in the container
    /// that bind-mounts it (`/etc/gitlab-runner`), the host directory when no container does;
    /// `None` when a container mounts only the file (the directory is not visible in it).
    pub seen_directory: Option<String>,
    /// The global secrets read from files (`sentry_dsn_file`).
    pub secret_files: Vec<SecretFile>,
    /// Which of `concurrent` and the runners' `limit`s are "auto", sized to the host.
    pub sizing: Sizing,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        let config = host_path(DEFAULT_CONFIG);
        Self {
            seen_directory: config.parent().map(|directory| directory.to_string()),
            config,
            globals: toml::Table::new(),
            runners: Vec::new(),
            secret_files: Vec::new(),
            sizing: Sizing::default(),
        }
    }
}

/// The container that runs gitlab-runner, as much of it as the runners need: worked out by
/// `Profile::resolve`, which alone decides which container that is.
pub(crate) struct RunnerContainer<'a> {
    pub image: &'a str,
    pub env: &'a BTreeMap<String, String>,
    /// Where it mounts config.toml's directory (`/etc/gitlab-runner`); `None` when it mounts
    /// only the file.
    pub config_directory: Option<String>,
}

impl RunnerSettings {
    /// Takes in what the container that runs gitlab-runner (`container`, which
    /// `Profile::resolve` picks) means for the runners: where it sees config.toml's directory;
    /// the gitlab-runner version its image names, told to GitLab; and, for a runner whose `[runners.NAME.docker] host` is the container's
    /// `DOCKER_HOST`, the container's `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` as
    /// `tls_verify` and `tls_cert_path`: with `host` set gitlab-runner ignores those variables
    /// (`helpers/docker/official_docker_client.go`, `New`: the environment is read only when
    /// `host` is empty), so without them it would dial a TLS daemon in plain TCP.
    pub(crate) fn run_in(
        &mut self,
        container: RunnerContainer<'_>,
        warnings: &mut Vec<(KeyPath, String)>,
    ) {
        let RunnerContainer {
            image,
            env,
            config_directory,
        } = container;
        self.seen_directory = config_directory;
        for runner in &mut self.runners {
            runner.runner_image = Some(image.to_owned());
            let Some(docker) = runner
                .settings
                .get_mut("docker")
                .and_then(toml::Value::as_table_mut)
            else {
                continue;
            };
            let Some(host) = docker.get("host").and_then(toml::Value::as_str) else {
                continue;
            };
            let verify = env.get("DOCKER_TLS_VERIFY").map(|text| go_bool(text));
            let cert_path = env.get("DOCKER_CERT_PATH");
            if verify.is_none() && cert_path.is_none() {
                continue;
            }
            if env.get("DOCKER_HOST").map(String::as_str) != Some(host) {
                if !docker.contains_key("tls_verify") && !docker.contains_key("tls_cert_path") {
                    warnings.push((
                        KeyPath::root().key("runners").key(&runner.name).key("docker").key("host"),
                        format!(
                            "`runners.{}.docker.host` is set, so gitlab-runner ignores the runner container's DOCKER_TLS_VERIFY and DOCKER_CERT_PATH: set `tls_verify` and `tls_cert_path` there if `{host}` speaks TLS",
                            runner.name
                        ),
                    ));
                }
                continue;
            }
            if let Some(verify) = verify
                && !docker.contains_key("tls_verify")
            {
                docker.insert("tls_verify".into(), toml::Value::Boolean(verify));
            }
            if let Some(path) = cert_path
                && !docker.contains_key("tls_cert_path")
            {
                docker.insert("tls_cert_path".into(), toml::Value::String(path.clone()));
            }
        }
    }

    /// What gitlab-runner would warn about at start (`long_polling`), with the numbers the
    /// profile gives and, once worked out on the host, what "auto" stands for (`sized`);
    /// without them a number that is "auto" is not judged.
    pub(crate) fn long_polling_warnings(
        &self,
        sized: Option<&super::sizing::Sized>,
        warnings: &mut Vec<(KeyPath, String)>,
    ) {
        let concurrent = match sized {
            Some(sized) => sized.concurrent.or(self.sizing.fixed_concurrent),
            None => self
                .sizing
                .fixed_concurrent
                .filter(|_| !self.sizing.concurrent),
        };
        let numbers: Vec<(String, RunnerNumbers)> = self
            .runners
            .iter()
            .map(|runner| {
                let number = |key: &str| runner.settings.get(key).and_then(toml::Value::as_integer);
                let limit = number("limit").or_else(|| {
                    sized.and_then(|sized| {
                        sized
                            .limits
                            .iter()
                            .find(|(name, _)| name == &runner.name)
                            .map(|(_, limit)| *limit)
                    })
                });
                let numbers = RunnerNumbers {
                    limit,
                    request_concurrency: number("request_concurrency"),
                };
                (runner.name.clone(), numbers)
            })
            .collect();
        for (key, message) in long_polling::warnings(concurrent, &numbers) {
            let path = match key {
                None => KeyPath::parse_dotted("runner").key("concurrent"),
                Some((name, key)) => KeyPath::root().key("runners").key(&name).key(key),
            };
            warnings.push((path, message));
        }
    }

    /// Each runner's `feature_flags` checked against the gitlab-runner version its container's
    /// image pins (the newest berth knows when the tag names none): a removed, misspelt or
    /// not-yet-added flag is a warning, since gitlab-runner ignores it silently.
    pub(crate) fn check_feature_flags(&self, warnings: &mut Vec<(KeyPath, String)>) {
        for runner in &self.runners {
            let Some(flags) = runner
                .settings
                .get("feature_flags")
                .and_then(toml::Value::as_table)
            else {
                continue;
            };
            let pinned = runner
                .runner_image
                .as_deref()
                .and_then(runner_version)
                .and_then(|version| release(&version));
            for flag in flags.keys() {
                if let Some(message) = feature_flags::check(flag, pinned) {
                    let path = KeyPath::root()
                        .key("runners")
                        .key(&runner.name)
                        .key("feature_flags")
                        .key(flag);
                    warnings.push((path, message));
                }
            }
        }
    }

    /// True when the profile says anything about gitlab-runner.
    pub(crate) fn is_declared(&self) -> bool {
        !self.globals.is_empty() || !self.runners.is_empty()
    }
}

/// One `[runners.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunnerSpec {
    /// The table name; gitlab-runner's `name`, by which berth finds its `[[runners]]` entry.
    pub name: String,
    /// GitLab's URL as written; also written to the entry.
    pub url: String,
    pub token: TokenSource,
    /// A PEM file of CA certificates trusted, besides the system's, for this GitLab.
    pub tls_ca_file: Option<HostPath>,
    /// Delete the runner in GitLab when it leaves the profile, even when berth only adopted it.
    pub delete_on_remove: bool,
    /// What goes into the `[[runners]]` entry: `executor` and every key that is not berth's.
    pub settings: toml::Table,
    /// The image of the container that runs gitlab-runner on this config (the one that
    /// bind-mounts its directory), when the profile declares one.
    pub runner_image: Option<String>,
    /// The entry's secrets read from files (`cache.s3.SecretKey_file`).
    pub secret_files: Vec<SecretFile>,
}

/// Where a runner's token comes from, which decides how it is registered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenSource {
    /// `token_file`: a runner authentication token (`glrt-...`) of a runner created in GitLab;
    /// verified with `POST /runners/verify`.
    Authentication { file: HostPath },
    /// `registration_token_file`: the deprecated registration-token flow, `POST /runners`.
    Registration {
        file: HostPath,
        params: ServerParams,
    },
    /// `create_token_file`: an access token with the `create_runner` scope; berth creates the
    /// runner with `POST /user/runners`.
    Create {
        file: HostPath,
        scope: RunnerScope,
        params: ServerParams,
    },
}

impl TokenSource {
    pub(crate) fn file(&self) -> &HostPath {
        match self {
            Self::Authentication { file }
            | Self::Registration { file, .. }
            | Self::Create { file, .. } => file,
        }
    }

    /// The profile key that names the file.
    pub(crate) fn key(&self) -> &'static str {
        match self {
            Self::Authentication { .. } => "token_file",
            Self::Registration { .. } => "registration_token_file",
            Self::Create { .. } => "create_token_file",
        }
    }
}

/// Settings GitLab keeps for the runner, sent when berth registers or creates it. With a
/// `glrt-` token they are set in GitLab's UI instead (gitlab-runner refuses them too).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ServerParams {
    pub description: Option<String>,
    pub tag_list: Option<Vec<String>>,
    pub run_untagged: Option<bool>,
    pub locked: Option<bool>,
    pub access_level: Option<String>,
    pub maximum_timeout: Option<i64>,
    pub paused: Option<bool>,
    pub maintenance_note: Option<String>,
}

/// Which kind of runner `POST /user/runners` creates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RunnerScope {
    Instance,
    Group(i64),
    Project(i64),
}

impl RunnerScope {
    pub(crate) fn runner_type(&self) -> &'static str {
        match self {
            Self::Instance => "instance_type",
            Self::Group(_) => "group_type",
            Self::Project(_) => "project_type",
        }
    }
}

/// Go's `strconv.ParseBool`, as gitlab-runner reads `DOCKER_TLS_VERIFY`: `1`, `t`, `true`
/// (any case of those spellings) are true, anything else false.
fn go_bool(text: &str) -> bool {
    matches!(text, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// The smallest `maximum_timeout` GitLab accepts (`Ci::Runner`'s validation in
/// `app/models/ci/runner.rb`: `greater_than_or_equal_to: 600`).
const MINIMUM_TIMEOUT: i64 = 600;

/// Keys gitlab-runner writes itself (or berth writes from GitLab's answer).
const WRITTEN_BY_RUNNER: &[&str] = &["id", "token", "token_obtained_at", "token_expires_at"];

/// Resolves `[runner]` and `[runners]` of the merged profile. Returns the settings and the
/// warnings `validate` and `plan` print.
pub(crate) fn resolve(
    runner: Option<toml::Table>,
    runners: Option<toml::Table>,
    mtu: Option<u32>,
    layers: &Layers,
    problems: &mut Problems,
) -> (RunnerSettings, Vec<(KeyPath, String)>) {
    let mut warnings = Vec::new();
    let mut settings = RunnerSettings::default();
    let globals = resolve_globals(runner.unwrap_or_default(), &mut warnings, layers, problems);
    if let Some(config) = globals.config {
        settings.seen_directory = config.parent().map(|directory| directory.to_string());
        settings.config = config;
    }
    settings.globals = globals.table;
    settings.secret_files = globals.secret_files;
    settings.sizing.concurrent = globals.auto_concurrent;
    settings.sizing.fixed_concurrent = settings
        .globals
        .get("concurrent")
        .and_then(toml::Value::as_integer);
    let base = KeyPath::parse_dotted("runners");
    for (name, value) in runners.unwrap_or_default() {
        let path = base.key(&name);
        let toml::Value::Table(mut table) = value else {
            problems.push(layers.error_at(
                &path,
                "must be a table: `[runners.NAME]` declares the runner NAME".to_owned(),
            ));
            continue;
        };
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            problems.push(layers.error_at(
                &path,
                "a runner name must be non-empty text without control characters".to_owned(),
            ));
            continue;
        }
        // `limit = "auto"`: a share of `concurrent`, worked out on the host (`sizing`).
        let auto_limit = table.get("limit").and_then(toml::Value::as_str) == Some(AUTO);
        if auto_limit {
            table.remove("limit");
        }
        if let Some(spec) =
            problems.keep(resolve_runner(&name, table, &path, layers, &mut warnings))
        {
            if auto_limit {
                settings.sizing.auto_limits.push(spec.name.clone());
            } else {
                settings.sizing.fixed_limits += spec
                    .settings
                    .get("limit")
                    .and_then(toml::Value::as_integer)
                    .unwrap_or(0);
            }
            settings.runners.push(spec);
        }
    }
    settings.long_polling_warnings(None, &mut warnings);
    if let Some(mtu) = mtu {
        problems.keep(apply_mtu_to_runners(mtu, &mut settings, layers));
    }
    (settings, warnings)
}

#[expect(clippy::too_many_lines, reason = "one check per key of a runner entry")]
fn resolve_runner(
    name: &str,
    mut table: toml::Table,
    base: &KeyPath,
    layers: &Layers,
    warnings: &mut Vec<(KeyPath, String)>,
) -> Result<RunnerSpec, LocatedError> {
    let at = |key: &str, message: String| layers.error_at(&base.key(key), message);
    for key in WRITTEN_BY_RUNNER {
        if table.contains_key(*key) {
            return Err(at(
                key,
                format!(
                    "`{key}` is written by gitlab-runner and by berth from GitLab's answer; a profile names where the token comes from (token_file, registration_token_file or create_token_file)"
                ),
            ));
        }
    }
    if table.contains_key("name") {
        return Err(at(
            "name",
            format!("the runner's name is its table name (`[runners.{name}]`)"),
        ));
    }
    let url = match table.remove("url") {
        Some(toml::Value::String(url)) => url,
        Some(_) => return Err(at("url", "must be a string".into())),
        None => {
            return Err(layers.error_at(
                base,
                "needs `url`, the GitLab instance the runner registers with",
            ));
        }
    };
    check_url(&url).map_err(|message| at("url", message))?;
    if sends_token_in_clear(&url) {
        warnings.push((base.key("url"), CLEAR_TEXT_URL.to_owned()));
    }
    let take_path =
        |table: &mut toml::Table, key: &str| -> Result<Option<HostPath>, LocatedError> {
            match table.remove(key) {
                None => Ok(None),
                Some(toml::Value::String(text)) => HostPath::new(text)
                    .map(Some)
                    .map_err(|message| at(key, message)),
                Some(_) => Err(at(key, "must be an absolute path".into())),
            }
        };
    let token_file = take_path(&mut table, "token_file")?;
    let registration_file = take_path(&mut table, "registration_token_file")?;
    let create_file = take_path(&mut table, "create_token_file")?;
    let tls_ca_file = take_path(&mut table, "tls_ca_file")?;
    let delete_on_remove = match table.remove("delete_on_remove") {
        None => false,
        Some(toml::Value::Boolean(flag)) => flag,
        Some(_) => return Err(at("delete_on_remove", "must be true or false".into())),
    };
    let params = server_params(&mut table, base, layers)?;
    let scope_keys: Vec<&str> = ["runner_type", "group_id", "project_id"]
        .into_iter()
        .filter(|key| table.contains_key(*key))
        .collect();
    let token = match (token_file, registration_file, create_file) {
        (Some(file), None, None) => {
            if let Some(key) = SERVER_KEYS
                .iter()
                .chain(&["runner_type", "group_id", "project_id"])
                .find(|key| params.is_set(key) || scope_keys.contains(key))
            {
                return Err(at(
                    key,
                    format!(
                        "`{key}` is set in GitLab when the runner is created there; with a runner authentication token (token_file) only config.toml settings can be declared"
                    ),
                ));
            }
            TokenSource::Authentication { file }
        }
        (None, Some(file), None) => {
            if let Some(key) = scope_keys.first() {
                return Err(at(
                    key,
                    format!("`{key}` belongs to create_token_file (POST /user/runners)"),
                ));
            }
            warnings.push((
                base.key("registration_token_file"),
                "registration_token_file uses a runner registration token, deprecated since GitLab 15.6 and disabled by default since 17.0; create the runner in GitLab and put its glrt- token in token_file".to_owned(),
            ));
            TokenSource::Registration { file, params }
        }
        (None, None, Some(file)) => {
            let scope = runner_scope(&mut table, base, layers)?;
            TokenSource::Create {
                file,
                scope,
                params,
            }
        }
        (None, None, None) => {
            return Err(layers.error_at(
                base,
                "needs one of `token_file` (a glrt- runner authentication token), `create_token_file` (an access token with the create_runner scope) or `registration_token_file` (deprecated)",
            ));
        }
        _ => {
            return Err(layers.error_at(
                base,
                "takes only one of `token_file`, `registration_token_file` and `create_token_file`",
            ));
        }
    };
    for key in OWN_KEYS {
        table.remove(*key);
    }
    let secret_files = secret_files::take(&mut table, base, layers)?;
    check_entry(&table, base, layers, warnings)?;
    // `executor` first, as gitlab-runner writes it, then the rest in profile order.
    let mut settings = toml::Table::new();
    if let Some(executor) = table.remove("executor") {
        settings.insert("executor".into(), executor);
    }
    settings.extend(table);
    Ok(RunnerSpec {
        name: name.to_owned(),
        url,
        token,
        tls_ca_file,
        delete_on_remove,
        settings,
        runner_image: None,
        secret_files,
    })
}

impl ServerParams {
    fn is_set(&self, key: &str) -> bool {
        match key {
            "description" => self.description.is_some(),
            "tag_list" => self.tag_list.is_some(),
            "run_untagged" => self.run_untagged.is_some(),
            "locked" => self.locked.is_some(),
            "access_level" => self.access_level.is_some(),
            "maximum_timeout" => self.maximum_timeout.is_some(),
            "paused" => self.paused.is_some(),
            "maintenance_note" => self.maintenance_note.is_some(),
            _ => false,
        }
    }
}

fn server_params(
    table: &mut toml::Table,
    base: &KeyPath,
    layers: &Layers,
) -> Result<ServerParams, LocatedError> {
    let at = |key: &str, message: &str| layers.error_at(&base.key(key), message.to_owned());
    let string = |table: &mut toml::Table, key: &str| match table.remove(key) {
        None => Ok(None),
        Some(toml::Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(at(key, "must be a string")),
    };
    let boolean = |table: &mut toml::Table, key: &str| match table.remove(key) {
        None => Ok(None),
        Some(toml::Value::Boolean(flag)) => Ok(Some(flag)),
        Some(_) => Err(at(key, "must be true or false")),
    };
    let mut params = ServerParams {
        description: string(table, "description")?,
        run_untagged: boolean(table, "run_untagged")?,
        locked: boolean(table, "locked")?,
        paused: boolean(table, "paused")?,
        maintenance_note: string(table, "maintenance_note")?,
        access_level: string(table, "access_level")?,
        ..ServerParams::default()
    };
    if let Some(level) = &params.access_level
        && !["not_protected", "ref_protected"].contains(&level.as_str())
    {
        return Err(at(
            "access_level",
            "must be `not_protected` or `ref_protected`",
        ));
    }
    if params
        .maintenance_note
        .as_ref()
        .is_some_and(|note| note.chars().count() > 1024)
    {
        return Err(at(
            "maintenance_note",
            "GitLab takes at most 1024 characters",
        ));
    }
    params.maximum_timeout = match table.remove("maximum_timeout") {
        None => None,
        // GitLab's `Ci::Runner` validates `maximum_timeout` as at least 600 (10 minutes) and
        // answers 400 otherwise, after berth has journaled a registration.
        Some(toml::Value::Integer(seconds)) if seconds >= MINIMUM_TIMEOUT => Some(seconds),
        Some(toml::Value::Integer(seconds)) => {
            return Err(at(
                "maximum_timeout",
                &format!(
                    "{seconds} is below GitLab's minimum of {MINIMUM_TIMEOUT} seconds (10 minutes); GitLab refuses the runner"
                ),
            ));
        }
        Some(_) => return Err(at("maximum_timeout", "must be a whole number of seconds")),
    };
    params.tag_list = match table.remove("tag_list") {
        None => None,
        Some(toml::Value::Array(items)) => {
            let mut tags = Vec::new();
            for (index, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(tag) if !tag.trim().is_empty() && !tag.contains(',') => {
                        tags.push(tag.trim().to_owned());
                    }
                    _ => {
                        return Err(layers.error_at(
                            &base.key("tag_list").index(index),
                            "a tag is non-empty text without commas",
                        ));
                    }
                }
            }
            Some(tags)
        }
        Some(_) => return Err(at("tag_list", "must be a list of tags")),
    };
    Ok(params)
}

fn runner_scope(
    table: &mut toml::Table,
    base: &KeyPath,
    layers: &Layers,
) -> Result<RunnerScope, LocatedError> {
    let at = |key: &str, message: &str| layers.error_at(&base.key(key), message.to_owned());
    let id = |table: &mut toml::Table, key: &str| match table.remove(key) {
        None => Ok(None),
        Some(toml::Value::Integer(id)) if id >= 1 => Ok(Some(id)),
        Some(_) => Err(at(key, "must be a numeric id")),
    };
    let group = id(table, "group_id")?;
    let project = id(table, "project_id")?;
    let runner_type = match table.remove("runner_type") {
        Some(toml::Value::String(text)) => text,
        Some(_) => return Err(at("runner_type", "must be a string")),
        None => {
            return Err(layers.error_at(
                base,
                "create_token_file needs `runner_type` (instance_type, group_type or project_type)",
            ));
        }
    };
    match (runner_type.as_str(), group, project) {
        ("instance_type", None, None) => Ok(RunnerScope::Instance),
        ("group_type", Some(group), None) => Ok(RunnerScope::Group(group)),
        ("project_type", None, Some(project)) => Ok(RunnerScope::Project(project)),
        ("group_type", None, _) => Err(at("runner_type", "group_type needs `group_id`")),
        ("project_type", _, None) => Err(at("runner_type", "project_type needs `project_id`")),
        ("instance_type" | "group_type" | "project_type", _, _) => Err(at(
            "runner_type",
            "give `group_id` only with group_type and `project_id` only with project_type",
        )),
        (other, _, _) => Err(at(
            "runner_type",
            "must be one of instance_type, group_type, project_type",
        )
        .with_hint(did_you_mean(
            other,
            &["instance_type", "group_type", "project_type"],
        ))),
    }
}

/// A GitLab URL as gitlab-runner takes it: http or https, with a host.
fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` is not an http(s) URL"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{url}` is not an http(s) URL"));
    }
    if host.contains('@') {
        return Err("the URL must not carry credentials".into());
    }
    // `.invalid` never resolves (RFC 6761): it is `berth init`'s placeholder.
    if host
        .split(':')
        .next()
        .unwrap_or_default()
        .ends_with(".invalid")
    {
        return Err(format!(
            "`{url}` is a placeholder (`berth init` writes it without `--url`): put the URL of the GitLab the runner was created on here"
        ));
    }
    Ok(())
}

/// The warning `validate`, `plan` and `doctor` give for a plain-HTTP GitLab (issue 18). A
/// warning rather than a refusal: a host that converges today keeps converging after an
/// upgrade, and the operator is told on every run until the URL is https.
pub(crate) const CLEAR_TEXT_URL: &str = "an `http://` GitLab URL sends the runner's tokens in clear text to anyone on the path; use `https://` (with `tls_ca_file` for a private CA)";

/// True for an `http://` URL whose host is not loopback: a loopback GitLab (on this host, or
/// a tunnel or TLS-terminating proxy listening here) is never reached over a network.
fn sends_token_in_clear(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    !loopback
}

/// GitLab's URL as gitlab-runner compares and calls it: no trailing `/`, no trailing `/ci`.
pub(crate) fn normalize_url(url: &str) -> &str {
    let url = url.trim_end_matches('/');
    url.strip_suffix("/ci").unwrap_or(url).trim_end_matches('/')
}

/// The job networks a docker-executor runner creates get the host's MTU too: a job container
/// whose MTU exceeds the path's drops large packets (gitlab-runner #28960).
fn apply_mtu_to_runners(
    mtu: u32,
    runner: &mut RunnerSettings,
    layers: &Layers,
) -> Result<(), LocatedError> {
    for spec in &mut runner.runners {
        let executor = spec
            .settings
            .get("executor")
            .and_then(toml::Value::as_str)
            .unwrap_or_default();
        if !executor.starts_with("docker") {
            continue;
        }
        let docker = spec
            .settings
            .entry("docker")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(docker) = docker.as_table_mut() else {
            continue;
        };
        match docker.get("network_mtu") {
            Some(set) if set.as_integer() != Some(i64::from(mtu)) => {
                let key = KeyPath::root()
                    .key("runners")
                    .key(&spec.name)
                    .key("docker")
                    .key("network_mtu");
                return Err(layers.error_at(
                    &key,
                    format!("{set} contradicts the top-level `mtu = {mtu}`; set one MTU, at the top level"),
                ));
            }
            Some(_) => {}
            None => {
                docker.insert("network_mtu".into(), toml::Value::Integer(i64::from(mtu)));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "section_tests.rs"]
mod tests;
