//! `kernel-module/NAME`: a module loaded now and loaded again at every boot.
//!
//! Loaded means: listed in `/proc/modules`, or a filesystem the kernel lists in
//! `/proc/filesystems` (overlay), or present in `/sys/module`, or built in per
//! `/lib/modules/<release>/modules.builtin`. Persisted means: a line in any modules-load.d file
//! or in `/etc/modules`. A kernel without module support (no `/proc/modules`) that has the module
//! built in is converged as it is. Every path goes through the root.

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::{
    host::exec::{self, CommandLine},
    host::{Host, HostPath, host_path},
    plan::{Action, Change, Diff, Kind, ResourceId},
    resource::{Context, Earlier, Resource},
};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KernelSection {
    pub modules: Option<Vec<ModuleName>>,
}

/// A kernel module name as `modprobe` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct ModuleName(String);

impl ModuleName {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The kernel reports `-` in module names as `_` (`/proc/modules`, `/sys/module`).
    pub(crate) fn kernel_form(&self) -> String {
        self.0.replace('-', "_")
    }
}

impl TryFrom<String> for ModuleName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if valid {
            Ok(Self(name))
        } else {
            Err(format!(
                "`{name}` is not a kernel module name (letters, digits, `_` and `-`)"
            ))
        }
    }
}

impl std::fmt::Display for ModuleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The modules of the `[kernel]` section, each once, in the order written.
pub(crate) fn resolve(layer: Option<KernelSection>) -> Vec<ModuleName> {
    let mut modules: Vec<ModuleName> = Vec::new();
    for module in layer.and_then(|kernel| kernel.modules).unwrap_or_default() {
        if !modules.contains(&module) {
            modules.push(module);
        }
    }
    modules
}

/// Where systemd-modules-load (and Debian's kmod init script) read module lists, most
/// important first.
const MODULES_LOAD_DIRS: &[&str] = &[
    "/etc/modules-load.d",
    "/run/modules-load.d",
    "/usr/local/lib/modules-load.d",
    "/usr/lib/modules-load.d",
    "/lib/modules-load.d",
];

pub(crate) struct KernelModule {
    name: ModuleName,
    /// `berth destroy`: the module file berth wrote is kept (said so) or, with `--purge`,
    /// removed; the module itself stays loaded (Docker may still need it).
    destroy: Option<Purge>,
}

/// Whether `berth destroy` was given `--purge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Purge(pub bool);

/// How the file berth writes begins: a file that does not, berth did not write.
const WRITTEN_BY_BERTH: &str = "# Written by berth:";

