//! A GitLab stand-in for the runner API, served on loopback for the tests.
//!
//! GitLab itself cannot run here (Rails, PostgreSQL, Redis and Gitaly, and no network to fetch
//! them), so this is a faithful stand-in for the five endpoints berth calls, not a mock of
//! berth's expectations: each answers with the status codes and bodies of GitLab's REST API
//! docs (`doc/api/runners.md`, `doc/api/users.md`) and of `lib/api/ci/runner.rb` and
//! `lib/api/user_runners.rb`, including the error bodies GitLab's helpers render
//! (`{"message": "403 Forbidden"}`, `{"message": "410 Gone - runner registration disallowed"}`,
//! `{"message": "Runner is orphaned"}`, Grape's `{"error": "token is missing"}`). It keeps
//! runners, their tokens and their managers (by system ID) as GitLab does, so a second
//! registration would really create a second runner, and it counts every call per endpoint.
//!
//! - `POST /api/v4/runners/verify` (token, system_id): 200 + RunnerRegistrationDetails, and
//!   the system ID becomes one of the runner's managers; 403 unknown token; 422 orphaned.
//! - `POST /api/v4/runners` (registration token): 201 with a new `glrtr-` token; 403 unknown
//!   token; 410 when registration tokens are disabled (the default since GitLab 17.0).
//! - `POST /api/v4/user/runners` (`PRIVATE-TOKEN` header): 201 with a new `glrt-` token; 401
//!   unknown access token; 403 no permission on the group or project (or not admin for an
//!   instance runner); 400 missing or invalid scope.
//! - `DELETE /api/v4/runners` (token): 204; 403 unknown token.
//! - `DELETE /api/v4/runners/managers` (token, system_id): 204; 403 unknown token; 404 no
//!   such manager.
//!
//! Faults: `script` answers the next calls with given statuses instead; `answer_late` lets the
//! next call do its work (a runner is created) but sends the answer only after a delay, as a
//! slow GitLab behind a proxy does to a client that already gave up.

#![allow(dead_code)]

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use serde_json::{Value as Json, json};

pub const VERIFY: &str = "POST /api/v4/runners/verify";
pub const REGISTER: &str = "POST /api/v4/runners";
pub const CREATE: &str = "POST /api/v4/user/runners";
pub const DELETE: &str = "DELETE /api/v4/runners";
pub const DELETE_MANAGER: &str = "DELETE /api/v4/runners/managers";

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Seen {
    pub endpoint: String,
    /// Path and query as sent.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct FakeRunner {
    pub id: i64,
    pub token: String,
    pub description: Option<String>,
    pub managers: BTreeSet<String>,
    pub orphaned: bool,
}

#[derive(Debug, Clone)]
struct AccessToken {
    admin: bool,
    groups: BTreeSet<i64>,
    projects: BTreeSet<i64>,
}

#[derive(Default)]
struct State {
    calls: BTreeMap<String, usize>,
    seen: Vec<Seen>,
    runners: Vec<FakeRunner>,
    registration_tokens: BTreeSet<String>,
    registration_disallowed: bool,
    access_tokens: BTreeMap<String, AccessToken>,
    next_id: i64,
    /// Statuses to answer instead, per endpoint, before the real behaviour.
    scripted: BTreeMap<String, VecDeque<u16>>,
    /// Per endpoint: the next calls do what they do, but the answer is sent only this late.
    late: BTreeMap<String, VecDeque<std::time::Duration>>,
}

pub struct GitLab {
    server: Arc<tiny_http::Server>,
    state: Arc<Mutex<State>>,
    thread: Option<JoinHandle<()>>,
    port: u16,
    tls: Option<TlsFront>,
}

