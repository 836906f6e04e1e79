//! berth's client of the Docker Engine API (issue 24): bollard over the daemon's socket, driven
//! by one small current-thread tokio runtime this client owns, so that the rest of berth stays
//! synchronous (every call is a `block_on` here; nothing async leaks out). It connects as the
//! `docker` CLI does (`DOCKER_HOST` unix:// or tcp://, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`,
//! else `/var/run/docker.sock`), negotiates the API version with the daemon once, and turns
//! Docker's failures into [`EngineError`]'s few cases, which callers branch on instead of text.
//!
//! What the daemon answers comes back as the JSON Docker itself speaks (bollard's models,
//! serialized again), so `wire.rs`'s types and a saved plan's identities read the same document
//! `docker inspect` printed. It knows no kind.
//!
//! Every answer is read bounded (transport.rs): a JSON answer at 64 MiB, a line of a stream
//! (an event, a pull's progress) at 1 MiB; past a cap the request fails with
//! [`EngineError::TooLarge`] and nothing more is read.

mod transport;

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant},
};

use bollard::{
    ClientVersion,
    errors::Error as BollardError,
    models::VolumeCreateRequest,
    query_parameters::{
        EventsOptions, InspectContainerOptions, InspectNetworkOptions, ListContainersOptions,
        ListNetworksOptions, ListVolumesOptions, RemoveVolumeOptions,
    },
};
use futures_util::{Stream, StreamExt as _};
use serde::Serialize;
use serde_json::Value as Json;
use tokio::runtime::Runtime;

mod container;
pub(crate) mod exec;
pub(crate) mod image;
mod network;
pub(crate) mod system;

/// The daemon the CLI talks to when `DOCKER_HOST` says nothing.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The newest API version berth asks for; an older daemon is spoken to in its own (the
/// negotiation lowers it, as the CLI's does). Engine 20.10 answers 1.41. bollard 0.21 in fact
/// sends its paths without the `/vX.Y` prefix (its URI joins an absolute path over it), so
/// each daemon answers in its own current version, as to `curl --unix-socket`; the
/// negotiation (one `GET /version` a run) keeps berth right should bollard send the prefix.
const NEWEST_API: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 53,
};

/// Why a request to the daemon got no answer berth can use.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineError {
    /// 404: the object does not exist (an answer, for an inspect).
    #[error("{0}")]
    NotFound(String),
    /// 409: a name in use, a container running that must be stopped first.
    #[error("{0}")]
    Conflict(String),
    /// Nothing listens at the address: no socket, connection refused, wrong `DOCKER_HOST`.
    #[error("Cannot connect to the Docker daemon at {host}. Is the docker daemon running?")]
    Down { host: String },
    /// The socket is there but this user may not use it (plan as non-root).
    #[error("permission denied while trying to connect to the Docker daemon socket at {host}")]
    PermissionDenied { host: String },
    /// The daemon takes the connection but does not answer in time (hung).
    #[error("{what} got no answer within {} s", timeout.as_secs())]
    Hung { what: String, timeout: Duration },
    /// Any other answer the daemon gave: its status and message.
    #[error("the Docker daemon answered {status}: {message}")]
    Daemon { status: u16, message: String },
    /// An answer, or one line of a streamed one, larger than berth reads: the request failed
    /// there, and nothing past the cap was read (a hostile label, a daemon gone wrong).
    #[error(
        "{} {what} is larger than {} MiB: berth stopped reading it",
        if *.stream { "a line of the stream" } else { "the answer to" },
        limit / (1024 * 1024)
    )]
    TooLarge {
        what: String,
        limit: u64,
        stream: bool,
    },
    /// Anything else (TLS, a body that is not the model, bad certificates).
    #[error("failed to ask the Docker daemon at {host}")]
    Other {
        host: String,
        #[source]
        source: BollardError,
    },
}

/// The daemon's address and how to reach it, as the CLI reads its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Address {
    host: String,
    /// `DOCKER_TLS_VERIFY` set (non-empty) on a tcp:// host: the certificates' directory.
    tls: Option<PathBuf>,
}

