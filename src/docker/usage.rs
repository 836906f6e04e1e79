//! What a Docker daemon says of its disk: its images (size, creation, tags, labels), the
//! containers that use them, the volumes gitlab-runner made for jobs, and its build cache. Asked
//! of the host's daemon through the `docker` CLI, or of a dind daemon through the dind
//! container's own CLI (`docker exec NAME docker ...`).
//!
//! Everything a dind daemon says is hostile: a job controls its images, tags, labels and volume
//! names. So every answer is read bounded ([`exec::run_bounded`]), parsed as JSON (never a
//! table a name could forge), and an ID or name that is not of Docker's own form is dropped
//! here. What a kind decides from these is its own; this knows no kind.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, de::DeserializeOwned};

use crate::{
    docker::{DaemonInfo, labels::Labels},
    host::exec::{self, CommandLine},
};

/// The label gitlab-runner puts on the volumes it makes for jobs (cache and build volumes).
pub(crate) const RUNNER_MANAGED_LABEL: &str = "com.gitlab.gitlab-runner.managed";

/// The most one answer may print: a daemon with thousands of images says a few MB.
const ANSWER_LIMIT: u64 = 32 * 1024 * 1024;
/// The most objects of one kind berth reads of a daemon; past it the daemon is refused.
const MAX_OBJECTS: usize = 20_000;
/// How long one pull may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long one query may take.
const USAGE_TIMEOUT: Duration = Duration::from_secs(120);

/// Which daemon a query goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DaemonCli {
    /// The host's daemon, through berth's `docker` program (and `DOCKER_HOST`).
    Host { program: String },
    /// The daemon inside container `container`, through its own CLI and socket.
    Inside { program: String, container: String },
}

