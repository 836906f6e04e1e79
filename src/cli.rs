//! The command line exactly as the user typed it (clap derive). Nothing here reads files or
//! applies defaults from the host: that is `settings`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// What `berth --version` prints after the name: the release, and the commit and date it was
/// built from (`unknown` in a build without git, from a source tarball).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("BERTH_COMMIT"),
    " ",
    env!("BERTH_COMMIT_DATE"),
    ")"
);

/// Converge a GitLab CI runner host (kernel modules, Docker daemon, containers, runner) to
/// declarative TOML profiles.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version = VERSION,
    about,
    max_term_width = 100,
    after_help = "Exit codes: 0 success (plan: in sync); 2 plan only: changes pending, all of which apply \
would make; 1 anything else: an error, a plan with a change apply would refuse, a command line \
berth cannot parse, an apply that was declined or whose saved plan no longer matches the host; \
75 apply and destroy: the disruptive steps wait for a fleet slot ([fleet] in berth.toml); apply \
converged the rest, and the next run carries them out."
)]
pub struct Cli {
    /// Profile to converge to, by name (/etc/berth/profiles/NAME.toml, else embedded) or path;
    /// repeat to layer: later profiles merge over earlier ones [default: the `profiles` in
    /// /etc/berth/berth.toml, else the embedded `dind`]
    #[arg(short, long = "profile", value_name = "NAME|PATH", global = true)]
    pub profiles: Vec<String>,

    /// Manage the files under DIR instead of the machine's own: every host path berth reads or
    /// writes (/etc, /proc, /sys, /var/lib, ...) resolves under it
    #[arg(long, value_name = "DIR", default_value = "/", global = true)]
    pub root: PathBuf,

    /// Print one JSON document on stdout instead of text
    #[arg(long, global = true)]
    pub json: bool,

    /// When to colour output; `auto` means stdout is a terminal and NO_COLOR is unset
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,

    /// Log less (repeat for only errors)
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,

