//! gitlab-runner's feature flags, by the version that added and the one that removed each, so
//! `[runners.NAME.feature_flags]` is checked against the runner version the profile pins
//! (issue 22): gitlab-runner ignores a flag it does not know, silently, so a misspelt or
//! removed flag would leave a job running without the behaviour it was set for.
//!
//! The table is read off `helpers/featureflags/flags.go` at each gitlab-runner release tag
//! `vX.Y.0` from 13.0 to 19.3 (a flag added in a patch release counts from the next minor
//! release); "13.0" means "13.0 or earlier". 19.3 removed `FF_SET_PERMISSIONS_BEFORE_CLEANUP`,
//! `FF_SKIP_NOOP_BUILD_STAGES` and `FF_USE_NEW_BASH_EVAL_STRATEGY`. A runner newer than the
//! table may know flags berth does not: those pass through with a note. Pure.

use super::version::Release;
use crate::profile::source::closest;

/// The newest release the table knows.
pub(crate) const NEWEST: Release = (19, 3);

/// Each flag: its name, the release that added it, the release that removed it.
const FLAGS: &[(&str, Release, Option<Release>)] = &[
    ("FF_CLEAN_UP_FAILED_CACHE_EXTRACT", (16, 8), None),
    (
        "FF_CMD_DISABLE_DELAYED_ERROR_LEVEL_EXPANSION",
        (13, 0),
        Some((17, 0)),
    ),
    ("FF_CONCRETE", (18, 11), None),
    ("FF_DISABLE_AUTOMATIC_TOKEN_ROTATION", (17, 0), None),
    ("FF_DISABLE_POWERSHELL_STDIN", (15, 6), None),
    ("FF_DISABLE_UMASK_FOR_DOCKER_EXECUTOR", (13, 7), None),
    ("FF_DISABLE_UMASK_FOR_KUBERNETES_EXECUTOR", (17, 2), None),
    ("FF_ENABLE_BASH_EXIT_CODE_CHECK", (13, 9), None),
    ("FF_ENABLE_JOB_CLEANUP", (14, 3), None),
    ("FF_ENABLE_JOB_INPUTS_INTERPOLATION", (18, 7), None),
    ("FF_EXPORT_HIGH_CARDINALITY_METRICS", (17, 9), None),
    ("FF_GITLAB_REGISTRY_HELPER_IMAGE", (13, 7), Some((15, 0))),
    ("FF_GIT_URLS_WITHOUT_TOKENS", (17, 5), None),
    ("FF_HASH_CACHE_KEYS", (18, 4), None),
    ("FF_KUBERNETES_HONOR_ENTRYPOINT", (14, 5), None),
    ("FF_LOG_IMAGES_CONFIGURED_FOR_JOB", (16, 7), None),
    ("FF_MASK_ALL_DEFAULT_TOKENS", (17, 9), None),
    ("FF_NETWORK_PER_BUILD", (13, 0), None),
    ("FF_POSIXLY_CORRECT_ESCAPES", (14, 9), None),
    ("FF_PRINT_POD_EVENTS", (16, 5), None),
    ("FF_RESET_HELPER_IMAGE_ENTRYPOINT", (13, 3), Some((14, 0))),
    ("FF_RESOLVE_FULL_TLS_CHAIN", (15, 6), None),
    ("FF_RETRIEVE_POD_WARNING_EVENTS", (16, 3), Some((18, 0))),
    ("FF_SCRIPT_SECTIONS", (14, 2), None),
    ("FF_SCRIPT_TO_STEP_MIGRATION", (18, 9), None),
    ("FF_SECRET_RESOLVING_FAILS_IF_MISSING", (16, 0), None),
    ("FF_SET_PERMISSIONS_BEFORE_CLEANUP", (15, 10), Some((19, 3))),
    (
        "FF_SHELL_EXECUTOR_USE_LEGACY_PROCESS_KILL",
        (13, 1),
        Some((14, 0)),
    ),
    (
        "FF_SKIP_DOCKER_MACHINE_PROVISION_ON_CREATION_FAILURE",
        (13, 11),
        Some((14, 3)),
    ),
    ("FF_SKIP_NOOP_BUILD_STAGES", (13, 1), Some((19, 3))),
    ("FF_SUSPENDABLE_ENVIRONMENTS", (19, 0), None),
    ("FF_TEST_FEATURE", (16, 9), None),
    ("FF_TIMESTAMPS", (16, 11), None),
    ("FF_USE_ADAPTIVE_REQUEST_CONCURRENCY", (18, 0), None),
    ("FF_USE_ADVANCED_POD_SPEC_CONFIGURATION", (15, 10), None),
    ("FF_USE_DIRECT_DOWNLOAD", (13, 0), None),
    ("FF_USE_DOCKER_AUTOSCALER_DIAL_STDIO", (16, 7), None),
    ("FF_USE_DUMB_INIT_WITH_KUBERNETES_EXECUTOR", (16, 6), None),
    ("FF_USE_DYNAMIC_TRACE_FORCE_SEND_INTERVAL", (14, 2), None),
    ("FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY", (18, 0), None),
    ("FF_USE_FASTZIP", (13, 6), None),
    ("FF_USE_FLEETING_ACQUIRE_HEARTBEATS", (17, 9), None),
    ("FF_USE_GITALY_CORRELATION_ID", (18, 1), None),
    ("FF_USE_GIT_BUNDLE_URIS", (16, 6), None),
    ("FF_USE_GIT_NATIVE_CLONE", (18, 0), None),
    ("FF_USE_GIT_PROACTIVE_AUTH", (18, 10), None),
    (
        "FF_USE_GO_CLOUD_WITH_CACHE_ARCHIVER",
        (13, 6),
        Some((14, 0)),
    ),
    ("FF_USE_IMPROVED_URL_MASKING", (15, 0), Some((16, 11))),
    ("FF_USE_INIT_WITH_DOCKER_EXECUTOR", (16, 7), None),
    ("FF_USE_JOB_ROUTER", (18, 8), None),
    ("FF_USE_LEGACY_BASH_EVAL", (19, 1), None),
    ("FF_USE_LEGACY_GCS_CACHE_ADAPTER", (17, 0), None),
    ("FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY", (13, 0), None),
    ("FF_USE_LEGACY_S3_CACHE_ADAPTER", (17, 5), None),
    ("FF_USE_NATIVE_CONTAINER_STOP", (19, 1), None),
    ("FF_USE_NATIVE_STEPS", (17, 6), Some((18, 6))),
    ("FF_USE_NEW_BASH_EVAL_STRATEGY", (13, 12), Some((19, 3))),
    ("FF_USE_NEW_SHELL_ESCAPE", (14, 3), Some((17, 0))),
    ("FF_USE_PARALLEL_ARTIFACT_TRANSFER", (19, 0), None),
    ("FF_USE_PARALLEL_CACHE_TRANSFER", (19, 0), None),
    ("FF_USE_POD_ACTIVE_DEADLINE_SECONDS", (15, 10), None),
    ("FF_USE_POWERSHELL_PATH_RESOLVER", (13, 12), None),
    ("FF_USE_WINDOWS_JOB_OBJECT", (16, 9), None),
    ("FF_USE_WINDOWS_LEGACY_PROCESS_STRATEGY", (13, 10), None),
    ("FF_WAIT_FOR_POD_TO_BE_REACHABLE", (17, 6), None),
];