/// HTTPS in front of the stand-in, with the certificate in `tests/fixtures/tls` (for
/// 127.0.0.1, signed by the test CA `ca.pem`): a self-signed GitLab.
struct TlsFront {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The test CA that signed the HTTPS stand-in's certificate.
pub fn test_ca_pem() -> String {
    std::fs::read_to_string(fixtures().join("ca.pem")).unwrap()
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls")
}

impl GitLab {
    /// Starts the server on a free loopback port.
    pub fn start() -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind loopback"));
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let state = Arc::new(Mutex::new(State {
            next_id: 100,
            ..State::default()
        }));
        let thread = {
            let server = Arc::clone(&server);
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    handle(&state, request);
                }
            })
        };
        Self {
            server,
            state,
            thread: Some(thread),
            port,
            tls: None,
        }
    }

    /// Starts the server behind HTTPS with a certificate no system trusts.
    pub fn start_tls() -> Self {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let mut gitlab = Self::start();
        let certs = CertificateDer::pem_file_iter(fixtures().join("gitlab.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(fixtures().join("gitlab.key")).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let plain = gitlab.port;
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let config = Arc::clone(&config);
                        std::thread::spawn(move || {
                            let _ = relay(config, stream, plain);
                        });
                    }
                }
            })
        };
        gitlab.tls = Some(TlsFront {
            port,
            stop,
            thread: Some(thread),
        });
        gitlab
    }

    /// The instance URL, as a profile's `url`.
    pub fn url(&self) -> String {
        match &self.tls {
            Some(tls) => format!("https://127.0.0.1:{}", tls.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// A runner created in GitLab's UI, whose `glrt-` token is handed to the host.
    pub fn add_runner(&self, token: &str) -> i64 {
        self.with(|state| {
            state.next_id += 1;
            let id = state.next_id;
            state.runners.push(FakeRunner {
                id,
                token: token.into(),
                description: None,
                managers: BTreeSet::new(),
                orphaned: false,
            });
            id
        })
    }

    /// The runner's token changes, as when gitlab-runner rotates it
    /// (`POST /runners/reset_authentication_token`).
    pub fn rotate_token(&self, id: i64, new_token: &str) {
        self.with(|state| {
            let runner = state
                .runners
                .iter_mut()
                .find(|runner| runner.id == id)
                .unwrap();
            runner.token = new_token.into();
        });
    }

    pub fn orphan(&self, token: &str) {
        self.with(|state| {
            for runner in &mut state.runners {
                if runner.token == token {
                    runner.orphaned = true;
                }
            }
        });
    }

    pub fn add_registration_token(&self, token: &str) {
        self.with(|state| state.registration_tokens.insert(token.into()));
    }

    /// `allow_runner_registration_token = false`, the default since GitLab 17.0.
    pub fn disallow_registration_tokens(&self) {
        self.with(|state| state.registration_disallowed = true);
    }

    /// A personal access token with the create_runner scope, Owner of these groups.
    pub fn add_access_token(&self, token: &str, groups: &[i64]) {
        self.with(|state| {
            state.access_tokens.insert(
                token.into(),
                AccessToken {
                    admin: false,
                    groups: groups.iter().copied().collect(),
                    projects: BTreeSet::new(),
                },
            )
        });
    }

    /// Answers the next calls to `endpoint` with these statuses instead.
    pub fn script(&self, endpoint: &str, statuses: &[u16]) {
        self.with(|state| {
            state
                .scripted
                .entry(endpoint.into())
                .or_default()
                .extend(statuses.iter().copied())
        });
    }

    /// The next call to `endpoint` does what it does (a runner is really created), but its
    /// answer is sent only after `delay`: a client that gave up before then never heard it.
    pub fn answer_late(&self, endpoint: &str, delay: std::time::Duration) {
        self.with(|state| {
            state
                .late
                .entry(endpoint.into())
                .or_default()
                .push_back(delay)
        });
    }

    pub fn calls(&self, endpoint: &str) -> usize {
        self.with(|state| state.calls.get(endpoint).copied().unwrap_or(0))
    }

    pub fn total_calls(&self) -> usize {
        self.with(|state| state.calls.values().sum())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.with(|state| state.seen.clone())
    }

    pub fn runners(&self) -> Vec<FakeRunner> {
        self.with(|state| state.runners.clone())
    }

    pub fn runner(&self, id: i64) -> Option<FakeRunner> {
        self.runners().into_iter().find(|runner| runner.id == id)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One HTTPS exchange: the TLS handshake, one request read whole and passed to the plain
/// server with `Connection: close`, its answer passed back.
fn relay(config: Arc<rustls::ServerConfig>, stream: TcpStream, plain: u16) -> std::io::Result<()> {
    let connection = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let read = tls.read(&mut chunk)?;
        if read == 0 {
            return Ok(());
        }
        request.extend_from_slice(&chunk[..read]);
        if let Some(end) = request.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while request.len() < head_end + length {
        let read = tls.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..read]);
    }
    let mut forwarded: String = head
        .trim_end()
        .lines()
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .map(|line| format!("{line}\r\n"))
        .collect();
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut upstream = TcpStream::connect(("127.0.0.1", plain))?;
    upstream.write_all(forwarded.as_bytes())?;
    upstream.write_all(&request[head_end..])?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    tls.write_all(&response)?;
    tls.conn.send_close_notify();
    tls.flush()
}

impl Drop for GitLab {
    fn drop(&mut self) {
        self.tls.take();
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(state: &Mutex<State>, mut request: tiny_http::Request) {
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let path = request
        .url()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let endpoint = format!("{} {path}", request.method());
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|header| (header.field.to_string(), header.value.to_string()))
        .collect();
    let (status, answer, late) = {
        let mut state = state.lock().unwrap();
        let late = state.late.get_mut(&endpoint).and_then(VecDeque::pop_front);
        *state.calls.entry(endpoint.clone()).or_default() += 1;
        state.seen.push(Seen {
            endpoint: endpoint.clone(),
            url: request.url().to_owned(),
            headers: headers.clone(),
            body: body.clone(),
        });
        let scripted = state
            .scripted
            .get_mut(&endpoint)
            .and_then(VecDeque::pop_front);
        let (status, answer) = match scripted {
            Some(status) => (status, Some(json!({"message": status_line(status)}))),
            None => {
                let params: Json = serde_json::from_str(&body).unwrap_or(Json::Null);
                let private_token = headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("PRIVATE-TOKEN"))
                    .map(|(_, value)| value.clone());
                route(&mut state, &endpoint, &params, private_token.as_deref())
            }
        };
        (status, answer, late)
    };
    let response = match answer {
        None => tiny_http::Response::from_data(Vec::new()).with_status_code(status),
        Some(body) => tiny_http::Response::from_data(body.to_string().into_bytes())
            .with_status_code(status)
            .with_header(
                "Content-Type: application/json"
                    .parse::<tiny_http::Header>()
                    .unwrap(),
            ),
    };
    match late {
        // Answered from a thread of its own, so other calls are served meanwhile.
        Some(delay) => {
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let _ = request.respond(response);
            });
        }
        None => {
            let _ = request.respond(response);
        }
    }
}

