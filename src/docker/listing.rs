//! berth's listings of what it made, read as Docker's JSON: one list a kind filtered on
//! `berth.managed=true` (`GET /containers/json`, `/networks`, `/volumes`), then one batch of
//! inspects of what may be an orphan. What the orphan kind and `berth destroy` decide from them
//! is theirs; here is only what Docker says.

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::{
    docker::{
        self, ObjectNames,
        engine::Engine,
        labels::{Instance, LABEL_INSTANCE, LABEL_MANAGED, Labels, has_control},
    },
    plan::Kind,
};

/// One object a listing found with berth's label, as Docker's inspect says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    /// The full ID, which a removal re-inspects and removes it by; a volume's name (volumes
    /// have no other).
    pub id: String,
    pub name: String,
    pub labels: Labels,
}

impl Listed {
    /// The label's value, empty when the object has none.
    pub(crate) fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }

    /// Why berth will not act on it: a name or a label with a control character, which berth
    /// never gives and which printed as text forges what follows it.
    pub(crate) fn refusal(&self) -> Option<String> {
        if has_control(&self.name) {
            return Some(format!(
                "its name {} holds a control character",
                escaped(&self.name)
            ));
        }
        self.labels
            .iter()
            .find(|(key, value)| has_control(key) || has_control(value))
            .map(|(key, _)| format!("its label {} holds a control character", escaped(key)))
    }

    /// How a line of output names it: by name, or, when the name cannot be printed as it is,
    /// by its short ID (a volume, which has none, by its name escaped).
    pub(crate) fn shown_name(&self, kind: Kind) -> String {
        match kind {
            _ if !has_control(&self.name) => self.name.clone(),
            Kind::Volume => escaped(&self.name),
            _ => self.id[..self.id.len().min(12)].to_owned(),
        }
    }
}

/// `text` quoted, its control characters escaped (`"a\nb"`): safe on a terminal and a line.
pub(crate) fn escaped(text: &str) -> String {
    format!("{text:?}")
}

/// What berth made on this daemon, by kind, from one listing each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Listing {
    pub containers: Vec<Listed>,
    pub networks: Vec<Listed>,
    pub volumes: Vec<Listed>,
}

/// The three listings, run side by side; callable from any thread (`prefetch` runs it beside
/// its inspects). Only what may be an orphan is inspected: this instance's objects that
/// `declared` does not name (so a converged host inspects nothing more), and any whose name or
/// instance label holds a control character (a forgery, reported).
pub(crate) fn list(
    engine: &Engine,
    instance: &Instance,
    declared: &ObjectNames,
) -> Result<Listing> {
    let (containers, networks, volumes) = std::thread::scope(|scope| {
        let containers =
            scope.spawn(|| list_kind(engine, Kind::Container, instance, &declared.containers));
        let networks =
            scope.spawn(|| list_kind(engine, Kind::Network, instance, &declared.networks));
        let volumes = scope.spawn(|| list_kind(engine, Kind::Volume, instance, &declared.volumes));
        (containers.join(), networks.join(), volumes.join())
    });
    let joined = |result: std::thread::Result<Result<Vec<Listed>>>| {
        result.unwrap_or_else(|_| Err(anyhow::anyhow!("a docker listing panicked")))
    };
    Ok(Listing {
        containers: joined(containers)?,
        networks: joined(networks)?,
        volumes: joined(volumes)?,
    })
}

/// The CLI's word for a kind of object.
pub(crate) fn word(kind: Kind) -> &'static str {
    match kind {
        Kind::Container => "container",
        Kind::Network => "network",
        _ => "volume",
    }
}

