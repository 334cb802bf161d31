//! The service the benchmark measures (`cargo run --release -p telestion-bench`,
//! see `BENCHMARKS.md`), written with the macros exactly as a user would.
//! `bench/src/bin/bench_raw.rs` does the same work with hand-written async-nats
//! code; the benchmark compares the two.
//!
//! Subjects (all in the `SERVICE_NAME` queue group):
//!
//! | subject | handler |
//! | --- | --- |
//! | `bench.fw.bytes` | raw body: count it |
//! | `bench.fw.plain` | the same, the handler taking only the body |
//! | `bench.fw.json` | `Json<Sample>` body: decode and count it |
//! | `bench.fw.echo` | request/reply: answer with the body |
//! | `bench.fw.slow` | CPU-heavy handler, one message at a time |
//! | `bench.fw.slow8` | the same with `concurrency = 8` |
//! | `bench.fw.reset` | control: `"<counter> <target>"` starts a round |
//! | `bench.fw.stats` | control: the counts as JSON |
//!
//! When a counter reaches its target, the handler publishes the count to
//! `bench.fw.done`.
//!
//! ```sh
//! NATS_URL=localhost:4222 SERVICE_NAME=bench DATA_DIR=/tmp/bench \
//!     cargo run --release -p telestion-bench --bin bench_service
//! ```

use telestion_bench::work;

use std::sync::{Arc, OnceLock};

use telestion::{Bytes, Json, Service, State, subscribe};
use work::{Counter, Counters, Sample};

/// Where a handler announces that its round is complete.
const DONE: &str = "bench.fw.done";

/// Counts a message and announces the end of the round.
async fn count(counter: &Counter, bytes: usize, service: &Service) {
    if let Some(n) = counter.hit(bytes as u64) {
        let _ = service.publish(DONE, n.to_string()).await;
    }
}

/// Raw bytes throughput.
#[subscribe("bench.fw.bytes")]
async fn on_bytes(body: Bytes, State(counters): State<Counters>, service: Service) {
    count(&counters.hot, body.len(), &service).await;
}

/// `Json<T>` throughput.
#[subscribe("bench.fw.json")]
async fn on_json(Json(sample): Json<Sample>, State(counters): State<Counters>, service: Service) {
    count(&counters.hot, sample.data.len(), &service).await;
}

/// What the body-only handler uses instead of extractors (set in `main`).
static PLAIN: OnceLock<(Arc<Counters>, Service)> = OnceLock::new();

/// Diagnostic: raw bytes throughput through a handler that takes only the
/// body (no `State`, no `Service` extractor), to tell the dispatch cost from
/// the extractors' cost.
#[subscribe("bench.fw.plain")]
async fn on_plain(body: Bytes) {
    if let Some((counters, service)) = PLAIN.get() {
        count(&counters.plain, body.len(), service).await;
    }
}

/// Request/reply latency.
#[subscribe("bench.fw.echo")]
async fn echo(body: Bytes) -> Bytes {
    body
}

/// A backlogged handler, one message at a time.
#[subscribe("bench.fw.slow")]
async fn slow(body: Bytes, State(counters): State<Counters>, service: Service) {
    work::slow_work(&body);
    count(&counters.slow, body.len(), &service).await;
}

/// A backlogged handler, up to 8 messages at once.
#[subscribe("bench.fw.slow8", concurrency = 8)]
async fn slow8(body: Bytes, State(counters): State<Counters>, service: Service) {
    work::slow_work(&body);
    count(&counters.slow8, body.len(), &service).await;
}

/// Starts a round: `"<counter> <target>"`.
#[subscribe("bench.fw.reset")]
async fn reset(command: String, State(counters): State<Counters>) -> Result<&'static str, String> {
    counters.reset(&command).map(|()| "ok")
}

/// The counts so far.
#[subscribe("bench.fw.stats")]
async fn stats(State(counters): State<Counters>) -> String {
    counters.stats()
}

#[telestion::service]
async fn main(service: Service) {
    let counters = Arc::new(Counters::default());
    service.provide_arc(counters.clone());
    let _ = PLAIN.set((counters, service));
}
