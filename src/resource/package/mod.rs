//! `package/docker`: Docker installed from the OS's packages when the host has none, so that
//! `berth apply` on a bare Debian, Ubuntu, Fedora or RHEL-family host ends with a Docker that
//! runs (`daemon/docker` starts it next) rather than with nothing to run containers on.
//!
//! `/etc/os-release` under the root decides the family; `dpkg-query` or `rpm -q` (against the
//! root's package database) say what is installed. A Docker that is there already, from
//! whichever package or by hand (a docker.service unit or a dockerd), is left as it is: berth
//! never swaps one engine for another on a host that runs containers. Installing runs apt-get
//! or dnf on the machine berth runs on only: neither can install into another root, so with
//! `--root` elsewhere the install is refused with the way to do it (run berth inside that root).

mod interrupted;

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use crate::{
    docker::unit,
    host::{
        self, Host,
        exec::{self, CommandLine},
        host_path,
    },
    plan::{Action, Change, Diff, Kind, ResourceId},
    resource::{Context, Earlier, Made, Resource},
};

/// How long one package manager run may take: downloads on a slow mirror included.
const PACKAGE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Where Docker's packages come from when the host has none: `[docker] install`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "InstallSetting")]
pub(crate) enum InstallSource {
    /// The distribution's own packages: `docker.io`, `moby-engine` or `docker`.
    Distro,
    /// Docker's repository at download.docker.com: `docker-ce docker-ce-cli containerd.io`.
    DockerCe,
    /// Never install: a missing Docker is an error.
    Never,
}

/// `install = "distro" | "docker-ce" | false`, as TOML gives it.
#[derive(Deserialize)]
#[serde(untagged)]
enum InstallSetting {
    Switch(bool),
    Source(String),
}

impl TryFrom<InstallSetting> for InstallSource {
    type Error = String;
    fn try_from(setting: InstallSetting) -> Result<Self, String> {
        match setting {
            InstallSetting::Switch(false) => Ok(Self::Never),
            InstallSetting::Source(source) if source == "distro" => Ok(Self::Distro),
            InstallSetting::Source(source) if source == "docker-ce" => Ok(Self::DockerCe),
            InstallSetting::Switch(true) | InstallSetting::Source(_) => Err(
                "must be \"distro\" (the distribution's packages), \"docker-ce\" (Docker's own repository) or false (never install)".into(),
            ),
        }
    }
}

/// What `/etc/os-release` says of the OS, as far as installing Docker goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OsRelease {
    pub id: String,
    pub id_like: Vec<String>,
    pub version_codename: Option<String>,
    /// Set by Ubuntu derivatives (Mint, Pop!_OS), whose own codename Docker's repository lacks.
    pub ubuntu_codename: Option<String>,
}

impl OsRelease {
    /// Parses os-release(5): shell-style `KEY=value` assignments.
    pub(crate) fn parse(text: &str) -> Self {
        let mut release = Self::default();
        for (key, value) in host::parse_assignments(text) {
            let set = (!value.is_empty()).then(|| value.clone());
            match key.as_str() {
                "ID" => release.id = value,
                "ID_LIKE" => release.id_like = value.split_whitespace().map(Into::into).collect(),
                "VERSION_CODENAME" => release.version_codename = set,
                "UBUNTU_CODENAME" => release.ubuntu_codename = set,
                _ => {}
            }
        }
        release
    }

    /// The package family: the ID itself first, then what it says it is like.
    pub(crate) fn family(&self) -> Option<Family> {
        std::iter::once(&self.id)
            .chain(&self.id_like)
            .find_map(|id| match id.as_str() {
                "debian" | "ubuntu" => Some(Family::Debian),
                "fedora" if self.id == "fedora" => Some(Family::Fedora),
                "rhel" | "centos" | "rocky" | "almalinux" | "amzn" | "fedora" => {
                    Some(Family::RedHat)
                }
                _ => None,
            })
    }

    fn is_ubuntu(&self) -> bool {
        self.id == "ubuntu" || self.id_like.iter().any(|like| like == "ubuntu")
    }
}

