//! `database_query`: Telestion's database query service. Answers
//! structured requests on `QUERY_SUBJECT` (queue group `SERVICE_NAME`)
//! with rows in the upstream format, from the SQLite file or PostgreSQL
//! database the `database` writer fills. See the crate's README for the
//! request and reply formats, keys and exit codes.
//!
//! Better than upstream: every request member is a parameter or compared
//! in Rust (never pasted into query text), raw query strings are refused,
//! and every reply is bounded (a row limit, the server's payload size and
//! a time budget) with `truncated` and a `continuation` for the next page.

mod answer;
mod settings;

use std::process::ExitCode;

use database_store::query::SeriesCache;
use database_store::run::{database_threads, run};
use telestion::tracing;
use telestion::{Route, Service};

use answer::{Engine, answer};
use settings::{KEYS, QuerySettings};

/// Room left in a reply for its envelope (count, truncated, continuation).
const ENVELOPE_BYTES: usize = 16 * 1024;

fn route(concurrency: usize) -> Route {
    Route::from_config("QUERY_SUBJECT", telestion::Blocking(answer))
        .name("database_query::answer")
        .concurrency(concurrency)
}

async fn setup(service: Service) -> Result<Vec<Route>, telestion::BoxError> {
    let settings = service.typed_config::<QuerySettings>()?;
    let plan = settings.plan(service.shared_data_dir())?;
    let max_payload = service.nats()?.server_info().max_payload;
    let readers = plan
        .location
        .open_readers(plan.concurrency as u32, answer::hard_limit(plan.timeout))?;
    tracing::info!(
        store = %plan.location.describe(),
        max_rows = plan.max_rows,
        timeout_ms = plan.timeout.as_millis() as u64,
        "answering queries"
    );
    service.provide(Engine {
        readers: Some(readers),
        threads: database_threads(plan.concurrency, "database-query"),
        cache: SeriesCache::default(),
        max_rows: plan.max_rows,
        timeout: plan.timeout,
        max_bytes: max_payload
            .saturating_sub(ENVELOPE_BYTES)
            .max(ENVELOPE_BYTES),
        log: Default::default(),
    });
    Ok(vec![route(plan.concurrency)])
}

fn main() -> ExitCode {
    run(
        env!("CARGO_PKG_VERSION"),
        vec![route(settings::DEFAULT_CONCURRENCY)],
        |_, _| telestion::permissions::Uses::new(),
        &KEYS,
        setup,
    )
}
