//! Fault injection for the interrupted-run tests (issue 9): a `docker` that kills berth or the
//! daemon at the Nth call of a kind (at the CLI, and at the Engine API through
//! `fault_proxy.rs`), a restart command that fails, sleeps or kills berth while
//! Docker restarts, a full filesystem, and a Docker socket that accepts but never answers.
//!
//! None of these touch berth itself: they stand where the host's programs, disk and daemon are.

#![allow(dead_code)]

use std::{
    fs,
    io::Write as _,
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    fault_proxy::FaultProxy,
    harness::{Berth, Dockerd, Root, in_ci, write_executable},
};

impl Berth {
    /// Runs berth through `fault` at both of Docker's doors: its `docker` first on PATH and its
    /// proxy as `DOCKER_HOST` (after `.docker(…)`, which it overrides).
    pub fn faulted(self, fault: &FaultDocker) -> Self {
        self.path_first(fault.bin())
            .env("DOCKER_HOST", fault.host())
    }
}

/// Whom a fault kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The berth process that ran the call (SIGKILL, as a systemd timeout or OOM kill would).
    Berth,
    /// The test's private dockerd (SIGKILL; waits until it is gone).
    Dockerd,
}

/// What the faulted call does once the kill is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Runs the docker call anyway: the daemon does what berth asked (when it is still up),
    /// berth never hears the answer. Over every call index this covers "killed between call N
    /// and call N+1".
    Proceed,
    /// Exits 137 without running the call: the call never happened.
    Exit,
}

/// A `docker` that stands first on berth's PATH, and a proxy that stands at berth's
/// `DOCKER_HOST` (`Berth::faulted` sets both): each logs every call berth makes (calls from
/// other programs, such as the restart script, pass through unlogged), counts the calls of one
/// kind across both doors and, at the Nth, kills berth or the daemon, then goes on or exits.
/// The CLI's calls are logged as their argv, the API's as `METHOD /path?query`.
///
/// berth runs `docker` through duct without a shell, so the wrapper's parent is berth itself:
/// the wrapper recognises berth's calls by `/proc/$PPID/comm` and kills `$PPID`.
///
/// Kinds match the start of the argv, whole words, with a leading `container` dropped, as berth
/// spells its calls: `rm` (`container rm …`), `rename`, `create` (`container create`, not
/// `network create`), `start`, `stop`, `update`, `network rm`, `network create`, `network
/// connect`, `info`, or `*` for any call.
pub struct FaultDocker {
    dir: PathBuf,
    /// The same faults at the Engine API: berth's `DOCKER_HOST` while faulted.
    proxy: FaultProxy,
}

