//! What berth prints about profiles themselves: `validate`'s verdict with every diagnostic
//! (file, line, column, key, message, hint), as text or as JSON for editors and CI annotations.

use std::io::{self, IsTerminal};

use serde_json::{Value as Json, json};

use super::{
    ADD, CHANGE, DIM, Printer, clean, json as documents, print_error, use_color, write_stdout,
};
use crate::profile::{
    ProfileError,
    show::{ListedProfile, Shown},
    source::LocatedError,
};

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

impl Printer {
    /// A line of plain text (`pause`, `resume`, a paused apply); with `--json`, `{"message"}`.
    pub(crate) fn line(&self, text: &str) -> io::Result<()> {
        if self.json {
            return write_stdout(&format!("{}\n", json!({ "message": text })));
        }
        write_stdout(&format!("{text}\n"))
    }

    /// `berth show`: the merged profile, each value with the layer it came from.
    pub(crate) fn shown(&self, shown: &Shown) -> io::Result<()> {
        if self.json {
            let document = json!({
                "schema_version": documents::SCHEMA_VERSION,
                "command": "show",
                "profiles": shown.profiles,
                "toml": shown.toml,
                "origins": shown
                    .origins
                    .iter()
                    .map(|(key, from)| json!({ "key": key, "from": from }))
                    .collect::<Vec<_>>(),
            });
            return write_stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&document).expect("serializes")
            ));
        }
        write_stdout(&format!(
            "{}\n{}",
            self.paint(
                DIM,
                &format!("# berth show: {}", shown.profiles.join(" + "))
            ),
            shown.toml
        ))
    }

    /// `berth profiles`: one line a profile, `*` before those berth.toml selects.
    pub(crate) fn profiles(&self, listed: &[ListedProfile]) -> io::Result<()> {
        if self.json {
            let document = json!({
                "schema_version": documents::SCHEMA_VERSION,
                "command": "profiles",
                "profiles": listed,
            });
            return write_stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&document).expect("serializes")
            ));
        }
        let width = listed
            .iter()
            .map(|profile| profile.name.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for profile in listed {
            let mark = if profile.selected { "*" } else { " " };
            let source = if profile.overrides_embedded {
                format!("{} (instead of the embedded one)", profile.source)
            } else {
                profile.source.clone()
            };
            out.push_str(&format!(
                "{mark} {:width$}  {}  {}\n",
                profile.name,
                clean(profile.description.as_deref().unwrap_or("")),
                self.paint(DIM, &format!("[{source}]")),
            ));
        }
        if listed.iter().any(|profile| profile.selected) {
            out.push_str("* selected by /etc/berth/berth.toml\n");
        }
        write_stdout(&out)
    }
}
