//! Profiles: TOML files that declare what a runner host should look like. This module finds
//! them (by name or path), parses each layer on its own so every error points into the file that
//! has it, deep-merges the layers (tables merge, scalars and arrays replace), and places an error
//! found after the merge in the layer that set the key ([`Layers`]). What the sections mean is
//! each kind's business (`resource::profile` puts them together); nothing here knows a kind, and
//! nothing here touches the host beyond reading profile files.

pub(crate) mod show;
pub(crate) mod source;

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;

use crate::host::{FileMode, Host, HostPath, host_path};
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
    /// A file of a profile repository's checkout (`[source]`, `validate --source`): `path`
    /// relative to `dir`, read without following a link.
    Checkout { dir: PathBuf, path: String },
    /// An embedded profile named by `[source] profiles`: the binary's, whatever
    /// `/etc/berth/profiles` holds.
    Embedded(String),
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

    /// Like [`ProfileRef::parse_cli`], but for berth.toml's `profiles`: files are host paths,
    /// and a relative one is relative to `directory`, berth.toml's own (never to wherever berth
    /// was started from). `..` is refused: berth.toml names profiles under its root, and a
    /// path that climbs out of where it says is read from nowhere an operator would look.
    pub(crate) fn parse_host(text: &str, directory: &HostPath) -> Result<Self, String> {
        if text.split('/').any(|part| part == "..") {
            return Err(format!(
                "`{text}` contains `..`: name a profile by its name, by a path under `{directory}`, or by an absolute path"
            ));
        }
        if text.contains('/') || text.ends_with(".toml") {
            let path = if text.starts_with('/') {
                PathBuf::from(text)
            } else {
                directory.as_path().join(text)
            };
            HostPath::new(path).map(Self::HostFile)
        } else {
            Ok(Self::Name(text.to_owned()))
        }
    }

    /// A short name for labels and reports: the file stem or the name.
    pub(crate) fn short_name(&self) -> String {
        match self {
            Self::Name(name) | Self::Embedded(name) => name.clone(),
            Self::LocalFile(path) => stem(path),
            Self::HostFile(path) => stem(path.as_path()),
            Self::Checkout { path, .. } => stem(std::path::Path::new(path)),
        }
    }

    fn read(&self, host: &Host) -> Result<TomlFile> {
        match self {
            Self::Name(name) => {
                let operator_copy = host_path(PROFILE_DIR).join(format!("{name}.toml"));
                if let Some((text, FileMode(mode))) = host.read_trusted(&operator_copy)? {
                    return Ok(TomlFile::new(operator_copy.to_string(), text).with_mode(Some(mode)));
                }
                let text = embedded_text(name).with_context(|| {
                    let known: Vec<_> = embedded().map(|(name, _)| name).collect();
                    let findable = show::names(host);
                    let meant = source::closest(name, findable.iter().map(String::as_str))
                        .map(|meant| format!("; did you mean `{meant}`?"))
                        .unwrap_or_default();
                    format!(
                        "no profile named `{name}`: not in `{operator_copy}` nor among the embedded profiles ({}){meant}",
                        known.join(", ")
                    )
                })?;
                Ok(TomlFile::new(format!("{name} (embedded)"), text))
            }
            Self::LocalFile(path) => {
                let (text, mode) = crate::host::read_local(path, crate::host::READ_LIMIT)
                    .with_context(|| format!("failed to read profile `{}`", path.display()))?;
                Ok(TomlFile::new(path.display().to_string(), text).with_mode(Some(mode)))
            }
            Self::HostFile(path) => {
                let (text, FileMode(mode)) = host
                    .read_trusted(path)?
                    .with_context(|| format!("profile `{path}` does not exist"))?;
                Ok(TomlFile::new(path.to_string(), text).with_mode(Some(mode)))
            }
            Self::Checkout { dir, path } => {
                // What the repository holds is input: no link followed, every read bounded.
                let files = Host::new(dir);
                files.distrust(&host_path("/"));
                let text = files
                    .read_optional(&host_path("/").join(path))?
                    .with_context(|| format!("profile `{path}` is not in the checkout"))?;
                Ok(TomlFile::new(path.clone(), text))
            }
            Self::Embedded(name) => embedded_text(name)
                .map(|text| TomlFile::new(format!("{name} (embedded)"), text))
                .with_context(|| format!("no embedded profile named `{name}`")),
        }
    }
}

fn stem(path: &std::path::Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |stem| stem.to_string_lossy().into_owned(),
    )
}

/// Why a set of profiles could not be used: every problem found, in the order found (never
/// none).
#[derive(Debug)]
pub(crate) struct ProfileError(Vec<LocatedError>);

impl ProfileError {
    /// `None` when there is no problem. The problems read in file order (files as they first
    /// come), then by line and column, as an editor lists them.
    pub(crate) fn of(mut problems: Vec<LocatedError>) -> Option<Self> {
        let mut files: Vec<String> = Vec::new();
        for problem in &problems {
            if !files.contains(&problem.file) {
                files.push(problem.file.clone());
            }
        }
        problems.sort_by_key(|problem| {
            (
                files.iter().position(|file| *file == problem.file),
                problem.position,
            )
        });
        (!problems.is_empty()).then_some(Self(problems))
    }

    /// The first problem.
    #[cfg(test)]
    pub(crate) fn problem(&self) -> &LocatedError {
        &self.0[0]
    }

    pub(crate) fn problems(&self) -> impl Iterator<Item = &LocatedError> {
        self.0.iter()
    }
}