/// How a family installs packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Debian, Ubuntu and their derivatives: dpkg and apt-get.
    Debian,
    /// Fedora itself: rpm and dnf, Docker as `moby-engine`.
    Fedora,
    /// RHEL, CentOS, Rocky, Alma, Amazon Linux: rpm and dnf, Docker as `docker`.
    RedHat,
}

/// Docker's own repository, added before its packages are installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Repository {
    /// The signing key saved to `keyring`, and `sources` (deb822) naming it as `Signed-By`.
    Apt { key_url: String, sources: String },
    /// A dnf `.repo` file, fetched as Docker publishes it.
    Dnf { repo_url: String },
}

const APT_KEYRING: &str = "/etc/apt/keyrings/docker.asc";
const APT_SOURCES: &str = "/etc/apt/sources.list.d/docker.sources";
/// The one-line form Docker's install page gave for years; a host that has it has the repo.
const APT_SOURCES_LIST: &str = "/etc/apt/sources.list.d/docker.list";
const DNF_REPO: &str = "/etc/yum.repos.d/docker-ce.repo";

/// What installing Docker takes on this OS: the packages, and Docker's repository first for
/// `docker-ce`. `Err` says why berth cannot, and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Install {
    pub family: Family,
    pub packages: Vec<&'static str>,
    pub repository: Option<Repository>,
}

pub(crate) fn install_for(source: InstallSource, os: &OsRelease) -> Result<Install, String> {
    let Some(family) = os.family() else {
        return Err(format!(
            "berth cannot install Docker on `{}` (the ID in /etc/os-release): it knows the Debian, Ubuntu, Fedora and RHEL families; install Docker yourself and set `[docker] install = false`",
            if os.id.is_empty() { "?" } else { &os.id }
        ));
    };
    let install = |packages, repository| Install {
        family,
        packages,
        repository,
    };
    match (source, family) {
        (InstallSource::Never, _) => Err(never_message(Some(family))),
        // dockerd reads the system's CA bundle to pull over HTTPS; a minimal Debian has none,
        // and docker.io only recommends it.
        (InstallSource::Distro, Family::Debian) => {
            Ok(install(vec!["docker.io", "ca-certificates"], None))
        }
        (InstallSource::Distro, Family::Fedora) => Ok(install(vec!["moby-engine"], None)),
        (InstallSource::Distro, Family::RedHat) => Ok(install(vec!["docker"], None)),
        (InstallSource::DockerCe, Family::Debian) => {
            let (distribution, codename) = if os.is_ubuntu() {
                ("ubuntu", os.ubuntu_codename.as_ref().or(os.version_codename.as_ref()))
            } else {
                ("debian", os.version_codename.as_ref())
            };
            let codename = codename.ok_or_else(|| {
                "/etc/os-release names no VERSION_CODENAME, by which Docker's apt repository is organised; use `[docker] install = \"distro\"`".to_owned()
            })?;
            let base = format!("https://download.docker.com/linux/{distribution}");
            let sources = format!(
                "# Docker's apt repository, added by berth (`[docker] install = \"docker-ce\"`).\nTypes: deb\nURIs: {base}\nSuites: {codename}\nComponents: stable\nSigned-By: {APT_KEYRING}\n"
            );
            Ok(install(
                DOCKER_CE.to_vec(),
                Some(Repository::Apt {
                    key_url: format!("{base}/gpg"),
                    sources,
                }),
            ))
        }
        (InstallSource::DockerCe, _) if os.id == "amzn" => Err(
            "Docker's repository has no packages for Amazon Linux; use `[docker] install = \"distro\"`"
                .into(),
        ),
        (InstallSource::DockerCe, Family::Fedora | Family::RedHat) => {
            let distribution = match os.id.as_str() {
                "fedora" => "fedora",
                "rhel" => "rhel",
                _ => "centos",
            };
            Ok(install(
                DOCKER_CE.to_vec(),
                Some(Repository::Dnf {
                    repo_url: format!(
                        "https://download.docker.com/linux/{distribution}/docker-ce.repo"
                    ),
                }),
            ))
        }
    }
}

