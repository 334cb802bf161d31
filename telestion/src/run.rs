//! What generated `main` calls: the tokio runtime, logging, `--help`,
//! start, start-up code, handler subscription, serving and drain, and the
//! exit code.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use crate::error::{BoxError, DetachedError, StartError, error_chain};
use crate::observe::logging::{init_logging, write_stderr};
use crate::route::Route;
use crate::service::{Options, STANDARD_KEYS, Service};

/// What start-up code (the body of `main`) may return: `()` or
/// `Result<(), E>` where `E` is any error type (also `Box<dyn Error>`), a
/// `String` or a `&str`. An error fails the start, printed with its causes
/// (kept as [`StartError::Setup`]'s chain of messages, since `E` need not be
/// `Send`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a `#[telestion::service]` main",
    note = "return `()` or `Result<(), E>` where `E` is an error type, `String` or `&str`"
)]
pub trait SetupResult {
    /// `Err` with the error when the start-up code failed.
    fn into_result(self) -> Result<(), BoxError>;
}

impl SetupResult for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<Box<dyn std::error::Error>>> SetupResult for Result<(), E> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(|error| Box::new(DetachedError::from_chain(&*error.into())) as BoxError)
    }
}

/// The text `--help` prints: every configuration key the service reads
/// that is known before it starts (the standard ones and those of its
/// routes).
pub fn help_text(routes: &[Route]) -> String {
    let exe = exe_name();
    let mut text = format!(
        "{exe}: a Telestion service.\n\nUsage: {exe} [--KEY=VALUE | --KEY VALUE | --flag]... \
         [--dev] [--help] [--asyncapi] [--nats-permissions]\n\n--asyncapi prints the AsyncAPI 3.0 document of the \
         service's subjects (JSON) and exits.\n--nats-permissions prints the NATS permissions the \
         service needs (a nats-server permissions object, JSON) and exits.\n\nEvery key can also come from the environment or from the JSON \
         file named by CONFIG_FILE (CLI > env > file).\n--dev fills in NATS_URL=localhost:4222, \
         SERVICE_NAME={exe} and DATA_DIR=./data.\n\nStandard keys:\n"
    );
    let width = 28;
    for (key, meaning) in STANDARD_KEYS
        .iter()
        .chain(crate::service::connect::KEYS.iter())
    {
        text.push_str(&format!("  {key:width$}{meaning}\n"));
    }
    let mut custom: Vec<(String, String)> = Vec::new();
    for route in routes {
        for key in route.config_keys() {
            if !custom.iter().any(|(k, _)| *k == key)
                && !STANDARD_KEYS.iter().any(|(k, _)| *k == key)
            {
                let mut meaning = format!("read by handler {}", route.handler_name());
                if let Some(default) = route.key_default(&key) {
                    meaning.push_str(&format!(" (default: {default})"));
                }
                custom.push((key, meaning));
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

/// `--asyncapi`: prints the service's AsyncAPI document (see
/// [`asyncapi_document`](crate::asyncapi_document)), named by
/// `SERVICE_NAME` (else the executable's name), versioned by
/// `SERVICE_VERSION` (else the crate's version), without connecting.
fn print_asyncapi(options: &Options, routes: &[Route]) -> ExitCode {
    let config = crate::route::asyncapi::lenient_config();
    let version = config
        .get_str("SERVICE_VERSION")
        .filter(|version| !version.is_empty())
        .or_else(|| options.version.clone())
        .unwrap_or_else(|| "0.0.0".into());
    let document = crate::route::asyncapi::asyncapi_document(
        routes,
        &config,
        &service_name(&config),
        &version,
    );
    print_json(&document, "the AsyncAPI document")
}

/// `--nats-permissions`: prints the NATS permissions the service needs
/// (see [`crate::permissions`]) as JSON, for the user `SERVICE_NAME`
/// (else the executable's name), without connecting.
fn print_permissions(options: &Options, routes: &[Route]) -> ExitCode {
    let config = crate::route::asyncapi::lenient_config();
    let permissions = crate::permissions::nats_permissions(
        routes,
        &options.uses,
        &config,
        &service_name(&config),
    );
    print_json(&permissions, "the permissions")
}

/// `SERVICE_NAME`, else the executable's name.
fn service_name(config: &crate::Config) -> String {
    config
        .get_str("SERVICE_NAME")
        .filter(|name| !name.is_empty())
        .unwrap_or_else(exe_name)
}

/// Prints `value` as pretty JSON on stdout; `what` names it in the error.
fn print_json(value: &impl serde::Serialize, what: &str) -> ExitCode {
    let text = serde_json::to_string_pretty(value).unwrap_or_default() + "\n";
    match std::io::stdout().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            write_stderr(&format!("error: cannot write {what}: {e}\n"));
            ExitCode::FAILURE
        }
    }
}

fn exe_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "service".into())
}

/// Runs a whole service: what `#[telestion::service]` expands to.
///
/// Builds a multi-threaded tokio runtime, installs logging, prints the
/// configuration keys and exits 0 on `--help`, starts the service, runs
/// `setup` (the body of `main`), subscribes `routes`, serves until
/// SIGINT/SIGTERM or [`Service::shutdown`], drains and returns
/// [`Service::exit_code`] (0 when everything was confirmed; see
/// [`exit_code`](crate::exit_code)). A failed start prints one line
/// `error: ...` (with its causes) to stderr and returns exit code 1.
pub fn run<F, Fut>(options: Options, routes: Vec<Route>, setup: F) -> ExitCode
where
    F: FnOnce(Service) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    if crate::config::help_in_args() {
        let _ = std::io::stdout().write_all(help_text(&routes).as_bytes());
        return ExitCode::SUCCESS;
    }
    if crate::route::asyncapi::asyncapi_in_args() {
        return print_asyncapi(&options, &routes);
    }
    if crate::permissions::permissions_in_args() {
        return print_permissions(&options, &routes);
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
        setup(service.clone()).await.map_err(StartError::Setup)?;
        service.serve(routes).await?;
        Ok::<u8, StartError>(service.exit_code())
    });
    // Do not wait for stray background tasks of the user.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            write_stderr(&format!("error: {}\n", error_chain(&e)));
            ExitCode::from(crate::exit_code::START_FAILED)
        }
    }
}
