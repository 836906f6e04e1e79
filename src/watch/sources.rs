//! Where `berth watch` hears of drift: Docker's event stream, filtered to berth's objects, and
//! inotify on the directories of every file berth owns. Each runs on a thread of its own and
//! sends what it heard on one channel; neither changes anything.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc::Sender},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use serde::Deserialize;

use super::Event;
use crate::docker::engine::{Engine, EngineError};

/// What berth owns, as the sources match it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Targets {
    /// Real paths (under the root) of the files berth writes or reads its profiles from.
    pub(crate) files: BTreeSet<PathBuf>,
    /// Names of the profile's containers (and their set-aside names), networks and volumes.
    pub(crate) names: BTreeSet<String>,
    /// The profiles have `[hygiene]`: its thresholds are checked every minute.
    pub(crate) hygiene: bool,
}

/// How often `berth watch` checks `[hygiene]`'s thresholds: a disk fills between two events.
pub(crate) const HYGIENE_PERIOD: Duration = Duration::from_secs(60);

/// A timer source: every `period`, while the profiles have `[hygiene]`, says the thresholds
/// are due for a check. What it sends goes through the debounce and the rate limit as the
/// other sources' news does; the converge it brings observes each daemon's disk and prunes
/// only past a threshold.
pub(crate) fn hygiene_timer(
    targets: Arc<Mutex<Targets>>,
    events: Sender<Event>,
    period: Duration,
) -> Result<()> {
    std::thread::Builder::new()
        .name("berth-hygiene".into())
        .spawn(move || {
            loop {
                std::thread::sleep(period);
                if !targets.lock().expect("targets").hygiene {
                    continue;
                }
                if events
                    .send(Event::changed(
                        "the [hygiene] thresholds, checked every minute".to_owned(),
                    ))
                    .is_err()
                {
                    return;
                }
            }
        })
        .context("failed to start the hygiene timer")?;
    Ok(())
}

/// The directories of the target files, watched with inotify: a file replaced by a rename (as
/// berth and most editors write) is seen as a new entry of its directory.
pub(crate) struct FileWatch {
    inotify: Arc<Inotify>,
    watched: Arc<Mutex<HashMap<WatchDescriptor, PathBuf>>>,
}

const FILE_EVENTS: AddWatchFlags = AddWatchFlags::IN_CLOSE_WRITE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_ATTRIB);

