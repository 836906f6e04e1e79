//! `daemon-config`: Docker's daemon.json, key by key.
//!
//! berth owns only the keys the profile names. Every other key, and the order of all keys, is
//! kept; dropping a key from the profile leaves it in the file. Values are compared parsed, not
//! as bytes. A daemon.json that is not valid JSON is never overwritten. Before writing, apply
//! checks what would make dockerd refuse to start (a key ExecStart also passes as a flag,
//! `dockerd --validate` where it exists) and refuses a storage-driver switch that would hide
//! the daemon's images and containers. The previous file is kept beside it as a backup, which
//! `daemon/docker` restores when dockerd does not come back.

use anyhow::{Context as _, Result, bail};
use serde_json::{Map, Value as Json};

use crate::{
    docker::{
        DaemonStatus, Docker,
        unit::{self, DockerService},
        wire::{ContainerInfo, LogConfig},
    },
    host::{
        Host, HostPath,
        exec::{self, CommandLine},
        host_path,
    },
    plan::{self, Action, Change, Diff, FieldChange, Kind, ResourceId},
    resource::{
        Context, DaemonJsonChange, Earlier, Made, Resource,
        daemon::{
            DockerSettings,
            keys::{self, DockerdVersion},
            log_options,
        },
    },
};

pub(crate) struct DaemonConfig {
    path: HostPath,
    keys: Map<String, Json>,
    allow_storage_driver_change: bool,
    /// The profile's containers, whose log options a `log-opts` change does not reach while
    /// they run (the same names the containers' batched inspect asks about).
    containers: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct DaemonJsonState {
    /// The file as it is; `None` when it does not exist.
    pub current: Option<CurrentFile>,
    /// Where images and containers live now; only gathered when the profile sets a driver.
    pub storage: Option<StorageFacts>,
    pub service: Option<DockerService>,
    /// A daemon.json that dockerd already refused, set aside by `daemon/docker`.
    pub rejected: Option<String>,
    /// The running dockerd's version, from `docker info`, when it answers.
    pub dockerd: Option<DockerdVersion>,
    /// The profile's running containers and how they log, read only when the profile sets a
    /// log key (and the daemon answers).
    pub running_logs: Vec<(String, LogConfig)>,
}

#[derive(Debug, Clone)]
pub(crate) struct CurrentFile {
    pub text: String,
    pub object: Map<String, Json>,
}

/// The storage driver in use and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageFacts {
    /// The driver in use; `None` when neither the daemon nor the data-root tells.
    pub driver: Option<String>,
    /// The containerd image store reports `overlayfs` for what daemon.json calls `overlay2`.
    pub containerd_store: bool,
    pub images: u64,
    pub containers: u64,
}

impl StorageFacts {
    fn is(&self, wanted: &str) -> bool {
        self.driver.as_deref().is_none_or(|driver| {
            driver == wanted
                || (wanted == "overlay2" && driver == "overlayfs" && self.containerd_store)
        })
    }

    /// What switching to `wanted` would hide from view, when it hides anything.
    pub(crate) fn switch_hides(&self, wanted: &str) -> Option<String> {
        if self.is(wanted) || self.images + self.containers == 0 {
            return None;
        }
        Some(format!(
            "switching the storage driver from `{}` to `{wanted}` hides {} and {} until it is switched back",
            self.driver.as_deref().unwrap_or("?"),
            count(self.images, "image"),
            count(self.containers, "container"),
        ))
    }

    /// Why apply refuses to switch to `wanted` without `--allow-storage-driver-change`.
    pub(crate) fn switch_refusal(&self, wanted: &str) -> Option<String> {
        self.switch_hides(wanted).map(|hidden| {
            format!("{hidden}; rerun with --allow-storage-driver-change to switch anyway")
        })
    }

