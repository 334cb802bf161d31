//! The hand-written async-nats program the benchmark compares the framework
//! with (`cargo run --release -p telestion-bench`, see `BENCHMARKS.md`): the
//! same subjects and the same work as `bench/src/bin/bench_service.rs`, under
//! `bench.raw.*` and in queue group `bench-raw`, with one task per
//! subscription as the framework has. It also answers `bench.raw.ping`
//! (for the cold-start comparison). Its durable consumer is hand-written
//! on async-nats JetStream with the framework's policy: stream `BENCH_RAW`
//! on `bench.raw.durable` (file storage, limits retention, as
//! `StreamSpec::new` declares), a durable pull consumer with explicit
//! acks, `ack_wait` 30 s, `max_deliver` -1 (the framework counts
//! deliveries itself), `max_ack_pending` 1, each message acknowledged
//! with the server's confirmation (`double_ack`) after its work.
//!
//! Environment: `NATS_URL`, `NATS_SUBSCRIPTION_CAPACITY` (default 65536).

use telestion_bench::work;

use std::sync::Arc;

use std::time::Duration;

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull, stream};
use async_nats::{Client, Subscriber};
use futures::StreamExt;
use tokio::sync::Semaphore;
use work::{Counter, Counters, Sample};

/// Where a subscriber announces that its round is complete.
const DONE: &str = "bench.raw.done";
/// The queue group of every subscription.
const GROUP: &str = "bench-raw";

/// Counts a message and announces the end of the round.
async fn count(counter: &Counter, bytes: usize, client: &Client) {
    if let Some(n) = counter.hit(bytes as u64) {
        let _ = client.publish(DONE, n.to_string().into()).await;
    }
}

async fn subscribe(client: &Client, subject: &str) -> Subscriber {
    client
        .queue_subscribe(subject.to_owned(), GROUP.to_owned())
        .await
        .expect("cannot subscribe")
}

/// The raw data-log appender: each message on `bench.raw.log.<category>`
/// becomes a line in standard_ops' format, appended with one `write` to
/// `$DATA_DIR/raw-logs/<category>.log` (kept open); a request is answered
/// after its line, as standard_ops does.
async fn appender(client: &Client) -> tokio::task::JoinHandle<()> {
    use std::io::Write;
    let dir = std::path::PathBuf::from(std::env::var("DATA_DIR").expect("DATA_DIR is not set"))
        .join("raw-logs");
    std::fs::create_dir_all(&dir).expect("cannot create raw-logs");
    let mut sub = subscribe(client, "bench.raw.log.*").await;
    let cl = client.clone();
    tokio::spawn(async move {
        let mut files = std::collections::HashMap::<String, std::fs::File>::new();
        while let Some(message) = sub.next().await {
            let subject = message.subject.as_str();
            let category = subject.rsplit('.').next().unwrap_or_default().to_owned();
            let line =
                standard_ops::log_line(subject, &message.payload, std::time::SystemTime::now());
            let file = files.entry(category).or_insert_with_key(|category| {
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(dir.join(format!("{category}.log")))
                    .expect("cannot open a raw log file")
            });
            let written = file.write_all(line.as_bytes()).is_ok();
            if let Some(reply) = message.reply {
                let _ = cl
                    .publish(reply, format!("{{\"ok\":{written}}}").into())
                    .await;
            }
        }
    })
}

fn main() {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    // Experiment knob (see BENCHMARKS.md): how often a busy worker polls I/O.
    if let Some(n) = std::env::var("RAW_EVENT_INTERVAL")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        runtime.event_interval(n);
    }
    runtime.build().expect("tokio runtime").block_on(serve());
}

