//! Logging: the tracing subscriber every service gets (its lines carry the
//! running handler call's context, see `call_context`), a stderr writer that
//! never panics (a failed write is dropped and counted), and a panic hook
//! that logs a panic as one structured event naming the handler.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::call_context::{current_fields, current_handler};

static DROPPED_WRITES: AtomicU64 = AtomicU64::new(0);

/// How many log writes failed (for example because stderr is a closed
/// pipe) and were dropped since start.
pub fn dropped_log_writes() -> u64 {
    DROPPED_WRITES.load(Ordering::Relaxed)
}

/// Writes `text` to stderr; a failure is counted, never a panic (unlike
/// `eprintln!`).
pub(crate) fn write_stderr(text: &str) {
    if std::io::stderr().write_all(text.as_bytes()).is_err() {
        DROPPED_WRITES.fetch_add(1, Ordering::Relaxed);
    }
}

/// stderr for tracing: every write reports success, failures are counted.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::io::stderr().write_all(buf).is_err() {
            DROPPED_WRITES.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Installs the default tracing subscriber: stderr, `RUST_LOG` filter
/// (default `info`), human-readable lines (colored only on a terminal), or
/// JSON lines when the environment variable `LOG_FORMAT` is `json`; and a
/// panic hook that logs panics as one event (message, location, handler)
/// instead of Rust's multi-line text. Does nothing when a subscriber is
/// already installed. Logging never panics: a write that fails (a closed
/// stderr) is dropped and counted ([`dropped_log_writes`]).
///
/// ```
/// telestion::init_logging();
/// tracing::info!("hello");
/// ```
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Stderr)
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = if json {
        let format = tracing_subscriber::fmt::format()
            .json()
            .with_current_span(false);
        builder
            .json()
            .event_format(WithCall {
                inner: format,
                json,
            })
            .try_init()
    } else {
        let format = tracing_subscriber::fmt::format();
        builder
            .event_format(WithCall {
                inner: format,
                json,
            })
            .try_init()
    };
    if installed.is_ok() {
        install_panic_hook();
    }
}

/// An event format that adds the running handler call's context to every
/// line logged during the call (see `call_context`): at the end of a text
/// line, or as the `"span"` object of a JSON line.
struct WithCall<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithCall<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(fields) = current_fields(self.json) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        match line.strip_suffix('}') {
            Some(object) if self.json => writeln!(writer, "{object},\"span\":{fields}}}"),
            _ => writeln!(writer, "{line}{fields}"),
        }
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = panic_message(info.payload());
        let message = crate::text::bounded(&message);
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        match current_handler() {
            Some(handler) => {
                tracing::error!(%handler, %location, panic = %message, "handler panicked")
            }
            None => tracing::error!(%location, panic = %message, "panicked"),
        }
    }));
}
