//! Resolves what the user typed, `/etc/berth/berth.toml` and the defaults into the settings of
//! one run, before anything else happens.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::{
    cli::{ApplyCommand, Cli, Command},
    fleet::{DEFAULT_GROUP, Fleet},
    host::{Host, HostPath, host_path, machine_id},
    output::confirm::Consent,
    profile::source::{KeyPath, TomlFile},
    profile::{DEFAULT_PROFILE, ProfileRef},
    resource::Options,
    saved_plan::SavedPlan,
    source::{Source, SourceSection},
};

/// The app ID of the FleetLock client id made from the machine id (made once with
/// `systemd-id128 new`), as Zincati has its own.
const FLEET_APP_ID: [u8; 16] = [
    0x2c, 0x8f, 0x61, 0xd4, 0x0b, 0x97, 0x4e, 0x3a, 0xb5, 0x18, 0xe2, 0x7d, 0x46, 0xc9, 0x03, 0xfa,
];

/// The host's own berth settings.
pub(crate) const HOST_CONFIG: &str = "/etc/berth/berth.toml";

/// `/etc/berth/berth.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BerthToml {
    /// The profiles this host converges to when `-p` is not given, in layering order.
    pub profiles: Option<Vec<String>>,
    /// Where apply writes node_exporter textfile metrics.
    pub metrics_file: Option<HostPath>,
    /// `[fleet]`: take a FleetLock slot before disruptive steps.
    fleet: Option<FleetSection>,
    /// `[fleet]`, checked and resolved when berth.toml was read.
    #[serde(skip)]
    resolved_fleet: Option<Fleet>,
    /// `[source]`: the profiles come from a signed git repository.
    source: Option<SourceSection>,
    #[serde(skip)]
    resolved_source: Option<Source>,
    /// `profiles`, checked and resolved from berth.toml's directory when it was read.
    #[serde(skip)]
    profile_refs: Vec<ProfileRef>,
}

impl BerthToml {
    /// berth.toml under the root; all defaults when it does not exist.
    pub(crate) fn read(host: &Host) -> Result<Self> {
        let path = host_path(HOST_CONFIG);
        // berth.toml names the profiles, and so what berth runs as root: it must be root's.
        let Some((text, _)) = host.read_trusted(&path)? else {
            return Ok(Self::default());
        };
        let file = TomlFile::new(path.to_string(), text);
        let (mut config, _) = file
            .parse::<Self>()
            // A failed parse names at least one problem; the first is enough for berth.toml.
            .map_err(|mut problems| problems.remove(0))
            .with_context(|| format!("invalid berth settings `{path}`"))?;
        let directory = path.parent().expect("berth.toml's path has a directory");
        let profiles_key = KeyPath::parse_dotted("profiles");
        config.profile_refs = config
            .profiles
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, text)| {
                ProfileRef::parse_host(text, &directory)
                    .map_err(|message| file.error_at(&profiles_key.index(index), message))
            })
            .collect::<Result<_, _>>()
            .with_context(|| format!("invalid berth settings `{path}`"))?;
        if let Some(section) = &config.source {
            if config.profiles.is_some() {
                return Err(file.error_at(
                    &profiles_key,
                    "`profiles` and `[source]` both name this host's profiles: list the layers as `[source] profiles`",
                ))
                .with_context(|| format!("invalid berth settings `{path}`"));
            }
            config.resolved_source = Some(
                section
                    .resolve(&file)
                    .with_context(|| format!("invalid berth settings `{path}`"))?,
            );
        }
        if let Some(section) = &config.fleet {
            config.resolved_fleet = Some(
                section
                    .resolve(host, &file)
                    .with_context(|| format!("invalid berth settings `{path}`"))?,
            );
        }
        Ok(config)
    }

    /// `[fleet]`, resolved; `None` when berth.toml has no `[fleet]`.
    pub(crate) fn fleet(&self) -> Option<Fleet> {
        self.resolved_fleet.clone()
    }

    /// The profiles berth.toml names, in layering order.
    pub(crate) fn profile_refs(&self) -> Vec<ProfileRef> {
        self.profile_refs.clone()
    }

    /// `[source]`, resolved; `None` when berth.toml has none.
    pub(crate) fn source(&self) -> Option<Source> {
        self.resolved_source.clone()
    }
}

/// `[fleet]` as written: the FleetLock server, the group (default `default`) and the client id
/// (default the machine id).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetSection {
    lock: Option<String>,
    group: Option<String>,
    id: Option<String>,
}

