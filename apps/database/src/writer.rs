//! Storing batches: parse each message into a point (or dead-letter it
//! with the reason), write the points in one transaction (retrying what a
//! busy database or a lost connection makes fail), and hand what cannot be
//! stored to the runtime (durable mode: redelivered later) or to the
//! dead-letter subject (queue-group mode, where nothing redelivers).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use database_store::point::{Invalid, Point, measurement_of, parse_point};
use database_store::run::LogLimiter;
use database_store::time::now_ns;
use database_store::{StoreError, Write};
use telestion::tracing;
use telestion::{Batch, HandlerError, Message, Service, State, TypedConfig};

use crate::settings::WriterSettings;

/// How often a failing write is tried (with 100 ms, then 400 ms between).
const ATTEMPTS: u32 = 3;

/// The writer's state.
pub struct Writer {
    store: Mutex<Option<Box<dyn Write>>>,
    threads: database_store::rayon::ThreadPool,
    data_subject: String,
    dead_letter_subject: String,
    durable: bool,
    last_arrival: AtomicI64,
    invalid_log: LogLimiter,
    /// Points stored since start.
    pub stored: AtomicU64,
    /// Messages dead-lettered since start.
    pub dead_lettered: AtomicU64,
}

impl Writer {
    /// A writer storing into `store`.
    pub fn new(
        store: Box<dyn Write>,
        threads: database_store::rayon::ThreadPool,
        data_subject: String,
        dead_letter_subject: String,
        durable: bool,
    ) -> Writer {
        Writer {
            store: Mutex::new(Some(store)),
            threads,
            data_subject,
            dead_letter_subject,
            durable,
            last_arrival: AtomicI64::new(0),
            invalid_log: LogLimiter::default(),
            stored: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
        }
    }

    /// The arrival time of a point without one: now, but strictly after the
    /// previous arrival, so two points of one series never share a time.
    fn arrival(&self) -> i64 {
        let now = now_ns();
        let previous = self
            .last_arrival
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(now);
        now.max(previous + 1)
    }

    fn parse(&self, message: &Message) -> Result<Point, Invalid> {
        let measurement = measurement_of(&self.data_subject, message.subject.as_str())?;
        parse_point(measurement, &message.payload, self.arrival())
    }

    /// Writes on the database thread, trying a transient failure again.
    fn write(&self, points: &[Point]) -> Result<usize, StoreError> {
        self.threads.install(|| self.write_here(points))
    }

    fn write_here(&self, points: &[Point]) -> Result<usize, StoreError> {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let Some(store) = store.as_mut() else {
            return Err(StoreError::Config("the writer is closed".into()));
        };
        let mut attempt = 1;
        loop {
            match store.write(points) {
                Ok(n) => return Ok(n),
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!(error = %telestion::error_chain(&e), attempt, "writing a batch failed; trying again");
                    std::thread::sleep(Duration::from_millis(100 * 4u64.pow(attempt - 1)));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Publishes `message` with the reason to the dead-letter subject, and
    /// logs (at most one line a second); `count`: also counts it as an
    /// error in health (the runtime counts those of a failed batch).
    fn dead_letter(&self, service: &Service, message: &Message, reason: &str, count: bool) {
        if count {
            service.record_error();
        }
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        if let Some(left_out) = self.invalid_log.allow() {
            tracing::warn!(
                subject = %message.subject,
                reason,
                dead_letter = %self.dead_letter_subject,
                "a message was not stored{}",
                if left_out > 0 { format!(" ({left_out} more since the last line)") } else { String::new() }
            );
        }
        let mut headers = message.headers.clone().unwrap_or_default();
        let one_line: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        headers.insert(telestion::dead_letter_headers::ERROR, one_line.as_str());
        headers.insert(
            telestion::dead_letter_headers::SUBJECT,
            message.subject.as_str(),
        );
        headers.insert(telestion::dead_letter_headers::HANDLER, "database::store");
        let publish = service.publish_with_headers(
            self.dead_letter_subject.clone(),
            headers,
            message.payload.clone(),
        );
        if let Err(e) = telestion::tokio::runtime::Handle::current().block_on(publish) {
            tracing::error!(error = %e, subject = %message.subject, "cannot publish a dead letter");
        }
    }
}

impl Writer {
    /// Deletes the points older than `retention` (on the database thread,
    /// between batches).
    pub fn purge(&self, retention: Duration) -> Result<u64, StoreError> {
        let cutoff =
            now_ns().saturating_sub(i64::try_from(retention.as_nanos()).unwrap_or(i64::MAX));
        self.threads.install(|| {
            let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
            match store.as_mut() {
                Some(store) => store.delete_before(cutoff),
                None => Ok(0),
            }
        })
    }
}

/// The retention: points older than this are deleted.
pub struct Retention(pub Duration);

/// Deletes the points older than `RETENTION` (a timer; a plain `fn`, on the
/// blocking pool, waiting for the database thread).
pub fn purge(writer: State<Writer>, retention: State<Retention>) -> Result<(), HandlerError> {
    match writer.purge(retention.0) {
        Ok(0) => Ok(()),
        Ok(deleted) => {
            tracing::info!(deleted, "deleted points older than RETENTION");
            Ok(())
        }
        Err(e) => Err(HandlerError::server(format!(
            "cannot delete old points: {}",
            telestion::error_chain(&e)
        ))),
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closed on the database thread: the PostgreSQL client must not be
        // dropped on a thread of the runtime.
        let store = self
            .store
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.threads.install(move || drop(store));
    }
}

/// Stores one batch of data messages (a plain `fn`: it runs on the
/// blocking pool). In durable mode a failed write is returned as an error,
/// so the runtime delivers the batch again later; in queue-group mode
/// every message of a failed write is dead-lettered with the reason.
pub fn store(
    messages: Batch<Message>,
    writer: State<Writer>,
    service: Service,
    _settings: TypedConfig<WriterSettings>,
) -> Result<(), HandlerError> {
    let messages = messages.into_inner();
    let mut points = Vec::with_capacity(messages.len());
    let mut stored_messages = Vec::with_capacity(messages.len());
    let mut invalid = Vec::new();
    for message in &messages {
        match writer.parse(message) {
            Ok(point) => {
                points.push(point);
                stored_messages.push(message);
            }
            Err(reason) => invalid.push((message, reason)),
        }
    }
    if !points.is_empty() {
        match writer.write(&points) {
            Ok(_) => {
                writer
                    .stored
                    .fetch_add(points.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                let reason = format!("the database failed: {}", telestion::error_chain(&e));
                if writer.durable {
                    // Redelivered with the back-off; the invalid ones are
                    // dead-lettered when the batch succeeds.
                    return Err(HandlerError::server(reason));
                }
                for message in stored_messages {
                    writer.dead_letter(&service, message, &reason, false);
                }
                for (message, why) in &invalid {
                    writer.dead_letter(&service, message, &why.to_string(), true);
                }
                return Err(HandlerError::server(reason));
            }
        }
    }
    for (message, why) in &invalid {
        writer.dead_letter(&service, message, &why.to_string(), true);
    }
    if writer.durable && !invalid.is_empty() {
        // The dead letters leave before the batch is acknowledged.
        if let Ok(client) = service.nats() {
            let _ = telestion::tokio::runtime::Handle::current().block_on(client.flush());
        }
    }
    Ok(())
}
