//! `berth doctor`: what a runner host needs, checked one by one, each failure with its fix.
//! Read-only: it looks at files under the root and asks the Docker daemon, and changes nothing.
//! A failed hard requirement makes the whole verdict unhealthy (exit 1); warnings do not.
//! Checks come in two stages: what the host needs before the first apply, and what apply made
//! (containers, registrations, the timer). Before berth has applied here, what apply creates is
//! "not created yet", not a failure.

mod dind;
mod systemd;

use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::{
    docker::unit,
    docker::{DaemonStatus, Docker},
    host::{Host, HostPath, host_path},
    output::run_report::LastRun,
    resource::container::spec::SYSBOX_RUNTIME,
    resource::{
        kernel_module::{KernelModule, KernelView, ModuleName},
        runner::{
            config, config_toml,
            gitlab::{GitLab, RunnerInfo},
            system_id,
        },
    },
    resource::{
        profile::{NO_RUNNER_DECLARED, Profile},
        runner::{helper_image::HELPER_FROM_GITLAB, section::CLEAR_TEXT_URL},
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    Ok,
    Warn,
    Fail,
    /// Not checked: something it needs is not there (and that has its own check).
    Skip,
}

/// When a check matters: before the first apply, or once apply has made what it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Stage {
    BeforeApply,
    AfterApply,
}

