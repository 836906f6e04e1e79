//! What an install killed halfway leaves (a power cut, the unit's timeout, `kill -9`): dpkg
//! stopped between unpacking Docker's packages and configuring them. Every later apt-get then
//! refuses ("dpkg was interrupted, you must manually run 'dpkg --configure -a'"), while the
//! unpacked dockerd and docker.service make Docker look installed. berth finishes it as an
//! operator would, and before anything else: `dpkg --configure -a` configures what was
//! unpacked, `apt-get install -f` reinstalls what dpkg left half unpacked.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::host::{Host, host_path};

use super::{KEEP_CHANGED_CONFFILES, apt, progress};

/// The states dpkg-query(1) names between "not installed" and "installed".
const UNFINISHED_STATES: [&str; 5] = [
    "half-installed",
    "unpacked",
    "half-configured",
    "triggers-awaiting",
    "triggers-pending",
];

/// What dpkg left unfinished that is berth's to finish, said for the plan: one of Docker's
/// packages in an in-between state, or dpkg stopped in the middle of writing its database
/// (`/var/lib/dpkg/updates`) while Docker is not installed yet. An operator's own interrupted
/// dpkg run on a host whose Docker is fine is not berth's to finish.
pub(super) fn unfinished(
    host: &Host,
    packages: &[&str],
    docker_present: bool,
) -> Result<Option<String>> {
    let journal = host.list_dir(&host_path(DPKG_UPDATES))?;
    let unfinished: Vec<String> = package_states(host, &journal)?
        .into_iter()
        .filter(|(name, state)| {
            packages.contains(&name.as_str()) && UNFINISHED_STATES.contains(&state.as_str())
        })
        .map(|(name, state)| format!("{name} {state}"))
        .collect();
    if !unfinished.is_empty() {
        return Ok(Some(unfinished.join(", ")));
    }
    Ok((!docker_present && !journal.is_empty())
        .then(|| "dpkg stopped in the middle of an operation".to_owned()))
}

/// Where dpkg journals each change to its database before it folds them into `status`: what
/// it did last before it was killed is there, not in `status`.
const DPKG_UPDATES: &str = "/var/lib/dpkg/updates";

/// dpkg's status lists every installed package: a few megabytes on a full desktop, so well
/// above berth's usual read limit.
const DPKG_STATUS_LIMIT: u64 = 64 << 20;

/// Each package's state as dpkg would read it back: `status`, then its journal entries
/// (`updates/0000`, `0001`, ...) in order, a later record of a package replacing the earlier.
fn package_states(host: &Host, journal: &[String]) -> Result<BTreeMap<String, String>> {
    let mut states = BTreeMap::new();
    let status = host
        .read_limited(&host_path("/var/lib/dpkg/status"), DPKG_STATUS_LIMIT)?
        .unwrap_or_default();
    states.extend(records(&status));
    // `list_dir` sorts by name, and dpkg numbers its entries with leading zeros; `tmp.i` is
    // one it had not finished writing.
    for entry in journal
        .iter()
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
    {
        let path = host_path(DPKG_UPDATES).join(entry);
        states.extend(records(&host.read_optional(&path)?.unwrap_or_default()));
    }
    Ok(states)
}

/// `(package, state)` for each record of a dpkg status text: the last word of `Status:`.
fn records(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter_map(|paragraph| {
            let field = |name: &str| {
                paragraph
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(str::trim)
            };
            let state = field("Status:")?.split_whitespace().last()?;
            Some((field("Package:")?.to_owned(), state.to_owned()))
        })
        .collect()
}

/// `dpkg --configure -a`, then `apt-get install -f`, neither asking anything and both keeping a
/// configuration file the operator changed.
pub(super) fn finish() -> Result<()> {
    progress(
        "dpkg",
        &["--configure", "-a", "--force-confdef", "--force-confold"],
        &[("DEBIAN_FRONTEND", "noninteractive")],
    )?;
    let mut args = vec!["install", "-f", "-y", "--no-install-recommends"];
    args.extend(KEEP_CHANGED_CONFFILES);
    apt(&args)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: ca-certificates\nStatus: install ok installed\nVersion: 20230311\n\nPackage: docker.io\nStatus: install reinstreq half-installed\nVersion: 20.10.24\n\nPackage: containerd\nStatus: install ok unpacked\n\nPackage: runc\nStatus: deinstall ok config-files\n";

    #[test]
    fn each_record_gives_its_package_and_state() {
        assert_eq!(
            records(STATUS),
            [
                ("ca-certificates".to_owned(), "installed".to_owned()),
                ("docker.io".to_owned(), "half-installed".to_owned()),
                ("containerd".to_owned(), "unpacked".to_owned()),
                ("runc".to_owned(), "config-files".to_owned()),
            ]
        );
        assert!(records("").is_empty());
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the test builds a dpkg database beside the host layer"
    )]
    #[test]
    fn docker_left_unfinished_is_berths_to_finish_and_a_foreign_one_is_not() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        let dpkg = root.path().join("var/lib/dpkg");
        std::fs::create_dir_all(dpkg.join("updates")).unwrap();
        assert_eq!(unfinished(&host, &["docker.io"], false).unwrap(), None);
        std::fs::write(dpkg.join("status"), STATUS).unwrap();
        assert_eq!(
            unfinished(&host, &["docker.io", "ca-certificates"], true).unwrap(),
            Some("docker.io half-installed".to_owned())
        );
        // Someone else's package, or dpkg's journal on a host whose Docker is installed: left.
        assert_eq!(unfinished(&host, &["moby-engine"], true).unwrap(), None);
        // What dpkg journaled last wins over `status`: docker.io was reinstalled since.
        std::fs::write(
            dpkg.join("updates/0000"),
            "Package: docker.io\nStatus: install ok installed\n",
        )
        .unwrap();
        assert_eq!(unfinished(&host, &["docker.io"], true).unwrap(), None);
        std::fs::write(
            dpkg.join("updates/0001"),
            "Package: ca-certificates\nStatus: install ok half-configured\n",
        )
        .unwrap();
        std::fs::write(
            dpkg.join("updates/tmp.i"),
            "Package: docker.io\nStatus: install ok unpacked\n",
        )
        .unwrap();
        assert_eq!(
            unfinished(&host, &["docker.io", "ca-certificates"], true).unwrap(),
            Some("ca-certificates half-configured".to_owned())
        );
        assert_eq!(unfinished(&host, &["moby-engine"], true).unwrap(), None);
        assert_eq!(
            unfinished(&host, &["moby-engine"], false).unwrap(),
            Some("dpkg stopped in the middle of an operation".to_owned())
        );
    }
}
