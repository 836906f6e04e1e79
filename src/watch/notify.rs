//! systemd's notification protocol (sd_notify(3)) for `berth watch` under `Type=notify`:
//! `READY=1` once it watches (before the first converge, which may pull images for half an
//! hour: readiness is "drift will be seen", not "the host is converged"), a `STATUS=` line after
//! every converge for `systemctl status berth-watch`, and `STOPPING=1` on SIGTERM. Without
//! `NOTIFY_SOCKET` (not under systemd) it says nothing.

use std::os::{
    linux::net::SocketAddrExt,
    unix::net::{SocketAddr, UnixDatagram},
};

pub(crate) struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The socket systemd names in `NOTIFY_SOCKET`: a path, or `@name` for an abstract one.
    pub(crate) fn from_env() -> Self {
        let socket = std::env::var("NOTIFY_SOCKET").ok().and_then(|name| {
            let address = match name.strip_prefix('@') {
                Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes()),
                None => SocketAddr::from_pathname(&name),
            };
            let opened = address.and_then(|address| Ok((UnixDatagram::unbound()?, address)));
            opened
                .inspect_err(|error| tracing::warn!("NOTIFY_SOCKET `{name}`: {error}"))
                .ok()
        });
        Self { socket }
    }

    pub(crate) fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub(crate) fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping after the step in progress");
    }

    /// A lost notification costs `systemctl status` a line, never the watch its job.
    fn send(&self, message: &str) {
        if let Some((socket, address)) = &self.socket
            && let Err(error) = socket.send_to_addr(message.as_bytes(), address)
        {
            tracing::debug!("sd_notify: {error}");
        }
    }
}
