//! Everything berth prints. Results (the plan, what apply did, validate's verdict) go to stdout,
//! as text for people or as one JSON document with `--json`; logs, warnings and errors go to
//! stderr. Colour only repeats what the markers already say, and only reaches a terminal.

#![allow(clippy::print_stdout, clippy::print_stderr)]

pub(crate) mod confirm;
pub(crate) mod json;
pub(crate) mod log;
mod profiles;
pub(crate) mod progress;
pub(crate) mod reference;
pub(crate) mod run_report;
pub(crate) mod time;

pub(crate) use log::init_logging;

use std::io::{self, IsTerminal, Write};

use anstyle::{AnsiColor, Style};
use serde_json::{Value as Json, json};

use run_report::LastRun;

use crate::{init, pause::Pause, watch::state::WatchState};

use crate::{
    cli::ColorChoice,
    doctor::{self, Check, Verdict},
    engine::{Entry, Mode, Report, Status},
    plan::{Action, Effect},
};

/// Whether a stream gets colour: `--color`, else a terminal without `NO_COLOR` whose `TERM` is
/// not `dumb` (a terminal that cannot show escape codes, as Emacs' shell sets it).
pub(crate) fn use_color(choice: ColorChoice, stream_is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            stream_is_terminal
                && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
                && std::env::var_os("TERM").is_none_or(|term| term != "dumb")
        }
    }
}

/// What a report tells: a converge (`plan`, `apply`) or a destroy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Converge,
    Destroy,
}

pub(crate) struct Printer {
    json: bool,
    color: bool,
}

pub(crate) const ADD: Style = AnsiColor::Green.on_default();
pub(crate) const CHANGE: Style = AnsiColor::Yellow.on_default();
pub(crate) const DESTROY: Style = AnsiColor::Red.on_default();
const REPLACE: Style = AnsiColor::Magenta.on_default();
pub(crate) const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();

impl Printer {
    pub(crate) fn new(json: bool, color: ColorChoice) -> Self {
        Self {
            json,
            color: !json && use_color(color, io::stdout().is_terminal()),
        }
    }

    fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_owned()
        }
    }

    /// Prints the outcome of `plan` or `apply`.
    pub(crate) fn report(
        &self,
        report: &Report,
        profiles: &[String],
        source: Option<&crate::source::SourceRun>,
    ) -> io::Result<()> {
        self.report_of(report, profiles, Purpose::Converge, source)
    }

    /// Prints the outcome of `plan --destroy` or `destroy`: the same, with its own last line.
    pub(crate) fn destroy_report(&self, report: &Report, profiles: &[String]) -> io::Result<()> {
        self.report_of(report, profiles, Purpose::Destroy, None)
    }

    fn report_of(
        &self,
        report: &Report,
        profiles: &[String],
        purpose: Purpose,
        source: Option<&crate::source::SourceRun>,
    ) -> io::Result<()> {
        let text = if self.json {
            let mut document = json!({
                "schema_version": json::SCHEMA_VERSION,
                "command": report.mode,
                "profiles": profiles,
                "changes": json::changes(report),
                "warnings": report.notices,
                "errors": json::errors(report),
                "summary": json::summary(report),
            });
            if let Some(source) = source {
                document["source"] = serde_json::to_value(source).expect("serializes");
            }
            format!(
                "{}\n",
                serde_json::to_string_pretty(&document).expect("a report serializes")
            )
        } else {
            // Every run names what it applied, first (issue 20).
            let named = source
                .map(|source| format!("{}\n", clean(&source.describe())))
                .unwrap_or_default();
            format!("{named}{}", self.human_report(report, purpose))
        };
        write_stdout(&text)?;
        if !self.json {
            for failure in &report.failures {
                print_error(
                    &failure.error,
                    use_color(ColorChoice::Auto, io::stderr().is_terminal()),
                );
            }
        }
        Ok(())
    }

    /// Prints the plan apply asks about, as text; with `--json` the question alone lists the
    /// changes, so stdout keeps one document (what apply then did).
    pub(crate) fn review(&self, report: &Report) -> io::Result<()> {
        if self.json {
            return Ok(());
        }
        write_stdout(&self.human_report(report, Purpose::Converge))
    }

    fn human_report(&self, report: &Report, purpose: Purpose) -> String {
        let width = report
            .entries
            .iter()
            .map(|entry| entry.change.id.to_string().len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for entry in &report.entries {
            self.human_entry(&mut out, entry, width);
        }
        if !report.entries.is_empty() {
            out.push('\n');
        }
        let summary = report.summary();
        let line = match report.mode {
            _ if purpose == Purpose::Destroy && !report.has_changes() && !report.failed() => {
                "Nothing to destroy: nothing berth made is left here.".to_owned()
            }
            Mode::Plan if !report.has_changes() && !report.failed() => {
                "No changes: the host matches the profile.".to_owned()
            }
            Mode::Plan => {
                let mut line = format!(
                    "Plan: {} to add, {} to change, {} to destroy",
                    summary.add, summary.change, summary.destroy
                );
                // Counted apart: a refused change is not one apply will make.
                if report.refused() > 0 {
                    line.push_str(&format!(", {} refused", report.refused()));
                }
                line.push('.');
                line
            }
            Mode::Apply if !report.has_changes() && !report.failed() => {
                "Nothing to do: the host matches the profile.".to_owned()
            }
            Mode::Apply => {
                let outcome = match (purpose, report.failed()) {
                    (Purpose::Converge, true) => "Apply failed",
                    (Purpose::Converge, false) => "Apply complete",
                    (Purpose::Destroy, true) => "Destroy failed",
                    (Purpose::Destroy, false) => "Destroy complete",
                };
                let mut line = format!(
                    "{outcome}: {} added, {} changed, {} destroyed",
                    summary.add, summary.change, summary.destroy
                );
                if report.failed() {
                    line.push_str(&format!(", {} failed", report.failures.len()));
                }
                if report.waiting() > 0 {
                    line.push_str(&format!(", {} wait for a fleet slot", report.waiting()));
                }
                line.push('.');
                line
            }
        };
        out.push_str(&self.paint(BOLD, &line));
        out.push('\n');
        out
    }

    fn human_entry(&self, out: &mut String, entry: &Entry, width: usize) {
        let change = &entry.change;
        if !change.action.changes_host() {
            // A note (a volume kept): what it is and why, no marker, since nothing changes.
            out.push_str(&format!(
                "{:<width$}  {}\n",
                change.id.to_string(),
                self.paint(DIM, &format!("({})", clean(&change.detail))),
            ));
            return;
        }
        let style = action_style(change.action);
        let status = match entry.status {
            // A refused change says so on its own `refused:` line.
            Status::Planned | Status::Done | Status::Refused => String::new(),
            Status::Failed => format!("  {}", self.paint(DESTROY, "(failed)")),
            Status::Skipped => format!("  {}", self.paint(DIM, "(skipped)")),
            Status::Waiting => format!("  {}", self.paint(DIM, "(waits for a fleet slot)")),
        };
        // Padded before it is painted: escape codes have no width on the screen, but
        // `format!` would count them, and the columns would not line up in colour.
        out.push_str(&format!(
            "{:<width$}  {} {} {}{status}\n",
            change.id.to_string(),
            self.paint(style, &format!("{:>3}", change.action.marker())),
            self.paint(style, &format!("{:<9}", change.action.as_str())),
            clean(&change.detail),
        ));
        if let Some(diff) = &change.diff {
            for line in diff.lines() {
                let style = if line.starts_with("+++") || line.starts_with("---") {
                    BOLD
                } else if line.starts_with('+') {
                    ADD
                } else if line.starts_with('-') {
                    DESTROY
                } else if line.starts_with("@@") {
                    DIM
                } else {
                    Style::new()
                };
                out.push_str(&format!("    {}\n", self.paint(style, &clean(line))));
            }
        } else {
            for field in &change.fields {
                out.push_str(&format!(
                    "    {}: {} → {}\n",
                    field.path,
                    clean(&show_value(field.before.as_ref())),
                    clean(&show_value(field.after.as_ref())),
                ));
            }
        }
        for warning in &change.warnings {
            out.push_str(&format!(
                "    {} {}\n",
                self.paint(CHANGE, "warning:"),
                clean(warning)
            ));
        }
        if let Some(reason) = &change.refused {
            out.push_str(&format!(
                "    {} {}\n",
                self.paint(DESTROY, "refused:"),
                clean(reason)
            ));
        }
    }

    /// Prints `berth status`: the last run, how long ago, and what it changed.
    pub(crate) fn status(
        &self,
        last_run: Option<&LastRun>,
        watch: Option<&WatchState>,
        pause: Option<&Pause>,
    ) -> io::Result<()> {
        let pause_line = pause
            .map(|pause| format!("paused:    {}\n", clean(&pause.describe())))
            .unwrap_or_default();
        let watch_json = watch.map(|state| {
            let mut value = serde_json::to_value(state).expect("serializes");
            value["running"] = Json::from(state.running());
            value
        });
        let watch_line = watch.map(watch_line);
        let Some(run) = last_run else {
            let text = if self.json {
                format!(
                    "{}\n",
                    json!({"schema_version": json::SCHEMA_VERSION, "command": "status", "last_run": null, "watch": watch_json, "paused": pause})
                )
            } else {
                format!(
                    "berth has not applied on this host yet.\n{pause_line}{}",
                    watch_line.unwrap_or_default()
                )
            };
            return write_stdout(&text);
        };
        if self.json {
            let document = json!({"schema_version": json::SCHEMA_VERSION, "command": "status", "last_run": run, "watch": watch_json, "paused": pause});
            return write_stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&document).expect("serializes")
            ));
        }
        let ago = run
            .started()
            .map(|started| time::ago(jiff::Timestamp::now().duration_since(started).as_secs()))
            .unwrap_or_else(|| "at an unknown time".to_owned());
        let outcome = if run.success {
            self.paint(ADD, "converged")
        } else {
            self.paint(DESTROY, "failed")
        };
        let mut out = format!(
            "last run:  {} ({ago}), took {:.1} s, berth {}\nresult:    {outcome}\nprofiles:  {}\n",
            time::local_time(&run.started_at),
            run.duration_seconds,
            run.berth_version,
            run.profiles.join(", "),
        );
        out.push_str(&pause_line);
        if let Some(source) = &run.source {
            out.push_str(&format!("{}\n", clean(&source.describe())));
        }
        if let Some(fleet) = &run.fleet {
            out.push_str(&fleet_line(fleet));
        }
        if !run.success {
            out.push_str(&format!("converged: {}\n", last_success(run)));
        }
        if let Some(line) = watch_line {
            out.push_str(&line);
        }
        for runner in &run.runners {
            out.push_str(&runner_line(runner, jiff::Timestamp::now()));
        }
        if run.changes.is_empty() {
            out.push_str("changes:   none, the host matched its profiles\n");
        } else {
            out.push_str("changes:\n");
            for change in &run.changes {
                let text = |key: &str| change[key].as_str().unwrap_or_default().to_owned();
                let status = match text("status").as_str() {
                    "done" => String::new(),
                    other => format!("  ({other})"),
                };
                out.push_str(&format!(
                    "  {}  {} {}{status}\n",
                    text("id"),
                    text("action"),
                    clean(&text("detail"))
                ));
            }
        }
        for error in &run.errors {
            let id = error["id"]
                .as_str()
                .map(|id| format!("{id}: "))
                .unwrap_or_default();
            out.push_str(&format!(
                "{} {id}{}\n",
                self.paint(DESTROY, "error:"),
                clean(error["message"].as_str().unwrap_or_default())
            ));
            for cause in error["causes"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "  caused by: {}\n",
                    clean(cause.as_str().unwrap_or_default())
                ));
            }
        }
        write_stdout(&out)
    }

    /// Prints `berth doctor`'s checklist.
    pub(crate) fn doctor(&self, checks: &[Check]) -> io::Result<()> {
        let healthy = doctor::healthy(checks);
        if self.json {
            let document = json!({"schema_version": json::SCHEMA_VERSION, "command": "doctor", "healthy": healthy, "checks": checks});
            return write_stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&document).expect("serializes")
            ));
        }
        let width = checks
            .iter()
            .map(|check| check.name.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        let mut stage = None;
        for check in checks {
            if stage != Some(check.stage) {
                if stage.is_some() {
                    out.push('\n');
                }
                out.push_str(&self.paint(BOLD, check.stage.heading()));
                out.push('\n');
                stage = Some(check.stage);
            }
            let (label, style) = match check.verdict {
                Verdict::Ok => ("ok", ADD),
                Verdict::Warn => ("warn", CHANGE),
                Verdict::Fail => ("FAIL", DESTROY),
                Verdict::Skip => ("skip", DIM),
            };
            out.push_str(&format!(
                "{}  {:<width$}  {}\n",
                self.paint(style, &format!("{label:<4}")),
                check.name,
                clean(&check.detail)
            ));
            if let Some(fix) = &check.fix {
                out.push_str(&format!("      {:<width$}  fix: {}\n", "", clean(fix)));
            }
        }
        out.push('\n');
        out.push_str(&self.paint(
            BOLD,
            if healthy {
                "Healthy: every hard requirement is met."
            } else {
                "Unhealthy: fix what FAILs above."
            },
        ));
        out.push('\n');
        write_stdout(&out)
    }

    /// Prints what `berth init` wrote and what to do next.
    pub(crate) fn initialized(&self, written: &init::Written) -> io::Result<()> {
        let steps = init::next_steps(written);
        let files: Vec<String> = written.files.iter().map(ToString::to_string).collect();
        if self.json {
            let document = json!({
                "schema_version": json::SCHEMA_VERSION,
                "command": "init",
                "written": files,
                "next_steps": steps,
            });
            return write_stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&document).expect("serializes")
            ));
        }
        let mut out = String::new();
        for file in &files {
            out.push_str(&format!("{} {file}\n", self.paint(ADD, "wrote")));
        }
        if written.kept_berth_toml {
            out.push_str("kept  /etc/berth/berth.toml (it already names these profiles)\n");
        }
        out.push_str(&format!("\n{}\n", self.paint(BOLD, "Next steps:")));
        for (number, step) in steps.iter().enumerate() {
            out.push_str(&format!("  {}. {step}\n", number + 1));
        }
        write_stdout(&out)
    }

    /// Reports an error that ended the run before any resource was looked at.
    pub(crate) fn fatal(&self, command: &str, error: &anyhow::Error) {
        if self.json {
            let document = json!({
                "schema_version": json::SCHEMA_VERSION,
                "command": command,
                "errors": [json::error(None, error)],
                "diagnostics": profiles::diagnostics(error.downcast_ref(), &[]),
            });
            let _ = write_stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&document).expect("serializes")
            ));
        }
        print_error(
            error,
            use_color(ColorChoice::Auto, io::stderr().is_terminal()),
        );
    }
}

