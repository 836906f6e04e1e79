//! `berth show` and `berth profiles`: the merged profile as TOML with the layer each value came
//! from, and the profiles berth can find with their descriptions. Secret values (as
//! [`crate::secret::is_secret_key`] tells them) are shown as `***`. Reads profile files only.

use anyhow::Result;
use serde::Serialize;
use toml_edit::{DocumentMut, Item, TableLike};

use super::source::{KeyPath, TomlFile, deep_merge};
use super::{PROFILE_DIR, ProfileRef, embedded, read};
use crate::{
    host::{Host, host_path},
    secret::{REDACTED, is_secret_env, is_secret_key},
};

/// The merged profile and where each value came from.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Shown {
    /// The layers' short names, in order.
    pub profiles: Vec<String>,
    /// The merged profile as TOML, each value followed by `# from LAYER:LINE`.
    pub toml: String,
    /// Each value's key and the layer (`file:line`) whose value won, in document order.
    pub origins: Vec<(String, String)>,
}

/// Merges `refs` as `apply` would and annotates each value with the layer that set it.
pub(crate) fn merged(refs: &[ProfileRef], host: &Host) -> Result<Shown> {
    let (profiles, sources) = read(refs, host)?;
    let mut merged = toml::Table::new();
    for source in &sources {
        // Invalid layers were refused by the caller's `load`; a table is all this needs.
        let table: toml::Table = toml::from_str(&source.text)?;
        deep_merge(&mut merged, table);
    }
    let mut document: DocumentMut = toml::to_string(&merged)?.parse()?;
    let mut origins = Vec::new();
    annotate(
        document.as_table_mut(),
        &KeyPath::root(),
        &sources,
        &mut origins,
    );
    Ok(Shown {
        profiles,
        toml: document.to_string(),
        origins,
    })
}

/// The last layer that sets `key` (the one whose value won), as `file:line`.
fn origin(key: &KeyPath, sources: &[TomlFile]) -> String {
    sources
        .iter()
        .rev()
        .find(|source| source.sets(key))
        .map(|source| match source.position_of(key) {
            Some((line, _)) => format!("{}:{line}", source.name),
            None => source.name.clone(),
        })
        .unwrap_or_default()
}

fn annotate(
    table: &mut dyn TableLike,
    path: &KeyPath,
    sources: &[TomlFile],
    origins: &mut Vec<(String, String)>,
) {
    for (key, item) in table.iter_mut() {
        let key_path = path.key(key.get());
        match item {
            Item::Table(child) => annotate(child, &key_path, sources, origins),
            Item::ArrayOfTables(tables) => {
                for (index, child) in tables.iter_mut().enumerate() {
                    annotate(child, &key_path.index(index), sources, origins);
                }
            }
            Item::Value(value) => {
                if shown_as_secret(path, key.get()) {
                    let decor = value.decor().clone();
                    *value = REDACTED.into();
                    *value.decor_mut() = decor;
                } else if let toml_edit::Value::InlineTable(inline) = value {
                    mask_inline(inline, &key_path);
                }
                let from = origin(&key_path, sources);
                value.decor_mut().set_suffix(format!("  # from {from}"));
                origins.push((key_path.to_string(), from));
            }
            Item::None => {}
        }
    }
}

fn mask_inline(table: &mut dyn TableLike, path: &KeyPath) {
    for (key, item) in table.iter_mut() {
        match item {
            Item::Value(toml_edit::Value::InlineTable(inline)) => {
                mask_inline(inline, &path.key(key.get()));
            }
            Item::Value(value) if shown_as_secret(path, key.get()) => *value = REDACTED.into(),
            _ => {}
        }
    }
}

/// A secret key anywhere, or a container env variable whose name says it holds a credential
/// (`REGISTRY_PASSWORD`, `AWS_SECRET_ACCESS_KEY`: the plan shows those as fingerprints too).
fn shown_as_secret(parent: &KeyPath, key: &str) -> bool {
    is_secret_key(key) || (parent.last_key() == Some("env") && is_secret_env(key))
}

/// A profile berth can find by name.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ListedProfile {
    pub name: String,
    /// `embedded`, or the installed file's host path.
    pub source: String,
    /// The `description` key, else the first comment line.
    pub description: Option<String>,
    /// An installed profile of an embedded name: `-p NAME` takes the installed one.
    pub overrides_embedded: bool,
    /// Named in `/etc/berth/berth.toml`'s `profiles`.
    pub selected: bool,
}