impl FaultDocker {
    /// Writes the wrapper into the root's scratch directory; it does nothing but log and pass
    /// through until [`FaultDocker::arm`]. `dockerd` is the daemon a [`Target::Dockerd`] fault
    /// kills.
    pub fn install(root: &Root, dockerd: &Dockerd) -> Self {
        let dir = root.scratch("fault-docker");
        let real = real_docker();
        write_executable(
            &dir,
            "docker",
            &format!(
                r#"#!/bin/sh
# berth's `docker`, with a fault (tests/it/fault_tools.rs).
F='{dir}'
REAL='{real}'
PIDFILE='{pidfile}'
if [ "$(cat /proc/$PPID/comm 2>/dev/null)" != berth ]; then exec "$REAL" "$@"; fi
printf '%s\n' "$*" >> "$F/calls.log"
if [ -f "$F/armed" ] && [ ! -f "$F/fired" ]; then
    . "$F/armed"
    kind="$*"
    case "$kind" in container\ *) kind=${{kind#container }} ;; esac
    hit=
    if [ "$MATCH" = '*' ]; then hit=1; else case "$kind " in "$MATCH "*) hit=1 ;; esac; fi
    if [ -n "$hit" ]; then
        n=$(( $(cat "$F/count" 2>/dev/null || echo 0) + 1 ))
        echo "$n" > "$F/count"
        if [ "$n" -eq "$NTH" ]; then
            printf '%s\n' "$*" > "$F/fired"
            case "$TARGET" in
                berth) kill -9 "$PPID" ;;
                dockerd)
                    pid=$(cat "$PIDFILE")
                    kill -9 "$pid"
                    i=0
                    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 200 ]; do i=$((i + 1)); sleep 0.05; done
                    ;;
            esac
            if [ "$THEN" = exit ]; then touch "$F/settled"; exit 137; fi
            "$REAL" "$@"
            rc=$?
            touch "$F/settled"
            exit $rc
        fi
    fi
fi
exec "$REAL" "$@"
"#,
                dir = dir.display(),
                real = real.display(),
                pidfile = dockerd.pidfile().display(),
            ),
        );
        let daemon_socket = dockerd.host();
        let proxy = FaultProxy::start(
            &dir,
            Path::new(daemon_socket.trim_start_matches("unix://")),
            &dockerd.pidfile(),
        );
        Self { dir, proxy }
    }

    /// `DOCKER_HOST` for berth: the proxy in front of the private dockerd.
    pub fn host(&self) -> String {
        self.proxy.host()
    }

    /// The directory to put first on berth's PATH (`Berth::path_first`).
    pub fn bin(&self) -> &Path {
        &self.dir
    }

    /// At the `nth` (1-based) call of `kind` from now on, kill `target`, then `then`. Fires once.
    pub fn arm(&self, kind: &str, nth: usize, target: Target, then: Then) {
        assert!(nth >= 1, "calls are counted from 1");
        self.clear_counters();
        let target = match target {
            Target::Berth => "berth",
            Target::Dockerd => "dockerd",
        };
        let then = match then {
            Then::Proceed => "proceed",
            Then::Exit => "exit",
        };
        fs::write(
            self.dir.join("armed"),
            format!(
                "MATCH='{}'\nNTH={nth}\nTARGET={target}\nTHEN={then}\n",
                kind.replace('\'', "")
            ),
        )
        .unwrap();
    }

    /// Back to logging and passing through.
    pub fn disarm(&self) {
        let _ = fs::remove_file(self.dir.join("armed"));
        self.clear_counters();
    }

    fn clear_counters(&self) {
        for file in ["count", "fired", "settled"] {
            let _ = fs::remove_file(self.dir.join(file));
        }
    }

    /// Forgets the calls logged so far.
    pub fn clear_log(&self) {
        let _ = fs::remove_file(self.dir.join("calls.log"));
    }

    /// The argv (joined by spaces, without `docker`) of every call berth made since the last
    /// [`FaultDocker::clear_log`], in order.
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The calls `*` counts, in order: every CLI call, and every API request that is not a GET
    /// or HEAD (what berth changes; its questions are not counted).
    pub fn changes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|call| !call.starts_with("GET /") && !call.starts_with("HEAD /"))
            .collect()
    }

    /// The call at which the fault fired, if it did.
    pub fn fired(&self) -> Option<String> {
        fs::read_to_string(self.dir.join("fired"))
            .ok()
            .map(|text| text.trim_end().to_owned())
    }

    /// Waits until the faulted call has finished (with [`Then::Proceed`] it runs on after berth
    /// died); returns at once when the fault did not fire.
    #[track_caller]
    pub fn wait_settled(&self) {
        if self.fired().is_none() {
            return;
        }
        wait_for(
            Duration::from_secs(120),
            "the faulted docker call to finish",
            || self.dir.join("settled").exists(),
        );
    }
}

/// The docker CLI the wrapper calls: the first `docker` on the test's own PATH.
fn real_docker() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("docker"))
        .find(|path| path.is_file())
        .expect("a docker CLI on PATH")
}

/// What the stand-in for the profile's `[docker] restart` does.
#[derive(Debug, Clone, Copy)]
pub enum Restart {
    /// Restarts the private dockerd for real (its `restart.sh`).
    Real,
    /// Exits 1 without touching dockerd, as `systemctl restart docker` does when systemd is
    /// unhappy for reasons of its own.
    Fail,
    /// Exits 0 without touching dockerd.
    Nothing,
    /// Sleeps, then restarts for real.
    SleepThenReal(Duration),
    /// Starts the real restart, SIGKILLs berth (the stub's parent) after the delay while Docker
    /// is still restarting, and lets the restart finish on its own.
    KillBerthDuring(Duration),
    /// SIGKILLs berth before anything restarts: berth dies between the steps before its
    /// restart (a drain) and the restart itself, which never happens.
    KillBerthBefore,
}

/// A restart command for `[docker] restart` that logs each call and then behaves as
/// [`Restart`] says. berth runs it as `sh SCRIPT`, so the script's parent is berth.
pub struct RestartStub {
    dir: PathBuf,
    script: PathBuf,
}

