//! berth's labels on what it makes, as Docker reports them back: their names, the `Labelled`
//! view of an inspected object, and which instance an object's label says made it. Below every
//! kind: a network, a volume and a container read their labels alike.

use std::collections::BTreeMap;

/// Labels berth puts on every network, volume and container it creates, and reads back.
pub(crate) const LABEL_MANAGED: &str = "berth.managed";
pub(crate) const LABEL_PROFILE: &str = "berth.profile";
pub(crate) const LABEL_SPEC_HASH: &str = "berth.spec-hash";
/// Which berth configuration made the object (`instance`, by default an HMAC of the machine
/// id), so that two on one daemon never take each other's objects for orphans.
pub(crate) const LABEL_INSTANCE: &str = "berth.instance";

/// Which berth configuration this is, as the `berth.instance` label of its objects says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instance {
    /// What berth labels the objects it makes with.
    pub label: String,
    /// What an earlier berth labelled this same instance's objects with: the raw machine id,
    /// before the default became its HMAC. Still this instance's, so an upgrade replaces and
    /// orphans nothing.
    pub earlier: Option<String>,
}

impl Instance {
    /// True when an object labelled `label` (empty: no label) is this instance's: its label,
    /// the earlier one, or none at all (made by a berth from before the label).
    pub(crate) fn owns(&self, label: &str) -> bool {
        label.is_empty() || label == self.label || self.earlier.as_deref() == Some(label)
    }
}

/// True when `text` holds a control character (a newline, a tab, an escape): no name or label
/// berth gives has one, and printed or parsed as text one can forge what follows it.
pub(crate) fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

pub(crate) type Labels = BTreeMap<String, String>;

/// Anything Docker labels: containers (their config), networks and volumes.
pub(crate) trait Labelled {
    fn labels(&self) -> Option<&Labels>;

    fn label(&self, key: &str) -> Option<&str> {
        self.labels()?.get(key).map(String::as_str)
    }

    /// True when berth created the object: only berth sets `berth.managed=true`.
    fn managed(&self) -> bool {
        self.label(LABEL_MANAGED) == Some("true")
    }

    /// The hash of the spec berth created the object from.
    fn spec_hash(&self) -> Option<&str> {
        self.label(LABEL_SPEC_HASH)
    }
}
