//! A profile repository served over git's smart HTTP on 127.0.0.1, for `[source]` (issue 20).
//!
//! `git http-backend` (git's own CGI program, what GitLab's Workhorse speaks for) runs behind a
//! few lines of tiny_http written here, rather than python3's `http.server` CGI handler: that
//! handler is deprecated (removed in Python 3.13), runs CGI only for paths under
//! `/cgi-bin/`, and has no basic auth; tiny_http is already the GitLab stand-in's server, so no
//! tool and no crate is added. Basic auth checks the deploy token as GitLab does (401 with a
//! `WWW-Authenticate` challenge otherwise). The server can go down and come back on its port.
//!
//! [`Repo`] makes the commits: a working repository pushed into the served bare one, signed
//! with keys `ssh-keygen` made (alice, in the allowed signers; mallory, in nobody's).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread::JoinHandle,
};

/// The deploy token of the tests: never to be seen in argv, output or berth's state.
pub const DEPLOY_TOKEN: &str = "gldt-berthtestdeploytoken0a1b2c";
pub const DEPLOY_USER: &str = "gitlab+deploy-token-7";

pub struct GitServer {
    port: u16,
    projects: PathBuf,
    running: Option<(Arc<tiny_http::Server>, JoinHandle<()>)>,
    /// Requests answered (each fetch and ls-remote makes at least one).
    pub requests: Arc<AtomicUsize>,
}

impl GitServer {
    /// Serves the bare repositories under `projects`.
    pub fn start(projects: &Path) -> Self {
        let mut server = Self {
            port: 0,
            projects: projects.to_owned(),
            running: None,
            requests: Arc::default(),
        };
        server.up();
        server
    }

    pub fn url(&self, project: &str) -> String {
        format!("http://127.0.0.1:{}/{project}", self.port)
    }

    /// Starts serving (again, on the same port once it has one).
    pub fn up(&mut self) {
        let server = Arc::new(
            tiny_http::Server::http(format!("127.0.0.1:{}", self.port)).expect("bind loopback"),
        );
        self.port = server.server_addr().to_ip().unwrap().port();
        let thread = {
            let server = Arc::clone(&server);
            let projects = self.projects.clone();
            let requests = Arc::clone(&self.requests);
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    requests.fetch_add(1, Ordering::SeqCst);
                    serve(&projects, request);
                }
            })
        };
        self.running = Some((server, thread));
    }

    /// Stops serving: the port refuses connections, as a GitLab that is down.
    pub fn down(&mut self) {
        if let Some((server, thread)) = self.running.take() {
            server.unblock();
            let _ = thread.join();
        }
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.down();
    }
}

fn header(request: &tiny_http::Request, name: &'static str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|header| header.field.equiv(name))
        .map(|header| header.value.as_str().to_owned())
}

fn serve(projects: &Path, mut request: tiny_http::Request) {
    let expected = format!(
        "Basic {}",
        base64(format!("{DEPLOY_USER}:{DEPLOY_TOKEN}").as_bytes())
    );
    if header(&request, "Authorization").as_deref() != Some(expected.as_str()) {
        let challenge =
            tiny_http::Header::from_bytes("WWW-Authenticate", "Basic realm=\"GitLab\"").unwrap();
        let _ = request.respond(
            tiny_http::Response::from_string("HTTP Basic: Access denied\n")
                .with_status_code(401)
                .with_header(challenge),
        );
        return;
    }
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", projects)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("REQUEST_METHOD", request.method().as_str())
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", DEPLOY_USER)
        .env("REMOTE_ADDR", "127.0.0.1");
    for (name, variable) in [
        ("Content-Type", "CONTENT_TYPE"),
        ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
        ("Git-Protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(value) = header(&request, name) {
            cgi.env(variable, value);
        }
    }
    let mut child = cgi
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("git http-backend runs");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(&body);
    }
    let output = child.wait_with_output().unwrap();
    // CGI: headers, a blank line, the body.
    let split = output
        .stdout
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| (at, at + 4))
        .or_else(|| {
            output
                .stdout
                .windows(2)
                .position(|window| window == b"\n\n")
                .map(|at| (at, at + 2))
        })
        .unwrap_or((output.stdout.len(), output.stdout.len()));
    let head = String::from_utf8_lossy(&output.stdout[..split.0]).into_owned();
    let mut response = tiny_http::Response::from_data(output.stdout[split.1..].to_vec());
    let mut status = 200;
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("Status") {
            status = value
                .split_whitespace()
                .next()
                .and_then(|code| code.parse().ok())
                .unwrap_or(500);
        } else if let Ok(header) = tiny_http::Header::from_bytes(name.trim(), value) {
            response = response.with_header(header);
        }
    }
    let _ = request.respond(response.with_status_code(status));
}