fn show((major, minor): Release) -> String {
    format!("{major}.{minor}")
}

/// What is wrong with `flag` for gitlab-runner `pinned` (`None`: the image's tag names no
/// version, so the newest berth knows); `None` when it is a flag of that version.
pub(crate) fn check(flag: &str, pinned: Option<Release>) -> Option<String> {
    let version = pinned.unwrap_or(NEWEST);
    let runner = pinned.map_or_else(
        || {
            format!(
                "gitlab-runner (berth knows its flags up to {})",
                show(NEWEST)
            )
        },
        |pinned| format!("gitlab-runner {}", show(pinned)),
    );
    let known_in = |(_, added, removed): &&(&str, Release, Option<Release>)| {
        *added <= version && removed.is_none_or(|removed| version < removed)
    };
    let hint = || {
        closest(
            flag,
            FLAGS.iter().filter(known_in).map(|(name, _, _)| *name),
        )
        .filter(|meant| *meant != flag)
        .map(|meant| format!("; did you mean `{meant}`?"))
        .unwrap_or_default()
    };
    match FLAGS.iter().find(|(name, _, _)| *name == flag) {
        Some(entry) if known_in(&entry) => None,
        Some((_, _, Some(removed))) if *removed <= version => Some(format!(
            "`{flag}` was removed in gitlab-runner {}: {runner} ignores it{}",
            show(*removed),
            hint()
        )),
        Some((_, added, _)) => Some(format!(
            "`{flag}` came with gitlab-runner {}: {runner} ignores it{}",
            show(*added),
            hint()
        )),
        None if version > NEWEST => Some(format!(
            "`{flag}` is not a feature flag berth knows (it knows gitlab-runner's up to {}); written to config.toml as it is, for {runner} to judge{}",
            show(NEWEST),
            hint()
        )),
        None => Some(format!(
            "`{flag}` is not a feature flag of {runner}: gitlab-runner ignores an unknown flag{}",
            hint()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_of_the_pinned_version_passes() {
        assert_eq!(check("FF_NETWORK_PER_BUILD", Some((17, 11))), None);
        assert_eq!(check("FF_USE_NEW_BASH_EVAL_STRATEGY", Some((19, 2))), None);
        assert_eq!(check("FF_USE_PARALLEL_CACHE_TRANSFER", None), None);
    }

    #[test]
    fn nineteen_three_removed_three_flags() {
        let removed: Vec<&str> = FLAGS
            .iter()
            .filter(|(_, _, removed)| *removed == Some((19, 3)))
            .map(|(name, _, _)| *name)
            .collect();
        assert_eq!(
            removed,
            [
                "FF_SET_PERMISSIONS_BEFORE_CLEANUP",
                "FF_SKIP_NOOP_BUILD_STAGES",
                "FF_USE_NEW_BASH_EVAL_STRATEGY"
            ]
        );
        assert_eq!(
            check("FF_SKIP_NOOP_BUILD_STAGES", Some((19, 3))).unwrap(),
            "`FF_SKIP_NOOP_BUILD_STAGES` was removed in gitlab-runner 19.3: gitlab-runner 19.3 ignores it"
        );
    }

    #[test]
    fn a_misspelt_flag_gets_the_closest_name_of_its_version() {
        assert_eq!(
            check("FF_NETWORK_PER_BUIDL", Some((18, 0))).unwrap(),
            "`FF_NETWORK_PER_BUIDL` is not a feature flag of gitlab-runner 18.0: gitlab-runner ignores an unknown flag; did you mean `FF_NETWORK_PER_BUILD`?"
        );
        // A flag newer than the pinned runner.
        assert_eq!(
            check("FF_USE_PARALLEL_CACHE_TRANSFER", Some((18, 5))).unwrap(),
            "`FF_USE_PARALLEL_CACHE_TRANSFER` came with gitlab-runner 19.0: gitlab-runner 18.5 ignores it"
        );
        // A runner newer than the table: a note, not a verdict.
        assert!(
            check("FF_SOMETHING_NEW", Some((20, 1)))
                .unwrap()
                .contains("for gitlab-runner 20.1 to judge")
        );
        assert_eq!(super::super::version::release("17.11.0"), Some((17, 11)));
    }
}
