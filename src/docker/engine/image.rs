//! Images and what a daemon holds on its disk, through the Engine API (issue 24): a pull with
//! its progress (`POST /images/create`), an image's removal (`DELETE /images/ID`), the build
//! cache's prune (`POST /build/prune`), and [`Engine::read_bounded`], a `GET` whose answer is
//! read up to a limit and handed back as bytes, for what hygiene asks of the host's daemon.
//!
//! Why the raw `GET`: bollard 0.21's models are API 1.53's, and some answers changed shape since
//! Engine 20.10 (API 1.41): `GET /system/df` then said `Images`, `Volumes` and `BuildCache` at
//! the top, where bollard's model reads `ImageUsage` and friends, and would read nothing. The
//! hygiene answers are parsed by berth's own types instead (`usage.rs`, the JSON a `docker
//! inspect` prints), from bytes read bounded, since a job controls the tags, labels and names
//! in them.

use std::time::{Duration, Instant};

use bollard::{
    auth::DockerCredentials,
    errors::Error as BollardError,
    query_parameters::{CreateImageOptions, PruneBuildOptions, RemoveImageOptions},
};
use futures_util::StreamExt as _;

use super::{Engine, EngineError};

/// The first API version whose `POST /build/prune` says `reserved-space` where older ones said
/// `keep-storage` (Engine 28).
const RESERVED_SPACE_SINCE: (usize, usize) = (1, 48);

/// One message of a pull's progress stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PullStep {
    /// The layer it is about (12 hex digits), when it is about one.
    pub layer: Option<String>,
    /// `Pulling fs layer`, `Downloading`, `Pull complete`, `Digest: …`, `Status: …`.
    pub status: String,
    /// Bytes of the layer downloaded so far, and of the whole layer, while it downloads.
    pub current: Option<u64>,
    pub total: Option<u64>,
}

