//! The only door to the machine's files. Every host path berth reads or writes (`/etc`, `/proc`,
//! `/sys`, `/lib/modules`, `/var/lib`, `/run`, bind-mount sources) goes through [`Host::path`],
//! so `--root DIR` moves all of it under DIR: production uses `/`, tests a temporary directory.
//! Paths shown to the user are host paths (`/etc/docker/daemon.json`), never the joined one.

#![allow(
    clippy::disallowed_methods,
    reason = "the host layer is the one door to the filesystem"
)]

mod beneath;
pub(crate) mod exec;
pub(crate) mod facts;
pub(crate) mod lock;
pub(crate) mod machine_id;

use std::{
    collections::BTreeMap,
    ffi::OsString,
    io::{self, Write},
    os::{
        fd::OwnedFd,
        unix::fs::{OpenOptionsExt, PermissionsExt},
    },
    path::{Component, Path, PathBuf},
    sync::{Arc, Mutex},
};

use beneath::{Last, Missing, WalkedEntry, Walker};
use nix::{
    fcntl::OFlag,
    sys::stat::{FileStat, Mode},
};
use sha2::{Digest, Sha256};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// An absolute path on the host, as a profile names it. Parsed at the edge so that every
/// later join under the root is safe: absolute, no `..`, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPath(PathBuf);

impl HostPath {
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, String> {
        let path = path.into();
        let text = path.to_string_lossy();
        if !path.is_absolute() {
            return Err(format!("`{text}` is not an absolute path"));
        }
        if text.contains('\0') {
            return Err("a path cannot contain a NUL byte".into());
        }
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(format!("`{text}` contains `..`"));
        }
        Ok(Self(path))
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, relative: impl AsRef<Path>) -> HostPath {
        HostPath(self.0.join(relative))
    }

    pub fn parent(&self) -> Option<HostPath> {
        self.0.parent().map(|parent| HostPath(parent.to_owned()))
    }

    /// The same path with `suffix` appended to the file name: `daemon.json` → `daemon.json.bak`.
    pub fn with_suffix(&self, suffix: &str) -> HostPath {
        let mut name = self.0.as_os_str().to_owned();
        name.push(suffix);
        HostPath(PathBuf::from(name))
    }
}

impl TryFrom<String> for HostPath {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::new(text)
    }
}

impl From<HostPath> for String {
    fn from(path: HostPath) -> String {
        path.0.to_string_lossy().into_owned()
    }
}

impl std::fmt::Display for HostPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display().fmt(f)
    }
}

/// Builds a [`HostPath`] from a literal known to be valid.
/// What statvfs(2) says of a filesystem, in bytes: its size and what an unprivileged writer
/// may still use (`f_bavail`, as `df` shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FilesystemSpace {
    pub total: u64,
    pub available: u64,
}

pub(crate) fn host_path(literal: &str) -> HostPath {
    HostPath::new(literal).expect("literal host paths are absolute")
}

/// What an atomic write found and left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileMode(pub u32);

#[derive(Debug, Clone)]
pub(crate) struct Host {
    root: PathBuf,
    /// Directories someone other than root may write in ([`Host::distrust`]).
    hostile: Arc<Mutex<Vec<HostPath>>>,
    /// While a plan records what it observed ([`Host::record_reads`]): each file read, as the
    /// sha256 of its text, or `None` when it did not exist.
    reads: Arc<Mutex<Option<FileReads>>>,
}

/// Host path → sha256 of what it held when read (`None`: absent).
pub(crate) type FileReads = BTreeMap<String, Option<String>>;

