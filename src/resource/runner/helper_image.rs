//! Where a docker-executor runner's helper image comes from (issue 22, item 6): gitlab-runner
//! pulls it from `registry.gitlab.com` unless `helper_image` names another, and daemon.json's
//! `registry-mirrors` mirror Docker Hub only (gitlab-runner #27193, #29472: outages and rate
//! limits there stopped jobs on hosts whose every other image came from a mirror). A host that
//! takes its images from a mirror or a private registry has said where images should come from;
//! `validate`, `plan` and `doctor` say the helper does not follow, and the tag form to pin it.
//!
//! The runner kind is told "mirrors or a private registry are configured" as a typed fact
//! ([`Registries`], worked out by `Relations::of` from the profile), never by reading daemon.json.
//! Pure.

use super::section::RunnerSettings;
use crate::profile::source::KeyPath;

/// The start of the warning, by which `doctor` finds it among the profile's warnings.
pub(crate) const HELPER_FROM_GITLAB: &str = "the helper image still comes from registry.gitlab.com";

/// gitlab-runner's page on pinning the helper image.
const DOC: &str = "https://docs.gitlab.com/runner/configuration/advanced-configuration.html#override-the-helper-image";

/// What the profile says about where images come from, for the runner kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Registries {
    /// daemon.json's `registry-mirrors` (the top-level `registry_mirrors` included).
    pub mirrors: Vec<String>,
    /// Registries other than Docker Hub (and registry.gitlab.com) that the profile's images
    /// come from: `registry.example.com:5000`, in the order first named.
    pub private: Vec<String>,
}

/// The registry an image reference names: its first part when that has a `.` or a `:` or is
/// `localhost` (Docker's rule), else Docker Hub (`None`).
pub(crate) fn registry_of(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    let hub = ["docker.io", "index.docker.io", "registry-1.docker.io"];
    ((first.contains('.') || first.contains(':') || first == "localhost") && !hub.contains(&first))
        .then_some(first)
}

/// The helper image's architecture in its tag (`x86_64-v…`, `arm64-v…`): the host's, since
/// the runner's jobs run on this host.
fn helper_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl Registries {
    /// Why the helper's origin matters on this host; `None` when the profile says nothing of
    /// registries.
    fn reason(&self) -> Option<String> {
        if let Some(registry) = self.private.first() {
            return Some(format!("the profile's images come from `{registry}`"));
        }
        (!self.mirrors.is_empty()).then(|| {
            format!(
                "daemon.json's `registry-mirrors` ({}) mirror Docker Hub only",
                self.mirrors.join(", ")
            )
        })
    }
}

impl RunnerSettings {
    /// A warning for each docker or kubernetes runner without `helper_image` on a host whose
    /// images come from a mirror or a private registry.
    pub(crate) fn helper_image_warnings(
        &self,
        registries: &Registries,
        warnings: &mut Vec<(KeyPath, String)>,
    ) {
        let Some(reason) = registries.reason() else {
            return;
        };
        let registry = registries
            .private
            .first()
            .map_or("REGISTRY", String::as_str);
        for runner in &self.runners {
            let executor = runner
                .settings
                .get("executor")
                .and_then(toml::Value::as_str)
                .unwrap_or_default();
            let section = match executor {
                "docker" | "docker+machine" | "docker-autoscaler" => "docker",
                "kubernetes" => "kubernetes",
                _ => continue,
            };
            let pinned = runner
                .settings
                .get(section)
                .and_then(toml::Value::as_table)
                .is_some_and(|table| table.contains_key("helper_image"));
            if pinned {
                continue;
            }
            let key = KeyPath::root().key("runners").key(&runner.name);
            warnings.push((
                key,
                format!(
                    "{HELPER_FROM_GITLAB}: {reason}, and runner `{name}` sets no `helper_image`; copy the helper there and pin it, `[runners.{name}.{section}] helper_image = \"{registry}/gitlab-org/gitlab-runner/gitlab-runner-helper:{arch}-v${{CI_RUNNER_VERSION}}\"` (see {DOC})",
                    name = runner.name,
                    arch = helper_architecture(),
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::runner::section::{RunnerSpec, TokenSource};

    fn runner(name: &str, settings: &str) -> RunnerSpec {
        RunnerSpec {
            name: name.into(),
            url: "https://g.example".into(),
            token: TokenSource::Authentication {
                file: crate::host::host_path("/t"),
            },
            tls_ca_file: None,
            delete_on_remove: false,
            settings: toml::from_str(settings).unwrap(),
            runner_image: None,
            secret_files: Vec::new(),
        }
    }

    #[test]
    fn docker_hub_and_registries_are_told_apart() {
        assert_eq!(registry_of("docker:27-dind"), None);
        assert_eq!(registry_of("gitlab/gitlab-runner:v19.3.0"), None);
        assert_eq!(registry_of("docker.io/library/alpine"), None);
        assert_eq!(
            registry_of("registry.example.com:5000/ci/img:1"),
            Some("registry.example.com:5000")
        );
        assert_eq!(registry_of("localhost/img"), Some("localhost"));
    }

    #[test]
    fn an_unpinned_docker_runner_on_a_mirrored_host_is_told_the_tag_form() {
        let settings = RunnerSettings {
            runners: vec![
                runner("plain", "executor = \"docker\"\n"),
                runner(
                    "pinned",
                    "executor = \"docker\"\n[docker]\nhelper_image = \"r.example/h:x\"\n",
                ),
                runner("shell", "executor = \"shell\"\n"),
            ],
            ..RunnerSettings::default()
        };
        let mut warnings = Vec::new();
        settings.helper_image_warnings(&Registries::default(), &mut warnings);
        assert!(
            warnings.is_empty(),
            "nothing said of registries: nothing to say"
        );
        let registries = Registries {
            mirrors: vec!["https://mirror.example".into()],
            private: vec!["registry.example.com".into()],
        };
        settings.helper_image_warnings(&registries, &mut warnings);
        let [(key, message)] = warnings.as_slice() else {
            panic!("{warnings:?}");
        };
        assert_eq!(key.to_string(), "runners.plain");
        assert_eq!(
            message,
            &format!(
                "the helper image still comes from registry.gitlab.com: the profile's images come from `registry.example.com`, and runner `plain` sets no `helper_image`; copy the helper there and pin it, `[runners.plain.docker] helper_image = \"registry.example.com/gitlab-org/gitlab-runner/gitlab-runner-helper:{}-v${{CI_RUNNER_VERSION}}\"` (see {DOC})",
                helper_architecture()
            )
        );
    }
}
