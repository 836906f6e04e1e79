//! `unit/berth.timer` and `unit/berth-watch.service`: the systemd units install.sh installs
//! that run berth by themselves, which `berth destroy` disables (`systemctl disable --now`)
//! before it removes anything, so that no timer run or watch converges the host back while it
//! is taken down. Only the machine's own systemd has them: under another `--root` there is
//! nothing to disable, and without `systemctl` destroy says so and goes on.

use anyhow::Result;

use crate::{
    host::exec::{self, CommandLine},
    plan::{Action, Change, Diff, Kind, ResourceId},
    resource::{Context, Earlier, Resource},
};

/// The units install.sh installs: the timer it enables, the watch it leaves to the operator.
const UNITS: [&str; 2] = ["berth.timer", "berth-watch.service"];

pub(crate) struct BerthUnit {
    unit: &'static str,
}

impl BerthUnit {
    /// One resource per unit that runs berth.
    pub(crate) fn units() -> impl Iterator<Item = Self> {
        UNITS.into_iter().map(|unit| Self { unit })
    }
}

/// What systemd says of the timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnitState {
    /// `--root` is not `/`: the machine's systemd is not this root's.
    OtherRoot,
    NoSystemctl,
    /// `systemctl is-enabled` and `is-active`, as they answered (`enabled`, `active`, ...).
    Seen {
        enabled: String,
        active: String,
    },
}

/// `systemctl disable --now UNIT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DisableUnit;

impl Resource for BerthUnit {
    type Observed = UnitState;
    type Op = DisableUnit;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Unit, self.unit)
    }

    fn observe(&self, context: &Context) -> Result<UnitState> {
        if !context.host.is_machine_root() {
            return Ok(UnitState::OtherRoot);
        }
        // Both exit non-zero for a disabled, inactive or unknown unit: that is the answer.
        let ask = |question: &str| {
            exec::run_unchecked(&CommandLine::new("systemctl", [question, self.unit]))
                .map(|output| output.stdout.trim().to_owned())
        };
        match (ask("is-enabled"), ask("is-active")) {
            (Err(error), _) | (_, Err(error)) if error.is_not_found() => Ok(UnitState::NoSystemctl),
            (enabled, active) => Ok(UnitState::Seen {
                enabled: enabled?,
                active: active?,
            }),
        }
    }

    fn diff(&self, observed: &UnitState, _earlier: &Earlier) -> Diff<DisableUnit> {
        let mut diff = Diff::none();
        match observed {
            UnitState::OtherRoot => {}
            UnitState::NoSystemctl => {
                diff.warn(format!(
                    "`systemctl` is not installed: `{}`, if any, is left as it is",
                    self.unit
                ));
            }
            UnitState::Seen { enabled, active } => {
                if enabled == "enabled" || active == "active" {
                    diff.push(
                        Change::new(
                            self.id(),
                            Action::Disable,
                            format!(
                                "systemctl disable --now {} (it is {enabled}, {active})",
                                self.unit
                            ),
                        ),
                        DisableUnit,
                    );
                }
            }
        }
        diff
    }

    fn action(&self, _op: &DisableUnit) -> Action {
        Action::Disable
    }

    fn apply(&self, _context: &Context, _op: &DisableUnit) -> Result<()> {
        exec::run(&CommandLine::new(
            "systemctl",
            ["disable", "--now", self.unit],
        ))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(observed: &UnitState) -> (Vec<String>, usize) {
        let unit = BerthUnit::units().next().unwrap();
        let diff = unit.diff(observed, &Earlier::default());
        let details = diff.printed().map(|change| change.detail.clone()).collect();
        (details, diff.warnings.len())
    }

    #[test]
    fn only_an_enabled_or_running_unit_is_disabled_and_a_missing_systemctl_is_said() {
        let seen = |enabled: &str, active: &str| UnitState::Seen {
            enabled: enabled.into(),
            active: active.into(),
        };
        assert_eq!(planned(&UnitState::OtherRoot), (vec![], 0));
        assert_eq!(planned(&UnitState::NoSystemctl), (vec![], 1));
        assert_eq!(planned(&seen("disabled", "inactive")), (vec![], 0));
        assert_eq!(planned(&seen("not-found", "inactive")), (vec![], 0));
        assert_eq!(
            planned(&seen("enabled", "active")),
            (
                vec!["systemctl disable --now berth.timer (it is enabled, active)".to_owned()],
                0
            )
        );
        assert_eq!(planned(&seen("disabled", "active")).0.len(), 1);
    }
}
