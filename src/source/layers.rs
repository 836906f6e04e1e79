//! The layers of `[source] profiles`: which files of a checkout a host of a given name and
//! group converges to. `{hostname}` and `{group}` are filled in; a bare name is the
//! repository's `profiles/NAME.toml`, else an embedded profile; a path ending in `.toml` is a
//! file of the repository; `?` marks a layer that may be missing. A path never leaves the
//! checkout: `..`, an absolute path and a link in it are refused (the repository is reviewed,
//! but what is read from it is still input: read through `Host`, links never followed).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::{
    host::{Host, HostPath, READ_LIMIT, host_path},
    profile::{ProfileRef, embedded_text},
};

/// What most fleets never write: the repository's base, then the group's, then the host's own
/// layer, the last two only when present (as Ansible's group_vars and host_vars).
pub(crate) const DEFAULT_LAYERS: [&str; 3] = [
    "base.toml",
    "groups/{group}.toml?",
    "hosts/{hostname}.toml?",
];

/// The default layers, parsed.
pub(crate) fn default_layers() -> Vec<Layer> {
    DEFAULT_LAYERS
        .iter()
        .map(|text| Layer::parse(text).expect("the default layers parse"))
        .collect()
}

/// One entry of `profiles`, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layer {
    /// The text without `?`: a name or a relative `.toml` path, placeholders unfilled.
    pattern: String,
    optional: bool,
}

/// Who the layers are filled in for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub hostname: String,
    pub group: Option<String>,
}

impl Layer {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (pattern, optional) = match text.strip_suffix('?') {
            Some(pattern) => (pattern, true),
            None => (text, false),
        };
        let filled = pattern.replace("{hostname}", "h").replace("{group}", "g");
        if filled.contains(['{', '}']) {
            return Err(format!(
                "`{text}` has a placeholder berth does not fill: only `{{hostname}}` and `{{group}}`"
            ));
        }
        if pattern.ends_with(".toml") {
            repository_path(&filled).map_err(|message| format!("`{text}` {message}"))?;
        } else if !valid_name(&filled) {
            return Err(format!(
                "`{text}` is neither a profile name (letters, digits, `-`, `_`, `.`) nor a `.toml` path in the repository"
            ));
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            optional,
        })
    }

    /// The layer for `member`; `None` when it names `{group}` and the host has none.
    fn fill(&self, member: &Member) -> Option<String> {
        if self.pattern.contains("{group}") && member.group.is_none() {
            return None;
        }
        Some(
            self.pattern
                .replace("{hostname}", &member.hostname)
                .replace("{group}", member.group.as_deref().unwrap_or_default()),
        )
    }
}

/// A group or host name, as it goes into a path: no `/`, never `.` or `..`.
pub(crate) fn valid_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text != "."
        && text != ".."
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A relative path inside the repository: plain components only.
pub(crate) fn repository_path(text: &str) -> Result<(), String> {
    if text.starts_with('/') {
        return Err("is absolute: name a file relative to the repository's top".to_owned());
    }
    if text
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err("leaves the repository (`..`, `.` or an empty part)".to_owned());
    }
    Ok(())
}

/// The host's name: the first line of `/etc/hostname` under the root, else the kernel's.
pub(crate) fn hostname(host: &Host) -> Result<String> {
    let written = host
        .read_optional(&host_path("/etc/hostname"))?
        .and_then(|text| text.lines().next().map(|line| line.trim().to_owned()))
        .filter(|name| !name.is_empty());
    let name = written
        .or_else(|| sysinfo::System::host_name().ok())
        .unwrap_or_default();
    if !valid_name(&name) {
        bail!(
            "the host name `{name}` cannot name a layer (letters, digits, `-`, `_`, `.`): fix `/etc/hostname`"
        );
    }
    Ok(name)
}

/// A checkout, read through a `Host` rooted at it that follows no link.
pub(crate) struct Checkout {
    dir: PathBuf,
    files: Host,
    /// How errors name it: the commit, or the directory given to `--source`.
    shown: String,
}

impl Checkout {
    pub(crate) fn new(dir: &Path, shown: impl Into<String>) -> Self {
        let files = Host::new(dir);
        files.distrust(&host_path("/"));
        Self {
            dir: dir.to_owned(),
            files,
            shown: shown.into(),
        }
    }

    fn has(&self, path: &str) -> Result<bool> {
        Ok(self.files.read_limited(&at(path), READ_LIMIT)?.is_some())
    }

