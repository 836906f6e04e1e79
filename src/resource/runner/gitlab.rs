//! GitLab's runner API, the five calls berth makes: verify a runner authentication token,
//! register with a registration token, create a runner with an access token, delete a runner,
//! delete this host's runner manager. Bodies and answers follow GitLab's REST API docs
//! (`doc/api/runners.md`, `doc/api/users.md`) and what `gitlab-runner register` and
//! `unregister` send.
//!
//! Transport: HTTPS with the system's CA certificates plus an optional per-runner CA file (a
//! self-signed GitLab), connect and overall timeouts, no redirects (a redirect would carry the
//! token to another URL), and a bounded retry with backoff. A 429 is retried after the
//! `Retry-After` GitLab sends (60 s while it runs database migrations, `check_if_backoff_required!`
//! in `lib/api/ci/helpers/runner.rb`), as gitlab-runner's `network/retry_requester.go` does,
//! within [`MAX_RATE_LIMIT_WAIT`]. A call that may create something
//! (`POST /runners`, `POST /user/runners`) is retried only when the request surely never reached
//! GitLab, so a flaky proxy can never register a runner twice.
//!
//! Tokens travel in the JSON body or the `PRIVATE-TOKEN` header, never in a URL, and any text
//! GitLab sends back is scrubbed of them before it becomes an error.

use std::{sync::OnceLock, time::Duration};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value as Json, json};

use crate::{
    host::{Host, HostPath},
    resource::runner::{
        section::{RunnerScope, RunnerSpec, ServerParams, normalize_url},
        version::runner_version,
    },
    secret::Secret,
};

/// How long to wait for a TCP and TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one call may take in all.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries per call, the first included.
const ATTEMPTS: u32 = 4;
/// The wait before the first retry; it doubles for each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The longest berth waits in all, in one call, for the `Retry-After`s of 429 answers; a longer
/// one fails the call now (the next run tries again) instead of holding the run.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(120);

/// What GitLab answered to a registration, verification or creation.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub id: i64,
    pub token: Secret,
    /// As GitLab sent it (ISO 8601), `None` when the token does not expire.
    pub token_expires_at: Option<String>,
}

/// How a delete ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deleted {
    Done,
    /// 403: GitLab knows no runner with this token (deleted in GitLab, or the token revoked).
    UnknownToken,
    /// 403 `Runner is orphaned`: its project or group is gone; GitLab refuses every call with
    /// its token, so nothing is left for this host to remove.
    Orphaned,
    /// 404 from `DELETE /runners/managers`: no manager with this system ID.
    NoSuchManager,
}

/// What gitlab-runner tells GitLab about itself (`info` in `network/gitlab.go`'s
/// `getRunnerInfo`), sent with verify and register in its name: GitLab creates the runner
/// manager from the first call it sees and keeps its details for 40-55 minutes, so a verify
/// without `info` leaves `cancel_gracefully` unset and cancelled jobs skip `after_script` that
/// long (the comment on gitlab-runner's `VerifyRunner`, 19.x).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunnerInfo {
    /// The gitlab-runner version the runner container's image tag names (`v17.11.0` →
    /// `17.11.0`); `None` when the tag names none (`latest`) or no container runs it.
    pub version: Option<String>,
    pub executor: Option<String>,
    pub shell: Option<String>,
}

impl RunnerInfo {
    /// What berth tells GitLab about the gitlab-runner that will use `spec`'s registration.
    pub(crate) fn of(spec: &RunnerSpec) -> Self {
        let text = |key: &str| {
            spec.settings
                .get(key)
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
        };
        Self {
            version: spec.runner_image.as_deref().and_then(runner_version),
            executor: text("executor"),
            shell: text("shell"),
        }
    }

    fn to_json(&self) -> Json {
        let mut info = json!({
            "name": "gitlab-runner",
            "platform": "linux",
            "architecture": go_architecture(),
            // gitlab-runner's own features (`getFeatures`, 17.11 and later); the executor's
            // and shell's come with its first job request.
            "features": {
                "trace_reset": true,
                "trace_checksum": true,
                "trace_size": true,
                "cancelable": true,
                "cancel_gracefully": true,
            },
        });
        for (key, value) in [
            ("version", &self.version),
            ("executor", &self.executor),
            ("shell", &self.shell),
        ] {
            if let Some(value) = value {
                info[key] = json!(value);
            }
        }
        info
    }
}