    pub(crate) fn observe(
        docker: &Docker,
        host: &Host,
        current: Option<&Map<String, Json>>,
    ) -> Result<Self> {
        if let DaemonStatus::Running(info) = docker.status() {
            return Ok(Self {
                driver: Some(info.driver.clone()),
                containerd_store: info.uses_containerd_store(),
                images: info.images,
                containers: info.containers,
            });
        }
        // The daemon is down: read the data-root, as dockerd will when it starts.
        let data_root = current
            .and_then(|object| object.get("data-root"))
            .and_then(Json::as_str)
            .and_then(|path| HostPath::new(path).ok())
            .unwrap_or_else(|| host_path("/var/lib/docker"));
        let configured = current
            .and_then(|object| object.get("storage-driver"))
            .and_then(Json::as_str)
            .map(str::to_owned);
        let drivers = host.list_dir(&data_root.join("image"))?;
        let driver = configured.or_else(|| (drivers.len() == 1).then(|| drivers[0].clone()));
        let images = match &driver {
            Some(driver) => host
                .list_dir(
                    &data_root
                        .join("image")
                        .join(driver)
                        .join("imagedb/content/sha256"),
                )?
                .len() as u64,
            None => 0,
        };
        Ok(Self {
            driver,
            containerd_store: false,
            images,
            containers: host.list_dir(&data_root.join("containers"))?.len() as u64,
        })
    }
}

fn count(number: u64, noun: &str) -> String {
    format!("{number} {noun}{}", if number == 1 { "" } else { "s" })
}

/// What apply would write.
struct PlannedDaemonJson {
    text: String,
    /// Each key that changes, with its new value: what apply writes, and what is decided on.
    keys: Vec<(String, Json)>,
    /// The same, as the plan prints it.
    fields: Vec<FieldChange>,
    object: Map<String, Json>,
}

impl PlannedDaemonJson {
    /// The new value of `key`, when it changes.
    fn new_value(&self, key: &str) -> Option<&Json> {
        self.keys
            .iter()
            .find(|(changed, _)| changed == key)
            .map(|(_, value)| value)
    }
}

/// Where the previous daemon.json is kept when berth replaces it.
pub(crate) fn backup_path(config: &HostPath) -> HostPath {
    config.with_suffix(".berth.bak")
}

/// Where a daemon.json that dockerd refused is set aside.
pub(crate) fn rejected_path(config: &HostPath) -> HostPath {
    config.with_suffix(".berth-rejected")
}

impl DaemonConfig {
    pub(crate) fn new(
        settings: &DockerSettings,
        allow_storage_driver_change: bool,
        containers: Vec<String>,
    ) -> Self {
        Self {
            path: settings.config.clone(),
            keys: settings.daemon.clone(),
            allow_storage_driver_change,
            containers,
        }
    }

    /// The profile's running containers with their log config, when the profile sets a log key
    /// and the daemon answers: what a `log-opts` change leaves as it is.
    fn running_logs(&self, docker: &Docker) -> Result<Vec<(String, LogConfig)>> {
        let sets_logs = ["log-driver", "log-opts"]
            .iter()
            .any(|key| self.keys.contains_key(*key));
        if !sets_logs || !matches!(docker.status(), DaemonStatus::Running(_)) {
            return Ok(Vec::new());
        }
        let found = docker.inspect_all::<ContainerInfo>(&self.containers)?;
        // By the profile's names: the cached batch may answer for more (set-aside containers).
        Ok(self
            .containers
            .iter()
            .filter_map(|name| Some((name, found.get(name)?)))
            .filter(|(_, container)| container.state.running)
            .map(|(name, container)| (name.clone(), container.host_config.log_config.clone()))
            .collect())
    }

