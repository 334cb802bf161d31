//! A handler that falls behind: the client drops what does not fit in the
//! subscription's buffer (`NATS_SUBSCRIPTION_CAPACITY`), the service logs
//! and counts it, and recovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use telestion::Route;

use crate::support::{NatsServer, eventually};
use crate::support::{capture_logs, start_service, try_health};

#[tokio::test]
async fn slow_consumer_is_logged_counted_and_recovers() {
    // A current-thread runtime: every task runs on this thread, so the
    // captured logs are this test's.
    let (logs, _guard) = capture_logs();
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let service = start_service(
        &server.url(),
        "slow",
        data.path(),
        &[("NATS_SUBSCRIPTION_CAPACITY", "4")],
    )
    .await;
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    service
        .subscribe(Route::new("slow.in", move |_body: bytes::Bytes| {
            let counter = counter.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }))
        .await
        .unwrap();
    let observer = server.client().await;
    let health = try_health(&observer).await.unwrap();
    assert_eq!(health["errors"], 0, "{health}");

    const SENT: usize = 200;
    for n in 0..SENT {
        observer
            .publish("slow.in", n.to_string().into())
            .await
            .unwrap();
    }
    observer.flush().await.unwrap();
    // Wait until the handler has worked off whatever was kept.
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = handled.load(Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
    }
    let kept = handled.load(Ordering::SeqCst);
    assert!(
        kept < SENT,
        "nothing was dropped ({kept} of {SENT} handled)"
    );

    let health = try_health(&observer)
        .await
        .expect("health while recovering");
    assert!(
        health["errors"].as_u64().unwrap() >= 1,
        "dropped messages are not counted: {health}"
    );
    let text = logs.text();
    assert!(
        text.contains("ERROR") && text.contains("slow consumer"),
        "the drop is not logged:\n{text}"
    );

    // Recovery: messages at a pace the handler keeps up with are all handled.
    for n in 0..5 {
        observer
            .publish("slow.in", format!("again-{n}").into())
            .await
            .unwrap();
        observer.flush().await.unwrap();
        eventually(Duration::from_secs(10), "a message after the drop", || {
            handled.load(Ordering::SeqCst) == kept + n + 1
        })
        .await;
    }
    assert!(service.is_connected());
    let health = try_health(&observer).await.expect("health after recovery");
    assert_eq!(health["service"], service.id());
    service.shutdown();
    service.drain().await;
}