/// `berth watch`'s line in `status`.
/// `status`'s `fleet:` line: the group, whether a slot is held, what waits for one.
fn fleet_line(fleet: &crate::fleet::FleetRun) -> String {
    let held = if fleet.slot_held {
        "holds a slot"
    } else {
        "holds no slot"
    };
    let waiting = if fleet.waiting.is_empty() {
        "nothing waits".to_owned()
    } else {
        format!("waiting for a slot: {}", fleet.waiting.join(", "))
    };
    format!(
        "fleet:     group {}, {held}; {}\n",
        clean(&fleet.group),
        clean(&waiting)
    )
}

fn watch_line(state: &WatchState) -> String {
    if !state.running() {
        return "watch:     not running (it stopped, or was killed)\n".to_owned();
    }
    let last = state
        .last_heal_seconds
        .map(|seconds| format!(", the last in {seconds:.2} s"))
        .unwrap_or_default();
    format!(
        "watch:     running since {} (pid {}): {} converges, {} heals{last}\n",
        time::local_time(&state.started_at),
        state.pid,
        state.converges,
        state.heals
    )
}

/// A runner's line in `status`: its system ID and when its token expires, as of `now`.
fn runner_line(runner: &run_report::RunnerReport, now: jiff::Timestamp) -> String {
    let system_id = runner.system_id.as_deref().unwrap_or("none yet");
    let expiry = match runner.token_expires_at {
        None => "token never expires".to_owned(),
        Some(at) => {
            let seconds = at.duration_since(now).as_secs();
            let when = if seconds < 0 {
                format!("EXPIRED {} ago", time::span(-seconds))
            } else {
                format!("in {}", time::span(seconds))
            };
            format!(
                "token expires {} ({when})",
                time::local_time(&at.to_string())
            )
        }
    };
    format!(
        "runner:    {}: system_id {}, {expiry}\n",
        clean(&runner.runner),
        clean(system_id)
    )
}

