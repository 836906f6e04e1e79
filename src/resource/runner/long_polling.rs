//! The combinations of `concurrent`, `limit` and `request_concurrency` gitlab-runner warns about
//! when it starts or reloads its config (issue 22), said before it runs, in its own words.
//!
//! The rule is gitlab-runner's `checkConfigConcurrency` (`commands/multi.go`, since 18.4),
//! restated, not copied: it warns when `concurrent` is less than the number of runners (worker
//! starvation), when a runner's `request_concurrency` is 1 (request bottleneck), and when a
//! runner with `request_concurrency` 1 has a `limit` of 1 or 2 (build limit bottleneck), all of
//! which delay jobs by up to GitLab's long polling timeout. berth judges the numbers the profile
//! gives (or "auto" worked out on the host): a key the profile leaves out keeps config.toml's
//! value, which gitlab-runner itself judges. Pure.

/// Where gitlab-runner's warning sends the reader.
pub(crate) const DOC: &str =
    "https://docs.gitlab.com/runner/configuration/advanced-configuration.html#long-polling-issues";

/// One runner's numbers as the profile gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunnerNumbers {
    pub limit: Option<i64>,
    pub request_concurrency: Option<i64>,
}

/// What gitlab-runner would warn about: `None` for the global `concurrent`, `Some((runner,
/// key))` for a runner's key; each with its message.
pub(crate) fn warnings(
    concurrent: Option<i64>,
    runners: &[(String, RunnerNumbers)],
) -> Vec<(Option<(String, &'static str)>, String)> {
    let mut found = Vec::new();
    let count = i64::try_from(runners.len()).unwrap_or(i64::MAX);
    if let Some(concurrent) = concurrent
        && concurrent < count
    {
        found.push((
            None,
            said(
                &format!(
                    "Worker starvation bottleneck: 'concurrent' setting ({concurrent}) is less than number of runners ({count})"
                ),
                &format!(
                    "Increase 'concurrent' to at least {} (current: {concurrent})",
                    count + 1
                ),
            ),
        ));
    }
    for (name, numbers) in runners {
        // gitlab-runner reads an unset or non-positive `request_concurrency` as 1.
        if numbers.request_concurrency.map(|value| value.max(1)) != Some(1) {
            continue;
        }
        found.push((
            Some((name.clone(), "request_concurrency")),
            said(
                "Request bottleneck: 1 runners have request_concurrency=1, causing job delays during long polling",
                "Increase 'request_concurrency' to 2-4 for 1 runners currently using request_concurrency=1",
            ),
        ));
        if numbers.limit.is_some_and(|limit| (1..=2).contains(&limit)) {
            found.push((
                Some((name.clone(), "limit")),
                said(
                    "Build limit bottleneck: 1 runners have low 'limit' settings (≤2) with request_concurrency=1",
                    "For 1 runners with low limits: either increase 'limit' to 5+ or increase 'request_concurrency' to 2+",
                ),
            ));
        }
    }
    found
}

/// gitlab-runner's issue and solution, quoted, with the page it names.
fn said(issue: &str, solution: &str) -> String {
    format!(
        "gitlab-runner warns at start, \"CONFIGURATION: Long polling issues detected\": \"{issue}\"; it recommends: \"{solution}\" (see {DOC})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(limit: Option<i64>, request_concurrency: Option<i64>) -> RunnerNumbers {
        RunnerNumbers {
            limit,
            request_concurrency,
        }
    }

    fn keys(concurrent: Option<i64>, runners: &[(&str, RunnerNumbers)]) -> Vec<String> {
        let runners: Vec<(String, RunnerNumbers)> = runners
            .iter()
            .map(|(name, numbers)| ((*name).to_owned(), *numbers))
            .collect();
        warnings(concurrent, &runners)
            .into_iter()
            .map(|(key, _)| key.map_or("concurrent".into(), |(name, key)| format!("{name}.{key}")))
            .collect()
    }

    #[test]
    fn the_runners_conditions_and_no_others() {
        // In sync with gitlab-runner's advice: nothing to say.
        assert!(keys(Some(4), &[("a", runner(Some(10), Some(4)))]).is_empty());
        // Fewer workers than runners.
        assert_eq!(
            keys(
                Some(1),
                &[("a", runner(None, Some(2))), ("b", runner(None, Some(2)))]
            ),
            ["concurrent"]
        );
        // request_concurrency 1 (0 reads as 1), and with a limit of 1 or 2 the build limit too.
        assert_eq!(
            keys(Some(4), &[("a", runner(Some(5), Some(1)))]),
            ["a.request_concurrency"]
        );
        assert_eq!(
            keys(Some(4), &[("a", runner(Some(2), Some(0)))]),
            ["a.request_concurrency", "a.limit"]
        );
        // limit 0 is "no limit", not a low one.
        assert_eq!(
            keys(Some(4), &[("a", runner(Some(0), Some(1)))]),
            ["a.request_concurrency"]
        );
        // What the profile leaves out, config.toml decides.
        assert!(keys(None, &[("a", runner(Some(1), None))]).is_empty());
    }

    #[test]
    fn the_warning_is_in_the_runners_words_with_its_doc() {
        let found = warnings(
            Some(1),
            &[
                ("a".into(), runner(None, None)),
                ("b".into(), runner(None, None)),
            ],
        );
        assert_eq!(
            found[0].1,
            format!(
                "gitlab-runner warns at start, \"CONFIGURATION: Long polling issues detected\": \"Worker starvation bottleneck: 'concurrent' setting (1) is less than number of runners (2)\"; it recommends: \"Increase 'concurrent' to at least 3 (current: 1)\" (see {DOC})"
            )
        );
    }
}
