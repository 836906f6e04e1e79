//! Profiles: TOML files that declare what a runner host should look like. This module finds
//! them (by name or path), parses each layer on its own so every error points into the file that
//! has it, deep-merges the layers (tables merge, scalars and arrays replace), and places an error
//! found after the merge in the layer that set the key ([`Layers`]). What the sections mean is
//! each kind's business (`resource::profile` puts them together); nothing here knows a kind, and
//! nothing here touches the host beyond reading profile files.

pub(crate) mod source;

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;

use crate::host::{Host, HostPath, host_path};
use source::{KeyPath, LocatedError, TomlFile, deep_merge};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_profiles.rs"));
}

/// The profile berth converges to when neither `-p` nor `/etc/berth/berth.toml` names one.
pub(crate) const DEFAULT_PROFILE: &str = "dind";

/// Where operators put their own profiles; a name is looked up here before the embedded ones.
pub(crate) const PROFILE_DIR: &str = "/etc/berth/profiles";

/// The profiles compiled into the binary: every file in the repository's `profiles/`.
pub(crate) fn embedded() -> impl Iterator<Item = (&'static str, &'static str)> {
    embedded::EMBEDDED.iter().copied()
}

pub(crate) fn embedded_text(name: &str) -> Option<&'static str> {
    embedded()
        .find(|(embedded_name, _)| *embedded_name == name)
        .map(|(_, text)| text)
}

/// How the user named a profile. Serialized in a saved plan (`{"name": "dind"}`, `{"local_file": "/root/site.toml"}`), so
/// that `apply PLAN` reads the same layers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ProfileRef {
    /// `dind`: `/etc/berth/profiles/dind.toml` under the root, else the embedded `dind`.
    Name(String),
    /// `./site.toml` on the command line: a path on the machine berth runs on.
    LocalFile(PathBuf),
    /// A path listed in `/etc/berth/berth.toml`: a host path, so it resolves under the root.
    HostFile(HostPath),
}

impl ProfileRef {
    /// A bare word is a name; anything with a `/` or a `.toml` suffix is a file.
    pub(crate) fn parse_cli(text: &str) -> Self {
        if text.contains('/') || text.ends_with(".toml") {
            Self::LocalFile(PathBuf::from(text))
        } else {
            Self::Name(text.to_owned())
        }
    }

    /// Like [`ProfileRef::parse_cli`], but files are host paths; relative ones are relative to
    /// `/etc/berth`.
    pub(crate) fn parse_host(text: &str) -> Self {
        if text.contains('/') || text.ends_with(".toml") {
            let path = if text.starts_with('/') {
                PathBuf::from(text)
            } else {
                PathBuf::from("/etc/berth").join(text)
            };
            match HostPath::new(path) {
                Ok(path) => Self::HostFile(path),
                Err(_) => Self::LocalFile(PathBuf::from(text)),
            }
        } else {
            Self::Name(text.to_owned())
        }
    }

    /// A short name for labels and reports: the file stem or the name.
    pub(crate) fn short_name(&self) -> String {
        match self {
            Self::Name(name) => name.clone(),
            Self::LocalFile(path) => stem(path),
            Self::HostFile(path) => stem(path.as_path()),
        }
    }

    fn read(&self, host: &Host) -> Result<TomlFile> {
        match self {
            Self::Name(name) => {
                let operator_copy = host_path(PROFILE_DIR).join(format!("{name}.toml"));
                if let Some(text) = host.read_optional(&operator_copy)? {
                    return Ok(TomlFile::new(operator_copy.to_string(), text));
                }
                let text = embedded_text(name).with_context(|| {
                    let known: Vec<_> = embedded().map(|(name, _)| name).collect();
                    format!(
                        "no profile named `{name}`: not in `{operator_copy}` nor among the embedded profiles ({})",
                        known.join(", ")
                    )
                })?;
                Ok(TomlFile::new(format!("{name} (embedded)"), text))
            }
            Self::LocalFile(path) => {
                let text = crate::host::read_local(path)
                    .with_context(|| format!("failed to read profile `{}`", path.display()))?;
                Ok(TomlFile::new(path.display().to_string(), text))
            }
            Self::HostFile(path) => {
                let text = host
                    .read_optional(path)?
                    .with_context(|| format!("profile `{path}` does not exist"))?;
                Ok(TomlFile::new(path.to_string(), text))
            }
        }
    }
}

fn stem(path: &std::path::Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |stem| stem.to_string_lossy().into_owned(),
    )
}

/// Why a set of profiles could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid profile `{file}`")]
pub(crate) struct ProfileError {
    pub file: String,
    #[source]
    pub problem: LocatedError,
}

impl From<LocatedError> for ProfileError {
    fn from(problem: LocatedError) -> Self {
        Self {
            file: problem.file.clone(),
            problem,
        }
    }
}

/// Reads the given profiles, in order: their short names and their text.
pub(crate) fn read(refs: &[ProfileRef], host: &Host) -> Result<(Vec<String>, Vec<TomlFile>)> {
    let mut sources = Vec::new();
    for profile_ref in refs {
        sources.push(profile_ref.read(host)?);
    }
    Ok((refs.iter().map(ProfileRef::short_name).collect(), sources))
}

/// Parses every layer as `T` on its own (so an error points into the file that has it), then
/// deep-merges them and reads the merged table as `T`.
pub(crate) fn merge<T: DeserializeOwned>(sources: &[TomlFile]) -> Result<T, ProfileError> {
    let mut merged = toml::Table::new();
    for source in sources {
        let (_checked, table) = source.parse::<T>()?;
        deep_merge(&mut merged, table);
    }
    toml::Value::Table(merged)
        .try_into()
        .map_err(|error: toml::de::Error| {
            // Every layer passed on its own; a merge of valid layers stays valid. Report it
            // against the last file all the same rather than panic.
            ProfileError::from(LocatedError {
                file: sources
                    .last()
                    .map_or_else(String::new, |source| source.name.clone()),
                position: None,
                key: None,
                message: error.message().to_owned(),
            })
        })
}

/// The layers a merged profile came from, to place errors found after merging: the last layer
/// that sets a key is the one whose value won.
pub(crate) struct Layers<'a>(&'a [TomlFile]);

impl<'a> Layers<'a> {
    pub(crate) fn new(sources: &'a [TomlFile]) -> Self {
        Self(sources)
    }

    pub(crate) fn error_at(&self, key: &KeyPath, message: impl Into<String>) -> LocatedError {
        let source = self
            .0
            .iter()
            .rev()
            .find(|source| source.sets(key))
            .or(self.0.last())
            .expect("a profile has at least one layer");
        source.error_at(key, message)
    }
}