impl Host {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            hostile: Arc::default(),
            reads: Arc::default(),
        }
    }

    /// From now on, remember what every file read held, for a saved plan's fingerprint.
    pub(crate) fn record_reads(&self) {
        *self.reads.lock().expect("not poisoned") = Some(FileReads::new());
    }

    /// What the files read since [`Host::record_reads`] held; stops recording.
    pub(crate) fn take_reads(&self) -> FileReads {
        self.reads
            .lock()
            .expect("not poisoned")
            .take()
            .unwrap_or_default()
    }

    fn remember_read(&self, path: &HostPath, text: Option<&str>) {
        // The kernel's files change by themselves (a module's use count moves as containers
        // start); what berth reads there shows in the changes it plans.
        if path.as_path().starts_with("/proc") || path.as_path().starts_with("/sys") {
            return;
        }
        if let Some(reads) = self.reads.lock().expect("not poisoned").as_mut() {
            reads.insert(
                path.to_string(),
                text.map(|text| hex::encode(Sha256::digest(text.as_bytes()))),
            );
        }
    }

    /// True when berth manages the machine it runs on rather than a directory tree.
    pub(crate) fn is_machine_root(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The size and free space of the filesystem that holds `path`, a path a Docker daemon
    /// reported of itself (its `DockerRootDir`, a volume's mountpoint). It names a place in the
    /// daemon's mount namespace, which is the machine's whatever `--root` says, so it is not
    /// resolved under the root: a daemon's disk is where the daemon writes. Only statvfs(2) is
    /// asked of it, which reads nothing and writes nothing there.
    pub(crate) fn daemon_filesystem(&self, path: &Path) -> Result<FilesystemSpace> {
        let stats = nix::sys::statvfs::statvfs(path)
            .with_context(|| format!("failed to read the free space of `{}`", path.display()))?;
        let fragment = stats.fragment_size() as u64;
        Ok(FilesystemSpace {
            total: stats.blocks() as u64 * fragment,
            available: stats.blocks_available() as u64 * fragment,
        })
    }

    /// Where `path` lives for this run: `path` itself on `/`, `<root>/path` otherwise.
    pub(crate) fn path(&self, path: &HostPath) -> PathBuf {
        let relative = path.as_path().strip_prefix("/").unwrap_or(path.as_path());
        self.root.join(relative)
    }

    /// Marks `dir` hostile: someone other than root may write in it (the runner's directory,
    /// which its container mounts; a bind-mount source; the metrics directory the exporter's
    /// user may own). No link under it is ever followed, whatever its owner.
    pub(crate) fn distrust(&self, dir: &HostPath) {
        let mut hostile = self.hostile.lock().expect("not poisoned");
        if !hostile.contains(dir) {
            hostile.push(dir.clone());
        }
    }

    /// Walks to `path` by descriptor (see `beneath.rs`).
    fn walk(
        &self,
        path: &HostPath,
        last: Last,
        create: Option<u32>,
    ) -> Result<Result<WalkedEntry, Missing>> {
        let hostile = self.hostile.lock().expect("not poisoned").clone();
        Walker {
            root: &self.root,
            hostile: &hostile,
        }
        .walk(path, last, create)
    }

    /// True when Docker, handed [`Host::path`] as a bind source, finds something there: it
    /// resolves the path itself, on the machine, following links as the kernel does (under a
    /// test `--root`, a link there may lead to a socket outside it). Nothing is read.
    pub(crate) fn exists_for_docker(&self, path: &HostPath) -> bool {
        self.path(path).exists()
    }

    pub(crate) fn exists(&self, path: &HostPath) -> bool {
        matches!(
            self.walk(path, Last::Follow, None),
            Ok(Ok(entry)) if matches!(entry.status(), Ok(Some(_)))
        )
    }

    /// Reads a text file of at most [`READ_LIMIT`] bytes; `None` when it does not exist (or
    /// cannot, because a parent is a file).
    pub(crate) fn read_optional(&self, path: &HostPath) -> Result<Option<String>> {
        self.read_limited(path, READ_LIMIT)
    }

    /// Reads a text file of at most `limit` bytes: regular files only, never through a link
    /// berth may not follow, never blocking; `None` when it does not exist.
    pub(crate) fn read_limited(&self, path: &HostPath, limit: u64) -> Result<Option<String>> {
        let text = self
            .read_file(path, limit)?
            .map(|(bytes, _)| {
                String::from_utf8(bytes)
                    .with_context(|| format!("failed to read `{path}`: it is not UTF-8 text"))
            })
            .transpose()?;
        self.remember_read(path, text.as_deref());
        Ok(text)
    }

    /// Reads a file berth obeys (a profile, berth.toml): refused unless it is root's (when
    /// berth runs as root) and writable by no one else, since it can set what root runs.
    pub(crate) fn read_trusted(&self, path: &HostPath) -> Result<Option<(String, FileMode)>> {
        let Some((bytes, status)) = self.read_file(path, READ_LIMIT)? else {
            self.remember_read(path, None);
            return Ok(None);
        };
        refuse_unless_trusted(&path.to_string(), status.st_uid, status.st_mode)?;
        let text = String::from_utf8(bytes)
            .with_context(|| format!("failed to read `{path}`: it is not UTF-8 text"))?;
        self.remember_read(path, Some(&text));
        Ok(Some((text, FileMode(status.st_mode & 0o7777))))
    }

    /// The bytes of a regular file (at most `limit`) and its status, from one descriptor.
    fn read_file(&self, path: &HostPath, limit: u64) -> Result<Option<(Vec<u8>, FileStat)>> {
        let read = || -> Result<Option<(Vec<u8>, FileStat)>> {
            let Ok(entry) = self.walk(path, Last::Follow, None)? else {
                return Ok(None);
            };
            let Some(file) = beneath::open_regular(&entry)? else {
                return Ok(None);
            };
            let status = nix::sys::stat::fstat(&file).map_err(io::Error::from)?;
            Ok(Some((read_bounded(file, limit, path)?, status)))
        };
        read().with_context(|| format!("failed to read `{path}`"))
    }

    /// The names in a directory, sorted; empty when the directory does not exist.
    pub(crate) fn list_dir(&self, path: &HostPath) -> Result<Vec<String>> {
        let list = || -> Result<Vec<String>> {
            let Ok(entry) = self.walk(path, Last::Directory, None)? else {
                return Ok(Vec::new());
            };
            let fd = beneath::open_listable(&entry).map_err(io::Error::from)?;
            let mut names = Vec::new();
            for item in nix::dir::Dir::from_fd(fd).map_err(io::Error::from)?.iter() {
                let name = item
                    .map_err(io::Error::from)?
                    .file_name()
                    .to_string_lossy()
                    .into_owned();
                if name != "." && name != ".." {
                    names.push(name);
                }
            }
            names.sort();
            Ok(names)
        };
        list().with_context(|| format!("failed to list `{path}`"))
    }

    /// Permission bits of an existing file.
    pub(crate) fn mode(&self, path: &HostPath) -> Result<Option<FileMode>> {
        let inspect = || -> Result<Option<FileMode>> {
            let Ok(entry) = self.walk(path, Last::Follow, None)? else {
                return Ok(None);
            };
            Ok(entry
                .status()?
                .map(|status| FileMode(status.st_mode & 0o7777)))
        };
        inspect().with_context(|| format!("failed to inspect `{path}`"))
    }

    /// Replaces `path` atomically: a temporary file in the same directory is written, synced,
    /// given the old file's mode and owner (or `new_mode` for a new file) and renamed over the
    /// target, then the directory is synced. A reader sees the old or the new file, never half.
    pub(crate) fn write_atomic(
        &self,
        path: &HostPath,
        contents: &[u8],
        new_mode: u32,
    ) -> Result<()> {
        self.replace(path, contents, Keep::ModeAndOwner(new_mode))
    }

    /// Replaces a secret-bearing file (config.toml, a token, the system ID) atomically at exactly
    /// `mode`, set on the temporary file before the rename: the secret is never in place at an
    /// older, looser mode.
    pub(crate) fn write_secret(&self, path: &HostPath, contents: &[u8], mode: u32) -> Result<()> {
        self.replace(path, contents, Keep::Owner(mode))
    }

    fn replace(&self, path: &HostPath, contents: &[u8], keep: Keep) -> Result<()> {
        // A link stays a link where only root could have made it (config management, NixOS's
        // /etc/static): the walk follows it and its target is what gets replaced. Anywhere
        // else the walk refuses it.
        let attempt = || -> Result<()> {
            let entry = match self.walk(path, Last::Follow, Some(0o755))? {
                Ok(entry) => entry,
                Err(Missing(on_the_way)) => bail!("`{on_the_way}` is not a directory"),
            };
            let existing = entry.status()?;
            if let Some(status) = &existing {
                beneath::refuse_unless_regular(status, &entry.path())?;
            }
            let mode = match (keep, &existing) {
                (Keep::ModeAndOwner(_), Some(status)) => status.st_mode & 0o7777,
                (Keep::ModeAndOwner(mode) | Keep::Owner(mode), _) => mode,
            };
            let directory = &entry.directory.fd;
            let (temporary, mut file) = create_temporary(directory, &entry)?;
            let mut written = || -> Result<()> {
                file.write_all(contents)?;
                nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(mode))
                    .map_err(io::Error::from)?;
                if let Some(status) = &existing {
                    // Keep the owner so a file an operator handed to another user stays theirs.
                    let _ = nix::unistd::fchown(
                        &file,
                        Some(status.st_uid.into()),
                        Some(status.st_gid.into()),
                    );
                }
                file.sync_all()?;
                nix::fcntl::renameat(
                    directory,
                    temporary.as_os_str(),
                    directory,
                    entry.name.as_os_str(),
                )
                .map_err(io::Error::from)
                .with_context(|| format!("failed to rename the temporary file over `{path}`"))?;
                Ok(())
            };
            if let Err(error) = written() {
                let _ = nix::unistd::unlinkat(
                    directory,
                    temporary.as_os_str(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
                return Err(error);
            }
            let listable = beneath::open_listable(&WalkedEntry {
                directory: beneath::Directory {
                    fd: directory.try_clone()?,
                    path: entry.directory.path.clone(),
                },
                name: ".".into(),
            })
            .map_err(io::Error::from)?;
            nix::unistd::fsync(&listable).map_err(io::Error::from)?;
            Ok(())
        };
        attempt().with_context(|| format!("failed to write `{path}`"))
    }

    /// Creates a directory (and its parents, 0755) with `mode` when it does not exist, whatever
    /// the umask; an existing directory keeps its mode.
    pub(crate) fn ensure_dir(&self, path: &HostPath, mode: u32) -> Result<()> {
        match self.walk(path, Last::Directory, Some(mode)) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(Missing(on_the_way))) => {
                Err(anyhow::anyhow!("`{on_the_way}` is not a directory"))
            }
            Err(error) => Err(error),
        }
        .with_context(|| format!("failed to create directory `{path}`"))
    }

    /// Writes one of berth's own state files (journal, ledger, run report, pause, watch state):
    /// pretty JSON ending in a newline, atomically, with `mode`, in a directory made 0700 when
    /// missing (what the units' `StateDirectoryMode` gives /var/lib/berth).
    pub(crate) fn write_json(
        &self,
        path: &HostPath,
        value: &impl Serialize,
        mode: u32,
    ) -> Result<()> {
        if let Some(directory) = path.parent() {
            self.ensure_dir(&directory, 0o700)?;
        }
        let mut text = serde_json::to_string_pretty(value).expect("berth's state serializes");
        text.push('\n');
        self.write_atomic(path, text.as_bytes(), mode)
    }

    /// Removes a file (a link is removed, never its target); one that is not there is fine.
    pub(crate) fn remove_file(&self, path: &HostPath) -> Result<()> {
        let remove = || -> Result<()> {
            let Ok(entry) = self.walk(path, Last::Keep, None)? else {
                return Ok(());
            };
            match nix::unistd::unlinkat(
                &entry.directory.fd,
                entry.name.as_os_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            ) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
                Err(error) => Err(io::Error::from(error).into()),
            }
        };
        remove().with_context(|| format!("failed to remove `{path}`"))
    }

    /// Removes a directory and everything in it, one entry at a time through its parent's
    /// descriptor: a link is removed as a file, never followed. For berth's own directories
    /// (what root alone writes); one that is not there is fine.
    pub(crate) fn remove_tree(&self, path: &HostPath) -> Result<()> {
        let remove = || -> Result<()> {
            for name in self.list_dir(path)? {
                let entry = path.join(&name);
                let Ok(found) = self.walk(&entry, Last::Keep, None)? else {
                    continue;
                };
                match nix::unistd::unlinkat(
                    &found.directory.fd,
                    found.name.as_os_str(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                ) {
                    Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                    // A directory: emptied first.
                    Err(nix::errno::Errno::EISDIR) => self.remove_tree(&entry)?,
                    Err(error) => return Err(io::Error::from(error).into()),
                }
            }
            let Ok(found) = self.walk(path, Last::Keep, None)? else {
                return Ok(());
            };
            match nix::unistd::unlinkat(
                &found.directory.fd,
                found.name.as_os_str(),
                nix::unistd::UnlinkatFlags::RemoveDir,
            ) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
                Err(error) => Err(io::Error::from(error).into()),
            }
        };
        remove().with_context(|| format!("failed to remove `{path}`"))
    }

    /// Sets the permission bits of an existing file, through its descriptor.
    pub(crate) fn set_mode(&self, path: &HostPath, mode: u32) -> Result<()> {
        let change = || -> Result<()> {
            let Ok(entry) = self.walk(path, Last::Follow, None)? else {
                bail!("it does not exist");
            };
            let Some(file) = beneath::open_regular(&entry)? else {
                bail!("it does not exist");
            };
            nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(mode))
                .map_err(io::Error::from)?;
            Ok(())
        };
        change().with_context(|| format!("failed to make `{path}` mode {mode:04o}"))
    }

    /// Copies `from` over `to` atomically, keeping `from`'s mode.
    pub(crate) fn copy_atomic(&self, from: &HostPath, to: &HostPath) -> Result<()> {
        let (contents, status) = self
            .read_file(from, READ_LIMIT)?
            .with_context(|| format!("failed to read `{from}`: it does not exist"))?;
        self.write_atomic(to, &contents, status.st_mode & 0o7777)
    }
}