impl RestartStub {
    /// Writes the stub into the root's scratch directory under `name`. `dockerd` is needed by
    /// every behaviour that restarts for real.
    pub fn new(root: &Root, name: &str, dockerd: Option<&Dockerd>, behaviour: Restart) -> Self {
        let dir = root.scratch(&format!("restart-{name}"));
        let real = || {
            format!(
                "sh '{}'",
                dockerd
                    .expect("a real restart needs the private dockerd")
                    .restart_script()
                    .display()
            )
        };
        let body = match behaviour {
            Restart::Real => real(),
            Restart::Fail => "echo 'restart stub: failing on purpose' >&2\nfalse".to_owned(),
            Restart::Nothing => "true".to_owned(),
            Restart::SleepThenReal(delay) => {
                format!("sleep {}\n{}", delay.as_secs_f64(), real())
            }
            Restart::KillBerthBefore => "kill -9 \"$PPID\"\nexit 137".to_owned(),
            Restart::KillBerthDuring(delay) => format!(
                "{} &\nrestart=$!\nsleep {}\nkill -9 \"$PPID\"\nwait \"$restart\"",
                real(),
                delay.as_secs_f64()
            ),
        };
        let script = write_executable(
            &dir,
            "restart.sh",
            &format!(
                "#!/bin/sh\n# The profile's `[docker] restart`, a stand-in (tests/it/fault_tools.rs).\nD='{dir}'\necho \"restart $*\" >> \"$D/calls.log\"\nrm -f \"$D/finished\"\n{body}\nrc=$?\ntouch \"$D/finished\"\nexit $rc\n",
                dir = dir.display()
            ),
        );
        Self { dir, script }
    }

    /// The TOML value for `restart = …`.
    pub fn command(&self) -> String {
        format!("[\"sh\", \"{}\"]", self.script.display())
    }

    /// A profile layer whose `[docker]` section restarts with this stub (and reloads the private
    /// dockerd, if there is one).
    pub fn layer(&self, dockerd: Option<&Dockerd>, ready_timeout: u64) -> String {
        let reload = match dockerd {
            Some(dockerd) => format!("[\"sh\", \"{}\"]", dockerd.reload_script().display()),
            None => "[\"true\"]".to_owned(),
        };
        format!(
            "[docker]\nrestart = {}\nreload = {reload}\nready_timeout = {ready_timeout}\n",
            self.command()
        )
    }

    /// How many times berth ran it.
    pub fn calls(&self) -> usize {
        fs::read_to_string(self.dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// Waits until the last call finished (a stub whose berth was killed runs on).
    #[track_caller]
    pub fn wait_finished(&self) {
        wait_for(
            Duration::from_secs(120),
            "the restart stub to finish",
            || self.dir.join("finished").exists(),
        );
    }
}

/// A tmpfs mounted over a directory of the root and filled to the brim, so that writing any
/// file there fails with ENOSPC; unmounted when dropped (declare it after the `Root`).
pub struct FullDisk {
    path: PathBuf,
}

impl FullDisk {
    /// Mounts a tmpfs of `size` (`64k`) at `host_dir` under the root and fills it. Skips loudly
    /// (`None`) where mounting is not allowed; under CI that is a failure.
    pub fn mount(root: &Root, host_dir: &str, size: &str) -> Option<Self> {
        root.mkdir(host_dir);
        let path = root.join(host_dir);
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(&path)
            .output()
            .unwrap();
        if !mounted.status.success() {
            let reason = String::from_utf8_lossy(&mounted.stderr).trim().to_owned();
            assert!(!in_ci(), "CI=true but a tmpfs cannot be mounted: {reason}");
            eprintln!("SKIPPED: a tmpfs cannot be mounted here: {reason}");
            return None;
        }
        let disk = Self { path };
        disk.fill();
        Some(disk)
    }

    /// Fills what is left: big writes first, then byte by byte into a second file.
    pub fn fill(&self) {
        for (name, chunk) in [(".filler", 4096), (".filler-tail", 1)] {
            let mut file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path.join(name))
                .unwrap();
            let block = vec![0u8; chunk];
            while file
                .write_all(&block)
                .and_then(|()| file.sync_all())
                .is_ok()
            {}
        }
        let probe = self.path.join(".probe");
        assert!(
            fs::write(&probe, b"x").is_err(),
            "the tmpfs at {} is full",
            self.path.display()
        );
        let _ = fs::remove_file(probe);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A "daemon" on a unix socket that accepts every connection and never answers: a dockerd
/// wedged in a deadlock, as far as any client can tell. Stops when dropped.
pub struct HungDaemon {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<UnixStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl HungDaemon {
    pub fn start(path: &Path) -> Self {
        let _ = fs::remove_file(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let listener = UnixListener::bind(path).unwrap();
        // Polled, so that stopping does not depend on the socket file still being there.
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            let accepted = Arc::clone(&accepted);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        // Kept open, never read, never written.
                        Ok((stream, _)) => accepted.lock().unwrap().push(stream),
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Self {
            path: path.to_owned(),
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    /// `DOCKER_HOST` for it.
    pub fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// How many connections it accepted (and never answered).
    pub fn connections(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }
}

impl Drop for HungDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.accepted.lock().unwrap().clear();
        let _ = fs::remove_file(&self.path);
    }
}

/// Polls `done` every 50 ms until it is true; panics after `timeout`.
#[track_caller]
pub fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what} after {} s",
            timeout.as_secs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