impl DaemonCli {
    pub(crate) fn command<I, S>(&self, args: I) -> CommandLine
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        match self {
            Self::Host { program } => CommandLine::new(program, args),
            Self::Inside { program, container } => {
                // The dind daemon's own socket, whatever the container's environment says.
                let mut argv: Vec<String> = [
                    "exec",
                    "-e",
                    "DOCKER_HOST=unix:///var/run/docker.sock",
                    container,
                    "docker",
                ]
                .map(str::to_owned)
                .to_vec();
                argv.extend(args.into_iter().map(Into::into));
                CommandLine::new(program, argv)
            }
        }
    }

    /// Runs `args` on this daemon; its stdout, bounded; a non-zero exit is an error.
    pub(crate) fn run(&self, args: &[&str]) -> Result<String> {
        let command = self.command(args.iter().copied());
        let output = exec::run_bounded(&command, USAGE_TIMEOUT, ANSWER_LIMIT)?;
        Ok(exec::checked(&command, output)?.stdout)
    }

    /// Runs `args`; a non-zero exit is an answer (an object that is gone).
    fn run_unchecked(&self, args: &[String]) -> Result<exec::Output> {
        let command = self.command(args.iter().cloned());
        Ok(exec::run_bounded(&command, USAGE_TIMEOUT, ANSWER_LIMIT)?)
    }

    /// `docker pull IMAGE` into this daemon; its progress is not read.
    pub(crate) fn pull(&self, image: &str) -> Result<()> {
        let command = self.command(["pull", "--quiet", image]);
        let output = exec::run_bounded(&command, PULL_TIMEOUT, ANSWER_LIMIT)?;
        exec::checked(&command, output)?;
        Ok(())
    }

    /// `docker info` of this daemon.
    pub(crate) fn info(&self) -> Result<DaemonInfo> {
        let text = self.run(&["info", "--format", "{{json .}}"])?;
        let info: DaemonInfo = serde_json::from_str(&text)
            .context("`docker info` printed something that is not JSON")?;
        if info.server_version.is_empty() {
            bail!("`docker info` returned no server information");
        }
        Ok(info)
    }

    /// `docker KIND inspect ID...` of objects listed a moment ago; one removed in between is
    /// left out.
    fn inspect<T: DeserializeOwned>(&self, kind: &str, ids: &[String]) -> Result<Vec<T>> {
        let mut found = Vec::new();
        // A few hundred at a time: one argument list stays far below the kernel's limit.
        for chunk in ids.chunks(500) {
            let mut args = vec![kind.to_owned(), "inspect".to_owned(), "--".to_owned()];
            args.extend(chunk.iter().cloned());
            let output = self.run_unchecked(&args)?;
            if output.stdout.trim().is_empty() {
                continue;
            }
            let items: Vec<T> = serde_json::from_str(&output.stdout).with_context(|| {
                format!("`docker {kind} inspect` printed something berth cannot read")
            })?;
            found.extend(items);
        }
        Ok(found)
    }

    /// One ID or name a line, each checked by `valid`; a daemon listing more than berth reads
    /// is refused.
    fn list(&self, args: &[&str], valid: fn(&str) -> bool) -> Result<Vec<String>> {
        let text = self.run(args)?;
        let mut listed: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| valid(line))
            .map(str::to_owned)
            .collect();
        listed.sort();
        listed.dedup();
        if listed.len() > MAX_OBJECTS {
            bail!(
                "`docker {}` listed {} objects, more than the {MAX_OBJECTS} berth reads",
                args.join(" "),
                listed.len()
            );
        }
        Ok(listed)
    }

    /// Everything [`DiskUsage`] holds, asked now.
    pub(crate) fn usage(&self) -> Result<DiskUsage> {
        let image_ids = self.list(&["image", "ls", "-a", "-q", "--no-trunc"], is_image_id)?;
        let images = self.inspect::<UsedImage>("image", &image_ids)?;
        let container_ids = self.list(&["container", "ls", "-a", "-q", "--no-trunc"], is_hex_id)?;
        let containers = self.inspect::<UsingContainer>("container", &container_ids)?;
        let filter = format!("label={RUNNER_MANAGED_LABEL}=true");
        let volume_names =
            self.list(&["volume", "ls", "-q", "--filter", &filter], is_volume_name)?;
        let volumes = self.inspect::<JobVolume>("volume", &volume_names)?;
        let df = self.run(&["system", "df", "-v", "--format", "{{json .}}"])?;
        let df: SystemDf = serde_json::from_str(&df)
            .context("`docker system df -v` printed something berth cannot read")?;
        let volume_sizes = df
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|volume| Some((volume.name, parse_size(&volume.size)?)))
            .collect();
        let build_cache = df
            .build_cache
            .unwrap_or_default()
            .iter()
            .filter(|record| !record.in_use)
            .filter_map(|record| parse_size(&record.size))
            .sum();
        Ok(DiskUsage {
            images: images
                .into_iter()
                .filter(|image| is_image_id(&image.id))
                .collect(),
            containers: containers
                .into_iter()
                .filter(|container| is_hex_id(&container.id))
                .collect(),
            volumes: volumes
                .into_iter()
                .filter(|volume| is_volume_name(&volume.name))
                .collect(),
            volume_sizes,
            build_cache,
        })
    }

    /// This image as the daemon says it now, `None` when it is gone.
    pub(crate) fn image(&self, id: &str) -> Result<Option<UsedImage>> {
        Ok(self
            .inspect::<UsedImage>("image", &[id.to_owned()])?
            .into_iter()
            .find(|image| image.id == id))
    }

    /// This volume as the daemon says it now, `None` when it is gone.
    pub(crate) fn volume(&self, name: &str) -> Result<Option<JobVolume>> {
        Ok(self
            .inspect::<JobVolume>("volume", &[name.to_owned()])?
            .into_iter()
            .find(|volume| volume.name == name))
    }

    /// The IDs of every container, running or not, that `filter` (`ancestor=ID`, `volume=NAME`)
    /// finds: what still uses an object about to be removed.
    pub(crate) fn users(&self, filter: &str) -> Result<Vec<String>> {
        self.list(
            &[
                "container",
                "ls",
                "-a",
                "-q",
                "--no-trunc",
                "--filter",
                filter,
            ],
            is_hex_id,
        )
    }
}

/// A daemon's disk, as it says it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DiskUsage {
    pub images: Vec<UsedImage>,
    pub containers: Vec<UsingContainer>,
    /// The volumes labelled [`RUNNER_MANAGED_LABEL`]`=true`.
    pub volumes: Vec<JobVolume>,
    /// Each volume's size, as `docker system df -v` counts it.
    pub volume_sizes: BTreeMap<String, u64>,
    /// The build cache no build uses now, in bytes.
    pub build_cache: u64,
}

