//! The Docker daemon as berth sees it: the edge, below every kind. What Docker says (`wire`,
//! `labels`, `listing`) lives here, beside the client that asks it; what a kind wants lives with
//! the kind. Observations (`info`, the batched inspects, berth's listings, events) go through
//! the Engine API (`engine`, issue 24), and so does every change berth makes (containers,
//! networks, volumes, pulls, hygiene): berth starts no `docker` process on the host. Answers
//! are cached for one run so that
//! observing N resources costs a constant number of requests; the engine drops the cache after
//! anything is applied.

pub(crate) mod credentials;
pub(crate) mod drain;
pub(crate) mod engine;
pub(crate) mod labels;
pub(crate) mod listing;
pub(crate) mod pull;
pub(crate) mod unit;
pub(crate) mod usage;
pub(crate) mod wire;

use std::{
    any::{Any, TypeId},
    cell::RefCell,
    collections::{BTreeMap, BTreeSet, HashMap},
    rc::Rc,
    time::Duration,
};

use anyhow::{Context as _, Result};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value as Json;

use engine::{Engine, EngineError};

/// The names a profile's Docker objects go by. Every resource of a kind asks about all of its
/// kind's names at once, so the first asks the daemon and the rest read the cached answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObjectNames {
    pub containers: Vec<String>,
    /// Declared networks and those containers join without declaring them.
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    /// The images the profile's containers name.
    pub images: Vec<String>,
}

/// How long one query may take before berth treats the daemon as hung.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// What `GET /info` could tell.
#[derive(Debug, Clone)]
pub(crate) enum DaemonStatus {
    Running(Box<DaemonInfo>),
    /// No daemon to reach: not running, no socket, wrong DOCKER_HOST.
    Unreachable(String),
    /// The daemon takes the connection but does not answer (hung): restarting it stops every
    /// running container, so berth does it only when the profile says so.
    NotAnswering(String),
    /// The socket exists but this user may not use it (plan as non-root).
    PermissionDenied(String),
}

/// The parts of `GET /info` berth reads. Unknown fields are ignored: the daemon adds fields
/// with every release.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct DaemonInfo {
    pub server_version: String,
    pub driver: String,
    pub driver_status: Option<Vec<(String, String)>>,
    pub images: u64,
    pub containers: u64,
    pub containers_running: u64,
    pub docker_root_dir: String,
    pub logging_driver: String,
    pub debug: bool,
    pub labels: Option<Vec<String>>,
    pub live_restore_enabled: bool,
    pub registry_config: Option<RegistryConfig>,
    /// The OCI runtimes the daemon can run containers with (`runc`, and what daemon.json's
    /// `runtimes` adds: the sysbox installer's `sysbox-runc`), keyed by name.
    pub runtimes: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct RegistryConfig {
    pub mirrors: Option<Vec<String>>,
}

impl DaemonInfo {
    /// The containerd image store names its snapshotter (`overlayfs`) where the classic store
    /// names a graph driver (`overlay2`); it marks itself with this driver-status entry.
    pub(crate) fn uses_containerd_store(&self) -> bool {
        self.driver_status
            .iter()
            .flatten()
            .any(|(key, value)| key == "driver-type" && value == "io.containerd.snapshotter.v1")
    }

    /// True when the running storage matches a daemon.json `storage-driver` value.
    pub(crate) fn storage_driver_is(&self, wanted: &str) -> bool {
        self.driver == wanted
            || (wanted == "overlay2" && self.driver == "overlayfs" && self.uses_containerd_store())
    }

    /// The registry mirrors, as daemon.json spells them (dockerd adds a trailing `/`).
    pub(crate) fn mirrors(&self) -> Vec<String> {
        self.registry_config
            .as_ref()
            .and_then(|config| config.mirrors.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|mirror| normalize_mirror(&mirror))
            .collect()
    }
}

/// dockerd stores every mirror with exactly one trailing `/`; compare in that form.
pub(crate) fn normalize_mirror(mirror: &str) -> String {
    format!("{}/", mirror.trim_end_matches('/'))
}

pub(crate) struct Docker {
    engine: Engine,
    status: RefCell<Option<DaemonStatus>>,
    /// One `Batch<T>` per inspect type: two types may read one kind (a container by its name,
    /// an orphan container by its ID).
    inspected: RefCell<HashMap<TypeId, Box<dyn Any>>>,
    /// What the last answer about each object said of its identity (`container/NAME` →
    /// [`identity`]), kept past [`Docker::invalidate`]: a saved plan's fingerprint.
    identities: RefCell<BTreeMap<String, Json>>,
}

/// What one batched `docker … inspect` found: the objects by the name each answers to, and
/// the [`identity`] of each name asked (`null` for one that does not exist).
pub(crate) struct Fetched<T> {
    pub(crate) found: BTreeMap<String, T>,
    identities: BTreeMap<String, Json>,
}

/// What one batched `docker … inspect` found, keyed by the name it was asked for; a name that is
/// not a key does not exist.
pub(crate) type Found<T> = Rc<BTreeMap<String, T>>;

