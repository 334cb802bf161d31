//! The example backend's database writer: stores every parsed telemetry
//! frame (`telemetry.parsed`, stream `TELEMETRY`) once in a SQLite file.
//!
//! The database is `$DATA_DIR/$SERVICE_NAME/telemetry.sqlite3` (WAL mode,
//! `synchronous = FULL`: a stored frame survives a crash of the process and
//! of the machine), table `telemetry` with the primary key
//! `(session, counter)`. Frames arrive through a durable handler: a frame
//! is acknowledged only after the transaction that stores it committed, and
//! `INSERT OR IGNORE` stores a redelivered frame once, so every frame the
//! parser published is stored exactly once across restarts and crashes.
//! A database error is a handler error: the frames are delivered again
//! later (with the durable back-off), the service keeps running.
//!
//! ```sh
//! NATS_URL=localhost:4222 SERVICE_NAME=db_writer DATA_DIR=./data cargo run -p db_writer
//! ```

mod db;

use std::time::Duration;

use telestion::{HandlerError, Json, Service, State, StreamSpec, subscribe};

use db::{Db, Telemetry};

/// Stores one frame (one transaction).
#[subscribe("telemetry.parsed", durable, stream = "TELEMETRY")]
fn store(Json(frame): Json<Telemetry>, db: State<Db>) -> Result<(), HandlerError> {
    db.store(std::slice::from_ref(&frame)).map(drop)
}

#[telestion::service]
async fn main(service: Service) -> Result<(), Box<dyn std::error::Error>> {
    // The parser declares the same stream (identically); whoever starts
    // first creates it.
    service
        .declare_stream(
            StreamSpec::new("TELEMETRY")
                .subjects(["telemetry.parsed"])
                .max_age(Duration::from_secs(3600))
                .replicas_from_key("TELEMETRY_REPLICAS"),
        )
        .await?;
    let path = service.data_dir()?.join(db::FILE_NAME);
    let db = telestion::tokio::task::spawn_blocking(move || Db::open(&path)).await??;
    service.provide(db);
    Ok(())
}
