//! The values of a container's fields that Docker takes as small languages of their own
//! (`--restart on-failure:3`, `-v src:dst:ro`, `-p 127.0.0.1:80:8080/tcp`, `--device`, signal
//! and capability names), parsed at the edge so the rest of berth handles checked values.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::host::{Host, HostPath};
use crate::{
    docker::wire::{RestartPolicyInfo, RestartPolicyName},
    profile::source::closest,
    resource::docker_object::ObjectName,
};

/// `no | always | unless-stopped | on-failure[:N]`, as `docker run --restart` takes it. Written
/// (the journal keeps it) and read in that one spelling, so a journal entry outlives an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) enum RestartPolicy {
    #[default]
    No,
    Always,
    UnlessStopped,
    /// With the maximum number of retries; `None` retries forever.
    OnFailure(Option<u32>),
}

impl RestartPolicy {
    /// The policy as Docker reports it: `Name` and `MaximumRetryCount`. A name berth does not
    /// know restarts nothing it can tell, so it compares as `no`.
    pub(crate) fn from_docker(live: &RestartPolicyInfo) -> Self {
        let retries = live.maximum_retry_count;
        match live.name {
            RestartPolicyName::Always => Self::Always,
            RestartPolicyName::UnlessStopped => Self::UnlessStopped,
            RestartPolicyName::OnFailure => Self::OnFailure((retries > 0).then_some(retries)),
            RestartPolicyName::No | RestartPolicyName::Other(_) => Self::No,
        }
    }
}

impl TryFrom<String> for RestartPolicy {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "no" => Ok(Self::No),
            "always" => Ok(Self::Always),
            "unless-stopped" => Ok(Self::UnlessStopped),
            "on-failure" => Ok(Self::OnFailure(None)),
            other => match other.strip_prefix("on-failure:").map(str::parse::<u32>) {
                Some(Ok(retries)) if retries > 0 => Ok(Self::OnFailure(Some(retries))),
                _ => Err(format!(
                    "`{text}` is not a restart policy (no, always, unless-stopped, on-failure[:N]){}",
                    closest(&text, ["no", "always", "unless-stopped", "on-failure"])
                        .map(|meant| format!("; did you mean `{meant}`?"))
                        .unwrap_or_default()
                )),
            },
        }
    }
}

impl From<RestartPolicy> for String {
    fn from(policy: RestartPolicy) -> Self {
        policy.to_string()
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::No => f.write_str("no"),
            Self::Always => f.write_str("always"),
            Self::UnlessStopped => f.write_str("unless-stopped"),
            Self::OnFailure(None) => f.write_str("on-failure"),
            Self::OnFailure(Some(retries)) => write!(f, "on-failure:{retries}"),
        }
    }
}

/// When berth pulls a container's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PullPolicy {
    /// Pull only when the image is not on the host.
    #[default]
    Missing,
    /// Pull at every apply, and replace the container when the tag moved.
    Always,
    /// Never pull: a missing image is an error.
    Never,
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "missing",
            Self::Always => "always",
            Self::Never => "never",
        })
    }
}

/// Where a mount's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountSource {
    /// A host directory or file: resolved under `--root`.
    Bind(HostPath),
    /// A named volume: survives the container.
    Volume(ObjectName),
    /// `-v /path`: an anonymous volume, removed with the container.
    Anonymous,
}

/// One `volumes` entry: `SOURCE:TARGET[:OPTIONS]` or just `TARGET` (anonymous), as `docker run
/// -v` takes it. A source starting with `/` is a host path; anything else names a volume.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct Mount {
    pub source: MountSource,
    pub target: String,
    /// `ro`, `z`, `rshared`, ...: kept as written, in order.
    pub options: Vec<String>,
}

const MOUNT_OPTIONS: &[&str] = &[
    "ro",
    "rw",
    "z",
    "Z",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "private",
    "rprivate",
    "nocopy",
    "consistent",
    "cached",
    "delegated",
];

impl TryFrom<String> for Mount {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, options) = match parts.as_slice() {
            [target] => (MountSource::Anonymous, *target, ""),
            [source, target] => (parse_source(source)?, *target, ""),
            [source, target, options] => (parse_source(source)?, *target, *options),
            _ => return Err(format!("`{text}` is not SOURCE:TARGET[:OPTIONS]")),
        };
        if !target.starts_with('/') {
            return Err(format!(
                "`{text}`: the target `{target}` must be an absolute path in the container"
            ));
        }
        let options: Vec<String> = options
            .split(',')
            .filter(|option| !option.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(unknown) = options
            .iter()
            .find(|option| !MOUNT_OPTIONS.contains(&option.as_str()))
        {
            return Err(format!(
                "`{text}`: unknown mount option `{unknown}` (one of {})",
                MOUNT_OPTIONS.join(", ")
            ));
        }
        Ok(Self {
            source,
            target: target.to_owned(),
            options,
        })
    }
}

fn parse_source(source: &str) -> Result<MountSource, String> {
    if source.starts_with('/') {
        HostPath::new(source).map(MountSource::Bind)
    } else {
        ObjectName::try_from(source.to_owned()).map(MountSource::Volume)
    }
}

