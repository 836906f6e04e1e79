//! doctor's checks of how berth sits in systemd: whether the command that restarts Docker can
//! work here, what state berth.timer is in, and whether a gitlab-runner installed on the host
//! itself would run beside the container. Read-only, like the rest of doctor.

use std::{path::Path, time::Duration};

use super::{Check, Verdict};
use crate::{
    docker::unit,
    host::{
        Host,
        exec::{self, CommandLine},
        host_path,
    },
    resource::profile::Profile,
    settings::{BerthToml, HOST_CONFIG},
};

/// How long `systemctl show` may take.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether systemd runs the host: it creates /run/systemd/system at boot (sd_booted(3)).
fn systemd_running(host: &Host) -> bool {
    host.exists(&host_path("/run/systemd/system"))
}

/// Whether `program` can be started: a path that is a file, or a name found on PATH.
fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// `[docker] restart` can work: the default `systemctl restart docker` needs systemctl and a
/// running systemd (a container or a SysV host has neither); an override needs its program.
pub(super) fn restart_command(host: &Host, profile: Option<&Profile>) -> Check {
    let name = "docker restart";
    let default = CommandLine::new("systemctl", ["restart", "docker"]);
    let command = profile.map_or(&default, |profile| &profile.docker.restart);
    let uses_systemctl = Path::new(&command.program)
        .file_name()
        .is_some_and(|file| file == "systemctl");
    if !on_path(&command.program) {
        return Check::new(
            name,
            Verdict::Fail,
            format!("`{command}` cannot run: `{}` is not installed", command.program),
        )
        .fix("set `[docker] restart` (and `reload`) to the command that restarts Docker on this host");
    }
    if uses_systemctl && !systemd_running(host) {
        return Check::new(
            name,
            Verdict::Fail,
            format!("`{command}` cannot work: systemd is not running here (no /run/systemd/system)"),
        )
        .fix("set `[docker] restart` and `reload` to what restarts Docker here, e.g. [\"service\", \"docker\", \"restart\"]");
    }
    Check::new(name, Verdict::Ok, format!("`{command}`"))
}

/// What `systemctl show berth.timer` says, key by key.
fn timer_properties() -> Option<Vec<(String, String)>> {
    let command = CommandLine::new(
        "systemctl",
        [
            "show",
            "berth.timer",
            "--property=LoadState,UnitFileState,ActiveState,LastTriggerUSec",
        ],
    );
    let output = exec::run_with_timeout(&command, SYSTEMCTL_TIMEOUT).ok()?;
    Some(
        output
            .stdout
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.trim().to_owned()))
            .collect(),
    )
}

/// berth.timer: installed, enabled, active, and when it last fired; whether it can converge
/// anything (berth.toml names the profiles). Before the first apply, a timer not enabled yet
/// is as it should be.
pub(super) fn timer(host: &Host, applied: bool) -> Check {
    let name = "berth.timer";
    if !systemd_running(host) || !on_path("systemctl") {
        return Check::new(name, Verdict::Skip, "systemd is not running here");
    }
    let Some(properties) = timer_properties() else {
        return Check::new(
            name,
            Verdict::Warn,
            "`systemctl show berth.timer` did not answer",
        );
    };
    let property = |key: &str| {
        properties
            .iter()
            .find(|(name, _)| name == key)
            .map_or("", |(_, value)| value.as_str())
    };
    if property("LoadState") == "not-found" {
        return Check::new(name, Verdict::Warn, "not installed: nothing corrects drift")
            .fix("install berth with install.sh or its Debian package, which install the timer");
    }
    let enable = "`systemctl enable --now berth.timer` once `berth plan` looks right";
    if property("UnitFileState") != "enabled" {
        let state = match property("UnitFileState") {
            "" => "not enabled".to_owned(),
            state => format!("not enabled ({state})"),
        };
        return if applied {
            Check::new(
                name,
                Verdict::Warn,
                format!("{state}: drift is corrected only when someone runs `berth apply`"),
            )
            .fix(enable)
        } else {
            Check::new(name, Verdict::Skip, format!("{state} yet")).fix(enable)
        };
    }
    if property("ActiveState") != "active" {
        return Check::new(
            name,
            Verdict::Warn,
            format!("enabled but {}", property("ActiveState")),
        )
        .fix("systemctl start berth.timer");
    }
    let names_profiles = BerthToml::read(host)
        .ok()
        .and_then(|config| config.profiles)
        .is_some_and(|profiles| !profiles.is_empty());
    if !names_profiles {
        return Check::new(
            name,
            Verdict::Warn,
            format!("enabled, but `{HOST_CONFIG}` names no profiles: every timer run refuses"),
        )
        .fix(format!(
            "list the host's profiles as `profiles = [...]` in {HOST_CONFIG}"
        ));
    }
    let last = match property("LastTriggerUSec") {
        "" | "n/a" | "0" => "not triggered yet".to_owned(),
        at => format!("last triggered {at}"),
    };
    Check::new(name, Verdict::Ok, format!("enabled, active, {last}"))
}

/// A gitlab-runner installed on the host (the Debian/RPM package's `gitlab-runner.service`)
/// would run beside the container, with the same runners if it reads the same config.
pub(super) fn host_gitlab_runner(host: &Host, profile: Option<&Profile>) -> Option<Check> {
    let declares_runner =
        profile.is_some_and(|profile| profile.relations.runner_container.is_some());
    if !declares_runner {
        return None;
    }
    let name = "host gitlab-runner";
    let unit = match unit::find_unit(host, "gitlab-runner.service") {
        Ok(unit) => unit,
        Err(error) => return Some(Check::new(name, Verdict::Warn, format!("{error:#}"))),
    };
    let Some(unit) = unit else {
        return Some(Check::new(
            name,
            Verdict::Ok,
            "no gitlab-runner.service on the host: only the container runs gitlab-runner",
        ));
    };
    let enabled = host
        .list_dir(&host_path("/etc/systemd/system/multi-user.target.wants"))
        .unwrap_or_default()
        .iter()
        .any(|name| name == "gitlab-runner.service");
    let state = if enabled { "enabled" } else { "not enabled" };
    Some(
        Check::new(
            name,
            Verdict::Warn,
            format!("`{unit}` is installed ({state}): a gitlab-runner on the host would run beside the container, picking up jobs of its own"),
        )
        .fix("`systemctl disable --now gitlab-runner` (and remove the package once the container took over)"),
    )
}