/// How much berth reads of a host file unless its kind says otherwise: far more than any file
/// berth reads needs (daemon.json, config.toml, certificates, units, profiles), and little
/// enough that a 2 GiB sparse file or a link to `/dev/zero` costs nothing.
pub(crate) const READ_LIMIT: u64 = 4 << 20;

/// A saved plan holds the whole observed state; still a few megabytes at most.
pub(crate) const SAVED_PLAN_LIMIT: u64 = 16 << 20;

/// What a [`Host::replace`] keeps of the file it replaces.
#[derive(Clone, Copy)]
enum Keep {
    /// Its mode and owner (`new_mode` for a new file).
    ModeAndOwner(u32),
    /// Its owner; the mode is always this one.
    Owner(u32),
}

/// Reads at most `limit` bytes from `file`; more is an error naming `path`.
fn read_bounded(file: std::fs::File, limit: u64, path: impl std::fmt::Display) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, limit + 1), &mut bytes)?;
    if bytes.len() as u64 > limit {
        bail!("`{path}` is larger than {limit} bytes, more than berth reads from it");
    }
    Ok(bytes)
}

/// A new file beside `entry`, created `O_EXCL` (never an existing file or link) and 0600 until
/// its mode is set.
fn create_temporary(directory: &OwnedFd, entry: &WalkedEntry) -> Result<(OsString, std::fs::File)> {
    static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    for _ in 0..16 {
        let count = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let name = OsString::from(format!(".berth-{}-{nanos}-{count}", std::process::id()));
        match nix::fcntl::openat(
            directory,
            name.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => return Ok((name, std::fs::File::from(fd))),
            Err(nix::errno::Errno::EEXIST) => {}
            Err(error) => {
                return Err(io::Error::from(error)).with_context(|| {
                    format!(
                        "failed to create a temporary file in `{}`",
                        entry.directory.path
                    )
                });
            }
        }
    }
    bail!(
        "failed to create a temporary file in `{}`",
        entry.directory.path
    )
}

