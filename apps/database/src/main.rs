//! `database`: Telestion's database writer. Every message on
//! `DATA_SUBJECT` (e.g. `data.>`) in the upstream format is stored as a
//! point of the measurement named by the rest of its subject, in SQLite
//! (the default, under the service's data directory) or PostgreSQL
//! (`DATABASE_URL`). See the crate's README for keys, subjects, files and
//! exit codes.
//!
//! Better than upstream: instances share the messages (queue group
//! `SERVICE_NAME`, or with `DURABLE=true` a durable consumer of a
//! JetStream stream, so nothing published while no writer runs is lost),
//! points are written in batches (one transaction each), a point stored
//! twice is merged into one, and a message that is not a point is counted
//! and dead-lettered with the reason.

mod settings;
mod writer;

use std::process::ExitCode;
use std::time::Duration;

use database_store::run::{database_threads, run};
use telestion::tracing;
use telestion::{Durable, Route, Service, StreamRetention, StreamSpec};

use settings::{KEYS, Plan, WriterSettings};
use writer::{Retention, Writer, purge, store};

/// The route of the default configuration (for `--help` and `--asyncapi`).
fn route(plan: Option<&Plan>) -> Route {
    let (size, window) = plan.map_or(
        (
            settings::DEFAULT_BATCH_SIZE,
            Duration::from_millis(settings::DEFAULT_BATCH_WINDOW_MS),
        ),
        |p| (p.batch_size, p.batch_window),
    );
    let route = Route::from_config("DATA_SUBJECT", telestion::Blocking(store))
        .name("database::store")
        .batch(size, window);
    match plan.and_then(|p| p.stream.as_ref()) {
        Some(stream) => route.durable(Durable::new().stream(stream.name.clone())),
        None => route,
    }
}

/// A subject token of `name` (characters other than letters, digits, `-`
/// and `_` become `_`).
fn token(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

async fn setup(service: Service) -> Result<Vec<Route>, telestion::BoxError> {
    let settings = service.typed_config::<WriterSettings>()?;
    let plan = settings.plan(&service.data_dir()?)?;
    if let Some(stream) = &plan.stream {
        service
            .declare_stream(
                StreamSpec::new(stream.name.clone())
                    .subjects([plan.data_subject.clone()])
                    .retention(StreamRetention::WorkQueue)
                    .max_bytes(stream.max_bytes)
                    .replicas_from_key("DATA_STREAM_REPLICAS"),
            )
            .await?;
    }
    let threads = std::sync::Arc::new(database_threads(1, "database-writer"));
    let location = plan.location.clone();
    let synchronous_full = plan.synchronous_full;
    let opening = threads.clone();
    let opened = telestion::tokio::task::spawn_blocking(move || {
        opening.install(|| location.open_writer(synchronous_full))
    })
    .await?;
    let threads = std::sync::Arc::into_inner(threads).ok_or("the database thread is shared")?;
    let store = opened.map_err(|e| {
        format!(
            "cannot open {}: {}",
            plan.location.describe(),
            telestion::error_chain(&e)
        )
    })?;
    let dead_letter = dead_letter_subject(service.config(), service.name());
    tracing::info!(
        store = %plan.location.describe(),
        subject = %plan.data_subject,
        mode = if plan.stream.is_some() { "durable" } else { "queue group" },
        dead_letter = %dead_letter,
        "storing points"
    );
    let mut routes = vec![route(Some(&plan))];
    if let Some(retention) = plan.retention {
        // Every tenth of the retention, between a second and an hour.
        let period = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
        service.provide(Retention(retention));
        routes.push(Route::every(period, telestion::Blocking(purge)).name("database::purge"));
    }
    service.provide(Writer::new(
        store,
        threads,
        plan.data_subject.clone(),
        dead_letter,
        plan.stream.is_some(),
    ));
    Ok(routes)
}

fn main() -> ExitCode {
    run(
        env!("CARGO_PKG_VERSION"),
        vec![route(None)],
        uses,
        &KEYS,
        setup,
    )
}

/// Where the writer's dead letters go: `<prefix>.<SERVICE_NAME>.store`.
fn dead_letter_subject(config: &telestion::Config, name: &str) -> String {
    let prefix = config
        .get_str("DURABLE_DEAD_LETTER_PREFIX")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| telestion::DEFAULT_DEAD_LETTER_PREFIX.into());
    format!("{prefix}.{}.store", token(name))
}

/// What the writer does besides its route: dead letters of its own
/// (`<prefix>.<SERVICE_NAME>.store`), and with `DURABLE=true` its stream.
fn uses(config: &telestion::Config, name: &str) -> telestion::permissions::Uses {
    let mut uses = telestion::permissions::Uses::new().publishes(dead_letter_subject(config, name));
    if config.get_str("DURABLE").as_deref() == Some("true") {
        let stream = config
            .get_str("DATA_STREAM")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| settings::DEFAULT_STREAM.into());
        uses = uses.streams(stream);
    }
    uses
}