/// A client for one GitLab instance.
pub(crate) struct GitLab {
    /// `https://gitlab.example.com/api/v4/`.
    base: String,
    agent: ureq::Agent,
}

/// One HTTP exchange's outcome.
struct Answer {
    status: u16,
    body: String,
    /// Where a redirect pointed (`Location`), said in the error since berth never follows one.
    location: Option<String>,
}

enum Method {
    Post,
    Delete,
}

impl Method {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Delete => "DELETE",
        }
    }
}

/// Marks an error after which GitLab may have created what was asked for: the request was
/// sent, and no answer that says otherwise came back (a timeout after sending, a 5xx). Such
/// a call is never repeated, in this run or the next (`runner/NAME` keeps it journaled).
#[derive(Debug, thiserror::Error)]
#[error(
    "the request reached GitLab, or may have: GitLab may have created the runner without berth hearing of it"
)]
pub(crate) struct MayHaveArrived;

/// A 429's `Retry-After`, and which attempt it answered.
struct RateLimit<'a> {
    retry_after: Option<&'a str>,
    attempt: u32,
    last: bool,
}

/// Whether a call may be repeated after an error that may have reached GitLab.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeatable {
    Yes,
    /// The call creates something: repeat only what surely never reached GitLab.
    OnlyUnsent,
}

