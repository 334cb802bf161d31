//! A measurement, not a check (ignored by default; run it in release mode
//! for figures):
//!
//! ```sh
//! cargo test --release -p backend_tests --test pipeline_rate -- --ignored --nocapture
//! ```
//!
//! For each device rate (`PIPELINE_RATES`, default `200,1000` frames per
//! second; 1000 is the simulator's maximum) the whole chain device_sim ->
//! io_service -> telemetry_parser -> db_writer runs for
//! `PIPELINE_SECONDS` (default 10); then the device stops and the test
//! waits until every frame is stored. It prints the rate stored while the
//! device ran, how long the rest took after it stopped (the backlog), and
//! the end-to-end latency from the device's `time_ms` to the row's
//! `stored_ms` (p50, p99, max) of the frames made after a second of
//! warm-up, and asserts that no frame was lost or
//! stored twice.

use std::time::{Duration, Instant};

use backend_tests::{Backend, read_counts};

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture, preferably --release"]
fn device_to_database_rate_and_latency() {
    let seconds: u64 = env_or("PIPELINE_SECONDS", "10").parse().unwrap();
    let rates: Vec<u32> = env_or("PIPELINE_RATES", "200,1000")
        .split(',')
        .map(|r| r.trim().parse().unwrap())
        .collect();
    println!("rate_hz  sent  stored_during_run/s  drain_after_stop  latency_p50  p99  max (ms)");
    for rate in rates {
        let backend = Backend::start(rate, &["io_service", "telemetry_parser", "db_writer"]);
        // Frames made before every service was up wait in the device's
        // buffer: they count for "no loss", not for rate and latency.
        std::thread::sleep(Duration::from_secs(1));
        let started = Instant::now();
        let start_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let stored_before = read_counts_or_empty(&backend);
        std::thread::sleep(Duration::from_secs(seconds));
        let stored_during = read_counts_or_empty(&backend) - stored_before;
        let ran = started.elapsed();
        let sent = backend.stop_telemetry();
        let stop = Instant::now();
        loop {
            let stored = read_counts_or_empty(&backend);
            if stored >= sent {
                break;
            }
            assert!(
                stop.elapsed() < Duration::from_secs(120),
                "{stored} of {sent} frames stored 120 s after the device stopped"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let drain = stop.elapsed();
        let counts = read_counts(&backend.database());
        assert_eq!(counts.len(), 1, "{counts:?}");
        assert_eq!(counts[0].count, sent, "every frame exactly once");
        assert_eq!(u64::from(counts[0].max_counter) + 1, sent);

        let connection = rusqlite::Connection::open_with_flags(
            backend.database(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut statement = connection
            .prepare("SELECT stored_ms - time_ms FROM telemetry WHERE time_ms >= ?1 ORDER BY 1")
            .unwrap();
        let latencies: Vec<i64> = statement
            .query_map([start_ms], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        println!(
            "{rate:>7}  {sent:>5}  {:>19.0}  {:>16.2?}  {:>11}  {:>3}  {:>3}",
            stored_during as f64 / ran.as_secs_f64(),
            drain,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or(0),
        );
    }
}

/// The chain's throughput beyond the simulator's 1000 frames per second:
/// the simulator makes `PIPELINE_BACKLOG_SECONDS` (default 10) seconds of
/// frames at 1000 Hz while no service runs, then the services start and
/// store the backlog. Prints frames per second from the first service's
/// start to the last frame stored.
#[test]
#[ignore = "a measurement: run with --ignored --nocapture, preferably --release"]
fn backlog_drain_rate() {
    let seconds: u64 = env_or("PIPELINE_BACKLOG_SECONDS", "10").parse().unwrap();
    let services = ["io_service", "telemetry_parser", "db_writer"];
    for name in services {
        backend_tests::binary(name);
    }
    let mut backend = Backend::start(1000, &[]);
    std::thread::sleep(Duration::from_secs(seconds));
    let sent = backend.stop_telemetry();
    let started = Instant::now();
    for name in services {
        backend.start_service(name);
    }
    loop {
        if read_counts_or_empty(&backend) >= sent {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the backlog of {sent} frames was not stored within 300 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let counts = read_counts(&backend.database());
    assert_eq!(counts[0].count, sent, "every frame exactly once");
    println!(
        "backlog of {sent} frames stored in {took:.2?}: {:.0} frames/s (services started included)",
        sent as f64 / took.as_secs_f64()
    );
}

/// Rows stored so far (0 before the database exists).
fn read_counts_or_empty(backend: &Backend) -> u64 {
    if !backend.database().exists() {
        return 0;
    }
    read_counts(&backend.database())
        .iter()
        .map(|s| s.count)
        .sum()
}
