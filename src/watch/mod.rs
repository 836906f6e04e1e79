//! `berth watch`: converge once, then again the moment something berth owns drifts, instead of
//! at the timer's next tick.
//!
//! It hears of drift from Docker's event stream (berth's containers, networks and volumes:
//! destroyed, died, stopped, renamed, disconnected) and from inotify on every file berth owns
//! (daemon.json, config.toml, the modules-load file, the profiles and berth.toml; a profile
//! edit is applied like any drift). Events are debounced (100 ms of quiet, or until Docker
//! destroyed the object: the last of the events one `docker rm -f` raises), then one converge
//! runs: the same `apply`, under the same run lock, with the same report, metrics and journal.
//! berth's own actions raise events too; they bring one more converge, which finds nothing and
//! ends the chain. An object that keeps drifting (a container in a crash loop) gets at most a
//! few converges a minute, then a warning and the timer's pace.
//!
//! A converge whose disruptive steps wait for a fleet slot (`[fleet]`, exit 75) is tried again
//! on watch's own schedule, event or not: after `--fleet-retry-secs` (30 s), then twice as long
//! after each further wait, up to the timer's interval (15 minutes).
//!
//! SIGTERM (and SIGINT) stop it cleanly: a converge in progress ends after its current step
//! (a multi-step change left journaled is finished by the next run). SIGHUP reloads the
//! profiles. The signals are taken by one thread with `sigwait`, never by a handler.

mod notify;
mod sources;
pub(crate) mod state;

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use nix::sys::signal::{SigSet, Signal};

use crate::{
    docker::ObjectNames,
    engine,
    host::host_path,
    output::Printer,
    profile::{PROFILE_DIR, ProfileRef},
    resource::{self, kernel_module::KernelModule},
    settings::{HOST_CONFIG, Settings},
};
use notify::Notifier;
use sources::{DockerEvents, FileWatch, SourcePoll, Targets};
use state::WatchState;

/// How `berth watch` paces itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Quiet time after the last event before a converge.
    pub(crate) debounce: Duration,
    /// Converges one object may cause in a minute before it is left to the timer.
    pub(crate) heals_per_minute: usize,
    /// The first wait before a converge that waited for a fleet slot is tried again.
    pub(crate) fleet_retry: Duration,
}

/// The longest wait between two tries of a converge that waits for a fleet slot: berth.timer's
/// interval (`OnUnitActiveSec`), whose run would try again then anyway.
const FLEET_RETRY_AT_MOST: Duration = Duration::from_secs(15 * 60);

/// When to try again a converge whose disruptive steps wait for a fleet slot: no Docker event
/// or file change announces a freed slot, so watch asks again on its own, backing off.
struct FleetRetry {
    first: Duration,
    /// The wait after the next converge that waits; `None` after one that did not.
    next: Option<Duration>,
    /// When the next try is due.
    due: Option<Instant>,
}

impl FleetRetry {
    fn new(first: Duration) -> Self {
        Self {
            first,
            next: None,
            due: None,
        }
    }

    /// After a converge: due again after the wait when it waited, doubling each time.
    fn after(&mut self, waited: bool) {
        if !waited {
            self.next = None;
            self.due = None;
            return;
        }
        let wait = self.next.unwrap_or(self.first);
        tracing::info!(
            "disruptive steps wait for a fleet slot: trying again in {} s",
            wait.as_secs()
        );
        self.due = Some(Instant::now() + wait);
        self.next = Some((wait * 2).min(FLEET_RETRY_AT_MOST.max(self.first)));
    }
}

/// What the main loop hears.
pub(crate) enum Event {
    Changed {
        what: String,
        at: Instant,
        /// The object is gone (Docker destroyed it): the last event it raises, so the wait
        /// for quiet can end here.
        gone: bool,
    },
    Signal(Signal),
}

impl Event {
    fn changed(what: String) -> Self {
        Self::Changed {
            what,
            at: Instant::now(),
            gone: false,
        }
    }

