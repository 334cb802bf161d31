//! The example backend's database writer: stores every parsed telemetry
//! frame (`telemetry.parsed`, stream `TELEMETRY`) once in a SQLite file.
//!
//! The database is `$DATA_DIR/$SERVICE_NAME/telemetry.sqlite3` (WAL mode,
//! `synchronous = FULL`: a stored frame survives a crash of the process and
//! of the machine), table `telemetry` with the primary key
//! `(session, counter)`. Frames arrive through a durable batch handler (up
//! to 200 frames per transaction): a frame is acknowledged only after the
//! transaction that stores it committed, and
//! `INSERT OR IGNORE` stores a redelivered frame once, so every frame the
//! parser published is stored exactly once across restarts and crashes.
//! A database error is a handler error: the frames are delivered again
//! later (with the durable back-off), the service keeps running.
//!
//! No symbolic link is followed: a link at the data directory
//! (`$DATA_DIR/$SERVICE_NAME`), at the database or at one of SQLite's
//! files beside it (`-wal`, `-shm`, `-journal`) fails the start, naming the
//! path, and nothing is written where it points. The database is created
//! owner-only (`0600`), and so are its WAL and shared-memory files.
//!
//! ```sh
//! NATS_URL=localhost:4222 SERVICE_NAME=db_writer DATA_DIR=./data cargo run -p db_writer
//! ```

mod db;

use std::time::Duration;

use telestion::extract::DataDir;
use telestion::{Batch, HandlerError, Json, Service, State, StreamSpec, subscribe};

use db::{Db, Telemetry};

/// Stores a batch of frames in one transaction: up to 200 frames, what
/// arrived back to back (no gap of 1 ms), at most 50 ms after the first:
/// one frame at a time when they trickle in, larger batches under load or
/// while a commit takes long. On success every frame of the
/// batch is acknowledged; on a failure every one is delivered again. A
/// message that is not a valid frame is left out of the batch by the
/// framework (answered with 400 and dead-lettered on its own).
#[subscribe(
    "telemetry.parsed",
    durable,
    stream = "TELEMETRY",
    batch = 200,
    batch_window = "50ms"
)]
fn store(frames: Batch<Json<Telemetry>>, db: State<Db>) -> Result<(), HandlerError> {
    let frames: Vec<Telemetry> = frames.into_iter().map(|Json(frame)| frame).collect();
    db.store(&frames).map(drop)
}

#[telestion::service(streams = ["TELEMETRY"])]
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
    let dir = DataDir(service.data_dir()?);
    let db = telestion::tokio::task::spawn_blocking(move || Db::open(&dir)).await??;
    service.provide(db);
    Ok(())
}