    fn planned(&self, observed: &DaemonJsonState) -> Option<PlannedDaemonJson> {
        let mut object = observed
            .current
            .as_ref()
            .map(|current| current.object.clone())
            .unwrap_or_default();
        let mut fields = Vec::new();
        let mut keys = Vec::new();
        for (key, wanted) in &self.keys {
            let before = object.get(key);
            if before != Some(wanted) {
                keys.push((key.clone(), wanted.clone()));
                fields.push(FieldChange::new(
                    key.clone(),
                    before.cloned(),
                    Some(wanted.clone()),
                ));
                // Insert keeps an existing key where it is; a new one goes at the end.
                object.insert(key.clone(), wanted.clone());
            }
        }
        if fields.is_empty() {
            return None;
        }
        let indent = observed
            .current
            .as_ref()
            .map_or_else(|| "  ".to_owned(), |current| detect_indent(&current.text));
        Some(PlannedDaemonJson {
            text: render(&object, &indent),
            keys,
            fields,
            object,
        })
    }

    fn refusal(&self, observed: &DaemonJsonState, planned: &PlannedDaemonJson) -> Option<String> {
        // The profile's keys were checked against every dockerd version when it loaded; here
        // against the one that will read the file.
        if let Some(version) = observed.dockerd
            && let Some(problem) = self
                .keys
                .keys()
                .find_map(|key| keys::check_known(key, Some(version)).err())
        {
            return Some(format!("{}: remove it from the profile", problem.message));
        }
        if observed.rejected.as_deref() == Some(planned.text.as_str()) {
            return Some(format!(
                "dockerd already refused exactly this daemon.json (kept at `{}`); fix the profile, or delete that file to try again",
                rejected_path(&self.path)
            ));
        }
        if let Some(service) = &observed.service {
            let conflicts = service.conflicts(planned.object.keys());
            if !conflicts.is_empty() {
                let listed: Vec<_> = conflicts
                    .iter()
                    .map(|conflict| format!("`{}` (flag `{}`)", conflict.key, conflict.flag))
                    .collect();
                return Some(format!(
                    "dockerd would refuse to start: {} also set on its command line in `{}`; remove the key from the profile or the flag from the unit",
                    listed.join(", "),
                    service.unit
                ));
            }
        }
        let new_driver = planned.new_value("storage-driver").and_then(Json::as_str);
        if let (Some(new_driver), Some(storage)) = (new_driver, &observed.storage)
            && !self.allow_storage_driver_change
        {
            return storage.switch_refusal(new_driver);
        }
        None
    }
}

/// What apply does to daemon.json: writes exactly the text the plan showed, after
/// `dockerd --validate` accepts it, keeping the previous file as the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriteDaemonJson {
    text: String,
    replaces: bool,
    /// Each key written, with its new value: what `daemon/docker` reloads or restarts for.
    keys: Vec<(String, Json)>,
    /// The running dockerd restarts (not reloads) for these keys. The file waits with the
    /// restart for a fleet slot: written alone, a key `docker info` does not report would
    /// never be seen as unloaded, and the restart would be lost.
    restarts: bool,
}

impl DaemonConfig {
    pub(crate) fn id() -> ResourceId {
        ResourceId::singleton(Kind::DaemonConfig)
    }
}

impl Resource for DaemonConfig {
    type Observed = DaemonJsonState;
    type Op = WriteDaemonJson;

    fn id(&self) -> ResourceId {
        Self::id()
    }

    fn observe(&self, context: &Context) -> Result<DaemonJsonState> {
        let current = match context.host.read_optional(&self.path)? {
            None => None,
            Some(text) => Some(CurrentFile {
                object: parse_existing(&self.path, &text)?,
                text,
            }),
        };
        let storage = if self.keys.contains_key("storage-driver") {
            Some(StorageFacts::observe(
                context.docker,
                context.host,
                current.as_ref().map(|current| &current.object),
            )?)
        } else {
            None
        };
        Ok(DaemonJsonState {
            current,
            storage,
            service: unit::find_docker_service(context.host)?,
            dockerd: match context.docker.status() {
                DaemonStatus::Running(info) => DockerdVersion::parse(&info.server_version),
                _ => None,
            },
            rejected: context.host.read_optional(&rejected_path(&self.path))?,
            running_logs: self.running_logs(context.docker)?,
        })
    }

