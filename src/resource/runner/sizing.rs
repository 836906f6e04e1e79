//! `concurrent = "auto"` and a runner's `limit = "auto"`: gitlab-runner sized to the host it
//! runs on (issue 22), since `concurrent = 1`, the default, is what everybody forgets
//! (gitlab-foss #45991).
//!
//! The rule: one job per CPU, as long as each job has 2 GiB of memory, and at least one job.
//! A runner with `limit = "auto"` gets an equal share of what `concurrent` leaves after the
//! runners with a fixed `limit`, at least 1. The profile only says "auto"; the numbers are
//! worked out from the host's facts when `runner-config` observes, so a host with more memory
//! plans a change and the same host plans none. Pure: the facts are read by `host::facts`.

use crate::host::facts::HostFacts;

/// What the profile writes instead of a number.
pub(crate) const AUTO: &str = "auto";

/// Memory a job gets before another CPU may take one more.
pub(crate) const MEMORY_PER_JOB: u64 = 2 * GIB;

const GIB: u64 = 1024 * 1024 * 1024;

/// Which of the profile's numbers are "auto".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Sizing {
    /// `[runner] concurrent = "auto"`.
    pub concurrent: bool,
    /// `[runner] concurrent` when it is a number.
    pub fixed_concurrent: Option<i64>,
    /// The runners with `limit = "auto"`, in profile order.
    pub auto_limits: Vec<String>,
    /// The sum of the other runners' fixed `limit`s (0, "no limit", adds nothing).
    pub fixed_limits: i64,
}

/// The numbers "auto" stands for on a host, and the facts they were worked out from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sized {
    /// `concurrent`, when it is "auto".
    pub concurrent: Option<i64>,
    /// Each runner's `limit` that is "auto".
    pub limits: Vec<(String, i64)>,
    /// The `concurrent` the auto limits share, less the fixed limits.
    pub shared: i64,
    pub facts: HostFacts,
}

impl Sizing {
    /// True when anything is "auto": only then are the host's facts read.
    pub(crate) fn is_auto(&self) -> bool {
        self.concurrent || !self.auto_limits.is_empty()
    }

    /// The numbers for a host with `facts`. The limits share `concurrent` as it will be: the
    /// profile's number, else the host's (a `limit = "auto"` without `concurrent` still means a
    /// share of what the host can run).
    pub(crate) fn size(&self, facts: HostFacts) -> Sized {
        let host = concurrent_for(facts);
        let concurrent = self
            .fixed_concurrent
            .filter(|_| !self.concurrent)
            .unwrap_or(host);
        let shared = concurrent - self.fixed_limits;
        let share = if self.auto_limits.is_empty() {
            0
        } else {
            let count = i64::try_from(self.auto_limits.len()).unwrap_or(i64::MAX);
            (shared / count).max(1)
        };
        Sized {
            concurrent: self.concurrent.then_some(host),
            limits: self
                .auto_limits
                .iter()
                .map(|name| (name.clone(), share))
                .collect(),
            shared,
            facts,
        }
    }
}

/// One job per CPU within memory / 2 GiB, at least 1.
pub(crate) fn concurrent_for(facts: HostFacts) -> i64 {
    let by_memory = facts.memory / MEMORY_PER_JOB;
    i64::try_from(facts.cpus.min(by_memory).max(1)).unwrap_or(i64::MAX)
}

impl Sized {
    /// How plan explains the numbers: `concurrent = 8 (auto: 8 CPUs, 31.2 GiB memory)`, and
    /// `runners.r.limit = 4 (auto: 8 shared by 2 runners)` for each limit.
    pub(crate) fn explain(&self) -> Vec<String> {
        let facts = describe(self.facts);
        let runners = match self.limits.len() {
            1 => "1 runner".to_owned(),
            count => format!("{count} runners"),
        };
        self.concurrent
            .map(|concurrent| format!("concurrent = {concurrent} (auto: {facts})"))
            .into_iter()
            .chain(self.limits.iter().map(|(name, limit)| {
                format!(
                    "runners.{name}.limit = {limit} (auto: {} shared by {runners})",
                    self.shared
                )
            }))
            .collect()
    }
}

/// `8 CPUs, 31.2 GiB memory`.
pub(crate) fn describe(facts: HostFacts) -> String {
    #[expect(
        clippy::cast_precision_loss,
        reason = "a memory size shown to one decimal"
    )]
    let gib = facts.memory as f64 / GIB as f64;
    let cpus = if facts.cpus == 1 { "CPU" } else { "CPUs" };
    format!("{} {cpus}, {gib:.1} GiB memory", facts.cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(cpus: u64, gib: u64) -> HostFacts {
        HostFacts {
            cpus,
            memory: gib * GIB,
        }
    }

    #[test]
    fn one_job_per_cpu_within_memory_over_two_gib_and_at_least_one() {
        for (cpus, gib, expected) in [
            (8, 32, 8),   // memory allows 16: the CPUs decide
            (8, 8, 4),    // memory allows 4
            (64, 16, 8),  // a big CPU count on little memory
            (1, 64, 1),   // one CPU
            (4, 1, 1),    // less than 2 GiB: still one job
            (16, 33, 16), // 33 GiB allows 16, the CPUs too
        ] {
            assert_eq!(
                concurrent_for(facts(cpus, gib)),
                expected,
                "{cpus} CPUs, {gib} GiB"
            );
        }
    }

    #[test]
    fn auto_limits_share_what_the_fixed_limits_leave() {
        let sizing = Sizing {
            concurrent: true,
            fixed_concurrent: None,
            auto_limits: vec!["a".into(), "b".into()],
            fixed_limits: 2,
        };
        let sized = sizing.size(facts(8, 64));
        assert_eq!(sized.concurrent, Some(8));
        assert_eq!(sized.limits, [("a".into(), 3), ("b".into(), 3)]);
        assert_eq!(
            sized.explain()[1],
            "runners.a.limit = 3 (auto: 6 shared by 2 runners)"
        );
        // A fixed concurrent is shared as it is; nothing left still means one job each.
        let sizing = Sizing {
            concurrent: false,
            fixed_concurrent: Some(2),
            auto_limits: vec!["a".into()],
            fixed_limits: 4,
        };
        let sized = sizing.size(facts(8, 64));
        assert_eq!(sized.concurrent, None);
        assert_eq!(sized.limits, [("a".into(), 1)]);
    }

    #[test]
    fn the_facts_are_shown_as_an_operator_reads_them() {
        let sized = Sizing {
            concurrent: true,
            ..Sizing::default()
        }
        .size(HostFacts {
            cpus: 8,
            memory: 33_501_757_440,
        });
        assert_eq!(
            sized.explain(),
            ["concurrent = 8 (auto: 8 CPUs, 31.2 GiB memory)"]
        );
        assert_eq!(describe(facts(1, 2)), "1 CPU, 2.0 GiB memory");
    }
}
