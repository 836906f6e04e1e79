//! What berth prints about profiles themselves: `validate`'s verdict with every diagnostic
//! (file, line, column, key, message, hint), as text or as JSON for editors and CI annotations.

use std::io::{self, IsTerminal};

use serde_json::{Value as Json, json};

use super::{ADD, CHANGE, Printer, clean, json as documents, print_error, use_color, write_stdout};
use crate::profile::{ProfileError, source::LocatedError};

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    Error,
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
        }
    }
}

/// One problem as editors and CI annotations read it; absent places are `null`.
pub(crate) fn diagnostic(problem: &LocatedError, severity: Severity) -> Json {
    json!({
        "file": problem.file,
        "line": problem.position.map(|(line, _)| line),
        "column": problem.position.map(|(_, column)| column),
        "key": problem.key.as_ref().filter(|key| !key.is_root()).map(ToString::to_string),
        "message": problem.message,
        "hint": problem.hint,
        "severity": severity.as_str(),
    })
}

/// Every error of `error` (when it is a profile's) and every warning, as diagnostics.
pub(crate) fn diagnostics(error: Option<&ProfileError>, warnings: &[LocatedError]) -> Vec<Json> {
    error
        .into_iter()
        .flat_map(ProfileError::problems)
        .map(|problem| diagnostic(problem, Severity::Error))
        .chain(
            warnings
                .iter()
                .map(|warning| diagnostic(warning, Severity::Warning)),
        )
        .collect()
}

impl Printer {
    /// `berth validate` of profiles that are valid: their warnings, then the verdict.
    pub(crate) fn validated(
        &self,
        sources: &[String],
        warnings: &[LocatedError],
    ) -> io::Result<()> {
        let text = if self.json {
            let document = json!({
                "schema_version": documents::SCHEMA_VERSION,
                "command": "validate",
                "profiles": sources,
                "valid": true,
                "warnings": warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "diagnostics": diagnostics(None, warnings),
            });
            format!(
                "{}\n",
                serde_json::to_string_pretty(&document).expect("serializes")
            )
        } else {
            let mut out = String::new();
            for warning in warnings {
                out.push_str(&format!(
                    "{} {}\n",
                    self.paint(CHANGE, "warning:"),
                    clean(&warning.to_string())
                ));
            }
            out.push_str(&format!(
                "{} {}\n",
                self.paint(ADD, "valid:"),
                sources.join(", ")
            ));
            out
        };
        write_stdout(&text)
    }

    /// `berth validate` of profiles that are not valid: the error on stderr, as for any other
    /// command; with `--json` also the document `validated` prints, with `valid: false`, the
    /// errors as `fatal` gives them and every diagnostic.
    pub(crate) fn invalid(&self, sources: &[String], error: &anyhow::Error) -> io::Result<()> {
        print_error(
            error,
            use_color(crate::cli::ColorChoice::Auto, io::stderr().is_terminal()),
        );
        if !self.json {
            return Ok(());
        }
        let document = json!({
            "schema_version": documents::SCHEMA_VERSION,
            "command": "validate",
            "profiles": sources,
            "valid": false,
            "warnings": [],
            "errors": [documents::error(None, error)],
            "diagnostics": diagnostics(error.downcast_ref::<ProfileError>(), &[]),
        });
        write_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&document).expect("serializes")
        ))
    }
}
