//! Logging: the tracing subscriber every service gets, a stderr writer that
//! never panics (a failed write is dropped and counted), and a panic hook
//! that logs a panic as one structured event naming the handler.

use std::cell::RefCell;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
        builder.json().with_current_span(false).try_init()
    } else {
        builder.try_init()
    };
    if installed.is_ok() {
        install_panic_hook();
    }
}

thread_local! {
    static CURRENT_HANDLER: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Polls a handler's future with its name recorded for the panic hook
/// (core and durable routes alike).
pub(crate) struct Scoped<'a, F> {
    pub(crate) future: F,
    pub(crate) name: &'a Arc<str>,
}

impl<F: std::future::Future + Unpin> std::future::Future for Scoped<'_, F> {
    type Output = F::Output;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let _scope = HandlerScope::enter(self.name);
        std::pin::Pin::new(&mut self.future).poll(cx)
    }
}

/// Records, while a handler's future is polled, which handler runs on this
/// thread (for the panic hook).
pub(crate) struct HandlerScope(Option<Arc<str>>);

impl HandlerScope {
    pub(crate) fn enter(name: &Arc<str>) -> HandlerScope {
        HandlerScope(CURRENT_HANDLER.with(|c| c.replace(Some(name.clone()))))
    }
}

impl Drop for HandlerScope {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT_HANDLER.with(|c| *c.borrow_mut() = previous);
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
        let handler = CURRENT_HANDLER
            .try_with(|c| c.borrow().as_deref().map(str::to_owned))
            .ok()
            .flatten();
        match handler {
            Some(handler) => {
                tracing::error!(%handler, %location, panic = %message, "handler panicked")
            }
            None => tracing::error!(%location, panic = %message, "panicked"),
        }
    }));
}
