//! The gitlab-runner version a profile pins: the tag of the runner container's image. What
//! berth tells GitLab (`info.version`) and what the feature flags are checked against.

/// The gitlab-runner version in an image reference's tag: `gitlab/gitlab-runner:v17.11.0`,
/// `…:alpine-v17.11.0`, `…:ubuntu-v17.11.0@sha256:…` give `17.11.0`; `latest` gives `None`.
pub(crate) fn runner_version(image: &str) -> Option<String> {
    let reference = image.split('@').next().unwrap_or(image);
    let (_, tag) = reference
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))?;
    let version = tag.rsplit('-').next()?.strip_prefix('v')?;
    let parts: Vec<&str> = version.split('.').collect();
    (parts.len() == 3
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())))
    .then(|| version.to_owned())
}

/// A gitlab-runner release, major and minor.
pub(crate) type Release = (u16, u16);

/// `17.11.0` → `(17, 11)`.
pub(crate) fn release(version: &str) -> Option<Release> {
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}