impl GitLab {
    /// A client for `url` (as a profile gives it), trusting the system's CAs and those in
    /// `tls_ca_file` (a host path).
    pub(crate) fn new(host: &Host, url: &str, tls_ca_file: Option<&HostPath>) -> Result<Self> {
        let base = format!("{}/api/v4/", normalize_url(url));
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(CALL_TIMEOUT))
            .user_agent(format!("berth/{}", env!("CARGO_PKG_VERSION")));
        if base.starts_with("https://") {
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(root_certs(host, tls_ca_file)?)
                    .build(),
            );
        }
        Ok(Self {
            base,
            agent: config.build().into(),
        })
    }

    /// `POST /runners/verify`, as `gitlab-runner register --token glrt-...` does: checks the
    /// token and makes GitLab record this host (`system_id`) as one of the runner's managers.
    pub(crate) fn verify(
        &self,
        token: &Secret,
        system_id: &str,
        info: &RunnerInfo,
    ) -> Result<Registration> {
        let body = json!({"token": token.expose(), "system_id": system_id, "info": info.to_json()});
        let answer = self.call(
            Method::Post,
            "runners/verify",
            &body,
            None,
            &[token],
            Repeatable::Yes,
        )?;
        match answer.status {
            200 => registration(&answer.body, Some(token)),
            403 if orphaned(&answer) => Err(self.refusal("runners/verify", &answer, &[token], ORPHANED_403)),
            403 => Err(self.refusal("runners/verify", &answer, &[token], "token invalid or revoked (403): check the runner authentication token; a glrt- token is shown once, when the runner is created in GitLab")),
            422 => Err(self.refusal("runners/verify", &answer, &[token], "runner is orphaned (422): its project or group is gone; create a new runner in GitLab")),
            _ => Err(self.unexpected("runners/verify", &answer, &[token])),
        }
    }

    /// `POST /runners` with a registration token (the flow deprecated since GitLab 15.6).
    pub(crate) fn register(
        &self,
        registration_token: &Secret,
        description: &str,
        params: &ServerParams,
        info: &RunnerInfo,
    ) -> Result<Registration> {
        let mut body = json!({
            "token": registration_token.expose(),
            "description": params.description.as_deref().unwrap_or(description),
            "info": info.to_json(),
        });
        // gitlab-runner always sends these three; GitLab's own defaults differ from the runner's.
        body["run_untagged"] = json!(
            params
                .run_untagged
                .unwrap_or(params.tag_list.as_ref().is_none_or(Vec::is_empty))
        );
        body["locked"] = json!(params.locked.unwrap_or(true));
        body["paused"] = json!(params.paused.unwrap_or(false));
        add_server_params(&mut body, params);
        let answer = self.call(
            Method::Post,
            "runners",
            &body,
            None,
            &[registration_token],
            Repeatable::OnlyUnsent,
        )?;
        match answer.status {
            201 => registration(&answer.body, None),
            410 => Err(self.refusal("runners", &answer, &[registration_token], "registration tokens are disabled on this GitLab (default since 17.0): create the runner in GitLab and use its glrt- token")),
            403 => Err(self.refusal("runners", &answer, &[registration_token], "registration token invalid (403)")),
            400 => Err(self.refusal("runners", &answer, &[registration_token], "GitLab rejected the runner's settings (400)")),
            _ => Err(self.unexpected("runners", &answer, &[registration_token])),
        }
    }

    /// `POST /user/runners`: creates a runner with an access token that has the `create_runner`
    /// scope; the answer's token is shown this once.
    pub(crate) fn create(
        &self,
        access_token: &Secret,
        description: &str,
        scope: &RunnerScope,
        params: &ServerParams,
    ) -> Result<Registration> {
        let mut body = json!({
            "runner_type": scope.runner_type(),
            "description": params.description.as_deref().unwrap_or(description),
        });
        match scope {
            RunnerScope::Instance => {}
            RunnerScope::Group(id) => body["group_id"] = json!(id),
            RunnerScope::Project(id) => body["project_id"] = json!(id),
        }
        for (key, value) in [
            ("run_untagged", params.run_untagged),
            ("locked", params.locked),
            ("paused", params.paused),
        ] {
            if let Some(value) = value {
                body[key] = json!(value);
            }
        }
        add_server_params(&mut body, params);
        let answer = self.call(
            Method::Post,
            "user/runners",
            &body,
            Some(access_token),
            &[access_token],
            Repeatable::OnlyUnsent,
        )?;
        match answer.status {
            201 => registration(&answer.body, None),
            401 => Err(self.refusal("user/runners", &answer, &[access_token], "access token invalid or expired (401)")),
            403 => Err(self.refusal("user/runners", &answer, &[access_token], "the access token may not create this runner (403): it needs the create_runner scope and Owner of the group or project (admin for an instance runner)")),
            400 => Err(self.refusal("user/runners", &answer, &[access_token], "GitLab rejected the runner's settings (400)")),
            _ => Err(self.unexpected("user/runners", &answer, &[access_token])),
        }
    }

    /// `DELETE /runners`: deletes the runner in GitLab, every manager with it.
    pub(crate) fn delete_runner(&self, token: &Secret) -> Result<Deleted> {
        let body = json!({"token": token.expose()});
        let answer = self.call(
            Method::Delete,
            "runners",
            &body,
            None,
            &[token],
            Repeatable::Yes,
        )?;
        match answer.status {
            204 | 200 => Ok(Deleted::Done),
            403 if orphaned(&answer) => Ok(Deleted::Orphaned),
            403 => Ok(Deleted::UnknownToken),
            _ => Err(self.unexpected("runners", &answer, &[token])),
        }
    }

    /// `DELETE /runners/managers`: removes only this host (`system_id`) from the runner, as
    /// `gitlab-runner unregister` does for a glrt- token; the runner stays in GitLab.
    pub(crate) fn delete_manager(&self, token: &Secret, system_id: &str) -> Result<Deleted> {
        let body = json!({"token": token.expose(), "system_id": system_id});
        let answer = self.call(
            Method::Delete,
            "runners/managers",
            &body,
            None,
            &[token],
            Repeatable::Yes,
        )?;
        match answer.status {
            204 | 200 => Ok(Deleted::Done),
            403 if orphaned(&answer) => Ok(Deleted::Orphaned),
            403 => Ok(Deleted::UnknownToken),
            404 => Ok(Deleted::NoSuchManager),
            _ => Err(self.unexpected("runners/managers", &answer, &[token])),
        }
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}{endpoint}", self.base)
    }

    /// Sends one JSON request, retrying what may be retried, and returns the answer.
    fn call(
        &self,
        method: Method,
        endpoint: &str,
        body: &Json,
        private_token: Option<&Secret>,
        secrets: &[&Secret],
        repeatable: Repeatable,
    ) -> Result<Answer> {
        let url = self.url(endpoint);
        let text = body.to_string();
        let mut backoff = FIRST_BACKOFF;
        let mut rate_limited = Duration::ZERO;
        for attempt in 1..=ATTEMPTS {
            let mut wait = backoff;
            let last = attempt == ATTEMPTS;
            let mut request = match method {
                Method::Post => self.agent.post(&url),
                Method::Delete => self.agent.delete(&url).force_send_body(),
            }
            .header("Accept", "application/json")
            .content_type("application/json");
            if let Some(token) = private_token {
                request = request.header("PRIVATE-TOKEN", token.expose());
            }
            tracing::debug!("{} {url} (attempt {attempt})", method.as_str());
            match request.send(text.as_str()) {
                Ok(mut response) => {
                    let retry_after = header(&response, "Retry-After");
                    let answer = Answer {
                        status: response.status().as_u16(),
                        location: header(&response, "Location"),
                        body: response.body_mut().read_to_string().unwrap_or_default(),
                    };
                    let status = answer.status;
                    if status == 429 {
                        let limit = RateLimit {
                            retry_after: retry_after.as_deref(),
                            attempt,
                            last,
                        };
                        wait = self.rate_limited(
                            endpoint,
                            &answer,
                            secrets,
                            &limit,
                            &mut rate_limited,
                            backoff,
                        )?;
                        tracing::warn!(
                            "{} {url} answered 429 (rate limited{}); trying again in {} ms",
                            method.as_str(),
                            retry_after
                                .as_deref()
                                .map(|seconds| format!(", Retry-After: {seconds} s"))
                                .unwrap_or_default(),
                            wait.as_millis()
                        );
                    } else if status >= 500 && repeatable == Repeatable::Yes && !last {
                        tracing::warn!(
                            "{} {url} answered {status}; trying again in {} ms",
                            method.as_str(),
                            backoff.as_millis()
                        );
                    } else {
                        if status >= 500 && repeatable == Repeatable::OnlyUnsent {
                            return Err(self
                                .unexpected(endpoint, &answer, secrets)
                                .context(MayHaveArrived));
                        }
                        return Ok(answer);
                    }
                }
                Err(error) => {
                    let unsent = never_sent(&error);
                    let message = scrub(&error.to_string(), secrets);
                    if last || !(unsent || repeatable == Repeatable::Yes) || !retryable(&error) {
                        let mut failure = anyhow!("{message}").context(format!(
                            "cannot reach GitLab at `{}` ({} {url})",
                            self.base.trim_end_matches("/api/v4/"),
                            method.as_str()
                        ));
                        if attempt > 1 {
                            failure = failure.context(format!("gave up after {attempt} attempts"));
                        }
                        if message.to_ascii_lowercase().contains("certificate") {
                            failure = failure.context(
                                "GitLab's TLS certificate is not trusted: set the runner's `tls_ca_file` to the CA that signed it",
                            );
                        }
                        if !unsent && repeatable == Repeatable::OnlyUnsent {
                            failure = failure.context(MayHaveArrived);
                        }
                        return Err(failure);
                    }
                    tracing::warn!(
                        "{} {url} failed ({message}); trying again in {} ms",
                        method.as_str(),
                        backoff.as_millis()
                    );
                }
            }
            std::thread::sleep(wait);
            backoff *= 2;
        }
        unreachable!("the last attempt returns")
    }

    /// How long to wait after a 429, adding a `Retry-After` to what this call waited; an error
    /// when GitLab asks for more than berth waits or this was the last attempt.
    fn rate_limited(
        &self,
        endpoint: &str,
        answer: &Answer,
        secrets: &[&Secret],
        limit: &RateLimit<'_>,
        waited: &mut Duration,
        backoff: Duration,
    ) -> Result<Duration> {
        let asked = rate_limit_wait(limit.retry_after, *waited, backoff)
            .map_err(|why| self.unexpected(endpoint, answer, secrets).context(why))?;
        if limit.last {
            return Err(self.unexpected(endpoint, answer, secrets).context(format!(
                "GitLab was still rate-limiting after {} attempts ({} s waited for its Retry-After)",
                limit.attempt,
                waited.as_secs()
            )));
        }
        if limit.retry_after.is_some() {
            *waited += asked;
        }
        Ok(asked)
    }

    /// An answer GitLab gives on purpose, with the meaning berth knows for it.
    fn refusal(
        &self,
        endpoint: &str,
        answer: &Answer,
        secrets: &[&Secret],
        meaning: &str,
    ) -> anyhow::Error {
        let said = gitlab_message(&answer.body)
            .map(|message| format!(" (GitLab said: {})", scrub(&message, secrets)))
            .unwrap_or_default();
        anyhow!("{meaning}{said}").context(format!("GitLab refused `{}`", self.url(endpoint)))
    }

    fn unexpected(&self, endpoint: &str, answer: &Answer, secrets: &[&Secret]) -> anyhow::Error {
        // Never followed: the token would go wherever the redirect points. The usual cause is
        // a profile's `http://` URL, or an old host name, that GitLab sends on elsewhere.
        if (300..400).contains(&answer.status) {
            let to = answer.location.as_deref().map_or_else(
                || "no Location given".to_owned(),
                |location| format!("`{}`", scrub(location, secrets)),
            );
            return anyhow!(
                "GitLab redirected ({}) to {to}; berth does not follow redirects, which would send the token there too: set the runner's `url` to the address GitLab answers at",
                answer.status
            )
            .context(format!("unexpected answer from `{}`", self.url(endpoint)));
        }
        let said = gitlab_message(&answer.body)
            .map(|message| format!(": {}", scrub(&message, secrets)))
            .unwrap_or_default();
        anyhow!("GitLab answered {}{said}", answer.status)
            .context(format!("unexpected answer from `{}`", self.url(endpoint)))
    }
}

