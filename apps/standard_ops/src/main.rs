//! The Standard Operations service: data logging.
//!
//! A message on `__telestion__/log/<category>` (the spec's subject) or
//! `__telestion__.log.<category>` (the subject of Telestion's Deno library)
//! is appended as one JSON line to `$DATA_DIR/logs/<category>.log`:
//!
//! ```json
//! {"time":"2025-01-01T12:00:00.000000Z","subject":"__telestion__/log/temp","json":{"value":1}}
//! ```
//!
//! The body is kept as `"json"` (JSON that every reader parses back to the
//! same bytes), `"text"` (other UTF-8; empty body → `""`) or `"base64"`
//! (anything else), so it can always be recovered byte for byte (see
//! [`standard_ops::log_line`]). A request is answered after the line is
//! written with `{"ok": true}`, or `{"ok": false, "error": "..."}` when
//! the category is invalid (it must match
//! `^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$`) or the line was not written; a
//! rejection is counted as an error in health.
//!
//! ## Subscriptions
//!
//! NATS splits subjects into tokens at `.`, so `__telestion__/log/temp` is a
//! single token: no subject pattern matches exactly the
//! `__telestion__/log/<category>` subjects. The service subscribes to `*`
//! (every single-token subject) and to `__telestion__.log.>` (the dotted
//! form, whose category may itself contain dots), both in the queue group
//! `SERVICE_NAME`, and ignores single-token subjects of other kinds with one
//! prefix comparison, without replying. Multi-token subjects
//! (`telemetry.a.b`, ...) are never sent to it.
//!
//! ## Files
//!
//! What [`DataLog`] guarantees: writes stay in `$DATA_DIR/logs` (no
//! symbolic link is followed, for the directory or a file; anything but a
//! regular file is refused), a line is written whole or not at all (a write
//! that fails part way, on a full disk or at `ulimit -f`, is cut off again;
//! `SIGXFSZ` is ignored so that the limit is an error, not the end of the
//! process), a renamed or deleted file is followed by a new one at its path,
//! and at most `MAX_OPEN_FILES` files are open (fewer when `ulimit -n` is
//! low, so the NATS connection always has descriptors left). Every refusal
//! is an error reply, counted in health, and writes nothing.
//!
//! ## Concurrency and order
//!
//! File work runs on blocking threads, never on the async workers. The
//! handlers only queue: each category has one queue and one writer (a
//! blocking thread, at most 16 at once) that takes every line queued and
//! writes them with one write, so the service writes at file speed. A
//! message without a reply subject is formatted by the writer; a request
//! is answered by a task of its own once its line is written, so the
//! subscription goes on meanwhile. The queues are bounded (8 MiB of lines
//! per category, 32 MiB in all): past that, the handler waits for the
//! writer (at most `LOCK_TIMEOUT`), which slows the subscription; what
//! arrives while it waits is held by the client's subscription buffer
//! (`NATS_SUBSCRIPTION_CAPACITY`: this service's default is 262,144
//! messages, four times the framework's, so that a burst of 200,000 log
//! messages arriving faster than they are handled is held whole), and only
//! what exceeds that is dropped, counted in health as a slow consumer. The
//! buffer is counted in messages: full of 128-byte log messages it takes
//! about 100 MiB (the benchmark measures the peak of a 200,000-message
//! burst); its worst case is 262,144 times the server's `max_payload`, so
//! where publishers may send large messages, give the server a small
//! `max_payload` or this service a smaller `NATS_SUBSCRIPTION_CAPACITY`. A
//! line that fails with nobody waiting for it is counted in health and
//! logged, at most once per 10 s (with the number of lines since). A file
//! locked by another process, a FIFO or a slow disk delays only its own
//! category; health, other categories and SIGTERM keep working. A line
//! that cannot be written within `LOCK_TIMEOUT` seconds is refused. Order:
//! lines of one subject form are written in arrival order (the two subject
//! forms are two subscriptions, with no order between them).
//!
//! ## Configuration
//!
//! The standard keys (`NATS_URL`, `SERVICE_NAME`, `DATA_DIR`, ...), and:
//!
//! - `LOCK_TIMEOUT`: how long a line may wait for its file: seconds
//!   (`5`, `0.5`) or a period (`500ms`, `2s`), 1 ms to 1 h (default 5);
//! - `MAX_OPEN_FILES`: log files kept open at most (default 256; the least
//!   recently used are closed).
//!
//! Instances with the same `SERVICE_NAME` share the messages and may share
//! one `DATA_DIR`: each message is logged once, and lines are written whole
//! under a file lock, so they never tear or interleave. At start the service
//! creates `$DATA_DIR/logs` and checks that it can write there: an unusable
//! `DATA_DIR` (or a `logs` that is a symbolic link) fails the start with
//! exit code 1 instead of every message. SIGHUP closes every open file
//! (after log rotation) instead of stopping the service.
//!
//! ```sh
//! NATS_URL=localhost:4222 SERVICE_NAME=standard_ops DATA_DIR=./data \
//!     cargo run -p standard_ops
//! ```

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use standard_ops::{
    DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_OPEN_FILES, DataLog, Limits, LogError, log_line,
};
use telestion::data_log::category_of;
use telestion::extract::ReplyTo;
use telestion::period::{BareNumber, parse_setting};
use telestion::tokio;
use telestion::{Bytes, Reply, Service, State, Subject, TypedConfig, subscribe};