impl FleetSection {
    fn resolve(
        &self,
        host: &Host,
        file: &TomlFile,
    ) -> Result<Fleet, crate::profile::source::LocatedError> {
        let at = |key: &str, message: &str| file.error_at(&KeyPath::parse_dotted(key), message);
        let lock = match self.lock.as_deref().map(str::trim) {
            Some(lock) if lock.starts_with("http://") || lock.starts_with("https://") => {
                lock.trim_end_matches('/').to_owned()
            }
            Some(_) => {
                return Err(at(
                    "fleet.lock",
                    "must be the FleetLock server's http:// or https:// URL",
                ));
            }
            None => {
                return Err(at(
                    "fleet",
                    "`[fleet]` needs `lock`, the FleetLock server's URL",
                ));
            }
        };
        let group = match self.group.as_deref() {
            None => DEFAULT_GROUP.to_owned(),
            Some(group) if valid_word(group) => group.to_owned(),
            Some(_) => {
                return Err(at(
                    "fleet.group",
                    "must be a FleetLock group: letters, digits, `-`, `_` and `.`",
                ));
            }
        };
        let id = match self.id.as_deref() {
            Some(id) if valid_word(id) => id.to_owned(),
            Some(_) => {
                return Err(at(
                    "fleet.id",
                    "must be a FleetLock client id: letters, digits, `-`, `_` and `.`",
                ));
            }
            None => {
                // As Zincati's: the machine id's app-specific ID names the host to the server
                // (machine-id(5): the id itself is never published).
                let machine_id = machine_id::read(host)
                    .ok()
                    .flatten()
                    .map(|id| machine_id::app_specific(&id, &FLEET_APP_ID))
                    .filter(|id| valid_word(id));
                match machine_id {
                    Some(id) => id,
                    None => {
                        return Err(at(
                            "fleet",
                            "`[fleet]` has no `id` and `/etc/machine-id` holds none: set `id`",
                        ));
                    }
                }
            }
        };
        Ok(Fleet { lock, group, id })
    }
}