const DOCKER_CE: &[&str] = &["docker-ce", "docker-ce-cli", "containerd.io"];

fn never_message(family: Option<Family>) -> String {
    let how = match family {
        Some(Family::Debian) | None => "apt-get install docker.io",
        Some(Family::Fedora) => "dnf install moby-engine",
        Some(Family::RedHat) => "dnf install docker",
    };
    format!(
        "`[docker] install = false`: install Docker yourself (`{how}`, then start it), or let berth install it with `install = \"distro\"`"
    )
}

pub(crate) struct DockerPackage {
    source: InstallSource,
    /// Run by berth's units: their sandbox (read-only /usr and /var/lib/dpkg, a narrow
    /// capability set) forbids every step of an install, so it is refused, with the way out.
    sandboxed: bool,
}

/// Why berth's units do not install Docker, and what the operator does instead. Allowing it
/// would take the units' sandbox away for a step a host needs once.
pub(crate) const SANDBOXED: &str = "berth's units run sandboxed and cannot install packages (apt-get, dnf, dpkg, Docker's repository): run `sudo berth apply` by hand once; the timer and berth-watch converge the rest from then on";

/// What `observe` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackageState {
    /// A docker.service unit or a dockerd exists under the root, or a Docker answers.
    pub docker_present: bool,
    /// `None` when the root has no os-release (berth then cannot tell how to install).
    pub os: Option<OsRelease>,
    /// The packages installing would take that the package database lists as installed.
    pub installed: Vec<String>,
    /// Docker's repository is configured already (`docker-ce`).
    pub repository_present: bool,
    /// apt has package lists (a fresh debootstrap or a cleaned image has none).
    pub apt_lists: bool,
    /// berth runs on the machine it manages (`--root /`): only there can it install.
    pub machine_root: bool,
}

/// What apply does for `package/docker`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PackageOp {
    Install(InstallOp),
    /// Finish what a killed install left in dpkg (see `interrupted`).
    FinishInterrupted,
}

/// Add the repository when asked, then install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstallOp {
    pub install: Install,
    pub packages: Vec<&'static str>,
    pub add_repository: bool,
    pub update_lists: bool,
}

impl DockerPackage {
    pub(crate) fn new(source: InstallSource, sandboxed: bool) -> Self {
        Self { source, sandboxed }
    }

    pub(crate) fn id() -> ResourceId {
        ResourceId::new(Kind::Package, "docker")
    }
}

fn read_os_release(host: &Host) -> Result<Option<OsRelease>> {
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Some(text) = host.read_optional(&host_path(path))? {
            return Ok(Some(OsRelease::parse(&text)));
        }
    }
    Ok(None)
}

/// The packages among `packages` that the root's package database lists as installed.
fn installed_packages(host: &Host, family: Family, packages: &[&str]) -> Vec<String> {
    let command = match family {
        Family::Debian => {
            let mut args = vec![
                format!(
                    "--admindir={}",
                    host.path(&host_path("/var/lib/dpkg")).display()
                ),
                "-W".to_owned(),
                "-f=${Package} ${Status}\\n".to_owned(),
            ];
            args.extend(packages.iter().map(|package| (*package).to_owned()));
            CommandLine::new("dpkg-query", args)
        }
        Family::Fedora | Family::RedHat => {
            let mut args = vec![
                "--root".to_owned(),
                host.path(&host_path("/")).display().to_string(),
                "-q".to_owned(),
                "--qf".to_owned(),
                "%{NAME} installed\\n".to_owned(),
            ];
            args.extend(packages.iter().map(|package| (*package).to_owned()));
            CommandLine::new("rpm", args)
        }
    };
    // A package the database does not know is an answer (exit 1), not a failure; no
    // dpkg-query at all says nothing is installed through it.
    let Ok(output) = exec::run_unchecked(&command) else {
        return Vec::new();
    };
    output
        .stdout
        .lines()
        .filter_map(|line| {
            let (name, status) = line.split_once(' ')?;
            // dpkg: `install ok installed`; a removed package keeps `deinstall ok config-files`.
            let installed = status.split_whitespace().last() == Some("installed");
            (installed && packages.contains(&name)).then(|| name.to_owned())
        })
        .collect()
}