/// The list of `kind` filtered on `berth.managed=true`, then one batch of inspects of those
/// worth a look.
fn list_kind(
    engine: &Engine,
    kind: Kind,
    instance: &Instance,
    declared: &[String],
) -> Result<Vec<Listed>> {
    let listed = engine
        .list(word(kind), &format!("{LABEL_MANAGED}=true"))
        .with_context(|| format!("failed to list the {}s berth made", word(kind)))?;
    let ids: Vec<String> = listed
        .iter()
        .map(|object| summary(kind, object))
        .collect::<Result<Vec<_>>>()
        .with_context(|| {
            format!(
                "the Docker daemon's list of {}s is something berth cannot read",
                word(kind)
            )
        })?
        .into_iter()
        .filter(|(_, name, label)| {
            (instance.owns(label) && !declared.contains(name))
                || has_control(name)
                || has_control(label)
        })
        .map(|(id, _, _)| id)
        .collect();
    let raw: Vec<Json> = docker::inspect(engine, word(kind), &ids)?;
    raw.iter()
        .map(|object| from_inspect(kind, object))
        // Asked by exact ID: anything else in the answer is not what was listed.
        .filter(|listed| {
            listed
                .as_ref()
                .map_or(true, |listed| ids.contains(&listed.id))
        })
        .collect::<Result<Vec<_>>>()
        .with_context(|| {
            format!(
                "the Docker daemon's {} inspect is something berth cannot read",
                word(kind)
            )
        })
}

/// What a list says of one object: its ID (a volume's name), its name and its instance label.
/// A container's or network's ID is 64 hexadecimal digits: it goes into the next request's
/// path, and anything else is refused whole.
fn summary(kind: Kind, object: &Json) -> Result<(String, String, String)> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ListedObject {
        #[serde(default, rename = "Id")]
        id: String,
        #[serde(default)]
        name: String,
        /// A container's names, each with its leading `/`.
        #[serde(default)]
        names: Vec<String>,
        #[serde(default)]
        labels: Option<Labels>,
    }
    let summary = ListedObject::deserialize(object)?;
    let name = match kind {
        Kind::Container => summary
            .names
            .first()
            .map(|name| name.trim_start_matches('/').to_owned())
            .unwrap_or_default(),
        _ => summary.name,
    };
    let instance = summary
        .labels
        .as_ref()
        .and_then(|labels| labels.get(LABEL_INSTANCE))
        .cloned()
        .unwrap_or_default();
    if kind == Kind::Volume {
        return Ok((name.clone(), name, instance));
    }
    let id = summary.id;
    if id.len() != 64 || !id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        bail!("{} is not a Docker ID", escaped(&id));
    }
    Ok((id, name, instance))
}

/// The ID, name and labels of one object from its inspect document (a
/// container's labels are under `Config`).
pub(crate) fn from_inspect(kind: Kind, object: &Json) -> Result<Listed> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Wire {
        #[serde(default)]
        id: String,
        name: String,
        #[serde(default)]
        labels: Option<Labels>,
        #[serde(default)]
        config: Option<WireConfig>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct WireConfig {
        #[serde(default)]
        labels: Option<Labels>,
    }
    let wire = Wire::deserialize(object)?;
    let labels = match kind {
        Kind::Container => wire.config.and_then(|config| config.labels),
        _ => wire.labels,
    };
    Ok(Listed {
        id: if kind == Kind::Volume {
            wire.name.clone()
        } else {
            wire.id
        },
        name: wire.name.trim_start_matches('/').to_owned(),
        labels: labels.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_id_is_a_docker_id_and_a_label_is_whatever_its_json_says() {
        let id = "ab".repeat(32);
        let container = serde_json::json!({
            "Id": id, "Names": ["/runner"], "Labels": {"berth.instance": "me"}
        });
        assert_eq!(
            summary(Kind::Container, &container).unwrap(),
            (id.clone(), "runner".to_owned(), "me".to_owned())
        );
        let volume = serde_json::json!({
            "Name": "data", "Labels": {"berth.instance": "x\nvictim\tme"}
        });
        assert_eq!(
            summary(Kind::Volume, &volume).unwrap(),
            (
                "data".to_owned(),
                "data".to_owned(),
                "x\nvictim\tme".to_owned()
            )
        );
        // An ID that is none would go into the next request's path.
        let forged = serde_json::json!({"Id": "../victim", "Name": "victim"});
        assert!(summary(Kind::Network, &forged).is_err());
    }
}
