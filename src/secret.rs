//! Secrets (runner tokens, registration tokens, access tokens) and their fingerprints.
//!
//! A [`Secret`] prints as `***` however it is printed: `Debug`, `Display` and `Serialize` all
//! hide it, so a token that ends up in a log line, an error, a plan or a JSON document by
//! mistake shows nothing. The only way to the text is [`Secret::expose`], called where the token
//! must go: an HTTP body or header, or the `token` key of gitlab-runner's config.toml. Leaked
//! tokens in logs and diffs are a top complaint about other runner tools (ansible-gitlab-runner
//! PR #340, salt #39856, puppet-gitlab #363).
//!
//! A [`Fingerprint`] tells whether a token changed without keeping it: the first 64 bits of its
//! SHA-256. The ledger and the plan carry fingerprints, never tokens.

use std::fmt;

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

/// What every secret prints as.
pub(crate) const REDACTED: &str = "***";

/// Keys whose values are secrets wherever they appear (a profile, config.toml): runner
/// tokens, cache credentials, passwords. Their values print as `***`.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    matches!(
        key.as_str(),
        "token"
            | "secretkey"
            | "sessiontoken"
            | "accesskey"
            | "privatekey"
            | "accountkey"
            | "sentry_dsn"
            | "password"
    ) || key.ends_with("_token")
        || key.ends_with("password")
        || key.ends_with("secret")
}

/// Environment variables whose values are secrets by their name (`CI_SERVER_TOKEN`,
/// `AWS_SECRET_ACCESS_KEY`, `REGISTRY_PASSWORD`, `DOCKER_AUTH_CONFIG`): wider than
/// [`is_secret_key`], since env names follow no schema and a container's env is where
/// credentials are passed by convention. Their values print as a fingerprint, so a plan still
/// shows that one changed.
pub(crate) fn is_secret_env(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    is_secret_key(&name)
        || [
            "TOKEN",
            "SECRET",
            "PASSWORD",
            "PASSWD",
            "KEY",
            "CREDENTIAL",
            "AUTH",
        ]
        .iter()
        .any(|word| name.contains(word))
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself, for the one place that must send or store it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.0)
    }

    /// Replaces every occurrence of this secret in `text` (an error message from GitLab, say)
    /// with `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.0, REDACTED)
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// The first 16 hex digits of a token's SHA-256: enough to tell two tokens apart, too little to
/// help guess one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct Fingerprint(String);

impl Fingerprint {
    pub(crate) fn of(text: &str) -> Self {
        let digest = Sha256::digest(text.as_bytes());
        Self(hex::encode(&digest[..8]))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The short form people read in a plan: `3f2a…`.
    pub(crate) fn short(&self) -> String {
        format!("{}…", &self.0[..self.0.len().min(4)])
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "glrt-t3stT0kenValue_abcdef";

    #[test]
    fn env_names_that_carry_credentials_are_secret() {
        for name in [
            "CI_SERVER_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "REGISTRY_PASSWORD",
            "DOCKER_AUTH_CONFIG",
            "ssh_private_key",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ] {
            assert!(is_secret_env(name), "{name}");
        }
        for name in ["DOCKER_HOST", "DOCKER_TLS_CERTDIR", "PATH", "TZ"] {
            assert!(!is_secret_env(name), "{name}");
        }
    }

    #[test]
    fn every_way_of_printing_a_secret_hides_it() {
        let secret = Secret::new(TOKEN);
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{secret:#?}"), "***");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"***\"");
        #[derive(Debug, Serialize)]
        struct SerializedHolder {
            token: Secret,
        }
        let holder = SerializedHolder {
            token: secret.clone(),
        };
        assert!(!format!("{holder:?}").contains(TOKEN));
        assert_eq!(
            serde_json::to_value(&holder).unwrap(),
            serde_json::json!({"token": "***"})
        );
        let error = anyhow::anyhow!("failed with token {secret}");
        assert!(!format!("{error:#}").contains(TOKEN));
        assert_eq!(secret.expose(), TOKEN);
    }

    #[test]
    fn scrub_removes_the_secret_from_foreign_text() {
        let secret = Secret::new(TOKEN);
        assert_eq!(
            secret.scrub(&format!("token {TOKEN} is invalid")),
            "token *** is invalid"
        );
        assert_eq!(Secret::new("").scrub("text"), "text");
    }

    #[test]
    fn fingerprints_tell_tokens_apart_without_holding_them() {
        let one = Secret::new(TOKEN).fingerprint();
        let two = Secret::new("glrt-another").fingerprint();
        assert_ne!(one, two);
        assert_eq!(one, Fingerprint::of(TOKEN));
        assert_eq!(one.as_str().len(), 16);
        assert!(!one.as_str().contains("glrt"));
        assert_eq!(one.short().chars().count(), 5);
        assert!(one.short().ends_with('…'));
    }
}
