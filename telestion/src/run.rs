//! What generated `main` calls: the tokio runtime, logging, start,
//! start-up code, handler subscription, signals and drain; plus the
//! process-level pieces usable by hand ([`init_logging`]).

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use crate::dispatch::Route;
use crate::error::StartError;
use crate::service::{Options, Service};

/// Installs the default tracing subscriber: stderr, `RUST_LOG` filter
/// (default `info`), human-readable lines (colored only on a terminal), or
/// JSON lines when the environment variable `LOG_FORMAT` is `json`. Does
/// nothing when a subscriber is already installed.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.try_init()
    };
}

/// What start-up code (the body of `main`) may return: `()` or
/// `Result<(), E>` with `E: Display`. An error fails the start.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a `#[telestion::service]` main",
    note = "return `()` or `Result<(), E>` where `E: Display`"
)]
pub trait SetupResult {
    /// `Err` with the message when the start-up code failed.
    fn into_result(self) -> Result<(), String>;
}

impl SetupResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> SetupResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// SIGINT and SIGTERM, caught from the moment the service starts (a signal
/// that arrives during start-up code is handled once serving begins).
pub(crate) struct Signals {
    #[cfg(unix)]
    streams: tokio::sync::Mutex<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    pub(crate) fn new() -> Result<Signals, StartError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let register = |kind: SignalKind, name: &str| {
                signal(kind).map_err(|e| StartError::Runtime(format!("cannot handle {name}: {e}")))
            };
            Ok(Signals {
                streams: tokio::sync::Mutex::new((
                    register(SignalKind::interrupt(), "SIGINT")?,
                    register(SignalKind::terminate(), "SIGTERM")?,
                )),
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// Waits for the next signal; returns its name.
    pub(crate) async fn next(&self) -> &'static str {
        #[cfg(unix)]
        {
            let mut streams = self.streams.lock().await;
            let (interrupt, terminate) = &mut *streams;
            tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Signal handlers registered by [`run`] before start-up, so that a signal
/// during start-up code is not lost (and does not kill the process without a
/// drain). Services started by hand register theirs in `wait_for_shutdown`,
/// so until then SIGINT keeps its default action.
static EARLY_SIGNALS: std::sync::Mutex<Option<std::sync::Arc<Signals>>> =
    std::sync::Mutex::new(None);

pub(crate) fn take_early_signals() -> Option<std::sync::Arc<Signals>> {
    EARLY_SIGNALS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
}

/// Runs a whole service: what `#[telestion::service]` expands to.
///
/// Builds a multi-threaded tokio runtime, installs logging, starts the
/// service, runs `setup` (the body of `main`), subscribes `routes`, serves
/// until SIGINT/SIGTERM or [`Service::shutdown`], drains and returns
/// success. A failed start prints one line `error: ...` to stderr and
/// returns failure (exit code 1).
pub fn run<F, Fut>(options: Options, routes: Vec<Route>, setup: F) -> ExitCode
where
    F: FnOnce(Service) -> Fut,
    Fut: Future,
    Fut::Output: SetupResult,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging();
    let result = runtime.block_on(async move {
        let signals = Signals::new()?;
        *EARLY_SIGNALS.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::sync::Arc::new(signals));
        let service = Service::start(options).await?;
        setup(service.clone())
            .await
            .into_result()
            .map_err(StartError::Setup)?;
        service.serve(routes).await
    });
    // Do not wait for stray background tasks of the user.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
