//! The Telestion testbed: the program the cross-language behaviour suite runs
//! once per scenario (see `../shared/reference/testbed.md`).
//!
//! It starts a service with the library's ordinary start-up path
//! ([`Service::start`] with [`Options::new`], which loads the config from this
//! process's CLI arguments, environment and `CONFIG_FILE`, checks the required
//! keys and connects to NATS within 10 s), prints one JSON object as the last
//! line of stdout and exits with code 0, also when the start failed:
//!
//! ```json
//! {"env": {...}, "started": true, "nats_api_available": true,
//!  "nats_connected": true, "config": {...}}
//! ```
//!
//! `X_DISABLE_NATS=1` starts in the no-NATS mode. On failure, `error` holds
//! the start error's message and `config` is absent. Logs go to stderr.
//!
//! Deliberate deviation from the protocol: secrets are never echoed. In
//! `config` and in `env`, `NATS_PASSWORD` (and every other secret key, see
//! [`telestion::config::is_secret_key`]) is shown as `"[redacted]"` instead
//! of its value, and so is a `user:password@` part of `NATS_URL`. The suite never compares secret values, and a program that
//! prints passwords would teach the wrong habit.
//!
//! ```sh
//! X_DISABLE_NATS=1 cargo run --example testbed -- --dev --TEST=1
//! ```

use std::process::ExitCode;

use serde_json::{Value, json};
use telestion::{Config, Options, Service};

/// Every environment variable of the process, secrets redacted (also a
/// `user:password@` inside `NATS_URL`), as `Config` redacts them.
fn environment() -> Value {
    let env = std::env::vars_os().map(|(key, value)| {
        (
            key.to_string_lossy().into_owned(),
            value.to_string_lossy().into_owned(),
        )
    });
    Config::from_pairs(env).to_redacted_json()
}

/// Starts the service and describes the outcome.
async fn scenario() -> Value {
    let nats = std::env::var("X_DISABLE_NATS").as_deref() != Ok("1");
    let mut result = json!({ "env": environment() });
    match Service::start(Options::new().nats(nats)).await {
        Ok(service) => {
            result["started"] = json!(true);
            result["nats_api_available"] = json!(service.client().is_some());
            result["nats_connected"] = json!(service.is_connected());
            result["config"] = service.config().to_redacted_json();
            // Flush and stop cleanly, but never let that hang the testbed.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), service.drain()).await;
        }
        Err(error) => {
            tracing::error!(%error, "the service did not start");
            result["started"] = json!(false);
            result["nats_api_available"] = json!(false);
            result["nats_connected"] = json!(false);
            result["error"] = json!(error.to_string());
        }
    }
    result
}

fn main() -> ExitCode {
    telestion::init_logging();
    let result = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(scenario()),
        Err(e) => json!({
            "env": environment(),
            "started": false,
            "nats_api_available": false,
            "nats_connected": false,
            "error": format!("cannot start the tokio runtime: {e}"),
        }),
    };
    println!("{result}");
    ExitCode::SUCCESS
}