/// When the host last converged, for a failed run's status: local time and how long ago.
fn last_success(run: &LastRun) -> String {
    let Some(at) = run.last_success_at.as_deref() else {
        return "never on this host yet".to_owned();
    };
    let ago = at.parse::<jiff::Timestamp>().map_or_else(
        |_| String::new(),
        |at| {
            let seconds = jiff::Timestamp::now().duration_since(at).as_secs();
            format!(" ({})", time::ago(seconds))
        },
    );
    format!("{}{ago}", time::local_time(at))
}

fn action_style(action: Action) -> Style {
    match action.effect() {
        Effect::Add => ADD,
        Effect::Change => CHANGE,
        Effect::Destroy => DESTROY,
        Effect::Replace => REPLACE,
        Effect::Recover => DESTROY.bold(),
        Effect::Note => DIM,
    }
}

fn show_value(value: Option<&Json>) -> String {
    value.map_or_else(|| "(absent)".to_owned(), Json::to_string)
}

/// Makes text from other programs safe for a terminal: control characters (escape sequences
/// in a docker error, say) are shown escaped instead of being interpreted.
pub(crate) fn clean(text: &str) -> String {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Writes an error and its causes to stderr, one cause per line; to the journal, as one line
/// at error priority (`<3>error: what: cause: cause`), so the journal keeps it as one entry.
pub(crate) fn print_error(error: &anyhow::Error, color: bool) {
    if log::stderr_is_journal() {
        let causes: Vec<String> = error
            .chain()
            .map(|cause| log::one_line(&clean(&cause.to_string())))
            .collect();
        let line = format!("<3>error: {}\n", causes.join(": "));
        let _ = io::stderr().lock().write_all(line.as_bytes());
        return;
    }
    let mut text = String::new();
    let label = if color {
        format!(
            "{}error:{}",
            DESTROY.bold().render(),
            DESTROY.bold().render_reset()
        )
    } else {
        "error:".to_owned()
    };
    let mut chain = error.chain();
    if let Some(top) = chain.next() {
        text.push_str(&format!("{label} {}\n", clean(&top.to_string())));
    }
    for cause in chain {
        text.push_str(&format!("  caused by: {}\n", clean(&cause.to_string())));
    }
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

fn write_stdout(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// A reader that went away (`berth plan | head`) is not an error worth reporting.
pub(crate) fn ignore_broken_pipe(result: io::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_from_other_programs_are_shown_not_run() {
        assert_eq!(clean("a\u{1b}[31mred"), "a\\u{1b}[31mred");
        assert_eq!(clean("plain\nlines"), "plain\nlines");
    }

    #[test]
    fn color_follows_the_choice_and_the_terminal() {
        assert!(use_color(ColorChoice::Always, false));
        assert!(!use_color(ColorChoice::Never, true));
        assert!(!use_color(ColorChoice::Auto, false));
    }
}
