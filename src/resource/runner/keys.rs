//! The gitlab-runner config.toml keys berth knows (global, `[[runners]]`, `[runners.docker]`,
//! `[runners.cache]` and its backends, as gitlab-runner 19.3's `common/config.go` names them)
//! and the checks a profile's `[runner]` and runner entries pass before they reach config.toml. Unknown keys
//! pass through with a warning (a newer gitlab-runner may know them); known ones are checked for
//! the shape gitlab-runner reads.

use super::{
    secret_files::{self, SecretFile},
    sizing::AUTO,
};
use crate::{
    host::HostPath,
    profile::{
        Layers, Problems,
        source::{KeyPath, LocatedError, closest, did_you_mean},
    },
};

/// berth's own keys in `[runners.NAME]`; everything else goes to config.toml.
pub(super) const OWN_KEYS: &[&str] = &[
    "url",
    "token_file",
    "registration_token_file",
    "create_token_file",
    "tls_ca_file",
    "delete_on_remove",
    "runner_type",
    "group_id",
    "project_id",
];

/// Sent to GitLab, not written to config.toml.
pub(super) const SERVER_KEYS: &[&str] = &[
    "description",
    "tag_list",
    "run_untagged",
    "locked",
    "access_level",
    "maximum_timeout",
    "paused",
    "maintenance_note",
];

/// gitlab-runner's executors (`docker-ssh` and `docker-ssh+machine` are gone since 17.0).
pub(crate) const EXECUTORS: &[&str] = &[
    "shell",
    "docker",
    "docker-windows",
    "ssh",
    "parallels",
    "virtualbox",
    "docker+machine",
    "kubernetes",
    "docker-autoscaler",
    "instance",
    "custom",
];

/// gitlab-runner's global keys; others are written too, with a warning.
pub(super) const GLOBAL_KEYS: &[&str] = &[
    "concurrent",
    "check_interval",
    "log_level",
    "log_format",
    "listen_address",
    "shutdown_timeout",
    "sentry_dsn",
    "connection_max_age",
    "user",
    "labels",
    "session_server",
    "experimental",
    "machine",
];

/// Keys of a `[[runners]]` entry besides the credentials.
pub(super) const ENTRY_KEYS: &[&str] = &[
    "executor",
    "tls-ca-file",
    "tls-cert-file",
    "tls-key-file",
    "limit",
    "output_limit",
    "request_concurrency",
    "strict_check_interval",
    "unhealthy_requests_limit",
    "unhealthy_interval",
    "job_status_final_update_retry_limit",
    "labels",
    "builds_dir",
    "cache_dir",
    "clone_url",
    "environment",
    "proxy_exec",
    "pre_get_sources_script",
    "post_get_sources_script",
    "pre_build_script",
    "post_build_script",
    "prepare_timeout",
    "get_sources_timeout",
    "debug_trace_disabled",
    "safe_directory_checkout",
    "clean_git_config",
    "shell",
    "feature_flags",
    "use_slot_cgroups",
    "slot_cgroup_template",
    "step_runner_image",
    "custom_build_dir",
    "referees",
    "cache",
    "monitoring",
    "instance",
    "ssh",
    "docker",
    "parallels",
    "virtualbox",
    "machine",
    "kubernetes",
    "custom",
    "autoscaler",
    "artifact",
    "experimental",
];

/// `[runners.cache]` and its backends: gitlab-runner spells these keys capitalised and ignores
/// any other spelling, so a lowercase `type = "s3"` silently means no cache.
pub(super) const CACHE_KEYS: &[&str] = &[
    "Type",
    "Path",
    "Shared",
    "MaxUploadedArchiveSize",
    "s3",
    "gcs",
    "azure",
];
/// The cache adapters gitlab-runner 17.11 (and still 19.3) registers (`cache.Factories().Register` in
/// `cache/*/adapter.go`); `s3v2` reads `[runners.cache.s3]`, `gcsv2` `[runners.cache.gcs]`.
const CACHE_TYPES: &[&str] = &["s3", "s3v2", "gcs", "gcsv2", "azure"];
pub(super) const CACHE_S3_KEYS: &[&str] = &[
    "ServerAddress",
    "AccessKey",
    "SecretKey",
    "SessionToken",
    "BucketName",
    "BucketLocation",
    "Insecure",
    "AuthenticationType",
    "ServerSideEncryption",
    "ServerSideEncryptionKeyID",
    "DualStack",
    "PathStyle",
    "Accelerate",
    "RoleARN",
    "UploadRoleARN",
    "AssumeRoleMaxConcurrency",
    "DisableAssumeRoleCredentialsCaching",
];
pub(super) const CACHE_GCS_KEYS: &[&str] = &[
    "AccessID",
    "PrivateKey",
    "CredentialsFile",
    "BucketName",
    "UniverseDomain",
];
pub(super) const CACHE_AZURE_KEYS: &[&str] = &[
    "AccountName",
    "AccountKey",
    "ContainerName",
    "StorageDomain",
];