/// What the running kernel says about the module, as far as the root lets berth see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KernelView {
    /// No `/proc` under the root (a directory tree, not a running system): only persistence
    /// can be managed.
    NotVisible,
    /// `/proc` exists but `/proc/modules` does not: the kernel cannot load modules at all.
    NoModuleSupport {
        available: bool,
    },
    Modular {
        loaded: bool,
        built_in: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModuleState {
    pub kernel: KernelView,
    /// The file that already loads the module at boot.
    pub persisted_in: Option<HostPath>,
    /// That file is the one berth writes, and berth wrote it.
    pub written_by_berth: bool,
}

impl KernelModule {
    pub(crate) fn new(name: ModuleName) -> Self {
        Self {
            name,
            destroy: None,
        }
    }

    /// The module as `berth destroy` sees it: only the file berth wrote for it.
    pub(crate) fn forgotten(name: ModuleName, purge: bool) -> Self {
        Self {
            name,
            destroy: Some(Purge(purge)),
        }
    }

    /// What `berth destroy` does with the file berth wrote, if berth wrote one.
    fn diff_destroy(&self, observed: &ModuleState, purge: Purge, diff: &mut Diff<ModuleOp>) {
        let file = self.persistence_file();
        if observed.persisted_in.as_ref() != Some(&file) || !observed.written_by_berth {
            return;
        }
        if purge.0 {
            diff.push(
                Change::new(
                    self.id(),
                    Action::Destroy,
                    format!("remove {file} (--purge)"),
                ),
                ModuleOp::Unpersist,
            );
        } else {
            diff.changes.push((
                Change::new(
                    self.id(),
                    Action::Keep,
                    format!(
                        "kept: {file} loads {} at boot; berth destroy --purge removes it",
                        self.name
                    ),
                ),
                None,
            ));
        }
    }

    /// The file berth writes to load the module at boot.
    pub(crate) fn persistence_file(&self) -> HostPath {
        host_path("/etc/modules-load.d").join(format!("{}.conf", self.name))
    }

    fn modprobe(&self) -> CommandLine {
        CommandLine::new("modprobe", [self.name.as_str()])
    }

    pub(crate) fn observe_kernel(&self, host: &Host) -> Result<KernelView> {
        let filesystems = host.read_optional(&host_path("/proc/filesystems"))?;
        let modules = host.read_optional(&host_path("/proc/modules"))?;
        let kernel_name = self.name.kernel_form();
        let is_filesystem = filesystems.as_deref().is_some_and(|text| {
            text.lines()
                .any(|line| line.split_whitespace().last() == Some(self.name.as_str()))
        });
        let in_sys = host.exists(&host_path("/sys/module").join(&kernel_name));
        let Some(modules) = modules else {
            return Ok(if filesystems.is_none() {
                KernelView::NotVisible
            } else {
                KernelView::NoModuleSupport {
                    available: is_filesystem || in_sys,
                }
            });
        };
        let in_modules = modules
            .lines()
            .any(|line| line.split_whitespace().next() == Some(kernel_name.as_str()));
        Ok(KernelView::Modular {
            loaded: in_modules || is_filesystem || in_sys,
            built_in: self.listed_built_in(host)?,
        })
    }

    fn listed_built_in(&self, host: &Host) -> Result<bool> {
        let release = match host.read_optional(&host_path("/proc/sys/kernel/osrelease"))? {
            Some(release) => release.trim().to_owned(),
            None => nix::sys::utsname::uname()
                .context("failed to read the kernel release")?
                .release()
                .to_string_lossy()
                .into_owned(),
        };
        let list = host_path("/lib/modules")
            .join(release)
            .join("modules.builtin");
        let wanted = format!("{}.ko", self.name.kernel_form());
        Ok(host.read_optional(&list)?.is_some_and(|text| {
            text.lines().any(|line| {
                line.rsplit('/').next().map(|file| file.replace('-', "_")) == Some(wanted.clone())
            })
        }))
    }

    fn find_persistence(&self, host: &Host) -> Result<Option<HostPath>> {
        let mut candidates = Vec::new();
        for dir in MODULES_LOAD_DIRS {
            let dir = host_path(dir);
            for name in host.list_dir(&dir)? {
                if name.ends_with(".conf") {
                    candidates.push(dir.join(name));
                }
            }
        }
        candidates.push(host_path("/etc/modules"));
        let wanted = self.name.kernel_form();
        for path in candidates {
            let Some(text) = host.read_optional(&path)? else {
                continue;
            };
            let listed = text.lines().any(|line| {
                let line = line.trim();
                !line.starts_with('#')
                    && !line.starts_with(';')
                    && line
                        .split_whitespace()
                        .next()
                        .map(|name| name.replace('-', "_"))
                        == Some(wanted.clone())
            });
            if listed {
                return Ok(Some(path));
            }
        }
        Ok(None)
    }
}

/// What apply does for a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModuleOp {
    /// `modprobe NAME`.
    Load,
    /// Writes the modules-load.d file that loads it at boot.
    Persist,
    /// Removes the file berth wrote (`berth destroy --purge`).
    Unpersist,
}

impl Resource for KernelModule {
    type Observed = ModuleState;
    type Op = ModuleOp;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::KernelModule, self.name.as_str())
    }

    fn observe(&self, context: &Context) -> Result<ModuleState> {
        let persisted_in = self.find_persistence(context.host)?;
        let file = self.persistence_file();
        let written_by_berth = persisted_in.as_ref() == Some(&file)
            && context
                .host
                .read_optional(&file)?
                .is_some_and(|text| text.starts_with(WRITTEN_BY_BERTH));
        Ok(ModuleState {
            kernel: self.observe_kernel(context.host)?,
            persisted_in,
            written_by_berth,
        })
    }

    fn diff(&self, observed: &ModuleState, _earlier: &Earlier) -> Diff<ModuleOp> {
        let mut diff = Diff::none();
        if let Some(purge) = self.destroy {
            self.diff_destroy(observed, purge, &mut diff);
            return diff;
        }
        let needs_persistence = match observed.kernel {
            KernelView::NotVisible => {
                diff.warn(format!(
                    "the running kernel is not visible under the root (no /proc/filesystems or /proc/modules): `{}` is only persisted, not loaded",
                    self.name
                ));
                true
            }
            KernelView::NoModuleSupport { available: true } => false,
            KernelView::NoModuleSupport { available: false } => {
                diff.push(
                    Change::new(self.id(), Action::Load, self.modprobe().to_string()).refused_because(format!(
                        "this kernel cannot load modules (no /proc/modules) and `{}` is not built in",
                        self.name
                    )),
                    ModuleOp::Load,
                );
                false
            }
            KernelView::Modular { loaded, built_in } => {
                if !loaded {
                    diff.push(
                        Change::new(self.id(), Action::Load, self.modprobe().to_string()),
                        ModuleOp::Load,
                    );
                }
                !built_in
            }
        };
        if needs_persistence && observed.persisted_in.is_none() {
            diff.push(
                Change::new(
                    self.id(),
                    Action::Persist,
                    self.persistence_file().to_string(),
                ),
                ModuleOp::Persist,
            );
        }
        diff
    }

    fn action(&self, op: &ModuleOp) -> Action {
        match op {
            ModuleOp::Load => Action::Load,
            ModuleOp::Persist => Action::Persist,
            ModuleOp::Unpersist => Action::Destroy,
        }
    }

    fn apply(&self, context: &Context, op: &ModuleOp) -> Result<()> {
        match op {
            ModuleOp::Load => {
                exec::run(&self.modprobe())?;
            }
            ModuleOp::Persist => {
                let text = format!(
                    "{WRITTEN_BY_BERTH} load {} at boot (systemd-modules-load).\n{}\n",
                    self.name, self.name
                );
                context
                    .host
                    .write_atomic(&self.persistence_file(), text.as_bytes(), 0o644)?;
            }
            ModuleOp::Unpersist => context.host.remove_file(&self.persistence_file())?,
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests build fixture trees beside the host layer"
)]
mod tests {
    use super::*;
    use crate::docker::Docker;