/// A kind of Docker object berth inspects in batches. Each resource kind owns its type (with
/// only the fields it reads); this client knows none of them.
pub(crate) trait Inspect: DeserializeOwned + Clone + 'static {
    /// The CLI's word for the kind: `container`, `network`, `volume`, `image`.
    const KIND: &'static str;

    /// True when this object is the answer to `name`: `inspect` also matches ID prefixes, and
    /// only an exact name (or reference) answers a name.
    fn answers_to(&self, name: &str) -> bool;
}

/// This run's batched answers, one per kind.
struct Batch<T> {
    asked: BTreeSet<String>,
    found: Found<T>,
}

impl<T> Batch<T> {
    /// The cached answer, when it covers every name in `names`.
    fn covers(&self, names: &[String]) -> Option<Found<T>> {
        names
            .iter()
            .all(|name| self.asked.contains(name))
            .then(|| Rc::clone(&self.found))
    }
}

impl Default for Docker {
    fn default() -> Self {
        Self {
            engine: Engine::from_env(QUERY_TIMEOUT),
            status: RefCell::new(None),
            inspected: RefCell::new(HashMap::new()),
            identities: RefCell::new(BTreeMap::new()),
        }
    }
}

impl Docker {
    /// The identities of every object this run asked about, and of the daemon itself: what a
    /// saved plan compares to tell "the host changed since". Docker's own volatile parts (a
    /// health check's log, counters, the clock) are left out so that an idle host matches.
    pub(crate) fn identities(&self) -> BTreeMap<String, Json> {
        let mut identities = self.identities.borrow().clone();
        if let Some(DaemonStatus::Running(info)) = self.status.borrow().as_ref() {
            identities.insert(
                "daemon".to_owned(),
                serde_json::json!({
                    "version": info.server_version,
                    "driver": info.driver,
                    "root": info.docker_root_dir,
                    "logging": info.logging_driver,
                    "mirrors": info.mirrors(),
                    "live_restore": info.live_restore_enabled,
                }),
            );
        }
        identities
    }

    /// The daemon's status, asked once per run (until [`Docker::invalidate`]).
    pub(crate) fn status(&self) -> DaemonStatus {
        if let Some(status) = self.status.borrow().as_ref() {
            return status.clone();
        }
        let status = self.query_status();
        *self.status.borrow_mut() = Some(status.clone());
        status
    }

    /// Forgets cached answers; the engine calls this after it changed something.
    pub(crate) fn invalidate(&self) {
        self.status.borrow_mut().take();
        self.inspected.borrow_mut().clear();
    }

    /// Asks the daemon now, bypassing the cache: for waiting on a restart.
    pub(crate) fn query_status(&self) -> DaemonStatus {
        query_status(&self.engine)
    }

    /// The API client, for queries made on other threads ([`query_status`], [`fetch`]) whose
    /// answers [`Docker::remember`] then keeps.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Keeps a status asked on another thread as this run's answer.
    pub(crate) fn remember_status(&self, status: DaemonStatus) {
        *self.status.borrow_mut() = Some(status);
    }

    /// Keeps a batch fetched on another thread as this run's answer for `names`.
    pub(crate) fn remember<T: Inspect>(&self, names: &[String], fetched: Fetched<T>) -> Found<T> {
        self.identities.borrow_mut().extend(
            fetched
                .identities
                .into_iter()
                .map(|(name, identity)| (format!("{}/{name}", T::KIND), identity)),
        );
        let found = Rc::new(fetched.found);
        self.inspected.borrow_mut().insert(
            TypeId::of::<T>(),
            Box::new(Batch {
                asked: names.iter().cloned().collect(),
                found: Rc::clone(&found),
            }),
        );
        found
    }
}

/// `GET /info`: what the daemon says of itself, or why it cannot.
pub(crate) fn query_status(engine: &Engine) -> DaemonStatus {
    match engine.info() {
        Ok(raw) => match serde_json::from_value::<DaemonInfo>(raw) {
            Ok(info) if !info.server_version.is_empty() => DaemonStatus::Running(Box::new(info)),
            Ok(_) => DaemonStatus::Unreachable("`GET /info` returned no server information".into()),
            Err(error) => DaemonStatus::Unreachable(format!(
                "`GET /info` answered something berth cannot read: {error}"
            )),
        },
        Err(EngineError::Hung { timeout, .. }) => DaemonStatus::NotAnswering(format!(
            "`docker info` got no answer within {} s",
            timeout.as_secs()
        )),
        Err(error @ EngineError::PermissionDenied { .. }) => {
            DaemonStatus::PermissionDenied(error.to_string())
        }
        Err(error) => DaemonStatus::Unreachable(first_line(&with_causes(&error))),
    }
}

/// The error and what caused it, on one line: a TLS or certificate problem says which.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let said = error.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = error.source();
    }
    text
}

