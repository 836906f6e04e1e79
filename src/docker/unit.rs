//! Reads how systemd starts dockerd: the `docker.service` unit and its drop-ins, under the
//! root. berth needs the ExecStart flags because dockerd refuses to start when a setting is
//! given both as a flag and in daemon.json ("the following directives are specified both as a
//! flag and in the configuration file"). Read-only; an unparseable unit is reported, not fixed.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::{
    docker::{DaemonStatus, Docker},
    host::{self, Host, HostPath, host_path},
};

/// Directories systemd loads units from, most important first.
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

/// Where a Docker engine install puts dockerd.
const DOCKERD_PATHS: &[&str] = &[
    "/usr/bin/dockerd",
    "/usr/sbin/dockerd",
    "/usr/local/bin/dockerd",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DockerService {
    /// The unit file that defines the service (drop-ins may change its ExecStart).
    pub unit: HostPath,
    /// The effective ExecStart command line, with environment variables expanded.
    pub argv: Vec<String>,
}

/// A daemon.json key that ExecStart also sets as a flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlagConflict {
    pub key: String,
    pub flag: String,
}

/// The unit `snap install docker` makes: Docker from the snap, with no docker.service.
const SNAP_UNIT: &str = "snap.docker.dockerd.service";

/// How the Docker berth manages came to be there, as far as berth can tell: doctor names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Installation {
    /// A docker.service unit (a package, or Docker's own install).
    Unit(HostPath),
    /// The snap's unit.
    Snap(HostPath),
    /// A dockerd where packages put it, without a unit.
    Binary(HostPath),
    /// Nothing under the root, yet a daemon answers: a static binary, rootless, or a daemon
    /// started by hand.
    AnswersOnly,
}

/// What installed the Docker that is there, `None` when there is none. A Docker that answers
/// is installed, whatever installed it: berth never plans a second one beside it.
pub(crate) fn installation(host: &Host, docker: &Docker) -> Option<Installation> {
    let unit = |name: &str| {
        UNIT_DIRS
            .iter()
            .map(|dir| host_path(dir).join(name))
            .find(|path| host.exists(path))
    };
    if let Some(path) = unit("docker.service") {
        return Some(Installation::Unit(path));
    }
    if let Some(path) = unit(SNAP_UNIT) {
        return Some(Installation::Snap(path));
    }
    if let Some(path) = DOCKERD_PATHS
        .iter()
        .map(|path| host_path(path))
        .find(|path| host.exists(path))
    {
        return Some(Installation::Binary(path));
    }
    // Only an answer counts: "permission denied" may be the CLI's own config file (a user
    // whose HOME is root's), not a daemon's socket.
    matches!(docker.status(), DaemonStatus::Running(_)).then_some(Installation::AnswersOnly)
}

/// True when Docker is installed under the root: a docker.service unit or a dockerd binary.
pub(crate) fn docker_installed(host: &Host) -> bool {
    UNIT_DIRS
        .iter()
        .any(|dir| host.exists(&host_path(dir).join("docker.service")))
        || DOCKERD_PATHS
            .iter()
            .any(|path| host.exists(&host_path(path)))
}

/// Finds and reads `docker.service`; `None` when no unit exists (Docker not installed as a
/// systemd service).
pub(crate) fn find_docker_service(host: &Host) -> Result<Option<DockerService>> {
    let Some((unit, text)) = first_existing(host, "docker.service")? else {
        return Ok(None);
    };
    let mut files = vec![text];
    files.extend(drop_ins(host, "docker.service.d")?);
    let mut exec_start: Option<String> = None;
    let mut environment = BTreeMap::new();
    for text in &files {
        for (key, value) in service_entries(text) {
            match key.as_str() {
                // An empty ExecStart= clears the list; a drop-in then sets its own.
                "ExecStart" if value.is_empty() => exec_start = None,
                "ExecStart" => exec_start = Some(value),
                "Environment" => environment.extend(parse_environment(&value)),
                // A missing file (optional with `-` or not) contributes nothing to the flags.
                "EnvironmentFile" => {
                    if let Ok(path) = HostPath::new(value.trim_start_matches('-'))
                        && let Some(text) = host.read_optional(&path)?
                    {
                        environment.extend(host::parse_assignments(&text));
                    }
                }
                _ => {}
            }
        }
    }
    let argv = exec_start.map_or_else(Vec::new, |line| expand(&line, &environment));
    Ok(Some(DockerService { unit, argv }))
}