impl Mount {
    pub(crate) fn read_only(&self) -> bool {
        self.options.iter().any(|option| option == "ro")
    }

    pub(crate) fn volume(&self) -> Option<&ObjectName> {
        match &self.source {
            MountSource::Volume(name) => Some(name),
            _ => None,
        }
    }

    /// The `-v` argument, with a bind source resolved under the root: what Docker reports back
    /// in `HostConfig.Binds`. `None` for an anonymous volume, which Docker lists elsewhere.
    pub(crate) fn bind_argument(&self, host: &Host) -> Option<String> {
        let source = match &self.source {
            MountSource::Bind(path) => host.path(path).display().to_string(),
            MountSource::Volume(name) => name.to_string(),
            MountSource::Anonymous => return None,
        };
        let mut argument = format!("{source}:{}", self.target);
        if !self.options.is_empty() {
            argument.push(':');
            argument.push_str(&self.options.join(","));
        }
        Some(argument)
    }

    /// As written, independent of the root: what the spec hash covers.
    pub(crate) fn normalized(&self) -> String {
        let source = match &self.source {
            MountSource::Bind(path) => path.to_string(),
            MountSource::Volume(name) => name.to_string(),
            MountSource::Anonymous => String::new(),
        };
        format!("{source}:{}:{}", self.target, self.options.join(","))
    }
}

/// One `ports` entry: `[IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]`, as `docker run -p` takes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct Port {
    pub host_ip: String,
    /// Empty: Docker picks a free port.
    pub host_port: String,
    pub container_port: u16,
    pub protocol: String,
}

impl TryFrom<String> for Port {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let fail = |why: &str| {
            format!("`{text}` is not [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp|sctp]: {why}")
        };
        let (address, protocol) = match text.rsplit_once('/') {
            Some((address, protocol)) => (address, protocol),
            None => (text.as_str(), "tcp"),
        };
        if !matches!(protocol, "tcp" | "udp" | "sctp") {
            return Err(fail("unknown protocol"));
        }
        // An IPv6 address is written in brackets: [::1]:2375:2375.
        let (host_ip, rest) = match address.strip_prefix('[') {
            Some(bracketed) => {
                let (ip, rest) = bracketed
                    .split_once("]:")
                    .ok_or_else(|| fail("unclosed `[`"))?;
                (ip.to_owned(), rest)
            }
            None => (String::new(), address),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host_port, container_port) = match (host_ip.is_empty(), parts.as_slice()) {
            (true, [container]) => (String::new(), "", *container),
            (true, [host, container]) => (String::new(), *host, *container),
            (true, [ip, host, container]) => ((*ip).to_owned(), *host, *container),
            (false, [host, container]) => (host_ip, *host, *container),
            _ => return Err(fail("too many `:`")),
        };
        if container_port.contains('-') || host_port.contains('-') {
            return Err(fail("port ranges are not supported; list each port"));
        }
        let container_port = container_port
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| fail("the container port is not a port number"))?;
        if !host_port.is_empty() && host_port.parse::<u16>().is_err() {
            return Err(fail("the host port is not a port number"));
        }
        Ok(Self {
            host_ip: ip,
            host_port: host_port.to_owned(),
            container_port,
            protocol: protocol.to_owned(),
        })
    }
}

impl Port {
    /// `2375/tcp`: how Docker keys `HostConfig.PortBindings`.
    pub(crate) fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }

    pub(crate) fn argument(&self) -> String {
        let ip = if self.host_ip.contains(':') {
            format!("[{}]", self.host_ip)
        } else {
            self.host_ip.clone()
        };
        match (ip.is_empty(), self.host_port.is_empty()) {
            (true, true) => self.key(),
            (true, false) => format!("{}:{}", self.host_port, self.key()),
            (false, _) => format!("{ip}:{}:{}", self.host_port, self.key()),
        }
    }
}

/// One `devices` entry: `HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct Device {
    pub host: HostPath,
    pub container: String,
    pub permissions: String,
}

impl TryFrom<String> for Device {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let (host, container, permissions) = match parts.as_slice() {
            [host] => (*host, *host, "rwm"),
            [host, container] => (*host, *container, "rwm"),
            [host, container, permissions] => (*host, *container, *permissions),
            _ => {
                return Err(format!(
                    "`{text}` is not HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]"
                ));
            }
        };
        if !container.starts_with('/') {
            return Err(format!("`{text}`: `{container}` is not an absolute path"));
        }
        if permissions.is_empty() || !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(format!(
                "`{text}`: permissions are some of `r`, `w` and `m`"
            ));
        }
        Ok(Self {
            host: HostPath::new(host)?,
            container: container.to_owned(),
            permissions: permissions.to_owned(),
        })
    }
}

impl Device {
    pub(crate) fn argument(&self, host: &Host) -> String {
        format!(
            "{}:{}:{}",
            host.path(&self.host).display(),
            self.container,
            self.permissions
        )
    }
}

