//! Measurements of the chain device_sim -> io_service -> telemetry_parser
//! -> db_writer: the rate it stores with no loss, the latency from the
//! device's `time_ms` to the row's `stored_ms` (per hop too, by the times
//! the streams stored each frame), and how fast it stores a backlog. Used by the ignored test `pipeline_rate` and the benchmark's
//! `backend` case.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;

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
    /// The same frames hop by hop, then end to end (in fractions of a
    /// millisecond where the clocks allow).
    pub hops: Vec<Hop>,
}

/// The latency of one hop of the chain over the frames of a live run.
#[derive(Debug, Clone)]
pub struct Hop {
    /// From where to where.
    pub name: &'static str,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

impl Hop {
    fn of(name: &'static str, mut values: Vec<f64>) -> Hop {
        values.sort_by(f64::total_cmp);
        let at = |p: f64| values[((values.len() - 1) as f64 * p).round() as usize];
        Hop {
            name,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// When `stream` stored each frame (`(session, counter)` from the message
/// id `<prefix>-<session>-<counter>`), in ms since the epoch with the
/// server's nanoseconds.
async fn stored_times(
    client: &async_nats::Client,
    name: &str,
    prefix: &str,
) -> Result<HashMap<(u32, u32), f64>, String> {
    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(name).await.map_err(|e| e.to_string())?;
    let total = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .messages;
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut times = HashMap::new();
    for _ in 0..total {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .map_err(|_| format!("{name}: reading stopped"))?
            .ok_or("the stream's messages ended")?
            .map_err(|e| e.to_string())?;
        let info = message.info().map_err(|e| e.to_string())?;
        let published = info.published.unix_timestamp_nanos() as f64 / 1e6;
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let mut parts = id.strip_prefix(prefix).unwrap_or("").split('-').skip(1);
        if let (Some(Ok(session)), Some(Ok(counter))) = (
            parts.next().map(str::parse::<u32>),
            parts.next().map(str::parse::<u32>),
        ) {
            times.insert((session, counter), published);
        }
    }
    Ok(times)
}

/// The hops of the frames made since `start_ms`: device -> `TELEMETRY_RAW`
/// (io_service's durable publish), `TELEMETRY_RAW` -> `TELEMETRY` (the
/// parser), `TELEMETRY` -> the row's `stored_ms` (db_writer's batch, taken
/// in its transaction just before the commit), and end to end.
fn hops(backend: &Backend, start_ms: i64) -> Result<Vec<Hop>, String> {
    let connection = rusqlite::Connection::open_with_flags(
        backend.database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .map_err(|e| e.to_string())?;
    let mut statement = connection
        .prepare("SELECT session, counter, time_ms, stored_ms FROM telemetry WHERE time_ms >= ?1")
        .map_err(|e| e.to_string())?;
    let rows: Vec<(u32, u32, i64, i64)> = statement
        .query_map([start_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (raw, parsed) = runtime.block_on(async {
        let client = backend.server.client().await;
        let raw = stored_times(&client, "TELEMETRY_RAW", "raw").await?;
        let parsed = stored_times(&client, "TELEMETRY", "parsed").await?;
        Ok::<_, String>((raw, parsed))
    })?;
    let (mut device_raw, mut raw_parsed, mut parsed_row, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (session, counter, time_ms, stored_ms) in rows {
        let (Some(raw), Some(parsed)) = (
            raw.get(&(session, counter)),
            parsed.get(&(session, counter)),
        ) else {
            return Err(format!("frame {session}/{counter} is not in both streams"));
        };
        device_raw.push(raw - time_ms as f64);
        raw_parsed.push(parsed - raw);
        parsed_row.push(stored_ms as f64 - parsed);
        total.push((stored_ms - time_ms) as f64);
    }
    if total.is_empty() {
        return Err("no frame made after the warm-up".into());
    }
    Ok(vec![
        Hop::of("device -> TELEMETRY_RAW (io_service)", device_raw),
        Hop::of("TELEMETRY_RAW -> TELEMETRY (telemetry_parser)", raw_parsed),
        Hop::of("TELEMETRY -> row (db_writer)", parsed_row),
        Hop::of("device -> row (end to end)", total),
    ])
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
    let hops = hops(&backend, start_ms)?;
    Ok(LiveFigures {
        rate_hz,
        sent,
        stored_per_s: during as f64 / ran.as_secs_f64(),
        drain,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: *latencies.last().expect("not empty"),
        hops,
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
