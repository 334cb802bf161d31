//! A measurement, not a check (ignored by default; run it in release mode
//! for figures; the benchmark's `backend` case runs the same):
//!
//! ```sh
//! cargo test --release -p backend_tests --test pipeline_rate -- --ignored --nocapture --test-threads=1
//! ```
//!
//! For each device rate (`PIPELINE_RATES`, default `200,1000` frames per
//! second; 1000 is the simulator's maximum) the chain device_sim ->
//! io_service -> telemetry_parser -> db_writer runs for
//! `PIPELINE_SECONDS` (default 10), then the device stops: it prints the
//! rate stored while the device ran, how long the rest took after it
//! stopped, and the latency from the device's `time_ms` to the row's
//! `stored_ms` (p50, p99, max) of the frames made after a second of
//! warm-up, and fails when a frame was lost or stored twice. The backlog
//! case lets the device make `PIPELINE_BACKLOG_SECONDS` (default 10) of
//! frames at 1000 Hz before the services start, and prints how fast they
//! are stored.

use backend_tests::rate;

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture, preferably --release"]
fn device_to_database_rate_and_latency() {
    let seconds: u64 = env_or("PIPELINE_SECONDS", "10").parse().unwrap();
    let rates: Vec<u32> = env_or("PIPELINE_RATES", "200,1000")
        .split(',')
        .map(|r| r.trim().parse().unwrap())
        .collect();
    for rate_hz in rates {
        let f = rate::live(rate_hz, seconds).unwrap();
        println!(
            "{} Hz: {} frames, stored {:.0}/s while running, the rest {:.2?} after the stop, \
             latency p50 {} ms, p99 {} ms, max {} ms",
            f.rate_hz, f.sent, f.stored_per_s, f.drain, f.p50_ms, f.p99_ms, f.max_ms
        );
        for hop in &f.hops {
            println!(
                "  {}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                hop.name, hop.p50_ms, hop.p99_ms, hop.max_ms
            );
        }
    }
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture, preferably --release"]
fn backlog_drain_rate() {
    let seconds: u64 = env_or("PIPELINE_BACKLOG_SECONDS", "10").parse().unwrap();
    let f = rate::backlog(seconds).unwrap();
    println!(
        "backlog of {} frames stored in {:.2?}: {:.0} frames/s (services' start included)",
        f.frames, f.took, f.per_s
    );
}