impl DockerService {
    /// The daemon.json keys among `keys` that ExecStart also sets, as dockerd's
    /// `findConfigurationConflicts` (moby `daemon/config/config.go`) finds them: `runtimes` is
    /// in its `skipDuplicates` (the file's runtimes and `--add-runtime` are merged), and from
    /// 28.0 `--host-gateway-ip` fills `host-gateway-ips` while the file's old `host-gateway-ip`
    /// (`migratedNamedConfig`) still conflicts with it.
    pub(crate) fn conflicts<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a String>,
    ) -> Vec<FlagConflict> {
        let flags = self.flag_keys();
        keys.into_iter()
            .filter(|key| !MERGED_WITH_FLAGS.contains(&key.as_str()))
            .filter_map(|key| {
                flags
                    .iter()
                    .find(|(flag_key, _)| {
                        flag_key == key
                            || (flag_key == "host-gateway-ip" && key == "host-gateway-ips")
                    })
                    .map(|(_, flag)| FlagConflict {
                        key: key.clone(),
                        flag: flag.clone(),
                    })
            })
            .collect()
    }

    /// Each flag on the command line, with the daemon.json key it corresponds to.
    pub(crate) fn flag_keys(&self) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let mut args = self.argv.iter().skip(1).peekable();
        while let Some(arg) = args.next() {
            let (name, inline_value) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (arg.as_str(), None),
            };
            let key = if let Some(long) = name.strip_prefix("--") {
                long_flag_key(long)
            } else if let Some(short) = name.strip_prefix('-') {
                match short_flag_key(short) {
                    Some(key) => key.to_owned(),
                    None => continue,
                }
            } else {
                continue;
            };
            let value = match inline_value {
                Some(value) => value,
                None if takes_value(&key) => args.next().cloned().unwrap_or_default(),
                None => String::new(),
            };
            let shown = if value.is_empty() {
                name.to_owned()
            } else {
                format!("{name} {value}")
            };
            found.push((key, shown));
        }
        found
    }
}

/// daemon.json keys dockerd merges with the same flag instead of refusing to start.
const MERGED_WITH_FLAGS: &[&str] = &["runtimes"];

/// dockerd names a daemon.json key after its long flag, except where a repeatable flag takes
/// a plural key.
fn long_flag_key(flag: &str) -> String {
    match flag {
        "host" => "hosts",
        "registry-mirror" => "registry-mirrors",
        "insecure-registry" => "insecure-registries",
        "label" => "labels",
        "log-opt" => "log-opts",
        "storage-opt" => "storage-opts",
        "exec-opt" => "exec-opts",
        "dns-opt" => "dns-opts",
        "default-ulimit" => "default-ulimits",
        "authorization-plugin" => "authorization-plugins",
        "add-runtime" => "runtimes",
        "node-generic-resource" => "node-generic-resources",
        "default-address-pool" => "default-address-pools",
        "feature" => "features",
        "cdi-spec-dir" => "cdi-spec-dirs",
        "graph" => "data-root",
        other => other,
    }
    .to_owned()
}

fn short_flag_key(flag: &str) -> Option<&'static str> {
    Some(match flag {
        "H" => "hosts",
        "D" => "debug",
        "l" => "log-level",
        "G" => "group",
        "p" => "pidfile",
        "s" => "storage-driver",
        "g" => "data-root",
        "b" => "bridge",
        _ => return None,
    })
}

/// Boolean flags stand alone; every other flag takes the next argument as its value.
fn takes_value(key: &str) -> bool {
    !matches!(
        key,
        "debug"
            | "live-restore"
            | "experimental"
            | "tls"
            | "tlsverify"
            | "ipv6"
            | "icc"
            | "iptables"
            | "ip-forward"
            | "ip-masq"
            | "userland-proxy"
            | "selinux-enabled"
            | "no-new-privileges"
            | "raw-logs"
            | "init"
            | "rootless"
            | "validate"
    )
}

/// The file that defines unit `name` (`gitlab-runner.service`), from the most important unit
/// directory that has one; `None` when no directory does.
pub(crate) fn find_unit(host: &Host, name: &str) -> Result<Option<HostPath>> {
    Ok(first_existing(host, name)?.map(|(path, _)| path))
}

fn first_existing(host: &Host, name: &str) -> Result<Option<(HostPath, String)>> {
    for dir in UNIT_DIRS {
        let path = host_path(dir).join(name);
        if let Some(text) = host.read_optional(&path)? {
            return Ok(Some((path, text)));
        }
    }
    Ok(None)
}

/// Drop-in files from every unit directory, ordered by file name; a name in a more important
/// directory hides the same name in a less important one (systemd's rule).
fn drop_ins(host: &Host, directory: &str) -> Result<Vec<String>> {
    let mut chosen: BTreeMap<String, HostPath> = BTreeMap::new();
    for dir in UNIT_DIRS.iter().rev() {
        let dir = host_path(dir).join(directory);
        for name in host.list_dir(&dir)? {
            if name.ends_with(".conf") {
                chosen.insert(name.clone(), dir.join(&name));
            }
        }
    }
    let mut texts = Vec::new();
    for path in chosen.values() {
        if let Some(text) = host.read_optional(path)? {
            texts.push(text);
        }
    }
    Ok(texts)
}