async fn serve() {
    let url = std::env::var("NATS_URL").expect("NATS_URL is not set");
    let capacity = std::env::var("NATS_SUBSCRIPTION_CAPACITY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(65536);
    let client = async_nats::ConnectOptions::new()
        .subscription_capacity(capacity)
        .connect(url)
        .await
        .expect("cannot connect");
    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::new();

    // The durable consumer first: the framework declares its stream and
    // creates its consumer before it subscribes anything, too.
    tasks.push(durable(client.clone(), counters.clone()).await);

    let mut sub = subscribe(&client, "bench.raw.bytes").await;
    let (c, cl) = (counters.clone(), client.clone());
    tasks.push(tokio::spawn(async move {
        while let Some(message) = sub.next().await {
            count(&c.hot, message.payload.len(), &cl).await;
        }
    }));

    tasks.push(appender(&client).await);

    let mut sub = subscribe(&client, "bench.raw.plain").await;
    let (c, cl) = (counters.clone(), client.clone());
    tasks.push(tokio::spawn(async move {
        while let Some(message) = sub.next().await {
            count(&c.plain, message.payload.len(), &cl).await;
        }
    }));

    let mut sub = subscribe(&client, "bench.raw.json").await;
    let (c, cl) = (counters.clone(), client.clone());
    tasks.push(tokio::spawn(async move {
        while let Some(message) = sub.next().await {
            if let Ok(sample) = serde_json::from_slice::<Sample>(&message.payload) {
                count(&c.hot, sample.data.len(), &cl).await;
            }
        }
    }));

    let mut sub = subscribe(&client, "bench.raw.echo").await;
    let cl = client.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(message) = sub.next().await {
            if let Some(reply) = message.reply {
                let _ = cl.publish(reply, message.payload).await;
            }
        }
    }));

    let mut sub = subscribe(&client, "bench.raw.slow").await;
    let (c, cl) = (counters.clone(), client.clone());
    tasks.push(tokio::spawn(async move {
        while let Some(message) = sub.next().await {
            work::slow_work(&message.payload);
            count(&c.slow, message.payload.len(), &cl).await;
        }
    }));

    let mut sub = subscribe(&client, "bench.raw.slow8").await;
    let (c, cl) = (counters.clone(), client.clone());
    tasks.push(tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(8));
        while let Some(message) = sub.next().await {
            let permit = permits.clone().acquire_owned().await.expect("open");
            let (c, cl) = (c.clone(), cl.clone());
            tokio::spawn(async move {
                work::slow_work(&message.payload);
                count(&c.slow8, message.payload.len(), &cl).await;
                drop(permit);
            });
        }
    }));

    for (subject, kind) in [
        ("bench.raw.reset", 0),
        ("bench.raw.stats", 1),
        ("bench.raw.ping", 2),
    ] {
        let mut sub = subscribe(&client, subject).await;
        let (c, cl) = (counters.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(message) = sub.next().await {
                let Some(reply) = message.reply else { continue };
                let body = match kind {
                    0 => match c.reset(&String::from_utf8_lossy(&message.payload)) {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => e,
                    },
                    1 => c.stats(),
                    _ => "pong".to_owned(),
                };
                let _ = cl.publish(reply, body.into()).await;
            }
        }));
    }

    for task in tasks {
        let _ = task.await;
    }
}

/// Declares `BENCH_RAW`, creates (or updates) the durable consumer of this
/// instance (`bench-raw_<SERVICE_ID>`: the cold-start instances get their
/// own) and consumes it: count, then acknowledge with the server's
/// confirmation, one message at a time.
async fn durable(client: Client, counters: Arc<Counters>) -> tokio::task::JoinHandle<()> {
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(stream::Config {
            name: "BENCH_RAW".into(),
            subjects: vec!["bench.raw.durable".into()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            ..Default::default()
        })
        .await
        .expect("cannot create stream BENCH_RAW");
    let id = std::env::var("SERVICE_ID").unwrap_or_else(|_| "raw".into());
    let name: String = format!("{GROUP}_{id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(name),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_deliver: -1,
            max_ack_pending: 1,
            ..Default::default()
        })
        .await
        .expect("cannot create the durable consumer");
    tokio::spawn(async move {
        let mut messages = consumer.messages().await.expect("cannot consume");
        while let Some(message) = messages.next().await {
            let Ok(message) = message else { continue };
            counters.gate.pass().await;
            if let Some(n) = counters.durable_hit(message.payload.len() as u64) {
                let _ = client.publish(DONE, n.to_string().into()).await;
            }
            let _ = message.double_ack().await;
        }
    })
}
