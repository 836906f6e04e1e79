//! The only door to the machine's files. Every host path berth reads or writes (`/etc`, `/proc`,
//! `/sys`, `/lib/modules`, `/var/lib`, `/run`, bind-mount sources) goes through [`Host::path`],
//! so `--root DIR` moves all of it under DIR: production uses `/`, tests a temporary directory.
//! Paths shown to the user are host paths (`/etc/docker/daemon.json`), never the joined one.

#![allow(
    clippy::disallowed_methods,
    reason = "the host layer is the one door to the filesystem"
)]

pub(crate) mod exec;
pub(crate) mod lock;

use std::{
    collections::BTreeMap,
    io::{self, Write},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Component, Path, PathBuf},
    sync::{Arc, Mutex},
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
pub(crate) fn host_path(literal: &str) -> HostPath {
    HostPath::new(literal).expect("literal host paths are absolute")
}

/// What an atomic write found and left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileMode(pub u32);

#[derive(Debug, Clone)]
pub(crate) struct Host {
    root: PathBuf,
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

    /// Where `path` lives for this run: `path` itself on `/`, `<root>/path` otherwise.
    pub(crate) fn path(&self, path: &HostPath) -> PathBuf {
        let relative = path.as_path().strip_prefix("/").unwrap_or(path.as_path());
        self.root.join(relative)
    }

    pub(crate) fn exists(&self, path: &HostPath) -> bool {
        self.path(path).exists()
    }

    /// Reads a text file; `None` when it does not exist (or cannot, because a parent is a file).
    pub(crate) fn read_optional(&self, path: &HostPath) -> Result<Option<String>> {
        let text = match fs_err::read_to_string(self.path(path)) {
            Ok(text) => Some(text),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                None
            }
            Err(error) => return Err(error).with_context(|| format!("failed to read `{path}`")),
        };
        self.remember_read(path, text.as_deref());
        Ok(text)
    }

    /// The names in a directory, sorted; empty when the directory does not exist.
    pub(crate) fn list_dir(&self, path: &HostPath) -> Result<Vec<String>> {
        let entries = match fs_err::read_dir(self.path(path)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error).with_context(|| format!("failed to list `{path}`")),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to list `{path}`"))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Permission bits of an existing file.
    pub(crate) fn mode(&self, path: &HostPath) -> Result<Option<FileMode>> {
        match fs_err::metadata(self.path(path)) {
            Ok(metadata) => Ok(Some(FileMode(metadata.permissions().mode() & 0o7777))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("failed to inspect `{path}`")),
        }
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
        // A link (config management, NixOS's /etc/static) stays a link: its target is what
        // gets replaced, or the link would silently stop being read.
        let target = self
            .through_links(path)
            .with_context(|| format!("failed to write `{path}`"))?;
        let Some(parent) = target.parent() else {
            bail!("`{path}` has no parent directory");
        };
        let attempt = || -> Result<()> {
            fs_err::create_dir_all(parent)?;
            let existing = match fs_err::metadata(&target) {
                Ok(metadata) => Some(metadata),
                Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                Err(error) => return Err(error.into()),
            };
            if existing.as_ref().is_some_and(|metadata| metadata.is_dir()) {
                bail!("it is a directory");
            }
            let mut temporary = tempfile::Builder::new()
                .prefix(".berth-")
                .tempfile_in(parent)
                .with_context(|| {
                    format!(
                        "failed to create a temporary file in `{}`",
                        parent.display()
                    )
                })?;
            temporary.write_all(contents)?;
            let mode = existing
                .as_ref()
                .map_or(new_mode, |metadata| metadata.permissions().mode() & 0o7777);
            let file = temporary.as_file();
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            if let Some(metadata) = &existing {
                // Keep the owner so a file an operator handed to another user stays theirs.
                let _ = nix::unistd::fchown(
                    file,
                    Some(metadata.uid().into()),
                    Some(metadata.gid().into()),
                );
            }
            file.sync_all()?;
            temporary
                .persist(&target)
                .map_err(|error| error.error)
                .with_context(|| format!("failed to rename the temporary file over `{path}`"))?;
            fs_err::File::open(parent)?.sync_all()?;
            Ok(())
        };
        attempt().with_context(|| format!("failed to write `{path}`"))
    }

    /// Creates a directory (and its parents) with `mode` when it does not exist; an existing
    /// directory keeps its mode.
    pub(crate) fn ensure_dir(&self, path: &HostPath, mode: u32) -> Result<()> {
        let target = self.path(path);
        if target.is_dir() {
            return Ok(());
        }
        fs_err::create_dir_all(&target)
            .and_then(|()| fs_err::set_permissions(&target, std::fs::Permissions::from_mode(mode)))
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

    /// Removes a file; one that is not there is fine.
    pub(crate) fn remove_file(&self, path: &HostPath) -> Result<()> {
        match fs_err::remove_file(self.path(path)) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error).with_context(|| format!("failed to remove `{path}`")),
        }
    }

    /// Sets the permission bits of an existing file.
    pub(crate) fn set_mode(&self, path: &HostPath, mode: u32) -> Result<()> {
        fs_err::set_permissions(self.path(path), std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("failed to make `{path}` mode {mode:04o}"))
    }

    /// Copies `from` over `to` atomically, keeping `from`'s mode.
    /// Where `path` really is: its symbolic links followed (an absolute target is a host path,
    /// under the root like any other), refusing one that leads out of the root.
    fn through_links(&self, path: &HostPath) -> Result<PathBuf> {
        const MAX_LINKS: usize = 16;
        let mut current = self.path(path);
        for _ in 0..MAX_LINKS {
            let is_link = fs_err::symlink_metadata(&current)
                .is_ok_and(|metadata| metadata.file_type().is_symlink());
            if !is_link {
                return Ok(current);
            }
            let target = fs_err::read_link(&current)?;
            let next = if target.is_absolute() {
                self.root.join(target.strip_prefix("/").unwrap_or(&target))
            } else {
                current.parent().unwrap_or(&self.root).join(target)
            };
            current = lexically_normal(&next);
            if !current.starts_with(&self.root) {
                bail!(
                    "it is a link that leads out of the root (to `{}`); berth writes only under the root",
                    current.display()
                );
            }
        }
        bail!("it is a link through more than {MAX_LINKS} links")
    }

    pub(crate) fn copy_atomic(&self, from: &HostPath, to: &HostPath) -> Result<()> {
        let contents =
            fs_err::read(self.path(from)).with_context(|| format!("failed to read `{from}`"))?;
        let mode = self.mode(from)?.map_or(0o644, |FileMode(mode)| mode);
        self.write_atomic(to, &contents, mode)
    }
}

