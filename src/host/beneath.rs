//! Reaching a file under the root by descriptor, one directory at a time, as issue 18 asks: a
//! hostile runner container (or any local user who can write a directory berth works in) must
//! not turn root-berth's reads and writes elsewhere with a planted link.
//!
//! Each directory is opened from the one before it (`openat` with `O_PATH|O_NOFOLLOW`), so what
//! is checked is what is used. A symbolic link met on the way is followed only where
//! [`Walker::may_follow`] allows it: never inside a directory a caller marked hostile (the
//! runner's directory, bind-mount sources, the metrics directory), and elsewhere only when every
//! directory held so far is owned by root (or berth's own user) and not group/world-writable
//! (sshd's StrictModes). A link is followed as the kernel follows it: its target's components
//! are walked from the link's own directory (or from the root, for an absolute target), and
//! `..` goes back to the directory actually held, never by editing the text of a path. A `..`
//! above the root is refused rather than clamped, as `RESOLVE_BENEATH` would.
//!
//! This module only finds things; `Host` (mod.rs) reads, writes and removes through what it
//! returns.

use std::{
    collections::VecDeque,
    ffi::{OsStr, OsString},
    os::fd::{AsFd, OwnedFd},
    path::{Component, Path},
};

use anyhow::{Result, bail};
use nix::{
    errno::Errno,
    fcntl::{AtFlags, OFlag, openat, readlinkat},
    sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat},
};

use super::HostPath;

/// How many links one walk may follow, as the kernel's own limit (`ELOOP`).
const MAX_LINKS: usize = 40;

/// A directory reached by descriptor, and where it really is (every link on the way resolved).
pub(super) struct Directory {
    pub(super) fd: OwnedFd,
    pub(super) path: HostPath,
}

/// The last step of a walk: the directory that holds the entry, and the entry's name in it. The
/// entry itself may not exist; it is a link only when the walk was asked not to follow one.
pub(super) struct WalkedEntry {
    pub(super) directory: Directory,
    pub(super) name: OsString,
}

impl WalkedEntry {
    /// The host path of the entry, for messages.
    pub(super) fn path(&self) -> HostPath {
        self.directory.path.join(&self.name)
    }

    /// The entry's own status (a link is not followed); `None` when it does not exist.
    pub(super) fn status(&self) -> std::io::Result<Option<FileStat>> {
        match fstatat(
            &self.directory.fd,
            self.name.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(status) => Ok(Some(status)),
            Err(Errno::ENOENT) => Ok(None),
            // An io error, so that `permission_denied` recognises EACCES (plan as non-root).
            Err(error) => Err(error.into()),
        }
    }
}

/// What one walk may do with the last component of its path.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Last {
    /// Follow it when it is a link that may be followed (reading or replacing a file).
    Follow,
    /// Leave it as it is (removing a link removes the link).
    Keep,
    /// It is a directory like the others (listing, creating).
    Directory,
}

/// One component still to walk, and whether a link there is inside a hostile directory.
struct PendingComponent {
    name: OsString,
    hostile: bool,
}

pub(super) struct Walker<'a> {
    pub(super) root: &'a Path,
    /// Directories in which no link is ever followed.
    pub(super) hostile: &'a [HostPath],
}

/// Why a walk stopped short: this directory on the way is missing (or is not a directory).
pub(super) struct Missing(pub(super) HostPath);