    /// The names of the `.toml` files in a folder of the checkout (`hosts`, `groups`), without
    /// the suffix.
    pub(crate) fn stems(&self, folder: &str) -> Result<Vec<String>> {
        Ok(self
            .files
            .list_dir(&at(folder))?
            .into_iter()
            .filter_map(|name| name.strip_suffix(".toml").map(str::to_owned))
            .filter(|stem| valid_name(stem))
            .collect())
    }

    /// The profiles `layers` name for `member`, in order; an optional layer that is missing
    /// is left out, a required one is an error.
    pub(crate) fn profiles(&self, layers: &[Layer], member: &Member) -> Result<Vec<ProfileRef>> {
        let mut refs = Vec::new();
        for layer in layers {
            let Some(filled) = layer.fill(member) else {
                if layer.optional {
                    continue;
                }
                bail!(
                    "the layer `{}` needs `{{group}}`, and the host has none: set `group` in `[source]`",
                    layer.pattern
                );
            };
            let file = if filled.ends_with(".toml") {
                filled.clone()
            } else {
                format!("profiles/{filled}.toml")
            };
            if repository_path(&file).is_err() || !valid_path_parts(&filled) {
                bail!("the layer `{filled}` leaves the repository");
            }
            if self.has(&file)? {
                refs.push(ProfileRef::Checkout {
                    dir: self.dir.clone(),
                    path: file,
                });
            } else if !filled.ends_with(".toml") && embedded_text(&filled).is_some() {
                refs.push(ProfileRef::Embedded(filled));
            } else if !layer.optional {
                bail!(
                    "the layer `{filled}` is not in {}{}",
                    self.shown,
                    if filled.ends_with(".toml") {
                        String::new()
                    } else {
                        format!(" (as `{file}`) nor among the embedded profiles")
                    }
                );
            }
        }
        if refs.is_empty() {
            bail!("no layer of `[source] profiles` is in {}", self.shown);
        }
        Ok(refs)
    }
}

/// Filled-in names may not climb either (`{hostname}` is checked, this is the second look).
fn valid_path_parts(filled: &str) -> bool {
    filled.split('/').all(|part| part != ".." && part != ".")
}

fn at(relative: &str) -> HostPath {
    host_path("/").join(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(hostname: &str, group: Option<&str>) -> Member {
        Member {
            hostname: hostname.to_owned(),
            group: group.map(str::to_owned),
        }
    }

    #[test]
    fn layers_refuse_what_leaves_the_repository() {
        for text in [
            "../x.toml",
            "/etc/x.toml",
            "a//b.toml",
            "a/./b.toml",
            "{user}.toml",
            "a b",
        ] {
            assert!(Layer::parse(text).is_err(), "{text}");
        }
        for text in [
            "base.toml",
            "groups/{group}.toml?",
            "dind",
            "hosts/{hostname}.toml?",
        ] {
            assert!(Layer::parse(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn the_default_layers_give_base_group_and_host_in_order_and_skip_the_missing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Host::new(dir.path());
        for file in [
            "/base.toml",
            "/groups/eu-1.toml",
            "/hosts/a.toml",
            "/profiles/site.toml",
        ] {
            root.write_atomic(&host_path(file), b"", 0o644).unwrap();
        }
        let checkout = Checkout::new(dir.path(), "the test checkout");
        let layers = default_layers();
        let paths = |refs: Vec<ProfileRef>| -> Vec<String> {
            refs.iter().map(ProfileRef::short_name).collect()
        };
        assert_eq!(
            paths(
                checkout
                    .profiles(&layers, &member("a", Some("eu-1")))
                    .unwrap()
            ),
            ["base", "eu-1", "a"]
        );
        assert_eq!(
            paths(checkout.profiles(&layers, &member("b", None)).unwrap()),
            ["base"]
        );
        let named = [Layer::parse("site").unwrap(), Layer::parse("dind").unwrap()];
        assert_eq!(
            paths(checkout.profiles(&named, &member("b", None)).unwrap()),
            ["site", "dind"]
        );
        let error = checkout
            .profiles(&[Layer::parse("nope.toml").unwrap()], &member("b", None))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the layer `nope.toml` is not in the test checkout"
        );
    }

    #[test]
    fn a_link_in_the_checkout_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        Host::new(outside.path())
            .write_atomic(&host_path("/secret.toml"), b"x = 1", 0o644)
            .unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.toml"),
            dir.path().join("base.toml"),
        )
        .unwrap();
        let checkout = Checkout::new(dir.path(), "the test checkout");
        let error = checkout
            .profiles(&[Layer::parse("base.toml").unwrap()], &member("a", None))
            .unwrap_err();
        assert!(format!("{error:#}").contains("base.toml"), "{error:#}");
    }
}
