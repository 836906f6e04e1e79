//! One `berth apply` at a time per host: an exclusive `flock` on `<root>/run/berth/lock`, held
//! for the whole run and released by the kernel when the process exits, however it exits (a
//! crashed run never leaves a stale lock). The holder writes its pid and start time into the
//! file so that a run that has to give up can say who is in the way.
//!
//! `flock` works on a descriptor opened read-only, so anyone who can open the file can hold
//! the lock and stop every apply and watch converge: the lock is `0600` in a `0700` directory
//! of berth's user (root), both opened without following a link and checked through their
//! descriptors (a directory, a regular file, owned by berth's user) before they are used.

use std::{
    fs::File,
    io::{Read, Seek, Write},
    os::{
        fd::OwnedFd,
        unix::fs::{MetadataExt, PermissionsExt},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg, OFlag, openat},
    sys::stat::{Mode, mkdirat},
};

use crate::host::{Host, host_path};

/// The directory the lock is in: root's alone.
pub(crate) const LOCK_DIR: &str = "/run/berth";
pub(crate) const LOCK_FILE: &str = "/run/berth/lock";

/// How often a waiting run tries the lock again.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Held while it lives.
pub(crate) struct RunLock {
    _lock: Flock<File>,
}

impl RunLock {
    /// Takes the lock, waiting up to `timeout` for another run to finish.
    pub(crate) fn acquire(host: &Host, timeout: Duration) -> Result<Self> {
        let path = host_path(LOCK_FILE);
        let deadline = Instant::now() + timeout;
        let mut logged = false;
        loop {
            let file = open_lock_file(host)?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut lock) => {
                    record_holder(&mut lock)
                        .with_context(|| format!("failed to write `{path}`"))?;
                    return Ok(Self { _lock: lock });
                }
                Err((mut file, Errno::EWOULDBLOCK)) => {
                    let holder = LockHolder::of(&mut file);
                    if Instant::now() >= deadline {
                        bail!(
                            "{}; waited {} s for it",
                            holder.describe(),
                            timeout.as_secs()
                        );
                    }
                    if !logged {
                        tracing::info!("waiting: {}", holder.describe());
                        logged = true;
                    }
                    std::thread::sleep(RETRY_INTERVAL);
                }
                Err((_, errno)) => {
                    return Err(std::io::Error::from(errno))
                        .with_context(|| format!("failed to lock `{path}`"));
                }
            }
        }
    }
}

/// Opens (creating them) the lock's directory and file by descriptor: neither is reached
/// through a link, the directory must be berth's user's (made `0700`), the file a regular one
/// of berth's user with no other name (made `0600`).
fn open_lock_file(host: &Host) -> Result<File> {
    let run = host_path("/run");
    host.ensure_dir(&run, 0o755)?;
    let directory_flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    // `/run` itself is root's own (and often reached through `/var/run`): followed as it is.
    let run_fd: OwnedFd = nix::fcntl::open(
        &host.path(&run),
        OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("failed to open `{run}`"))?;
    match mkdirat(&run_fd, "berth", Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(error) => {
            return Err(error).with_context(|| format!("failed to create `{LOCK_DIR}`"));
        }
    }
    let directory = File::from(
        openat(&run_fd, "berth", directory_flags, Mode::empty())
            .map_err(|error| refused_link(error, LOCK_DIR, "a directory"))?,
    );
    owned_and_private(&directory, LOCK_DIR, 0o700)?;
    let file = File::from(
        openat(
            &directory,
            "lock",
            OFlag::O_RDWR
                | OFlag::O_CREAT
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|error| refused_link(error, LOCK_FILE, "a file"))?,
    );
    let metadata = file
        .metadata()
        .with_context(|| format!("failed to read `{LOCK_FILE}`"))?;
    if !metadata.file_type().is_file() || metadata.nlink() != 1 {
        bail!(
            "`{LOCK_FILE}` is not a regular file of its own (a device, a FIFO, or a hard link to another file): berth will not lock it; remove it"
        );
    }
    owned_and_private(&file, LOCK_FILE, 0o600)?;
    Ok(file)
}