impl Resource for DockerPackage {
    type Observed = PackageState;
    type Op = PackageOp;

    fn id(&self) -> ResourceId {
        Self::id()
    }

    fn observe(&self, context: &Context) -> Result<PackageState> {
        let host = context.host;
        let docker_present = unit::installation(host, context.docker).is_some();
        let os = read_os_release(host)?;
        let install = os.as_ref().and_then(|os| install_for(self.source, os).ok());
        let installed = match &install {
            Some(install) if !docker_present => {
                installed_packages(host, install.family, &install.packages)
            }
            _ => Vec::new(),
        };
        let repository_present = match install.as_ref().and_then(|i| i.repository.as_ref()) {
            Some(Repository::Apt { .. }) => {
                host.exists(&host_path(APT_SOURCES)) || host.exists(&host_path(APT_SOURCES_LIST))
            }
            Some(Repository::Dnf { .. }) => host.exists(&host_path(DNF_REPO)),
            None => false,
        };
        let apt_lists = host
            .list_dir(&host_path("/var/lib/apt/lists"))?
            .iter()
            .any(|name| name.ends_with("_Packages") || name.contains("_Packages."));
        Ok(PackageState {
            docker_present,
            os,
            installed,
            repository_present,
            apt_lists,
            machine_root: host.is_machine_root(),
        })
    }

    fn diff(&self, observed: &PackageState, _earlier: &Earlier) -> Diff<PackageOp> {
        let mut diff = Diff::none();
        if observed.docker_present {
            return diff;
        }
        let install = match &observed.os {
            None if self.source == InstallSource::Never => Err(never_message(None)),
            None => Err("Docker is not installed, and the root has no /etc/os-release to tell how to install it; install Docker yourself and set `[docker] install = false`".into()),
            Some(os) => install_for(self.source, os),
        };
        let install = match install {
            Ok(install) => install,
            Err(reason) => {
                let change = Change::new(self.id(), Action::Install, "Docker is not installed");
                diff.refuse(change, reason);
                return diff;
            }
        };
        let missing: Vec<&'static str> = install
            .packages
            .iter()
            .copied()
            .filter(|package| !observed.installed.iter().any(|name| name == package))
            .collect();
        if missing.is_empty() {
            return diff;
        }
        let add_repository = install.repository.is_some() && !observed.repository_present;
        let mut detail = missing.join(" ");
        if add_repository {
            detail.push_str(match install.repository {
                Some(Repository::Apt { .. }) => {
                    " from Docker's repository (adds /etc/apt/keyrings/docker.asc and /etc/apt/sources.list.d/docker.sources)"
                }
                _ => " from Docker's repository (adds /etc/yum.repos.d/docker-ce.repo)",
            });
        }
        let change = Change::new(self.id(), Action::Install, detail);
        if self.sandboxed {
            diff.refuse(change, SANDBOXED);
            return diff;
        }
        if !observed.machine_root {
            diff.refuse(change, "apt-get and dnf install only into the system they run on, not under `--root`; run berth inside that root (`chroot ROOT berth apply`), or install Docker there yourself");
            return diff;
        }
        let update_lists = install.family == Family::Debian && !observed.apt_lists;
        diff.push(
            change,
            PackageOp::Install(InstallOp {
                install,
                packages: missing,
                add_repository,
                update_lists,
            }),
        );
        diff
    }

    /// Either op ends with Docker installed: `daemon/docker` then plans to start it.
    fn action(&self, op: &PackageOp) -> Action {
        match op {
            PackageOp::Install(_) => Action::Install,
            PackageOp::FinishInterrupted => Action::Recover,
        }
    }

    /// Installing Docker (or finishing an install dpkg was killed in) starts or restarts it.
    fn disrupts(&self, _op: &PackageOp) -> bool {
        true
    }

    fn made(&self, _op: &PackageOp) -> Vec<Made> {
        vec![Made::DockerInstalled]
    }