pub(super) const PULL_POLICIES: &[&str] = &["always", "if-not-present", "never"];

/// What gitlab-runner's `log_format` takes.
const LOG_FORMATS: &[&str] = &["runner", "text", "json"];

/// `[runner]` checked, for the section's settings.
pub(super) struct RunnerGlobals {
    /// `config`, when the profile says where config.toml is.
    pub(super) config: Option<HostPath>,
    /// The keys that go to config.toml's top level, in profile order.
    pub(super) table: toml::Table,
    /// The global secrets read from files (`sentry_dsn_file`).
    pub(super) secret_files: Vec<SecretFile>,
    /// `concurrent = "auto"`: sized to the host (`sizing`), so not in `table`.
    pub(super) auto_concurrent: bool,
}

/// `[runner]`: gitlab-runner's global settings, each checked where berth knows its meaning.
pub(super) fn resolve_globals(
    mut runner: toml::Table,
    warnings: &mut Vec<(KeyPath, String)>,
    layers: &Layers,
    problems: &mut Problems,
) -> RunnerGlobals {
    let base = KeyPath::parse_dotted("runner");
    let mut globals = RunnerGlobals {
        config: None,
        table: toml::Table::new(),
        secret_files: problems
            .keep(secret_files::take(&mut runner, &base, layers))
            .unwrap_or_default(),
        auto_concurrent: false,
    };
    for (key, value) in runner {
        let path = base.key(&key);
        let mut fail = |message: &str, hint: Option<String>| {
            problems.push(layers.error_at(&path, message.to_owned()).with_hint(hint));
        };
        match key.as_str() {
            "config" => {
                let Some(text) = value.as_str() else {
                    fail("must be a path", None);
                    continue;
                };
                let Some(config) = problems.keep(HostPath::new(text).map_err(|message| layers.error_at(&path, message))) else {
                    continue;
                };
                globals.config = Some(config);
                continue;
            }
            "runners" => {
                fail(
                    "runners are declared as `[runners.NAME]` tables, not inside `[runner]`",
                    None,
                );
                continue;
            }
            "concurrent" => match value.as_integer() {
                Some(1..) => {}
                None if value.as_str() == Some(AUTO) => {
                    globals.auto_concurrent = true;
                    continue;
                }
                _ => {
                    fail("must be a whole number of at least 1 (gitlab-runner exits on 0), or \"auto\" (sized to the host)", None);
                    continue;
                }
            },
            "connection_max_age" if !is_duration(&value) => {
                fail("must be a duration (\"15m\", \"1h30m\")", None);
                continue;
            }
            "check_interval" | "shutdown_timeout" => match value.as_integer() {
                Some(0..) => {}
                _ => {
                    fail("must be a whole number of seconds", None);
                    continue;
                }
            },
            "log_level" => {
                // What gitlab-runner's `log.Configuration().SetLevel` takes: logrus's levels.
                const LEVELS: &[&str] = &[
                    "trace", "debug", "info", "warn", "warning", "error", "fatal", "panic",
                ];
                if !value.as_str().is_some_and(|level| LEVELS.contains(&level)) {
                    fail(&format!("must be one of {}", LEVELS.join(", ")), value.as_str().and_then(|level| did_you_mean(level, LEVELS)));
                    continue;
                }
            }
            "log_format"
                if !value
                    .as_str()
                    .is_some_and(|format| LOG_FORMATS.contains(&format)) =>
            {
                fail(&format!("must be one of {}", LOG_FORMATS.join(", ")), value.as_str().and_then(|format| did_you_mean(format, LOG_FORMATS)));
                continue;
            }
            "session_server" if !value.is_table() => {
                fail("must be a table", None);
                continue;
            }
            other if !GLOBAL_KEYS.contains(&other) => warnings.push((
                path.clone(),
                format!(
                    "`runner.{other}` is not a gitlab-runner setting berth knows; it is written to config.toml as it is{}",
                    closest(other, GLOBAL_KEYS.iter().copied())
                        .map(|meant| format!(" (did you mean `{meant}`?)"))
                        .unwrap_or_default()
                ),
            )),
            _ => {}
        }
        globals.table.insert(key, value);
    }
    globals
}

