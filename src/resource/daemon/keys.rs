//! What dockerd accepts at the top level of daemon.json: which keys exist in which dockerd
//! version, which of them it re-reads on SIGHUP (reload) in which version, the shape of the
//! values dockerd insists on, and registry mirrors checked the way dockerd checks them. dockerd refuses to start on a daemon.json it cannot read, so a profile
//! is checked against this before the file is written.
//!
//! Pure: no I/O; values come as `toml::Value`, errors as [`KeyProblem`]s that the `[docker]`
//! section places at `file:line:col`.

use std::fmt;

use crate::profile::source::closest;

/// A dockerd version as `dockerd --version` prints it (`Docker version 20.10.24+dfsg1, build
/// 297e128`), parsed to (major, minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct DockerdVersion {
    pub major: u32,
    pub minor: u32,
}

impl DockerdVersion {
    /// Reads the first `major.minor` after `version` (or anywhere, for a bare `28.2.2`).
    pub(crate) fn parse(version_output: &str) -> Option<Self> {
        let text = version_output.trim();
        let text = text
            .find("version")
            .map_or(text, |at| &text[at + "version".len()..]);
        let text = text.trim_start();
        let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
        let (major, rest) = text.split_once('.')?;
        let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if major.is_empty() || !major.chars().all(|c| c.is_ascii_digit()) || minor.is_empty() {
            return None;
        }
        Some(Self {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl fmt::Display for DockerdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.major < 23 {
            // The YY.MM releases: 20.10, 19.03.
            write!(f, "{}.{:02}", self.major, self.minor)
        } else {
            write!(f, "{}.{}", self.major, self.minor)
        }
    }
}

/// A problem with one key: the message, and optionally the index inside an array value it
/// applies to (for placing the error on `registry-mirrors[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyProblem {
    pub message: String,
    pub index: Option<usize>,
    /// The key inside a table value it applies to (for placing the error on
    /// `log-opts.max-file`).
    pub sub_key: Option<String>,
}

impl KeyProblem {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            index: None,
            sub_key: None,
        }
    }

    fn at_index(index: usize, message: impl Into<String>) -> Self {
        Self {
            index: Some(index),
            ..Self::new(message)
        }
    }

    fn at_key(key: &str, message: impl Into<String>) -> Self {
        Self {
            sub_key: Some(key.to_owned()),
            ..Self::new(message)
        }
    }
}

/// Checks one top-level `[docker.daemon]` key and its TOML value against what the given dockerd
/// (None = unknown version: accept any key known to any version in the table) accepts.
pub(crate) fn check(
    key: &str,
    value: &toml::Value,
    version: Option<DockerdVersion>,
) -> Result<(), KeyProblem> {
    check_known(key, version)?;
    check_shape(key, value, version)
}

/// Whether the given dockerd reads `key` at the top level of daemon.json. Versions older than
/// the table (20.10) are taken as 20.10; newer ones know every key not dropped by 29.x.
pub(crate) fn known_in(key: &str, version: DockerdVersion) -> bool {
    entry(key).is_some_and(|known| known.in_version(version))
}

/// Whether the given dockerd applies a change of `key` on SIGHUP, without a restart. With the
/// version unknown, only a key every version in the table reloads counts. A key the table does
/// not know is taken to need a restart: a restart always applies it.
pub(crate) fn reloadable_in(key: &str, version: Option<DockerdVersion>) -> bool {
    let Some(known) = entry(key) else {
        return false;
    };
    match (known.reload, version) {
        (None, _) => false,
        (Some(since), Some(version)) => known.in_version(version) && version.max(OLDEST) >= since,
        (Some(since), None) => since <= known.since,
    }
}