/// `Key=value` entries of the `[Service]` section, with `\` line continuations joined.
fn service_entries(text: &str) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    let mut in_service = false;
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if let Some(continued) = line.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let full = full.trim();
        if full.starts_with('[') {
            in_service = full == "[Service]";
            continue;
        }
        if !in_service {
            continue;
        }
        if let Some((key, value)) = full.split_once('=') {
            entries.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    entries
}

fn parse_environment(value: &str) -> Vec<(String, String)> {
    split_words(value)
        .into_iter()
        .filter_map(|word| {
            word.split_once('=')
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Expands an ExecStart line the way systemd does: `${VAR}` stays one word, `$VAR` splits on
/// whitespace; the `-@:+!` prefixes on the program are dropped.
fn expand(line: &str, environment: &BTreeMap<String, String>) -> Vec<String> {
    let mut argv = Vec::new();
    for word in split_words(line) {
        if let Some(name) = word
            .strip_prefix("${")
            .and_then(|rest| rest.strip_suffix('}'))
        {
            if let Some(value) = environment.get(name) {
                argv.push(value.clone());
            }
        } else if let Some(name) = word.strip_prefix('$').filter(|name| !name.is_empty()) {
            if let Some(value) = environment.get(name) {
                argv.extend(value.split_whitespace().map(str::to_owned));
            }
        } else {
            argv.push(word);
        }
    }
    if let Some(program) = argv.first_mut() {
        *program = program
            .trim_start_matches(['-', '@', ':', '+', '!'])
            .to_owned();
    }
    argv
}

/// Splits on whitespace, honouring double and single quotes.
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests build fixture trees beside the host layer"
)]
mod tests {
    use super::*;

    fn host_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Host) {
        let root = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let full = root.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        let host = Host::new(root.path());
        (root, host)
    }

    #[test]
    fn debian_unit_with_environment_file_expands_flags() {
        let (_root, host) = host_with(&[
            (
                "/lib/systemd/system/docker.service",
                "[Unit]\nDescription=Docker\n[Service]\nEnvironmentFile=-/etc/default/docker\nExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock $DOCKER_OPTS\n",
            ),
            (
                "/etc/default/docker",
                "# options\nDOCKER_OPTS=\"--storage-driver overlay2 --registry-mirror=https://m.example\"\n",
            ),
        ]);
        let service = find_docker_service(&host).unwrap().unwrap();
        let keys: Vec<_> = service
            .flag_keys()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(
            keys,
            ["hosts", "containerd", "storage-driver", "registry-mirrors"]
        );
        let daemon_keys = [
            "registry-mirrors".to_owned(),
            "mtu".to_owned(),
            "hosts".to_owned(),
        ];
        let conflicts = service.conflicts(&daemon_keys);
        assert_eq!(
            conflicts,
            [
                FlagConflict {
                    key: "registry-mirrors".into(),
                    flag: "--registry-mirror https://m.example".into()
                },
                FlagConflict {
                    key: "hosts".into(),
                    flag: "-H fd://".into()
                },
            ]
        );
    }

    /// Issue 12, item 3 and the `--host-gateway-ip` note: dockerd merges `runtimes` with
    /// `--add-runtime`, and from 28.0 `--host-gateway-ip` is the flag of `host-gateway-ips`.
    #[test]
    fn runtimes_merge_with_add_runtime_and_host_gateway_ip_names_both_keys() {
        let service = DockerService {
            unit: host_path("/lib/systemd/system/docker.service"),
            argv: [
                "/usr/bin/dockerd",
                "--add-runtime",
                "nvidia=/usr/bin/nvidia-container-runtime",
                "--host-gateway-ip",
                "192.0.2.1",
            ]
            .map(str::to_owned)
            .to_vec(),
        };
        let keys = ["runtimes", "host-gateway-ips", "host-gateway-ip"].map(str::to_owned);
        let conflicts: Vec<_> = service
            .conflicts(&keys)
            .into_iter()
            .map(|conflict| conflict.key)
            .collect();
        assert_eq!(conflicts, ["host-gateway-ips", "host-gateway-ip"]);
    }

    #[test]
    fn a_drop_in_replaces_exec_start() {
        let (_root, host) = host_with(&[
            (
                "/lib/systemd/system/docker.service",
                "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
            ),
            (
                "/etc/systemd/system/docker.service.d/override.conf",
                "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd \\\n  --log-level warn\n",
            ),
        ]);
        let service = find_docker_service(&host).unwrap().unwrap();
        assert_eq!(service.argv, ["/usr/bin/dockerd", "--log-level", "warn"]);
        assert!(docker_installed(&host));
    }

    #[test]
    fn no_unit_means_not_installed_as_a_service() {
        let (_root, host) = host_with(&[]);
        assert_eq!(find_docker_service(&host).unwrap(), None);
        assert!(!docker_installed(&host));
    }
}
