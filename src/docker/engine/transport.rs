//! How the Engine API client reaches the daemon, and how much of an answer it reads (issue 24).
//!
//! berth runs as root beside strangers' jobs, and a DooD job can make containers, networks and
//! volumes (with huge labels, berth's own labels) that berth's listings and `/events` then read.
//! bollard reads every answer whole and splits a stream at newlines with a buffer that grows
//! until one comes, so this transport, given to bollard as its custom transport, caps what
//! berth reads on the socket itself: a JSON answer at [`ANSWER_LIMIT`] bytes (its head and
//! chunk framing included), and a line of a streamed answer (`/events`, a pull's progress) at
//! [`LINE_LIMIT`]. Past a cap the read fails, the connection is dropped and the engine is told
//! which cap it was ([`Tripped`]); nothing past it is buffered.
//!
//! One connection per request, as bollard's own transports do (no pool): what is counted on a
//! connection is one answer. It speaks HTTP/1.1 over a unix socket, TCP, or TCP with the CLI's
//! mutual TLS (`ca.pem` the only root, `cert.pem`/`key.pem` the client's).

use std::{
    io,
    path::Path,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
};

use bollard::{BollardRequest, errors::Error as BollardError};
use hyper::{Response, body::Incoming, header::HOST};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const MIB: u64 = 1024 * 1024;

/// The most berth reads of one answer. A listing of thousands of containers is a few MiB (an
/// entry is 1–2 KiB without huge labels); 64 MiB leaves room for a host with tens of thousands
/// of objects and keeps a hostile label, or a daemon gone wrong, from costing more than that.
pub(crate) const ANSWER_LIMIT: u64 = 64 * MIB;

/// The most berth reads of one line of a stream: an event or a pull's progress message is a
/// few hundred bytes; a label can make an event bigger, never legitimately a megabyte.
pub(crate) const LINE_LIMIT: u64 = MIB;

/// Which cap a read ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    /// The whole answer, at [`ANSWER_LIMIT`].
    Answer,
    /// One line of a streamed answer, at [`LINE_LIMIT`].
    Line,
}

impl Cap {
    /// Streams of JSON lines are capped per line (they last as long as berth listens); every
    /// other answer whole.
    fn of(path: &str) -> Self {
        let path = path.trim_end_matches('/');
        if path.ends_with("/events") || path.ends_with("/images/create") {
            Self::Line
        } else {
            Self::Answer
        }
    }

    pub(crate) fn limit(self) -> u64 {
        match self {
            Self::Answer => ANSWER_LIMIT,
            Self::Line => LINE_LIMIT,
        }
    }
}

/// Where a connection that ran into its cap says so, for the engine to name the cap in its
/// error: bollard turns a stream's read error into text, so the error itself may not survive.
pub(crate) type Tripped = Arc<Mutex<Option<Cap>>>;

/// How to reach the daemon.
#[derive(Clone)]
pub(crate) enum Way {
    Unix(std::path::PathBuf),
    /// `host:port`.
    Tcp(String),
    Tls {
        /// `host:port`.
        address: String,
        name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    },
}