/// Masks credentials in a URL for printing: `https://user:pw@mirror.example` becomes
/// `https://***@mirror.example`. Everything up to the last `@` is masked, so a password with a
/// `/`, `?`, `#` or `@` in it does not leak either.
pub(crate) fn redact_url_credentials(url: &str) -> String {
    let (prefix, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    match rest.rfind('@') {
        Some(at) => format!("{prefix}***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// The key table.
//
// Derived (names only, no code) from the json tags of dockerd's `Config` struct and the structs
// it embeds, read at the first and last tag of every release line, on Linux:
// - github.com/moby/moby `daemon/config/config.go` (CommonConfig, LogConfig, commonBridgeConfig,
//   NetworkConfig, DNSConfig, TLSOptions/CommonTLSOptions), `daemon/config/config_unix.go` and
//   `config_common_unix.go` (20.10), `daemon/config/config_linux.go` (23.0 on: Config,
//   BridgeConfig, DefaultBridgeConfig), `registry/config.go` / `daemon/pkg/registry/config.go`
//   (29.x) (ServiceOptions: registry-mirrors, insecure-registries,
//   allow-nondistributable-artifacts);
// - tags v20.10.0, v20.10.27, v23.0.0, v23.0.18, v24.0.0, v24.0.9, v25.0.0, v25.0.17, v26.0.0,
//   v26.0.2, v26.1.0, v26.1.5, v27.0.1 … v27.5.1, v28.0.0 … v28.5.2, docker-v29.0.0 …
//   docker-v29.7.2; no key changed inside a release line;
// - cross-checked against the Linux daemon.json example in github.com/docker/cli
//   `docs/reference/commandline/dockerd.md` (20.10–27.x) and `docs/reference/dockerd.md`
//   (28.0 on), which lists a subset (and misspells `containerd-plugin-namespace` as
//   `containerd-plugins-namespace`, a name dockerd accepts as a flag but does not read from
//   the file).
//
// `until` is the first release that no longer reads the key: for `graph` and the
// `cluster-*` keys (23.0), `oom-score-adjust` (25.0) and `api-cors-header` (28.0) dockerd's
// config validation refuses to start although the json tag stayed a release longer;
// `deprecated-key-path` (24.0) and `allow-nondistributable-artifacts` (28.1) lost their tag
// and are ignored after that.
//
// Windows-only keys are left out: berth provisions Linux hosts.
//
// `reload` is the first release whose SIGHUP applies the key (`.reload(..)` below); a key without
// it is read only when dockerd starts, so changing it means a restart. Read (names only) from
// `Daemon.Reload` in moby's `daemon/reload.go`, which lists the reload steps, and the
// `IsValueSet("...")` checks in each step there and in `daemon/reload_unix.go`
// (`reloadPlatform`: runtimes, default-runtime, default-shm-size, default-ipc-mode,
// default-cgroupns-mode), plus `authorization-plugins`, reloaded by the daemon command's reload
// callback (`cmd/dockerd/daemon.go`, `daemon/command/daemon.go` in 29.x), at the same tags as
// the keys: `reloadClusterDiscovery` (cluster-*) is gone in 23.0, `reloadNRI` (nri-opts) came in
// 29.2, `reloadDefaultStopTimeout` in 29.7. `features` has a reload step, but it only records
// the new value: what features switch (the containerd image store, buildkit) is set up at
// start, so a reload reports success and the change lands at the next restart (for
// `containerd-snapshotter`: images and containers seem to vanish then). berth restarts for it.

struct KnownKey {
    name: &'static str,
    since: DockerdVersion,
    until: Option<DockerdVersion>,
    /// The first version that applies a change of the key on SIGHUP; `None`: only at start.
    reload: Option<DockerdVersion>,
}

impl KnownKey {
    fn in_version(&self, version: DockerdVersion) -> bool {
        let version = version.max(OLDEST);
        self.since <= version && self.until.is_none_or(|until| version < until)
    }
}

const fn v(major: u32, minor: u32) -> DockerdVersion {
    DockerdVersion { major, minor }
}

const fn key(name: &'static str, since: DockerdVersion) -> KnownKey {
    KnownKey {
        name,
        since,
        until: None,
        reload: None,
    }
}

const fn gone(name: &'static str, since: DockerdVersion, until: DockerdVersion) -> KnownKey {
    KnownKey {
        name,
        since,
        until: Some(until),
        reload: None,
    }
}

impl KnownKey {
    /// dockerd applies the key on SIGHUP from the release it appeared in.
    const fn reload(self) -> Self {
        let since = self.since;
        self.reload_from(since)
    }

    const fn reload_from(self, since: DockerdVersion) -> Self {
        Self {
            reload: Some(since),
            ..self
        }
    }
}

/// The oldest release line in the table.
const OLDEST: DockerdVersion = v(20, 10);
/// The newest release line the table was read from.
const NEWEST: DockerdVersion = v(29, 7);

const KEYS: &[KnownKey] = &[
    key("allow-direct-routing", v(28, 2)),
    gone("allow-nondistributable-artifacts", v(20, 10), v(28, 1)).reload(),
    gone("api-cors-header", v(20, 10), v(28, 0)),
    key("authorization-plugins", v(20, 10)).reload(),
    key("bip", v(20, 10)),
    key("bip6", v(28, 0)),
    key("bridge", v(20, 10)),
    key("bridge-accept-fwmark", v(29, 0)),
    key("builder", v(20, 10)),
    key("cdi-spec-dirs", v(25, 0)),
    key("cgroup-parent", v(20, 10)),
    gone("cluster-advertise", v(20, 10), v(23, 0)).reload(),
    gone("cluster-store", v(20, 10), v(23, 0)).reload(),
    gone("cluster-store-opts", v(20, 10), v(23, 0)).reload(),
    key("containerd", v(20, 10)),
    key("containerd-namespace", v(20, 10)),
    key("containerd-plugin-namespace", v(20, 10)),
    key("cpu-rt-period", v(20, 10)),
    key("cpu-rt-runtime", v(20, 10)),
    key("cri-containerd", v(20, 10)),
    key("data-root", v(20, 10)),
    key("debug", v(20, 10)).reload(),
    key("default-address-pools", v(20, 10)),
    key("default-cgroupns-mode", v(20, 10)).reload(),
    key("default-gateway", v(20, 10)),
    key("default-gateway-v6", v(20, 10)),
    key("default-init", v(20, 10)),
    key("default-ipc-mode", v(20, 10)).reload(),
    key("default-network-opts", v(24, 0)),
    key("default-runtime", v(20, 10)).reload(),
    key("default-shm-size", v(20, 10)).reload(),
    key("default-stop-timeout", v(29, 7)).reload(),
    key("default-ulimits", v(20, 10)),
    gone("deprecated-key-path", v(20, 10), v(24, 0)),
    key("dns", v(20, 10)),
    key("dns-opts", v(20, 10)),
    key("dns-search", v(20, 10)),
    key("exec-opts", v(20, 10)),
    key("exec-root", v(20, 10)),
    key("experimental", v(20, 10)),
    key("features", v(20, 10)),
    key("firewall-backend", v(29, 0)),
    key("fixed-cidr", v(20, 10)),
    key("fixed-cidr-v6", v(20, 10)),
    gone("graph", v(20, 10), v(23, 0)),
    key("group", v(20, 10)),
    key("host-gateway-ip", v(20, 10)),
    key("host-gateway-ips", v(28, 0)),
    key("hosts", v(20, 10)),
    key("icc", v(20, 10)),
    key("init", v(20, 10)),
    key("init-path", v(20, 10)),
    key("insecure-registries", v(20, 10)).reload(),
    key("ip", v(20, 10)),
    key("ip-forward", v(20, 10)),
    key("ip-forward-no-drop", v(28, 0)),
    key("ip-masq", v(20, 10)),
    key("ip6tables", v(20, 10)),
    key("iptables", v(20, 10)),
    key("ipv6", v(20, 10)),
    key("labels", v(20, 10)).reload(),
    key("live-restore", v(20, 10)).reload(),
    key("log-driver", v(20, 10)),
    key("log-format", v(25, 0)),
    key("log-level", v(20, 10)),
    key("log-opts", v(20, 10)),
    key("max-concurrent-downloads", v(20, 10)).reload(),
    key("max-concurrent-uploads", v(20, 10)).reload(),
    key("max-download-attempts", v(20, 10)).reload(),
    key("metrics-addr", v(20, 10)),
    key("min-api-version", v(29, 0)),
    key("mtu", v(20, 10)),
    key("network-control-plane-mtu", v(20, 10)),
    key("network-diagnostic-port", v(20, 10)).reload(),
    key("no-new-privileges", v(20, 10)),
    key("node-generic-resources", v(20, 10)),
    key("nri-opts", v(29, 2)).reload(),
    gone("oom-score-adjust", v(20, 10), v(25, 0)),
    key("pidfile", v(20, 10)),
    key("proxies", v(23, 0)),
    key("raw-logs", v(20, 10)),
    key("registry-mirrors", v(20, 10)).reload(),
    key("resolv-conf", v(20, 10)),
    key("rootless", v(20, 10)),
    key("runtimes", v(20, 10)).reload(),
    key("seccomp-profile", v(20, 10)),
    key("selinux-enabled", v(20, 10)),
    key("shutdown-timeout", v(20, 10)).reload(),
    key("storage-driver", v(20, 10)),
    key("storage-opts", v(20, 10)),
    key("swarm-default-advertise-addr", v(20, 10)),
    key("swarm-raft-election-tick", v(20, 10)),
    key("swarm-raft-heartbeat-tick", v(20, 10)),
    key("tls", v(20, 10)),
    key("tlscacert", v(20, 10)),
    key("tlscert", v(20, 10)),
    key("tlskey", v(20, 10)),
    key("tlsverify", v(20, 10)),
    key("userland-proxy", v(20, 10)),
    key("userland-proxy-path", v(20, 10)),
    key("userns-remap", v(20, 10)),
];

/// dockerd flag names whose daemon.json key is spelled differently (the `opts.NewNamed…` names
/// in moby's `cmd/dockerd/config*.go`, `daemon/command/config*.go` in 29.x), and a replaced key:
/// what someone copying a command line or an old file writes.
const OTHER_NAMES: &[(&str, &str)] = &[
    ("add-runtime", "runtimes"),
    ("authorization-plugin", "authorization-plugins"),
    ("cdi-spec-dir", "cdi-spec-dirs"),
    (
        "containerd-plugins-namespace",
        "containerd-plugin-namespace",
    ),
    ("default-network-opt", "default-network-opts"),
    ("default-ulimit", "default-ulimits"),
    ("dns-opt", "dns-opts"),
    ("exec-opt", "exec-opts"),
    ("feature", "features"),
    ("graph", "data-root"),
    ("host", "hosts"),
    ("insecure-registry", "insecure-registries"),
    ("label", "labels"),
    ("log-opt", "log-opts"),
    ("node-generic-resource", "node-generic-resources"),
    ("registry-mirror", "registry-mirrors"),
    ("storage-opt", "storage-opts"),
];

/// Keys that daemon.json takes inside `proxies` (23.0 on), not at the top level.
const PROXIES_KEYS: &[&str] = &["http-proxy", "https-proxy", "no-proxy"];

fn entry(key: &str) -> Option<&'static KnownKey> {
    KEYS.iter().find(|known| known.name == key)
}

fn known(key: &str, version: Option<DockerdVersion>) -> bool {
    match version {
        Some(version) => known_in(key, version),
        None => entry(key).is_some(),
    }
}

pub(crate) fn check_known(key: &str, version: Option<DockerdVersion>) -> Result<(), KeyProblem> {
    if let Some(found) = entry(key) {
        let Some(version) = version else {
            return Ok(());
        };
        if found.in_version(version) {
            return Ok(());
        }
        let host = version.max(OLDEST);
        return Err(KeyProblem::new(match found.until {
            Some(until) if host >= until => {
                let instead = suggestion(key, Some(version))
                    .map(|other| format!("; write `{other}`"))
                    .unwrap_or_default();
                format!(
                    "`{key}` is a daemon.json key dockerd reads only before {until}; this host has {version}{instead}"
                )
            }
            _ => format!(
                "`{key}` is a daemon.json key known only from dockerd {}; this host has {version}",
                found.since
            ),
        }));
    }
    if PROXIES_KEYS.contains(&key) {
        return Err(KeyProblem::new(format!(
            "`{key}` is not a top-level daemon.json key: it goes in `proxies` (`[docker.daemon.proxies]`, dockerd 23.0 on)"
        )));
    }
    let checked = match version {
        Some(version) => format!("dockerd {version}"),
        None => format!("dockerd {OLDEST} to {NEWEST}"),
    };
    Err(KeyProblem::new(match suggestion(key, version) {
        Some(other) => format!("`{key}` is not a daemon.json key; did you mean `{other}`?"),
        None => format!("`{key}` is not a daemon.json key {checked} knows"),
    }))
}

/// The key that was probably meant: a flag name or old name with its own key, else the nearest
/// key within two edits (case and `_` for `-` not counted).
fn suggestion(key: &str, version: Option<DockerdVersion>) -> Option<&'static str> {
    let key = key.to_ascii_lowercase().replace('_', "-");
    if let Some((_, other)) = OTHER_NAMES.iter().find(|(name, _)| *name == key) {
        return Some(other);
    }
    closest(
        &key,
        KEYS.iter()
            .filter(|known_key| known(known_key.name, version))
            .map(|known_key| known_key.name),
    )
}

// ---------------------------------------------------------------------------------------------
// Shapes.

fn check_shape(
    key: &str,
    value: &toml::Value,
    version: Option<DockerdVersion>,
) -> Result<(), KeyProblem> {
    use toml::Value as T;
    let fail = |message: &str| Err(KeyProblem::new(message));
    let string_list = |value: &T| matches!(value, T::Array(items) if items.iter().all(T::is_str));
    match key {
        "storage-driver"
        | "data-root"
        | "log-driver"
        | "log-level"
        | "default-cgroupns-mode"
        | "bip"
        | "group"
        | "exec-root"
        | "pidfile" => {
            let Some(text) = value.as_str() else {
                return fail("must be a string");
            };
            if matches!(key, "data-root" | "exec-root" | "pidfile") && !text.starts_with('/') {
                return Err(KeyProblem::new(format!(
                    "`{text}` must be an absolute path"
                )));
            }
            if text.is_empty() {
                return fail("must not be empty");
            }
        }
        "registry-mirrors" => {
            if !string_list(value) {
                return fail("must be a list of URLs");
            }
            for (index, mirror) in value.as_array().into_iter().flatten().enumerate() {
                check_mirror(mirror.as_str().unwrap_or_default(), version)
                    .map_err(|message| KeyProblem::at_index(index, message))?;
            }
        }
        "insecure-registries"
        | "labels"
        | "hosts"
        | "dns"
        | "dns-search"
        | "dns-opts"
        | "exec-opts"
        | "storage-opts"
            if !string_list(value) =>
        {
            return fail("must be a list of strings");
        }
        "mtu" => match value.as_integer() {
            Some(68..=65535) => {}
            _ => return fail("must be a whole number from 68 to 65535"),
        },
        "max-concurrent-downloads"
        | "max-concurrent-uploads"
        | "max-download-attempts"
        | "shutdown-timeout" => match value.as_integer() {
            Some(1..) => {}
            _ => return fail("must be a whole number of at least 1"),
        },
        "debug" | "live-restore" | "ipv6" | "iptables" | "ip-forward" | "ip-masq"
        | "userland-proxy" | "experimental" | "icc" | "selinux-enabled"
            if !value.is_bool() =>
        {
            return fail("must be true or false");
        }
        "log-opts" => {
            let Some(options) = value.as_table() else {
                return fail("must be a table of strings");
            };
            for (option, option_value) in options {
                if !option_value.is_str() {
                    return Err(KeyProblem::at_key(
                        option,
                        format!(
                            "must be a string: dockerd reads every log option as text, write `{option} = \"{option_value}\"`"
                        ),
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Mirrors take the path rule of dockerd before 24.0.8: 24.0 (whose patch releases differ) and
/// an unknown version get the stricter rule, which every version accepts.
const MIRROR_PATHS_FROM: DockerdVersion = v(25, 0);

/// One registry mirror, as moby's `registry/config.go` `ValidateMirror` checks it: scheme http
/// or https, no user info, no query, no fragment, and (before 24.0.8) no path but `/`. Every
/// message shows the URL with its credentials masked.
pub(super) fn check_mirror(mirror: &str, version: Option<DockerdVersion>) -> Result<(), String> {
    let shown = redact_url_credentials(mirror);
    let Some((scheme, rest)) = mirror.split_once("://").filter(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    }) else {
        return Err(format!(
            "`{shown}` is not an http(s) URL: dockerd wants the scheme, e.g. `https://{shown}`"
        ));
    };
    if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")) {
        return Err(format!(
            "`{shown}` is not an http(s) URL: dockerd takes only `https://` and `http://` mirrors, not `{scheme}://`"
        ));
    }
    // Split as Go's net/url does: the fragment first, then the query, then the authority.
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
    if authority.contains('@') {
        return Err(format!(
            "`{shown}` has credentials in it: dockerd refuses a user name or password in a mirror URL"
        ));
    }
    if authority.is_empty() {
        return Err(format!("`{shown}` has no host"));
    }
    // Go's url.Parse refuses a port that is not a number; the "port" is not shown, it may be
    // the password of a `user:password` whose `@` came after a `/`, `?` or `#`.
    let after_host = authority
        .rfind(']')
        .map_or(authority, |at| &authority[at + 1..]);
    if let Some((_, port)) = after_host.rsplit_once(':')
        && !port.chars().all(|c| c.is_ascii_digit())
    {
        return Err(format!(
            "`{shown}` is not a valid URL: what follows the last `:` of the host is not a port number"
        ));
    }
    if !query.is_empty() || !fragment.is_empty() {
        let what = if query.is_empty() {
            "fragment (`#…`)"
        } else {
            "query (`?…`)"
        };
        let base = shown
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_owned();
        return Err(format!(
            "`{base}` has a {what} after it: dockerd refuses a mirror URL with a query or fragment"
        ));
    }
    let paths_allowed = version.is_some_and(|version| version >= MIRROR_PATHS_FROM);
    if !paths_allowed && !path.is_empty() && path != "/" {
        let host = match version {
            Some(version) => format!("dockerd {version}"),
            None => "dockerd before 24.0.8".to_owned(),
        };
        return Err(format!(
            "`{shown}` has a path: {host} refuses a mirror URL with a path other than `/` (paths are accepted from dockerd 25.0)"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
