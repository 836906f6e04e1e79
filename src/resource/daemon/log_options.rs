//! What a `log-driver` or `log-opts` change in daemon.json does not do (issue 22, item 7):
//! Docker fixes a container's log driver and options when it creates the container, so the
//! new defaults reach new containers only; running ones keep what they were created with,
//! whatever restart or reload follows. The plan says which, from the containers' own
//! `HostConfig.LogConfig` in the inspect berth already does (`docker::wire`), never from text.
//! Pure.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use crate::docker::wire::LogConfig;

/// The daemon.json keys Docker applies only at container create.
const AT_CREATE: &[&str] = &["log-driver", "log-opts"];

/// Docker's log driver when daemon.json names none.
const DEFAULT_DRIVER: &str = "json-file";

/// The note for a daemon.json write that changes `written` keys and leaves the file as
/// `after`: the running containers (by name, with how they log) that keep their old options;
/// `None` when no log key changes or every running container already logs the new way.
pub(crate) fn note(
    written: &[(String, Json)],
    after: &Map<String, Json>,
    running: &[(String, LogConfig)],
) -> Option<String> {
    let changed: Vec<&str> = written
        .iter()
        .map(|(key, _)| key.as_str())
        .filter(|key| AT_CREATE.contains(key))
        .collect();
    if changed.is_empty() {
        return None;
    }
    let driver = after
        .get("log-driver")
        .and_then(Json::as_str)
        .unwrap_or(DEFAULT_DRIVER);
    let options: BTreeMap<String, String> = after
        .get("log-opts")
        .and_then(Json::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
        .collect();
    // Containers that keep the same old options, together, in name order.
    let mut keeping: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, config) in running {
        let theirs = config.config.clone().unwrap_or_default();
        if config.driver == driver && theirs == options {
            continue;
        }
        let mut shown: Vec<String> = Vec::new();
        if config.driver != driver {
            shown.push(config.driver.clone());
        }
        shown.extend(theirs.iter().map(|(key, value)| format!("{key}={value}")));
        let shown = if shown.is_empty() {
            "no log-opts".to_owned()
        } else {
            shown.join(" ")
        };
        keeping.entry(shown).or_default().push(name);
    }
    if keeping.is_empty() {
        return None;
    }
    // Each group's names sorted, the groups in the order of their first name.
    let mut groups: Vec<(Vec<&str>, String)> = keeping
        .into_iter()
        .map(|(shown, mut names)| {
            names.sort_unstable();
            (names, shown)
        })
        .collect();
    groups.sort();
    let groups: Vec<String> = groups
        .into_iter()
        .map(|(names, shown)| format!("{} keep {shown}", names.join(", ")))
        .collect();
    Some(format!(
        "{} reach new containers only (Docker applies them when it creates one); running: {}",
        changed.join(" and "),
        groups.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn logs(driver: &str, options: &[(&str, &str)]) -> LogConfig {
        LogConfig {
            driver: driver.into(),
            config: Some(
                options
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                    .collect(),
            ),
        }
    }

    #[test]
    fn running_containers_with_the_old_options_are_named() {
        let after = json!({"log-opts": {"max-size": "50m"}});
        let written = vec![("log-opts".to_owned(), after["log-opts"].clone())];
        let running = vec![
            (
                "gitlab-runner".to_owned(),
                logs("json-file", &[("max-size", "10m")]),
            ),
            (
                "gitlab-dind".to_owned(),
                logs("json-file", &[("max-size", "10m")]),
            ),
            (
                "fresh".to_owned(),
                logs("json-file", &[("max-size", "50m")]),
            ),
            ("local".to_owned(), logs("local", &[])),
        ];
        assert_eq!(
            note(&written, after.as_object().unwrap(), &running).unwrap(),
            "log-opts reach new containers only (Docker applies them when it creates one); running: gitlab-dind, gitlab-runner keep max-size=10m; local keep local"
        );
    }

    #[test]
    fn nothing_to_say_without_a_log_key_or_an_old_container() {
        let after = json!({"mtu": 1400, "log-opts": {"max-size": "10m"}});
        let running = vec![("a".to_owned(), logs("json-file", &[]))];
        assert_eq!(
            note(
                &[("mtu".into(), json!(1400))],
                after.as_object().unwrap(),
                &running
            ),
            None
        );
        let same = vec![("a".to_owned(), logs("json-file", &[("max-size", "10m")]))];
        assert_eq!(
            note(
                &[("log-opts".into(), after["log-opts"].clone())],
                after.as_object().unwrap(),
                &same
            ),
            None
        );
    }
}