fn status_line(status: u16) -> String {
    let reason = match status {
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        429 => "Too Many Requests",
        _ => "Error",
    };
    format!("{status} {reason}")
}

fn forbidden(reason: Option<&str>) -> (u16, Option<Json>) {
    let message = match reason {
        Some(reason) => format!("403 Forbidden - {reason}"),
        None => "403 Forbidden".into(),
    };
    (403, Some(json!({ "message": message })))
}

fn missing(param: &str) -> (u16, Option<Json>) {
    (400, Some(json!({ "error": format!("{param} is missing") })))
}

fn details(runner: &FakeRunner) -> Json {
    json!({"id": runner.id, "token": runner.token, "token_expires_at": null})
}

fn new_token(prefix: &str, id: i64) -> String {
    format!("{prefix}{id:04}x9Qz7vKp2LmN8wRt")
}

fn route(
    state: &mut State,
    endpoint: &str,
    params: &Json,
    private_token: Option<&str>,
) -> (u16, Option<Json>) {
    let text = |key: &str| params.get(key).and_then(Json::as_str).map(str::to_owned);
    match endpoint {
        VERIFY => {
            let Some(token) = text("token") else {
                return missing("token");
            };
            let system_id = text("system_id").unwrap_or_else(|| "<legacy>".into());
            let Some(runner) = state
                .runners
                .iter_mut()
                .find(|runner| runner.token == token)
            else {
                return forbidden(None);
            };
            if runner.orphaned {
                return (422, Some(json!({"message": "Runner is orphaned"})));
            }
            runner.managers.insert(system_id);
            (200, Some(details(runner)))
        }
        REGISTER => {
            let Some(token) = text("token") else {
                return missing("token");
            };
            if state.registration_disallowed {
                return (
                    410,
                    Some(json!({"message": "410 Gone - runner registration disallowed"})),
                );
            }
            if !state.registration_tokens.contains(&token) {
                return forbidden(Some("invalid token supplied"));
            }
            if let Some(level) = text("access_level")
                && !["not_protected", "ref_protected"].contains(&level.as_str())
            {
                return (
                    400,
                    Some(json!({"error": "access_level does not have a valid value"})),
                );
            }
            state.next_id += 1;
            let runner = FakeRunner {
                id: state.next_id,
                token: new_token("glrtr-", state.next_id),
                description: text("description"),
                managers: BTreeSet::new(),
                orphaned: false,
            };
            let answer = details(&runner);
            state.runners.push(runner);
            (201, Some(answer))
        }
        CREATE => {
            let Some(access) = private_token.and_then(|token| state.access_tokens.get(token))
            else {
                return (401, Some(json!({"message": "401 Unauthorized"})));
            };
            let Some(runner_type) = text("runner_type") else {
                return missing("runner_type");
            };
            let id_param = |key: &str| params.get(key).and_then(Json::as_i64);
            let allowed = match runner_type.as_str() {
                "instance_type" => access.admin,
                "group_type" => match id_param("group_id") {
                    None => {
                        return (
                            400,
                            Some(json!({"message": "400 Bad request - Missing/invalid group"})),
                        );
                    }
                    Some(group) => access.admin || access.groups.contains(&group),
                },
                "project_type" => match id_param("project_id") {
                    None => {
                        return (
                            400,
                            Some(json!({"message": "400 Bad request - Missing/invalid project"})),
                        );
                    }
                    Some(project) => access.admin || access.projects.contains(&project),
                },
                _ => {
                    return (
                        400,
                        Some(json!({"error": "runner_type does not have a valid value"})),
                    );
                }
            };
            if !allowed {
                return forbidden(Some("Insufficient permissions"));
            }
            state.next_id += 1;
            let runner = FakeRunner {
                id: state.next_id,
                token: new_token("glrt-", state.next_id),
                description: text("description"),
                managers: BTreeSet::new(),
                orphaned: false,
            };
            let answer = details(&runner);
            state.runners.push(runner);
            (201, Some(answer))
        }
        DELETE => {
            let Some(token) = text("token") else {
                return missing("token");
            };
            let before = state.runners.len();
            state.runners.retain(|runner| runner.token != token);
            if state.runners.len() == before {
                forbidden(None)
            } else {
                (204, None)
            }
        }
        DELETE_MANAGER => {
            let Some(token) = text("token") else {
                return missing("token");
            };
            let Some(system_id) = text("system_id") else {
                return missing("system_id");
            };
            let Some(runner) = state
                .runners
                .iter_mut()
                .find(|runner| runner.token == token)
            else {
                return forbidden(None);
            };
            if runner.managers.remove(&system_id) {
                (204, None)
            } else {
                (
                    404,
                    Some(json!({"message": "404 Runner manager not found Not Found"})),
                )
            }
        }
        _ => (404, Some(json!({"error": "404 Not Found"}))),
    }
}