fn add_server_params(body: &mut Json, params: &ServerParams) {
    if let Some(tags) = &params.tag_list {
        body["tag_list"] = json!(tags);
    }
    if let Some(level) = &params.access_level {
        body["access_level"] = json!(level);
    }
    if let Some(seconds) = params.maximum_timeout {
        body["maximum_timeout"] = json!(seconds);
    }
    if let Some(note) = &params.maintenance_note {
        body["maintenance_note"] = json!(note);
    }
}

/// The architecture as Go (and so GitLab's runner views) names it.
fn go_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// What berth says for GitLab's 403 `Runner is orphaned`.
const ORPHANED_403: &str =
    "runner is orphaned (403): its project or group is gone; create a new runner in GitLab";

/// A 403 that is GitLab's `forbidden!('Runner is orphaned')` (`authenticate_runner!` with
/// `reject_orphaned_runners`, GitLab 17.x on), not an unknown token.
fn orphaned(answer: &Answer) -> bool {
    gitlab_message(&answer.body).is_some_and(|message| message.contains("Runner is orphaned"))
}

/// How long to wait before repeating a call GitLab answered 429: its `Retry-After` (whole
/// seconds, as GitLab and gitlab-runner read it), else the backoff. `Err` when GitLab asks for
/// more than is left of [`MAX_RATE_LIMIT_WAIT`], saying how long it asked for.
fn rate_limit_wait(
    retry_after: Option<&str>,
    waited: Duration,
    backoff: Duration,
) -> Result<Duration, String> {
    let Some(seconds) = retry_after.and_then(|text| text.trim().parse::<u64>().ok()) else {
        return Ok(backoff);
    };
    let asked = Duration::from_secs(seconds);
    if waited + asked > MAX_RATE_LIMIT_WAIT {
        return Err(format!(
            "GitLab asks to retry after {seconds} s (Retry-After), more than berth waits in one run ({} s in all); the next run tries again",
            MAX_RATE_LIMIT_WAIT.as_secs()
        ));
    }
    Ok(asked)
}