/// RFC 4648 base64, for the Basic authorization header the server expects.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (index, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if index <= chunk.len() {
                char::from(ALPHABET[((n >> shift) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

/// Who signs a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// In the allowed signers, as `alice@example.com`.
    Alice,
    /// A key of nobody's allowed signers.
    Mallory,
    Unsigned,
}

/// A working repository whose commits are pushed into `<projects>/profiles.git`.
pub struct Repo {
    dir: PathBuf,
    work: PathBuf,
    bare: PathBuf,
}

impl Repo {
    /// A repository with no commit yet, and the keys.
    pub fn new(dir: &Path, projects: &Path) -> Self {
        let repo = Self {
            dir: dir.to_owned(),
            work: dir.join("work"),
            bare: projects.join("profiles.git"),
        };
        std::fs::create_dir_all(&repo.work).unwrap();
        std::fs::create_dir_all(projects).unwrap();
        for (name, comment) in [("alice", "alice@laptop"), ("mallory", "mallory@laptop")] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(dir.join(name))
                .status()
                .expect("ssh-keygen runs (Debian: openssh-client)");
            assert!(status.success());
        }
        repo.git_in(projects, &["init", "--quiet", "--bare", "profiles.git"]);
        repo.git(&["init", "--quiet", "--initial-branch", "stable"]);
        repo
    }

    /// git's allowed-signers file naming alice's key.
    pub fn allowed_signers(&self) -> String {
        let key = std::fs::read_to_string(self.dir.join("alice.pub")).unwrap();
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        format!("alice@example.com namespaces=\"git\" {}\n", key.join(" "))
    }

    fn git_in(&self, dir: &Path, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Alice")
            .env("GIT_AUTHOR_EMAIL", "alice@example.com")
            .env("GIT_COMMITTER_NAME", "Alice")
            .env("GIT_COMMITTER_EMAIL", "alice@example.com")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    pub fn git(&self, args: &[&str]) -> String {
        self.git_in(&self.work, args)
    }

    pub fn write(&self, path: &str, text: &str) -> &Self {
        let path = self.work.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    /// Commits everything as `signer`; returns the commit.
    pub fn commit(&self, message: &str, signer: Signer) -> String {
        self.git(&["add", "--all"]);
        let key = match signer {
            Signer::Alice => Some(self.dir.join("alice")),
            Signer::Mallory => Some(self.dir.join("mallory")),
            Signer::Unsigned => None,
        };
        let mut args = vec![
            "-c".to_owned(),
            "gpg.format=ssh".to_owned(),
            "commit".to_owned(),
            "--quiet".to_owned(),
            "--allow-empty".to_owned(),
            "-m".to_owned(),
            message.to_owned(),
        ];
        if let Some(key) = key {
            args.splice(
                0..0,
                [
                    "-c".to_owned(),
                    format!("user.signingkey={}", key.display()),
                ],
            );
            args.push("-S".to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.git(&args);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Points `branch` of the served repository at the working repository's HEAD, forced.
    pub fn push(&self, branch: &str) {
        let bare = self.bare.display().to_string();
        self.git(&[
            "push",
            "--quiet",
            "--force",
            &bare,
            &format!("HEAD:refs/heads/{branch}"),
        ]);
    }

    /// Moves the working repository's HEAD to `commit` (a rewind, for a force-push).
    pub fn reset(&self, commit: &str) {
        self.git(&["reset", "--quiet", "--hard", commit]);
    }

    /// The checkout's directory, for `validate --source`.
    pub fn work(&self) -> &Path {
        &self.work
    }
}