impl Way {
    /// The CLI's mutual TLS from the certificates' directory: `ca.pem` is the only root, as
    /// the CLI trusts it alone when `DOCKER_TLS_VERIFY` is set.
    pub(crate) fn tls(address: &str, certs: &Path) -> Result<Self, BollardError> {
        let unreadable = |file: &str| {
            let path = certs.join(file);
            move |_| BollardError::CertPathError { path }
        };
        let mut roots = rustls::RootCertStore::empty();
        for ca in
            CertificateDer::pem_file_iter(certs.join("ca.pem")).map_err(unreadable("ca.pem"))?
        {
            roots.add(ca.map_err(unreadable("ca.pem"))?).map_err(|_| {
                BollardError::CertParseError {
                    path: certs.join("ca.pem"),
                }
            })?;
        }
        let chain = CertificateDer::pem_file_iter(certs.join("cert.pem"))
            .map_err(unreadable("cert.pem"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(unreadable("cert.pem"))?;
        let key =
            PrivateKeyDer::from_pem_file(certs.join("key.pem")).map_err(unreadable("key.pem"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| {
                builder
                    .with_root_certificates(roots)
                    .with_client_auth_cert(chain, key)
            })
            .map_err(|_| BollardError::CertParseError {
                path: certs.join("key.pem"),
            })?;
        let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
        let name =
            ServerName::try_from(host.trim_matches(['[', ']']).to_owned()).map_err(|_| {
                BollardError::UnsupportedURISchemeError {
                    uri: address.to_owned(),
                }
            })?;
        Ok(Self::Tls {
            address: address.to_owned(),
            name,
            config: Arc::new(config),
        })
    }

    /// The `Host` header: the socket's is a name of Docker's own, as the CLI sends.
    fn host_header(&self) -> &str {
        match self {
            Self::Unix(_) => "docker",
            Self::Tcp(address) | Self::Tls { address, .. } => address,
        }
    }
}

/// Sends one request on a connection of its own, capped as [`Cap::of`] its path says.
pub(crate) async fn send(
    way: Way,
    tripped: Tripped,
    mut request: BollardRequest,
) -> Result<Response<Incoming>, BollardError> {
    let cap = Cap::of(request.uri().path());
    // Origin-form on the wire (bollard builds an absolute URI for its own transports).
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .parse()?;
    *request.uri_mut() = path;
    let host = hyper::header::HeaderValue::from_str(way.host_header())
        .map_err(hyper::http::Error::from)?;
    request.headers_mut().insert(HOST, host);
    match &way {
        Way::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path).await?;
            exchange(Capped::new(stream, cap, tripped), request).await
        }
        Way::Tcp(address) => {
            let stream = tokio::net::TcpStream::connect(address).await?;
            exchange(Capped::new(stream, cap, tripped), request).await
        }
        Way::Tls {
            address,
            name,
            config,
        } => {
            let stream = tokio::net::TcpStream::connect(address).await?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name.clone(), stream)
                .await?;
            // Counted after decryption: what berth reads of the answer.
            exchange(Capped::new(stream, cap, tripped), request).await
        }
    }
}

async fn exchange<S>(
    io: Capped<S>,
    request: BollardRequest,
) -> Result<Response<Incoming>, BollardError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    // Driven by the engine's runtime for as long as the answer is read; upgrades for exec's
    // attached streams.
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    Ok(sender.send_request(request).await?)
}

/// Why a read stopped: a cap was reached.
#[derive(Debug, thiserror::Error)]
#[error("berth stopped reading an answer of the Docker daemon past {} bytes", .0.limit())]
pub(crate) struct TooLarge(pub(crate) Cap);

/// A connection that counts what it reads and fails a read past its cap.
struct Capped<S> {
    inner: S,
    cap: Cap,
    tripped: Tripped,
    /// Bytes read (`Answer`), or bytes of the current body line (`Line`).
    count: u64,
    /// Where the body's bytes are in the HTTP framing (`Line` only).
    framing: Framing,
    over: bool,
}

impl<S> Capped<S> {
    fn new(inner: S, cap: Cap, tripped: Tripped) -> Self {
        Self {
            inner,
            cap,
            tripped,
            count: 0,
            framing: Framing::default(),
            over: false,
        }
    }

