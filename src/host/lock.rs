//! One `berth apply` at a time per host: an exclusive `flock` on `<root>/run/berth.lock`, held
//! for the whole run and released by the kernel when the process exits, however it exits (a
//! crashed run never leaves a stale lock). The holder writes its pid and start time into the
//! file so that a run that has to give up can say who is in the way.

use std::{
    io::{Read, Seek, Write},
    os::unix::fs::OpenOptionsExt,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};

use crate::host::{Host, host_path};

pub(crate) const LOCK_FILE: &str = "/run/berth.lock";

/// How often a waiting run tries the lock again.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Held while it lives.
pub(crate) struct RunLock {
    _lock: Flock<std::fs::File>,
}

impl RunLock {
    /// Takes the lock, waiting up to `timeout` for another run to finish.
    pub(crate) fn acquire(host: &Host, timeout: Duration) -> Result<Self> {
        let path = host_path(LOCK_FILE);
        let full = host.path(&path);
        if let Some(parent) = path.parent() {
            host.ensure_dir(&parent, 0o755)?;
        }
        let deadline = Instant::now() + timeout;
        let mut logged = false;
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(&full)
                .with_context(|| format!("failed to open the lock file `{path}`"))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut lock) => {
                    record_holder(&mut lock)
                        .with_context(|| format!("failed to write `{path}`"))?;
                    return Ok(Self { _lock: lock });
                }
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    let holder = read_holder(&mut file);
                    if Instant::now() >= deadline {
                        bail!(
                            "another berth run {holder} did not finish; waited {} s for it",
                            timeout.as_secs()
                        );
                    }
                    if !logged {
                        tracing::info!("waiting for another berth run {holder}");
                        logged = true;
                    }
                    std::thread::sleep(RETRY_INTERVAL);
                }
                Err((_, errno)) => {
                    return Err(std::io::Error::from(errno))
                        .with_context(|| format!("failed to lock `{path}`"));
                }
            }
        }
    }
}

fn record_holder(file: &mut std::fs::File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(
        file,
        "{} {}",
        std::process::id(),
        jiff::Timestamp::now().as_second()
    )?;
    file.sync_all()
}

/// "(pid 1234, holding the lock since 18:31:02)", as far as the file tells.
fn read_holder(file: &mut std::fs::File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    let mut words = text.split_whitespace();
    let pid = words.next().filter(|pid| pid.parse::<u32>().is_ok());
    let since = words
        .next()
        .and_then(|seconds| seconds.parse::<i64>().ok())
        .and_then(|seconds| jiff::Timestamp::from_second(seconds).ok())
        .map(|started| {
            started
                .to_zoned_datetime(jiff::tz::TimeZone::system())
                .strftime("%H:%M:%S")
                .to_string()
        });
    match (pid, since) {
        (Some(pid), Some(since)) => format!("(pid {pid}, holding the lock since {since})"),
        (Some(pid), None) => format!("(pid {pid}, holding the lock)"),
        _ => "(holding the lock)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_then_names_the_holder() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        let _held = RunLock::acquire(&host, Duration::ZERO).unwrap();
        let error = RunLock::acquire(&host, Duration::from_millis(300))
            .err()
            .unwrap();
        let message = error.to_string();
        let expected = format!(
            "another berth run (pid {}, holding the lock since ",
            std::process::id()
        );
        assert!(message.starts_with(&expected), "{message}");
        assert!(
            message.ends_with(") did not finish; waited 0 s for it"),
            "{message}"
        );
    }

    #[test]
    fn the_lock_is_free_again_once_dropped() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        drop(RunLock::acquire(&host, Duration::ZERO).unwrap());
        RunLock::acquire(&host, Duration::ZERO).unwrap();
    }
}