/// An image, as `docker image inspect` says it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct UsedImage {
    pub id: String,
    pub repo_tags: Option<Vec<String>>,
    pub created: String,
    pub size: u64,
    pub config: Option<ImageConfig>,
    pub metadata: Option<ImageMetadata>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ImageConfig {
    pub labels: Option<Labels>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ImageMetadata {
    pub last_tag_time: Option<String>,
}

impl UsedImage {
    pub(crate) fn tags(&self) -> &[String] {
        self.repo_tags.as_deref().unwrap_or_default()
    }

    pub(crate) fn labels(&self) -> Labels {
        self.config
            .as_ref()
            .and_then(|config| config.labels.clone())
            .unwrap_or_default()
    }
}

/// A container, as `docker container inspect` says it: what it uses.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct UsingContainer {
    pub id: String,
    /// The image's ID.
    pub image: String,
    pub state: UsingState,
    pub mounts: Vec<UsedMount>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct UsingState {
    pub running: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct UsedMount {
    /// `volume`, `bind`, `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    pub name: String,
}

/// A volume, as `docker volume inspect` says it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct JobVolume {
    pub name: String,
    pub labels: Option<Labels>,
    pub created_at: String,
}

/// The parts of `docker system df -v --format '{{json .}}'` read: sizes, as the CLI prints
/// them (`1.98MB`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SystemDf {
    volumes: Option<Vec<DfVolume>>,
    build_cache: Option<Vec<DfCacheRecord>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DfVolume {
    name: String,
    size: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DfCacheRecord {
    size: String,
    #[serde(deserialize_with = "bool_or_text")]
    in_use: bool,
}

/// `docker system df -v` prints `InUse` as `true` or `"true"` depending on the CLI's version.
fn bool_or_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Bool(value) => value,
        serde_json::Value::String(text) => text == "true",
        _ => false,
    })
}

/// A size as the docker CLI prints it (go-units' `HumanSize`: decimal units, `1.98MB`, `0B`);
/// `None` for anything else (`N/A`).
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match unit {
        "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "PB" => 1e15,
        _ => return None,
    };
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a finite, non-negative size well below u64's range"
    )]
    Some((number * scale).round() as u64)
}

/// `sha256:` and 64 hex digits: an image ID as `--no-trunc` prints it.
fn is_image_id(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(is_hex_id)
}

/// 64 lowercase hex digits: a container ID.
fn is_hex_id(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Docker's own form of a volume name (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`): nothing else is a name
/// berth acts on or prints.
fn is_volume_name(text: &str) -> bool {
    let mut bytes = text.bytes();
    text.len() >= 2
        && text.len() <= 255
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_the_cli_prints_them() {
        for (text, bytes) in [
            ("0B", Some(0)),
            ("1.98MB", Some(1_980_000)),
            ("9.1GB", Some(9_100_000_000)),
            ("512kB", Some(512_000)),
            ("N/A", None),
            ("12", None),
            ("1.5 parsecs", None),
        ] {
            assert_eq!(parse_size(text), bytes, "{text}");
        }
    }

    #[test]
    fn only_dockers_own_forms_of_ids_and_names_are_read() {
        let id = "a".repeat(64);
        assert!(is_hex_id(&id));
        assert!(is_image_id(&format!("sha256:{id}")));
        assert!(!is_image_id(&id));
        assert!(!is_hex_id(&format!("{id}\n")));
        assert!(is_volume_name("runner-abc-cache-0123"));
        assert!(!is_volume_name("a\u{1b}[2Jb"));
        assert!(!is_volume_name("-rf"));
    }

    #[test]
    fn a_dind_daemon_is_asked_through_its_own_cli() {
        let cli = DaemonCli::Inside {
            program: "docker".into(),
            container: "gitlab-dind".into(),
        };
        assert_eq!(
            cli.command(["image", "ls"]).to_string(),
            "docker exec -e DOCKER_HOST=unix:///var/run/docker.sock gitlab-dind docker image ls"
        );
    }
}
