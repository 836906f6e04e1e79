//! An image pull through the Engine API (`POST /images/create`), which can take half an hour,
//! with its progress read from the pull's JSON stream and shown on stderr, each layer's many
//! messages collapsed into counts: on a terminal one line redrawn in place ("pulling IMAGE: 2/4
//! layers, 12.3 of 45.0 MB"); without one (the timer, a pipe) one log line every interval, as
//! every long wait says how far it got. The registry credentials are the CLI's
//! ([`super::credentials`]). An error inside the stream (`manifest unknown`, a registry that
//! cannot be reached) fails the pull with Docker's words.

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write as _},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{Docker, engine::image::PullStep};
use crate::output::progress::Ticker;

/// How often the terminal's line is redrawn, at most.
const REDRAW: Duration = Duration::from_millis(100);

/// Pulls `image` within `timeout`, showing progress on stderr.
pub(crate) fn pull(docker: &Docker, image: &str, timeout: Duration) -> Result<()> {
    pull_with(docker.engine(), image, timeout)
}

/// [`pull`] through `engine`.
pub(crate) fn pull_with(
    engine: &super::engine::Engine,
    image: &str,
    timeout: Duration,
) -> Result<()> {
    let credentials = super::credentials::for_image(image)
        .with_context(|| format!("failed to read the registry credentials for `{image}`"))?;
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut ticker = Ticker::since(started);
    let mut progress = PullProgress::default();
    let mut drawn: Option<Instant> = None;
    let pulled = engine.pull(image, credentials, timeout, |step| {
        if let Some(step) = step {
            progress.feed(step);
        }
        if terminal {
            if drawn.is_none_or(|at| at.elapsed() >= REDRAW) {
                drawn = Some(Instant::now());
                let mut stderr = std::io::stderr().lock();
                let _ = write!(stderr, "\r\x1b[K{}", progress.summary(image));
                let _ = stderr.flush();
            }
        } else if let Some(elapsed) = ticker.due() {
            tracing::info!("{}", progress.line(image, elapsed, timeout));
        }
    });
    if terminal && drawn.is_some() {
        // The last state stays on the screen, on a line of its own.
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "\r\x1b[K{}", progress.summary(image));
    }
    Ok(pulled?)
}

/// The layers a pull's stream reported, which are done, and the bytes downloaded.
#[derive(Debug, Default)]
pub(crate) struct PullProgress {
    /// Layer ID → what is known of it.
    layers: BTreeMap<String, LayerProgress>,
}

#[derive(Debug, Default, Clone, Copy)]
struct LayerProgress {
    /// Pulled, or already on the host.
    done: bool,
    /// Bytes downloaded, of `total` (known once it downloads).
    current: u64,
    total: u64,
}

impl PullProgress {
    /// Takes one message of the stream: those with a layer ID (12 hex digits) name a layer;
    /// the rest (`Pulling from library/busybox`, `Digest: …`, `Status: …`) do not.
    pub(crate) fn feed(&mut self, step: &PullStep) {
        let Some(id) = step.layer.as_deref() else {
            return;
        };
        if id.len() != 12 || !id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return;
        }
        let layer = self.layers.entry(id.to_owned()).or_default();
        match step.status.trim() {
            "Pull complete" | "Already exists" => {
                layer.done = true;
                layer.current = layer.total;
            }
            "Downloading" => {
                layer.total = step.total.unwrap_or(layer.total);
                layer.current = step.current.unwrap_or(layer.current).min(layer.total);
            }
            "Download complete" => layer.current = layer.total,
            _ => {}
        }
    }

    /// "pulling docker:27-dind: 3/7 layers, 12.3 of 45.0 MB": the terminal's line.
    pub(crate) fn summary(&self, image: &str) -> String {
        let done = self.layers.values().filter(|layer| layer.done).count();
        if self.layers.is_empty() {
            return format!("pulling {image}");
        }
        let total: u64 = self.layers.values().map(|layer| layer.total).sum();
        let current: u64 = self.layers.values().map(|layer| layer.current).sum();
        let bytes = if total == 0 {
            String::new()
        } else {
            format!(", {} of {} MB", megabytes(current), megabytes(total))
        };
        format!(
            "pulling {image}: {done}/{} layers{bytes}",
            self.layers.len()
        )
    }

    /// "pulling docker:27-dind: 3/7 layers (40 s of 1800 s)".
    pub(crate) fn line(&self, image: &str, elapsed: Duration, limit: Duration) -> String {
        let done = self.layers.values().filter(|layer| layer.done).count();
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

/// Bytes as MB with one decimal, as Docker's own progress counts them (decimal units).
fn megabytes(bytes: u64) -> String {
    format!("{}.{}", bytes / 1_000_000, bytes % 1_000_000 / 100_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(layer: &str, status: &str, bytes: Option<(u64, u64)>) -> PullStep {
        PullStep {
            layer: Some(layer.to_owned()),
            status: status.to_owned(),
            current: bytes.map(|(current, _)| current),
            total: bytes.map(|(_, total)| total),
        }
    }

    /// The messages of a `POST /images/create` of docker:27-dind, cut while it ran.
    fn recorded() -> Vec<PullStep> {
        vec![
            step("27-dind", "Pulling from library/docker", None),
            step("a258b2a6b59a", "Already exists", None),
            step("5b4ae2e5e3f5", "Pulling fs layer", None),
            step("0d3e9d5f0e53", "Pulling fs layer", None),
            step("0b6a1d3f5a11", "Pulling fs layer", None),
            step("5b4ae2e5e3f5", "Downloading", Some((1_000_000, 2_000_000))),
            step("5b4ae2e5e3f5", "Verifying Checksum", None),
            step("5b4ae2e5e3f5", "Download complete", None),
            step("0d3e9d5f0e53", "Waiting", None),
            step("5b4ae2e5e3f5", "Pull complete", None),
            step("0b6a1d3f5a11", "Downloading", Some((250_000, 10_500_000))),
        ]
    }

    #[test]
    fn counts_the_layers_done_of_those_reported_and_the_bytes_downloaded() {
        let mut progress = PullProgress::default();
        for step in recorded() {
            progress.feed(&step);
        }
        let limit = Duration::from_secs(1800);
        assert_eq!(
            progress.line("docker:27-dind", Duration::from_secs(40), limit),
            "pulling docker:27-dind: 2/4 layers (40 s of 1800 s)"
        );
        assert_eq!(
            progress.summary("docker:27-dind"),
            "pulling docker:27-dind: 2/4 layers, 2.2 of 12.5 MB"
        );
        for layer in ["0d3e9d5f0e53", "0b6a1d3f5a11"] {
            progress.feed(&step(layer, "Pull complete", None));
        }
        progress.feed(&PullStep {
            status: "Status: Downloaded newer image for docker:27-dind".to_owned(),
            ..PullStep::default()
        });
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
        assert_eq!(
            PullProgress::default().summary("busybox:1"),
            "pulling busybox:1"
        );
    }
}