    fn gone(what: String) -> Self {
        Self::Changed {
            what,
            at: Instant::now(),
            gone: true,
        }
    }

    fn ends_the_wait(&self) -> bool {
        matches!(self, Self::Changed { gone: true, .. })
    }
}

/// The events that come with `first`: until `debounce` passes without one, or until one says
/// its object is gone. A `docker rm -f` raises kill, die, network disconnect and destroy, tens
/// of milliseconds apart on a busy host (up to 300 ms between two of them was seen): a converge
/// after the destroy sees what the removal left, and does not wait a debounce more for it. What
/// is already queued then comes along.
fn settle(first: Event, events: &mpsc::Receiver<Event>, debounce: Duration) -> Vec<Event> {
    let mut heard = vec![first];
    while !heard.last().is_some_and(Event::ends_the_wait) {
        match events.recv_timeout(debounce) {
            Ok(more) => heard.push(more),
            Err(_) => return heard,
        }
    }
    heard.extend(events.try_iter());
    heard
}

/// One converge, as `apply` runs it: its exit code, and whether it changed anything.
pub(crate) type Converge<'a> = dyn Fn(&Settings, &Printer) -> Result<(u8, bool)> + 'a;

pub(crate) fn run(
    settings: &Settings,
    printer: &Printer,
    pace: Pace,
    converge: &Converge,
) -> Result<u8> {
    let (sender, events) = mpsc::channel::<Event>();
    let systemd = Arc::new(Notifier::from_env());
    take_signals(sender.clone(), Arc::clone(&systemd))?;

    let host = &settings.host;
    let mut state = WatchState::started(std::process::id());
    let targets = Arc::new(Mutex::new(targets_of(settings).unwrap_or_default()));
    let files = FileWatch::start(Arc::clone(&targets), sender.clone())?;
    if let Some(source) = &settings.source {
        SourcePoll::start(host.clone(), source.clone(), sender.clone())?;
    }
    sources::hygiene_timer(
        Arc::clone(&targets),
        sender.clone(),
        sources::HYGIENE_PERIOD,
    )?;
    DockerEvents::start(
        crate::docker::engine::Engine::from_env(crate::docker::QUERY_TIMEOUT),
        Arc::clone(&targets),
        sender,
    );
    tracing::info!("watching: converging once, then on every drift");
    systemd.ready("watching; converging once");
    let mut limiter = Limiter::new(pace.heals_per_minute);
    let mut retry = FleetRetry::new(pace.fleet_retry);
    let mut pending: Option<Instant> = Some(Instant::now());
    let mut stopping = false;
    loop {
        if let Some(since) = pending.take() {
            let (status, waited) = run_one(settings, printer, converge, &mut state, since);
            retry.after(waited);
            systemd.status(&status);
            if let Ok(now) = targets_of(settings) {
                files.refresh(&now);
                *targets.lock().expect("targets") = now;
            }
        }
        if stopping || engine::stop_requested() {
            break;
        }
        // Wait for news (or for the retry of what waits for a fleet slot), then for quiet.
        let first = match retry.due {
            Some(due) => match events.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(event) => event,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    tracing::info!("trying again what waits for a fleet slot");
                    pending = Some(Instant::now());
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match events.recv() {
                Ok(event) => event,
                Err(_) => break,
            },
        };
        let mut reasons = BTreeSet::new();
        for event in settle(first, &events, pace.debounce) {
            match event {
                Event::Signal(Signal::SIGHUP) => {
                    tracing::info!("SIGHUP: reading the profiles again");
                    reasons.insert("the profiles were reloaded".to_owned());
                    pending = pending.or(Some(Instant::now()));
                }
                Event::Signal(signal) => {
                    tracing::info!("{signal}: stopping");
                    stopping = true;
                }
                Event::Changed { what, at, .. } => {
                    if limiter.allows(&what) {
                        pending = Some(pending.map_or(at, |since| since.min(at)));
                        reasons.insert(what);
                    }
                }
            }
        }
        if stopping {
            break;
        }
        if pending.is_some() && !reasons.is_empty() {
            let reasons: Vec<String> = reasons.into_iter().collect();
            tracing::info!("drift: {}", reasons.join(", "));
        }
    }
    WatchState::remove(host)?;
    Ok(crate::cli::exit::OK)
}

