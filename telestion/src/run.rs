//! What generated `main` calls: the tokio runtime, logging, `--help`,
//! start, start-up code, handler subscription, serving and drain, and the
//! exit code.

use std::fmt::Display;
use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use crate::error::StartError;
use crate::logging::{init_logging, write_stderr};
use crate::route::Route;
use crate::service::{Options, STANDARD_KEYS, Service};

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

/// `error` and its sources, as one line: `a: b: c`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The text `--help` prints: every configuration key the service reads
/// that is known before it starts (the standard ones and those of its
/// routes).
pub fn help_text(routes: &[Route]) -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "service".into());
    let mut text = format!(
        "{exe}: a Telestion service.\n\nUsage: {exe} [--KEY=VALUE | --KEY VALUE | --flag]... \
         [--dev] [--help]\n\nEvery key can also come from the environment or from the JSON \
         file named by CONFIG_FILE (CLI > env > file).\n--dev fills in NATS_URL=localhost:4222, \
         SERVICE_NAME={exe} and DATA_DIR=./data.\n\nStandard keys:\n"
    );
    let width = 28;
    for (key, meaning) in STANDARD_KEYS.iter().chain(crate::connect::KEYS.iter()) {
        text.push_str(&format!("  {key:width$}{meaning}\n"));
    }
    let mut custom: Vec<(String, String)> = Vec::new();
    for route in routes {
        for key in route.config_keys() {
            if !custom.iter().any(|(k, _)| *k == key)
                && !STANDARD_KEYS.iter().any(|(k, _)| *k == key)
            {
                custom.push((key, format!("read by handler {}", route.handler_name())));
            }
        }
    }
    if !custom.is_empty() {
        text.push_str("\nKeys of this service's handlers:\n");
        for (key, meaning) in custom {
            text.push_str(&format!("  {key:width$}{meaning}\n"));
        }
    }
    text.push_str("\nEnvironment only: RUST_LOG (log filter, default info), LOG_FORMAT=json.\n");
    text
}

/// Runs a whole service: what `#[telestion::service]` expands to.
///
/// Builds a multi-threaded tokio runtime, installs logging, prints the
/// configuration keys and exits 0 on `--help`, starts the service, runs
/// `setup` (the body of `main`), subscribes `routes`, serves until
/// SIGINT/SIGTERM or [`Service::shutdown`], drains and returns success. A
/// failed start prints one line `error: ...` (with its causes) to stderr and
/// returns failure (exit code 1).
pub fn run<F, Fut>(options: Options, routes: Vec<Route>, setup: F) -> ExitCode
where
    F: FnOnce(Service) -> Fut,
    Fut: Future,
    Fut::Output: SetupResult,
{
    if crate::config::help_in_args() {
        let _ = std::io::stdout().write_all(help_text(&routes).as_bytes());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            write_stderr(&format!("error: cannot start the tokio runtime: {e}\n"));
            return ExitCode::FAILURE;
        }
    };
    init_logging();
    let result = runtime.block_on(async move {
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
            write_stderr(&format!("error: {}\n", error_chain(&e)));
            ExitCode::FAILURE
        }
    }
}
