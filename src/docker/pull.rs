//! `docker pull`, which can take half an hour, with progress: on a terminal the CLI's own
//! progress bars (its stdout sent to berth's stderr, which stays free for the result); without
//! one (the timer, a pipe) one log line every interval counting the layers the CLI reported
//! done. Without a terminal the CLI prints one line per layer and state (`a3ed95caeb02: Pull
//! complete`) and leaves out the byte counts, so the line counts layers, not megabytes.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, IsTerminal},
    os::fd::AsFd,
    sync::mpsc,
    time::{Duration, Instant},
};

use super::Docker;
use crate::{
    host::exec::{self, CommandError, CommandLine, Output},
    output::progress::Ticker,
};

/// Pulls `image` within `timeout`, showing progress on stderr.
pub(crate) fn pull(docker: &Docker, image: &str, timeout: Duration) -> Result<(), CommandError> {
    let command = docker.command(["pull", image]);
    let output = if std::io::stderr().is_terminal() {
        on_terminal(&command, timeout)?
    } else {
        counting_layers(&command, image, timeout)?
    };
    exec::checked(&command, output).map(drop)
}

/// The CLI draws its bars on berth's stderr; its errors are kept for the message.
fn on_terminal(command: &CommandLine, timeout: Duration) -> Result<Output, CommandError> {
    let spawn_error = |source| CommandError::Spawn {
        command: command.to_string(),
        source,
    };
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(spawn_error)?;
    let handle = duct::cmd(&command.program, &command.args)
        .stdin_null()
        .stdout_file(stderr)
        .stderr_capture()
        .unchecked()
        .start()
        .map_err(|source| exec::spawn_error(command, source))?;
    match handle.wait_timeout(timeout).map_err(spawn_error)? {
        Some(output) => Ok(Output {
            code: output.status.code(),
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
        None => {
            let _ = handle.kill();
            Err(CommandError::TimedOut {
                command: command.to_string(),
                timeout,
            })
        }
    }
}

/// Reads the CLI's lines as they come and logs "pulling IMAGE: N/M layers" every interval.
fn counting_layers(
    command: &CommandLine,
    image: &str,
    timeout: Duration,
) -> Result<Output, CommandError> {
    let reader = duct::cmd(&command.program, &command.args)
        .stdin_null()
        .stderr_capture()
        .unchecked()
        .reader()
        .map_err(|source| exec::spawn_error(command, source))?;
    let started = Instant::now();
    let mut ticker = Ticker::since(started);
    let mut progress = PullProgress::default();
    let (lines, received) = mpsc::channel::<String>();
    std::thread::scope(|scope| {
        let reader = &reader;
        scope.spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                // The reading thread ends with the killed program's pipe.
                let _ = reader.kill();
                return Err(CommandError::TimedOut {
                    command: command.to_string(),
                    timeout,
                });
            }
            match received.recv_timeout(left.min(ticker.until_due())) {
                Ok(line) => progress.feed(&line),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if let Some(elapsed) = ticker.due() {
                tracing::info!("{}", progress.line(image, elapsed, timeout));
            }
        }
        Ok(())
    })?;
    let output = reader.try_wait().ok().flatten().map(|output| Output {
        code: output.status.code(),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    });
    output.ok_or_else(|| CommandError::Spawn {
        command: command.to_string(),
        source: std::io::Error::other("the program's output ended but it did not exit"),
    })
}

/// The layers a non-terminal `docker pull` reported, and which are done.
#[derive(Debug, Default)]
pub(crate) struct PullProgress {
    /// Layer ID → done (pulled, or already on the host).
    layers: BTreeMap<String, bool>,
}

impl PullProgress {
    /// Takes one line of the CLI's output: `<12 hex digits>: <state>` lines name a layer;
    /// the rest (`1.0: Pulling from library/busybox`, `Digest: …`, `Status: …`) do not.
    pub(crate) fn feed(&mut self, line: &str) {
        let Some((id, state)) = line.trim().split_once(": ") else {
            return;
        };
        if id.len() != 12 || !id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return;
        }
        let done = matches!(state.trim(), "Pull complete" | "Already exists");
        *self.layers.entry(id.to_owned()).or_default() |= done;
    }

    /// "pulling docker:27-dind: 3/7 layers (40 s of 1800 s)".
    pub(crate) fn line(&self, image: &str, elapsed: Duration, limit: Duration) -> String {
        let done = self.layers.values().filter(|done| **done).count();
        let layers = if self.layers.is_empty() {
            String::new()
        } else {
            format!(": {done}/{} layers", self.layers.len())
        };
        format!(
            "pulling {image}{layers} ({} s of {} s)",
            elapsed.as_secs(),
            limit.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docker pull docker:27-dind > log` (Docker 26 CLI, no terminal), cut while it ran.
    const RECORDED: &str = "\
27-dind: Pulling from library/docker
a258b2a6b59a: Already exists
5b4ae2e5e3f5: Pulling fs layer
0d3e9d5f0e53: Pulling fs layer
0b6a1d3f5a11: Pulling fs layer
5b4ae2e5e3f5: Verifying Checksum
5b4ae2e5e3f5: Download complete
0d3e9d5f0e53: Waiting
5b4ae2e5e3f5: Pull complete
0b6a1d3f5a11: Download complete
";

    #[test]
    fn counts_the_layers_done_of_those_reported() {
        let mut progress = PullProgress::default();
        for line in RECORDED.lines() {
            progress.feed(line);
        }
        let limit = Duration::from_secs(1800);
        assert_eq!(
            progress.line("docker:27-dind", Duration::from_secs(40), limit),
            "pulling docker:27-dind: 2/4 layers (40 s of 1800 s)"
        );
        for line in ["0d3e9d5f0e53: Pull complete", "0b6a1d3f5a11: Pull complete"] {
            progress.feed(line);
        }
        progress.feed("Digest: sha256:0123456789abcdef");
        progress.feed("Status: Downloaded newer image for docker:27-dind");
        assert_eq!(
            progress.line("docker:27-dind", Duration::from_secs(50), limit),
            "pulling docker:27-dind: 4/4 layers (50 s of 1800 s)"
        );
    }

    #[test]
    fn before_the_first_layer_it_says_how_long() {
        assert_eq!(
            PullProgress::default().line(
                "busybox:1",
                Duration::from_secs(10),
                Duration::from_secs(60)
            ),
            "pulling busybox:1 (10 s of 60 s)"
        );
    }
}