/// The bounds of `LOCK_TIMEOUT`: 1 ms to an hour.
const LOCK_TIMEOUT_BOUNDS: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(3600);

/// Failed lines that nobody waited for are logged at most this often.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The reply to a log request.
#[derive(serde::Serialize)]
struct Ack {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// This service's own configuration keys. The handlers take it as
/// `TypedConfig` so that `--help` lists the keys; `main` reads and checks
/// them.
#[derive(serde::Deserialize)]
struct Settings {
    /// `LOCK_TIMEOUT`: how long a line may wait for its file (seconds, or a
    /// period such as `500ms`).
    lock_timeout: Option<String>,
    /// `MAX_OPEN_FILES`: log files kept open at most.
    max_open_files: Option<usize>,
}

impl Settings {
    fn limits(&self) -> Result<Limits, String> {
        let lock_timeout = match &self.lock_timeout {
            None => DEFAULT_LOCK_TIMEOUT,
            Some(text) => parse_setting(
                "LOCK_TIMEOUT",
                text,
                BareNumber::Seconds,
                LOCK_TIMEOUT_BOUNDS,
            )
            .map_err(|e| e.to_string())?,
        };
        let max_open_files = match self.max_open_files {
            None => DEFAULT_MAX_OPEN_FILES,
            Some(n) if (1..=1_000_000).contains(&n) => n,
            Some(_) => return Err("key MAX_OPEN_FILES: must be from 1 to 1000000".into()),
        };
        Ok(Limits {
            lock_timeout,
            max_open_files,
        })
    }
}

/// Every single-token subject arrives here (`__telestion__/log/<category>`
/// is one token); only data-log subjects are used.
#[subscribe("*")]
async fn log_spec(
    Subject(subject): Subject,
    ReplyTo(reply): ReplyTo,
    log: State<DataLog>,
    _keys: TypedConfig<Settings>,
    service: Service,
    body: Bytes,
) -> Reply {
    log_message(subject, reply, &log, &service, body).await
}

/// The dotted form `__telestion__.log.<category>`.
#[subscribe("__telestion__.log.>")]
async fn log_dotted(
    Subject(subject): Subject,
    ReplyTo(reply): ReplyTo,
    log: State<DataLog>,
    _keys: TypedConfig<Settings>,
    service: Service,
    body: Bytes,
) -> Reply {
    log_message(subject, reply, &log, &service, body).await
}

async fn log_message(
    subject: String,
    reply_to: Option<String>,
    log: &DataLog,
    service: &Service,
    body: Bytes,
) -> Reply {
    let Some(category) = category_of(&subject).map(str::to_owned) else {
        // Not a data-log message: ignore it, no reply.
        return Reply::None;
    };
    // `write` and `enqueue` reject an invalid category before touching any
    // file.
    if reply_to.is_none() && service.is_stopping() {
        // Draining: the line is written before the handler returns, so the
        // drain (which waits for the handlers) ends with it on disk.
        let line = log_line(&subject, &body, SystemTime::now());
        if let Err(error) = log.write(&category, line).await {
            tracing::warn!(%category, %error, "message not logged");
            service.record_error();
        }
        return Reply::None;
    }
    if reply_to.is_none() {
        // Nobody waits for an answer: queued (waiting only while the queues
        // are over budget) and formatted by the writer; a line that fails
        // later is counted and logged by the failure hook.
        return match log
            .enqueue(&category, subject, body, SystemTime::now())
            .await
        {
            Ok(()) => Reply::None,
            Err(error) => {
                // Only an invalid category is refused here.
                tracing::warn!(%category, %error, "message not logged");
                service.record_error();
                Reply::None
            }
        };
    }
    // A request: queued now, answered by a task of its own once the line
    // is written, so that the subscription goes on meanwhile.
    let line = log_line(&subject, &body, SystemTime::now());
    let written = log.write(&category, line);
    if let Some(reply_to) = reply_to {
        let service = service.clone();
        tokio::spawn(async move {
            let ack = match written.await {
                Ok(()) => Ack {
                    ok: true,
                    error: None,
                },
                Err(error) => {
                    let error = error.to_string();
                    tracing::warn!(%subject, %error, "message not logged");
                    service.record_error();
                    Ack {
                        ok: false,
                        error: Some(error),
                    }
                }
            };
            if let Err(error) = service.publish_json(reply_to, &ack).await {
                tracing::warn!(%subject, %error, "cannot answer a log request");
            }
        });
    }
    log.wait_for_room(&category).await;
    Reply::None
}

/// At shutdown, every line queued before it is written before the process
/// exits: the drain awaits this task after the handlers (which, while
/// draining, wait for their own lines).
#[subscribe(task)]
async fn flush_at_shutdown(log: State<DataLog>, service: Service) {
    service.stopped().await;
    if !log.flush(service.shutdown_timeout()).await {
        service.record_error();
        tracing::error!(
            "lines were still queued after SHUTDOWN_TIMEOUT; they may not be in the log files"
        );
    }
}

/// What happens to lines nobody waits for that could not be written: each
/// is counted in health; the first failure is logged at once, later ones
/// summarised at most once per [`REPORT_INTERVAL`].
fn failure_reporter(service: Service) -> impl Fn(&LogError, usize) + Send + Sync + 'static {
    let last = Mutex::new((None::<Instant>, 0usize));
    move |error, lines| {
        for _ in 0..lines {
            service.record_error();
        }
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (logged, held) = &mut *last;
        *held += lines;
        if logged.is_none_or(|at| now.duration_since(at) >= REPORT_INTERVAL) {
            tracing::warn!(%error, lines = *held, "lines not logged");
            (*logged, *held) = (Some(now), 0);
        }
    }
}