    /// Log more (repeat for trace); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change, changing nothing. Exit 0: in sync; 2: changes pending;
    /// 1: error, or a change apply would refuse
    Plan(PlanArgs),
    /// Converge the host to the profiles, or carry out a plan saved by `plan --out`. On a
    /// terminal, asks before it removes, replaces, unregisters or restarts Docker. Exit 0:
    /// converged (with [source]: also when the server could not be reached, to the last
    /// verified commit, with a warning); 1: something failed, the question was declined, the
    /// saved plan is stale, or [source]'s ref is refused (the host stays on its last verified
    /// commit); 75: the disruptive steps wait for a fleet slot, the rest converged
    Apply(ApplyCommand),
    /// Converge, then again on every drift of what berth owns (Docker events, file changes),
    /// until SIGTERM. Exit 0: stopped by a signal; 1: could not start
    Watch(WatchArgs),
    /// Check the profiles without looking at the host; with --source, what a host would get
    /// from a checkout of the profile repository. Exit 0: valid; 1: invalid
    Validate(CheckoutArgs),
    /// Show what the last apply did and how long ago. Exit 0: it converged; 1: it failed, or
    /// berth has not run here yet
    Status,
    /// Check what a runner host needs, with a fix for each problem. Exit 0: healthy; 1: a hard
    /// requirement fails
    Doctor,
    /// Write /etc/berth/profiles/site.toml (one runner, its token read from
    /// /etc/berth/tokens/NAME) and /etc/berth/berth.toml for a topology; never overwrites a file.
    /// Exit 0: written; 1: a file is in the way, nothing changed
    Init(InitArgs),
    /// Print the merged profiles as TOML, each value with the layer it came from (secrets
    /// masked); with --source, those a host would get from a checkout of the profile
    /// repository. Exit 0: shown; 1: the profiles are invalid
    Show(CheckoutArgs),
    /// List the embedded and installed profiles with their descriptions, marking those
    /// /etc/berth/berth.toml selects. Exit 0
    Profiles,
    /// Stop apply and watch from changing anything until `berth resume`; `plan` still works.
    /// Exit 0: paused
    Pause(PauseArgs),
    /// End a pause: apply converges again. Exit 0
    Resume,
    /// Print the shell completion script for SHELL on stdout (e.g. `berth completions bash >
    /// /usr/share/bash-completion/completions/berth`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout; install.sh and the Debian package install it as
    /// berth(1)
    #[command(hide = true)]
    Man,
    /// Take down what berth made here: drain and remove its containers and networks,
    /// unregister its runners, disable its timer; volumes and files stay unless --purge. Asks
    /// first. Exit 0: nothing left to remove, or removed; 1: something failed or not confirmed;
    /// 75: waits for a fleet slot, nothing changed
    Destroy(DestroyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DestroyArgs {
    /// Go ahead without asking (for scripts; without a terminal berth refuses otherwise)
    #[arg(long)]
    pub yes: bool,

    /// Also remove berth's volumes (their data with them) and the modules-load.d files it wrote
    #[arg(long)]
    pub purge: bool,

    /// Seconds to wait for another berth run to finish before giving up
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub lock_timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct PauseArgs {
    /// Why, for whoever finds the host paused (shown by apply, plan and status)
    #[arg(value_name = "REASON")]
    pub reason: String,
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// The embedded profile the host's containers come from
    #[arg(long, value_enum, default_value_t = Topology::Dind)]
    pub topology: Topology,

    /// The GitLab instance the runner was created on [default: a placeholder that `berth
    /// validate` refuses until it is replaced]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// The runner's name in config.toml; its token is read from /etc/berth/tokens/NAME
    #[arg(long, value_name = "NAME", default_value = "docker-runner")]
    pub runner: String,
}

/// The embedded profiles `berth init` can start a host from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Topology {
    Dind,
    DindTls,
    Socket,
    DindService,
    DindSysbox,
}

impl Topology {
    /// The embedded profile's name.
    pub fn profile_name(self) -> &'static str {
        match self {
            Self::Dind => "dind",
            Self::DindTls => "dind-tls",
            Self::Socket => "socket",
            Self::DindService => "dind-service",
            Self::DindSysbox => "dind-sysbox",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub converge: ConvergeArgs,

    /// Also save the plan to FILE (JSON, no secrets), for `berth apply FILE` to carry out
    /// exactly, and only while the host and the profiles are as this plan saw them
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Show what `berth destroy` would remove instead
    #[arg(long, conflicts_with = "out")]
    pub destroy: bool,

    /// With --destroy: show what `berth destroy --purge` would remove (volumes and their data
    /// included)
    #[arg(long, requires = "destroy")]
    pub purge: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyCommand {
    #[command(flatten)]
    pub apply: ApplyArgs,

    /// A plan saved by `berth plan --out`: apply exactly its changes, with its profiles and
    /// flags, or nothing if the host or the profiles changed since
    #[arg(value_name = "PLAN")]
    pub plan: Option<PathBuf>,

    /// Do not ask before removing, replacing, unregistering or restarting Docker (apply asks
    /// only on a terminal; without one it goes ahead)
    #[arg(short, long)]
    pub yes: bool,

    /// [source]: take the ref's head even when it does not descend from the commit applied
    /// last (a force-push back to an older signed commit); it must still be signed
    #[arg(long)]
    pub allow_rewind: bool,
}

/// `validate` and `show` of what a host would get from a checkout of the profile repository.
#[derive(Debug, Clone, Args)]
pub struct CheckoutArgs {
    /// A checkout of the profile repository: take the layers from it ([source] profiles in
    /// /etc/berth/berth.toml, else the default base.toml, groups/{group}.toml?,
    /// hosts/{hostname}.toml?)
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,

    /// With --source: the host name that fills {hostname}
    #[arg(long, value_name = "NAME", requires = "source", conflicts_with = "all")]
    pub hostname: Option<String>,

    /// With --source: the group that fills {group} [default: none; with --all, every
    /// groups/*.toml in turn]
    #[arg(long, value_name = "NAME", requires = "source")]
    pub group: Option<String>,

    /// With --source: every host of hosts/*.toml, each with every group of groups/*.toml (or
    /// only --group's)
    #[arg(long, requires = "source")]
    pub all: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub converge: ConvergeArgs,

    /// Set by berth.service and berth-watch.service: systemd started this run, and it converges
    /// only a host whose /etc/berth/berth.toml names its profiles
    #[arg(long, hide = true)]
    pub from_timer: bool,

    /// Also write the run's metrics to this node_exporter textfile (a host path) [default:
    /// `metrics_file` in /etc/berth/berth.toml, else none]
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<String>,

    /// Seconds to wait for another berth run to finish before giving up
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub lock_timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub apply: ApplyArgs,

    /// Milliseconds of quiet after the last event before converging
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub debounce_ms: u64,

    /// Converges one object may cause in a minute (a container in a crash loop) before it is
    /// left to the timer's pace
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub heals_per_minute: usize,

    /// Seconds before a converge whose disruptive steps wait for a fleet slot is tried again
    /// without any event; twice as long after each further wait, up to 15 minutes
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub fleet_retry_secs: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ConvergeArgs {
    /// Allow a storage-driver change that hides the daemon's images and containers (they
    /// reappear only when the driver is switched back)
    #[arg(long)]
    pub allow_storage_driver_change: bool,

    /// Take over networks, volumes and containers that have a profile's name but were not
    /// created by berth: containers and networks are replaced (named volumes are kept), volumes
    /// are kept as they are, data included
    #[arg(long)]
    pub adopt: bool,

    /// Leave containers, networks and volumes berth made that the profiles no longer declare in
    /// place for this run (they are listed as kept)
    #[arg(long)]
    pub keep_orphans: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Exit codes, as Terraform's `-detailed-exitcode` taught operators to read them.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    /// `plan` only: the host differs from the profile, and apply would make every change.
    pub const CHANGES_PENDING: u8 = 2;
    /// `apply` only: everything converged but the disruptive steps, which wait for a fleet
    /// slot (`[fleet]` in berth.toml); sysexits' EX_TEMPFAIL, "try again later". The timer's
    /// next run does.
    pub const WAITING_FOR_FLEET_SLOT: u8 = 75;

    /// What a command line clap could not parse exits with: 1, like any other error, since 2
    /// means "changes pending"; `--help` and `--version` (which clap reports the same way)
    /// exit 0.
    pub fn usage(error: &clap::Error) -> u8 {
        if error.exit_code() == 0 { OK } else { FAILURE }
    }
}
