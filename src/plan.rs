//! Changes as plain data. A resource's `diff` returns them, `plan` prints them, `--json`
//! serializes them, `apply` carries out exactly them. Nothing here touches the host.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// Every kind of resource berth manages, as its ids and the run report name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    KernelModule,
    /// Software installed from the OS's packages (`package/docker`).
    Package,
    DaemonConfig,
    Daemon,
    /// A runner's registration with GitLab.
    Runner,
    /// berth's record of the runners it registered, when it cannot be read.
    RunnerLedger,
    RunnerConfig,
    Network,
    Volume,
    Container,
    /// A systemd unit that runs berth (`berth destroy` disables it).
    Unit,
    /// What a daemon holds, kept below `[hygiene]`'s thresholds (`hygiene/host`, `hygiene/NAME`).
    Hygiene,
}

impl Kind {
    /// Networks, volumes and containers: what berth asks the daemon about in batches.
    pub(crate) fn is_docker_object(self) -> bool {
        matches!(self, Self::Network | Self::Volume | Self::Container)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::KernelModule => "kernel-module",
            Self::Package => "package",
            Self::DaemonConfig => "daemon-config",
            Self::Daemon => "daemon",
            Self::Runner => "runner",
            Self::RunnerLedger => "runner-ledger",
            Self::RunnerConfig => "runner-config",
            Self::Network => "network",
            Self::Volume => "volume",
            Self::Container => "container",
            Self::Unit => "unit",
            Self::Hygiene => "hygiene",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kind/name` (`kernel-module/overlay`, `container/gitlab-runner`) or just `kind` for a
/// resource of which a host has one (`daemon-config`, `runner-config`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ResourceId {
    pub(crate) kind: Kind,
    pub(crate) name: Option<String>,
}

impl ResourceId {
    pub(crate) fn new(kind: Kind, name: &str) -> Self {
        Self {
            kind,
            name: Some(name.to_owned()),
        }
    }

    pub(crate) fn singleton(kind: Kind) -> Self {
        Self { kind, name: None }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{}/{name}", self.kind),
            None => f.write_str(self.kind.as_str()),
        }
    }
}

impl Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Action {
    Create,
    Update,
    Replace,
    Delete,
    Start,
    Restart,
    Reload,
    Load,
    Persist,
    /// Install packages.
    Install,
    Register,
    Unregister,
    /// Pull an image (`pull = "always"`), replacing the container if the tag moved: since it
    /// may drain and replace a running container, it is asked about and counted as a replace.
    Pull,
    /// Finish or undo what an interrupted run left half done.
    Recover,
    /// `systemctl disable --now` a unit.
    Disable,
    /// Remove what berth made and the profiles no longer declare (or `berth destroy` removes).
    Destroy,
    /// Leave something berth made that the profiles no longer declare, and say so: a named
    /// volume holds data. Not a change: plan counts it nowhere and exits 0 for it alone.
    Keep,
    /// Remove what a daemon holds that may go (`[hygiene]`): unused images, job volumes,
    /// build cache. Counted as a change.
    Prune,
    /// Pull the images a dind container's `prepull` lists into its daemon.
    Prepull,
}

/// How an action counts in the summary line, the way Terraform counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    Add,
    Change,
    Destroy,
    /// Counts as one destroy and one add.
    Replace,
    /// Repairs what an interrupted run left; counts as a change.
    Recover,
    /// Changes nothing; printed as a note.
    Note,
}

impl Action {
    pub(crate) fn effect(self) -> Effect {
        match self {
            Self::Create
            | Self::Load
            | Self::Persist
            | Self::Install
            | Self::Register
            | Self::Start
            | Self::Prepull => Effect::Add,
            Self::Update | Self::Restart | Self::Reload | Self::Prune => Effect::Change,
            Self::Delete | Self::Unregister | Self::Destroy | Self::Disable => Effect::Destroy,
            Self::Keep => Effect::Note,
            Self::Replace | Self::Pull => Effect::Replace,
            Self::Recover => Effect::Recover,
        }
    }

    /// The marker printed before the action; colour only repeats what it says.
    pub(crate) fn marker(self) -> &'static str {
        match self.effect() {
            Effect::Add => "+",
            Effect::Change => "~",
            Effect::Destroy => "-",
            Effect::Replace => "-/+",
            Effect::Recover => "!",
            Effect::Note => "",
        }
    }

    /// True for an action that changes the host (all but [`Action::Keep`]).
    pub(crate) fn changes_host(self) -> bool {
        self.effect() != Effect::Note
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Replace => "replace",
            Self::Delete => "delete",
            Self::Start => "start",
            Self::Restart => "restart",
            Self::Reload => "reload",
            Self::Load => "load",
            Self::Persist => "persist",
            Self::Install => "install",
            Self::Register => "register",
            Self::Unregister => "unregister",
            Self::Pull => "pull",
            Self::Recover => "recover",
            Self::Destroy => "destroy",
            Self::Disable => "disable",
            Self::Keep => "keep",
            Self::Prune => "prune",
            Self::Prepull => "prepull",
        }
    }
}

/// One field that differs: `env.DOCKER_HOST`, `registry-mirrors`. An absent side is omitted
/// from JSON (absent is not the same as a JSON `null` value). Secret fields carry a fingerprint
/// or `"***"`, never the value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct FieldChange {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

impl FieldChange {
    pub(crate) fn new(
        path: impl Into<String>,
        before: Option<Value>,
        after: Option<Value>,
    ) -> Self {
        Self {
            path: path.into(),
            before,
            after,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Change {
    pub id: ResourceId,
    pub action: Action,
    /// One line for humans: a path, or why the action is needed.
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// A unified diff of a file, when the change rewrites one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Set when apply will refuse this change; says why and how to allow it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl Change {
    pub(crate) fn new(id: ResourceId, action: Action, detail: impl Into<String>) -> Self {
        Self {
            id,
            action,
            detail: detail.into(),
            fields: Vec::new(),
            diff: None,
            warnings: Vec::new(),
            refused: None,
        }
    }

    pub(crate) fn with_fields(mut self, fields: Vec<FieldChange>) -> Self {
        self.fields = fields;
        self
    }

    pub(crate) fn with_diff(mut self, diff: impl Into<String>) -> Self {
        self.diff = Some(diff.into());
        self
    }

    pub(crate) fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }

    pub(crate) fn refused_because(mut self, reason: impl Into<String>) -> Self {
        self.refused = Some(reason.into());
        self
    }

    /// True for a change that cannot be taken back, which apply asks about on a terminal:
    /// removing something (a delete, the old half of a replace), unregistering a runner, and
    /// restarting Docker (it stops every container the daemon does not live-restore).
    pub(crate) fn needs_consent(&self) -> bool {
        self.refused.is_none()
            && (matches!(self.action.effect(), Effect::Destroy | Effect::Replace)
                || (self.action == Action::Restart && self.id.kind == Kind::Daemon))
    }
}

/// What a resource's `diff` returns: each change it needs, as printed, with the operation apply
/// will carry out for it (so apply never re-derives what diff decided), and what the operator
/// should know even when nothing changes (Docker not installed, the kernel not visible under
/// `--root`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Diff<Op> {
    /// Each change with its operation; `None` for a change apply refuses whatever happens
    /// (its `refused` says why), which has no operation to carry out.
    pub(crate) changes: Vec<(Change, Option<Op>)>,
    pub(crate) warnings: Vec<String>,
}

impl<Op> Default for Diff<Op> {
    fn default() -> Self {
        Self {
            changes: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

impl<Op> Diff<Op> {
    pub(crate) fn none() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, change: Change, op: Op) {
        self.changes.push((change, Some(op)));
    }

    /// A change apply will refuse, and why: plan shows it, apply reports it as failed.
    pub(crate) fn refuse(&mut self, change: Change, reason: impl Into<String>) {
        self.changes.push((change.refused_because(reason), None));
    }

    pub(crate) fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    /// The printed changes alone, as plan shows them.
    #[cfg(test)]
    pub(crate) fn printed(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().map(|(change, _)| change)
    }
}

/// The unified diff between `before` (empty for a new file) and `after`, headed by `path`, for
/// a change that rewrites a file. Callers redact secrets before they get here: a diff is
/// printed as it is.
pub(crate) fn unified_diff(path: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(path, path)
        .to_string()
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

impl Summary {
    pub(crate) fn count<'a>(changes: impl IntoIterator<Item = &'a Change>) -> Self {
        let mut summary = Self::default();
        for change in changes {
            match change.action.effect() {
                Effect::Add => summary.add += 1,
                Effect::Change | Effect::Recover => summary.change += 1,
                Effect::Destroy => summary.destroy += 1,
                Effect::Replace => {
                    summary.add += 1;
                    summary.destroy += 1;
                }
                Effect::Note => {}
            }
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_like_terraform() {
        let id = ResourceId::singleton(Kind::DaemonConfig);
        let changes = [
            Change::new(id.clone(), Action::Persist, ""),
            Change::new(id.clone(), Action::Update, ""),
            Change::new(id.clone(), Action::Restart, ""),
            Change::new(id.clone(), Action::Replace, ""),
            Change::new(id, Action::Unregister, ""),
        ];
        assert_eq!(
            Summary::count(&changes),
            Summary {
                add: 2,
                change: 2,
                destroy: 2
            }
        );
    }

    #[test]
    fn what_cannot_be_taken_back_needs_consent() {
        let container = ResourceId::new(Kind::Container, "gitlab-runner");
        let daemon = ResourceId::new(Kind::Daemon, "docker");
        let runner = ResourceId::new(Kind::Runner, "docker");
        for (change, expected) in [
            (Change::new(container.clone(), Action::Create, ""), false),
            (Change::new(container.clone(), Action::Update, ""), false),
            (Change::new(container.clone(), Action::Restart, ""), false),
            (Change::new(container.clone(), Action::Replace, ""), true),
            // It may drain and replace the running container.
            (Change::new(container.clone(), Action::Pull, ""), true),
            (Change::new(container.clone(), Action::Delete, ""), true),
            (Change::new(daemon.clone(), Action::Reload, ""), false),
            (Change::new(daemon.clone(), Action::Start, ""), false),
            (Change::new(daemon.clone(), Action::Restart, ""), true),
            (Change::new(runner.clone(), Action::Register, ""), false),
            (Change::new(runner.clone(), Action::Unregister, ""), true),
            (
                Change::new(runner, Action::Unregister, "").refused_because("no"),
                false,
            ),
        ] {
            assert_eq!(change.needs_consent(), expected, "{change:?}");
        }
    }

    #[test]
    fn change_json_omits_what_is_empty() {
        let change = Change::new(
            ResourceId::new(Kind::KernelModule, "overlay"),
            Action::Load,
            "modprobe overlay",
        );
        assert_eq!(
            serde_json::to_value(&change).unwrap(),
            serde_json::json!({"id": "kernel-module/overlay", "action": "load", "detail": "modprobe overlay"})
        );
    }

    #[test]
    fn diff_shows_the_changed_line_with_its_context() {
        let diff = unified_diff("/etc/x", "a\nb\nc\n", "a\nB\nc\n");
        assert_eq!(
            diff,
            "--- /etc/x\n+++ /etc/x\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
        );
    }
}
