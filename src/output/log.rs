//! Logs on stderr: one line per event, `warning:`/`error:` prefixes, no timestamps (the journal
//! adds its own), and never a secret, whatever `RUST_LOG` asks for.

use std::io::{self, IsTerminal};

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
    let ansi = use_color(color, io::stderr().is_terminal());
    let subscriber = fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .event_format(LogLine { ansi })
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

struct LogLine {
    ansi: bool,
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
