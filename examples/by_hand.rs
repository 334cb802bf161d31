//! A Telestion service written by hand, without the attribute macros:
//! [`Service::start`], a list of [`Route`]s and [`Service::serve`]. This is
//! what `#[telestion::service]` and `#[subscribe]` generate for you.
//!
//! ```sh
//! cargo run --example by_hand -- --dev --NATS_URL=localhost:4222
//! nats request byhand.echo '{"hello": "world"}'
//! ```
//!
//! Routes (all in the queue group `SERVICE_NAME`):
//!
//! | subject | body | does |
//! | --- | --- | --- |
//! | `byhand.slow` | anything | waits `SLOW_MS` ms (default 100), then publishes the body to `byhand.done` |
//! | `byhand.text` | UTF-8 text | replies with the text in upper case (non-UTF-8 is an error) |
//! | `byhand.bytes` | anything | replies with the body unchanged |
//! | `byhand.fail` | anything | returns an error (counted, logged, error reply) |
//! | `byhand.panic` | anything | panics (counted, logged, error reply; the service keeps running) |
//! | `byhand.stop` | anything | asks the service to shut down (drain, exit 0) |
//! | `byhand.echo` | JSON | replies with the same JSON (invalid JSON is an error) |
//!
//! The integration tests in `tests/runtime/` drive this binary.

use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;
use telestion::{Bytes, Json, Options, Route, Service, Subject, TypedConfig};

/// The part of the configuration this service reads, decoded with
/// [`TypedConfig`]: the field `slow_ms` is the config key `SLOW_MS`.
#[derive(Debug, Deserialize)]
struct Settings {
    /// How long `byhand.slow` works on each message, in milliseconds.
    slow_ms: Option<u64>,
}

/// Works on each message for `SLOW_MS` ms, one message at a time and in
/// arrival order, then confirms it on `byhand.done`.
async fn slow(body: Bytes, settings: TypedConfig<Settings>, service: Service) {
    let millis = settings.slow_ms.unwrap_or(100);
    tokio::time::sleep(Duration::from_millis(millis)).await;
    // A failed publish is counted and logged by the runtime already.
    let _ = service.publish("byhand.done", body).await;
}

/// Replies with the text in upper case; a body that is not UTF-8 never
/// reaches this function (the runtime answers with an error instead).
async fn text(body: String) -> String {
    body.to_uppercase()
}

/// Replies with the body unchanged, whatever bytes it holds.
async fn bytes(body: Bytes) -> Bytes {
    body
}

/// Always fails; the error becomes an error reply.
async fn fail(subject: Subject) -> Result<(), String> {
    Err(format!("nothing works on {}", subject.0))
}

/// Always panics; the runtime catches it.
async fn panics() {
    panic!("this handler panics on purpose");
}

/// Shuts the service down from code (as SIGTERM would).
async fn stop(service: Service) -> &'static str {
    service.shutdown();
    "stopping"
}

/// Replies with the JSON it was sent.
async fn echo(Json(value): Json<serde_json::Value>) -> Json<serde_json::Value> {
    Json(value)
}

#[tokio::main]
async fn main() -> ExitCode {
    telestion::init_logging();
    let service = match Service::start(Options::new()).await {
        Ok(service) => service,
        Err(error) => {
            // Through the log (never `eprintln!`, which panics when stderr
            // is gone): one line with the error and its causes.
            telestion::tracing::error!("error: {}", telestion::error_chain(&error));
            return ExitCode::FAILURE;
        }
    };
    let routes = [
        Route::new("byhand.slow", slow),
        Route::new("byhand.text", text),
        Route::new("byhand.bytes", bytes),
        Route::new("byhand.fail", fail),
        Route::new("byhand.panic", panics),
        Route::new("byhand.stop", stop),
        // Subscribed last: once it answers, every route above is subscribed.
        Route::new("byhand.echo", echo),
    ];
    // Subscribes the routes, serves until SIGINT/SIGTERM or
    // `service.shutdown()`, then drains (every delivered message is handled).
    // The exit code says whether everything was confirmed by the server (0)
    // or not (3), or whether the connection was lost for good (4).
    match service.serve(routes).await {
        Ok(()) => ExitCode::from(service.exit_code()),
        Err(error) => {
            telestion::tracing::error!("error: {}", telestion::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}
