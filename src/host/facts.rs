//! The machine's size: how many CPUs it has and how much memory, what `concurrent = "auto"`
//! sizes gitlab-runner by (issue 22). Only read; nothing here decides what the numbers mean.
//!
//! On the machine itself (root `/`) the numbers come from `sysinfo`, the design card's crate.
//! Under another `--root` they come from the kernel's files below that root: `proc/meminfo`'s
//! `MemTotal`, which sysinfo reads too, and `proc/cpuinfo`'s `processor` entries, the CPU list
//! sysinfo falls back to when `/proc/stat` is unreadable (one entry per logical CPU in both).
//! It is the same seam as `/proc/modules` for kernel modules, so a test gives a host of any
//! size by writing two files, and production never reads them through the root. sysinfo cannot
//! be pointed at another `/proc`, hence two readers; both report the whole machine, never
//! berth's own cgroup (a unit's `MemoryMax=` limits berth, not the runner's jobs).

use anyhow::{Context, Result, bail};

use super::{Host, host_path};

/// `proc/cpuinfo` and `proc/meminfo` are small; a bigger file under a test root is a mistake.
const PROC_LIMIT: u64 = 1024 * 1024;

/// CPUs and total memory of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostFacts {
    /// Logical CPUs the kernel lists.
    pub cpus: u64,
    /// Total memory, in bytes.
    pub memory: u64,
}

impl HostFacts {
    /// The machine's CPUs and memory: sysinfo on `/`, the root's `proc` files elsewhere.
    pub(crate) fn read(host: &Host) -> Result<Self> {
        if host.is_machine_root() {
            let mut system =
                sysinfo::System::new().context("failed to read the machine's CPUs and memory")?;
            system.refresh_memory();
            system.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
            let facts = Self {
                cpus: system.cpus().len() as u64,
                memory: system.total_memory(),
            };
            if facts.cpus == 0 || facts.memory == 0 {
                bail!("sysinfo found no CPUs or no memory on this machine");
            }
            return Ok(facts);
        }
        let read = |path: &str| -> Result<String> {
            host.read_limited(&host_path(path), PROC_LIMIT)?
                .with_context(|| {
                    format!(
                        "`{}` is missing: the machine's size is read from it under the root",
                        host.path(&host_path(path)).display()
                    )
                })
        };
        let cpus = cpus(&read("/proc/cpuinfo")?).context("`/proc/cpuinfo` lists no processor")?;
        let memory = memory(&read("/proc/meminfo")?)
            .context("`/proc/meminfo` has no `MemTotal: N kB` line")?;
        Ok(Self { cpus, memory })
    }
}

/// The `processor : N` entries of `/proc/cpuinfo`: one per logical CPU.
fn cpus(cpuinfo: &str) -> Option<u64> {
    let count = cpuinfo
        .lines()
        .filter(|line| {
            line.split_once(':')
                .is_some_and(|(key, _)| key.trim() == "processor")
        })
        .count() as u64;
    (count > 0).then_some(count)
}

/// `MemTotal` of `/proc/meminfo`, which the kernel writes in KiB.
fn memory(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?.trim();
        let kib: u64 = rest.strip_suffix("kB")?.trim().parse().ok()?;
        (kib > 0).then(|| kib * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_files_are_read_as_the_kernel_writes_them() {
        let cpuinfo =
            "processor\t: 0\nvendor_id\t: GenuineIntel\n\nprocessor\t: 1\nmodel name\t: x\n";
        assert_eq!(cpus(cpuinfo), Some(2));
        assert_eq!(cpus("vendor_id : x\n"), None);
        let meminfo = "MemTotal:       32768000 kB\nMemFree:         1000 kB\n";
        assert_eq!(memory(meminfo), Some(32_768_000 * 1024));
        assert_eq!(memory("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn a_root_without_the_files_says_which_is_missing() {
        let root = tempfile::tempdir().unwrap();
        let error = HostFacts::read(&Host::new(root.path())).unwrap_err();
        assert!(
            format!("{error:#}").contains("proc/cpuinfo` is missing"),
            "{error:#}"
        );
    }

    #[test]
    fn the_machine_itself_has_cpus_and_memory() {
        let facts = HostFacts::read(&Host::new("/")).unwrap();
        assert!(facts.cpus >= 1 && facts.memory > 0, "{facts:?}");
    }
}