    fn diff(&self, observed: &DaemonJsonState, _earlier: &Earlier) -> Diff<WriteDaemonJson> {
        let mut diff = Diff::none();
        let Some(planned) = self.planned(observed) else {
            return diff;
        };
        let before = observed
            .current
            .as_ref()
            .map_or("", |current| current.text.as_str());
        let op = WriteDaemonJson {
            text: planned.text.clone(),
            replaces: observed.current.is_some(),
            keys: planned.keys.clone(),
            // A daemon that does not run is started, which disrupts nothing.
            restarts: observed.dockerd.is_some()
                && !planned
                    .keys
                    .iter()
                    .all(|(key, _)| keys::reloadable_in(key, observed.dockerd)),
        };
        let mut change =
            Change::new(Self::id(), self.action(&op), self.path.to_string()).with_diff(
                plan::unified_diff(&self.path.to_string(), before, &planned.text),
            );
        if let Some(reason) = self.refusal(observed, &planned) {
            diff.refuse(change.with_fields(planned.fields), reason);
            return diff;
        }
        if let (Some(storage), Some(wanted)) =
            (&observed.storage, planned.new_value("storage-driver"))
        {
            let wanted = wanted.as_str().unwrap_or_default();
            if let Some(hidden) = storage.switch_hides(wanted) {
                change = change.with_warning(format!(
                    "{hidden} (allowed by --allow-storage-driver-change)"
                ));
            }
        }
        if let Some(note) =
            log_options::note(&planned.keys, &planned.object, &observed.running_logs)
        {
            change = change.with_warning(note);
        }
        diff.push(change.with_fields(planned.fields), op);
        diff
    }

    fn action(&self, op: &WriteDaemonJson) -> Action {
        if op.replaces {
            Action::Update
        } else {
            Action::Create
        }
    }

    /// The write that makes Docker restart is the restart's first step (see `restarts`).
    fn disrupts(&self, op: &WriteDaemonJson) -> bool {
        op.restarts
    }

    fn made(&self, op: &WriteDaemonJson) -> Vec<Made> {
        vec![Made::DaemonJson(DaemonJsonChange {
            keys: op.keys.clone(),
            had_file: op.replaces,
        })]
    }

    fn apply(&self, context: &Context, op: &WriteDaemonJson) -> Result<()> {
        validate_with_dockerd(&op.text)?;
        if op.replaces {
            context
                .host
                .copy_atomic(&self.path, &backup_path(&self.path))?;
        }
        context
            .host
            .write_atomic(&self.path, op.text.as_bytes(), 0o644)
    }
}

/// Reads an existing daemon.json; anything that is not a JSON object is an error, so the file
/// is left exactly as it is.
fn parse_existing(path: &HostPath, text: &str) -> Result<Map<String, Json>> {
    // dockerd treats an empty file as no configuration.
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    // An editor on Windows saves one; dockerd refuses it too, and "not valid JSON at line 1
    // column 1" points at a character nobody can see.
    if text.starts_with('\u{feff}') {
        bail!(
            "`{path}` starts with a UTF-8 byte order mark (BOM: bytes EF BB BF), which JSON does not allow and dockerd refuses; berth will not overwrite it: save it without the BOM (`sed -i '1s/^\\xEF\\xBB\\xBF//' {path}`)"
        );
    }
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(object)) => Ok(object),
        Ok(_) => bail!(
            "`{path}` is not a JSON object; berth will not overwrite it: fix it by hand first"
        ),
        Err(error) => Err(anyhow::Error::new(error)).with_context(|| {
            format!("`{path}` is not valid JSON; berth will not overwrite it: fix it by hand first")
        }),
    }
}