/// A group or client id: it goes into the server's keys and berth's logs, so nothing that
/// could break either.
fn valid_word(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[derive(Debug)]
pub(crate) struct Settings {
    pub host: Host,
    pub profiles: Vec<ProfileRef>,
    pub options: Options,
    /// The profiles `/etc/berth/berth.toml` names, whatever `-p` says (`berth profiles` marks
    /// them).
    pub selected: Vec<ProfileRef>,
    /// apply only: where to write metrics, if anywhere.
    pub metrics_file: Option<HostPath>,
    /// apply only: how long to wait for another run's lock.
    pub lock_timeout: Duration,
    /// plan only: where to save the plan (`--out`).
    pub plan_out: Option<PathBuf>,
    /// apply only: the saved plan to carry out, and where it was read from.
    pub saved_plan: Option<(PathBuf, SavedPlan)>,
    /// apply only: whether to ask before what cannot be taken back (`--yes` says not to;
    /// `watch` never asks).
    pub consent: Consent,
    /// `[fleet]` in berth.toml: the FleetLock slot disruptive steps wait for.
    pub fleet: Option<Fleet>,
    /// `[source]` in berth.toml, when the profiles come from it (no `-p`, no saved plan):
    /// plan and apply fetch and verify, and converge to the layers it gives.
    pub source: Option<Source>,
    /// apply only: `--allow-rewind`.
    pub allow_rewind: bool,
}

impl Settings {
    pub(crate) fn resolve(cli: &Cli) -> Result<Self> {
        let root = absolute(&cli.root)?;
        if !root.is_dir() {
            bail!("the root `{}` is not a directory", cli.root.display());
        }
        let host = Host::new(root);
        let host_config = BerthToml::read(&host)?;
        refuse_an_unconfigured_timer_run(cli, &host_config)?;
        let selected = host_config.profile_refs();
        let fleet = host_config.fleet();
        let source = source_for(cli, &host_config);
        let saved_plan = match &cli.command {
            Command::Apply(ApplyCommand {
                plan: Some(path),
                apply,
                ..
            }) => {
                if !cli.profiles.is_empty()
                    || apply.converge.adopt
                    || apply.converge.allow_storage_driver_change
                {
                    bail!(
                        "a saved plan names its own profiles and flags: drop -p, --adopt and --allow-storage-driver-change, or give them to `berth plan --out`"
                    );
                }
                Some((path.clone(), SavedPlan::read(path)?))
            }
            _ => None,
        };
        let profiles = if let Some((_, plan)) = &saved_plan {
            plan.profiles.clone()
        } else if let Some(source) = &source {
            // The commit applied last; plan and apply fetch and take the layers anew.
            crate::source::applied_profiles(&host, source)
                .inspect_err(|error| tracing::debug!("{error:#}"))
                .ok()
                .flatten()
                .unwrap_or_default()
        } else if !cli.profiles.is_empty() {
            cli.profiles
                .iter()
                .map(|text| ProfileRef::parse_cli(text))
                .collect()
        } else {
            match selected.as_slice() {
                [] => vec![ProfileRef::Name(DEFAULT_PROFILE.to_owned())],
                selected => selected.to_vec(),
            }
        };
        let options = options(cli, saved_plan.as_ref().map(|(_, plan)| plan));
        let (plan_out, consent) = match &cli.command {
            Command::Plan(args) => (args.out.clone(), Consent::Given),
            Command::Apply(args) if args.yes => (None, Consent::Given),
            Command::Apply(_) => (None, Consent::Ask),
            // Nobody watches `berth watch` converge: it never asks.
            _ => (None, Consent::Given),
        };
        // A saved plan is applied from wherever the operator is: its files, absolute.
        let profiles = if plan_out.is_some() {
            profiles
                .into_iter()
                .map(|profile| match profile {
                    ProfileRef::LocalFile(path) => absolute(&path).map(ProfileRef::LocalFile),
                    other => Ok(other),
                })
                .collect::<Result<_>>()?
        } else {
            profiles
        };
        let apply = match &cli.command {
            Command::Apply(args) => Some(&args.apply),
            Command::Watch(args) => Some(&args.apply),
            _ => None,
        };
        let (metrics_file, lock_timeout) = match apply {
            Some(args) => {
                let metrics_file = match &args.metrics_file {
                    Some(path) => Some(
                        HostPath::new(path.as_str())
                            .map_err(anyhow::Error::msg)
                            .context("invalid --metrics-file")?,
                    ),
                    None => host_config.metrics_file,
                };
                (metrics_file, Duration::from_secs(args.lock_timeout))
            }
            None => (None, destroy_lock_timeout(&cli.command)),
        };
        Ok(Self {
            host,
            profiles,
            options,
            selected,
            metrics_file,
            lock_timeout,
            plan_out,
            saved_plan,
            consent,
            fleet,
            source,
            allow_rewind: matches!(&cli.command, Command::Apply(args) if args.allow_rewind),
        })
    }
}

/// `[source]`, for the commands that converge to it or read its profiles, when `-p` does not
/// name others and no saved plan names its own.
fn source_for(cli: &Cli, host_config: &BerthToml) -> Option<Source> {
    let reads_profiles = matches!(
        &cli.command,
        Command::Apply(ApplyCommand { plan: None, .. })
            | Command::Plan(_)
            | Command::Watch(_)
            | Command::Validate(_)
            | Command::Show(_)
            | Command::Doctor
            | Command::Status
    );
    host_config
        .source()
        .filter(|_| reads_profiles && cli.profiles.is_empty())
}

/// A run systemd started (`--from-timer`: `berth apply` in berth.service, `berth watch` in
/// berth-watch.service) converges only a host whose berth.toml names its profiles: an operator
/// who installed berth and enabled a unit before choosing gets a refusal in the journal, not the
/// default profile applied (issue 13).
fn refuse_an_unconfigured_timer_run(cli: &Cli, host_config: &BerthToml) -> Result<()> {
    if started_by_a_unit(cli)
        && cli.profiles.is_empty()
        && host_config.profiles.as_ref().is_none_or(Vec::is_empty)
        && host_config.source.is_none()
    {
        bail!(
            "berth's units converge only a host whose `{HOST_CONFIG}` names its profiles, and it names none: write the site profile (or run `berth init`), list it as `profiles = [...]` in `{HOST_CONFIG}`, review `berth plan`, then `sudo berth apply`"
        );
    }
    Ok(())
}

/// What the command line (or the saved plan being applied) lets apply do.
fn options(cli: &Cli, saved_plan: Option<&SavedPlan>) -> Options {
    let converge = match &cli.command {
        Command::Plan(args) => Some(&args.converge),
        Command::Apply(args) => Some(&args.apply.converge),
        Command::Watch(args) => Some(&args.apply.converge),
        _ => None,
    };
    let chosen = match saved_plan {
        Some(plan) => plan.options(),
        None => converge.map_or_else(Options::default, |args| Options {
            allow_storage_driver_change: args.allow_storage_driver_change,
            adopt: args.adopt,
            keep_orphans: args.keep_orphans,
            sandboxed: false,
        }),
    };
    Options {
        sandboxed: started_by_a_unit(cli),
        ..chosen
    }
}

/// `--from-timer`: berth.service's apply or berth-watch.service's watch, under their sandbox.
fn started_by_a_unit(cli: &Cli) -> bool {
    match &cli.command {
        Command::Apply(args) => args.apply.from_timer,
        Command::Watch(args) => args.apply.from_timer,
        _ => false,
    }
}

/// `destroy --lock-timeout`; no other command without apply's flags waits for the lock.
fn destroy_lock_timeout(command: &Command) -> Duration {
    match command {
        Command::Destroy(args) => Duration::from_secs(args.lock_timeout),
        _ => Duration::ZERO,
    }
}

fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_owned())
    } else {
        Ok(std::env::current_dir()
            .context("failed to read the current directory")?
            .join(path))
    }
}

/// Changing the machine's own /etc and Docker takes root; a test root does not.
pub(crate) fn require_root(settings: &Settings, command: &str) -> Result<()> {
    if settings.host.is_machine_root() && !nix::unistd::geteuid().is_root() {
        bail!(
            "berth {command} changes /etc and the Docker daemon and must run as root (try `sudo berth {command}`); `berth plan` works as any user"
        );
    }
    Ok(())
}
