//! The Engine API side of `FaultDocker` (issue 24): an HTTP/1.1 proxy on a unix socket of the
//! test's own, between berth (its `DOCKER_HOST`) and the private dockerd. It logs every request
//! berth makes, counts the changes of one kind and, at the Nth, kills berth or the daemon, then
//! forwards the request anyway or drops it: the same faults the `docker` wrapper gives at the
//! CLI, now at the request berth sends instead of the command it runs.
//!
//! It is a test stand-in for nothing: the real dockerd answers every request it forwards. It
//! reads HTTP as the Engine API speaks it (docs.docker.com/engine/api: request bodies with a
//! Content-Length or chunked, answers with a Content-Length, chunked (`/events`, a pull's
//! progress) or until the connection closes, and `101 UPGRADED` for an attached exec, after
//! which both directions are raw bytes).
//!
//! It shares its arming with the wrapper through the files in the fault directory (`armed`,
//! `count`, `fired`, `settled`, `calls.log`), so a count runs across both doors in order.

use std::{
    fs,
    io::{self, BufRead, BufReader, Read, Write},
    os::{
        fd::AsFd as _,
        unix::net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// The proxy: listening until dropped.
pub struct FaultProxy {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
}

/// What a fault does, read from the shared `armed` file (written by `FaultDocker::arm`).
struct Armed {
    kind: String,
    nth: usize,
    kill_dockerd: bool,
    proceed: bool,
}

impl FaultProxy {
    /// Listens at `dir/engine.sock` and forwards to the daemon at `daemon_socket`; the daemon's
    /// PID for a dockerd fault is read from `pidfile` when it fires.
    pub fn start(dir: &Path, daemon_socket: &Path, pidfile: &Path) -> Self {
        let socket = dir.join("engine.sock");
        let _ = fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            daemon: daemon_socket.to_owned(),
            pidfile: pidfile.to_owned(),
        });
        {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            let shared = Arc::clone(&shared);
                            std::thread::spawn(move || {
                                let _ = shared.serve(client);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        Self { socket, stop }
    }

    /// `DOCKER_HOST` for berth.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Shared {
    dir: PathBuf,
    daemon: PathBuf,
    pidfile: PathBuf,
}

/// What a fault did to one request.
enum Fired {
    No,
    /// Killed; the request still goes to the daemon, whose answer nobody hears.
    Proceed,
    /// Killed; the request is dropped.
    Drop,
}

/// One request as read from berth: its head, its body, and what its head says.
struct Request {
    head: Vec<u8>,
    body: Vec<u8>,
    method: String,
    target: String,
}

impl Shared {
    /// Serves one connection of berth's: request by request, as HTTP/1.1 keeps it alive.
    fn serve(&self, client: UnixStream) -> io::Result<()> {
        let peer = peer_pid(&client);
        let from_berth = peer.is_some_and(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "berth")
        });
        let mut from_client = BufReader::new(client.try_clone()?);
        let mut to_client = client;
        let daemon = UnixStream::connect(&self.daemon)?;
        let mut from_daemon = BufReader::new(daemon.try_clone()?);
        let mut to_daemon = daemon;
        while let Some(request) = read_request(&mut from_client)? {
            let line = format!("{} {}", request.method, request.target);
            let mut faulted = false;
            if from_berth {
                self.append("calls.log", &line);
                match self.fire_at(&request, &line, peer) {
                    Fired::No => {}
                    Fired::Proceed => faulted = true,
                    Fired::Drop => {
                        // The request never reaches the daemon.
                        self.touch("settled");
                        return Ok(());
                    }
                }
            }
            let forwarded = to_daemon
                .write_all(&request.head)
                .and_then(|()| to_daemon.write_all(&request.body));
            let relayed = forwarded.and_then(|()| {
                relay_answer(
                    &request,
                    &mut from_daemon,
                    &mut to_client,
                    &mut to_daemon,
                    faulted,
                )
            });
            if faulted {
                // The daemon has done what berth asked, or died doing it.
                self.touch("settled");
            }
            match relayed? {
                Relayed::More => {}
                Relayed::Closed => return Ok(()),
            }
        }
        Ok(())
    }

    /// Counts `request` when it is of the armed kind and, at the Nth, kills as armed.
    fn fire_at(&self, request: &Request, line: &str, peer: Option<i32>) -> Fired {
        let Some(armed) = self.armed().filter(|_| !self.has("fired")) else {
            return Fired::No;
        };
        let kind = kind_of(&request.method, &request.target);
        if !matches(&armed.kind, &request.method, &kind) || self.bump() != armed.nth {
            return Fired::No;
        }
        fs::write(self.dir.join("fired"), format!("{line}\n")).unwrap();
        if armed.kill_dockerd {
            self.kill_dockerd();
        } else if let Some(pid) = peer {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if armed.proceed {
            Fired::Proceed
        } else {
            Fired::Drop
        }
    }

    fn armed(&self) -> Option<Armed> {
        let text = fs::read_to_string(self.dir.join("armed")).ok()?;
        let value = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("{key}=")))
                .map(|value| value.trim_matches('\'').to_owned())
        };
        Some(Armed {
            kind: value("MATCH")?,
            nth: value("NTH")?.parse().ok()?,
            kill_dockerd: value("TARGET")? == "dockerd",
            proceed: value("THEN")? == "proceed",
        })
    }

    /// One more call of the armed kind: the shared count, as the wrapper keeps it.
    fn bump(&self) -> usize {
        let path = self.dir.join("count");
        let count = fs::read_to_string(&path)
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok())
            .unwrap_or(0)
            + 1;
        fs::write(path, format!("{count}\n")).unwrap();
        count
    }

    /// SIGKILLs the private dockerd and waits until it is gone, as the wrapper does.
    fn kill_dockerd(&self) {
        let Some(pid) = fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
        else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        for _ in 0..200 {
            if nix::sys::signal::kill(pid, None).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn append(&self, file: &str, line: &str) {
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(file))
            .unwrap();
        writeln!(log, "{line}").unwrap();
    }

    fn has(&self, file: &str) -> bool {
        self.dir.join(file).exists()
    }

    fn touch(&self, file: &str) {
        fs::write(self.dir.join(file), b"").unwrap();
    }
}