impl FileWatch {
    pub(crate) fn start(targets: Arc<Mutex<Targets>>, events: Sender<Event>) -> Result<Self> {
        let inotify = Arc::new(
            Inotify::init(InitFlags::IN_CLOEXEC).context("failed to start watching files")?,
        );
        let watched: Arc<Mutex<HashMap<WatchDescriptor, PathBuf>>> = Arc::default();
        let watch = Self {
            inotify: Arc::clone(&inotify),
            watched: Arc::clone(&watched),
        };
        watch.refresh(&targets.lock().expect("targets").clone());
        std::thread::Builder::new()
            .name("berth-files".into())
            .spawn(move || {
                loop {
                    let Ok(heard) = inotify.read_events() else {
                        return;
                    };
                    for event in heard {
                        let Some(name) = event.name else { continue };
                        let Some(dir) = watched.lock().expect("watched").get(&event.wd).cloned()
                        else {
                            continue;
                        };
                        let path = dir.join(name);
                        if targets.lock().expect("targets").files.contains(&path) {
                            let what = format!("file {}", path.display());
                            if events.send(Event::changed(what)).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .context("failed to start the file watcher")?;
        Ok(watch)
    }

    /// Watches the directory of every target file that exists now (a converge may have made
    /// new ones); adding a directory twice is harmless.
    pub(crate) fn refresh(&self, targets: &Targets) {
        let dirs: BTreeSet<&Path> = targets
            .files
            .iter()
            .filter_map(|file| file.parent())
            .collect();
        let mut watched = self.watched.lock().expect("watched");
        for dir in dirs {
            if watched.values().any(|known| known == dir) || !dir.is_dir() {
                continue;
            }
            match self.inotify.add_watch(dir, FILE_EVENTS) {
                Ok(descriptor) => {
                    watched.insert(descriptor, dir.to_owned());
                }
                Err(error) => tracing::warn!("cannot watch `{}`: {error}", dir.display()),
            }
        }
    }
}

/// `[source]`: asks the server for the ref's head (`git ls-remote`) every `poll`, and reports
/// a head other than the one last fetched; the converge it brings fetches and verifies it.
pub(crate) struct SourcePoll;

impl SourcePoll {
    pub(crate) fn start(
        host: crate::host::Host,
        source: crate::source::Source,
        events: Sender<Event>,
    ) -> Result<()> {
        std::thread::Builder::new()
            .name("berth-source".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(source.poll);
                    let known = crate::source::fetched_head(&host, &source);
                    match crate::source::remote_head(&host, &source) {
                        Ok(Some(head)) if Some(&head) != known.as_ref() => {
                            let what = format!(
                                "source {} moved to {}",
                                source.reference,
                                crate::source::short(&head)
                            );
                            if events.send(Event::changed(what)).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        // The converge counts failed fetches; a poll only logs.
                        Err(error) => tracing::warn!("failed to look for a new commit: {error:#}"),
                    }
                }
            })
            .context("failed to start the source poll")?;
        Ok(())
    }
}

/// One event of `GET /events`, as Docker's JSON.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEvent {
    #[serde(rename = "Type")]
    kind: String,
    action: String,
    actor: Actor,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Actor {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    attributes: HashMap<String, String>,
}

/// The actions that can leave berth's objects other than the profile says.
fn drifts(kind: &str, action: &str) -> bool {
    match kind {
        "container" => matches!(
            action,
            "die" | "stop" | "kill" | "destroy" | "rename" | "oom" | "pause" | "update"
        ),
        "network" => matches!(action, "destroy" | "disconnect"),
        "volume" => action == "destroy",
        _ => false,
    }
}

impl DockerEvent {
    /// `container/NAME` when the event is of one of berth's objects and can be drift.
    fn of_interest(&self, targets: &Targets) -> Option<String> {
        if !drifts(&self.kind, &self.action) {
            return None;
        }
        let name = self
            .actor
            .attributes
            .get("name")
            .cloned()
            // A volume event names the volume by its ID.
            .unwrap_or_else(|| self.actor.id.clone());
        let berths = self
            .actor
            .attributes
            .get(crate::docker::labels::LABEL_MANAGED)
            .is_some_and(|value| value == "true");
        (berths || targets.names.contains(&name)).then(|| format!("{}/{name}", self.kind))
    }
}

/// Follows Docker's event stream (`GET /events`, through berth's API client: no `docker`
/// process), asked again with backoff whenever the stream ends (the daemon went away); a stream
/// that ended after running a while is itself news worth a converge (the daemon restarted, or
/// stopped and needs starting).
pub(crate) struct DockerEvents;

impl DockerEvents {
    pub(crate) fn start(engine: Engine, targets: Arc<Mutex<Targets>>, events: Sender<Event>) {
        let spawned = std::thread::Builder::new()
            .name("berth-docker-events".into())
            .spawn(move || {
                let mut backoff = Duration::from_secs(1);
                loop {
                    let started = Instant::now();
                    let mut listening = true;
                    let ended = engine.follow_events(|raw| {
                        let Ok(event) = serde_json::from_value::<DockerEvent>(raw) else {
                            return true;
                        };
                        let of_interest = event.of_interest(&targets.lock().expect("targets"));
                        if let Some(what) = of_interest {
                            let event = if event.action == "destroy" {
                                Event::gone(what)
                            } else {
                                Event::changed(what)
                            };
                            listening = events.send(event).is_ok();
                        }
                        listening
                    });
                    if !listening {
                        return;
                    }
                    if let Err(error @ EngineError::TooLarge { .. }) = &ended {
                        // The daemon is up and a job's oversized event cut the stream: what
                        // happened until it is asked for again was not heard, so ask again at
                        // once and converge, rather than leave a window a job can open at will.
                        tracing::warn!("Docker's event stream: {error}; asking for it again");
                        backoff = Duration::from_secs(1);
                        if events
                            .send(Event::changed(
                                "the Docker daemon's event stream, cut by an oversized event"
                                    .into(),
                            ))
                            .is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    if let Err(error) = ended {
                        tracing::debug!("Docker's event stream: {error}");
                    }
                    if started.elapsed() > Duration::from_secs(5) {
                        backoff = Duration::from_secs(1);
                        if events
                            .send(Event::changed("the Docker daemon".into()))
                            .is_err()
                        {
                            return;
                        }
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            });
        if let Err(error) = spawned {
            tracing::warn!("cannot follow Docker's events: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_drift_of_berths_objects_is_of_interest() {
        let targets = Targets {
            files: BTreeSet::new(),
            names: ["gitlab-runner".to_owned()].into(),
            hygiene: false,
        };
        let event = |line: &str| serde_json::from_str::<DockerEvent>(line).unwrap();
        assert_eq!(
            event(r#"{"Type":"container","Action":"destroy","Actor":{"ID":"abc","Attributes":{"name":"gitlab-runner"}}}"#)
                .of_interest(&targets),
            Some("container/gitlab-runner".into())
        );
        assert_eq!(
            event(r#"{"Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{"name":"gitlab-runner"}}}"#)
                .of_interest(&targets),
            None,
            "a start is not drift"
        );
        assert_eq!(
            event(r#"{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"name":"job-1234"}}}"#)
                .of_interest(&targets),
            None,
            "a job container is none of berth's business"
        );
        assert_eq!(
            event(r#"{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"name":"renamed","berth.managed":"true"}}}"#)
                .of_interest(&targets),
            Some("container/renamed".into()),
            "berth's label counts, whatever the name"
        );
        assert_eq!(
            event(r#"{"Type":"volume","Action":"destroy","Actor":{"ID":"gitlab-runner","Attributes":{"driver":"local"}}}"#)
                .of_interest(&targets),
            Some("volume/gitlab-runner".into())
        );
    }

    #[test]
    fn the_hygiene_timer_ticks_only_while_the_profiles_have_hygiene() {
        let targets = Arc::new(Mutex::new(Targets::default()));
        let (sender, events) = std::sync::mpsc::channel();
        hygiene_timer(Arc::clone(&targets), sender, Duration::from_millis(20)).unwrap();
        assert!(
            events.recv_timeout(Duration::from_millis(200)).is_err(),
            "no [hygiene], no tick"
        );
        targets.lock().unwrap().hygiene = true;
        let Ok(Event::Changed { what, .. }) = events.recv_timeout(Duration::from_secs(5)) else {
            panic!("no tick with [hygiene]");
        };
        assert!(what.contains("[hygiene]"), "{what}");
    }
}