/// One problem reads as before (`invalid profile`, caused by the problem); several are listed
/// one a line under a count, since an error chain has room for one cause only.
impl std::fmt::Display for ProfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let [problem] = self.0.as_slice() {
            return write!(f, "invalid profile `{}`", problem.file);
        }
        let mut files: Vec<&str> = Vec::new();
        for problem in self.problems() {
            if !files.contains(&problem.file.as_str()) {
                files.push(&problem.file);
            }
        }
        let files = files
            .iter()
            .map(|file| format!("`{file}`"))
            .collect::<Vec<_>>()
            .join(", ");
        write!(f, "{} problems in {files}:", self.0.len())?;
        for problem in self.problems() {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProfileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.0.as_slice() {
            [problem] => Some(problem),
            _ => None,
        }
    }
}

impl From<LocatedError> for ProfileError {
    fn from(problem: LocatedError) -> Self {
        Self(vec![problem])
    }
}

/// The problems found while resolving a profile, kept so that one run reports them all: a
/// check that fails hands its error here and resolution goes on with the next entry.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<LocatedError>);

impl Problems {
    /// The value, or `None` with the error kept.
    pub(crate) fn keep<T>(&mut self, result: Result<T, LocatedError>) -> Option<T> {
        result.map_err(|error| self.0.push(error)).ok()
    }

    /// The value, or `None` with every error kept.
    pub(crate) fn keep_all<T>(&mut self, result: Result<T, Vec<LocatedError>>) -> Option<T> {
        result.map_err(|errors| self.0.extend(errors)).ok()
    }

    pub(crate) fn push(&mut self, error: LocatedError) {
        self.0.push(error);
    }

    /// `Ok(value)` when nothing was kept.
    pub(crate) fn into_result<T>(self, value: T) -> Result<T, ProfileError> {
        match ProfileError::of(self.0) {
            None => Ok(value),
            Some(error) => Err(error),
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
    let mut problems = Vec::new();
    for source in sources {
        match source.parse::<T>() {
            Ok((_checked, table)) => deep_merge(&mut merged, table),
            Err(errors) => problems.extend(errors),
        }
    }
    if let Some(error) = ProfileError::of(problems) {
        return Err(error);
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
                hint: None,
            })
        })
}

/// Warnings for the secrets written into a layer that other users can read (`SecretKey =
/// "..."` in a 0644 profile), each at its key: such a secret belongs in a root-only file named
/// by `KEY_file`.
pub(crate) fn inline_secrets(sources: &[TomlFile]) -> Vec<LocatedError> {
    fn walk(table: &toml::Table, path: &KeyPath, found: &mut Vec<KeyPath>) {
        for (key, value) in table {
            match value {
                toml::Value::Table(child) => walk(child, &path.key(key), found),
                toml::Value::String(text)
                    if !text.is_empty() && crate::secret::is_secret_key(key) =>
                {
                    found.push(path.key(key));
                }
                _ => {}
            }
        }
    }
    let mut warnings = Vec::new();
    for source in sources {
        let Some(mode) = source.mode.filter(|mode| mode & 0o077 != 0) else {
            continue;
        };
        let Ok(table) = toml::from_str::<toml::Table>(&source.text) else {
            continue;
        };
        let mut found = Vec::new();
        walk(&table, &KeyPath::root(), &mut found);
        for key in found {
            let leaf = key.to_string();
            let leaf = leaf.rsplit('.').next().unwrap_or_default().to_owned();
            warnings.push(source.error_at(
                &key,
                format!(
                    "a secret written in a profile other users can read (mode {mode:04o}); put it in a file readable by root only and name that file with `{leaf}_file`"
                ),
            ));
        }
    }
    warnings
}

/// The literal secrets written in the layers, each at its key: a non-empty value of a secret
/// key (`token`, `password`, ..., never a `*_file` reference), or a GitLab runner or
/// registration token anywhere. A profile repository is read by everyone who reviews it:
/// `[source]` refuses a commit that holds one (tokens stay on the host, as files).
pub(crate) fn literal_secrets(sources: &[TomlFile]) -> Vec<LocatedError> {
    fn looks_like_a_token(text: &str) -> bool {
        // glrt-: a runner authentication token; GR1348941: a registration token's prefix.
        text.contains("glrt-") || text.contains("GR1348941")
    }
    fn walk(value: &toml::Value, path: &KeyPath, key: Option<&str>, found: &mut Vec<KeyPath>) {
        match value {
            toml::Value::Table(table) => {
                for (child_key, child) in table {
                    walk(child, &path.key(child_key), Some(child_key), found);
                }
            }
            toml::Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, &path.index(index), key, found);
                }
            }
            toml::Value::String(text)
                if !text.is_empty()
                    && (key.is_some_and(crate::secret::is_secret_key)
                        || looks_like_a_token(text)) =>
            {
                found.push(path.clone());
            }
            _ => {}
        }
    }
    let mut secrets = Vec::new();
    for source in sources {
        let Ok(table) = toml::from_str::<toml::Table>(&source.text) else {
            continue;
        };
        let mut found = Vec::new();
        walk(
            &toml::Value::Table(table),
            &KeyPath::root(),
            None,
            &mut found,
        );
        secrets.extend(found.into_iter().map(|key| {
            source.error_at(
                &key,
                "a literal secret: a profile repository holds no token or password; put it in a file on the host, readable by root only, and name that file with `KEY_file`",
            )
        }));
    }
    secrets
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
