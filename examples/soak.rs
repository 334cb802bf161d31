//! The service under test of the soak runs (see `docs/reliability.md`): a
//! plain Telestion service, written by hand with the runtime API, that
//! answers requests on `soak.echo` with their body and fails every request
//! on `soak.fail` (to exercise the error path).
//!
//! The soak driver is the `#[ignore]`d `soak` tests of
//! `tests/reliability/soak.rs`; they start `nats-server`, this service and
//! `standard_ops`, push one million messages through each and report the
//! service's memory at start and end:
//!
//! ```sh
//! cargo test --release --test reliability -- --ignored soak --nocapture
//! ```
//!
//! Run it by hand like any service:
//!
//! ```sh
//! NATS_URL=localhost:4222 SERVICE_NAME=soak DATA_DIR=./data cargo run --example soak
//! ```

use bytes::Bytes;
use telestion::{Options, Route, Service};

/// Answers with the request's body.
async fn echo(body: Bytes) -> Bytes {
    body
}

/// Always fails (counted in health, logged, answered with an error reply).
async fn fail(body: String) -> Result<(), String> {
    Err(format!("refusing {} bytes on purpose", body.len()))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    telestion::init_logging();
    let result = async {
        let service = Service::start(Options::new()).await?;
        service
            .serve([
                Route::new("soak.echo", echo).name("echo"),
                Route::new("soak.fail", fail).name("fail"),
            ])
            .await
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
