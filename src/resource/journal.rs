//! berth's journal of intents: `/var/lib/berth/journal.json`, mode 0600.
//!
//! Before a step that leaves the host between two states (daemon.json replaced and the daemon
//! restarting, a container set aside while its replacement is made, a network removed and
//! recreated, a runner requested from GitLab) the resource records what it is about to do and
//! how to finish or undo it; it clears the entry when the step is complete. Every run reads the
//! journal first (`Resource::leftover`): plan shows what an interrupted step left, apply
//! finishes or undoes it before anything else, as dpkg's `--configure -a` does.
//!
//! Each kind owns the shape of its own intent; here they are JSON by resource id. Only
//! fingerprints and names go in, never a secret. A journal berth cannot read is an error, never
//! silently replaced: forgetting an intent is how a runner gets registered twice.

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value as Json};

use crate::{
    host::{Host, HostPath, host_path},
    plan::ResourceId,
};

/// Where the journal lives.
pub(crate) const PATH: &str = "/var/lib/berth/journal.json";

/// Bumped when a field changes meaning.
const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    schema_version: u32,
    /// Each unfinished step, by the id of the resource that took it.
    #[serde(default)]
    intents: Map<String, Json>,
}

pub(crate) fn path() -> HostPath {
    host_path(PATH)
}

fn load(host: &Host) -> Result<File> {
    let path = path();
    let Some(text) = host.read_optional(&path)? else {
        return Ok(File::default());
    };
    let file: File = serde_json::from_str(&text).with_context(|| {
        format!("berth's journal `{path}` is not valid; berth will not overwrite it: it lists steps an interrupted run left unfinished; fix or remove it by hand")
    })?;
    if file.schema_version > SCHEMA_VERSION {
        bail!(
            "berth's journal `{path}` was written by a newer berth (schema {}); this one reads schema {SCHEMA_VERSION}",
            file.schema_version
        );
    }
    Ok(file)
}

fn save(host: &Host, mut file: File) -> Result<()> {
    let path = path();
    if file.intents.is_empty() {
        // Nothing unfinished: no file, so `ls /var/lib/berth` tells a clean host at a glance.
        return host.remove_file(&path);
    }
    file.schema_version = SCHEMA_VERSION;
    host.write_json(&path, &file, 0o600)
}

/// The unfinished step `id` recorded, if any.
pub(crate) fn read<T: DeserializeOwned>(host: &Host, id: &ResourceId) -> Result<Option<T>> {
    let mut file = load(host)?;
    let Some(intent) = file.intents.remove(&id.to_string()) else {
        return Ok(None);
    };
    serde_json::from_value(intent)
        .map(Some)
        .with_context(|| format!("berth's journal `{}` has an entry for `{id}` this berth cannot read; remove it by hand once the host is as it should be", path()))
}

/// Records, durably, that `id` is about to take the step `intent` describes.
pub(crate) fn record<T: Serialize>(host: &Host, id: &ResourceId, intent: &T) -> Result<()> {
    let mut file = load(host)?;
    let value = serde_json::to_value(intent).expect("an intent serializes");
    file.intents.insert(id.to_string(), value);
    save(host, file).with_context(|| format!("failed to record what `{id}` is about to do"))
}

/// Clears `id`'s entry: its step is complete (or undone).
pub(crate) fn clear(host: &Host, id: &ResourceId) -> Result<()> {
    let mut file = load(host)?;
    if file.intents.remove(&id.to_string()).is_none() {
        return Ok(());
    }
    save(host, file).with_context(|| format!("failed to clear the journal entry of `{id}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Kind;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Step {
        old: String,
    }

    #[test]
    fn an_intent_is_kept_until_cleared_and_the_file_goes_with_the_last() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        let id = ResourceId::new(Kind::Container, "gitlab-runner");
        assert_eq!(read::<Step>(&host, &id).unwrap(), None);
        record(&host, &id, &Step { old: "abc".into() }).unwrap();
        assert_eq!(
            read::<Step>(&host, &id).unwrap(),
            Some(Step { old: "abc".into() })
        );
        assert_eq!(
            host.mode(&path()).unwrap(),
            Some(crate::host::FileMode(0o600))
        );
        clear(&host, &id).unwrap();
        assert_eq!(read::<Step>(&host, &id).unwrap(), None);
        assert!(!host.exists(&path()), "no unfinished step, no journal");
    }

    #[test]
    fn an_unreadable_journal_is_an_error_not_an_empty_one() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        host.write_atomic(&path(), b"{ not json", 0o600).unwrap();
        let id = ResourceId::new(Kind::Container, "gitlab-runner");
        let error = read::<Step>(&host, &id).unwrap_err();
        assert!(
            format!("{error:#}").contains("will not overwrite it"),
            "{error:#}"
        );
        assert!(record(&host, &id, &Step { old: "x".into() }).is_err());
    }
}