/// A file that can set what berth runs as root (a profile, berth.toml, a saved plan) must be
/// root's when berth runs as root, and writable by no one else (sshd's StrictModes, for files).
fn refuse_unless_trusted(path: &str, owner: u32, mode: u32) -> Result<()> {
    let writable_by_others = mode & 0o022 != 0;
    let not_roots = nix::unistd::geteuid().is_root() && owner != 0;
    if writable_by_others || not_roots {
        let owner_name = nix::unistd::User::from_uid(owner.into())
            .ok()
            .flatten()
            .map_or_else(|| format!("uid {owner}"), |user| user.name);
        bail!(
            "refusing `{path}`: it is owned by {owner_name} with mode {:04o}, so someone other than root can change what berth runs as root; fix it with `chown root:root {path} && chmod go-w {path}`",
            mode & 0o7777
        );
    }
    Ok(())
}

/// True when `error` comes from a file this user may not read: `plan` as non-root, where
/// config.toml, the ledger, the journal and token files are root's alone.
pub(crate) fn permission_denied(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    })
}

/// Writes a file on the machine berth runs on (not under the root: a saved plan is the
/// operator's file, like a `-p` profile), atomically: a temporary file beside it (`O_EXCL`,
/// 0600), given its final mode, renamed (a link at `path` is replaced, never followed).
pub(crate) fn write_local(path: &Path, text: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let write = || -> Result<()> {
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        file.write_all(text.as_bytes())?;
        file.as_file().sync_all()?;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.persist(path)?;
        Ok(())
    };
    write().with_context(|| format!("failed to write `{}`", path.display()))
}