impl Address {
    fn from_env(get: impl Fn(&str) -> Option<String>) -> Self {
        let host = get("DOCKER_HOST")
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.to_owned());
        let verify = get("DOCKER_TLS_VERIFY").is_some_and(|value| !value.is_empty());
        let tls = (verify && host.starts_with("tcp://")).then(|| {
            // The CLI's default: its configuration directory.
            get("DOCKER_CERT_PATH")
                .filter(|path| !path.is_empty())
                .or_else(|| get("DOCKER_CONFIG").filter(|path| !path.is_empty()))
                .map_or_else(
                    || PathBuf::from(get("HOME").unwrap_or_default()).join(".docker"),
                    PathBuf::from,
                )
        });
        Self { host, tls }
    }
}

/// The API client: one runtime, and the connection negotiated on first use.
pub(crate) struct Engine {
    runtime: Runtime,
    address: Address,
    timeout: Duration,
    /// Negotiated once it first answers; a failed attempt is not kept, so a daemon that starts
    /// later (a restart berth waits for) is reached.
    client: Mutex<Option<bollard::Docker>>,
    /// Set by a connection that ran into its cap, read back by the request that failed.
    tripped: transport::Tripped,
    /// When the last negotiation gave up on a daemon that takes connections and never answers.
    hung_at: Mutex<Option<Instant>>,
}

impl Engine {
    /// A client of the daemon the environment names; connects on first use.
    pub(crate) fn from_env(timeout: Duration) -> Self {
        Self::at(Address::from_env(|key| std::env::var(key).ok()), timeout)
    }