/// Takes SIGTERM, SIGINT and SIGHUP over on a thread of their own, which turns each into an
/// [`Event`]; a stop is asked of the engine and told to systemd at once.
fn take_signals(sender: mpsc::Sender<Event>, systemd: Arc<Notifier>) -> Result<()> {
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(signal);
    }
    // Blocked before any thread starts, so every thread inherits it and only `wait` takes them.
    signals
        .thread_block()
        .context("failed to take over SIGTERM and SIGHUP")?;
    std::thread::Builder::new()
        .name("berth-signals".into())
        .spawn(move || {
            while let Ok(signal) = signals.wait() {
                if signal != Signal::SIGHUP {
                    // The engine stops after the step it is in, which may be an hour's drain:
                    // systemd hears now that it is stopping.
                    engine::request_stop();
                    systemd.stopping();
                }
                if sender.send(Event::Signal(signal)).is_err() {
                    return;
                }
            }
        })
        .context("failed to start the signal thread")?;
    Ok(())
}

/// One converge, recorded in the watch state: a heal when it changed something. Returns what
/// `systemctl status` should say of it, and whether steps wait for a fleet slot.
fn run_one(
    settings: &Settings,
    printer: &Printer,
    converge: &Converge,
    state: &mut WatchState,
    since: Instant,
) -> (String, bool) {
    let outcome = converge(settings, printer);
    let waited =
        matches!(outcome, Ok((code, _)) if code == crate::cli::exit::WAITING_FOR_FLEET_SLOT);
    state.converges += 1;
    let at = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::system())
        .strftime("%H:%M:%S")
        .to_string();
    let status = match outcome {
        Ok((code, changed)) => {
            if changed {
                state.healed(since.elapsed().as_secs_f64());
            }
            let verdict = if code == crate::cli::exit::OK {
                "converged"
            } else if code == crate::cli::exit::WAITING_FOR_FLEET_SLOT {
                "disruptive steps wait for a fleet slot"
            } else {
                "failed (the journal says why)"
            };
            format!(
                "watching; last converge {at}: {verdict}; {} converges, {} heals",
                state.converges, state.heals
            )
        }
        Err(error) => {
            tracing::error!("{error:#}");
            format!("watching; last converge {at} failed: {error:#}")
        }
    };
    if let Err(error) = state.write(&settings.host) {
        tracing::warn!("failed to record the watch state: {error:#}");
    }
    (status, waited)
}

/// At most `per_minute` converges for one object in any minute: a container in a crash loop is
/// not restarted in a tight loop by berth as well.
struct Limiter {
    per_minute: usize,
    seen: BTreeMap<String, VecDeque<Instant>>,
    warned: BTreeSet<String>,
}

impl Limiter {
    fn new(per_minute: usize) -> Self {
        Self {
            per_minute,
            seen: BTreeMap::new(),
            warned: BTreeSet::new(),
        }
    }

    fn allows(&mut self, what: &str) -> bool {
        let now = Instant::now();
        let times = self.seen.entry(what.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|first| now.duration_since(*first) > Duration::from_secs(60))
        {
            times.pop_front();
        }
        if times.len() >= self.per_minute {
            if self.warned.insert(what.to_owned()) {
                tracing::warn!(
                    "{what} drifted {} times within a minute; left to the timer's pace until it settles",
                    times.len()
                );
            }
            return false;
        }
        self.warned.remove(what);
        times.push_back(now);
        true
    }
}

