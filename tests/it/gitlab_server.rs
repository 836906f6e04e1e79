//! A GitLab stand-in for the runner API, served on loopback for the tests.
//!
//! GitLab itself cannot run here (Rails, PostgreSQL, Redis and Gitaly, and no network to fetch
//! them), so this is a faithful stand-in for the five endpoints berth calls, not a mock of
//! berth's expectations: each answers with the status codes, headers and bodies of GitLab's
//! REST API docs (`doc/api/runners.md`, `doc/api/users.md`) and of `lib/api/ci/runner.rb`,
//! `lib/api/ci/helpers/runner.rb` and `lib/api/user_runners.rb`, in GitLab's order (the token is
//! checked before anything else is decided), including the error bodies GitLab's helpers render
//! (`{"message": "403 Forbidden"}`, `{"message": "410 Gone - runner registration disallowed"}`,
//! `{"message": "403 Forbidden - Runner is orphaned"}`, Grape's `{"error": "token is missing"}`,
//! the OAuth `{"error": "insufficient_scope", ...}`). It keeps runners, their tokens, their
//! token expiry and their managers (by system ID) as GitLab does, so a second registration would
//! really create a second runner, and it counts every call per endpoint. A stand-in kinder than
//! GitLab hides bugs: where GitLab versions differ, it can answer as either.
//!
//! Every endpoint first runs `check_if_backoff_required!` (`lib/api/ci/runner.rb`, `before`):
//! while GitLab runs database migrations (`migrating`) it answers 429 with `Retry-After: 60`
//! (`too_many_requests!(..., retry_after: 1.minute)`, `lib/api/ci/helpers/runner.rb`).
//!
//! - `POST /api/v4/runners/verify` (token, system_id, info): `authenticate_runner!`
//!   (`lib/api/ci/helpers/runner.rb`): 403 unknown token; 403 `Runner is orphaned` with
//!   `reject_orphaned_runners` (GitLab 17.x on), or 422 `Runner is orphaned` before it
//!   (`UnknownRunnerOwnerError` rescued in `lib/api/ci/runner.rb`); then 200 +
//!   RunnerRegistrationDetails (`lib/api/entities/ci/runner_registration_details.rb`: id, token,
//!   token_expires_at), and the system ID becomes one of the runner's managers with `info`.
//! - `POST /api/v4/runners` (registration token): `Ci::Runners::RegisterRunnerService`
//!   (`app/services/ci/runners/register_runner_service.rb`): 403 `invalid token supplied` first,
//!   then 410 when registration tokens are disallowed (the default since GitLab 17.0), 400 on
//!   the runner's validations (`maximum_timeout` >= 600, `app/models/ci/runner.rb`), else 201
//!   with a new `glrtr-` token.
//! - `POST /api/v4/user/runners` (`PRIVATE-TOKEN` header, `lib/api/user_runners.rb`): 401
//!   unknown access token; 403 `insufficient_scope` without the `create_runner` scope
//!   (`lib/gitlab/auth/auth_finders.rb`, `InsufficientScopeError`, rendered by
//!   `lib/api/helpers.rb`); 400 missing or invalid runner type, group or project; 403 no
//!   permission on the group or project (or not admin for an instance runner); 201 with a new
//!   `glrt-` token.
//! - `DELETE /api/v4/runners` (token): `authenticate_runner!(ensure_runner_manager: false)`:
//!   403 unknown token or orphaned; 204.
//! - `DELETE /api/v4/runners/managers` (token, system_id): the same, then 404 `Runner manager
//!   not found`; 204.
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
    /// ISO 8601, as GitLab sends it; `None` when the token does not expire.
    pub token_expires_at: Option<String>,
    pub description: Option<String>,
    /// By system ID: the `info` its last verify sent.
    pub managers: BTreeMap<String, Json>,
    pub orphaned: Orphaned,
}

/// Whether a runner's project or group is gone, and how this GitLab says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphaned {
    No,
    /// GitLab 17.x on (`reject_orphaned_runners`): 403 `Runner is orphaned` on every call.
    Rejected,
    /// Before that: 422 `Runner is orphaned` from verify.
    Unprocessable,
}

#[derive(Debug, Clone)]
struct AccessToken {
    admin: bool,
    groups: BTreeSet<i64>,
    projects: BTreeSet<i64>,
    /// Has the `create_runner` scope.
    create_runner: bool,
}

/// One answer: status, JSON body, extra headers.
struct Reply {
    status: u16,
    body: Option<Json>,
    headers: Vec<(&'static str, String)>,
}

impl From<(u16, Option<Json>)> for Reply {
    fn from((status, body): (u16, Option<Json>)) -> Self {
        Self {
            status,
            body,
            headers: Vec::new(),
        }
    }
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
    /// `token_expires_at` of the runners registered or created from now on.
    new_tokens_expire_at: Option<String>,
    /// Calls left that answer 429 while migrations run, and the Retry-After they send.
    migrating: Option<(usize, u64)>,
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
        self.add_runner_expiring(token, None)
    }

    /// A runner created in GitLab's UI whose token expires at `expires_at` (ISO 8601).
    pub fn add_runner_expiring(&self, token: &str, expires_at: Option<&str>) -> i64 {
        self.with(|state| {
            state.next_id += 1;
            let id = state.next_id;
            state.runners.push(FakeRunner {
                id,
                token: token.into(),
                token_expires_at: expires_at.map(str::to_owned),
                description: None,
                managers: BTreeMap::new(),
                orphaned: Orphaned::No,
            });
            id
        })
    }

    /// Runner tokens made from now on expire then (`runner_token_expiration_interval`).
    pub fn expire_new_tokens_at(&self, expires_at: &str) {
        self.with(|state| state.new_tokens_expire_at = Some(expires_at.into()));
    }