    fn at(address: Address, timeout: Duration) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            // Only fails when the process cannot make an epoll descriptor or a thread at all.
            .expect("a tokio runtime for the Docker client");
        Self {
            runtime,
            address,
            timeout,
            client: Mutex::new(None),
            tripped: transport::Tripped::default(),
            hung_at: Mutex::new(None),
        }
    }

    fn client(&self) -> Result<bollard::Docker, EngineError> {
        let asked = Instant::now();
        let mut client = self.client.lock().expect("docker client");
        if let Some(client) = client.as_ref() {
            return Ok(client.clone());
        }
        // Questions asked side by side wait here for one negotiation: when it found the daemon
        // hung, they have their answer too, rather than a full timeout each in turn.
        let version = "`GET /version`";
        if self
            .hung_at
            .lock()
            .expect("hung")
            .is_some_and(|hung| hung >= asked)
        {
            return Err(EngineError::Hung {
                what: version.to_owned(),
                timeout: self.timeout,
            });
        }
        tracing::debug!("connecting to the Docker daemon at {}", self.address.host);
        let connected = self.connect()?;
        let negotiated = self
            .block_on(version, connected.negotiate_version())
            .inspect_err(|error| {
                if matches!(error, EngineError::Hung { .. }) {
                    *self.hung_at.lock().expect("hung") = Some(Instant::now());
                }
            })?;
        *client = Some(negotiated.clone());
        Ok(negotiated)
    }

    fn connect(&self) -> Result<bollard::Docker, EngineError> {
        let host = &self.address.host;
        let way = if let Some(path) = host.strip_prefix("unix://") {
            transport::Way::Unix(path.into())
        } else if let Some(address) = host.strip_prefix("tcp://") {
            let address = address.trim_end_matches('/');
            match &self.address.tls {
                Some(certs) => {
                    transport::Way::tls(address, certs).map_err(|error| self.error(error))?
                }
                None => transport::Way::Tcp(address.to_owned()),
            }
        } else {
            return Err(EngineError::Other {
                host: host.clone(),
                source: BollardError::UnsupportedURISchemeError { uri: host.clone() },
            });
        };
        let tripped = std::sync::Arc::clone(&self.tripped);
        // Every request, everyone's, goes through the capped transport.
        bollard::Docker::connect_with_custom_transport(
            move |request| transport::send(way.clone(), std::sync::Arc::clone(&tripped), request),
            Some("http://docker"),
            self.timeout.as_secs(),
            &NEWEST_API,
        )
        .map_err(|error| self.error(error))
    }

    /// Runs one request to its end, within the timeout.
    fn block_on<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, BollardError>>,
    ) -> Result<T, EngineError> {
        // What `-v` shows of each question, as it showed each `docker` command before.
        tracing::debug!("asking the Docker daemon at {}: {what}", self.address.host);
        self.untripped();
        self.runtime
            .block_on(async { tokio::time::timeout(self.timeout, request).await })
            .map_err(|_| EngineError::Hung {
                what: what.to_owned(),
                timeout: self.timeout,
            })?
            .map_err(|error| self.failed(what, error))
    }

    /// Forgets a cap an earlier request ran into: each request is judged on its own reads.
    fn untripped(&self) {
        self.tripped.lock().expect("tripped").take();
    }

    /// Why `what` failed: past a cap (whatever bollard made of the failed read), hung, or
    /// what Docker said.
    fn failed(&self, what: &str, error: BollardError) -> EngineError {
        if let Some(cap) = self.tripped.lock().expect("tripped").take() {
            return EngineError::TooLarge {
                what: what.to_owned(),
                limit: cap.limit(),
                stream: cap == transport::Cap::Line,
            };
        }
        match error {
            BollardError::RequestTimeoutError => EngineError::Hung {
                what: what.to_owned(),
                timeout: self.timeout,
            },
            other => self.error(other),
        }
    }

    /// One request through the negotiated client.
    fn ask<T, F>(
        &self,
        what: &str,
        request: impl FnOnce(bollard::Docker) -> F,
    ) -> Result<T, EngineError>
    where
        F: Future<Output = Result<T, BollardError>>,
    {
        let client = self.client()?;
        self.block_on(what, request(client))
    }

    /// Docker's failure as one of berth's few cases.
    fn error(&self, error: BollardError) -> EngineError {
        let host = self.address.host.clone();
        match error {
            BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            } => EngineError::NotFound(message),
            BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            } => EngineError::Conflict(message),
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => EngineError::Daemon {
                status: status_code,
                message,
            },
            BollardError::SocketNotFoundError(_) => EngineError::Down { host },
            other => match io_kind(&other) {
                Some(std::io::ErrorKind::PermissionDenied) => {
                    EngineError::PermissionDenied { host }
                }
                Some(
                    std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof,
                ) => EngineError::Down { host },
                _ => EngineError::Other {
                    host,
                    source: other,
                },
            },
        }
    }

    /// `GET /info`, as Docker's JSON.
    pub(crate) fn info(&self) -> Result<Json, EngineError> {
        self.ask("`GET /info`", |client| async move {
            client.info().await.map(|info| to_json(&info))
        })
    }

    /// `GET /KIND/NAME/json` of each name, side by side: the answers that exist, as Docker's
    /// JSON (a 404 is an answer: the name is left out).
    pub(crate) fn inspect(&self, kind: &str, names: &[String]) -> Result<Vec<Json>, EngineError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client()?;
        let what = format!("`GET /{kind}s/…/json`");
        let answers = self.block_on(&what, async {
            let asked = names.iter().map(|name| {
                let client = client.clone();
                async move {
                    let answer = match kind {
                        "container" => client
                            .inspect_container(name, None::<InspectContainerOptions>)
                            .await
                            .map(|it| to_json(&it)),
                        "network" => client
                            .inspect_network(name, None::<InspectNetworkOptions>)
                            .await
                            .map(|it| to_json(&it)),
                        "volume" => client.inspect_volume(name).await.map(|it| to_json(&it)),
                        _ => client.inspect_image(name).await.map(|it| to_json(&it)),
                    };
                    Ok::<_, BollardError>(answer)
                }
            });
            futures_util::future::try_join_all(asked).await
        })?;
        let mut found = Vec::new();
        for answer in answers {
            match answer.map_err(|error| self.failed(&what, error)) {
                Ok(object) => found.push(object),
                Err(EngineError::NotFound(_)) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(found)
    }

    /// Every container, network or volume carrying `label` (`KEY=VALUE`), as the list's JSON
    /// (a container's `Names` keep their leading `/`).
    pub(crate) fn list(&self, kind: &str, label: &str) -> Result<Vec<Json>, EngineError> {
        let filters = HashMap::from([("label".to_owned(), vec![label.to_owned()])]);
        let what = format!("`GET /{kind}s`");
        match kind {
            "container" => self.ask(&what, |client| async move {
                let options = ListContainersOptions {
                    all: true,
                    filters: Some(filters),
                    ..ListContainersOptions::default()
                };
                let listed = client.list_containers(Some(options)).await?;
                Ok(listed.iter().map(to_json).collect())
            }),
            "network" => self.ask(&what, |client| async move {
                let options = ListNetworksOptions {
                    filters: Some(filters),
                };
                let listed = client.list_networks(Some(options)).await?;
                Ok(listed.iter().map(to_json).collect())
            }),
            _ => self.ask(&what, |client| async move {
                let options = ListVolumesOptions {
                    filters: Some(filters),
                };
                let listed = client.list_volumes(Some(options)).await?;
                Ok(listed
                    .volumes
                    .unwrap_or_default()
                    .iter()
                    .map(to_json)
                    .collect())
            }),
        }
    }

    /// `POST /volumes/create`: `name` with `driver`, its options and labels.
    pub(crate) fn create_volume(
        &self,
        name: &str,
        driver: &str,
        options: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        let request = VolumeCreateRequest {
            name: Some(name.to_owned()),
            driver: Some(driver.to_owned()),
            driver_opts: Some(options.clone().into_iter().collect()),
            labels: Some(labels.clone().into_iter().collect()),
            ..VolumeCreateRequest::default()
        };
        self.ask("`POST /volumes/create`", |client| async move {
            client.create_volume(request).await.map(drop)
        })
    }

    /// `DELETE /volumes/NAME`: refused (Conflict) while a container uses it.
    pub(crate) fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        self.ask("`DELETE /volumes/…`", |client| async move {
            client
                .remove_volume(name, None::<RemoveVolumeOptions>)
                .await
        })
    }

    /// Follows `GET /events` of containers, networks and volumes, calling `heard` with each
    /// event as Docker's JSON until the stream ends (the daemon went away) or `heard` says
    /// stop (false). Returns why it ended: `Ok` for an end of stream.
    pub(crate) fn follow_events(
        &self,
        mut heard: impl FnMut(Json) -> bool,
    ) -> Result<(), EngineError> {
        let client = self.client()?;
        let what = "`GET /events`";
        tracing::debug!("asking the Docker daemon at {}: {what}", self.address.host);
        self.untripped();
        let filters = HashMap::from([(
            "type".to_owned(),
            vec![
                "container".to_owned(),
                "network".to_owned(),
                "volume".to_owned(),
            ],
        )]);
        let mut stream = std::pin::pin!(client.events(Some(EventsOptions {
            filters: Some(filters),
            ..EventsOptions::default()
        })));
        loop {
            // No timeout: a quiet daemon sends nothing for hours.
            match self.runtime.block_on(next(&mut stream)) {
                None => return Ok(()),
                Some(Ok(event)) => {
                    if !heard(to_json(&event)) {
                        return Ok(());
                    }
                }
                Some(Err(error)) => return Err(self.failed(what, error)),
            }
        }
    }
}

