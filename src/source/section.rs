//! `[source]` in berth.toml as written, and checked: the repository, the ref (the host's
//! channel), the deploy token's file, the allowed signers, the group, the layers and how often
//! watch looks for a new commit. Every error is placed at `berth.toml:LINE:COL: key `source.x``.

use std::time::Duration;

use serde::Deserialize;

use super::layers::{Layer, default_layers};
use crate::{
    host::HostPath,
    profile::source::{KeyPath, LocatedError, TomlFile},
};

/// How often `berth watch` asks the server for the ref's head when `poll` is not written.
const DEFAULT_POLL: Duration = Duration::from_secs(300);

/// `[source]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceSection {
    git: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    token_file: Option<String>,
    allowed_signers: Option<String>,
    group: Option<String>,
    profiles: Option<Vec<String>>,
    poll: Option<String>,
}

/// `[source]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    /// The repository's URL, as written (berth refuses one that holds credentials).
    pub url: String,
    /// A branch or tag: the host's channel.
    pub reference: String,
    /// `USER:TOKEN` of a deploy token (read_repository); `None` for a repository anyone reads.
    pub token_file: Option<HostPath>,
    /// git's SSH allowed-signers file: the keys whose commits this host applies.
    pub allowed_signers: HostPath,
    pub group: Option<String>,
    pub layers: Vec<Layer>,
    pub poll: Duration,
}