/// Checks the keys with known meaning in what goes to the `[[runners]]` entry.
pub(super) fn check_entry(
    table: &toml::Table,
    base: &KeyPath,
    layers: &Layers,
    warnings: &mut Vec<(KeyPath, String)>,
) -> Result<(), LocatedError> {
    match table.get("executor") {
        None => {
            return Err(
                layers.error_at(base, format!("needs `executor` ({})", EXECUTORS.join(", ")))
            );
        }
        Some(toml::Value::String(executor)) if EXECUTORS.contains(&executor.as_str()) => {}
        Some(toml::Value::String(executor)) => {
            return Err(layers
                .error_at(
                    &base.key("executor"),
                    format!(
                        "`{executor}` is not a gitlab-runner executor ({})",
                        EXECUTORS.join(", ")
                    ),
                )
                .with_hint(
                    closest(executor, EXECUTORS.iter().copied())
                        .map(|meant| format!("did you mean `{meant}`?")),
                ));
        }
        Some(_) => return Err(layers.error_at(&base.key("executor"), "must be a string")),
    }
    for (key, value) in table {
        let path = base.key(key);
        if !ENTRY_KEYS.contains(&key.as_str()) {
            let hint = closest(key, OWN_KEYS.iter().chain(SERVER_KEYS).copied())
                .map(|own| format!(" (did you mean berth's `{own}`?)"))
                .or_else(|| {
                    closest(key, ENTRY_KEYS.iter().copied())
                        .map(|known| format!(" (did you mean `{known}`?)"))
                })
                .unwrap_or_default();
            warnings.push((
                path.clone(),
                format!(
                    "`{path}` is not a gitlab-runner setting berth knows; it is written to config.toml as it is{hint}"
                ),
            ));
            continue;
        }
        match key.as_str() {
            "docker" | "cache" | "kubernetes" | "custom_build_dir" | "feature_flags"
            | "machine" | "autoscaler" | "ssh" | "custom" | "instance" | "referees"
            | "monitoring" | "parallels" | "virtualbox"
                if !value.is_table() =>
            {
                return Err(layers.error_at(&path, format!("must be a table (`[{path}]`)")));
            }
            "environment" if !is_string_list(value) => {
                return Err(layers.error_at(&path, "must be a list of \"NAME=value\" strings"));
            }
            "prepare_timeout" | "get_sources_timeout" if !is_duration(value) => {
                return Err(layers.error_at(&path, "must be a duration (\"30s\", \"1h30m\")"));
            }
            "limit" | "output_limit" | "request_concurrency" => match value.as_integer() {
                Some(0..) => {}
                _ => return Err(layers.error_at(&path, "must be a whole number")),
            },
            _ => {}
        }
        if key == "cache"
            && let Some(cache) = value.as_table()
        {
            check_cache(cache, &path, layers)?;
        }
        if key == "docker"
            && let Some(docker) = value.as_table()
        {
            check_docker(docker, &path, layers)?;
        }
        // gitlab-runner reads `feature_flags` as a map of booleans (`RunnerSettings.FeatureFlags
        // map[string]bool`): any other value fails its whole config.toml.
        if key == "feature_flags"
            && let Some((flag, _)) = value
                .as_table()
                .and_then(|flags| flags.iter().find(|(_, value)| !value.is_bool()))
        {
            return Err(layers.error_at(&path.key(flag), "must be true or false"));
        }
    }
    Ok(())
}

/// `[runners.NAME.cache]`: gitlab-runner's capitalised keys and a cache type it registers.
fn check_cache(cache: &toml::Table, path: &KeyPath, layers: &Layers) -> Result<(), LocatedError> {
    check_capitalised(cache, CACHE_KEYS, path, layers)?;
    if let Some(kind) = cache.get("Type")
        && !kind
            .as_str()
            .is_some_and(|kind| CACHE_TYPES.contains(&kind))
    {
        return Err(layers
            .error_at(
                &path.key("Type"),
                format!("must be one of {}", CACHE_TYPES.join(", ")),
            )
            .with_hint(
                kind.as_str()
                    .and_then(|kind| did_you_mean(kind, CACHE_TYPES)),
            ));
    }
    for (backend, keys) in [
        ("s3", CACHE_S3_KEYS),
        ("gcs", CACHE_GCS_KEYS),
        ("azure", CACHE_AZURE_KEYS),
    ] {
        if let Some(backend_table) = cache.get(backend).and_then(toml::Value::as_table) {
            check_capitalised(backend_table, keys, &path.key(backend), layers)?;
        }
    }
    Ok(())
}

