//! Measurements of the chain device_sim -> io_service -> telemetry_parser
//! -> db_writer: the rate it stores with no loss, the latency from the
//! device's `time_ms` to the row's `stored_ms`, and how fast it stores a
//! backlog. Used by the ignored test `pipeline_rate` and the benchmark's
//! `backend` case.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{Backend, read_counts};

/// The services of the chain.
const CHAIN: [&str; 3] = ["io_service", "telemetry_parser", "db_writer"];

/// One live run.
#[derive(Debug, Clone)]
pub struct LiveFigures {
    /// The device's rate (frames per second).
    pub rate_hz: u32,
    /// Frames the device made in the session (all stored exactly once).
    pub sent: u64,
    /// Frames stored per second while the device ran (after warm-up).
    pub stored_per_s: f64,
    /// From the device's stop to the last frame stored.
    pub drain: Duration,
    /// Latency `stored_ms - time_ms` of the frames made after warm-up, ms.
    pub p50_ms: i64,
    /// 99th percentile, ms.
    pub p99_ms: i64,
    /// Largest, ms.
    pub max_ms: i64,
}

/// One backlog run.
#[derive(Debug, Clone)]
pub struct BacklogFigures {
    /// Frames the device had buffered before the services started.
    pub frames: u64,
    /// From the first service's start to the last frame stored.
    pub took: Duration,
    /// `frames / took`.
    pub per_s: f64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Rows stored so far (0 before the database exists).
pub fn stored(backend: &Backend) -> u64 {
    if !backend.database().exists() {
        return 0;
    }
    read_counts(&backend.database())
        .iter()
        .map(|s| s.count)
        .sum()
}

fn wait_stored(backend: &Backend, sent: u64, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    while stored(backend) < sent {
        if started.elapsed() > limit {
            return Err(format!(
                "{} of {sent} frames stored {limit:?} after the device stopped",
                stored(backend)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(started.elapsed())
}

fn check_once(backend: &Backend, sent: u64) -> Result<(), String> {
    let counts = read_counts(&backend.database());
    match counts.as_slice() {
        [one] if one.count == sent && u64::from(one.max_counter) + 1 == sent => Ok(()),
        _ => Err(format!("not every one of {sent} frames once: {counts:?}")),
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

/// The device at `rate_hz` for `seconds` (after a second of warm-up), then
/// stopped; every frame must be stored exactly once.
pub fn live(rate_hz: u32, seconds: u64) -> Result<LiveFigures, String> {
    let backend = Backend::start(rate_hz, &CHAIN);
    // Frames made before every service was up wait in the device's
    // buffer: they count for "no loss", not for rate and latency.
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let start_ms = now_ms();
    let before = stored(&backend);
    std::thread::sleep(Duration::from_secs(seconds));
    let during = stored(&backend) - before;
    let ran = started.elapsed();
    let sent = backend.stop_telemetry();
    let drain = wait_stored(&backend, sent, Duration::from_secs(120))?;
    check_once(&backend, sent)?;
    let connection = rusqlite::Connection::open_with_flags(
        backend.database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .map_err(|e| e.to_string())?;
    let mut statement = connection
        .prepare("SELECT stored_ms - time_ms FROM telemetry WHERE time_ms >= ?1 ORDER BY 1")
        .map_err(|e| e.to_string())?;
    let latencies: Vec<i64> = statement
        .query_map([start_ms], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| e.to_string())?;
    if latencies.is_empty() {
        return Err("no frame made after the warm-up".into());
    }
    Ok(LiveFigures {
        rate_hz,
        sent,
        stored_per_s: during as f64 / ran.as_secs_f64(),
        drain,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: *latencies.last().expect("not empty"),
    })
}

/// The device at 1000 Hz for `seconds` with no service running, then the
/// services start and store the backlog.
pub fn backlog(seconds: u64) -> Result<BacklogFigures, String> {
    for name in CHAIN {
        crate::binary(name);
    }
    let mut backend = Backend::start(1000, &[]);
    std::thread::sleep(Duration::from_secs(seconds));
    let sent = backend.stop_telemetry();
    let started = Instant::now();
    for name in CHAIN {
        backend.start_service(name);
    }
    wait_stored(&backend, sent, Duration::from_secs(300))?;
    let took = started.elapsed();
    check_once(&backend, sent)?;
    Ok(BacklogFigures {
        frames: sent,
        took,
        per_s: sent as f64 / took.as_secs_f64(),
    })
}