/// Why a pull did not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PullError {
    /// Docker refused it, in its own words: inside the stream (`manifest unknown`, a registry
    /// that cannot be reached) or as the answer to the request.
    #[error("{0}")]
    Refused(String),
    #[error("the pull did not finish within {} s", .0.as_secs())]
    TimedOut(Duration),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Why a bounded `GET` gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("`GET {path}` answered more than {limit} bytes; berth stopped reading")]
    TooLong { path: String, limit: u64 },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Engine {
    /// `POST /images/create` of `image` (`name:tag`, `name@digest`, or a name alone, which is
    /// `:latest` as the CLI has it), with `credentials` as the `X-Registry-Auth` header the CLI
    /// sends. Each message of the progress stream goes to `heard`, which is also called with
    /// `None` at least once a second while the stream is quiet, so that the caller can say how
    /// far it got. Ends within `timeout`, a stalled stream too.
    pub(crate) fn pull(
        &self,
        image: &str,
        credentials: Option<DockerCredentials>,
        timeout: Duration,
        mut heard: impl FnMut(Option<&PullStep>),
    ) -> Result<(), PullError> {
        let started = Instant::now();
        // A pull may take many minutes before its first byte: the client's own timeout (the
        // query timeout) must not cut it; the deadline below ends it instead.
        let client = self.client()?.with_timeout(timeout);
        let (name, tag) = reference_parts(image);
        let options = CreateImageOptions {
            from_image: Some(name.to_owned()),
            tag: Some(tag.to_owned()),
            ..CreateImageOptions::default()
        };
        tracing::debug!(
            "asking the Docker daemon at {}: `POST /images/create`",
            self.address.host
        );
        let mut stream = std::pin::pin!(client.create_image(Some(options), None, credentials));
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(PullError::TimedOut(timeout));
            }
            let wait = left.min(Duration::from_secs(1));
            let next = self
                .runtime
                .block_on(async { tokio::time::timeout(wait, stream.next()).await });
            match next {
                Err(_) => heard(None),
                Ok(None) => return Ok(()),
                Ok(Some(Ok(info))) => {
                    let detail = info.progress_detail.unwrap_or_default();
                    let step = PullStep {
                        layer: info.id,
                        status: info.status.unwrap_or_default(),
                        current: detail.current.and_then(|bytes| u64::try_from(bytes).ok()),
                        total: detail.total.and_then(|bytes| u64::try_from(bytes).ok()),
                    };
                    heard(Some(&step));
                }
                Ok(Some(Err(error))) => return Err(self.pull_error(error)),
            }
        }
    }

    fn pull_error(&self, error: BollardError) -> PullError {
        match error {
            BollardError::DockerStreamError { error } => PullError::Refused(error),
            BollardError::RequestTimeoutError => PullError::Engine(EngineError::Hung {
                what: "`POST /images/create`".to_owned(),
                timeout: self.timeout,
            }),
            other => match self.error(other) {
                EngineError::NotFound(message)
                | EngineError::Conflict(message)
                | EngineError::Daemon { message, .. } => PullError::Refused(message),
                other => PullError::Engine(other),
            },
        }
    }

    /// `DELETE /images/ID`, forced when `force` (an image tagged twice goes with its tags).
    pub(crate) fn remove_image(&self, id: &str, force: bool) -> Result<(), EngineError> {
        let options = RemoveImageOptions {
            force,
            ..RemoveImageOptions::default()
        };
        self.ask("`DELETE /images/…`", |client| async move {
            client.remove_image(id, Some(options), None).await.map(drop)
        })
    }

    /// `POST /build/prune?all=true` down to `keep` bytes of cache, as `docker builder prune
    /// --all --force --keep-storage KEEP` asked it: `keep-storage` up to API 1.47 (bollard's
    /// options no longer have it, so it is added to the query), `reserved-space` from 1.48.
    pub(crate) fn prune_build_cache(&self, keep: u64) -> Result<(), EngineError> {
        let client = self.client()?;
        let version = client.client_version();
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let reserved = (version.major_version, version.minor_version) >= RESERVED_SPACE_SINCE;
        let options = PruneBuildOptions {
            all: Some(true),
            reserved_space: reserved.then_some(keep),
            ..PruneBuildOptions::default()
        };
        let client = if reserved {
            client
        } else {
            client.with_request_modifier(move |mut request| {
                let query = format!("{}&keep-storage={keep}", request.uri());
                if let Ok(uri) = query.parse() {
                    *request.uri_mut() = uri;
                }
                request
            })
        };
        self.block_on("`POST /build/prune`", async move {
            client.prune_build(Some(options)).await.map(drop)
        })
    }

    /// `GET path` (with its query), its answer read up to `limit` bytes. bollard has no request
    /// of its own for an arbitrary path, so this rides on one whose answer it streams back as
    /// bytes (an image export) with the path swapped before it is sent: the daemon sees exactly
    /// `GET path`.
    pub(crate) fn read_bounded(&self, path: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        let target = path.to_owned();
        let client = self.client()?.with_request_modifier(move |mut request| {
            let uri = request.uri();
            let swapped = format!(
                "{}://{}{target}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map_or("", |authority| authority.as_str()),
            );
            if let Ok(uri) = swapped.parse() {
                *request.uri_mut() = uri;
            }
            request
        });
        let what = format!("`GET {}`", path.split('?').next().unwrap_or(path));
        let answer = self.block_on(&what, async move {
            let mut body = std::pin::pin!(client.export_image("berth"));
            let mut kept = Vec::new();
            while let Some(chunk) = body.next().await {
                kept.extend_from_slice(&chunk?);
                if kept.len() as u64 > limit {
                    return Ok(None);
                }
            }
            Ok(Some(kept))
        })?;
        answer.ok_or_else(|| ReadError::TooLong {
            path: path.to_owned(),
            limit,
        })
    }
}