    /// The next `calls` calls, to any endpoint, come while GitLab runs database migrations:
    /// 429 with `Retry-After: retry_after`.
    pub fn migrating(&self, calls: usize, retry_after: u64) {
        self.with(|state| state.migrating = Some((calls, retry_after)));
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

    /// The runner's project or group is deleted, on a GitLab with `reject_orphaned_runners`.
    pub fn orphan(&self, token: &str) {
        self.orphan_as(token, Orphaned::Rejected);
    }

    pub fn orphan_as(&self, token: &str, how: Orphaned) {
        self.with(|state| {
            for runner in &mut state.runners {
                if runner.token == token {
                    runner.orphaned = how;
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
        self.add_scoped_access_token(token, groups, true);
    }

    /// A personal access token, Owner of these groups, with or without `create_runner`.
    pub fn add_scoped_access_token(&self, token: &str, groups: &[i64], create_runner: bool) {
        self.with(|state| {
            state.access_tokens.insert(
                token.into(),
                AccessToken {
                    admin: false,
                    groups: groups.iter().copied().collect(),
                    projects: BTreeSet::new(),
                    create_runner,
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
    let (status, late) = {
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
        let migrating = match &mut state.migrating {
            Some((left, retry_after)) if *left > 0 => {
                *left -= 1;
                Some(*retry_after)
            }
            _ => None,
        };
        let reply: Reply = match (scripted, migrating) {
            // A redirect as a proxy in front of GitLab gives it: to https, same path.
            (Some(status), _) if (300..400).contains(&status) => Reply {
                status,
                body: None,
                headers: vec![("Location", format!("https://gitlab.example.com{path}"))],
            },
            (Some(status), _) => (status, Some(json!({"message": status_line(status)}))).into(),
            // `check_if_backoff_required!`, before the endpoint runs.
            (None, Some(retry_after)) => Reply {
                status: 429,
                body: Some(
                    json!({"message": "Executing database migrations. Please retry later."}),
                ),
                headers: vec![("Retry-After", retry_after.to_string())],
            },
            (None, None) => {
                let params: Json = serde_json::from_str(&body).unwrap_or(Json::Null);
                let private_token = headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("PRIVATE-TOKEN"))
                    .map(|(_, value)| value.clone());
                route(&mut state, &endpoint, &params, private_token.as_deref()).into()
            }
        };
        (reply, late)
    };
    let (reply, late) = (status, late);
    let mut response = match reply.body {
        None => tiny_http::Response::from_data(Vec::new()).with_status_code(reply.status),
        Some(body) => tiny_http::Response::from_data(body.to_string().into_bytes())
            .with_status_code(reply.status)
            .with_header(
                "Content-Type: application/json"
                    .parse::<tiny_http::Header>()
                    .unwrap(),
            ),
    };
    for (name, value) in reply.headers {
        response = response
            .with_header(tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap());
    }
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
    json!({"id": runner.id, "token": runner.token, "token_expires_at": runner.token_expires_at})
}

/// `forbidden!('Runner is orphaned')` or, on an older GitLab, `unprocessable_entity!`.
fn orphaned(how: Orphaned) -> Option<(u16, Option<Json>)> {
    match how {
        Orphaned::No => None,
        Orphaned::Rejected => Some(forbidden(Some("Runner is orphaned"))),
        Orphaned::Unprocessable => Some((422, Some(json!({"message": "Runner is orphaned"})))),
    }
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
            if let Some(answer) = orphaned(runner.orphaned) {
                return answer;
            }
            runner
                .managers
                .insert(system_id, params.get("info").cloned().unwrap_or(Json::Null));
            (200, Some(details(runner)))
        }
        REGISTER => {
            let Some(token) = text("token") else {
                return missing("token");
            };
            // RegisterRunnerService: the token first, then whether registration is allowed.
            if !state.registration_tokens.contains(&token) {
                return forbidden(Some("invalid token supplied"));
            }
            if state.registration_disallowed {
                return (
                    410,
                    Some(json!({"message": "410 Gone - runner registration disallowed"})),
                );
            }
            if params
                .get("maximum_timeout")
                .and_then(Json::as_i64)
                .is_some_and(|seconds| seconds < 600)
            {
                return (
                    400,
                    Some(
                        json!({"message": {"maximum_timeout": ["needs to be at least 10 minutes"]}}),
                    ),
                );
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
                token_expires_at: state.new_tokens_expire_at.clone(),
                description: text("description"),
                managers: BTreeMap::new(),
                orphaned: Orphaned::No,
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
            if !access.create_runner {
                return (
                    403,
                    Some(json!({
                        "error": "insufficient_scope",
                        "error_description": "The request requires higher privileges than provided by the access token.",
                        "scope": "create_runner",
                    })),
                );
            }
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
                token_expires_at: state.new_tokens_expire_at.clone(),
                description: text("description"),
                managers: BTreeMap::new(),
                orphaned: Orphaned::No,
            };
            let answer = details(&runner);
            state.runners.push(runner);
            (201, Some(answer))
        }
        DELETE => {
            let Some(token) = text("token") else {
                return missing("token");
            };
            let Some(runner) = state.runners.iter().find(|runner| runner.token == token) else {
                return forbidden(None);
            };
            if let Some(answer) =
                orphaned(runner.orphaned).filter(|_| runner.orphaned == Orphaned::Rejected)
            {
                return answer;
            }
            state.runners.retain(|runner| runner.token != token);
            (204, None)
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
            if let Some(answer) =
                orphaned(runner.orphaned).filter(|_| runner.orphaned == Orphaned::Rejected)
            {
                return answer;
            }
            if runner.managers.remove(&system_id).is_some() {
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
