//! A program run inside a running container through the Engine API (issue 24): `POST
//! /containers/NAME/exec`, then `POST /exec/ID/start` attached (bollard demultiplexes the
//! hijacked stream into stdout and stderr), then `GET /exec/ID/json` for its exit code. What
//! the program prints is hostile (a job controls a dind daemon's images and what its CLI says
//! of them): stdout is read up to a limit and the exec abandoned past it, stderr kept up to
//! 64 KiB, the rest dropped, as `host::exec::run_bounded` reads a program on the host.

use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt as _;

use super::{Engine, EngineError};

/// How much of stderr is kept: its first words say why.
const STDERR_KEPT: usize = 64 * 1024;

/// What a program run in a container left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExecOutput {
    /// Its exit code; `None` when Docker does not know it (the exec still ran as it was read).
    pub code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Why a program run in a container gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExecError {
    #[error("`{command}` in `{container}` printed more than {limit} bytes and was stopped")]
    TooLong {
        command: String,
        container: String,
        limit: u64,
    },
    #[error("`{command}` in `{container}` did not finish within {} s", timeout.as_secs())]
    TimedOut {
        command: String,
        container: String,
        timeout: Duration,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Engine {
    /// Runs `command` in `container` with `env` (`KEY=value`) added to its environment; its
    /// output read bounded by `limit` (stdout); the whole exec within `timeout`. A non-zero
    /// exit is an answer ([`ExecOutput::code`]), not an error.
    pub(crate) fn exec(
        &self,
        container: &str,
        command: &[&str],
        env: &[&str],
        timeout: Duration,
        limit: u64,
    ) -> Result<ExecOutput, ExecError> {
        let shown = command.join(" ");
        // A script (doctor's probe) is shown by its first line only.
        let logged: String = shown
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(80)
            .collect();
        // The exec may rightly run for minutes (a pull inside a dind): the client's query
        // timeout must not cut its stream; `timeout` ends it instead.
        let client = self.client()?.with_timeout(timeout);
        tracing::debug!(
            "asking the Docker daemon at {}: `POST /containers/…/exec` of `{logged}`",
            self.address.host
        );
        let options = CreateExecOptions {
            cmd: Some(command.to_vec()),
            env: Some(env.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..CreateExecOptions::default()
        };
        let run = async {
            let id = client.create_exec(container, options).await?.id;
            let started = client
                .start_exec(
                    &id,
                    Some(StartExecOptions {
                        detach: false,
                        tty: false,
                        output_capacity: None,
                    }),
                )
                .await?;
            let mut output = ExecOutput::default();
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            if let StartExecResults::Attached { output: stream, .. } = started {
                let mut stream = stream;
                while let Some(frame) = stream.next().await {
                    match frame? {
                        bollard::container::LogOutput::StdOut { message }
                        | bollard::container::LogOutput::Console { message } => {
                            stdout.extend_from_slice(&message);
                            if stdout.len() as u64 > limit {
                                return Ok(None);
                            }
                        }
                        bollard::container::LogOutput::StdErr { message } => {
                            let room = STDERR_KEPT.saturating_sub(stderr.len());
                            stderr.extend_from_slice(&message[..message.len().min(room)]);
                        }
                        bollard::container::LogOutput::StdIn { .. } => {}
                    }
                }
            }
            // The stream ends as the program exits; Docker may take a moment to record how.
            for _ in 0..50 {
                let inspected = client.inspect_exec(&id).await?;
                if inspected.running != Some(true) {
                    output.code = inspected.exit_code;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            output.stdout = String::from_utf8_lossy(&stdout).into_owned();
            output.stderr = String::from_utf8_lossy(&stderr).into_owned();
            Ok::<_, bollard::errors::Error>(Some(output))
        };
        let finished = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, run).await })
            .map_err(|_| ExecError::TimedOut {
                command: shown.clone(),
                container: container.to_owned(),
                timeout,
            })?
            .map_err(|error| match error {
                bollard::errors::Error::RequestTimeoutError => ExecError::TimedOut {
                    command: shown.clone(),
                    container: container.to_owned(),
                    timeout,
                },
                other => ExecError::Engine(self.error(other)),
            })?;
        finished.ok_or_else(|| ExecError::TooLong {
            command: shown,
            container: container.to_owned(),
            limit,
        })
    }
}
