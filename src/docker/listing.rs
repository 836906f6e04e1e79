//! berth's listings of what it made, read as Docker's JSON: one `docker … ls` a kind filtered
//! on `berth.managed=true`, each object one JSON array a line, then one batched `inspect` of
//! what may be an orphan. What the orphan kind and `berth destroy` decide from them is theirs;
//! here is only what Docker says.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::{
    docker::{
        self, ObjectNames,
        labels::{Instance, LABEL_INSTANCE, LABEL_MANAGED, Labels, has_control},
    },
    host::exec::{self, CommandLine},
    plan::Kind,
};

/// How long one listing may take before berth treats the daemon as hung.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

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
pub(crate) fn list(program: &str, instance: &Instance, declared: &ObjectNames) -> Result<Listing> {
    let (containers, networks, volumes) = std::thread::scope(|scope| {
        let containers =
            scope.spawn(|| list_kind(program, Kind::Container, instance, &declared.containers));
        let networks =
            scope.spawn(|| list_kind(program, Kind::Network, instance, &declared.networks));
        let volumes = scope.spawn(|| list_kind(program, Kind::Volume, instance, &declared.volumes));
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

/// `docker … ls --filter label=berth.managed=true`, printing each object's ID (a volume's
/// name), name and instance label as one JSON array a line, then one `docker KIND inspect` of
/// those worth a look.
fn list_kind(
    program: &str,
    kind: Kind,
    instance: &Instance,
    declared: &[String],
) -> Result<Vec<Listed>> {
    let mut args: Vec<String> = match kind {
        Kind::Container => vec!["ps".into(), "--all".into(), "--no-trunc".into()],
        Kind::Network => vec!["network".into(), "ls".into(), "--no-trunc".into()],
        _ => vec!["volume".into(), "ls".into()],
    };
    let (id, name) = match kind {
        Kind::Container => ("ID", "Names"),
        Kind::Network => ("ID", "Name"),
        _ => ("Name", "Name"),
    };
    args.extend([
        "--filter".into(),
        format!("label={LABEL_MANAGED}=true"),
        "--format".into(),
        format!(
            "[{{{{json .{id}}}}},{{{{json .{name}}}}},{{{{json (.Label \"{LABEL_INSTANCE}\")}}}}]"
        ),
    ]);
    let line = CommandLine::new(program, args);
    let output = exec::run_with_timeout(&line, LIST_TIMEOUT)
        .with_context(|| format!("failed to list what berth made (`{line}`)"))?;
    let ids: Vec<String> = parse_lines(kind, &output.stdout)
        .with_context(|| format!("`{line}` printed something berth cannot read"))?
        .into_iter()
        .filter(|(_, name, label)| {
            (instance.owns(label) && !declared.contains(name))
                || has_control(name)
                || has_control(label)
        })
        .map(|(id, _, _)| id)
        .collect();
    let raw: Vec<Json> = docker::inspect(program, word(kind), &ids)?;
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
                "`docker {} inspect` printed something berth cannot read",
                word(kind)
            )
        })
}

/// What a listing printed, one JSON array a line: the ID (a volume's name), the name and the
/// instance label. Docker's `json` escapes every control character, so no name or label can
/// add a line. A container's or network's ID is 64 hexadecimal digits; anything else is
/// refused whole.
fn parse_lines(kind: Kind, stdout: &str) -> Result<Vec<(String, String, String)>> {
    stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (id, name, instance): (String, String, String) = serde_json::from_str(line)
                .with_context(|| format!("{} is not a JSON [ID, name, instance]", escaped(line)))?;
            let hex = id.len() == 64 && id.bytes().all(|byte| byte.is_ascii_hexdigit());
            if kind != Kind::Volume && !hex {
                bail!("{} is not a Docker ID", escaped(&id));
            }
            Ok((id, name, instance))
        })
        .collect()
}

/// The ID, name and labels of one object from its `docker KIND inspect` document (a
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
    fn a_listing_is_one_json_array_a_line_and_anything_else_is_refused_whole() {
        let id = "ab".repeat(32);
        assert_eq!(
            parse_lines(
                Kind::Container,
                &format!("[\"{id}\",\"runner\",\"me\"]\n\n")
            )
            .unwrap(),
            vec![(id.clone(), "runner".to_owned(), "me".to_owned())]
        );
        // A label is whatever the JSON string says, escapes included: one line, one object.
        assert_eq!(
            parse_lines(Kind::Volume, "[\"data\",\"data\",\"x\\nvictim\\tme\"]\n").unwrap(),
            vec![(
                "data".to_owned(),
                "data".to_owned(),
                "x\nvictim\tme".to_owned()
            )]
        );
        // What the old tab-separated format printed, and an ID that is none.
        assert!(parse_lines(Kind::Container, "victim\tme\t\n").is_err());
        assert!(parse_lines(Kind::Network, "[\"victim\",\"victim\",\"me\"]\n").is_err());
    }
}