/// The PID of the process at the other end of a unix socket (`SO_PEERCRED`).
fn peer_pid(stream: &UnixStream) -> Option<i32> {
    nix::sys::socket::getsockopt(&stream.as_fd(), nix::sys::socket::sockopt::PeerCredentials)
        .ok()
        .map(|credentials| credentials.pid())
}

/// The request's kind, in the words the `docker` wrapper counts by (`create`, `rm`,
/// `network rm`, `image rm`, `pull`, ...); a request it has no word for is `METHOD /path`.
pub fn kind_of(method: &str, target: &str) -> String {
    let path = target.split('?').next().unwrap_or_default();
    // `/v1.41/containers/…` and `/containers/…` are the same request.
    let path = match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
            rest.find('/').map_or("/", |slash| &rest[slash..])
        }
        _ => path,
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let word = match (method, parts.as_slice()) {
        ("POST", ["containers", "create"]) => "create",
        ("POST", ["containers", _, "exec"]) => "exec",
        ("POST", ["exec", _, "start"]) => "exec start",
        ("POST", ["containers", _, action]) => action,
        ("DELETE", ["containers", _]) => "rm",
        ("POST", ["networks", "create"]) => "network create",
        ("POST", ["networks", _, "connect"]) => "network connect",
        ("POST", ["networks", _, "disconnect"]) => "network disconnect",
        ("DELETE", ["networks", _]) => "network rm",
        ("POST", ["volumes", "create"]) => "volume create",
        ("DELETE", ["volumes", _]) => "volume rm",
        ("POST", ["images", "create"]) => "pull",
        ("DELETE", ["images", ..]) => "image rm",
        ("POST", ["build", "prune"]) => "builder prune",
        ("GET", ["info"]) => "info",
        _ => return format!("{method} {path}"),
    };
    word.to_owned()
}

/// True when a request of `kind` counts for an armed `wanted`: the kind itself or a longer one
/// it starts (`network` counts every network change), or `*`: any request that changes
/// something (not a GET or HEAD).
fn matches(wanted: &str, method: &str, kind: &str) -> bool {
    if wanted == "*" {
        return method != "GET" && method != "HEAD";
    }
    kind == wanted || kind.starts_with(&format!("{wanted} "))
}

/// Reads one request (head and body) from berth; `None` when berth closed the connection.
fn read_request(from: &mut BufReader<UnixStream>) -> io::Result<Option<Request>> {
    let Some(head) = read_head(from)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut words = text.split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let target = words.next().unwrap_or_default().to_owned();
    let mut body = Vec::new();
    match framing(&text) {
        Framing::Length(length) => {
            body.resize(length, 0);
            from.read_exact(&mut body)?;
        }
        Framing::Chunked => copy_chunked(from, &mut body, &mut io::sink())?,
        // A request without a length has no body.
        Framing::UntilClose => {}
    }
    Ok(Some(Request {
        head,
        body,
        method,
        target,
    }))
}

