//! The service the benchmark measures (`cargo run --release -p telestion-bench`,
//! see `BENCHMARKS.md`), written with the macros exactly as a user would.
//! `bench/src/bin/bench_raw.rs` does the same work with hand-written async-nats
//! code; the benchmark compares the two.
//!
//! Subjects (all in the `SERVICE_NAME` queue group):
//!
//! | subject | handler |
//! | --- | --- |
//! | `bench.tel.bytes` | raw body: count it |
//! | `bench.tel.plain` | the same, the handler taking only the body |
//! | `bench.tel.json` | `Json<Sample>` body: decode and count it |
//! | `bench.tel.echo` | request/reply: answer with the body |
//! | `bench.tel.slow` | CPU-heavy handler, one message at a time |
//! | `bench.tel.slow8` | the same with `concurrency = 8` |
//! | `bench.tel.durable` | durable handler (JetStream stream `BENCH_TEL`, one at a time): count it |
//! | `bench.tel.reset` | control: `"<counter> <target>"` starts a round |
//! | `bench.tel.stats` | control: the counts as JSON |
//!
//! When a counter reaches its target, the handler publishes the count to
//! `bench.tel.done`. The prefix `bench.tel` is as long as the raw
//! program's `bench.raw`: both then parse protocol lines of the same length
//! (a byte more costs the client's UTF-8 check about 30 instructions per
//! message, enough to bias the comparison).
//!
//! ```sh
//! NATS_URL=localhost:4222 SERVICE_NAME=bench DATA_DIR=/tmp/bench \
//!     cargo run --release -p telestion-bench --bin bench_service
//! ```

use telestion_bench::work;

use std::sync::{Arc, OnceLock};

use telestion::{Bytes, Json, Service, StartError, State, StreamSpec, subscribe};
use work::{Counter, Counters, Sample};

/// Where a handler announces that its round is complete.
const DONE: &str = "bench.tel.done";

/// Counts a message and announces the end of the round.
async fn count(counter: &Counter, bytes: usize, service: &Service) {
    if let Some(n) = counter.hit(bytes as u64) {
        let _ = service.publish(DONE, n.to_string()).await;
    }
}

/// Raw bytes throughput.
#[subscribe("bench.tel.bytes")]
async fn on_bytes(body: Bytes, counters: State<Counters>, service: Service) {
    count(&counters.hot, body.len(), &service).await;
}

/// `Json<T>` throughput.
#[subscribe("bench.tel.json")]
async fn on_json(Json(sample): Json<Sample>, counters: State<Counters>, service: Service) {
    count(&counters.hot, sample.data.len(), &service).await;
}

/// What the body-only handler uses instead of extractors (set in `main`).
static PLAIN: OnceLock<(Arc<Counters>, Service)> = OnceLock::new();

/// Diagnostic: raw bytes throughput through a handler that takes only the
/// body (no `State`, no `Service` extractor), to tell the dispatch cost from
/// the extractors' cost.
#[subscribe("bench.tel.plain")]
async fn on_plain(body: Bytes) {
    if let Some((counters, service)) = PLAIN.get() {
        count(&counters.plain, body.len(), service).await;
    }
}

/// Request/reply latency.
#[subscribe("bench.tel.echo")]
async fn echo(body: Bytes) -> Bytes {
    body
}

/// A backlogged handler, one message at a time.
#[subscribe("bench.tel.slow")]
async fn slow(body: Bytes, counters: State<Counters>, service: Service) {
    work::slow_work(&body);
    count(&counters.slow, body.len(), &service).await;
}

/// A backlogged handler, up to 8 messages at once.
#[subscribe("bench.tel.slow8", concurrency = 8)]
async fn slow8(body: Bytes, counters: State<Counters>, service: Service) {
    work::slow_work(&body);
    count(&counters.slow8, body.len(), &service).await;
}

/// The stream of the durable handler.
const STREAM: &str = "BENCH_TEL";

/// A durable handler with the defaults (one at a time, in stream order;
/// acknowledged with the server's confirmation after it returns). It
/// waits while the driver holds it (filling the stream before a round).
#[subscribe("bench.tel.durable", durable, stream = "BENCH_TEL")]
async fn on_durable(body: Bytes, counters: State<Counters>, service: Service) {
    counters.gate.pass().await;
    if let Some(n) = counters.durable_hit(body.len() as u64) {
        let _ = service.publish(DONE, n.to_string()).await;
    }
}

/// Starts a round: `"<counter> <target>"`.
#[subscribe("bench.tel.reset")]
async fn reset(command: String, counters: State<Counters>) -> Result<&'static str, String> {
    counters.reset(&command).map(|()| "ok")
}

/// The counts so far.
#[subscribe("bench.tel.stats")]
async fn stats(counters: State<Counters>) -> String {
    counters.stats()
}

#[telestion::service]
async fn main(service: Service) -> Result<(), StartError> {
    let counters = Arc::new(Counters::default());
    service.provide_arc(counters.clone());
    let _ = PLAIN.set((counters, service.clone()));
    service
        .declare_stream(StreamSpec::new(STREAM).subjects(["bench.tel.durable"]))
        .await
}