    fn apply(&self, context: &Context, op: &PackageOp) -> Result<()> {
        let op = match op {
            PackageOp::Install(op) => op,
            // dpkg --configure -a writes /usr and /var/lib/dpkg, which the units cannot.
            PackageOp::FinishInterrupted if self.sandboxed => anyhow::bail!("{SANDBOXED}"),
            PackageOp::FinishInterrupted => return interrupted::finish(),
        };
        install(context.host, op)?;
        // Debian's packages enable docker.service themselves, Fedora's and RHEL's do not: on a
        // host that systemd runs (sd_booted(3)), Docker must come back after a reboot too.
        // Starting it is `daemon/docker`'s, through `[docker] restart`.
        if context.host.exists(&host_path("/run/systemd/system")) {
            progress("systemctl", &["enable", "docker.service"], &[])?;
        }
        Ok(())
    }

    /// An install killed halfway (a power cut, the unit's timeout, `kill -9`) leaves dpkg with
    /// Docker's packages unpacked but not configured: finished first, before anything looks at
    /// whether Docker is there (its unpacked dockerd would say it is).
    fn leftover(&self, context: &Context) -> Result<Option<(Change, PackageOp)>> {
        let host = context.host;
        if self.source == InstallSource::Never || !host.is_machine_root() {
            return Ok(None);
        }
        let Some(install) = read_os_release(host)?
            .and_then(|os| install_for(self.source, &os).ok())
            .filter(|install| install.family == Family::Debian)
        else {
            return Ok(None);
        };
        let docker_present = unit::installation(host, context.docker).is_some();
        Ok(
            interrupted::unfinished(host, &install.packages, docker_present)?.map(|what| {
                (
                    Change::new(
                        self.id(),
                        Action::Recover,
                        format!("finish the install an interrupted run left: {what}"),
                    ),
                    PackageOp::FinishInterrupted,
                )
            }),
        )
    }
}

/// Docker's repository first when the op adds it, then the packages.
fn install(host: &Host, op: &InstallOp) -> Result<()> {
    match op.install.family {
        Family::Debian => {
            let mut updated = false;
            if op.update_lists {
                apt(&["update"])?;
                updated = true;
            }
            if let Some(Repository::Apt { key_url, sources }) =
                op.install.repository.as_ref().filter(|_| op.add_repository)
            {
                // gpg checks the key's fingerprint before it is written (issue 18).
                apt_install(&["ca-certificates", "curl", "gpg"], &mut updated)?;
                let key = download(key_url)?;
                check_fingerprint(&key, DOCKER_KEY_FINGERPRINT)
                    .with_context(|| format!("refused Docker's signing key from `{key_url}`; `{APT_KEYRING}` was not written"))?;
                host.ensure_dir(&host_path("/etc/apt/keyrings"), 0o755)?;
                host.write_atomic(&host_path(APT_KEYRING), key.as_bytes(), 0o644)?;
                host.write_atomic(&host_path(APT_SOURCES), sources.as_bytes(), 0o644)?;
                // The new repository's lists are not there until apt reads them.
                apt(&["update"])?;
                updated = true;
            }
            apt_install(&op.packages, &mut updated)
        }
        Family::Fedora | Family::RedHat => {
            if let Some(Repository::Dnf { repo_url }) =
                op.install.repository.as_ref().filter(|_| op.add_repository)
            {
                let repo = download(repo_url)?;
                host.write_atomic(&host_path(DNF_REPO), repo.as_bytes(), 0o644)?;
            }
            let mut args = vec!["install", "-y"];
            args.extend(op.packages.iter().copied());
            progress("dnf", &args, &[])
        }
    }
}

/// dpkg's answer to "a configuration file you changed has a new version": keep yours, and take
/// the new one only where you never changed it. Without them dpkg asks.
const KEEP_CHANGED_CONFFILES: [&str; 4] = [
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
];

/// `apt-get ARGS`, never asking anything.
fn apt(args: &[&str]) -> Result<()> {
    progress("apt-get", args, &[("DEBIAN_FRONTEND", "noninteractive")])
}