async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    stream.next().await
}

/// A model as the JSON Docker sent (bollard's models serialize with Docker's field names).
fn to_json(model: &impl Serialize) -> Json {
    serde_json::to_value(model).unwrap_or(Json::Null)
}

/// The operating system's reason under a transport error, if any: how a refused connection or
/// a socket berth may not open is told apart from everything else.
fn io_kind(error: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        // bollard's IOError is transparent: its source is the io error's own.
        if let Some(BollardError::IOError { err }) = error.downcast_ref::<BollardError>() {
            return Some(err.kind());
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(pairs: &[(&str, &str)]) -> Address {
        let pairs: HashMap<String, String> = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        Address::from_env(|key| pairs.get(key).cloned())
    }

    #[test]
    fn the_address_is_read_as_the_cli_reads_it() {
        assert_eq!(
            address(&[]),
            Address {
                host: DEFAULT_HOST.into(),
                tls: None
            }
        );
        assert_eq!(address(&[("DOCKER_HOST", "")]).host, DEFAULT_HOST);
        // TLS only on tcp, only when DOCKER_TLS_VERIFY is non-empty.
        assert_eq!(
            address(&[("DOCKER_HOST", "tcp://d:2376"), ("DOCKER_TLS_VERIFY", "")]).tls,
            None
        );
        assert_eq!(
            address(&[
                ("DOCKER_HOST", "tcp://d:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/certs"),
            ])
            .tls,
            Some(PathBuf::from("/certs"))
        );
        assert_eq!(
            address(&[
                ("DOCKER_HOST", "tcp://d:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("HOME", "/root"),
            ])
            .tls,
            Some(PathBuf::from("/root/.docker"))
        );
    }

    /// One request's head, through its blank line, as a fake daemon reads it off a connection
    /// (byte by byte, so that nothing of the body is taken with it).
    pub(super) fn read_head(stream: &mut impl std::io::Read) -> String {
        let mut head = Vec::new();
        let mut byte = [0_u8];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    /// A daemon at a socket of the test's own that answers each request by its path with
    /// `answer(path) -> (status, body)`, and `/version` with Engine 20.10's API version.
    pub(super) fn fake_daemon(
        dir: &std::path::Path,
        answer: fn(&str) -> (u16, &'static str),
    ) -> Engine {
        use std::io::{Read as _, Write as _};
        let socket = dir.join("docker.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let head = read_head(&mut stream);
                // Read the body too, so that closing never cuts a request short.
                let length = head
                    .lines()
                    .find_map(|line| {
                        let (key, value) = line.split_once(':')?;
                        key.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                let mut body = vec![0_u8; length];
                let _ = stream.read_exact(&mut body);
                let path = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let (status, body) = if path.ends_with("/version") {
                    (200, r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#)
                } else {
                    answer(&path)
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Engine::at(
            address(&[("DOCKER_HOST", &format!("unix://{}", socket.display()))]),
            Duration::from_secs(5),
        )
    }

    #[test]
    fn dockers_answers_become_typed_errors_and_a_404_on_inspect_is_an_answer() {
        let dir = tempfile::tempdir().unwrap();
        // bollard 0.21 sends its paths without the negotiated `/v1.41` (it joins an absolute
        // path over the prefix): either is the daemon's own version here.
        let engine = fake_daemon(dir.path(), |path| {
            match path
                .split('?')
                .next()
                .unwrap_or_default()
                .trim_start_matches("/v1.41")
            {
                "/containers/missing/json" => (404, r#"{"message":"No such container: missing"}"#),
                "/containers/taken/json" => (
                    409,
                    r#"{"message":"Conflict. The container name is already in use"}"#,
                ),
                _ => (500, r#"{"message":"something broke"}"#),
            }
        });
        assert_eq!(
            engine
                .inspect("container", &["missing".to_owned()])
                .unwrap(),
            Vec::<Json>::new()
        );
        let conflict = engine
            .inspect("container", &["taken".to_owned()])
            .unwrap_err();
        assert!(matches!(conflict, EngineError::Conflict(_)), "{conflict:?}");
        let broken = engine.info().unwrap_err();
        assert!(
            matches!(broken, EngineError::Daemon { status: 500, .. }),
            "{broken:?}"
        );
        assert_eq!(
            broken.to_string(),
            "the Docker daemon answered 500: something broke"
        );
    }

    #[test]
    fn a_socket_nobody_listens_on_is_down_and_one_that_never_answers_is_hung() {
        let dir = tempfile::tempdir().unwrap();
        // Bound and closed: the file stays, the connection is refused (a killed dockerd).
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let engine = Engine::at(
            address(&[("DOCKER_HOST", &format!("unix://{}", stale.display()))]),
            Duration::from_secs(5),
        );
        let error = engine.info().unwrap_err();
        assert!(matches!(error, EngineError::Down { .. }), "{error:?}");

        // Takes the connection and says nothing (a hung dockerd).
        let hung = dir.path().join("hung.sock");
        let listener = std::os::unix::net::UnixListener::bind(&hung).unwrap();
        let engine = Engine::at(
            address(&[("DOCKER_HOST", &format!("unix://{}", hung.display()))]),
            Duration::from_secs(1),
        );
        let error = engine.info().unwrap_err();
        assert!(matches!(error, EngineError::Hung { .. }), "{error:?}");
        assert_eq!(error.to_string(), "`GET /version` got no answer within 1 s");

        // Questions asked side by side share the one timeout (prefetch asks five at once),
        // and a later question tries again.
        let started = Instant::now();
        std::thread::scope(|scope| {
            let asked: Vec<_> = (0..4).map(|_| scope.spawn(|| engine.info())).collect();
            for answer in asked {
                let error = answer.join().unwrap().unwrap_err();
                assert!(matches!(error, EngineError::Hung { .. }), "{error:?}");
            }
        });
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        drop(listener);
    }

    #[test]
    fn no_socket_is_a_daemon_down_with_the_clis_words() {
        let engine = Engine::at(
            address(&[("DOCKER_HOST", "unix:///nonexistent/berth/docker.sock")]),
            Duration::from_secs(5),
        );
        let error = engine.info().unwrap_err();
        assert!(matches!(error, EngineError::Down { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "Cannot connect to the Docker daemon at unix:///nonexistent/berth/docker.sock. Is the docker daemon running?"
        );
    }
}