/// The indentation the file already uses, so a rewrite changes only the lines that differ.
fn detect_indent(text: &str) -> String {
    text.lines()
        .find_map(|line| {
            let trimmed = line.trim_start();
            (trimmed.len() < line.len() && trimmed.starts_with('"'))
                .then(|| line[..line.len() - trimmed.len()].to_owned())
        })
        .unwrap_or_else(|| "  ".to_owned())
}

fn render(object: &Map<String, Json>, indent: &str) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    object
        .serialize(&mut serializer)
        .expect("a JSON map always serializes");
    let mut text = String::from_utf8(out).expect("serde_json writes UTF-8");
    text.push('\n');
    text
}

/// Runs `dockerd --validate` on the new file where the installed dockerd has it (Engine 23+).
/// Where it does not, or dockerd is not on PATH here, the flag-conflict check and the
/// restore-on-failure in `daemon/docker` are the guard.
fn validate_with_dockerd(text: &str) -> Result<()> {
    let help = match exec::run_unchecked(&CommandLine::new("dockerd", ["--help"])) {
        Ok(output) => output.stdout + &output.stderr,
        Err(error) => {
            tracing::debug!("not validating daemon.json with dockerd: {error}");
            return Ok(());
        }
    };
    if !help.contains("--validate") {
        tracing::debug!("the installed dockerd has no --validate");
        return Ok(());
    }
    let mut candidate = tempfile::Builder::new()
        .prefix("berth-daemon-")
        .suffix(".json")
        .tempfile()
        .context("failed to create a temporary file for `dockerd --validate`")?;
    std::io::Write::write_all(&mut candidate, text.as_bytes())?;
    let path = candidate.path().to_string_lossy().into_owned();
    exec::run(&CommandLine::new(
        "dockerd",
        ["--validate", "--config-file", &path],
    ))
    .context("dockerd rejects the new daemon.json; the file was not changed")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(keys: Json) -> DaemonConfig {
        DaemonConfig {
            path: host_path("/etc/docker/daemon.json"),
            keys: keys.as_object().unwrap().clone(),
            allow_storage_driver_change: false,
            containers: Vec::new(),
        }
    }

    fn state(text: Option<&str>) -> DaemonJsonState {
        DaemonJsonState {
            current: text.map(|text| CurrentFile {
                text: text.to_owned(),
                object: parse_existing(&host_path("/etc/docker/daemon.json"), text).unwrap(),
            }),
            storage: None,
            service: None,
            rejected: None,
            dockerd: None,
            running_logs: Vec::new(),
        }
    }

    #[test]
    fn only_profile_keys_change_and_order_and_indent_are_kept() {
        let resource = config(
            json!({"registry-mirrors": ["https://m.example"], "storage-driver": "overlay2"}),
        );
        let observed = state(Some(
            "{\n    \"storage-driver\": \"vfs\",\n    \"debug\": true\n}\n",
        ));
        let planned = resource.planned(&observed).unwrap();
        assert_eq!(
            planned.text,
            "{\n    \"storage-driver\": \"overlay2\",\n    \"debug\": true,\n    \"registry-mirrors\": [\n        \"https://m.example\"\n    ]\n}\n"
        );
        let paths: Vec<_> = planned
            .fields
            .iter()
            .map(|field| field.path.as_str())
            .collect();
        assert_eq!(paths, ["registry-mirrors", "storage-driver"]);
    }

    #[test]
    fn equal_values_in_another_layout_are_in_sync() {
        let resource = config(json!({"mtu": 1450, "log-opts": {"max-size": "10m"}}));
        let observed = state(Some(
            "{\"log-opts\":{\"max-size\":\"10m\"},\"mtu\":1450,\"other\":1}",
        ));
        assert_eq!(resource.diff(&observed, &Earlier::default()), Diff::none());
    }

    #[test]
    fn a_missing_file_is_created() {
        let resource = config(json!({"storage-driver": "overlay2"}));
        let change = &resource.diff(&state(None), &Earlier::default()).changes[0];
        assert_eq!(change.0.action, Action::Create);
        assert_eq!(
            change.0.fields,
            [FieldChange::new(
                "storage-driver",
                None,
                Some(json!("overlay2"))
            )]
        );
    }

    #[test]
    fn invalid_json_is_an_error_naming_the_file() {
        let error =
            parse_existing(&host_path("/etc/docker/daemon.json"), "{\"a\": 1,,}").unwrap_err();
        assert!(
            format!("{error:#}").starts_with("`/etc/docker/daemon.json` is not valid JSON"),
            "{error:#}"
        );
    }

    #[test]
    fn storage_driver_switch_with_images_is_refused_unless_allowed() {
        let mut resource = config(json!({"storage-driver": "vfs"}));
        let mut observed = state(Some("{}"));
        observed.storage = Some(StorageFacts {
            driver: Some("overlay2".into()),
            containerd_store: false,
            images: 3,
            containers: 1,
        });
        let change = &resource.diff(&observed, &Earlier::default()).changes[0];
        assert_eq!(
            change.0.refused.as_deref(),
            Some(
                "switching the storage driver from `overlay2` to `vfs` hides 3 images and 1 container until it is switched back; rerun with --allow-storage-driver-change to switch anyway"
            )
        );
        resource.allow_storage_driver_change = true;
        let change = &resource.diff(&observed, &Earlier::default()).changes[0];
        assert_eq!(change.0.refused, None);
        assert_eq!(change.0.warnings.len(), 1);
    }

    #[test]
    fn writing_the_driver_already_in_use_is_not_a_switch() {
        let resource = config(json!({"storage-driver": "overlay2"}));
        let mut observed = state(None);
        observed.storage = Some(StorageFacts {
            driver: Some("overlayfs".into()),
            containerd_store: true,
            images: 9,
            containers: 9,
        });
        assert_eq!(
            resource.diff(&observed, &Earlier::default()).changes[0]
                .0
                .refused,
            None
        );
    }

    #[test]
    fn a_key_also_given_as_a_flag_is_refused() {
        let resource = config(json!({"hosts": ["unix:///var/run/docker.sock"]}));
        let mut observed = state(None);
        observed.service = Some(DockerService {
            unit: host_path("/lib/systemd/system/docker.service"),
            argv: vec!["/usr/sbin/dockerd".into(), "-H".into(), "fd://".into()],
        });
        let refused = resource.diff(&observed, &Earlier::default()).changes[0]
            .0
            .refused
            .clone()
            .unwrap();
        assert!(refused.contains("`hosts` (flag `-H fd://`)"), "{refused}");
    }

    #[test]
    fn the_exact_file_dockerd_refused_is_not_written_again() {
        let resource = config(json!({"bogus": true}));
        let mut observed = state(Some("{}"));
        observed.rejected = Some("{\n  \"bogus\": true\n}\n".into());
        assert!(
            resource.diff(&observed, &Earlier::default()).changes[0]
                .0
                .refused
                .as_deref()
                .unwrap()
                .contains("already refused")
        );
    }

    #[test]
    fn a_key_the_running_dockerd_does_not_know_is_refused() {
        let resource = config(
            json!({"default-network-opts": {"bridge": {"com.docker.network.driver.mtu": "1400"}}}),
        );
        let mut observed = state(Some("{}\n"));
        observed.dockerd = DockerdVersion::parse("20.10.24+dfsg1");
        let diff = resource.diff(&observed, &Earlier::default());
        let refused = diff.changes[0].0.refused.as_deref().unwrap();
        assert!(
            refused.contains("known only from dockerd 24.0; this host has 20.10"),
            "{refused}"
        );
        observed.dockerd = DockerdVersion::parse("28.2.2");
        assert_eq!(
            resource.diff(&observed, &Earlier::default()).changes[0]
                .0
                .refused,
            None
        );
    }
}