    struct Fixture {
        _root: tempfile::TempDir,
        host: Host,
    }

    impl Fixture {
        fn new(files: &[(&str, &str)]) -> Self {
            let root = tempfile::tempdir().unwrap();
            for (path, text) in files {
                let full = root.path().join(path.trim_start_matches('/'));
                if path.ends_with('/') {
                    std::fs::create_dir_all(full).unwrap();
                    continue;
                }
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(full, text).unwrap();
            }
            let host = Host::new(root.path());
            Self { _root: root, host }
        }

        fn plan(&self, name: &str) -> Vec<(Action, bool)> {
            let module = KernelModule::new(ModuleName::try_from(name.to_owned()).unwrap());
            let docker = Docker::default();
            let context = Context {
                host: &self.host,
                docker: &docker,
            };
            let observed = module.observe(&context).unwrap();
            module
                .diff(&observed, &Earlier::default())
                .changes
                .into_iter()
                .map(|(change, _)| (change.action, change.refused.is_some()))
                .collect()
        }
    }

    #[test]
    fn loaded_and_persisted_is_converged() {
        let fixture = Fixture::new(&[
            ("/proc/filesystems", "nodev\tsysfs\n"),
            ("/proc/modules", "overlay 151552 0 - Live 0x0\n"),
            ("/etc/modules-load.d/docker.conf", "# docker\noverlay\n"),
        ]);
        assert_eq!(fixture.plan("overlay"), []);
    }

    #[test]
    fn missing_module_is_loaded_and_persisted() {
        let fixture = Fixture::new(&[
            ("/proc/filesystems", "nodev\tsysfs\n"),
            ("/proc/modules", "ext4 1 0 - Live 0x0\n"),
        ]);
        assert_eq!(
            fixture.plan("overlay"),
            [(Action::Load, false), (Action::Persist, false)]
        );
    }

    #[test]
    fn a_line_in_etc_modules_counts_and_dashes_match_underscores() {
        let fixture = Fixture::new(&[
            ("/proc/filesystems", ""),
            ("/proc/modules", "br_netfilter 1 0 - Live 0x0\n"),
            ("/etc/modules", "br-netfilter\n"),
        ]);
        assert_eq!(fixture.plan("br_netfilter"), []);
    }

    #[test]
    fn kernel_without_module_support_and_overlay_built_in_is_converged() {
        let fixture = Fixture::new(&[
            ("/proc/filesystems", "nodev\toverlay\n"),
            ("/sys/module/overlay/", ""),
        ]);
        assert_eq!(fixture.plan("overlay"), []);
    }

    #[test]
    fn kernel_without_module_support_and_without_the_module_is_refused() {
        let fixture = Fixture::new(&[("/proc/filesystems", "nodev\tsysfs\n")]);
        assert_eq!(fixture.plan("overlay"), [(Action::Load, true)]);
    }

    #[test]
    fn built_in_per_modules_builtin_needs_no_persistence() {
        let fixture = Fixture::new(&[
            ("/proc/sys/kernel/osrelease", "6.1.0-test\n"),
            ("/proc/filesystems", "nodev\toverlay\n"),
            ("/proc/modules", ""),
            (
                "/lib/modules/6.1.0-test/modules.builtin",
                "kernel/fs/overlayfs/overlay.ko\n",
            ),
        ]);
        assert_eq!(fixture.plan("overlay"), []);
    }

    #[test]
    fn an_empty_root_only_persists() {
        let fixture = Fixture::new(&[]);
        assert_eq!(fixture.plan("overlay"), [(Action::Persist, false)]);
    }
}
