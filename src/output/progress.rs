//! What berth says while it waits on a step that can take long (a daemon restart, a container
//! draining its jobs, an image pull), so a run is never silent for minutes: one line on stderr
//! every [`PROGRESS_INTERVAL`], through the log (plain journal lines under the timer), as
//! Terraform's "Still creating... [10s elapsed]".

use std::time::{Duration, Instant};

use crate::host::exec;

/// How often a long wait says how far it got.
pub(crate) const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Tells when the next progress line is due, from when the wait began.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticker {
    started: Instant,
    next: Duration,
}

impl Ticker {
    /// A ticker for a wait that began at `started` and has said how far it got up to now: the
    /// next line is due at the next interval (a second phase of one wait).
    pub(crate) fn resumed(started: Instant) -> Self {
        let mut ticker = Self::since(started);
        let _ = ticker.due();
        ticker
    }

    /// A ticker for a wait that began at `started`.
    pub(crate) fn since(started: Instant) -> Self {
        Self {
            started,
            next: PROGRESS_INTERVAL,
        }
    }

    /// How long the wait has lasted, when a line is due (at most once per interval).
    pub(crate) fn due(&mut self) -> Option<Duration> {
        let elapsed = self.started.elapsed();
        if elapsed < self.next {
            return None;
        }
        while self.next <= elapsed {
            self.next += PROGRESS_INTERVAL;
        }
        Some(elapsed)
    }
}

/// A closure given to [`exec::run_reporting`] is told how far the program got once per
/// [`PROGRESS_INTERVAL`], like every other long wait.
impl<F: FnMut(Duration)> exec::Progress for F {
    fn interval(&self) -> Duration {
        PROGRESS_INTERVAL
    }

    fn report(&mut self, elapsed: Duration) {
        self(elapsed);
    }
}

/// "waiting for dockerd (12 s of 60 s)".
pub(crate) fn waiting(what: &str, elapsed: Duration, limit: Duration) -> String {
    format!(
        "waiting for {what} ({} s of {} s)",
        elapsed.as_secs(),
        limit.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_due_once_per_interval() {
        let mut ticker = Ticker::since(Instant::now() - Duration::from_secs(25));
        assert_eq!(ticker.due().map(|elapsed| elapsed.as_secs()), Some(25));
        assert_eq!(ticker.due(), None, "the next one is due at 30 s");
        assert!(Ticker::since(Instant::now()).due().is_none());
        let started = Instant::now() - Duration::from_secs(12);
        assert!(
            Ticker::resumed(started).due().is_none(),
            "10 s was said already"
        );
    }

    #[test]
    fn the_line_says_what_and_how_long() {
        assert_eq!(
            waiting(
                "dockerd",
                Duration::from_millis(12_400),
                Duration::from_secs(60)
            ),
            "waiting for dockerd (12 s of 60 s)"
        );
    }
}