/// `fromImage` and `tag` as the CLI sends them: `name@sha256:…` → (`name`, `sha256:…`),
/// `name:tag` → (`name`, `tag`), a name alone → `latest` (an empty tag would pull every tag).
pub(crate) fn reference_parts(image: &str) -> (&str, &str) {
    let (named, digest) = match image.split_once('@') {
        Some((named, digest)) => (named, Some(digest)),
        None => (image, None),
    };
    // A `:` before the last `/` is a registry's port, not a tag.
    let last_part = named.rfind('/').map_or(0, |slash| slash + 1);
    let (name, tag) = match named[last_part..].rfind(':') {
        Some(colon) => (&named[..last_part + colon], &named[last_part + colon + 1..]),
        None => (named, "latest"),
    };
    (name, digest.unwrap_or(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::{
        io::Write as _,
        sync::{Arc, Mutex},
    };

    /// A daemon of API `version` at a socket of the test's own: it answers each request by
    /// its path with `answer(path)` and keeps every request line it was sent.
    fn fake_daemon(
        dir: &std::path::Path,
        version: &'static str,
        answer: fn(&str) -> (u16, String),
    ) -> (Engine, Arc<Mutex<Vec<String>>>) {
        let socket = dir.join("docker.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&asked);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let head = super::super::tests::read_head(&mut stream);
                let line = head.lines().next().unwrap_or_default().to_owned();
                let path = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let (status, body) = if path.ends_with("/version") {
                    (
                        200,
                        format!(r#"{{"ApiVersion":"{version}","Version":"x"}}"#),
                    )
                } else {
                    kept.lock().unwrap().push(line);
                    answer(&path)
                };
                if body == STALL {
                    // Headers, one message, then nothing: a registry that stopped sending.
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    );
                    let message = r#"{"status":"Pulling fs layer","id":"0123456789ab"}"#;
                    let _ = write!(stream, "{:x}\r\n{message}\n\r\n", message.len() + 1);
                    std::thread::sleep(Duration::from_secs(30));
                    continue;
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let host = format!("unix://{}", socket.display());
        let engine = Engine::at(
            super::super::Address::from_env(|key| (key == "DOCKER_HOST").then(|| host.clone())),
            Duration::from_secs(5),
        );
        (engine, asked)
    }

    #[test]
    fn the_build_cache_is_pruned_down_to_keep_in_the_daemons_own_words() {
        let pruned = |_: &str| (200, r#"{"SpaceReclaimed":0}"#.to_owned());
        for (version, keep) in [
            ("1.41", "keep-storage=1000"),
            ("1.48", "reserved-space=1000"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (engine, asked) = fake_daemon(dir.path(), version, pruned);
            engine.prune_build_cache(1000).unwrap();
            let asked = asked.lock().unwrap().clone();
            assert_eq!(asked.len(), 1, "{asked:?}");
            assert!(
                asked[0].starts_with("POST /build/prune?")
                    && asked[0].contains("all=true")
                    && asked[0].contains(keep),
                "API {version}: {asked:?}"
            );
        }
    }

    #[test]
    fn an_error_inside_the_pull_stream_fails_it_in_dockers_words() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, asked) = fake_daemon(dir.path(), "1.41", |_| {
            (
                200,
                concat!(
                    r#"{"status":"Pulling from team/app","id":"1"}"#,
                    "\n",
                    r#"{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}"#,
                    "\n"
                )
                .to_owned(),
            )
        });
        let mut heard = Vec::new();
        let error = engine
            .pull(
                "registry:5000/team/app:1",
                None,
                Duration::from_secs(5),
                |step| {
                    heard.extend(step.cloned());
                },
            )
            .unwrap_err();
        assert_eq!(error.to_string(), "manifest unknown");
        assert_eq!(heard[0].status, "Pulling from team/app");
        let asked = asked.lock().unwrap().clone();
        assert!(
            asked[0]
                .starts_with("POST /images/create?fromImage=registry%3A5000%2Fteam%2Fapp&tag=1"),
            "{asked:?}"
        );
    }

    /// What [`fake_daemon`]'s answer says for a stream that stalls.
    const STALL: &str = "stall";

    #[test]
    fn a_stalled_pull_ends_at_its_deadline_having_said_what_it_heard() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = fake_daemon(dir.path(), "1.41", |_| (200, STALL.to_owned()));
        let started = Instant::now();
        let mut steps = 0;
        let mut quiet = 0;
        let error = engine
            .pull("app:1", None, Duration::from_secs(2), |step| match step {
                Some(_) => steps += 1,
                None => quiet += 1,
            })
            .unwrap_err();
        assert!(matches!(error, PullError::TimedOut(_)), "{error}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(steps, 1);
        assert!(quiet >= 1, "the caller heard from it while it was quiet");
    }

    #[test]
    fn a_bounded_read_stops_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, asked) = fake_daemon(dir.path(), "1.41", |_| (200, "x".repeat(5000)));
        let error = engine.read_bounded("/system/df", 4096).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`GET /system/df` answered more than 4096 bytes; berth stopped reading"
        );
        assert_eq!(engine.read_bounded("/system/df", 8192).unwrap().len(), 5000);
        assert!(
            asked
                .lock()
                .unwrap()
                .iter()
                .all(|line| line.starts_with("GET /system/df ")),
            "the daemon is asked exactly what was meant: {asked:?}"
        );
    }

    #[test]
    fn a_reference_is_split_as_the_cli_splits_it() {
        for (image, parts) in [
            ("busybox", ("busybox", "latest")),
            ("busybox:1.36", ("busybox", "1.36")),
            (
                "registry:5000/team/app",
                ("registry:5000/team/app", "latest"),
            ),
            ("registry:5000/team/app:2", ("registry:5000/team/app", "2")),
            ("app@sha256:abc", ("app", "sha256:abc")),
            ("app:1@sha256:abc", ("app", "sha256:abc")),
        ] {
            assert_eq!(reference_parts(image), parts, "{image}");
        }
    }
}