/// Reads `RunnerRegistrationDetails`: `{"id": 1, "token": "...", "token_expires_at": null}`.
/// `verify` answers with the token it was given; `known` keeps that one.
fn registration(body: &str, known: Option<&Secret>) -> Result<Registration> {
    let value: Json = serde_json::from_str(body).map_err(|_| {
        anyhow!("GitLab's answer is not the JSON berth expects (no runner id in it)")
    })?;
    let id = value
        .get("id")
        .and_then(|id| {
            id.as_i64()
                .or_else(|| id.as_str().and_then(|text| text.parse().ok()))
        })
        .filter(|id| *id > 0)
        .context("GitLab's answer has no runner id")?;
    let token = match (known, value.get("token").and_then(Json::as_str)) {
        (Some(known), _) => known.clone(),
        (None, Some(token)) if !token.is_empty() => Secret::new(token),
        (None, _) => bail!("GitLab's answer has no runner token"),
    };
    let token_expires_at = value
        .get("token_expires_at")
        .and_then(Json::as_str)
        .map(str::to_owned);
    Ok(Registration {
        id,
        token,
        token_expires_at,
    })
}

/// GitLab's error text: `{"message": "..."}`, `{"message": {"field": ["..."]}}` or
/// `{"error": "..."}` (parameter validation).
fn gitlab_message(body: &str) -> Option<String> {
    let value: Json = serde_json::from_str(body).ok()?;
    let message = value.get("message").or_else(|| value.get("error"))?;
    Some(match message {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    })
    .map(|text| text.chars().take(300).collect())
}

