//! `timer/berth.timer`: the systemd timer install.sh installs, which `berth destroy` disables
//! (`systemctl disable --now`) before it removes anything, so that no timer run converges the
//! host back while it is taken down. Only the machine's own systemd has it: under another
//! `--root` there is nothing to disable, and without `systemctl` destroy says so and goes on.

use anyhow::Result;

use crate::{
    host::exec::{self, CommandLine},
    plan::{Action, Change, Diff, Kind, ResourceId},
    resource::{Context, Earlier, Resource},
};

/// The unit install.sh installs and enables.
const UNIT: &str = "berth.timer";

pub(crate) struct Timer;

/// What systemd says of the timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TimerState {
    /// `--root` is not `/`: the machine's systemd is not this root's.
    OtherRoot,
    NoSystemctl,
    /// `systemctl is-enabled` and `is-active`, as they answered (`enabled`, `active`, ...).
    Seen {
        enabled: String,
        active: String,
    },
}

/// `systemctl disable --now berth.timer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DisableTimer;

impl Resource for Timer {
    type Observed = TimerState;
    type Op = DisableTimer;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Timer, UNIT)
    }

    fn observe(&self, context: &Context) -> Result<TimerState> {
        if !context.host.is_machine_root() {
            return Ok(TimerState::OtherRoot);
        }
        // Both exit non-zero for a disabled, inactive or unknown unit: that is the answer.
        let ask = |question: &str| {
            exec::run_unchecked(&CommandLine::new("systemctl", [question, UNIT]))
                .map(|output| output.stdout.trim().to_owned())
        };
        match (ask("is-enabled"), ask("is-active")) {
            (Err(error), _) | (_, Err(error)) if error.is_not_found() => {
                Ok(TimerState::NoSystemctl)
            }
            (enabled, active) => Ok(TimerState::Seen {
                enabled: enabled?,
                active: active?,
            }),
        }
    }

    fn diff(&self, observed: &TimerState, _earlier: &Earlier) -> Diff<DisableTimer> {
        let mut diff = Diff::none();
        match observed {
            TimerState::OtherRoot => {}
            TimerState::NoSystemctl => {
                diff.warn(format!(
                    "`systemctl` is not installed: `{UNIT}`, if any, is left as it is"
                ));
            }
            TimerState::Seen { enabled, active } => {
                if enabled == "enabled" || active == "active" {
                    diff.push(
                        Change::new(
                            self.id(),
                            Action::Disable,
                            format!("systemctl disable --now {UNIT} (is {enabled}, {active})"),
                        ),
                        DisableTimer,
                    );
                }
            }
        }
        diff
    }

    fn apply(&self, _context: &Context, _op: &DisableTimer) -> Result<()> {
        exec::run(&CommandLine::new("systemctl", ["disable", "--now", UNIT]))?;
        Ok(())
    }
}
