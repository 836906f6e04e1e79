//! Runs external programs (docker, modprobe, systemctl, the profile's restart/reload commands)
//! through duct. Every failure keeps the program, its arguments, the exit status and the trimmed
//! stderr, so an error says exactly what was run. Nothing here decides whether a non-zero exit is
//! a failure: callers that treat it as an answer use [`run_unchecked`].

use std::{fmt, io, time::Duration};

use serde::{Deserialize, Serialize};

/// A program and its arguments, as written in a profile (`restart = ["systemctl", "restart",
/// "docker"]`) or built by berth. Never holds a secret: tokens travel over HTTP or stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct CommandLine {
    pub program: String,
    pub args: Vec<String>,
}

impl CommandLine {
    pub fn new<I, S>(program: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            program: program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<Vec<String>> for CommandLine {
    type Error = String;

    fn try_from(mut argv: Vec<String>) -> Result<Self, String> {
        if argv.is_empty() || argv[0].trim().is_empty() {
            return Err("a command is a non-empty list: [\"program\", \"arg\", ...]".into());
        }
        let program = argv.remove(0);
        Ok(Self {
            program,
            args: argv,
        })
    }
}

impl From<CommandLine> for Vec<String> {
    fn from(command: CommandLine) -> Self {
        std::iter::once(command.program)
            .chain(command.args)
            .collect()
    }
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for arg in &self.args {
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                write!(f, " {arg:?}")?;
            } else {
                write!(f, " {arg}")?;
            }
        }
        Ok(())
    }
}

/// What a finished program left behind.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// The trimmed stderr of a failed program, shown as the innermost cause of an error.
#[derive(Debug)]
pub(crate) struct Stderr(pub String);

impl fmt::Display for Stderr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stderr {}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    #[error("`{program}` is not installed (not found on PATH)")]
    NotFound { program: String },
    #[error("failed to run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` did not finish within {} s and was killed", timeout.as_secs())]
    TimedOut { command: String, timeout: Duration },
    #[error("`{command}` exited with {}", describe_code(*code))]
    Failed {
        command: String,
        code: Option<i32>,
        #[source]
        stderr: Option<Stderr>,
    },
}

fn describe_code(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("status {code}"),
        None => "a signal".to_owned(),
    }
}