fn check_docker(docker: &toml::Table, path: &KeyPath, layers: &Layers) -> Result<(), LocatedError> {
    for (key, value) in docker {
        let at = path.key(key);
        match key.as_str() {
            "privileged"
            | "tls_verify"
            | "disable_cache"
            | "disable_entrypoint_overwrite"
            | "oom_kill_disable"
            | "enable_ipv6"
            | "services_privileged"
                if !value.is_bool() =>
            {
                return Err(layers.error_at(&at, "must be true or false"));
            }
            "volumes"
            | "dns"
            | "dns_search"
            | "extra_hosts"
            | "cap_add"
            | "cap_drop"
            | "security_opt"
            | "devices"
            | "allowed_images"
            | "allowed_services"
            | "allowed_pull_policies"
            | "volumes_from"
            | "links"
            | "group_add"
            | "allowed_privileged_images"
            | "allowed_privileged_services"
            | "services_security_opt"
                if !is_string_list(value) =>
            {
                return Err(layers.error_at(&at, "must be a list of strings"));
            }
            "network_mtu" | "shm_size" | "services_limit" | "wait_for_services_timeout" => {
                if value.as_integer().is_none() {
                    return Err(layers.error_at(&at, "must be a whole number"));
                }
                if key == "network_mtu" && !matches!(value.as_integer(), Some(0 | 68..=65535)) {
                    return Err(layers.error_at(&at, "must be 0 (unset) or from 68 to 65535"));
                }
            }
            "pull_policy" => {
                let policies: Vec<&toml::Value> = match value {
                    toml::Value::Array(items) => items.iter().collect(),
                    single => vec![single],
                };
                for policy in policies {
                    if !policy
                        .as_str()
                        .is_some_and(|text| PULL_POLICIES.contains(&text))
                    {
                        return Err(layers.error_at(
                            &at,
                            format!("must be one or a list of {}", PULL_POLICIES.join(", ")),
                        ));
                    }
                }
            }
            // `[[runners.docker.services]]`: each a table naming its image.
            "services"
                if !value.as_array().is_some_and(|services| {
                    services.iter().all(|service| {
                        service
                            .get("name")
                            .and_then(toml::Value::as_str)
                            .is_some_and(|name| !name.is_empty())
                    })
                }) =>
            {
                return Err(layers.error_at(
                    &at,
                    "must be `[[runners.NAME.docker.services]]` tables, each with the image as `name`",
                ));
            }
            "host" | "image" if value.as_str().is_none_or(str::is_empty) => {
                return Err(layers.error_at(&at, "must be a non-empty string"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses a key that differs from a known capitalised one only in case: gitlab-runner would
/// ignore it and run without the setting.
fn check_capitalised(
    table: &toml::Table,
    known: &[&str],
    path: &KeyPath,
    layers: &Layers,
) -> Result<(), LocatedError> {
    for key in table.keys() {
        if known.contains(&key.as_str()) {
            continue;
        }
        if let Some(right) = known.iter().find(|known| known.eq_ignore_ascii_case(key)) {
            return Err(layers.error_at(
                &path.key(key),
                format!(
                    "gitlab-runner spells this key `{right}` and ignores `{key}`: write `{right}`"
                ),
            ));
        }
    }
    Ok(())
}

/// A Go `time.Duration` as gitlab-runner's TOML reads one: text Go's `time.ParseDuration`
/// takes (`"30s"`, `"1h30m"`), or a whole number of nanoseconds.
fn is_duration(value: &toml::Value) -> bool {
    match value {
        toml::Value::Integer(nanoseconds) => *nanoseconds >= 0,
        toml::Value::String(text) => {
            let mut rest = text.as_str();
            if rest == "0" {
                return true;
            }
            if rest.is_empty() {
                return false;
            }
            while !rest.is_empty() {
                let number = rest
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(rest.len());
                if number == 0 {
                    return false;
                }
                rest = &rest[number..];
                let Some(unit) = ["ns", "us", "µs", "ms", "s", "m", "h"]
                    .into_iter()
                    .find(|unit| rest.starts_with(unit))
                else {
                    return false;
                };
                rest = &rest[unit.len()..];
            }
            true
        }
        _ => false,
    }
}

fn is_string_list(value: &toml::Value) -> bool {
    value
        .as_array()
        .is_some_and(|items| items.iter().all(toml::Value::is_str))
}