/// The head of a request or answer, through its blank line; `None` at a clean end of stream.
fn read_head(from: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        from.read_until(b'\n', &mut head)?;
        if head.len() == before {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if head.ends_with(b"\r\n\r\n") || head == b"\r\n" {
            return Ok(Some(head));
        }
    }
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn framing(head: &str) -> Framing {
    if header(head, "transfer-encoding").is_some_and(|value| value.eq_ignore_ascii_case("chunked"))
    {
        Framing::Chunked
    } else if let Some(length) = header(head, "content-length").and_then(|v| v.parse().ok()) {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    }
}

enum Relayed {
    /// The connection carries on: the next request may come.
    More,
    /// The answer ran until the connection closed, or turned it into a raw stream.
    Closed,
}

/// A writer to berth that may be dead: once berth is gone (killed by the fault), the answer
/// is still read to its end from the daemon, only not delivered.
struct ToClient<'a> {
    client: &'a mut UnixStream,
    /// Keep reading after berth is gone (the faulted request: "settled" means answered).
    drain: bool,
    gone: bool,
}

impl Write for ToClient<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if !self.gone {
            match self.client.write_all(bytes) {
                Ok(()) => {}
                Err(_) if self.drain => self.gone = true,
                Err(error) => return Err(error),
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.gone {
            let _ = self.client.flush();
        }
        Ok(())
    }
}

/// Relays the daemon's answer to `request` to berth, however the answer is framed.
fn relay_answer(
    request: &Request,
    from_daemon: &mut BufReader<UnixStream>,
    client: &mut UnixStream,
    to_daemon: &mut UnixStream,
    faulted: bool,
) -> io::Result<Relayed> {
    let mut to_client = ToClient {
        client,
        drain: faulted,
        gone: false,
    };
    let Some(head) = read_head(from_daemon)? else {
        return Ok(Relayed::Closed);
    };
    to_client.write_all(&head)?;
    to_client.flush()?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    if status == 101 {
        // An attached exec: raw bytes both ways until either side closes.
        let mut up = to_client.client.try_clone()?;
        let mut down = to_daemon.try_clone()?;
        let buffered = from_daemon.buffer().to_vec();
        up.write_all(&buffered)?;
        let mut daemon_reader = from_daemon.get_ref().try_clone()?;
        let upward = std::thread::spawn(move || io::copy(&mut daemon_reader, &mut up));
        let mut client_reader = to_client.client.try_clone()?;
        let _ = io::copy(&mut client_reader, &mut down);
        let _ = down.shutdown(std::net::Shutdown::Write);
        let _ = upward.join();
        return Ok(Relayed::Closed);
    }
    let no_body = request.method == "HEAD" || status == 204 || status == 304 || status < 200;
    if no_body {
        return Ok(Relayed::More);
    }
    match framing(&text) {
        Framing::Length(length) => {
            io::copy(
                &mut from_daemon.by_ref().take(length as u64),
                &mut to_client,
            )?;
            to_client.flush()?;
            Ok(Relayed::More)
        }
        Framing::Chunked => {
            copy_chunked(from_daemon, &mut io::sink(), &mut to_client)?;
            Ok(Relayed::More)
        }
        Framing::UntilClose => {
            io::copy(from_daemon, &mut to_client)?;
            Ok(Relayed::Closed)
        }
    }
}

/// Copies a chunked body as it comes, chunk by chunk (a stream of events is never whole):
/// every byte to `raw` and `relay` (the framing included), through the last chunk and trailer.
fn copy_chunked(
    from: &mut impl BufRead,
    raw: &mut impl Write,
    relay: &mut impl Write,
) -> io::Result<()> {
    loop {
        let mut size_line = Vec::new();
        from.read_until(b'\n', &mut size_line)?;
        if size_line.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        raw.write_all(&size_line)?;
        relay.write_all(&size_line)?;
        let size_text = String::from_utf8_lossy(&size_line);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap_or_default().trim(), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // The trailer, through its blank line.
            loop {
                let mut line = Vec::new();
                from.read_until(b'\n', &mut line)?;
                raw.write_all(&line)?;
                relay.write_all(&line)?;
                if line == b"\r\n" || line.is_empty() {
                    relay.flush()?;
                    return Ok(());
                }
            }
        }
        let mut chunk = vec![0; size + 2];
        from.read_exact(&mut chunk)?;
        raw.write_all(&chunk)?;
        relay.write_all(&chunk)?;
        relay.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::kind_of;

    #[test]
    fn requests_are_counted_in_the_wrappers_words() {
        assert_eq!(kind_of("POST", "/v1.41/containers/create?name=x"), "create");
        assert_eq!(kind_of("POST", "/containers/abc/start"), "start");
        assert_eq!(
            kind_of("DELETE", "/v1.41/containers/abc?force=true&v=true"),
            "rm"
        );
        assert_eq!(kind_of("DELETE", "/networks/n"), "network rm");
        assert_eq!(kind_of("POST", "/images/create?fromImage=a&tag=b"), "pull");
        assert_eq!(kind_of("DELETE", "/images/sha256:abc"), "image rm");
        assert_eq!(kind_of("GET", "/v1.41/info"), "info");
        assert_eq!(
            kind_of("GET", "/containers/x/json"),
            "GET /containers/x/json"
        );
    }
}