impl Stage {
    pub(crate) fn heading(self) -> &'static str {
        match self {
            Stage::BeforeApply => "Before the first apply: what the host needs",
            Stage::AfterApply => "After apply: what berth made",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Check {
    pub stage: Stage,
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &str, verdict: Verdict, detail: impl Into<String>) -> Self {
        Self {
            stage: Stage::BeforeApply,
            name: name.to_owned(),
            verdict,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Which Docker berth found: a package's (or Docker's own) unit, the snap, a bare dockerd, or
/// one that only answers. berth installs Docker only where none of them is there.
fn installation(host: &Host, docker: &Docker) -> Check {
    match unit::installation(host, docker) {
        Some(unit::Installation::Unit(path)) => Check::new(
            "docker install",
            Verdict::Ok,
            format!("docker.service at `{path}`"),
        ),
        Some(unit::Installation::Snap(path)) => Check::new(
            "docker install",
            Verdict::Ok,
            format!(
                "the snap (`{path}`): berth installs no second Docker; for daemon changes set `[docker] restart = [\"snap\", \"restart\", \"docker\"]`"
            ),
        ),
        Some(unit::Installation::Binary(path)) => Check::new(
            "docker install",
            Verdict::Ok,
            format!("dockerd at `{path}`, without a docker.service unit"),
        ),
        Some(unit::Installation::AnswersOnly) => Check::new(
            "docker install",
            Verdict::Ok,
            "a Docker that answers, with no docker.service unit and no dockerd where packages put it (a static binary, rootless, or started by hand): berth installs no second Docker",
        ),
        None => Check::new(
            "docker install",
            Verdict::Warn,
            "no Docker: no docker.service unit, no dockerd, and none answers",
        )
        .fix("`berth apply` installs it (`[docker] install`), or install it yourself"),
    }
}

/// overlay2 needs Linux 4.0 (RHEL/CentOS backported it to 3.10.0-514).
const OVERLAY2_MIN_KERNEL: (u32, u32) = (4, 0);
/// Below this, image pulls and builds start failing.
const MIN_FREE_BYTES: u64 = 2 << 30;
/// Below this (or 10 %), it is worth a warning.
const LOW_FREE_BYTES: u64 = 10 << 30;

/// Whether a `docker` CLI is on PATH, for the operator (the docker group's users reach the
/// daemon with it), looked up without running it; and what the daemon says of its version
/// (`GET /version`). berth itself asks the daemon through its API.
fn docker_cli(docker: &Docker, status: &DaemonStatus) -> Check {
    let version = match status {
        DaemonStatus::Running(_) => docker.engine().version().ok().map(|version| {
            format!(
                "; the daemon is Docker {} (API {})",
                version.version, version.api
            )
        }),
        _ => None,
    }
    .unwrap_or_default();
    match crate::host::exec::on_path("docker") {
        Some(path) => Check::new(
            "docker CLI",
            Verdict::Ok,
            format!("`{}` is installed{version}", path.display()),
        ),
        None => Check::new(
            "docker CLI",
            Verdict::Warn,
            format!("`docker` is not on PATH{version}"),
        )
        .fix("install it to look at containers yourself (Debian: apt-get install docker.io)"),
    }
}

pub(crate) fn run(host: &Host, docker: &Docker, profile: Option<&Profile>) -> Vec<Check> {
    let mut checks = vec![kernel_release(host), overlay(host)];
    let status = docker.status();
    checks.push(docker_cli(docker, &status));
    checks.push(match &status {
        DaemonStatus::Running(info) => Check::new("docker daemon", Verdict::Ok, format!("Docker {} answers", info.server_version)),
        DaemonStatus::PermissionDenied(reason) => Check::new("docker daemon", Verdict::Fail, reason.clone())
            .fix("run berth doctor as root (or a member of the docker group)"),
        DaemonStatus::Unreachable(reason) | DaemonStatus::NotAnswering(reason) => Check::new("docker daemon", Verdict::Fail, format!("does not answer: {reason}"))
            .fix("start it (`systemctl start docker`) and read `journalctl -u docker` if it does not stay up"),
    });
    checks.push(installation(host, docker));
    checks.push(match &status {
        DaemonStatus::Running(info) if info.storage_driver_is("overlay2") => {
            let store = if info.uses_containerd_store() { " (containerd image store)" } else { "" };
            Check::new("storage driver", Verdict::Ok, format!("{}{store}", info.driver))
        }
        DaemonStatus::Running(info) => Check::new(
            "storage driver",
            Verdict::Fail,
            format!("`{}`: builds and dind layers are slow and large without overlay2", info.driver),
        )
        .fix("set `storage-driver = \"overlay2\"` under [docker.daemon] and run `berth apply --allow-storage-driver-change` (images made with the old driver stay hidden)"),
        _ => Check::new("storage driver", Verdict::Skip, "the daemon does not answer"),
    });
    let data_root = match &status {
        DaemonStatus::Running(info) if !info.docker_root_dir.is_empty() => {
            HostPath::new(info.docker_root_dir.as_str()).ok()
        }
        _ => None,
    }
    .or_else(|| {
        daemon_json(host, profile).and_then(|config| {
            config
                .get("data-root")
                .and_then(Json::as_str)
                .and_then(|path| HostPath::new(path).ok())
        })
    })
    .unwrap_or_else(|| host_path("/var/lib/docker"));
    checks.push(free_space(host, &data_root));
    checks.push(cgroup(host));
    checks.push(flag_conflicts(host, profile));
    checks.push(systemd::restart_command(host, profile));
    checks.extend(systemd::host_gitlab_runner(host, profile));

    // berth has applied here once it left a run report; before that, what apply creates is
    // not there yet, and that is no failure.
    let applied = matches!(LastRun::read(host), Ok(Some(_)));
    let mut after = Vec::new();
    if let Some(profile) = profile {
        checks.extend(runner_declared(profile));
        checks.extend(clear_text_urls(profile));
        checks.extend(helper_images(profile));
        checks.extend(runtimes(&status, profile));
        after.extend(runner_config_permissions(host, profile));
        after.extend(dind::dind_from_runner(docker, &status, profile, applied));
        after.extend(runner_tokens(host, profile, applied));
        after.extend(token_expiry(host, profile, jiff::Timestamp::now()));
        after.extend(runner_directory_persists(host, profile));
    }
    after.push(systemd::timer(host, applied));
    for check in &mut after {
        check.stage = Stage::AfterApply;
    }
    checks.extend(after);
    checks
}

/// A runner container with no runner in its config.toml is a host that looks fine and takes
/// no jobs.
fn runner_declared(profile: &Profile) -> Option<Check> {
    profile
        .warnings
        .iter()
        .any(|warning| warning.message == NO_RUNNER_DECLARED)
        .then(|| {
            Check::new("runners", Verdict::Warn, NO_RUNNER_DECLARED).fix(
                "create the runner in GitLab, save its token to /etc/berth/tokens/NAME, then `berth init --url URL --runner NAME`",
            )
        })
}

/// A runner whose GitLab is reached over plain HTTP sends its tokens in clear (issue 18): the
/// profile's own warning, placed at its file, line and key.
fn clear_text_urls(profile: &Profile) -> Vec<Check> {
    profile
        .warnings
        .iter()
        .filter(|warning| warning.message == CLEAR_TEXT_URL)
        .map(|warning| {
            Check::new("runner url", Verdict::Warn, warning.to_string())
                .fix("use the GitLab's `https://` URL (and `tls_ca_file` for a private CA)")
        })
        .collect()
}

/// A docker runner whose helper image still comes from registry.gitlab.com on a host whose
/// images come from a mirror or a private registry (issue 22): the profile's own warning.
fn helper_images(profile: &Profile) -> Vec<Check> {
    profile
        .warnings
        .iter()
        .filter(|warning| warning.message.starts_with(HELPER_FROM_GITLAB))
        .map(|warning| {
            Check::new("helper image", Verdict::Warn, warning.to_string()).fix(
                "copy the helper image to your registry and set the runner's `helper_image` to it",
            )
        })
        .collect()
}

/// Each runtime a container names, against what the daemon has registered: without it the
/// container cannot be created (`dind-sysbox` on a host without sysbox).
fn runtimes(status: &DaemonStatus, profile: &Profile) -> Vec<Check> {
    let mut wanted: Vec<&str> = profile
        .containers
        .iter()
        .filter_map(|container| container.runtime.as_deref())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
        .into_iter()
        .map(|runtime| {
            let name = format!("runtime {runtime}");
            match status {
                DaemonStatus::Running(info) => match &info.runtimes {
                    Some(known) if known.contains_key(runtime) => {
                        Check::new(&name, Verdict::Ok, "registered with the Docker daemon")
                    }
                    Some(_) => {
                        let check = Check::new(&name, Verdict::Fail, "the Docker daemon has no such runtime (`docker info`, Runtimes): the containers that name it cannot be created");
                        if runtime == SYSBOX_RUNTIME {
                            check.fix("install sysbox (Nestybox's sysbox-ce package; its installer registers sysbox-runc in daemon.json and restarts Docker)")
                        } else {
                            check.fix("register it under `runtimes` in daemon.json, or install the package that does")
                        }
                    }
                    None => Check::new(&name, Verdict::Skip, "the daemon does not list its runtimes"),
                },
                _ => Check::new(&name, Verdict::Skip, "the daemon does not answer"),
            }
        })
        .collect()
}

/// What a check says of something apply creates and that is missing: before the first apply
/// it is not there yet (skip); after, it should be (fail).
fn not_created(name: &str, applied: bool, what: &str) -> Check {
    if applied {
        Check::new(name, Verdict::Fail, format!("{what} does not exist"))
            .fix("`berth apply` creates it; its output says what stopped it")
    } else {
        Check::new(
            name,
            Verdict::Skip,
            "not created yet (berth apply creates it)",
        )
    }
}

fn kernel_release(host: &Host) -> Check {
    let release = host
        .read_optional(&host_path("/proc/sys/kernel/osrelease"))
        .ok()
        .flatten()
        .map(|text| text.trim().to_owned())
        .or_else(|| sysinfo::System::kernel_version().ok());
    let Some(release) = release else {
        return Check::new("kernel", Verdict::Warn, "the kernel release is unknown");
    };
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse::<u32>().ok());
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if version >= OVERLAY2_MIN_KERNEL {
        Check::new("kernel", Verdict::Ok, format!("Linux {release}"))
    } else {
        Check::new(
            "kernel",
            Verdict::Fail,
            format!("Linux {release}: overlay2 needs 4.0 or newer"),
        )
        .fix("upgrade the kernel (RHEL/CentOS 7: 3.10.0-514 or newer has the backport)")
    }
}

fn overlay(host: &Host) -> Check {
    let module =
        KernelModule::new(ModuleName::try_from("overlay".to_owned()).expect("a valid name"));
    match module.observe_kernel(host) {
        Err(error) => Check::new("overlay", Verdict::Warn, format!("{error:#}")),
        Ok(KernelView::NotVisible) => Check::new("overlay", Verdict::Skip, "the running kernel is not visible under the root"),
        Ok(KernelView::NoModuleSupport { available: true }) => Check::new("overlay", Verdict::Ok, "built into the kernel"),
        Ok(KernelView::NoModuleSupport { available: false }) => {
            Check::new("overlay", Verdict::Fail, "this kernel cannot load modules and has no overlay built in")
                .fix("boot a kernel with CONFIG_OVERLAY_FS")
        }
        Ok(KernelView::Modular { loaded: true, .. }) => Check::new("overlay", Verdict::Ok, "loaded"),
        Ok(KernelView::Modular { loaded: false, .. }) => Check::new("overlay", Verdict::Fail, "the overlay module is not loaded")
            .fix("`berth apply` loads and persists it (kernel.modules = [\"overlay\"]), or `modprobe overlay`"),
    }
}

fn free_space(host: &Host, data_root: &HostPath) -> Check {
    // The data-root may not exist yet; what counts is the filesystem it will be on.
    let mut path = host.path(data_root);
    while !path.exists() {
        match path.parent() {
            Some(parent) => path = parent.to_owned(),
            None => break,
        }
    }
    let stats = match nix::sys::statvfs::statvfs(&path) {
        Ok(stats) => stats,
        Err(error) => {
            return Check::new(
                "free space",
                Verdict::Warn,
                format!("cannot read the free space of `{data_root}`: {error}"),
            );
        }
    };
    let fragment = stats.fragment_size() as u64;
    let free = stats.blocks_available() as u64 * fragment;
    let total = stats.blocks() as u64 * fragment;
    let percent = (free * 100).checked_div(total).unwrap_or(100);
    let detail = format!(
        "{} free of {} under {data_root} ({percent} %)",
        gib(free),
        gib(total)
    );
    if free < MIN_FREE_BYTES {
        Check::new("free space", Verdict::Fail, detail).fix("free space: `docker system prune` removes stopped containers, unused networks and dangling images")
    } else if free < LOW_FREE_BYTES || percent < 10 {
        Check::new("free space", Verdict::Warn, detail)
            .fix("`docker system prune` and the runner's cache cleanup keep it from running out")
    } else {
        Check::new("free space", Verdict::Ok, detail)
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn cgroup(host: &Host) -> Check {
    if host.exists(&host_path("/sys/fs/cgroup/cgroup.controllers")) {
        Check::new("cgroups", Verdict::Ok, "cgroup v2 (unified)")
    } else if host.exists(&host_path("/sys/fs/cgroup")) {
        Check::new("cgroups", Verdict::Warn, "cgroup v1 (legacy hierarchy)")
            .fix("boot with systemd.unified_cgroup_hierarchy=1; current Docker and systemd releases are built around cgroup v2")
    } else {
        Check::new(
            "cgroups",
            Verdict::Skip,
            "/sys/fs/cgroup is not visible under the root",
        )
    }
}

/// daemon.json as it is, else the profile's keys (what it will be).
fn daemon_json(host: &Host, profile: Option<&Profile>) -> Option<Map<String, Json>> {
    let path = profile.map_or_else(
        crate::resource::daemon::DockerSettings::default_config,
        |profile| profile.docker.config.clone(),
    );
    match host.read_optional(&path).ok().flatten() {
        Some(text) => match serde_json::from_str(&text) {
            Ok(Json::Object(object)) => Some(object),
            _ => None,
        },
        None => profile.map(|profile| profile.docker.daemon.clone()),
    }
}

fn flag_conflicts(host: &Host, profile: Option<&Profile>) -> Check {
    let service = match unit::find_docker_service(host) {
        Ok(Some(service)) => service,
        Ok(None) => {
            return Check::new(
                "daemon.json vs flags",
                Verdict::Skip,
                "no docker.service unit",
            );
        }
        Err(error) => {
            return Check::new("daemon.json vs flags", Verdict::Warn, format!("{error:#}"));
        }
    };
    let mut keys: Vec<String> = daemon_json(host, None)
        .unwrap_or_default()
        .keys()
        .cloned()
        .collect();
    if let Some(profile) = profile {
        keys.extend(
            profile
                .docker
                .daemon
                .keys()
                .filter(|key| !keys.contains(key))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    let conflicts = service.conflicts(&keys);
    if conflicts.is_empty() {
        return Check::new(
            "daemon.json vs flags",
            Verdict::Ok,
            format!("no key is also a flag in `{}`", service.unit),
        );
    }
    let listed: Vec<_> = conflicts
        .iter()
        .map(|conflict| format!("`{}` (flag `{}`)", conflict.key, conflict.flag))
        .collect();
    Check::new(
        "daemon.json vs flags",
        Verdict::Fail,
        format!("set both in daemon.json (or the profile) and on dockerd's command line in `{}`: {}; dockerd refuses to start", service.unit, listed.join(", ")),
    )
    .fix("remove the key from daemon.json and the profile, or the flag from the unit (a drop-in with an empty `ExecStart=` then a new one)")
}

/// config.toml holds the runners' tokens: nobody but root should read it, as gitlab-runner
/// itself writes it (0600 in a 0700 directory).
fn runner_config_permissions(host: &Host, profile: &Profile) -> Option<Check> {
    if !profile.runner.is_declared() {
        return None;
    }
    let config = &profile.runner.config;
    let name = "runner config";
    let Some(directory) = config.parent() else {
        return Some(Check::new(
            name,
            Verdict::Warn,
            format!("`{config}` has no directory"),
        ));
    };
    let mode = |path: &HostPath| {
        host.mode(path)
            .ok()
            .flatten()
            .map(|crate::host::FileMode(mode)| mode)
    };
    let Some(directory_mode) = mode(&directory) else {
        return Some(Check::new(
            name,
            Verdict::Skip,
            format!("`{directory}` does not exist yet; `berth apply` creates it"),
        ));
    };
    match mode(config) {
        Some(file_mode) if file_mode & 0o077 != 0 => Some(
            Check::new(
                name,
                Verdict::Fail,
                format!(
                    "`{config}` is mode {file_mode:04o}: others can read the runner tokens in it"
                ),
            )
            .fix(format!(
                "chmod 0600 {config} (`berth apply` also corrects it)"
            )),
        ),
        _ if directory_mode & 0o077 != 0 => Some(
            Check::new(
                name,
                Verdict::Warn,
                format!("`{directory}` is mode {directory_mode:04o}; gitlab-runner keeps it 0700"),
            )
            .fix(format!("chmod 0700 {directory}")),
        ),
        Some(file_mode) => Some(Check::new(
            name,
            Verdict::Ok,
            format!("`{config}` {file_mode:04o} in a {directory_mode:04o} directory"),
        )),
        None => Some(Check::new(
            name,
            Verdict::Skip,
            format!("`{config}` does not exist yet; `berth apply` writes it"),
        )),
    }
}

/// End to end: each runner's token, as config.toml holds it now (gitlab-runner rotates it),
/// still verifies with GitLab, as `gitlab-runner verify` checks it.
fn runner_tokens(host: &Host, profile: &Profile, applied: bool) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = &profile.runner.config;
    let document = match config::read(host, config) {
        Ok(read) => read.map(|(_, document)| document),
        Err(error) => {
            if !profile.runner.runners.is_empty() {
                checks.push(Check::new(
                    "runner tokens",
                    Verdict::Fail,
                    format!("{error:#}"),
                ));
            }
            return checks;
        }
    };
    let system_id = system_id::read(host, config).ok().flatten();
    for spec in &profile.runner.runners {
        let name = format!("runner {}", spec.name);
        let token = document.as_ref().and_then(|document| {
            config_toml::find(document, &spec.name)
                .and_then(|index| config_toml::entry_token(document, index))
        });
        let (Some(token), Some(system_id)) = (token, system_id.as_deref()) else {
            if !applied {
                checks.push(Check::new(
                    &name,
                    Verdict::Skip,
                    "not registered yet (berth apply registers it)",
                ));
                continue;
            }
            checks.push(
                Check::new(
                    &name,
                    Verdict::Fail,
                    format!("not registered: no token for it in `{config}`"),
                )
                .fix("`berth apply` registers it"),
            );
            continue;
        };
        let verified = GitLab::new(host, &spec.url, spec.tls_ca_file.as_ref())
            .and_then(|gitlab| gitlab.verify(&token, system_id, &RunnerInfo::of(spec)));
        checks.push(match verified {
            Ok(registration) => Check::new(&name, Verdict::Ok, format!("its token verifies with {} (runner {})", spec.url, registration.id)),
            Err(error) => Check::new(&name, Verdict::Fail, format!("{error:#}"))
                .fix("put a valid token in its token file and run `berth apply`; a runner whose token was revoked is created again in GitLab"),
        });
    }
    checks
}

/// How early doctor warns that a runner's token expires.
const TOKEN_EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// Each registered runner's `token_expires_at`, as GitLab returned it and gitlab-runner keeps
/// it in config.toml: a warning within a week, a failure once past, since the runner then
/// takes no jobs.
fn token_expiry(host: &Host, profile: &Profile, now: jiff::Timestamp) -> Vec<Check> {
    let Ok(Some((_, document))) = config::read(host, &profile.runner.config) else {
        return Vec::new();
    };
    profile
        .runner
        .runners
        .iter()
        .filter_map(|spec| {
            let index = config_toml::find(&document, &spec.name)?;
            Some(expiry_check(
                &spec.name,
                config_toml::entry_expiry(&document, index),
                now,
            ))
        })
        .collect()
}

fn expiry_check(runner: &str, expires_at: Option<jiff::Timestamp>, now: jiff::Timestamp) -> Check {
    let name = format!("runner {runner} token expiry");
    let Some(at) = expires_at else {
        return Check::new(&name, Verdict::Ok, "its token does not expire");
    };
    let left = at.duration_since(now).as_secs();
    let renew = "create a new runner authentication token in GitLab (the runner's page: Reset token, or `POST /runners/reset_authentication_token`), put it in the runner's token file and run `berth apply`; gitlab-runner renews a token itself only while it is still valid";
    if left <= 0 {
        Check::new(
            &name,
            Verdict::Fail,
            format!(
                "its token expired at {at} ({}): GitLab refuses it, the runner takes no jobs",
                crate::output::time::ago(-left)
            ),
        )
        .fix(renew)
    } else if left.unsigned_abs() <= TOKEN_EXPIRY_WARNING.as_secs() {
        Check::new(
            &name,
            Verdict::Warn,
            format!(
                "its token expires at {at}, in {}",
                crate::output::time::span(left)
            ),
        )
        .fix(renew)
    } else {
        Check::new(&name, Verdict::Ok, format!("its token expires at {at}"))
    }
}

/// config.toml's directory on tmpfs loses `.runner_system_id` at every boot: the runner comes
/// back as a new manager in GitLab each time (and GitLab limits how many a runner may have).
fn runner_directory_persists(host: &Host, profile: &Profile) -> Option<Check> {
    if profile.runner.runners.is_empty() {
        return None;
    }
    let directory = profile.runner.config.parent()?;
    let name = "runner directory";
    Some(match on_tmpfs(&host.path(&directory)) {
        Some(true) => Check::new(
            name,
            Verdict::Warn,
            format!("`{directory}` is on tmpfs: `.runner_system_id` is lost at every boot, and each boot makes the runner a new manager in GitLab"),
        )
        .fix("keep config.toml's directory on persistent storage (a disk-backed volume or bind mount)"),
        Some(false) => Check::new(name, Verdict::Ok, format!("`{directory}` is on persistent storage")),
        None => Check::new(name, Verdict::Skip, format!("the filesystem of `{directory}` cannot be looked at")),
    })
}

/// Whether `path` (or, when it does not exist yet, the nearest directory above it that does)
/// is on tmpfs; `None` when nothing of it can be looked at.
fn on_tmpfs(path: &std::path::Path) -> Option<bool> {
    let existing = path.ancestors().find(|path| path.exists())?;
    let stats = nix::sys::statfs::statfs(existing).ok()?;
    let kind = stats.filesystem_type();
    Some(kind == nix::sys::statfs::TMPFS_MAGIC)
}

pub(crate) fn healthy(checks: &[Check]) -> bool {
    checks.iter().all(|check| check.verdict != Verdict::Fail)
}

#[cfg(test)]
mod tests;