/// The error of an `O_NOFOLLOW` open: a link there is named as one.
fn refused_link(error: Errno, path: &str, what: &str) -> anyhow::Error {
    match error {
        Errno::ELOOP | Errno::ENOTDIR => anyhow::anyhow!(
            "`{path}` is a symbolic link or not {what}: berth takes its run lock only where no link leads; remove it"
        ),
        other => anyhow::Error::from(other).context(format!("failed to open `{path}`")),
    }
}

/// Refuses `file` unless berth's user owns it; takes group's and others' bits away.
fn owned_and_private(file: &File, path: &str, mode: u32) -> Result<()> {
    let metadata = file
        .metadata()
        .with_context(|| format!("failed to read `{path}`"))?;
    let me = nix::unistd::geteuid().as_raw();
    if metadata.uid() != me {
        bail!(
            "`{path}` belongs to uid {}, not to berth's user (uid {me}): someone else could hold or swap the run lock; remove it",
            metadata.uid()
        );
    }
    if metadata.mode() & 0o7777 != mode {
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("failed to make `{path}` {mode:o}"))?;
    }
    Ok(())
}

/// Who holds the lock: the process the kernel names (`/proc/locks`), and what the file says.
struct LockHolder {
    /// From `/proc/locks`; `None` when it cannot be read (the file's pid is then all there is).
    pid: Option<u32>,
    /// Its command name (`/proc/PID/comm`), when it is not berth.
    not_berth: Option<String>,
    /// What the holder wrote: "pid 1234, holding the lock since 18:31:02".
    recorded: String,
}

impl LockHolder {
    fn of(file: &mut File) -> Self {
        let pid = kernel_holder(file);
        let recorded = read_holder(file, pid);
        let not_berth = pid.filter(|pid| !is_berth(*pid)).map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map_or_else(|_| "gone".to_owned(), |comm| comm.trim().to_owned())
        });
        Self {
            pid,
            not_berth,
            recorded,
        }
    }

    fn describe(&self) -> String {
        match (&self.not_berth, self.pid) {
            (Some(command), Some(pid)) => format!(
                "the run lock `{LOCK_FILE}` is held by pid {pid} (`{command}`), which is not berth"
            ),
            _ => format!("another berth run ({}) did not finish", self.recorded),
        }
    }
}

/// The pid holding an `flock` on `file`, as `/proc/locks` lists it
/// (`1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; a waiter's line has `->`). This is the
/// kernel's own `/proc`, not the one under `--root`: the lock is the kernel's.
fn kernel_holder(file: &File) -> Option<u32> {
    let metadata = file.metadata().ok()?;
    let device = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(metadata.dev()),
        nix::sys::stat::minor(metadata.dev()),
        metadata.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&device.as_str()))
            .then(|| fields.get(4)?.parse().ok())
            .flatten()
    })
}

/// True when `pid` runs berth: the same program as this one, or one named `berth` (an older
/// binary, replaced by an upgrade while it ran).
fn is_berth(pid: u32) -> bool {
    let exe = format!("/proc/{pid}/exe");
    let same =
        |a: &std::fs::Metadata, b: &std::fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
    if let (Ok(theirs), Ok(mine)) = (std::fs::metadata(&exe), std::fs::metadata("/proc/self/exe"))
        && same(&theirs, &mine)
    {
        return true;
    }
    std::fs::read_link(&exe).is_ok_and(|target| {
        target
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.trim_end_matches(" (deleted)") == "berth")
    })
}

fn record_holder(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(
        file,
        "{} {}",
        std::process::id(),
        jiff::Timestamp::now().as_second()
    )?;
    file.sync_all()
}

