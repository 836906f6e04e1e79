//! What a Docker daemon says of its disk: its images (size, creation, tags, labels), the
//! containers that use them, the volumes gitlab-runner made for jobs, and its build cache; and
//! the removals hygiene makes. Asked of the host's daemon through the Engine API, or of a dind
//! daemon through the dind container's own CLI, run inside it by an exec through the API
//! (`docker exec NAME docker ...` as the CLI said it): the host starts no `docker` process.
//!
//! Everything a daemon holds is hostile: a job controls its images, tags, labels and volume
//! names. So every answer is read bounded (the host's [`Engine::read_bounded`], the dind's
//! [`Engine::exec`]), parsed as JSON (never a table a name could forge), and an ID or name that
//! is not of Docker's own form is dropped here. What a kind decides from these is its own; this
//! knows no kind.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, de::DeserializeOwned};

use crate::docker::{
    DaemonInfo,
    engine::{Engine, EngineError, exec::ExecOutput, image::ReadError},
    labels::Labels,
};

/// The label gitlab-runner puts on the volumes it makes for jobs (cache and build volumes).
pub(crate) const RUNNER_MANAGED_LABEL: &str = "com.gitlab.gitlab-runner.managed";

/// The most one answer may say: a daemon with thousands of images says a few MB.
const ANSWER_LIMIT: u64 = 32 * 1024 * 1024;
/// The most objects of one kind berth reads of a daemon; past it the daemon is refused.
const MAX_OBJECTS: usize = 20_000;
/// How long one pull may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long one query may take.
const USAGE_TIMEOUT: Duration = Duration::from_secs(120);
/// The dind daemon's own socket, whatever the container's environment says.
const DIND_SOCKET: &str = "DOCKER_HOST=unix:///var/run/docker.sock";

/// Which daemon a query goes to.
#[derive(Clone, Copy)]
pub(crate) enum DiskDaemon<'a> {
    /// The host's daemon, through the Engine API.
    Host(&'a Engine),
    /// The daemon inside container `container`, through its own CLI, run in it by an exec.
    Inside {
        engine: &'a Engine,
        container: &'a str,
    },
}

/// A listed object's ID or name, as the API's listings say it.
#[derive(Deserialize)]
struct ListedId {
    #[serde(rename = "Id", alias = "Name", default)]
    id: String,
}

#[derive(Deserialize)]
struct ListedVolumeIds {
    #[serde(rename = "Volumes", default)]
    volumes: Option<Vec<ListedId>>,
}