/// One batch of inspects, keyed by the name each object answers to; callable from any thread.
pub(crate) fn fetch<T: Inspect>(engine: &Engine, names: &[String]) -> Result<Fetched<T>> {
    let raw: Vec<Json> = inspect(engine, T::KIND, names)?;
    let items = raw
        .iter()
        .map(|value| Ok((T::deserialize(value)?, value)))
        .collect::<Result<Vec<(T, &Json)>, serde_json::Error>>()
        .with_context(|| {
            format!(
                "the Docker daemon's {} inspect is something berth cannot read",
                T::KIND
            )
        })?;
    let mut fetched = Fetched {
        found: BTreeMap::new(),
        identities: BTreeMap::new(),
    };
    for name in names {
        let answer = items.iter().find(|(item, _)| item.answers_to(name));
        fetched.identities.insert(
            name.clone(),
            answer.map_or(Json::Null, |(_, raw)| identity(raw)),
        );
        if let Some((item, _)) = answer {
            fetched.found.insert(name.clone(), item.clone());
        }
    }
    Ok(fetched)
}

/// What says an object is the same one, in the same state, as when it was last seen: its ID and
/// creation time (recreated?), its state and when it started (stopped, restarted, unhealthy?),
/// the spec berth stamped on it, and which networks it is on. Read from the inspect JSON as
/// Docker prints it, so no kind's own inspect type has to carry these.
fn identity(raw: &Json) -> Json {
    const POINTERS: [&str; 9] = [
        "/Id",
        "/Created",
        "/CreatedAt",
        "/State/Status",
        "/State/StartedAt",
        "/State/Health/Status",
        "/Config/Labels/berth.spec-hash",
        "/Labels/berth.spec-hash",
        "/NetworkSettings/Networks",
    ];
    let mut identity = serde_json::Map::new();
    for pointer in POINTERS {
        let Some(value) = raw.pointer(pointer) else {
            continue;
        };
        // A container's networks by name only: its endpoints' details are Docker's.
        let value = match value {
            Json::Object(networks) if pointer == "/NetworkSettings/Networks" => {
                Json::from(networks.keys().cloned().collect::<Vec<_>>())
            }
            other => other.clone(),
        };
        identity.insert(pointer.to_owned(), value);
    }
    Json::Object(identity)
}

/// Batched inspects: each kind costs one `docker … inspect a b c` per run (until
/// [`Docker::invalidate`]), however many resources ask, as long as every resource asks for the
/// same list (the profile's): observing N objects costs a constant number of CLI calls.
impl Docker {
    /// The objects of kind `T` among `names` (names, or image references and IDs).
    pub(crate) fn inspect_all<T: Inspect>(&self, names: &[String]) -> Result<Found<T>> {
        if let Some(found) = self
            .inspected
            .borrow()
            .get(&TypeId::of::<T>())
            .and_then(|batch| batch.downcast_ref::<Batch<T>>())
            .and_then(|batch| batch.covers(names))
        {
            return Ok(found);
        }
        Ok(self.remember(names, fetch::<T>(&self.engine, names)?))
    }
}

/// The inspect document of each of `names` that exists (`GET /KIND/NAME/json`, side by side):
/// a name that does not exist is an answer (left out), not a failure.
pub(crate) fn inspect<T: DeserializeOwned>(
    engine: &Engine,
    kind: &str,
    names: &[String],
) -> Result<Vec<T>> {
    let raw = engine
        .inspect(kind, names)
        .with_context(|| format!("failed to inspect {kind}s on the Docker daemon"))?;
    raw.into_iter()
        .map(serde_json::from_value)
        .collect::<Result<Vec<T>, _>>()
        .with_context(|| {
            format!("the Docker daemon's {kind} inspect is something berth cannot read")
        })
}

fn first_line(text: &str) -> String {
    text.lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_store_overlayfs_counts_as_overlay2() {
        let classic = DaemonInfo {
            driver: "overlay2".into(),
            ..DaemonInfo::default()
        };
        let containerd = DaemonInfo {
            driver: "overlayfs".into(),
            driver_status: Some(vec![(
                "driver-type".into(),
                "io.containerd.snapshotter.v1".into(),
            )]),
            ..DaemonInfo::default()
        };
        assert!(classic.storage_driver_is("overlay2"));
        assert!(containerd.storage_driver_is("overlay2"));
        assert!(!containerd.storage_driver_is("vfs"));
    }

    #[test]
    fn a_daemon_that_cannot_be_asked_is_told_with_its_causes() {
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no file `ca.pem`");
        let error = anyhow::Error::new(missing).context("failed to read the certificates");
        let error: &(dyn std::error::Error + 'static) = error.as_ref();
        assert_eq!(
            with_causes(error),
            "failed to read the certificates: no file `ca.pem`"
        );
    }

    #[test]
    fn mirrors_compare_with_one_trailing_slash() {
        assert_eq!(normalize_mirror("https://m.example"), "https://m.example/");
        assert_eq!(
            normalize_mirror("https://m.example//"),
            "https://m.example/"
        );
    }
}