impl SourceSection {
    pub(crate) fn resolve(&self, file: &TomlFile) -> Result<Source, LocatedError> {
        let at = |key: &str, message: String| file.error_at(&KeyPath::parse_dotted(key), message);
        let url = self.url(file)?;
        let reference = self.reference(file)?;
        let host_file = |key: &str, value: &str| {
            HostPath::new(value).map_err(|message| at(&format!("source.{key}"), message))
        };
        let token_file = self
            .token_file
            .as_deref()
            .map(|value| host_file("token_file", value))
            .transpose()?;
        let allowed_signers = match self.allowed_signers.as_deref() {
            Some(value) => host_file("allowed_signers", value)?,
            None => {
                return Err(at(
                    "source",
                    "`[source]` needs `allowed_signers`: berth applies only commits signed by a key in it".to_owned(),
                ));
            }
        };
        let group = match self.group.as_deref() {
            Some(group) if super::layers::valid_name(group) => Some(group.to_owned()),
            Some(_) => {
                return Err(at(
                    "source.group",
                    "must be a group name: letters, digits, `-`, `_` and `.`".to_owned(),
                ));
            }
            None => None,
        };
        let written = self.profiles.clone();
        let layers = match &written {
            Some(list) if list.is_empty() => {
                return Err(at(
                    "source.profiles",
                    "names no layer; leave it out for the default".to_owned(),
                ));
            }
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(index, text)| {
                    Layer::parse(text).map_err(|message| {
                        file.error_at(
                            &KeyPath::parse_dotted("source.profiles").index(index),
                            message,
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            None => default_layers(),
        };
        let poll = match self.poll.as_deref() {
            None => DEFAULT_POLL,
            Some(text) => match text.parse::<jiff::SignedDuration>() {
                Ok(poll) if poll.is_positive() => poll.unsigned_abs(),
                _ => {
                    return Err(at(
                        "source.poll",
                        format!("`{text}` is not a duration: write one as `30s`, `5m` or `1h`"),
                    ));
                }
            },
        };
        Ok(Source {
            url,
            reference,
            token_file,
            allowed_signers,
            group,
            layers,
            poll,
        })
    }
}

impl SourceSection {
    fn url(&self, file: &TomlFile) -> Result<String, LocatedError> {
        let at = |key: &str, message: &str| file.error_at(&KeyPath::parse_dotted(key), message);
        match self.git.as_deref().map(str::trim) {
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                if url_has_credentials(url) {
                    return Err(at(
                        "source.git",
                        "holds credentials: put the deploy token in `token_file`, as `USER:TOKEN`, and keep the URL without them",
                    ));
                }
                Ok(url.to_owned())
            }
            Some(_) => Err(at(
                "source.git",
                "must be the repository's https:// (or http://) URL",
            )),
            None => Err(at(
                "source",
                "`[source]` needs `git`, the profile repository's URL",
            )),
        }
    }

    fn reference(&self, file: &TomlFile) -> Result<String, LocatedError> {
        let at = |key: &str, message: &str| file.error_at(&KeyPath::parse_dotted(key), message);
        match self.reference.as_deref() {
            Some(reference) if valid_ref(reference) => Ok(reference.to_owned()),
            Some(_) => Err(at(
                "source.ref",
                "must be a branch or tag name (letters, digits, `-`, `_`, `.` and `/`)",
            )),
            None => Err(at(
                "source",
                "`[source]` needs `ref`, the branch or tag this host follows",
            )),
        }
    }
}

/// `https://user:token@host/...`: credentials in the URL would reach argv and `.git/config`.
fn url_has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    authority.contains('@')
}

/// A branch or tag name that is also safe on git's command line (never an option).
fn valid_ref(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 200
        && !text.starts_with(['-', '/', '.'])
        && !text.ends_with(['/', '.'])
        && !text.contains("..")
        && !text.contains("//")
        && !text.ends_with(".lock")
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<Source, String> {
        let file = TomlFile::new("berth.toml", text);
        #[derive(Deserialize)]
        struct Wrapper {
            source: SourceSection,
        }
        let (wrapper, _) = file
            .parse::<Wrapper>()
            .map_err(|errors| errors[0].to_string())?;
        wrapper
            .source
            .resolve(&file)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn the_issue_example_resolves_with_the_default_layers() {
        let source = resolve(
            "[source]\ngit = \"https://gitlab.example.com/infra/runner-profiles.git\"\nref = \"stable\"\ntoken_file = \"/etc/berth/tokens/profiles\"\nallowed_signers = \"/etc/berth/allowed_signers\"\ngroup = \"eu-1\"\npoll = \"5m\"\n",
        )
        .unwrap();
        assert_eq!(source.reference, "stable");
        assert_eq!(source.group.as_deref(), Some("eu-1"));
        assert_eq!(source.poll, Duration::from_secs(300));
        assert_eq!(source.layers, default_layers());
    }

    #[test]
    fn each_bad_key_is_placed_at_its_line() {
        let base = "[source]\ngit = \"https://g.example/p.git\"\nref = \"stable\"\nallowed_signers = \"/etc/berth/allowed_signers\"\n";
        for (extra, expected) in [
            (
                "poll = \"soon\"\n",
                "berth.toml:5:1: key `source.poll`: `soon` is not a duration",
            ),
            (
                "group = \"a/b\"\n",
                "berth.toml:5:1: key `source.group`: must be a group name",
            ),
            (
                "profiles = [\"base.toml\", \"../x.toml\"]\n",
                "berth.toml:5:26: key `source.profiles[1]`: `../x.toml` leaves the repository",
            ),
        ] {
            let error = resolve(&format!("{base}{extra}")).unwrap_err();
            assert!(error.starts_with(expected), "{error}");
        }
        let error = resolve("[source]\ngit = \"https://u:t@g.example/p.git\"\nref = \"s\"\nallowed_signers = \"/a\"\n").unwrap_err();
        assert!(
            error.starts_with("berth.toml:2:1: key `source.git`: holds credentials"),
            "{error}"
        );
        let error = resolve("[source]\ngit = \"https://g.example/p.git\"\nref = \"--upload-pack=x\"\nallowed_signers = \"/a\"\n").unwrap_err();
        assert!(
            error.starts_with("berth.toml:3:1: key `source.ref`"),
            "{error}"
        );
        let error =
            resolve("[source]\ngit = \"https://g.example/p.git\"\nref = \"s\"\n").unwrap_err();
        assert!(error.contains("needs `allowed_signers`"), "{error}");
    }
}