/// The installed profiles (`/etc/berth/profiles/*.toml`, which win over the embedded ones of
/// the same name) and the embedded ones, by name.
pub(crate) fn list(host: &Host, selected: &[ProfileRef]) -> Result<Vec<ListedProfile>> {
    let directory = host_path(PROFILE_DIR);
    let is_selected = |name: &str, path: Option<&str>| {
        selected.iter().any(|profile| match profile {
            ProfileRef::Name(selected) => selected == name,
            ProfileRef::HostFile(file) => Some(file.to_string().as_str()) == path,
            ProfileRef::Embedded(selected) => selected == name && path.is_none(),
            ProfileRef::LocalFile(_) | ProfileRef::Checkout { .. } => false,
        })
    };
    let mut listed = Vec::new();
    for file in host.list_dir(&directory)? {
        let Some(name) = file.strip_suffix(".toml") else {
            continue;
        };
        let path = directory.join(&file);
        let Some(text) = host.read_optional(&path)? else {
            continue;
        };
        listed.push(ListedProfile {
            name: name.to_owned(),
            source: path.to_string(),
            description: description(&text),
            overrides_embedded: embedded().any(|(embedded, _)| embedded == name),
            selected: is_selected(name, Some(path.to_string().as_str())),
        });
    }
    for (name, text) in embedded() {
        listed.push(ListedProfile {
            name: name.to_owned(),
            source: "embedded".to_owned(),
            description: description(text),
            overrides_embedded: false,
            selected: is_selected(name, None)
                && !listed.iter().any(|installed| installed.name == name),
        });
    }
    Ok(listed)
}

/// The names `-p NAME` finds: installed and embedded, for "did you mean".
pub(crate) fn names(host: &Host) -> Vec<String> {
    let mut names: Vec<String> = host
        .list_dir(&host_path(PROFILE_DIR))
        .unwrap_or_default()
        .iter()
        .filter_map(|file| file.strip_suffix(".toml").map(str::to_owned))
        .collect();
    names.extend(embedded().map(|(name, _)| name.to_owned()));
    names
}

/// The `description` key, else the first comment line without its `#`.
fn description(text: &str) -> Option<String> {
    let from_key = toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|table| table.get("description")?.as_str().map(str::to_owned));
    from_key.or_else(|| {
        text.lines()
            .map(str::trim)
            .find(|line| line.starts_with('#'))
            .map(|line| line.trim_start_matches('#').trim().to_owned())
            .filter(|line| !line.is_empty())
    })
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests build fixture trees beside the host layer"
)]
mod tests {
    use super::*;

    #[test]
    fn each_value_names_the_layer_it_came_from_and_secrets_are_masked() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path().to_path_buf());
        let write = |name: &str, text: &str| {
            let path = root.path().join(name);
            std::fs::write(&path, text).unwrap();
            ProfileRef::LocalFile(path)
        };
        let base = write("base.toml", "mtu = 1500\n[docker.daemon]\ndebug = true\n");
        let site = write(
            "site.toml",
            "mtu = 1400\n[runners.r.cache.s3]\nSecretKey = \"hunter2\"\n\
             [containers.c]\nenv = { AWS_SECRET_ACCESS_KEY = \"hunter3\", TZ = \"UTC\" }\n",
        );
        let shown = merged(&[base, site], &host).unwrap();
        let dir = root.path().display().to_string();
        let text = shown.toml.replace(&dir, "[DIR]");
        insta::assert_snapshot!(text, @r#"
        mtu = 1400  # from [DIR]/site.toml:1

        [docker.daemon]
        debug = true  # from [DIR]/base.toml:3

        [runners.r.cache.s3]
        SecretKey = "***"  # from [DIR]/site.toml:3

        [containers.c.env]
        AWS_SECRET_ACCESS_KEY = "***"  # from [DIR]/site.toml:5
        TZ = "UTC"  # from [DIR]/site.toml:5
        "#);
        assert!(!shown.toml.contains("hunter2"));
        assert!(!shown.toml.contains("hunter3"), "{}", shown.toml);
        assert!(shown.toml.contains("TZ = \"UTC\""), "{}", shown.toml);
    }

    #[test]
    fn descriptions_come_from_the_key_or_the_first_comment() {
        assert_eq!(
            description("# site: our runners\ndescription = \"Site\"\n").as_deref(),
            Some("Site")
        );
        assert_eq!(
            description("\n# site: our runners\nmtu = 1\n").as_deref(),
            Some("site: our runners")
        );
        assert_eq!(description("mtu = 1\n"), None);
    }
}
