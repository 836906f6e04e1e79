//! `berth watch`: converge once, then again the moment something berth owns drifts, instead of
//! at the timer's next tick.
//!
//! It hears of drift from Docker's event stream (berth's containers, networks and volumes:
//! destroyed, died, stopped, renamed, disconnected) and from inotify on every file berth owns
//! (daemon.json, config.toml, the modules-load file, the profiles and berth.toml; a profile
//! edit is applied like any drift). Events are debounced (100 ms of quiet: the events of one `docker rm -f` come within a few ms), then one converge
//! runs: the same `apply`, under the same run lock, with the same report, metrics and journal.
//! berth's own actions raise events too; they bring one more converge, which finds nothing and
//! ends the chain. An object that keeps drifting (a container in a crash loop) gets at most a
//! few converges a minute, then a warning and the timer's pace.
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
use sources::{DockerEvents, FileWatch, Targets};
use state::WatchState;

/// How `berth watch` paces itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Quiet time after the last event before a converge.
    pub(crate) debounce: Duration,
    /// Converges one object may cause in a minute before it is left to the timer.
    pub(crate) heals_per_minute: usize,
}

/// What the main loop hears.
pub(crate) enum Event {
    Changed { what: String, at: Instant },
    Signal(Signal),
}

impl Event {
    fn changed(what: String) -> Self {
        Self::Changed {
            what,
            at: Instant::now(),
        }
    }
}

/// One converge, as `apply` runs it: its exit code, and whether it changed anything.
pub(crate) type Converge<'a> = dyn Fn(&Settings, &Printer) -> Result<(u8, bool)> + 'a;

pub(crate) fn run(
    settings: &Settings,
    printer: &Printer,
    pace: Pace,
    converge: &Converge,
) -> Result<u8> {
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(signal);
    }
    // Blocked before any thread starts, so every thread inherits it and only `wait` takes them.
    signals
        .thread_block()
        .context("failed to take over SIGTERM and SIGHUP")?;
    let (sender, events) = mpsc::channel::<Event>();
    let signal_sender = sender.clone();
    let systemd = Arc::new(Notifier::from_env());
    let told_stopping = Arc::clone(&systemd);
    std::thread::Builder::new()
        .name("berth-signals".into())
        .spawn(move || {
            while let Ok(signal) = signals.wait() {
                if signal != Signal::SIGHUP {
                    // The engine stops after the step it is in, which may be an hour's drain:
                    // systemd hears now that it is stopping.
                    engine::request_stop();
                    told_stopping.stopping();
                }
                if signal_sender.send(Event::Signal(signal)).is_err() {
                    return;
                }
            }
        })
        .context("failed to start the signal thread")?;

    let host = &settings.host;
    let mut state = WatchState::started(std::process::id());
    let targets = Arc::new(Mutex::new(targets_of(settings).unwrap_or_default()));
    let files = FileWatch::start(Arc::clone(&targets), sender.clone())?;
    sources::hygiene_timer(
        Arc::clone(&targets),
        sender.clone(),
        sources::HYGIENE_PERIOD,
    )?;
    let docker = DockerEvents::start("docker".to_owned(), Arc::clone(&targets), sender);
    tracing::info!("watching: converging once, then on every drift");
    systemd.ready("watching; converging once");
    let mut limiter = Limiter::new(pace.heals_per_minute);
    let mut pending: Option<Instant> = Some(Instant::now());
    let mut stopping = false;
    loop {
        if let Some(since) = pending.take() {
            systemd.status(&run_one(settings, printer, converge, &mut state, since));
            if let Ok(now) = targets_of(settings) {
                files.refresh(&now);
                *targets.lock().expect("targets") = now;
            }
        }
        if stopping || engine::stop_requested() {
            break;
        }
        // Wait for news, then for quiet.
        let Ok(first) = events.recv() else { break };
        let mut heard = vec![first];
        while let Ok(more) = events.recv_timeout(pace.debounce) {
            heard.push(more);
        }
        let mut reasons = BTreeSet::new();
        for event in heard {
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
                Event::Changed { what, at } => {
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
    docker.stop();
    WatchState::remove(host)?;
    Ok(crate::cli::exit::OK)
}

/// One converge, recorded in the watch state: a heal when it changed something. Returns what
/// `systemctl status` should say of it.
fn run_one(
    settings: &Settings,
    printer: &Printer,
    converge: &Converge,
    state: &mut WatchState,
    since: Instant,
) -> String {
    let outcome = converge(settings, printer);
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
    status
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
    let profile = resource::profile::load(&settings.profiles, host)?;
    let mut files = BTreeSet::new();
    files.insert(host.path(&profile.docker.config));
    if profile.runner.is_declared() {
        files.insert(host.path(&profile.runner.config));
    }
    for module in &profile.kernel_modules {
        files.insert(host.path(&KernelModule::new(module.clone()).persistence_file()));
    }
    files.insert(host.path(&host_path(HOST_CONFIG)));
    for profile_ref in &settings.profiles {
        files.insert(match profile_ref {
            ProfileRef::Name(name) => {
                host.path(&host_path(PROFILE_DIR).join(format!("{name}.toml")))
            }
            ProfileRef::HostFile(path) => host.path(path),
            ProfileRef::LocalFile(path) => {
                std::path::absolute(path).unwrap_or_else(|_| path.clone())
            }
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
}