impl CommandError {
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

/// How long any one external program may run before berth gives up on it. A wedged `docker`
/// call must not hang a systemd timer run forever.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `command` and treats a non-zero exit as an error.
pub(crate) fn run(command: &CommandLine) -> Result<Output, CommandError> {
    run_with_timeout(command, DEFAULT_TIMEOUT)
}

pub(crate) fn run_with_timeout(
    command: &CommandLine,
    timeout: Duration,
) -> Result<Output, CommandError> {
    checked(command, run_unchecked_with_timeout(command, timeout)?)
}

/// A non-zero exit as the error that names the command and its stderr.
pub(crate) fn checked(command: &CommandLine, output: Output) -> Result<Output, CommandError> {
    if output.success() {
        Ok(output)
    } else {
        let stderr = output.stderr.trim();
        Err(CommandError::Failed {
            command: command.to_string(),
            code: output.code,
            stderr: (!stderr.is_empty()).then(|| Stderr(stderr.to_owned())),
        })
    }
}

/// Runs `command` and returns its output whatever the exit status: for programs whose
/// non-zero exit is an answer (`docker network inspect` on a missing network).
pub(crate) fn run_unchecked(command: &CommandLine) -> Result<Output, CommandError> {
    run_unchecked_with_timeout(command, DEFAULT_TIMEOUT)
}

pub(crate) fn run_unchecked_with_timeout(
    command: &CommandLine,
    timeout: Duration,
) -> Result<Output, CommandError> {
    run_unchecked_reporting(command, timeout, |_| {})
}

/// Whom a program that may run long tells how far it got, and how often. How progress is shown
/// and at what pace is the caller's business, not this layer's: `output::progress` makes every
/// `FnMut(Duration)` one, reporting at its interval, so a caller passes a closure.
pub(crate) trait Progress {
    /// The time between two reports.
    fn interval(&self) -> Duration;
    /// Called with the time elapsed, once per interval while the program runs.
    fn report(&mut self, elapsed: Duration);
}

/// [`run_with_timeout`] for a program that may run long (a restart, a drain): `progress` is told
/// the time elapsed once per its interval while it runs.
pub(crate) fn run_reporting(
    command: &CommandLine,
    timeout: Duration,
    progress: impl Progress,
) -> Result<Output, CommandError> {
    checked(
        command,
        run_unchecked_reporting(command, timeout, progress)?,
    )
}

fn run_unchecked_reporting(
    command: &CommandLine,
    timeout: Duration,
    mut progress: impl Progress,
) -> Result<Output, CommandError> {
    tracing::debug!("running `{command}`");
    let handle = duct::cmd(&command.program, &command.args)
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .start()
        .map_err(|source| spawn_error(command, source))?;
    let started = std::time::Instant::now();
    let interval = progress.interval();
    let mut due = interval;
    let output = loop {
        let left = timeout.saturating_sub(started.elapsed());
        let finished = handle
            .wait_timeout(left.min(due.saturating_sub(started.elapsed())))
            .map_err(|source| spawn_error(command, source))?;
        if let Some(output) = finished {
            break output;
        }
        if started.elapsed() >= timeout {
            let _ = handle.kill();
            return Err(CommandError::TimedOut {
                command: command.to_string(),
                timeout,
            });
        }
        let elapsed = started.elapsed();
        if elapsed >= due {
            // At most one report per interval, however long the wait for the child took.
            while due <= elapsed {
                due += interval;
            }
            progress.report(elapsed);
        }
    };
    Ok(Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Runs `command` with `env` added, its output (stdout included) going to berth's stderr as it
/// comes: for a package manager, whose minutes of work the operator should see progress on and
/// whose own words on failure they read there. stdout stays berth's report. Never prompts: stdin
/// is closed.
pub(crate) fn run_with_progress(
    command: &CommandLine,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), CommandError> {
    tracing::debug!("running `{command}`");
    let mut expression = duct::cmd(&command.program, &command.args)
        .stdin_null()
        .stdout_to_stderr()
        .unchecked();
    for (key, value) in env {
        expression = expression.env(key, value);
    }
    let handle = expression
        .start()
        .map_err(|source| spawn_error(command, source))?;
    let finished = handle
        .wait_timeout(timeout)
        .map_err(|source| spawn_error(command, source))?;
    let Some(output) = finished else {
        let _ = handle.kill();
        return Err(CommandError::TimedOut {
            command: command.to_string(),
            timeout,
        });
    };
    if output.status.success() {
        Ok(())
    } else {
        Err(CommandError::Failed {
            command: command.to_string(),
            code: output.status.code(),
            stderr: None,
        })
    }
}

/// The first executable `program` in PATH's directories, as a shell finds it: nothing is run.
pub(crate) fn on_path(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

pub(crate) fn spawn_error(command: &CommandLine, source: io::Error) -> CommandError {
    if source.kind() == io::ErrorKind::NotFound {
        CommandError::NotFound {
            program: command.program.clone(),
        }
    } else {
        CommandError::Spawn {
            command: command.to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_command_keeps_status_and_stderr() {
        let command = CommandLine::new("sh", ["-c", "echo oops >&2; exit 3"]);
        let error = run(&command).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`sh -c \"echo oops >&2; exit 3\"` exited with status 3"
        );
        assert!(
            matches!(&error, CommandError::Failed { stderr: Some(Stderr(said)), .. } if said == "oops"),
            "{error:?}"
        );
    }

    #[test]
    fn missing_program_is_reported_as_not_installed() {
        let error = run(&CommandLine::new("berth-no-such-program", ["x"])).unwrap_err();
        assert!(error.is_not_found(), "{error}");
    }

    #[test]
    fn unchecked_returns_nonzero_exit_as_an_answer() {
        let output = run_unchecked(&CommandLine::new("sh", ["-c", "echo out; exit 1"])).unwrap();
        assert_eq!((output.code, output.stdout.as_str()), (Some(1), "out\n"));
    }

    #[test]
    fn a_hanging_program_is_killed_at_the_timeout() {
        let command = CommandLine::new("sleep", ["5"]);
        let error = run_with_timeout(&command, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(error, CommandError::TimedOut { .. }), "{error}");
    }

    #[test]
    fn a_long_program_reports_while_it_runs() {
        // One report is due every interval; a short program reports none and keeps
        // its output and status.
        let mut reports = 0;
        let command = CommandLine::new("sh", ["-c", "echo done; exit 2"]);
        let error = run_reporting(&command, Duration::from_secs(5), |_| reports += 1).unwrap_err();
        assert_eq!(reports, 0);
        assert!(
            matches!(error, CommandError::Failed { code: Some(2), .. }),
            "{error}"
        );
    }

    #[test]
    fn progress_runs_with_its_environment_and_reports_the_exit() {
        let command = CommandLine::new("sh", ["-c", "test \"$BERTH_T\" = yes"]);
        assert!(run_with_progress(&command, &[("BERTH_T", "yes")], DEFAULT_TIMEOUT).is_ok());
        let error = run_with_progress(&command, &[], DEFAULT_TIMEOUT).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("`{command}` exited with status 1")
        );
    }

    #[test]
    fn command_line_rejects_an_empty_list() {
        assert!(CommandLine::try_from(Vec::<String>::new()).is_err());
    }
}