impl Walker<'_> {
    /// Walks to `path`. Missing directories are created with `create` (their mode set through
    /// the descriptor, whatever the umask), or end the walk with [`Missing`] when it is `None`.
    pub(super) fn walk(
        &self,
        path: &HostPath,
        last: Last,
        create: Option<u32>,
    ) -> Result<Result<WalkedEntry, Missing>> {
        let mut held = self.open_root()?;
        let mut steps: VecDeque<PendingComponent> = self.steps(path);
        let mut links = 0;
        while let Some(step) = steps.pop_front() {
            let at = held_path(&held);
            // In a directory walk every step is a directory; otherwise the last one is the entry.
            let is_last = steps.is_empty() && last != Last::Directory;
            if step.name == "." {
                continue;
            }
            if step.name == ".." {
                if held.len() == 1 {
                    bail!(
                        "`{path}` goes through a link that leads out of the root; berth works only under the root"
                    );
                }
                held.pop();
                continue;
            }
            let top = &held.last().expect("the root is always held").0;
            if is_last {
                let entry = WalkedEntry {
                    directory: Directory {
                        fd: top.try_clone()?,
                        path: at.clone(),
                    },
                    name: step.name.clone(),
                };
                let status = entry.status()?;
                let is_link = status.is_some_and(|status| file_type(&status) == SFlag::S_IFLNK);
                if !(is_link && last == Last::Follow) {
                    return Ok(Ok(entry));
                }
            }
            let opened = openat(
                top,
                step.name.as_os_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            );
            let fd = match opened {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    let Some(mode) = create else {
                        return Ok(Err(Missing(at.join(&step.name))));
                    };
                    // Parents are 0755; the directory asked for gets its own mode.
                    let mode = if steps.is_empty() { mode } else { 0o755 };
                    let fd = make_directory(top, &step.name, mode)
                        .map_err(|error| io_error(error, &at.join(&step.name)))?;
                    let trusted = held.iter().all(|(_, _, trusted)| *trusted);
                    held.push((fd, step.name, trusted));
                    continue;
                }
                Err(Errno::ENOTDIR) => return Ok(Err(Missing(at))),
                Err(error) => return Err(io_error(error, &at.join(&step.name))),
            };
            let status = fstat(&fd).map_err(std::io::Error::from)?;
            match file_type(&status) {
                SFlag::S_IFDIR => {
                    held.push((fd, step.name, strict_modes(&status)));
                }
                SFlag::S_IFLNK => {
                    let link = at.join(&step.name);
                    if !self.may_follow(&step, &held, &at) {
                        bail!(
                            "`{link}` is a symbolic link, and berth does not follow links where another user or a container can plant them; replace it with the real file or directory"
                        );
                    }
                    links += 1;
                    if links > MAX_LINKS {
                        bail!("`{link}` goes through more than {MAX_LINKS} links");
                    }
                    let target = readlinkat(&fd, "").map_err(std::io::Error::from)?;
                    let target = Path::new(&target);
                    if target.is_absolute() {
                        held.truncate(1);
                    }
                    push_target(&mut steps, target, step.hostile);
                }
                _ => return Ok(Err(Missing(at.join(&step.name)))),
            }
        }
        // Only a directory walk gets here (or a link whose target ends in `..`): the entry is
        // the last directory held, as `.`.
        if last != Last::Directory {
            bail!("`{path}` leads to a directory, not a file");
        }
        let path = held_path(&held);
        let (fd, _, _) = held.pop().expect("the root is always held");
        Ok(Ok(WalkedEntry {
            directory: Directory { fd, path },
            name: OsString::from("."),
        }))
    }

    /// The root, held: the first of the directories a walk holds, from the root down, each with
    /// its name and whether it passes StrictModes.
    fn open_root(&self) -> Result<Vec<Held>> {
        let root = openat(
            nix::fcntl::AT_FDCWD,
            self.root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|error| {
            anyhow::Error::from(std::io::Error::from(error))
                .context(format!("failed to open the root `{}`", self.root.display()))
        })?;
        let trusted = strict_modes(&fstat(&root).map_err(std::io::Error::from)?);
        Ok(vec![(root, OsString::new(), trusted)])
    }

    /// The components of `path`, each marked hostile when it lies inside a hostile directory
    /// (the hostile directory's own name is not: a link above it is the operator's).
    fn steps(&self, path: &HostPath) -> VecDeque<PendingComponent> {
        let names: Vec<&OsStr> = path
            .as_path()
            .components()
            .filter_map(|component| match component {
                Component::Normal(name) => Some(name),
                _ => None,
            })
            .collect();
        let inside_from = self
            .hostile
            .iter()
            .filter(|dir| path.as_path().starts_with(dir.as_path()))
            .map(|dir| dir.as_path().components().count() - 1)
            .min()
            .unwrap_or(usize::MAX);
        names
            .into_iter()
            .enumerate()
            .map(|(index, name)| PendingComponent {
                name: name.to_owned(),
                hostile: index >= inside_from,
            })
            .collect()
    }

    /// A link is followed only outside hostile directories, and only when every directory held
    /// passes StrictModes: no one but root could have planted it.
    fn may_follow(&self, step: &PendingComponent, held: &[Held], at: &HostPath) -> bool {
        !step.hostile
            && !self
                .hostile
                .iter()
                .any(|dir| at.as_path().starts_with(dir.as_path()))
            && held.iter().all(|(_, _, trusted)| *trusted)
    }
}

