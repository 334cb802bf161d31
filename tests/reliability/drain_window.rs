//! The known limit of a drain while publishers keep going. async-nats (0.46
//! to 0.52; its pull request #1504 is in since 0.46 and does not close the
//! window) forgets a drained subscription at the next poll of its
//! connection task after it wrote the `UNSUB`, not on the server's `PONG`,
//! so messages the server routed before it processed the `UNSUB` but that
//! arrive after that poll are dropped by the client. Both tests lose a few
//! dozen messages in most runs (in one or two of the 50 cycles), the
//! hand-written one as much as the service, which shows the loss is in the
//! client, not in the framework; so they are ignored by default. Run them
//! after upgrading async-nats:
//! `cargo test --test reliability -- --ignored drain_window --nocapture`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use telestion::Route;

use crate::support::NatsServer;
use crate::support::start_service;

const SUBJECT: &str = "window.data";
const GROUP: &str = "window";
const CYCLES: usize = 50;
/// Subscription buffers big enough that no member is a slow consumer.
const CAPACITY: usize = 1 << 21;

/// A client whose subscriptions buffer [`CAPACITY`] messages.
async fn connect(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .subscription_capacity(CAPACITY)
        .connect(url)
        .await
        .unwrap()
}

/// Messages handled by the service's handler.
static SERVICE_HANDLED: AtomicU64 = AtomicU64::new(0);
/// Messages handled by the hand-written async-nats member.
static RAW_HANDLED: AtomicU64 = AtomicU64::new(0);

async fn count(_body: Bytes) {
    SERVICE_HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// Counts what `subscriber` receives into `counter` until it ends.
fn count_into(mut subscriber: async_nats::Subscriber, counter: Arc<AtomicU64>) {
    tokio::spawn(async move {
        while subscriber.next().await.is_some() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// `CYCLES` times: start a member of queue group [`GROUP`] with `start`,
/// publish to [`SUBJECT`] without pause, and drain the member (with the
/// closure `start` returned) after 50 ms. A second member stays up all along, so
/// every message must reach one of the two. `handled` counts what the
/// drained members handled. Panics listing the cycles that lost messages.
async fn drain_cycles<S, Fut, D, DFut>(handled: &'static AtomicU64, mut start_member: S)
where
    S: FnMut(String) -> Fut,
    Fut: Future<Output = D>,
    D: FnOnce() -> DFut,
    DFut: Future<Output = ()>,
{
    let taken = Arc::new(AtomicU64::new(0));
    let server = NatsServer::start();
    let publisher = server.client().await;
    let other = connect(&server.url()).await;
    count_into(
        other.queue_subscribe(SUBJECT, GROUP.into()).await.unwrap(),
        taken.clone(),
    );
    other.flush().await.unwrap();
    let arrived = || handled.load(Ordering::Relaxed) + taken.load(Ordering::Relaxed);

    let mut published = arrived();
    let mut lost = Vec::new();
    for cycle in 0..CYCLES {
        let drain = start_member(server.url()).await;
        let stop = Arc::new(AtomicBool::new(false));
        let publishing = tokio::spawn({
            let (publisher, stop) = (publisher.clone(), stop.clone());
            async move {
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    publisher
                        .publish(SUBJECT, Bytes::from_static(b"x"))
                        .await
                        .unwrap();
                    sent += 1;
                    if sent.is_multiple_of(64) {
                        tokio::task::yield_now().await;
                    }
                }
                publisher.flush().await.unwrap();
                sent
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drain().await;
        stop.store(true, Ordering::Relaxed);
        published += publishing.await.unwrap();
        let settled = tokio::time::timeout(Duration::from_secs(5), async {
            while arrived() < published {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if settled.is_err() {
            lost.push((cycle, published - arrived()));
            published = arrived();
        }
    }
    assert!(lost.is_empty(), "messages lost in (cycle, lost): {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "async-nats (0.46 to 0.52) drops what arrives in the drain's UNSUB round trip"]
async fn drain_window_service_loses_nothing_while_publishing() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_owned();
    drain_cycles(&SERVICE_HANDLED, |url| {
        let data_dir = data_dir.clone();
        async move {
            let capacity = CAPACITY.to_string();
            let extra = [("NATS_SUBSCRIPTION_CAPACITY", capacity.as_str())];
            let service = start_service(&url, GROUP, &data_dir, &extra).await;
            service.subscribe(Route::new(SUBJECT, count)).await.unwrap();
            move || async move {
                service.shutdown();
                service.drain().await;
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "async-nats (0.46 to 0.52) drops what arrives in the drain's UNSUB round trip"]
async fn drain_window_raw_async_nats_loses_nothing_while_publishing() {
    drain_cycles(&RAW_HANDLED, |url| async move {
        let client = connect(&url).await;
        let mut subscriber = client.queue_subscribe(SUBJECT, GROUP.into()).await.unwrap();
        client.flush().await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let consumer = tokio::spawn(async move {
            let mut drain = std::pin::pin!(rx);
            loop {
                tokio::select! {
                    message = subscriber.next() => match message {
                        Some(_) => RAW_HANDLED.fetch_add(1, Ordering::Relaxed),
                        None => return,
                    },
                    _ = &mut drain => break,
                };
            }
            subscriber.drain().await.unwrap();
            while subscriber.next().await.is_some() {
                RAW_HANDLED.fetch_add(1, Ordering::Relaxed);
            }
        });
        move || async move {
            tx.send(()).unwrap();
            consumer.await.unwrap();
        }
    })
    .await;
}
