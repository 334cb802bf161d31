//! The example backend's query service: answers requests about the stored
//! telemetry from the database `db_writer` writes, opened read-only.
//!
//! | subject | request | reply |
//! | --- | --- | --- |
//! | `telemetry.query.latest` | `{"n": 1..=1000}` | `{"rows": [...]}`, newest first |
//! | `telemetry.query.range` | `{"from_ms", "to_ms", "limit"?: 1..=1000}` | `{"rows": [...], "truncated": bool}`, oldest first |
//! | `telemetry.query.series` | `{"field", "from_ms", "to_ms", "points": 1..=1000}` | `{"field", "points": [{"time_ms", "min", "max", "avg", "count"}]}` |
//! | `telemetry.query.count` | `{}` (or empty) | `{"rows", "sessions": [{"session", "min_counter", "max_counter", "count"}]}` |
//!
//! A row is the parsed telemetry JSON plus `stored_ms` (when `db_writer`
//! stored it). A bad request is answered with error code 400 and the
//! reason; a database that does not exist yet (no `db_writer` has run)
//! with 503. The series is computed in SQL: the range is cut into
//! `points` equal buckets, and each non-empty bucket gives its start time
//! and the min, max, average and count of the field.
//!
//! Config: `DB_PATH` (default `$DATA_DIR/db_writer/telemetry.sqlite3`),
//! `QUERY_TIMEOUT_MS` (default 5000): a request still running then is
//! stopped and answered with 504, so work whose caller gave up ends.
//!
//! Each subject answers up to 4 requests at once, on read-only
//! connections of a pool (WAL mode: readers wait neither for each other
//! nor for the writer). `latest` and `range` read the index
//! `(time_ms, session, counter)` in order, `series` a range of it, and
//! `count` the per-session counts db_writer's trigger keeps.
//!
//! No symbolic link is followed: when the database's directory, the
//! database or one of SQLite's files beside it (`-wal`, `-shm`, `-journal`)
//! is a link, or not a regular file, the database is not opened; requests
//! get 503 (without the path, which goes to the log) until it is fixed.

mod queries;

use std::path::PathBuf;
use std::time::Duration;

use telestion::{Bytes, HandlerError, Json, Service, State, subscribe};

use queries::{
    CountReply, LatestRequest, RangeReply, RangeRequest, Reader, RowsReply, SeriesReply,
    SeriesRequest,
};

/// The newest `n` rows.
#[subscribe("telemetry.query.latest", concurrency = 4)]
fn latest(
    Json(request): Json<LatestRequest>,
    reader: State<Reader>,
) -> Result<Json<RowsReply>, HandlerError> {
    reader.latest(&request).map(Json)
}

/// The rows of a time range, oldest first.
#[subscribe("telemetry.query.range", concurrency = 4)]
fn range(
    Json(request): Json<RangeRequest>,
    reader: State<Reader>,
) -> Result<Json<RangeReply>, HandlerError> {
    reader.range(&request).map(Json)
}

/// One field of a time range, downsampled.
#[subscribe("telemetry.query.series", concurrency = 4)]
fn series(
    Json(request): Json<SeriesRequest>,
    reader: State<Reader>,
) -> Result<Json<SeriesReply>, HandlerError> {
    reader.series(&request).map(Json)
}

/// Rows in total and per session.
#[subscribe("telemetry.query.count", concurrency = 4)]
fn count(body: Bytes, reader: State<Reader>) -> Result<Json<CountReply>, HandlerError> {
    queries::check_empty_request(&body)?;
    reader.count().map(Json)
}

#[telestion::service]
async fn main(service: Service) -> Result<(), String> {
    let path = match service.config().get_str("DB_PATH") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => service
            .shared_data_dir()
            .join("db_writer")
            .join("telemetry.sqlite3"),
    };
    let timeout_ms = match service.config().get_str("QUERY_TIMEOUT_MS") {
        Some(text) if !text.is_empty() => text
            .parse::<u64>()
            .ok()
            .filter(|ms| (1..=600_000).contains(ms))
            .ok_or_else(|| format!("QUERY_TIMEOUT_MS must be 1 to 600000, not {text:?}"))?,
        _ => 5_000,
    };
    telestion::tracing::info!(path = %path.display(), timeout_ms, "reading the telemetry database");
    // One connection per handler that may run at once (4 per subject).
    service.provide(Reader::new(path, 16, Duration::from_millis(timeout_ms)));
    Ok(())
}