/// A directory a walk holds: its descriptor, its name, whether it passes StrictModes.
type Held = (OwnedFd, OsString, bool);

/// Puts a link's target before the steps still to walk, so that it is walked from where the
/// link is (the caller went back to the root for an absolute one).
fn push_target(steps: &mut VecDeque<PendingComponent>, target: &Path, hostile: bool) {
    for component in target.components().rev() {
        let name = match component {
            Component::Normal(name) => name.to_owned(),
            Component::ParentDir => OsString::from(".."),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
        };
        steps.push_front(PendingComponent { name, hostile });
    }
}

/// The host path of the directories held.
fn held_path(held: &[Held]) -> HostPath {
    let mut path = std::path::PathBuf::from("/");
    for (_, name, _) in &held[1..] {
        path.push(name);
    }
    HostPath::new(path).expect("built from plain names under `/`")
}

/// sshd's StrictModes: owned by root (or the user berth runs as) and writable by no one else.
fn strict_modes(status: &FileStat) -> bool {
    let owner = status.st_uid;
    (owner == 0 || owner == nix::unistd::geteuid().as_raw()) && status.st_mode & 0o022 == 0
}

fn file_type(status: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(status.st_mode & SFlag::S_IFMT.bits())
}

/// `mkdirat`, then the mode set through the new directory's descriptor (the umask narrows
/// `mkdirat`'s mode, and `umask 000` must not leave a 0777 directory either).
fn make_directory(parent: &OwnedFd, name: &OsStr, mode: u32) -> Result<OwnedFd, Errno> {
    match mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(error) => return Err(error),
    }
    let fd = openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    fchmod(&fd, Mode::from_bits_truncate(mode))?;
    Ok(fd)
}

/// An errno as an io error naming `path` (a host path).
pub(super) fn io_error(error: Errno, path: &HostPath) -> anyhow::Error {
    anyhow::Error::from(std::io::Error::from(error)).context(format!("at `{path}`"))
}

/// Opens `name` in `directory` for reading: never through a link, never blocking (a FIFO opens
/// at once and is then refused), regular files only.
pub(super) fn open_regular(entry: &WalkedEntry) -> Result<Option<std::fs::File>> {
    let opened = openat(
        &entry.directory.fd,
        entry.name.as_os_str(),
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    );
    let fd = match opened {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
        Err(Errno::ELOOP) => bail!(
            "`{}` is a symbolic link, and berth does not follow links where another user or a container can plant them",
            entry.path()
        ),
        Err(error) => return Err(io_error(error, &entry.path())),
    };
    refuse_unless_regular(&fstat(&fd).map_err(std::io::Error::from)?, &entry.path())?;
    Ok(Some(std::fs::File::from(fd)))
}

/// A FIFO, a device, a socket or a directory where a file belongs is refused by name.
pub(super) fn refuse_unless_regular(status: &FileStat, path: &HostPath) -> Result<()> {
    let what = match file_type(status) {
        SFlag::S_IFREG => return Ok(()),
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFCHR | SFlag::S_IFBLK => "a device",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFLNK => "a symbolic link",
        _ => "not a regular file",
    };
    bail!("`{path}` is {what}, not a regular file; berth reads and writes only regular files there")
}

/// The directory a walk that ended with [`Last::Directory`] reached, opened for listing.
pub(super) fn open_listable(entry: &WalkedEntry) -> Result<OwnedFd, Errno> {
    openat(
        entry.directory.fd.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}
