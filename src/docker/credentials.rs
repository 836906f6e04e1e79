//! The registry credentials a pull sends (`X-Registry-Auth`), found where the `docker` CLI finds
//! them, so that an operator who ran `docker login` as root pulls with berth as with the CLI:
//! `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`), its `credHelpers` entry for the
//! registry, else its `credsStore`, else its `auths` entry (`auth`: base64 of `user:password`).
//! A helper is `docker-credential-NAME get` on PATH, told the registry on stdin: a program of
//! its own, not the docker CLI.
//!
//! Credentials are secrets: nothing here logs, prints or keeps them; what `-v` shows is which
//! source was used, never what it held. The config file can name a program berth then runs as
//! root, so it is read only when root's and writable by no one else (`host::read_local`).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use bollard::auth::DockerCredentials;
use serde::Deserialize;

/// Docker Hub's key in config.json, as `docker login` writes it.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";
/// A config.json is a few KiB; this is far more than any.
const CONFIG_LIMIT: u64 = 1024 * 1024;
/// How long a credential helper may take (one may ask a keyring or a cloud's metadata).
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

/// The parts of the CLI's config.json read here (no `Debug`: it holds secrets).
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ConfigFile {
    auths: BTreeMap<String, AuthEntry>,
    creds_store: Option<String>,
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct AuthEntry {
    auth: Option<String>,
    identitytoken: Option<String>,
}

/// What a credential helper answers to `get`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// The registry an image reference names, as config.json keys it: its first part when that is
/// a host (has a `.` or a `:`, or is `localhost`), else Docker Hub.
pub(crate) fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some(("docker.io" | "index.docker.io", _)) => DOCKER_HUB,
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => DOCKER_HUB,
    }
}

/// The credentials for the registry of `image`, from the environment's config.json; `None`
/// when it has none for it (an anonymous pull, as the CLI's).
pub(crate) fn for_image(image: &str) -> Result<Option<DockerCredentials>> {
    let Some(path) = config_path(|key| std::env::var(key).ok()) else {
        return Ok(None);
    };
    let text = match crate::host::read_local(&path, CONFIG_LIMIT) {
        Ok((text, _)) => text,
        Err(error) if not_found(&error) => return Ok(None),
        Err(error) => return Err(error),
    };
    let config: ConfigFile = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a docker config file", path.display()))?;
    let registry = registry_of(image);
    let helper = config
        .cred_helpers
        .iter()
        .find(|(key, _)| hostname(key) == hostname(registry))
        .map(|(_, helper)| helper)
        .or(config.creds_store.as_ref())
        .filter(|helper| !helper.is_empty());
    if let Some(helper) = helper {
        tracing::debug!("registry credentials for `{registry}` from `docker-credential-{helper}`");
        return from_helper(helper, registry);
    }
    let Some(entry) = config
        .auths
        .iter()
        .find(|(key, _)| hostname(key) == hostname(registry))
        .map(|(_, entry)| entry)
    else {
        return Ok(None);
    };
    tracing::debug!(
        "registry credentials for `{registry}` from `{}`",
        path.display()
    );
    let mut credentials = DockerCredentials {
        serveraddress: Some(registry.to_owned()),
        identitytoken: entry
            .identitytoken
            .clone()
            .filter(|token| !token.is_empty()),
        ..DockerCredentials::default()
    };
    if let Some(auth) = entry.auth.as_deref().filter(|auth| !auth.is_empty()) {
        let (username, password) = decode_auth(auth)
            .with_context(|| format!("the `auth` of `{registry}` in `{}`", path.display()))?;
        credentials.username = Some(username);
        credentials.password = Some(password);
    }
    Ok(Some(credentials))
}

/// Where the CLI reads its config: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/`.
fn config_path(get: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let dir = get("DOCKER_CONFIG")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            get("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| PathBuf::from(home).join(".docker"))
        })?;
    Some(dir.join("config.json"))
}

fn not_found(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    })
}

/// A config key as a host name: `https://index.docker.io/v1/` → `index.docker.io`, as the CLI
/// compares them (`docker login` has written both forms).
fn hostname(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// `base64(user:password)` → (user, password).
fn decode_auth(auth: &str) -> Result<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .context("is not base64")?;
    let text = String::from_utf8(bytes).context("is not text")?;
    let Some((username, password)) = text.split_once(':') else {
        bail!("is not `user:password`");
    };
    Ok((username.to_owned(), password.to_owned()))
}

/// `docker-credential-HELPER get`, told `registry` on stdin. A registry the helper knows nothing
/// of is an anonymous pull, as with the CLI.
fn from_helper(helper: &str, registry: &str) -> Result<Option<DockerCredentials>> {
    let program = format!("docker-credential-{helper}");
    let handle = duct::cmd(&program, ["get"])
        .stdin_bytes(registry.as_bytes().to_vec())
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .start()
        .with_context(|| format!("failed to run `{program} get`"))?;
    let Some(output) = handle
        .wait_timeout(HELPER_TIMEOUT)
        .with_context(|| format!("failed to run `{program} get`"))?
    else {
        let _ = handle.kill();
        bail!(
            "`{program} get` did not answer within {} s",
            HELPER_TIMEOUT.as_secs()
        );
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // Its words, when they say only that it has none (they never hold the secret).
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        bail!(
            "`{program} get` exited with {}: {}",
            output.status,
            stdout.trim()
        );
    }
    let answer: HelperAnswer = serde_json::from_str(&stdout)
        .map_err(|_| anyhow::anyhow!("`{program} get` answered something that is not its JSON"))?;
    // A helper's `<token>` user is an identity token, as the CLI reads it.
    Ok(Some(if answer.username == "<token>" {
        DockerCredentials {
            serveraddress: Some(registry.to_owned()),
            identitytoken: Some(answer.secret),
            ..DockerCredentials::default()
        }
    } else {
        DockerCredentials {
            serveraddress: Some(registry.to_owned()),
            username: Some(answer.username),
            password: Some(answer.secret),
            ..DockerCredentials::default()
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_the_first_part_when_it_is_a_host() {
        assert_eq!(registry_of("busybox:1"), DOCKER_HUB);
        assert_eq!(registry_of("library/busybox"), DOCKER_HUB);
        assert_eq!(registry_of("docker.io/library/busybox"), DOCKER_HUB);
        assert_eq!(
            registry_of("registry.example:5000/team/app:1"),
            "registry.example:5000"
        );
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(hostname(DOCKER_HUB), "index.docker.io");
        assert_eq!(hostname("registry.example:5000"), "registry.example:5000");
    }

    #[test]
    fn auth_is_base64_of_user_and_password() {
        assert_eq!(
            decode_auth("dXNlcjpwYTpzcw==").unwrap(),
            ("user".to_owned(), "pa:ss".to_owned())
        );
        assert!(decode_auth("not base64!").is_err());
    }

    #[test]
    fn the_config_is_where_the_cli_reads_it() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == key)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        assert_eq!(
            config_path(env(&[("DOCKER_CONFIG", "/etc/d"), ("HOME", "/root")])),
            Some(PathBuf::from("/etc/d/config.json"))
        );
        assert_eq!(
            config_path(env(&[("HOME", "/root")])),
            Some(PathBuf::from("/root/.docker/config.json"))
        );
        assert_eq!(config_path(env(&[])), None);
    }
}