impl DiskDaemon<'_> {
    /// `docker ARGS` in the dind container (an error on the host's daemon, which is asked
    /// through the API); its stdout, read bounded; a non-zero exit is an error.
    fn run(&self, args: &[&str]) -> Result<String> {
        let output = self.run_unchecked(args)?;
        if output.success() {
            return Ok(output.stdout);
        }
        bail!(
            "`docker {}` in `{}` exited with {}{}",
            args.join(" "),
            self.container_name(),
            output.code.map_or_else(
                || "no known status".to_owned(),
                |code| format!("status {code}")
            ),
            // What failed to start at all (no `docker` in the image) is said on stdout.
            said(if output.stderr.trim().is_empty() {
                &output.stdout
            } else {
                &output.stderr
            })
        );
    }

    /// `docker ARGS` in the dind container; a non-zero exit is an answer (an object gone).
    fn run_unchecked(&self, args: &[&str]) -> Result<ExecOutput> {
        let Self::Inside { engine, container } = self else {
            bail!("the host's daemon is asked through its API, not its CLI");
        };
        let mut command = vec!["docker"];
        command.extend_from_slice(args);
        Ok(engine.exec(
            container,
            &command,
            &[DIND_SOCKET],
            USAGE_TIMEOUT,
            ANSWER_LIMIT,
        )?)
    }

    fn container_name(&self) -> &str {
        match self {
            Self::Host(_) => "host",
            Self::Inside { container, .. } => container,
        }
    }

    /// `GET path` of the host's daemon, read bounded and parsed; `None` for a 404 (gone).
    fn get<T: DeserializeOwned>(engine: &Engine, path: &str) -> Result<Option<T>> {
        let bytes = match engine.read_bounded(path, ANSWER_LIMIT) {
            Ok(bytes) => bytes,
            Err(ReadError::Engine(EngineError::NotFound(_))) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let shown = path.split('?').next().unwrap_or(path);
        serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("`GET {shown}` answered something berth cannot read"))
    }

    /// Pulls `image` into this daemon (the host's with its progress; a dind's quietly).
    pub(crate) fn pull(&self, image: &str) -> Result<()> {
        match self {
            Self::Host(engine) => super::pull::pull_with(engine, image, PULL_TIMEOUT),
            Self::Inside { engine, container } => {
                let output = engine.exec(
                    container,
                    &["docker", "pull", "--quiet", image],
                    &[DIND_SOCKET],
                    PULL_TIMEOUT,
                    ANSWER_LIMIT,
                )?;
                if !output.success() {
                    bail!(
                        "`docker pull --quiet {image}` in `{container}` failed{}",
                        said(&output.stderr)
                    );
                }
                Ok(())
            }
        }
    }

    /// What this daemon says of itself.
    pub(crate) fn info(&self) -> Result<DaemonInfo> {
        let info: DaemonInfo = match self {
            Self::Host(engine) => serde_json::from_value(engine.info()?)
                .context("`GET /info` answered something berth cannot read")?,
            Self::Inside { .. } => {
                let text = self.run(&["info", "--format", "{{json .}}"])?;
                serde_json::from_str(&text)
                    .context("`docker info` printed something that is not JSON")?
            }
        };
        if info.server_version.is_empty() {
            bail!("`docker info` returned no server information");
        }
        Ok(info)
    }

    /// The objects of `kind` (`image`, `container`, `volume`) among `ids`, listed a moment ago;
    /// one removed in between is left out.
    fn inspect<T: DeserializeOwned>(&self, kind: &str, ids: &[String]) -> Result<Vec<T>> {
        let mut found = Vec::new();
        if let Self::Host(engine) = self {
            for id in ids {
                // A volume's inspect is `GET /volumes/NAME`, the others' `GET /KINDs/ID/json`.
                let path = if kind == "volume" {
                    format!("/volumes/{id}")
                } else {
                    format!("/{kind}s/{id}/json")
                };
                if let Some(item) = Self::get::<T>(engine, &path)? {
                    found.push(item);
                }
            }
            return Ok(found);
        }
        // A few hundred at a time: one argument list stays far below the kernel's limit.
        for chunk in ids.chunks(500) {
            let mut args = vec![kind, "inspect", "--"];
            args.extend(chunk.iter().map(String::as_str));
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

    /// The IDs (names, for volumes) of `kind` that `filter` (`label=…`, `ancestor=ID`,
    /// `volume=NAME`) finds, each checked by `valid`; a daemon listing more than berth reads is
    /// refused.
    fn list(
        &self,
        kind: &str,
        filter: Option<&str>,
        valid: fn(&str) -> bool,
    ) -> Result<Vec<String>> {
        let mut listed: Vec<String> = match self {
            Self::Host(engine) => {
                let filters = filter.map_or_else(String::new, |filter| {
                    let (key, value) = filter.split_once('=').unwrap_or((filter, ""));
                    let json = serde_json::json!({ key: [value] }).to_string();
                    format!("filters={}", percent_encode(&json))
                });
                match kind {
                    "volume" => {
                        Self::get::<ListedVolumeIds>(engine, &format!("/volumes?{filters}"))?
                            .and_then(|listed| listed.volumes)
                            .unwrap_or_default()
                    }
                    _ => Self::get::<Vec<ListedId>>(
                        engine,
                        &format!("/{kind}s/json?all=1&{filters}"),
                    )?
                    .unwrap_or_default(),
                }
                .into_iter()
                .map(|listed| listed.id)
                .filter(|id| valid(id))
                .collect()
            }
            Self::Inside { .. } => {
                let mut args = vec![kind, "ls", "-q"];
                if kind != "volume" {
                    args.extend(["-a", "--no-trunc"]);
                }
                if let Some(filter) = filter {
                    args.extend(["--filter", filter]);
                }
                self.run(&args)?
                    .lines()
                    .map(str::trim)
                    .filter(|line| valid(line))
                    .map(str::to_owned)
                    .collect()
            }
        };
        listed.sort();
        listed.dedup();
        if listed.len() > MAX_OBJECTS {
            bail!(
                "the daemon of `{}` listed {} {kind}s, more than the {MAX_OBJECTS} berth reads",
                self.container_name(),
                listed.len()
            );
        }
        Ok(listed)
    }

    /// Everything [`DiskUsage`] holds, asked now.
    pub(crate) fn usage(&self) -> Result<DiskUsage> {
        let image_ids = self.list("image", None, is_image_id)?;
        let images = self.inspect::<UsedImage>("image", &image_ids)?;
        let container_ids = self.list("container", None, is_hex_id)?;
        let containers = self.inspect::<UsingContainer>("container", &container_ids)?;
        let filter = format!("label={RUNNER_MANAGED_LABEL}=true");
        let volume_names = self.list("volume", Some(&filter), is_volume_name)?;
        let volumes = self.inspect::<JobVolume>("volume", &volume_names)?;
        let (volume_sizes, build_cache) = self.df()?;
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

    /// Each volume's size, and the build cache no build uses, in bytes: `GET /system/df` of
    /// the host's daemon (bytes), `docker system df -v` of a dind's (sizes as the CLI prints
    /// them).
    fn df(&self) -> Result<(BTreeMap<String, u64>, u64)> {
        // Each volume's name and size, each cache record's use and size (`None`: not known).
        type Sizes = (Vec<(String, Option<u64>)>, Vec<(bool, Option<u64>)>);
        let (volumes, cache): Sizes = match self {
            Self::Host(engine) => {
                let df: ApiDf = Self::get(engine, "/system/df")?.unwrap_or_default();
                (
                    df.volumes
                        .unwrap_or_default()
                        .into_iter()
                        .map(|volume| {
                            let size = volume
                                .usage_data
                                .and_then(|usage| u64::try_from(usage.size).ok());
                            (volume.name, size)
                        })
                        .collect(),
                    df.build_cache
                        .unwrap_or_default()
                        .into_iter()
                        .map(|record| (record.in_use, u64::try_from(record.size).ok()))
                        .collect(),
                )
            }
            Self::Inside { .. } => {
                let df = self.run(&["system", "df", "-v", "--format", "{{json .}}"])?;
                let df: CliDf = serde_json::from_str(&df)
                    .context("`docker system df -v` printed something berth cannot read")?;
                (
                    df.volumes
                        .unwrap_or_default()
                        .into_iter()
                        .map(|volume| (volume.name, parse_size(&volume.size)))
                        .collect(),
                    df.build_cache
                        .unwrap_or_default()
                        .into_iter()
                        .map(|record| (record.in_use, parse_size(&record.size)))
                        .collect(),
                )
            }
        };
        let volume_sizes = volumes
            .into_iter()
            .filter_map(|(name, size)| Some((name, size?)))
            .collect();
        let build_cache = cache
            .into_iter()
            .filter(|(in_use, _)| !in_use)
            .filter_map(|(_, size)| size)
            .sum();
        Ok((volume_sizes, build_cache))
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
        self.list("container", Some(filter), is_hex_id)
    }

    /// Removes image `id` (an ID as listed), forced: an image tagged twice goes with its tags.
    pub(crate) fn remove_image(&self, id: &str) -> Result<()> {
        match self {
            Self::Host(engine) => Ok(engine.remove_image(id, true)?),
            Self::Inside { .. } => self.run(&["image", "rm", "--force", id]).map(drop),
        }
    }

    /// Removes volume `name`.
    pub(crate) fn remove_volume(&self, name: &str) -> Result<()> {
        match self {
            Self::Host(engine) => Ok(engine.remove_volume(name)?),
            Self::Inside { .. } => self.run(&["volume", "rm", name]).map(drop),
        }
    }

    /// Prunes the build cache no build uses down to `keep` bytes (`docker builder prune --all
    /// --force --keep-storage KEEP`).
    pub(crate) fn prune_build_cache(&self, keep: u64) -> Result<()> {
        match self {
            Self::Host(engine) => Ok(engine.prune_build_cache(keep)?),
            Self::Inside { .. } => {
                let keep = keep.to_string();
                self.run(&[
                    "builder",
                    "prune",
                    "--all",
                    "--force",
                    "--keep-storage",
                    &keep,
                ])
                .map(drop)
            }
        }
    }
}

/// What a dind's CLI said on stderr, as far as it is shown: its first line, control characters
/// dropped (a job controls the daemon that says it).
fn said(stderr: &str) -> String {
    let line: String = stderr
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

/// A query parameter's value, percent-encoded (all but RFC 3986's unreserved characters).
fn percent_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
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

/// The parts of `GET /system/df` read (API 1.41's shape, which every later version keeps
/// unless asked otherwise): sizes in bytes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ApiDf {
    volumes: Option<Vec<ApiDfVolume>>,
    build_cache: Option<Vec<ApiDfCacheRecord>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ApiDfVolume {
    name: String,
    usage_data: Option<ApiVolumeUsage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ApiVolumeUsage {
    /// -1 when the daemon has not measured it.
    size: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ApiDfCacheRecord {
    size: i64,
    in_use: bool,
}

/// The parts of `docker system df -v --format '{{json .}}'` read: sizes, as the CLI prints
/// them (`1.98MB`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CliDf {
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
    fn a_filter_is_sent_percent_encoded() {
        assert_eq!(
            percent_encode(r#"{"label":["a.b=true"]}"#),
            "%7B%22label%22%3A%5B%22a.b%3Dtrue%22%5D%7D"
        );
    }

    #[test]
    fn a_dind_clis_words_are_shown_without_control_characters() {
        assert_eq!(
            said("\nError: \u{1b}[2Jno such image\nmore"),
            ": Error: [2Jno such image"
        );
        assert_eq!(said(""), "");
    }
}
