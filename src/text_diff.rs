//! Unified diffs of files berth rewrites, for `plan` and `apply` output. Callers redact secrets
//! before they get here: a diff is printed as it is.

/// The unified diff between `before` (empty for a new file) and `after`, headed by `path`.
pub fn unified(path: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(path, path)
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn diff_shows_the_changed_line_with_its_context() {
        let diff = super::unified("/etc/x", "a\nb\nc\n", "a\nB\nc\n");
        assert_eq!(
            diff,
            "--- /etc/x\n+++ /etc/x\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
        );
    }
}