/// A header's value as text, when it has one.
fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn scrub(text: &str, secrets: &[&Secret]) -> String {
    secrets
        .iter()
        .fold(text.to_owned(), |text, secret| secret.scrub(&text))
}

/// True when the error happened before the request could reach GitLab.
fn never_sent(error: &ureq::Error) -> bool {
    use std::io::ErrorKind;
    match error {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(timeout) => {
            matches!(timeout, ureq::Timeout::Connect | ureq::Timeout::Resolve)
        }
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::AddrNotAvailable
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
        ),
        _ => false,
    }
}

/// Errors worth another try: the network, not the configuration. TLS failures (an untrusted
/// certificate) arrive as invalid data and would fail the same way again.
fn retryable(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::Io(io) => io.kind() != std::io::ErrorKind::InvalidData,
        ureq::Error::Timeout(_)
        | ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::Protocol(_) => true,
        _ => false,
    }
}
/// The system's CA certificates, read once per run.
fn system_roots() -> &'static [ureq::tls::Certificate<'static>] {
    static ROOTS: OnceLock<Vec<ureq::tls::Certificate<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::debug!("while reading the system's CA certificates: {error}");
        }
        found
            .certs
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
            .collect()
    })
}

/// The system's CAs plus those in `tls_ca_file`. Without any system CAs (a minimal container),
/// Mozilla's bundled roots stand in for them.
fn root_certs(host: &Host, tls_ca_file: Option<&HostPath>) -> Result<ureq::tls::RootCerts> {
    let mut certs: Vec<ureq::tls::Certificate<'static>> = system_roots().to_vec();
    if let Some(file) = tls_ca_file {
        certs.extend(read_ca_file(host, file)?);
    } else if certs.is_empty() {
        tracing::debug!("no system CA certificates found; using Mozilla's bundled roots");
        return Ok(ureq::tls::RootCerts::WebPki);
    }
    Ok(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs)))
}

/// Reads the PEM certificates in a `tls_ca_file`.
pub(crate) fn read_ca_file(
    host: &Host,
    file: &HostPath,
) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let bytes = host
        .read_optional(file)
        .and_then(|text| text.with_context(|| format!("`{file}` does not exist")))
        .with_context(|| format!("failed to read `tls_ca_file` `{file}`"))?;
    let bytes = bytes.into_bytes();
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&bytes) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(error) => {
                return Err(
                    anyhow!("{error}").context(format!("`{file}` is not a PEM certificate file"))
                );
            }
        }
    }
    if certs.is_empty() {
        bail!("`{file}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    }
    Ok(certs)
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests build fixture trees beside the host layer"
)]
#[path = "gitlab_tests.rs"]
mod tests;
