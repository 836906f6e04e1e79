//! `KEY_file` for every secret a runner's settings can hold: `[runners.NAME.cache.s3]
//! SecretKey_file = "/etc/berth/secrets/s3"` puts the file's text into config.toml as
//! `SecretKey`, so the profile itself holds no secret and may stay readable by all. A key is a
//! secret when [`is_secret_key`] says so (`AccessKey`, `SecretKey`, `password`, ...). The
//! section takes the `_file` keys here; `runner-config` reads the files when it observes, with
//! the token files' mode warning, and shows their values as `***` like every secret.

use crate::{
    host::HostPath,
    profile::{
        Layers,
        source::{KeyPath, LocatedError},
    },
    secret::{Secret, is_secret_key},
};

/// A secret of config.toml read from a file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SecretFile {
    /// The key in its `[[runners]]` entry (or in the global settings) the text goes to:
    /// `["cache", "s3", "SecretKey"]`.
    pub key: Vec<String>,
    pub file: HostPath,
    /// Where the profile names the file: `runners.r.cache.s3.SecretKey_file`.
    pub profile_key: String,
}

/// Takes every `KEY_file` whose KEY is a secret out of `table` and the tables in it.
pub(super) fn take(
    table: &mut toml::Table,
    base: &KeyPath,
    layers: &Layers,
) -> Result<Vec<SecretFile>, LocatedError> {
    let mut found = Vec::new();
    take_into(table, base, &mut Vec::new(), layers, &mut found)?;
    Ok(found)
}

fn take_into(
    table: &mut toml::Table,
    base: &KeyPath,
    inner: &mut Vec<String>,
    layers: &Layers,
    found: &mut Vec<SecretFile>,
) -> Result<(), LocatedError> {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let path = base.key(&key);
        if let Some(secret) = key
            .strip_suffix("_file")
            .filter(|secret| is_secret_key(secret))
        {
            if table.contains_key(secret) {
                return Err(layers.error_at(&path, format!("give `{secret}` or `{key}`, not both")));
            }
            let file = match table.remove(&key) {
                Some(toml::Value::String(text)) => {
                    HostPath::new(text).map_err(|message| layers.error_at(&path, message))?
                }
                _ => return Err(layers.error_at(&path, "must be an absolute path")),
            };
            let mut secret_key = inner.clone();
            secret_key.push(secret.to_owned());
            found.push(SecretFile {
                key: secret_key,
                file,
                profile_key: path.to_string(),
            });
        } else if let Some(toml::Value::Table(child)) = table.get_mut(&key) {
            inner.push(key.clone());
            take_into(child, &path, inner, layers, found)?;
            inner.pop();
        }
    }
    Ok(())
}

/// Puts `secret` at `key` in `table`, making the tables on the way.
pub(super) fn insert(table: &mut toml::Table, key: &[String], secret: &Secret) {
    let Some((last, parents)) = key.split_last() else {
        return;
    };
    let mut table = table;
    for parent in parents {
        let entry = table
            .entry(parent.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(child) = entry else {
            return;
        };
        table = child;
    }
    table.insert(
        last.clone(),
        toml::Value::String(secret.expose().to_owned()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::source::TomlFile;

    #[test]
    fn secret_file_keys_are_taken_and_their_values_go_where_the_key_says() {
        let text = "[cache.s3]\nBucketName = \"b\"\nSecretKey_file = \"/etc/berth/secrets/s3\"\n[docker]\ntls_cert_file = \"/c\"\n";
        let source = TomlFile::new("p.toml", text);
        let mut table: toml::Table = toml::from_str(text).unwrap();
        let found = take(
            &mut table,
            &KeyPath::root(),
            &Layers::new(std::slice::from_ref(&source)),
        )
        .unwrap();
        assert_eq!(found.len(), 1, "tls_cert_file names no secret: {found:?}");
        assert_eq!(found[0].key, ["cache", "s3", "SecretKey"]);
        assert_eq!(found[0].profile_key, "cache.s3.SecretKey_file");
        insert(&mut table, &found[0].key, &Secret::new("s3cr3t"));
        assert_eq!(
            table,
            toml::from_str::<toml::Table>(
                "[cache.s3]\nBucketName = \"b\"\nSecretKey = \"s3cr3t\"\n[docker]\ntls_cert_file = \"/c\"\n"
            )
            .unwrap()
        );
        let both = "[cache.s3]\nSecretKey = \"x\"\nSecretKey_file = \"/s\"\n";
        let source = TomlFile::new("p.toml", both);
        let error = take(
            &mut toml::from_str(both).unwrap(),
            &KeyPath::root(),
            &Layers::new(std::slice::from_ref(&source)),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "p.toml:3:1: key `cache.s3.SecretKey_file`: give `SecretKey` or `SecretKey_file`, not both"
        );
    }
}
