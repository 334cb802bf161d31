//! Network faults: a 3-node cluster losing the node the service is
//! connected to, and a single server down for 10 s while the service keeps
//! publishing into its buffer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use telestion::{Route, Service, ServiceError};

use crate::support::{NatsServer, ServerOptions, eventually};
use crate::support::{eventually_async, start_service, try_health, try_request};

static PINGS: AtomicU64 = AtomicU64::new(0);

async fn echo(body: Bytes) -> Bytes {
    body
}

/// The client port of the node the service is connected to right now.
fn connected_port(service: &Service) -> u16 {
    service.client().unwrap().server_info().port
}

/// Requests until one is answered with `body` (the service handles
/// messages) and health answers with the service's id.
async fn assert_serving(observer: &async_nats::Client, service: &Service, what: &str) {
    let id = service.id().to_owned();
    eventually_async(Duration::from_secs(30), what, || {
        let id = id.clone();
        async move {
            let body = format!("ping-{}", PINGS.fetch_add(1, Ordering::Relaxed));
            let echoed = try_request(observer, "failover.echo", body.clone())
                .await
                .is_some_and(|reply| reply.payload == body.as_bytes());
            let healthy = try_health(observer)
                .await
                .is_some_and(|health| health["service"] == id.as_str());
            echoed && healthy
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_keeps_serving() {
    let (ports, mut nodes) = NatsServer::start_cluster(3, ServerOptions::new());
    let all_urls = ports
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let data = tempfile::tempdir().unwrap();
    let service = start_service(&all_urls, "failover", data.path(), &[]).await;
    service
        .subscribe(Route::new("failover.echo", echo))
        .await
        .unwrap();
    let observer = async_nats::ConnectOptions::new()
        .max_reconnects(None)
        .reconnect_delay_callback(|_| Duration::from_millis(100))
        .connect(
            all_urls
                .split(',')
                .map(|u| u.parse::<async_nats::ServerAddr>().unwrap())
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert_serving(&observer, &service, "the cluster serves the service").await;

    // Round 1: kill the node the service is on; it moves to another one.
    let first = connected_port(&service);
    let first_index = ports.iter().position(|p| *p == first).unwrap();
    nodes[first_index].stop();
    eventually_async(
        Duration::from_secs(30),
        "service reconnects to another node",
        || async { service.is_connected() && connected_port(&service) != first },
    )
    .await;
    assert_serving(&observer, &service, "serving after its node died").await;

    // The node comes back. Then kill both other nodes: the service must use
    // the returned node (and still answer).
    nodes[first_index].restart();
    let others: Vec<usize> = (0..3).filter(|&i| i != first_index).collect();
    // Let the restarted node rejoin the cluster before taking the others away.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for &i in &others {
        nodes[i].stop();
    }
    eventually_async(
        Duration::from_secs(30),
        "service reconnects to the returned node",
        || async { service.is_connected() && connected_port(&service) == first },
    )
    .await;
    assert_serving(&observer, &service, "serving on the returned node").await;

    // Everything back: still serving, and many requests in a row all answered.
    for &i in &others {
        nodes[i].restart();
    }
    assert_serving(&observer, &service, "serving with the full cluster").await;
    for n in 0..50 {
        let body = format!("final-{n}");
        let reply = observer
            .request("failover.echo", body.clone().into())
            .await
            .expect("request after failover");
        assert_eq!(reply.payload, body.as_bytes());
    }
    // The only errors are the disconnects (each may have lost messages in
    // flight): no request failed.
    let health = try_health(&observer).await.unwrap();
    assert!(service.disconnects() >= 2, "{}", service.disconnects());
    assert_eq!(health["errors"], service.disconnects(), "{health}");
    service.shutdown();
    service.drain().await;
}

/// What the service's own broadcast subscription received.
#[derive(Default)]
struct Received(Mutex<Vec<String>>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_delivers_buffered_and_reports_overflow() {
    const BUFFER: usize = 16;
    let mut server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let service = start_service(
        &server.url(),
        "restart",
        data.path(),
        &[("NATS_PUBLISH_BUFFER", &BUFFER.to_string())],
    )
    .await;
    let received = Arc::new(Received::default());
    let sink = received.clone();
    service
        .subscribe(
            Route::new("restart.out", move |body: String| {
                let sink = sink.clone();
                async move { sink.0.lock().unwrap().push(body) }
            })
            .broadcast(),
        )
        .await
        .unwrap();
    service
        .subscribe(Route::new("restart.echo", echo))
        .await
        .unwrap();
    service.publish("restart.out", "before").await.unwrap();
    eventually(Duration::from_secs(10), "the first message", || {
        received.0.lock().unwrap().len() == 1
    })
    .await;

    server.stop();
    let down = std::time::Instant::now();
    eventually(Duration::from_secs(10), "the disconnect is noticed", || {
        !service.is_connected()
    })
    .await;
    // Up to the buffer size, publishing succeeds while disconnected ...
    for n in 0..BUFFER {
        service
            .publish("restart.out", format!("buffered-{n}"))
            .await
            .unwrap_or_else(|e| panic!("message {n} within the buffer failed: {e}"));
    }
    // ... beyond it, every publish fails with BufferFull and is counted.
    let errors_before = service.error_counter().total();
    for n in 0..4 {
        match service
            .publish("restart.out", format!("overflow-{n}"))
            .await
        {
            Err(ServiceError::BufferFull { subject }) => assert_eq!(subject, "restart.out"),
            other => panic!("expected BufferFull for overflow-{n}, got {other:?}"),
        }
    }
    assert_eq!(service.error_counter().total(), errors_before + 4);

    // The server stays down for 10 s, then comes back on the same port.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down.elapsed())).await;
    assert!(!service.is_connected());
    server.restart();
    eventually(Duration::from_secs(15), "the service reconnects", || {
        service.is_connected()
    })
    .await;

    // Exactly the buffered messages arrive, in order; the overflow does not.
    let mut expected = vec!["before".to_owned()];
    expected.extend((0..BUFFER).map(|n| format!("buffered-{n}")));
    eventually(Duration::from_secs(10), "the buffered messages", || {
        received.0.lock().unwrap().len() >= expected.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*received.0.lock().unwrap(), expected);

    // Subscriptions resumed: a new client's requests are handled, and
    // health reports the four errors.
    let observer = server.client().await;
    let reply = observer
        .request("restart.echo", "after".into())
        .await
        .expect("request after restart");
    assert_eq!(reply.payload, "after".as_bytes());
    let health = try_health(&observer).await.expect("health after restart");
    assert!(health["errors"].as_u64().unwrap() >= 4, "{health}");
    service.publish("restart.out", "after").await.unwrap();
    eventually(
        Duration::from_secs(10),
        "a message after reconnecting",
        || {
            received
                .0
                .lock()
                .unwrap()
                .last()
                .is_some_and(|m| m == "after")
        },
    )
    .await;
    service.shutdown();
    service.drain().await;
}