/// `apt-get install` without prompts, keeping a configuration file the operator changed. Lists
/// that have gone stale (a mirror that dropped the version they name) fail the install; then
/// they are read again once and the install retried, unless this run read them already.
fn apt_install(packages: &[&str], updated: &mut bool) -> Result<()> {
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(KEEP_CHANGED_CONFFILES);
    args.extend(packages.iter().copied());
    match apt(&args) {
        Err(error) if !*updated => {
            tracing::warn!("{error:#}; reading the package lists again and retrying");
            apt(&["update"])?;
            *updated = true;
            apt(&args)
        }
        outcome => outcome,
    }
}

fn progress(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let command = CommandLine::new(program, args.iter().copied());
    tracing::info!("{}: running `{command}`", DockerPackage::id());
    exec::run_with_progress(&command, env, PACKAGE_TIMEOUT)?;
    Ok(())
}

/// The fingerprint Docker publishes for the key that signs its apt repository
/// (docs.docker.com, "Install Docker Engine on Debian"). A key fetched over HTTPS is only as
/// good as every CA and mirror on the way; this pin is what makes it Docker's.
const DOCKER_KEY_FINGERPRINT: &str = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88";

/// Refuses `key` (ASCII-armored OpenPGP) unless it holds exactly one primary key, whose
/// fingerprint is `pinned`: a second key in the file would be trusted for the repository too.
/// gpg reads it in a throwaway home, so root's keyrings are neither read nor changed. Without
/// gpg the key is refused: berth installed it just before (package `gpg`), and an unchecked
/// key is what the pin exists to prevent.
fn check_fingerprint(key: &str, pinned: &str) -> Result<()> {
    let home = tempfile::Builder::new()
        .prefix("berth-gpg-")
        .tempdir()
        .context("failed to create a temporary home for gpg")?;
    let mut file = tempfile::NamedTempFile::new_in(home.path())
        .context("failed to create a temporary file for the key")?;
    std::io::Write::write_all(&mut file, key.as_bytes())?;
    let home_text = home.path().display().to_string();
    let file_text = file.path().display().to_string();
    let command = CommandLine::new(
        "gpg",
        [
            "--batch",
            "--no-tty",
            "--homedir",
            &home_text,
            "--with-colons",
            "--show-keys",
            &file_text,
        ],
    );
    let output = exec::run(&command).map_err(|error| {
        if error.is_not_found() {
            anyhow::anyhow!(
                "`gpg` is not installed, and berth checks the key's fingerprint with it; install gpg (Debian: apt-get install gpg)"
            )
        } else {
            anyhow::Error::new(error).context("gpg could not read the key")
        }
    })?;
    match primary_fingerprints(&output.stdout).as_slice() {
        [only] if only.eq_ignore_ascii_case(pinned) => Ok(()),
        [only] => bail!("the key's fingerprint is {only}, not Docker's published {pinned}"),
        [] => bail!("it holds no OpenPGP public key"),
        several => bail!(
            "it holds {} keys ({}), not only Docker's {pinned}",
            several.len(),
            several.join(", ")
        ),
    }
}

/// The fingerprint of each primary key in `gpg --with-colons` output: the `fpr` record that
/// follows a `pub` record (those after `sub` are subkeys').
fn primary_fingerprints(colons: &str) -> Vec<String> {
    let mut fingerprints = Vec::new();
    let mut after_primary = false;
    for line in colons.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.first().copied() {
            Some("pub") => after_primary = true,
            Some("fpr") if after_primary => {
                fingerprints.push(fields.get(9).copied().unwrap_or_default().to_owned());
                after_primary = false;
            }
            Some("sub" | "uid" | "sig" | "rev") => after_primary = false,
            _ => {}
        }
    }
    fingerprints
}

/// A file Docker publishes (its signing key, its dnf repository), fetched with curl: the
/// install pages' own way, and curl checks the certificate against the host's CA bundle.
fn download(url: &str) -> Result<String> {
    let command = CommandLine::new("curl", ["-fsSL", "--max-time", "120", url]);
    let output = exec::run(&command).with_context(|| format!("failed to download `{url}`"))?;
    Ok(output.stdout)
}

#[cfg(test)]
mod tests;