#[telestion::service(subscription_capacity = 262_144)]
async fn main(service: Service) -> Result<(), String> {
    let settings = service
        .typed_config::<Settings>()
        .map_err(|e| telestion::error_chain(&e))?;
    let limits = settings.limits()?;
    // A write past `ulimit -f` fails with EFBIG (and is rolled back) instead
    // of the signal ending the process.
    signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        Arc::new(AtomicBool::new(false)),
    )
    .map_err(|e| format!("cannot handle SIGXFSZ: {e}"))?;
    let log = DataLog::with_limits(service.shared_data_dir().join("logs"), limits);
    // An unusable DATA_DIR fails the start, not every message.
    let checking = log.clone();
    tokio::task::spawn_blocking(move || checking.check())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| telestion::error_chain(&e))?;
    tracing::info!(
        dir = %log.dir().display(),
        max_open_files = log.max_open_files(),
        lock_timeout_s = log.lock_timeout().as_secs_f64(),
        "logging data"
    );
    // SIGHUP (after log rotation) closes every file instead of stopping.
    let mut hangups = service.hangups();
    let reopening = log.clone();
    tokio::spawn(async move {
        while hangups.next().await {
            let log = reopening.clone();
            match tokio::task::spawn_blocking(move || log.reopen()).await {
                Ok(()) => tracing::info!("SIGHUP: closed every log file; each opens again"),
                Err(e) => tracing::warn!(error = %e, "SIGHUP: cannot close the log files"),
            }
        }
    });
    log.on_failure(failure_reporter(service.clone()));
    service.provide(log);
    Ok(())
}