/// What berth owns under the profiles as they are now.
fn targets_of(settings: &Settings) -> Result<Targets> {
    let host = &settings.host;
    // With `[source]`, the commit the last converge applied, not the one watch started on.
    let profiles = match &settings.source {
        Some(source) => crate::source::applied_profiles(host, source)?.unwrap_or_default(),
        None => settings.profiles.clone(),
    };
    let profile = resource::profile::load(&profiles, host)?;
    let mut files = BTreeSet::new();
    files.insert(host.path(&profile.docker.config));
    if profile.runner.is_declared() {
        files.insert(host.path(&profile.runner.config));
    }
    for module in &profile.kernel_modules {
        files.insert(host.path(&KernelModule::new(module.clone()).persistence_file()));
    }
    files.insert(host.path(&host_path(HOST_CONFIG)));
    for profile_ref in &profiles {
        files.insert(match profile_ref {
            ProfileRef::Name(name) => {
                host.path(&host_path(PROFILE_DIR).join(format!("{name}.toml")))
            }
            ProfileRef::HostFile(path) => host.path(path),
            ProfileRef::LocalFile(path) => {
                std::path::absolute(path).unwrap_or_else(|_| path.clone())
            }
            // A checkout moves only with a new commit: the source's poll hears of it.
            ProfileRef::Checkout { dir, path } => dir.join(path),
            ProfileRef::Embedded(_) => continue,
        });
    }
    let names = ObjectNames::from_profile(&profile);
    Ok(Targets {
        files,
        names: names
            .containers
            .into_iter()
            .chain(names.networks)
            .chain(names.volumes)
            .collect(),
        hygiene: profile.hygiene.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_gets_a_bounded_number_of_converges_a_minute_others_are_not_held_up() {
        let mut limiter = Limiter::new(3);
        let allowed = (0..10)
            .filter(|_| limiter.allows("container/crash"))
            .count();
        assert_eq!(allowed, 3, "a crash loop is not chased");
        assert!(
            limiter.allows("container/gitlab-runner"),
            "another object still heals at once"
        );
    }

    #[test]
    fn a_converge_that_waits_is_retried_later_each_time_up_to_the_timers_interval() {
        let mut retry = FleetRetry::new(Duration::from_secs(30));
        let mut waits = Vec::new();
        for _ in 0..7 {
            let before = Instant::now();
            retry.after(true);
            waits.push((retry.due.unwrap() - before).as_secs_f64().round() as u64);
        }
        assert_eq!(waits, [30, 60, 120, 240, 480, 900, 900]);
        retry.after(false);
        assert!(retry.due.is_none(), "nothing waits: no retry");
        retry.after(true);
        assert!(
            retry.due.unwrap() <= Instant::now() + Duration::from_secs(30),
            "the backoff starts over"
        );
    }

    #[test]
    fn the_wait_for_quiet_ends_at_a_destroy_and_takes_what_is_queued() {
        let names = |heard: Vec<Event>| -> Vec<String> {
            heard
                .into_iter()
                .filter_map(|event| match event {
                    Event::Changed { what, .. } => Some(what),
                    Event::Signal(_) => None,
                })
                .collect()
        };
        let (sender, events) = mpsc::channel();
        // A debounce no test could sit out: the destroy must end the wait, not the quiet.
        let debounce = Duration::from_secs(600);
        sender.send(Event::changed("die".into())).unwrap();
        sender.send(Event::gone("destroy".into())).unwrap();
        sender.send(Event::changed("queued".into())).unwrap();
        let first = events.recv().unwrap();
        let started = Instant::now();
        assert_eq!(
            names(settle(first, &events, debounce)),
            ["die", "destroy", "queued"]
        );
        assert!(started.elapsed() < Duration::from_secs(60));

        // Without a destroy, the quiet ends it.
        sender.send(Event::changed("die".into())).unwrap();
        let first = events.recv().unwrap();
        let started = Instant::now();
        assert_eq!(
            names(settle(first, &events, Duration::from_millis(50))),
            ["die"]
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