/// "pid 1234, holding the lock since 18:31:02", as far as the kernel (`pid`) and the file tell;
/// the time only when the file was written by the process the kernel names.
fn read_holder(file: &mut File, pid: Option<u32>) -> String {
    let mut text = String::new();
    // The holder wrote one short line; more is not berth's.
    let _ = file
        .rewind()
        .and_then(|()| file.take(256).read_to_string(&mut text));
    let mut words = text.split_whitespace();
    let written = words.next().and_then(|pid| pid.parse::<u32>().ok());
    let since = words
        .next()
        .filter(|_| pid.is_none() || pid == written)
        .and_then(|seconds| seconds.parse::<i64>().ok())
        .and_then(|seconds| jiff::Timestamp::from_second(seconds).ok())
        .map(|started| {
            started
                .to_zoned_datetime(jiff::tz::TimeZone::system())
                .strftime("%H:%M:%S")
                .to_string()
        });
    match (pid.or(written), since) {
        (Some(pid), Some(since)) => format!("pid {pid}, holding the lock since {since}"),
        (Some(pid), None) => format!("pid {pid}, holding the lock"),
        _ => "holding the lock".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_then_names_the_holder() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        let _held = RunLock::acquire(&host, Duration::ZERO).unwrap();
        let error = RunLock::acquire(&host, Duration::from_millis(300))
            .err()
            .unwrap();
        let message = error.to_string();
        let expected = format!(
            "another berth run (pid {}, holding the lock since ",
            std::process::id()
        );
        assert!(message.starts_with(&expected), "{message}");
        assert!(
            message.ends_with(") did not finish; waited 0 s for it"),
            "{message}"
        );
    }

    #[test]
    fn the_lock_is_free_again_once_dropped() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        drop(RunLock::acquire(&host, Duration::ZERO).unwrap());
        RunLock::acquire(&host, Duration::ZERO).unwrap();
    }

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "the test plants files under a temporary root"
    )]
    fn the_lock_is_root_only_and_never_taken_through_a_link() {
        use std::os::unix::fs::symlink;
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        let mode = |path: &str| {
            std::fs::symlink_metadata(root.path().join(path))
                .unwrap()
                .mode()
                & 0o7777
        };
        drop(RunLock::acquire(&host, Duration::ZERO).unwrap());
        assert_eq!((mode("run/berth"), mode("run/berth/lock")), (0o700, 0o600));

        // Loosened by hand: made private again.
        std::fs::set_permissions(
            root.path().join("run/berth"),
            PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::set_permissions(
            root.path().join("run/berth/lock"),
            PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        drop(RunLock::acquire(&host, Duration::ZERO).unwrap());
        assert_eq!((mode("run/berth"), mode("run/berth/lock")), (0o700, 0o600));

        // A link planted at the lock, then at its directory: refused, the target untouched.
        std::fs::write(root.path().join("target"), "keep\n").unwrap();
        std::fs::remove_file(root.path().join("run/berth/lock")).unwrap();
        symlink(
            root.path().join("target"),
            root.path().join("run/berth/lock"),
        )
        .unwrap();
        let error = RunLock::acquire(&host, Duration::ZERO).err().unwrap();
        assert!(
            error
                .to_string()
                .starts_with("`/run/berth/lock` is a symbolic link"),
            "{error:#}"
        );
        std::fs::remove_dir_all(root.path().join("run/berth")).unwrap();
        std::fs::create_dir(root.path().join("elsewhere")).unwrap();
        symlink(root.path().join("elsewhere"), root.path().join("run/berth")).unwrap();
        let error = RunLock::acquire(&host, Duration::ZERO).err().unwrap();
        assert!(
            error
                .to_string()
                .starts_with("`/run/berth` is a symbolic link"),
            "{error:#}"
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join("target")).unwrap(),
            "keep\n"
        );
        assert!(!root.path().join("elsewhere/lock").exists());
    }
}
