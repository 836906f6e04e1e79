//! The test harness: runs the real `berth` binary against a temporary `--root`, with a scrubbed
//! environment, and starts a private `dockerd` in its own network namespace so tests never touch
//! the machine's own daemon and can restart "the host's Docker" for real.
//!
//! Private daemon recipe (see the project notes on these machines): `setsid unshare -n` with
//! its own socket, data-root, exec-root and pidfile, and `--config-file <root>/etc/docker/daemon.json`.
//! Without its own network namespace a second daemon breaks the machine's `docker0`.
//!
//! Stand-in images (no registry can be reached): busybox with an `nc` script where a test needs
//! only the wiring ([`Dockerd::import_profile_images`]), and real ones built from the host's own
//! docker.io, cached on disk ([`Dockerd::import_real_profile_images`], [`real_images`]).
//!
//! Where no `dockerd` exists, Docker tests say so loudly and skip; under `CI=true` that is a
//! failure.

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant, SystemTime},
};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// A temporary directory standing in for `/`.
pub struct Root {
    dir: tempfile::TempDir,
    /// Beside the root, for what is not part of the host (stub programs and their logs), removed
    /// with it.
    scratch: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("berth-root-")
                .tempdir()
                .unwrap(),
            scratch: tempfile::Builder::new()
                .prefix("berth-scratch-")
                .tempdir()
                .unwrap(),
        }
    }

    /// A directory outside the root (so scans and snapshots of the root do not see it).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.scratch.path().join(name);
        fs::create_dir_all(&path).unwrap();
        path
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `host_path` (`/etc/x`) under this root.
    pub fn join(&self, host_path: &str) -> PathBuf {
        self.path().join(host_path.trim_start_matches('/'))
    }

    pub fn write(&self, host_path: &str, text: &str) -> &Self {
        let path = self.join(host_path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        self
    }

    /// Sets `host_path`'s permission bits, as an operator's `chmod` would.
    pub fn chmod(&self, host_path: &str, mode: u32) -> &Self {
        fs::set_permissions(self.join(host_path), fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    pub fn mkdir(&self, host_path: &str) -> &Self {
        fs::create_dir_all(self.join(host_path)).unwrap();
        self
    }

    pub fn read(&self, host_path: &str) -> Option<String> {
        fs::read_to_string(self.join(host_path)).ok()
    }

    pub fn exists(&self, host_path: &str) -> bool {
        self.join(host_path).exists()
    }

    pub fn mtime(&self, host_path: &str) -> SystemTime {
        fs::metadata(self.join(host_path))
            .unwrap()
            .modified()
            .unwrap()
    }

    pub fn mode(&self, host_path: &str) -> u32 {
        fs::metadata(self.join(host_path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    /// Every file under the root with its contents, to prove a run changed nothing on the host.
    /// berth's record of the run itself (the lock file and the run report, written by every
    /// apply, failed ones included) is not part of the host it manages and is left out.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = self.snapshot_all();
        for own in ["run/berth/lock", "var/lib/berth/last-run.json"] {
            files.remove(Path::new(own));
        }
        for own_dir in ["run/berth", "run", "var/lib/berth", "var/lib", "var"] {
            if !files
                .keys()
                .any(|path| path.starts_with(own_dir) && path != Path::new(own_dir))
            {
                files.remove(Path::new(own_dir));
            }
        }
        files
    }

    /// Every file under the root with its contents.
    pub fn snapshot_all(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, base: &Path, into: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let relative = path.strip_prefix(base).unwrap().to_owned();
                if path.is_dir() {
                    into.insert(relative, b"<dir>".to_vec());
                    walk(&path, base, into);
                } else {
                    into.insert(relative, fs::read(&path).unwrap_or_default());
                }
            }
        }
        let mut files = BTreeMap::new();
        walk(self.path(), self.path(), &mut files);
        files
    }

    /// Makes the running kernel visible under the root: overlay built in, no module support,
    /// as on the machines the tests run on.
    pub fn with_overlay_kernel(&self) -> &Self {
        self.write("/proc/filesystems", "nodev\tsysfs\nnodev\toverlay\n")
            .mkdir("/sys/module/overlay")
    }

    /// The root's `proc/cpuinfo` and `proc/meminfo`, as the kernel writes them, for a machine of
    /// `cpus` CPUs and `gib` GiB: what `concurrent = "auto"` is sized from under a root.
    pub fn with_machine(&self, cpus: u32, gib: u64) -> &Self {
        let cpuinfo: String = (0..cpus)
            .map(|cpu| format!("processor\t: {cpu}\nvendor_id\t: GenuineIntel\n\n"))
            .collect();
        self.write("/proc/cpuinfo", &cpuinfo).write(
            "/proc/meminfo",
            &format!(
                "MemTotal:       {} kB\nMemFree:          123456 kB\n",
                gib * 1024 * 1024
            ),
        )
    }
}

/// One run of the berth binary.
pub struct Berth {
    command: Command,
    root: PathBuf,
    extra_filters: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// stdout then stderr, as a snapshot records them.
    pub fn transcript(&self) -> String {
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}):\n{}", self.stdout))
    }

    /// The line of stdout about `id` (its first word), spaces collapsed: a plan's line for
    /// one resource.
    #[track_caller]
    pub fn line_of(&self, id: &str) -> String {
        let line = self
            .stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no line for `{id}`:\n{}\n{}", self.stdout, self.stderr));
        line.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The check `name` of a `berth doctor --json` run: its `verdict`, `detail`, `fix`, `stage`.
    #[track_caller]
    pub fn doctor_check(&self, name: &str) -> serde_json::Value {
        self.json()["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("no checks in doctor's output:\n{}", self.stdout))
            .iter()
            .find(|check| check["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` check:\n{}", self.stdout))
            .clone()
    }
}

/// The first line of `text` that starts with `start`.
#[track_caller]
pub fn line_starting<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|line| line.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting `{start}` in\n{text}"))
}

pub fn berth(root: &Root) -> Berth {
    let mut command = Command::new(BERTH);
    command.env_clear();
    command.env(
        "PATH",
        std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin")),
    );
    // Never the machine's daemon: a socket that does not exist unless a test gives a real one.
    command.env("DOCKER_HOST", "unix:///nonexistent/berth-test/docker.sock");
    command.arg("--root").arg(root.path());
    Berth {
        command,
        root: root.path().to_owned(),
        extra_filters: Vec::new(),
    }
}

impl Berth {
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// Talk to the test's private daemon.
    pub fn docker(mut self, dockerd: &Dockerd) -> Self {
        self.command.env("DOCKER_HOST", dockerd.host());
        self.command
            .env("DOCKER_CONFIG", dockerd.dir.path().join("cli"));
        self.extra_filters
            .push((dockerd.dir.path().display().to_string(), "[DOCKERD]".into()));
        self
    }

    /// Runs berth inside the private daemon's network namespace (`nsenter -n`), where its
    /// containers' addresses are reachable: a nested dind's TCP port. Call it last: the
    /// arguments given so far move behind `nsenter`.
    pub fn in_network_of(self, dockerd: &Dockerd) -> Self {
        let pid = dockerd.pid().to_string();
        self.wrapped_in(Command::new("nsenter").args(["-n", "-t", &pid, "--"]))
    }

    /// Runs berth as `nobody` (`setpriv`, as [`as_nobody`]); `None` where that cannot be done
    /// (the reason is printed, and under CI=true it fails). Call it last, as `in_network_of`.
    pub fn by_nobody(self) -> Option<Self> {
        let mut nobody = as_nobody("env")?;
        Some(self.wrapped_in(&mut nobody))
    }

    /// `wrapper ... BERTH ARGS...`, with the environment given so far.
    fn wrapped_in(mut self, wrapper: &mut Command) -> Self {
        let mut wrapped = Command::new(wrapper.get_program());
        wrapped.args(wrapper.get_args()).env_clear();
        for (key, value) in self.command.get_envs() {
            if let Some(value) = value {
                wrapped.env(key, value);
            }
        }
        wrapped
            .arg(self.command.get_program())
            .args(self.command.get_args());
        self.command = wrapped;
        self
    }

    /// Replaces `from` with `to` in what the run printed (a port, a generated id).
    pub fn filter(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.extra_filters.push((from.into(), to.into()));
        self
    }

    /// Puts `dir` first on PATH (stub programs).
    pub fn path_first(mut self, dir: &Path) -> Self {
        let path = std::env::var("PATH").unwrap_or_default();
        self.command
            .env("PATH", format!("{}:{path}", dir.display()));
        self
    }

    /// `plan` with the arguments given so far (profiles and `--json` are global, so they may
    /// come first): asserts the host is converged, exit 0 and nothing planned, and returns
    /// the run for what else the test checks.
    #[track_caller]
    pub fn converged(self) -> Run {
        let run = self.args(["plan"]).run();
        run.code(0);
        assert_eq!(
            run.stdout, "No changes: the host matches the profile.\n",
            "a converged plan plans nothing\n--- stderr\n{}",
            run.stderr
        );
        run
    }

    /// Starts berth without waiting for it (`berth watch`): its stdout and stderr go to files
    /// beside the root, read with [`Running::output`].
    pub fn spawn(mut self) -> Running {
        let dir = tempfile::Builder::new()
            .prefix("berth-spawned-")
            .tempdir()
            .unwrap();
        let stdout = dir.path().join("stdout");
        let stderr = dir.path().join("stderr");
        self.command
            .stdin(std::process::Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap());
        let child = self.command.spawn().expect("berth starts");
        Running {
            child,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    /// Runs berth on a terminal of its own (`script` from util-linux gives it a pty as stdin,
    /// stdout and stderr), typing `input`. What the terminal showed (the echoed input, stdout
    /// and stderr together, with CRLF line ends made LF) is the run's stdout.
    pub fn run_on_terminal(self, input: &str) -> Run {
        use std::io::Write as _;
        let quote =
            |text: &std::ffi::OsStr| format!("'{}'", text.to_string_lossy().replace('\'', "'\\''"));
        let mut line = quote(self.command.get_program());
        for arg in self.command.get_args() {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        let mut script = Command::new("script");
        script.env_clear();
        for (key, value) in self.command.get_envs() {
            if let Some(value) = value {
                script.env(key, value);
            }
        }
        script
            .args(["--quiet", "--return", "--command", &line, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = script.spawn().expect("script (util-linux) runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let filter = |text: &[u8]| {
            let mut text = String::from_utf8_lossy(text).replace("\r\n", "\n");
            text = text.replace(&self.root.display().to_string(), "[ROOT]");
            for (from, to) in &self.extra_filters {
                text = text.replace(from, to);
            }
            text
        };
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: filter(&output.stdout),
            stderr: filter(&output.stderr),
        }
    }

    pub fn run(mut self) -> Run {
        let output = self.command.output().expect("berth runs");
        self.finish(output.status, &output.stdout, &output.stderr)
    }

    /// Runs with stderr connected the way systemd connects a service's to the journal: a
    /// stream whose device and inode `JOURNAL_STREAM` names (a file here, read back after).
    pub fn run_under_journal(mut self) -> Run {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let stream = fs::File::create(&path).unwrap();
        let metadata = stream.metadata().unwrap();
        self.command
            .env(
                "JOURNAL_STREAM",
                format!("{}:{}", metadata.dev(), metadata.ino()),
            )
            .stderr(stream);
        let output = self.command.output().expect("berth runs");
        let stderr = fs::read(&path).unwrap();
        self.finish(output.status, &output.stdout, &stderr)
    }

    fn finish(&self, status: std::process::ExitStatus, stdout: &[u8], stderr: &[u8]) -> Run {
        let filter = |text: &[u8]| {
            let mut text = String::from_utf8_lossy(text).into_owned();
            text = text.replace(&self.root.display().to_string(), "[ROOT]");
            for (from, to) in &self.extra_filters {
                text = text.replace(from, to);
            }
            text
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: filter(stdout),
            stderr: filter(stderr),
        }
    }
}

/// A berth process the test started and stops (killed on drop).
pub struct Running {
    pub child: std::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        format!(
            "--- stdout\n{}--- stderr\n{}",
            fs::read_to_string(&self.stdout).unwrap_or_default(),
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Sends `signal` and waits up to `within` for it to exit; its exit code, if it did.
    pub fn signal_and_wait(&mut self, signal: i32, within: Duration) -> Option<i32> {
        Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 50 ms until it is true or `within` passed; how long it took, if it did.
pub fn within(within: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if check() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Writes an executable script into `dir`.
pub fn write_executable(dir: &Path, name: &str, body: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    fs::write(&path, body).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Writes stand-ins for `programs` into `dir` that append their name, argv and environment to
/// `dir/calls.log` and then behave as `body` says (shell, `$0`/`$@` as usual), so a test can
/// prove what berth passed to every program it started.
pub fn write_logging_stubs(dir: &Path, programs: &[&str], body: &str) -> PathBuf {
    let log = dir.join("calls.log");
    for program in programs {
        write_executable(
            dir,
            program,
            &format!(
                "#!/bin/sh\n{{ echo \"== {program} $*\"; env; }} >> {log}\n{body}\n",
                log = log.display()
            ),
        );
    }
    log
}

/// Starts the GitLab stand-in on a free loopback port (see `gitlab_server`); it stops when
/// dropped.
pub fn start_gitlab() -> crate::gitlab_server::GitLab {
    crate::gitlab_server::GitLab::start()
}

/// The same behind HTTPS, with a certificate signed by a test CA no system trusts.
pub fn start_gitlab_tls() -> crate::gitlab_server::GitLab {
    crate::gitlab_server::GitLab::start_tls()
}

/// Writes a profile file for `-p` and returns its path.
pub fn profile_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    fs::write(&path, text).unwrap();
    path
}

/// A dockerd of the test's own, started in its own network namespace.
pub struct Dockerd {
    dir: tempfile::TempDir,
    root: PathBuf,
}

fn dockerd_program() -> Option<PathBuf> {
    [
        "/usr/sbin/dockerd",
        "/usr/bin/dockerd",
        "/usr/local/bin/dockerd",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|path| path.exists())
}

/// Why Docker tests cannot run here, if they cannot.
fn docker_unavailable() -> Option<String> {
    if dockerd_program().is_none() {
        return Some("no dockerd installed (Debian: apt-get install docker.io)".into());
    }
    if !nix::unistd::geteuid().is_root() {
        return Some("a private dockerd needs root".into());
    }
    if Command::new("docker").arg("--version").output().is_err() {
        return Some("no docker CLI on PATH".into());
    }
    None
}

/// True when running under CI, where a missing prerequisite is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// Whether a test's prerequisite holds: `missing` is why not, if it does not. A missing one
/// skips the test loudly, or fails it under CI.
#[track_caller]
pub fn require(missing: Option<String>) -> bool {
    let Some(reason) = missing else {
        return true;
    };
    assert!(!in_ci(), "CI=true but {reason}");
    eprintln!("SKIPPED: {reason}");
    false
}

/// Whether `program` can run here; skips loudly (or fails under CI) when it cannot.
#[track_caller]
pub fn tool_available(program: &str, install_hint: &str) -> bool {
    require(
        Command::new(program)
            .arg("--version")
            .output()
            .is_err()
            .then(|| format!("`{program}` is not installed ({install_hint})")),
    )
}

/// A command that runs `program` as the `nobody` user through setpriv, for what berth does
/// without root; `None` (skipped loudly, or failed under CI) where the test is not root or
/// setpriv or a `nobody` user is missing.
#[track_caller]
pub fn as_nobody(program: impl AsRef<std::ffi::OsStr>) -> Option<Command> {
    if !require(
        (!nix::unistd::geteuid().is_root())
            .then(|| "dropping to `nobody` needs root to start from".to_owned()),
    ) || !tool_available("setpriv", "Debian: apt-get install util-linux")
    {
        return None;
    }
    let nobody = nix::unistd::User::from_name("nobody").ok().flatten();
    if !require(
        nobody
            .is_none()
            .then(|| "there is no `nobody` user (getent passwd nobody)".to_owned()),
    ) {
        return None;
    }
    let nobody = nobody.unwrap();
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={}", nobody.uid))
        .arg(format!("--regid={}", nobody.gid))
        .args(["--clear-groups", "--"])
        .arg(program);
    Some(command)
}

/// Skips a Docker test loudly, or fails it under CI.
#[macro_export]
macro_rules! require_dockerd {
    ($root:expr) => {
        match $crate::harness::Dockerd::start($root) {
            Some(dockerd) => dockerd,
            None => return,
        }
    };
}

impl Dockerd {
    /// Whether the daemon has the object (`container`, `network`, `volume`, `image`) `name`.
    pub fn exists(&self, kind: &str, name: &str) -> bool {
        self.docker_unchecked([kind, "inspect", name])
            .status
            .success()
    }

    /// Starts a daemon whose config file is `<root>/etc/docker/daemon.json` (created as `{}` if
    /// absent) and describes it in `<root>/lib/systemd/system/docker.service`, so berth sees an
    /// installed Docker whose ExecStart flags are the ones really used.
    pub fn start(root: &Root) -> Option<Self> {
        if let Some(reason) = docker_unavailable() {
            assert!(!in_ci(), "CI=true but Docker tests cannot run: {reason}");
            eprintln!("SKIPPED: Docker test skipped: {reason}");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("berth-dockerd-")
            .tempdir()
            .unwrap();
        let t = dir.path().display().to_string();
        let config = root.join("/etc/docker/daemon.json");
        if !config.exists() {
            root.write("/etc/docker/daemon.json", "{}\n");
        }
        let dockerd = dockerd_program().unwrap();
        let flags = format!(
            "--data-root {t}/data --exec-root {t}/exec --pidfile {t}/pid -H unix://{t}/docker.sock --config-file {}",
            config.display()
        );
        root.write(
            "/lib/systemd/system/docker.service",
            &format!("[Unit]\nDescription=test dockerd\n[Service]\nExecStart={} {flags}\nExecReload=/bin/kill -s HUP $MAINPID\n", dockerd.display()),
        );
        write_executable(
            dir.path(),
            "restart.sh",
            &format!(
                r#"#!/bin/sh
# Restarts the private dockerd as `systemctl restart docker` would: stop, start, and fail when
# the new daemon does not come up.
T={t}
if [ -f "$T/pid" ]; then
    pid=$(cat "$T/pid")
    kill "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1)); [ "$i" -gt 300 ] && kill -9 "$pid" 2>/dev/null
        sleep 0.1
    done
fi
: > "$T/last-start.log"
setsid unshare -n sh -c 'ip link set lo up; exec "$@"' sh {dockerd} {flags} >"$T/last-start.log" 2>&1 </dev/null &
started=$!
i=0
while [ "$i" -lt 600 ]; do
    if DOCKER_HOST=unix://$T/docker.sock DOCKER_CONFIG=$T/cli docker version >/dev/null 2>&1; then
        cat "$T/last-start.log" >>"$T/log"
        exit 0
    fi
    if ! kill -0 "$started" 2>/dev/null; then
        cat "$T/last-start.log" >>"$T/log"
        echo "dockerd exited during start:" >&2
        # As `systemctl restart` leaves it in the journal: dockerd's last words.
        tail -n 3 "$T/last-start.log" >&2
        exit 1
    fi
    i=$((i + 1))
    sleep 0.1
done
echo "dockerd did not answer within 60 s" >&2
exit 1
"#,
                dockerd = dockerd.display()
            ),
        );
        write_executable(
            dir.path(),
            "reload.sh",
            &format!(
                "#!/bin/sh\n# `systemctl reload docker`: SIGHUP to the daemon.\nkill -HUP \"$(cat {t}/pid)\"\n"
            ),
        );
        let daemon = Self {
            dir,
            root: root.path().to_owned(),
        };
        let started = Command::new("sh")
            .arg(daemon.dir.path().join("restart.sh"))
            .output()
            .unwrap();
        assert!(
            started.status.success(),
            "the private dockerd did not start: {}\n{}",
            String::from_utf8_lossy(&started.stderr),
            fs::read_to_string(daemon.dir.path().join("log")).unwrap_or_default()
        );
        Some(daemon)
    }

    pub fn host(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.path().display())
    }

    /// A profile layer that points berth's restart and reload at this daemon.
    pub fn layer(&self) -> String {
        let t = self.dir.path().display();
        format!(
            "[docker]\nrestart = [\"sh\", \"{t}/restart.sh\"]\nreload = [\"sh\", \"{t}/reload.sh\"]\nready_timeout = 60\n"
        )
    }

    /// Writes [`Dockerd::layer`] to a file for `-p`.
    pub fn layer_file(&self) -> PathBuf {
        profile_file(self.dir.path(), "test-daemon", &self.layer())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        fs::read_to_string(self.dir.path().join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Runs the docker CLI against this daemon; panics with its stderr on failure.
    #[track_caller]
    pub fn docker<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let output = self.docker_unchecked(args);
        assert!(
            output.status.success(),
            "docker failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    pub fn docker_unchecked<I, S>(&self, args: I) -> std::process::Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.path().join("cli"))
            .output()
            .unwrap()
    }

    /// `docker info` as JSON.
    pub fn info(&self) -> serde_json::Value {
        serde_json::from_str(&self.docker(["info", "--format", "{{json .}}"])).unwrap()
    }

    /// Imports a busybox-based stand-in image as `tag` (no registry can be reached here).
    pub fn import_busybox(&self, tag: &str) {
        self.import_busybox_with(tag, &["CMD [\"sh\"]"]);
    }

    /// Imports a busybox-based stand-in image as `tag` with `docker import -c` changes
    /// (`ENTRYPOINT [...]`, `VOLUME /var/lib/docker`, `ENV A=b`, ...).
    pub fn import_busybox_with(&self, tag: &str, changes: &[&str]) {
        let rootfs = busybox_rootfs();
        let tar = Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .args(["-c", "."])
            .output()
            .unwrap();
        assert!(tar.status.success());
        let mut child = Command::new("docker")
            .arg("import")
            .args(changes.iter().flat_map(|change| ["-c", change]))
            .args(["-", tag])
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.path().join("cli"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tar.stdout).unwrap();
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success(), "docker import failed");
    }

    /// Imports a stand-in whose entrypoint runs `script` with `sh -c` (the container's
    /// arguments, such as a profile's `command`, are ignored), plus `docker import -c` changes.
    pub fn import_stand_in(&self, tag: &str, script: &str, changes: &[&str]) {
        let entrypoint = format!(
            "ENTRYPOINT {}",
            serde_json::json!(["/bin/sh", "-c", script, "stand-in"])
        );
        let mut all = vec![entrypoint.as_str()];
        all.extend_from_slice(changes);
        self.import_busybox_with(tag, &all);
    }

    /// Stand-ins for the images the embedded profiles name, tagged as those images so that
    /// `pull = "missing"` finds them:
    /// - [`DIND_IMAGE`] acts like `docker:dind`: declares VOLUME /var/lib/docker, listens on 2375
    ///   (2376 with DOCKER_TLS_CERTDIR, where it also writes a CA and client ca/cert/key files the
    ///   way the real entrypoint does, keeping an existing CA) and answers like `GET /_ping`.
    /// - [`RUNNER_IMAGE`] acts like `gitlab/gitlab-runner`: has an entrypoint and a CMD of its
    ///   own, runs until stopped, and on SIGQUIT (drain) appends its hostname to
    ///   /etc/gitlab-runner/drained and exits 0.
    pub fn import_profile_images(&self) {
        self.import_stand_in(
            DIND_IMAGE,
            DIND_SCRIPT,
            &["VOLUME /var/lib/docker", "ENV DIND_STAND_IN=1"],
        );
        self.import_stand_in(
            RUNNER_IMAGE,
            RUNNER_SCRIPT,
            &[
                "CMD [\"run\", \"--user=gitlab-runner\"]",
                "ENV RUNNER_STAND_IN=1",
                "LABEL maintainer=stand-in",
            ],
        );
    }

    /// Real stand-ins for the images the embedded profiles name (see [`real_images`]), tagged
    /// as those images: [`DIND_IMAGE`] runs a real dockerd through an entrypoint that behaves
    /// like docker:dind's (ENTRYPOINT, `DOCKER_TLS_CERTDIR=/certs` and `VOLUME /var/lib/docker`
    /// as the real image has them), and [`RUNNER_IMAGE`] has the docker CLI, so a test can
    /// `docker exec gitlab-runner docker ...` with the runner's own environment.
    pub fn import_real_profile_images(&self) {
        let images = real_images();
        let path = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        self.import_tar(
            &images.join("dind.tar"),
            DIND_IMAGE,
            &[
                "ENTRYPOINT [\"dockerd-entrypoint.sh\"]",
                "CMD []",
                "VOLUME /var/lib/docker",
                "EXPOSE 2375/tcp 2376/tcp",
                "ENV DOCKER_TLS_CERTDIR=/certs",
                path,
            ],
        );
        let runner = format!(
            "ENTRYPOINT {}",
            serde_json::json!(["/bin/sh", "-c", RUNNER_SCRIPT, "stand-in"])
        );
        self.import_tar(
            &images.join("runner.tar"),
            RUNNER_IMAGE,
            &[
                runner.as_str(),
                "CMD [\"run\", \"--user=gitlab-runner\"]",
                "ENV RUNNER_STAND_IN=1",
                path,
            ],
        );
    }

    /// `docker import` of a root filesystem tar file with `-c` changes.
    pub fn import_tar(&self, tar: &Path, tag: &str, changes: &[&str]) {
        let output = Command::new("docker")
            .arg("import")
            .args(changes.iter().flat_map(|change| ["-c", change]))
            .arg(tar)
            .arg(tag)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.path().join("cli"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "docker import {tag} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The ID of a container, to tell a replaced container from a kept one.
    pub fn container_id(&self, name: &str) -> String {
        self.docker(["container", "inspect", "--format", "{{.Id}}", name])
    }

    /// `docker container inspect NAME` as JSON.
    pub fn inspect_container(&self, name: &str) -> serde_json::Value {
        let text = self.docker(["container", "inspect", name]);
        serde_json::from_str::<serde_json::Value>(&text).unwrap()[0].clone()
    }

    /// The daemon's log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The daemon's pidfile.
    pub fn pidfile(&self) -> PathBuf {
        self.dir.path().join("pid")
    }

    /// The script that restarts this daemon as `systemctl restart docker` would (stop, start,
    /// exit 1 when the new one does not come up), for stubs that wrap it.
    pub fn restart_script(&self) -> PathBuf {
        self.dir.path().join("restart.sh")
    }

    /// The script that reloads this daemon (SIGHUP).
    pub fn reload_script(&self) -> PathBuf {
        self.dir.path().join("reload.sh")
    }

    /// Starts (or restarts) the daemon on the daemon.json now on disk; panics when it does not
    /// come up.
    #[track_caller]
    pub fn restart(&self) {
        let started = Command::new("sh")
            .arg(self.restart_script())
            .output()
            .unwrap();
        assert!(
            started.status.success(),
            "the private dockerd did not start: {}\n{}",
            String::from_utf8_lossy(&started.stderr),
            self.log()
        );
    }

    /// Whether the daemon answers `docker version` now.
    pub fn answers(&self) -> bool {
        self.docker_unchecked(["version"]).status.success()
    }

    /// The names of every container, running or not.
    pub fn container_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .docker(["container", "ls", "--all", "--format", "{{.Names}}"])
            .lines()
            .map(str::to_owned)
            .filter(|name| !name.is_empty())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let Ok(pid) = fs::read_to_string(self.dir.path().join("pid")) else {
            return;
        };
        let Ok(pid) = pid.trim().parse::<i32>() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while nix::sys::signal::kill(pid, None).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        // Containers outlive their dockerd (live-restore, a SIGKILLed daemon): their shims,
        // which name this daemon's containerd socket, and each container's init (the shim's
        // child; its PID namespace goes with it) are killed, or a suite run would carry hundreds
        // of stand-ins looping on `sleep 1` to its end.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "for shim in $(pgrep -f 'containerd-shim.*{dir}'); do pkill -9 -P \"$shim\"; kill -9 \"$shim\"; done",
                dir = self.dir.path().display()
            ))
            .status();
        // Anything dockerd left mounted under its data-root would keep the directory alive.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                self.dir.path().display()
            ))
            .status();
        let _ = &self.root;
    }
}

/// The image the embedded profiles run as their Docker-in-Docker daemon.
pub const DIND_IMAGE: &str = "docker:27-dind";
/// The image the embedded profiles run as their runner.
pub const RUNNER_IMAGE: &str = "gitlab/gitlab-runner:v17.11.0";

const DIND_SCRIPT: &str = r#"
port=2375
if [ -n "$DOCKER_TLS_CERTDIR" ]; then
    port=2376
    /bin/busybox mkdir -p "$DOCKER_TLS_CERTDIR/ca" "$DOCKER_TLS_CERTDIR/client"
    [ -s "$DOCKER_TLS_CERTDIR/ca/key.pem" ] || echo "ca-of-$HOSTNAME" > "$DOCKER_TLS_CERTDIR/ca/key.pem"
    echo "client cert signed by $(cat "$DOCKER_TLS_CERTDIR/ca/key.pem")" > "$DOCKER_TLS_CERTDIR/client/cert.pem"
    echo "client key" > "$DOCKER_TLS_CERTDIR/client/key.pem"
    cp "$DOCKER_TLS_CERTDIR/ca/key.pem" "$DOCKER_TLS_CERTDIR/client/ca.pem"
fi
trap 'exit 0' TERM
# Answers every connection the way dockerd answers GET /_ping.
while :; do nc -l -p "$port" -e printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK' & wait $!; done
"#;

/// True when `answer` is what the dind stand-in (and dockerd) send for `GET /_ping`.
pub fn is_docker_ping(answer: &str) -> bool {
    answer.starts_with("HTTP/1.0 200 OK") && answer.ends_with("\r\n\r\nOK")
}

const RUNNER_SCRIPT: &str = r#"
trap 'echo "$HOSTNAME" >> /etc/gitlab-runner/drained; exit 0' QUIT
trap 'exit 0' TERM
while :; do sleep 1 & wait $!; done
"#;

/// A profile layer that lets the named containers start here: privileged containers cannot
/// (the sandbox lacks a capability), so they run unprivileged.
pub fn unprivileged_layer(containers: &[&str]) -> String {
    containers
        .iter()
        .map(|name| format!("[containers.{name}]\nprivileged = false\n"))
        .collect()
}

/// A profile layer that lets a real dockerd run in the named dind containers without
/// `--privileged` (which cannot start here): the smallest set the project notes found,
/// `SYS_ADMIN` and `NET_ADMIN` with seccomp unconfined. The two remounts `--privileged` would
/// have made unneeded are the stand-in entrypoint's.
pub fn real_dind_layer(containers: &[&str]) -> String {
    containers
        .iter()
        .map(|name| {
            format!(
                "[containers.{name}]\nprivileged = false\ncap_add = [\"SYS_ADMIN\", \"NET_ADMIN\"]\nsecurity_opt = [\"seccomp=unconfined\"]\n"
            )
        })
        .collect()
}

/// The directory holding `dind.tar` and `runner.tar`, the root filesystems of the real
/// stand-ins, built by `tests/fixtures/images/build.sh` from this machine's own programs.
/// Cached on disk under cargo's scratch directory for tests, keyed by the versions of those
/// programs and the text of the build script and entrypoint: a fresh machine builds them once
/// (about 10 s), later runs reuse them, and an upgraded docker.io builds them again (older
/// keys are removed then).
pub fn real_images() -> &'static Path {
    static IMAGES: OnceLock<PathBuf> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
        let version = |program: &str, args: &[&str]| -> Vec<u8> {
            match Command::new(program).args(args).output() {
                Ok(output) => [output.stdout, output.stderr].concat(),
                Err(error) => panic!(
                    "`{program}` is needed for the real dind stand-in ({error}); .ci/run installs it"
                ),
            }
        };
        let mut key = <sha2::Sha256 as sha2::Digest>::new();
        for (program, args) in [
            ("dockerd", &["--version"][..]),
            ("containerd", &["--version"]),
            ("runc", &["--version"]),
            ("docker-init", &["--version"]),
            ("docker", &["--version"]),
            ("iptables", &["--version"]),
            ("openssl", &["version"]),
            ("busybox", &[]),
        ] {
            sha2::Digest::update(&mut key, version(program, args));
        }
        for file in ["build.sh", "dockerd-entrypoint.sh"] {
            sha2::Digest::update(&mut key, fs::read(fixtures.join(file)).unwrap());
        }
        let key: String = sha2::Digest::finalize(key)
            .iter()
            .take(8)
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stand-in-images");
        let dir = cache.join(&key);
        if !(dir.join("dind.tar").exists() && dir.join("runner.tar").exists()) {
            for stale in fs::read_dir(&cache).into_iter().flatten().flatten() {
                let _ = fs::remove_dir_all(stale.path());
            }
            let built = Command::new("bash")
                .arg(fixtures.join("build.sh"))
                .arg(&dir)
                .output()
                .unwrap();
            assert!(
                built.status.success(),
                "building the real stand-in images failed:\n{}",
                String::from_utf8_lossy(&built.stderr)
            );
        }
        dir
    })
}

/// A directory with `/bin/busybox` and its applets, built once per test run in cargo's scratch
/// directory for tests (rebuilt each run, not accumulated in /tmp).
pub fn busybox_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-rootfs");
        let _ = fs::remove_dir_all(&dir);
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).unwrap();
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .find(|path| Path::new(path).exists())
            .expect("busybox-static is installed (apt-get install busybox-static)");
        fs::copy(busybox, bin.join("busybox")).unwrap();
        for applet in [
            "sh", "nc", "sleep", "cat", "echo", "ls", "env", "true", "kill", "wget", "grep", "ps",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        for dir_name in ["tmp", "etc", "proc", "sys", "dev"] {
            fs::create_dir_all(dir.join(dir_name)).unwrap();
        }
        dir
    })
}