/// `SIGQUIT`, `QUIT` and `3` all name one signal; Docker keeps what it was given. Compare and
/// pass them in one form: `SIGQUIT` (numbers stay numbers).
pub(crate) fn normalize_signal(signal: &str) -> String {
    let upper = signal.trim().to_ascii_uppercase();
    if upper.is_empty() || upper.chars().all(|c| c.is_ascii_digit()) || upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    }
}

/// Docker takes capabilities with or without `CAP_`, in any case.
pub(crate) fn normalize_capability(capability: &str) -> String {
    let upper = capability.trim().to_ascii_uppercase();
    upper
        .strip_prefix("CAP_")
        .map_or(upper.clone(), str::to_owned)
}

/// The profile file of a `seccomp=FILE` (or `seccomp:FILE`) security option: the docker CLI
/// reads it and sends its JSON, which is what Docker then reports. `None` for every other
/// option, `seccomp=unconfined` included; `Some(Err)` for a file that is not an absolute path.
pub(crate) fn seccomp_file(option: &str) -> Option<Result<HostPath, String>> {
    let value = option
        .strip_prefix("seccomp=")
        .or_else(|| option.strip_prefix("seccomp:"))?;
    (value != "unconfined").then(|| HostPath::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_tell_binds_volumes_and_anonymous_apart() {
        let cases = [
            (
                "/srv/gitlab-runner:/etc/gitlab-runner",
                "bind",
                "/etc/gitlab-runner",
                "",
            ),
            (
                "gitlab-dind-data:/var/lib/docker",
                "volume",
                "/var/lib/docker",
                "",
            ),
            ("certs:/certs/client:ro", "volume", "/certs/client", "ro"),
            ("/var/lib/docker", "anonymous", "/var/lib/docker", ""),
        ];
        for (text, kind, target, options) in cases {
            let mount = Mount::try_from(text.to_owned()).unwrap();
            let found = match mount.source {
                MountSource::Bind(_) => "bind",
                MountSource::Volume(_) => "volume",
                MountSource::Anonymous => "anonymous",
            };
            assert_eq!(
                (
                    found,
                    mount.target.as_str(),
                    mount.options.join(",").as_str()
                ),
                (kind, target, options),
                "{text}"
            );
        }
        for bad in ["rel:dir", "a:/b:bogus", "/a:/b:ro:x", "/a/../b:/c"] {
            assert!(Mount::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        let host = Host::new("/r");
        let bind = Mount::try_from("/srv/x:/etc/x:ro".to_owned()).unwrap();
        assert_eq!(bind.bind_argument(&host).unwrap(), "/r/srv/x:/etc/x:ro");
    }

    #[test]
    fn ports_parse_like_docker_run() {
        let cases = [
            ("2375", "", "", 2375, "tcp", "2375/tcp"),
            ("8080:80", "", "8080", 80, "tcp", "8080:80/tcp"),
            (
                "127.0.0.1:2376:2376",
                "127.0.0.1",
                "2376",
                2376,
                "tcp",
                "127.0.0.1:2376:2376/tcp",
            ),
            (
                "127.0.0.1::53/udp",
                "127.0.0.1",
                "",
                53,
                "udp",
                "127.0.0.1::53/udp",
            ),
            (
                "[::1]:2375:2375",
                "::1",
                "2375",
                2375,
                "tcp",
                "[::1]:2375:2375/tcp",
            ),
        ];
        for (text, ip, host_port, container, protocol, argument) in cases {
            let port = Port::try_from(text.to_owned()).unwrap();
            assert_eq!(
                (
                    port.host_ip.as_str(),
                    port.host_port.as_str(),
                    port.container_port,
                    port.protocol.as_str(),
                    port.argument().as_str()
                ),
                (ip, host_port, container, protocol, argument),
                "{text}"
            );
        }
        for bad in ["x", "80/icmp", "8000-8010:8000-8010", "1:2:3:4", "0"] {
            assert!(Port::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn restart_policies_round_trip() {
        for text in [
            "no",
            "always",
            "unless-stopped",
            "on-failure",
            "on-failure:3",
        ] {
            assert_eq!(
                RestartPolicy::try_from(text.to_owned())
                    .unwrap()
                    .to_string(),
                text
            );
        }
        assert!(RestartPolicy::try_from("sometimes".to_owned()).is_err());
        let live = |name: &str, maximum_retry_count| RestartPolicyInfo {
            name: name.into(),
            maximum_retry_count,
        };
        assert_eq!(RestartPolicy::from_docker(&live("", 0)), RestartPolicy::No);
        assert_eq!(
            RestartPolicy::from_docker(&live("on-failure", 5)),
            RestartPolicy::OnFailure(Some(5))
        );
    }

    #[test]
    fn signals_and_capabilities_compare_in_one_form() {
        assert_eq!(normalize_signal("quit"), "SIGQUIT");
        assert_eq!(normalize_signal("SIGQUIT"), "SIGQUIT");
        assert_eq!(normalize_signal("3"), "3");
        assert_eq!(normalize_capability("cap_net_admin"), "NET_ADMIN");
    }
}
