//! Logs on stderr: one line per event, `warning:`/`error:` prefixes, no timestamps (the journal
//! adds its own), and never a secret, whatever `RUST_LOG` asks for. When stderr is the journal,
//! each line starts with its sd-daemon priority (`<3>` error, `<4>` warning, `<6>` info, `<7>`
//! debug), so `journalctl -p err` finds berth's errors, and stays one line, so one event is one
//! journal entry.

use std::{
    io::{self, IsTerminal},
    sync::OnceLock,
};

use anstyle::Style;

use super::{CHANGE, DESTROY, DIM, use_color};
use crate::cli::ColorChoice;

/// Sets up logging to stderr: one line per event, `warning:`/`error:` prefixes, no timestamps
/// (the journal adds its own). `-q`/`-v` pick the level; `RUST_LOG` overrides both.
pub(crate) fn init_logging(quiet: u8, verbose: u8, color: ColorChoice) {
    use tracing_subscriber::{EnvFilter, fmt};
    let level = match (quiet, verbose) {
        (0, 0) => "info",
        (0, 1) => "debug",
        (0, _) => "trace",
        (1, _) => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("berth={level}")));
    let journal = stderr_is_journal();
    let ansi = !journal && use_color(color, io::stderr().is_terminal());
    let subscriber = fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .event_format(LogLine { ansi, journal })
        .finish();
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        // ureq and rustls log through the `log` crate, and below info they dump HTTP
        // exchanges byte by byte: runner tokens, the access token's header, cache keys. No
        // `RUST_LOG` lets them through (issue 9 case 7); berth's own debug logs name what it
        // runs and never a secret.
        let _ = tracing_log::LogTracer::builder()
            .with_max_level(log::LevelFilter::Info)
            .init();
    }
}

/// Whether stderr is connected to the journal: systemd sets `JOURNAL_STREAM` to the device and
/// inode of the stream it gave the service, and a child whose stderr was redirected elsewhere
/// inherits the variable but not the stream (sd-daemon(3) says to compare them).
pub(crate) fn stderr_is_journal() -> bool {
    static JOURNAL: OnceLock<bool> = OnceLock::new();
    *JOURNAL.get_or_init(|| {
        let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Some((device, inode)) = value.to_str().and_then(|value| value.split_once(':')) else {
            return false;
        };
        nix::sys::stat::fstat(io::stderr())
            .is_ok_and(|stat| stat.st_dev.to_string() == device && stat.st_ino.to_string() == inode)
    })
}

/// The sd-daemon prefix of a line at `level` (sd-daemon(3): `<3>` SD_ERR ... `<7>` SD_DEBUG).
pub(crate) fn journal_priority(level: tracing::Level) -> &'static str {
    use tracing::Level;
    match level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        Level::DEBUG | Level::TRACE => "<7>",
    }
}

struct LogLine {
    ansi: bool,
    /// stderr is the journal: priority prefixes, and one line per event.
    journal: bool,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for LogLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing::Level;
        let (prefix, style) = match *event.metadata().level() {
            Level::ERROR => ("error: ", DESTROY),
            Level::WARN => ("warning: ", CHANGE),
            Level::INFO => ("", Style::new()),
            Level::DEBUG => ("debug: ", DIM),
            Level::TRACE => ("trace: ", DIM),
        };
        if self.journal {
            // Fields first into a string, so a message that spans lines (a docker error quoted
            // whole) still makes one journal entry at its own priority.
            let mut fields = String::new();
            context.field_format().format_fields(
                tracing_subscriber::fmt::format::Writer::new(&mut fields),
                event,
            )?;
            let priority = journal_priority(*event.metadata().level());
            return writeln!(writer, "{priority}{prefix}{}", one_line(&fields));
        }
        if self.ansi && !prefix.is_empty() {
            write!(writer, "{}{prefix}{}", style.render(), style.render_reset())?;
        } else {
            write!(writer, "{prefix}")?;
        }
        context
            .field_format()
            .format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Text on one line: each line break and the indentation after it become one space.
pub(crate) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