/// Reads a file named on the command line (`-p ./site.toml`, a saved plan): a path on the
/// machine berth runs on, not under `--root`. It can set what berth runs as root, so it must be
/// root's (when berth runs as root) and writable by no one else; a regular file (a FIFO is
/// refused, not waited on) of at most `limit` bytes. Returns its text and permission bits.
pub(crate) fn read_local(path: &Path, limit: u64) -> Result<(String, u32)> {
    let read = || -> Result<(String, u32)> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC))
            .open(path)?;
        let status = nix::sys::stat::fstat(&file).map_err(io::Error::from)?;
        let shown = path.display().to_string();
        let kind = nix::sys::stat::SFlag::from_bits_truncate(
            status.st_mode & nix::sys::stat::SFlag::S_IFMT.bits(),
        );
        if kind != nix::sys::stat::SFlag::S_IFREG {
            bail!("`{shown}` is not a regular file");
        }
        refuse_unless_trusted(&shown, status.st_uid, status.st_mode)?;
        let text = String::from_utf8(read_bounded(file, limit, &shown)?)
            .with_context(|| format!("`{shown}` is not UTF-8 text"))?;
        Ok((text, status.st_mode & 0o7777))
    };
    read().with_context(|| format!("failed to read `{}`", path.display()))
}

fn libc_flags(flags: OFlag) -> i32 {
    flags.bits()
}

/// `KEY=value` lines as systemd's `EnvironmentFile=` and os-release(5) write them: blank lines
/// and `#`/`;` comments skipped, an `export ` prefix dropped, the value optionally quoted.
pub(crate) fn parse_assignments(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(';'))
        .filter_map(|line| {
            let line = line.strip_prefix("export ").unwrap_or(line);
            line.split_once('=').map(|(key, value)| {
                let value = value.trim();
                let unquoted = value
                    .strip_prefix('"')
                    .and_then(|inner| inner.strip_suffix('"'))
                    .or_else(|| {
                        value
                            .strip_prefix('\'')
                            .and_then(|inner| inner.strip_suffix('\''))
                    })
                    .unwrap_or(value);
                (key.trim().to_owned(), unquoted.to_owned())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