    /// Counts `bytes` just read; false once past the cap.
    fn count(&mut self, bytes: &[u8]) -> bool {
        match self.cap {
            Cap::Answer => self.count += bytes.len() as u64,
            Cap::Line => {
                let mut longest = self.count;
                let count = &mut self.count;
                self.framing.lines(bytes, |byte| {
                    if byte == b'\n' {
                        *count = 0;
                    } else {
                        *count += 1;
                        longest = longest.max(*count);
                    }
                });
                if longest > self.cap.limit() {
                    self.count = longest;
                }
            }
        }
        self.count <= self.cap.limit()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.over {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            if this.count(&buf.filled()[before..]) {
                return Poll::Ready(Ok(()));
            }
            this.over = true;
            *this.tripped.lock().expect("tripped") = Some(this.cap);
        }
        Poll::Ready(Err(io::Error::other(TooLarge(this.cap))))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Just enough of HTTP/1.1's framing to find a response's lines among what is read: its head,
/// then either the rest as it comes or chunked transfer coding. hyper parses the answer for
/// real; this only tells the body's newlines from the chunks' own `\r\n`, which a per-line
/// count must not take for the end of a line (Docker cuts a long line into many chunks).
#[derive(Debug)]
enum Framing {
    /// The head, up to its blank line: the header line so far (bounded by the line cap, as
    /// its bytes are counted too) and whether a `Transfer-Encoding: chunked` was seen.
    Head { line: Vec<u8>, chunked: bool },
    /// `HEX[;ext]\r\n`: the size of the next chunk so far.
    Size { size: u64, extension: bool },
    /// Inside a chunk: bytes left.
    Data(u64),
    /// The `\r\n` after a chunk's data.
    DataEnd,
    /// The body as it comes (Content-Length, a read to the end, an upgraded stream).
    Raw,
    /// Past the last chunk: trailers, nothing of the body.
    Done,
}

impl Default for Framing {
    fn default() -> Self {
        Self::Head {
            line: Vec::new(),
            chunked: false,
        }
    }
}

impl Framing {
    /// Calls `line` with each byte of `bytes` that belongs to a line of the head or the body.
    fn lines(&mut self, bytes: &[u8], mut line: impl FnMut(u8)) {
        for &byte in bytes {
            *self = match std::mem::take(self) {
                Self::Head {
                    line: mut header,
                    mut chunked,
                } => {
                    line(byte);
                    if byte != b'\n' {
                        header.push(byte);
                        Self::Head {
                            line: header,
                            chunked,
                        }
                    } else if header.trim_ascii().is_empty() {
                        if chunked {
                            Self::Size {
                                size: 0,
                                extension: false,
                            }
                        } else {
                            Self::Raw
                        }
                    } else {
                        let header = header.to_ascii_lowercase();
                        chunked |= header.starts_with(b"transfer-encoding:")
                            && header.windows(7).any(|word| word == b"chunked");
                        Self::Head {
                            line: Vec::new(),
                            chunked,
                        }
                    }
                }
                Self::Size { size, extension } => match byte {
                    b'\n' if size == 0 => Self::Done,
                    b'\n' => Self::Data(size),
                    b';' => Self::Size {
                        size,
                        extension: true,
                    },
                    _ if extension => Self::Size { size, extension },
                    _ => match char::from(byte).to_digit(16) {
                        Some(digit) => Self::Size {
                            size: size.saturating_mul(16).saturating_add(u64::from(digit)),
                            extension,
                        },
                        // `\r`, spaces: nothing of the size.
                        None => Self::Size { size, extension },
                    },
                },
                Self::Data(left) => {
                    line(byte);
                    if left <= 1 {
                        Self::DataEnd
                    } else {
                        Self::Data(left - 1)
                    }
                }
                Self::DataEnd if byte == b'\n' => Self::Size {
                    size: 0,
                    extension: false,
                },
                Self::DataEnd => Self::DataEnd,
                Self::Raw => {
                    line(byte);
                    Self::Raw
                }
                Self::Done => Self::Done,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write as _,
        os::unix::net::UnixStream,
        sync::atomic::{AtomicU64, Ordering},
        time::Duration,
    };

    use super::*;
    use crate::docker::engine::{Address, Engine, EngineError};

    /// A daemon at a socket of the test's own: answers `/version` with Engine 20.10's API
    /// version and hands every other request's path and connection to `respond`; returns the
    /// client and how many bytes `respond` managed to send (what berth read, plus what the
    /// socket's buffers held when berth stopped).
    fn serving(
        dir: &std::path::Path,
        respond: fn(&str, &mut UnixStream) -> std::io::Result<()>,
    ) -> (Engine, Arc<AtomicU64>) {
        let socket = dir.join("docker.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&served);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let head = super::super::tests::read_head(&mut stream);
                let path = head.split_whitespace().nth(1).unwrap_or_default();
                if path.ends_with("/version") {
                    let body = r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    continue;
                }
                let mut counting = Counting(stream, Arc::clone(&counted));
                let _ = respond(path, &mut counting.0).and_then(|()| counting.flush());
            }
        });
        let engine = Engine::at(
            Address {
                host: format!("unix://{}", socket.display()),
                tls: None,
            },
            Duration::from_secs(60),
        );
        (engine, served)
    }

    /// A response's writer that counts what it wrote.
    struct Counting(UnixStream, Arc<AtomicU64>);

    impl std::io::Write for Counting {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let written = self.0.write(buf)?;
            self.1.fetch_add(written as u64, Ordering::SeqCst);
            Ok(written)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }

    const CHUNKED: &str =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

    fn chunk(stream: &mut impl std::io::Write, data: &[u8]) -> std::io::Result<()> {
        write!(stream, "{:x}\r\n", data.len())?;
        stream.write_all(data)?;
        stream.write_all(b"\r\n")
    }

    /// Writes `data` until berth stops reading (the write fails) and counts what it wrote.
    fn endless(stream: &mut UnixStream, data: &[u8], served: &AtomicU64) -> std::io::Result<()> {
        loop {
            chunk(stream, data)?;
            served.fetch_add(data.len() as u64, Ordering::SeqCst);
        }
    }

    static SERVED: AtomicU64 = AtomicU64::new(0);

    /// How much past a cap the daemon may have written before berth's reads stopped it: the
    /// socket's buffers both ways and one read of hyper's.
    const SLACK: u64 = 8 * MIB;

    #[test]
    fn an_endless_answer_is_cut_at_the_cap_and_says_what_and_where() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = serving(dir.path(), |_, stream| {
            stream.write_all(CHUNKED.as_bytes())?;
            chunk(stream, br#"[{"Id":"a","Labels":{"berth.profile":""#)?;
            endless(stream, &[b'x'; 64 * 1024], &SERVED)
        });
        let error = engine
            .list("container", "berth.profile=ci")
            .expect_err("an endless listing is refused");
        assert!(matches!(error, EngineError::TooLarge { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "the answer to `GET /containers` is larger than 64 MiB: berth stopped reading it"
        );
        // Bounded: berth read no more than its cap (and the daemon got no further than what
        // the socket buffers).
        let served = SERVED.load(Ordering::SeqCst);
        assert!(
            (ANSWER_LIMIT - SLACK..=ANSWER_LIMIT + SLACK).contains(&served),
            "{served} bytes served"
        );
        // The next request is judged on its own.
        let error = engine.info().unwrap_err();
        assert!(matches!(error, EngineError::TooLarge { .. }), "{error:?}");
        assert!(error.to_string().contains("`GET /info`"), "{error}");
    }

    #[test]
    fn an_answer_just_under_the_cap_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = serving(dir.path(), |_, stream| {
            // One container whose label fills the answer to 64 KiB under the cap.
            let size = usize::try_from(ANSWER_LIMIT - 64 * 1024).unwrap();
            let opening = r#"[{"Id":"a","Names":["/huge"],"Labels":{"berth.profile":"ci","huge":""#;
            let closing = r#""}}]"#;
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n{opening}"
            )?;
            let label = size - opening.len() - closing.len();
            stream.write_all(&vec![b'x'; label])?;
            stream.write_all(closing.as_bytes())
        });
        let listed = engine.list("container", "berth.profile=ci").unwrap();
        assert_eq!(listed.len(), 1);
        let label = listed[0]["Labels"]["huge"].as_str().unwrap();
        assert!(label.len() as u64 > ANSWER_LIMIT - MIB, "{}", label.len());
    }

    static EVENTS_SERVED: AtomicU64 = AtomicU64::new(0);

    #[test]
    fn an_endless_event_is_cut_at_the_line_cap_after_many_events_heard() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = serving(dir.path(), |path, stream| {
            assert!(path.starts_with("/events"), "{path}");
            stream.write_all(CHUNKED.as_bytes())?;
            // 3 MiB of ordinary events: more than the line cap, in lines under it.
            let event = format!(
                "{{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{{\"ID\":\"a\",\"Attributes\":{{\"pad\":\"{}\"}}}}}}\n",
                "p".repeat(1000)
            );
            for _ in 0..3 * 1024 {
                chunk(stream, event.as_bytes())?;
            }
            // Then one event that never ends, cut in chunks as Docker cuts a long line.
            chunk(
                stream,
                br#"{"Type":"container","Action":"start","Actor":{"ID":"b","Attributes":{"x":""#,
            )?;
            endless(stream, &[b'y'; 4096], &EVENTS_SERVED)
        });
        let mut heard = 0;
        let error = engine
            .follow_events(|event| {
                assert_eq!(event["Actor"]["ID"], "a");
                heard += 1;
                true
            })
            .expect_err("an endless event is refused");
        assert_eq!(heard, 3 * 1024);
        assert!(matches!(error, EngineError::TooLarge { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "a line of the stream `GET /events` is larger than 1 MiB: berth stopped reading it"
        );
        let served = EVENTS_SERVED.load(Ordering::SeqCst);
        assert!(served <= LINE_LIMIT + SLACK, "{served} bytes served");
    }

    #[test]
    fn a_line_is_counted_across_chunks_and_ends_only_at_a_newline_of_the_body() {
        let mut framing = Framing::default();
        let mut body = Vec::new();
        let read = format!(
            "{CHUNKED}5\r\n{{\"a\":\r\n7;ext=1\r\n1}}\r\n{{\"b\r\n4\r\n\":2}}\r\n0\r\n\r\n"
        );
        // Fed in pieces, as reads come.
        for piece in read.as_bytes().chunks(3) {
            framing.lines(piece, |byte| body.push(byte));
        }
        let head_lines = CHUNKED.len();
        // The head's bytes are counted as lines too; the body is exactly what the chunks held,
        // a pull's `\r\n` line end included.
        assert_eq!(
            String::from_utf8_lossy(&body[head_lines..]),
            "{\"a\":1}\r\n{\"b\":2}"
        );
        assert!(matches!(framing, Framing::Done), "{framing:?}");

        let mut counted = Capped::new((), Cap::Line, Tripped::default());
        assert!(counted.count(CHUNKED.as_bytes()));
        // Just under 1 MiB in chunks of 1000 bytes: the chunks' `\r\n` do not end the line.
        let data = vec![b'z'; 1000];
        let mut framed = Vec::new();
        for _ in 0..1048 {
            chunk(&mut framed, &data).unwrap();
        }
        assert!(counted.count(&framed));
        chunk(&mut framed, &data).unwrap();
        assert!(!counted.count(&framed[framed.len() - 1007..]));
        // Content-Length answers are capped whole, head included.
        let mut whole = Capped::new((), Cap::Answer, Tripped::default());
        assert!(whole.count(&vec![b'\n'; usize::try_from(ANSWER_LIMIT).unwrap()]));
        assert!(!whole.count(b"x"));
    }

    #[test]
    fn streams_are_capped_per_line_and_answers_whole() {
        assert_eq!(Cap::of("/v1.41/events"), Cap::Line);
        assert_eq!(Cap::of("/events"), Cap::Line);
        assert_eq!(Cap::of("/images/create"), Cap::Line);
        assert_eq!(Cap::of("/containers/json"), Cap::Answer);
        assert_eq!(Cap::of("/containers/events/json"), Cap::Answer);
        assert_eq!(Cap::of("/info"), Cap::Answer);
    }
}