/// `a/b/../c` as `a/c`, without asking the filesystem.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal
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

/// Reads a file named on the command line (`-p ./site.toml`): a path on the machine berth runs
/// on, not under `--root`. The one file berth reads that is not the host's.
/// Writes a file on the machine berth runs on (not under the root: a saved plan is the
/// operator's file, like a `-p` profile), atomically: a temporary file beside it, renamed.
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

pub(crate) fn read_local(path: &Path) -> Result<String> {
    fs_err::read_to_string(path).with_context(|| format!("failed to read `{}`", path.display()))
}

/// The permission bits of a file named on the command line, like [`read_local`].
pub(crate) fn local_mode(path: &Path) -> Option<u32> {
    fs_err::metadata(path)
        .ok()
        .map(|metadata| metadata.permissions().mode() & 0o7777)
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
mod tests {
    use super::*;

    #[test]
    fn host_paths_must_be_absolute_and_plain() {
        assert!(HostPath::new("/etc/docker/daemon.json").is_ok());
        assert!(
            HostPath::new("etc/docker")
                .unwrap_err()
                .contains("not an absolute path")
        );
        assert!(HostPath::new("/etc/../root").unwrap_err().contains("`..`"));
    }

    #[test]
    fn paths_resolve_under_the_root() {
        let host = Host::new("/tmp/r");
        assert_eq!(
            host.path(&host_path("/etc/x")),
            PathBuf::from("/tmp/r/etc/x")
        );
        assert_eq!(
            Host::new("/").path(&host_path("/etc/x")),
            PathBuf::from("/etc/x")
        );
    }

    #[test]
    fn atomic_write_keeps_the_existing_mode_and_uses_the_new_mode_otherwise() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        let file = host_path("/etc/a/b.json");
        host.write_atomic(&file, b"one", 0o600).unwrap();
        assert_eq!(host.mode(&file).unwrap(), Some(FileMode(0o600)));
        std::fs::set_permissions(host.path(&file), std::fs::Permissions::from_mode(0o640)).unwrap();
        host.write_atomic(&file, b"two", 0o600).unwrap();
        assert_eq!(host.mode(&file).unwrap(), Some(FileMode(0o640)));
        assert_eq!(host.read_optional(&file).unwrap().as_deref(), Some("two"));
        let leftovers: Vec<_> = host.list_dir(&host_path("/etc/a")).unwrap();
        assert_eq!(leftovers, ["b.json"], "no temporary file is left behind");
    }

    #[test]
    fn atomic_write_over_a_directory_fails_and_names_the_path() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        std::fs::create_dir_all(root.path().join("etc/x.json")).unwrap();
        let error = host
            .write_atomic(&host_path("/etc/x.json"), b"{}", 0o644)
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("failed to write `/etc/x.json`"),
            "{error:#}"
        );
    }
}
