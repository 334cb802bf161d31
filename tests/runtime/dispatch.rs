//! The dispatch engine: wildcards, queue groups, config-key
//! subjects, bodies of every kind, errors and panics, replies, ordering and
//! concurrency.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use telestion::{Bytes, Json, Route, Service, Subject};

use crate::support::{self, NatsServer};
use crate::{error_header, request, settle, start_by_hand, start_service};

#[tokio::test(flavor = "multi_thread")]
async fn wildcard_subjects() {
    let server = NatsServer::start();
    let service = start_service(&server.url(), "wild", &[]).await;
    let echo_subject = |Subject(subject): Subject| async move { subject };
    service
        .subscribe(Route::new("wild.*", echo_subject))
        .await
        .unwrap();
    service
        .subscribe(Route::new("deep.>", echo_subject).name("deep"))
        .await
        .unwrap();
    settle(&service).await;
    let client = server.client().await;
    for subject in ["wild.a", "wild.b", "deep.a", "deep.a.b.c"] {
        let reply = request(&client, subject, "").await;
        assert_eq!(&reply.payload[..], subject.as_bytes());
    }
    // `*` matches exactly one token: nobody handles `wild.a.b`.
    let result = client.request("wild.a.b", "".into()).await;
    assert!(result.is_err(), "wild.* must not match wild.a.b");
}

/// Starts an instance whose route on `subject` counts into `counter`.
async fn counting_instance(
    server: &NatsServer,
    name: &str,
    subject: &str,
    configure: impl FnOnce(Route) -> Route,
    counter: Arc<AtomicUsize>,
) -> Service {
    let service = start_service(&server.url(), name, &[]).await;
    let route = Route::new(subject, move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    service.subscribe(configure(route)).await.unwrap();
    settle(&service).await;
    service
}

/// Publishes `n` messages to `subject` and returns the two counts once they
/// have stopped changing.
async fn publish_and_count(
    server: &NatsServer,
    subject: &str,
    n: usize,
    counts: [&Arc<AtomicUsize>; 2],
    expected_total: usize,
) -> (usize, usize) {
    let client = server.client().await;
    for i in 0..n {
        client
            .publish(subject.to_string(), i.to_string().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let total = || counts[0].load(Ordering::SeqCst) + counts[1].load(Ordering::SeqCst);
    support::eventually(Duration::from_secs(10), "all messages handled", || {
        total() >= expected_total
    })
    .await;
    // Give duplicates a chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (
        counts[0].load(Ordering::SeqCst),
        counts[1].load(Ordering::SeqCst),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn default_queue_group_is_service_name_and_shared() {
    let server = NatsServer::start();
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let _one = counting_instance(&server, "workers", "work.item", |r| r, a.clone()).await;
    let _two = counting_instance(&server, "workers", "work.item", |r| r, b.clone()).await;
    let (x, y) = publish_and_count(&server, "work.item", 200, [&a, &b], 200).await;
    assert_eq!(x + y, 200, "each message exactly once in total: {x} + {y}");
    assert!(x > 0 && y > 0, "both instances share the work: {x} + {y}");
}

#[tokio::test(flavor = "multi_thread")]
async fn broadcast_reaches_every_instance() {
    let server = NatsServer::start();
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let _one = counting_instance(&server, "radio", "news", Route::broadcast, a.clone()).await;
    let _two = counting_instance(&server, "radio", "news", Route::broadcast, b.clone()).await;
    let (x, y) = publish_and_count(&server, "news", 50, [&a, &b], 100).await;
    assert_eq!((x, y), (50, 50));
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_queue_group_is_shared_across_service_names() {
    let server = NatsServer::start();
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let group = |r: Route| r.queue_group("shared-group");
    let _one = counting_instance(&server, "alpha", "jobs", group, a.clone()).await;
    let _two = counting_instance(&server, "beta", "jobs", group, b.clone()).await;
    let (x, y) = publish_and_count(&server, "jobs", 100, [&a, &b], 100).await;
    assert_eq!(x + y, 100, "{x} + {y}");
}

#[tokio::test(flavor = "multi_thread")]
async fn subject_from_config_key() {
    let server = NatsServer::start();
    let service = start_service(&server.url(), "cfgsub", &[("INPUT_SUBJECT", "from.config")]).await;
    service
        .subscribe(Route::from_config("INPUT_SUBJECT", || async {
            "configured"
        }))
        .await
        .unwrap();
    settle(&service).await;
    let client = server.client().await;
    let reply = request(&client, "from.config", "").await;
    assert_eq!(&reply.payload[..], b"configured");

    let error = service
        .subscribe(Route::from_config("MISSING_SUBJECT_KEY", || async {}))
        .await
        .unwrap_err();
    let error = telestion::error_chain(&error);
    assert!(error.contains("MISSING_SUBJECT_KEY"), "{error}");
}

#[derive(Debug, Deserialize, Serialize)]
struct Point {
    x: i64,
    y: i64,
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_json_is_an_error_reply_and_counted() {
    let server = NatsServer::start();
    let service = start_service(&server.url(), "json", &[]).await;
    let swap = |Json(p): Json<Point>| async move { Json(Point { x: p.y, y: p.x }) };
    service
        .subscribe(Route::new("points.swap", swap))
        .await
        .unwrap();
    settle(&service).await;
    let client = server.client().await;

    let before = support::health(&client, "__telestion__/health").await;
    assert_eq!(before["errors"], 0);
    for bad in [&b"not json"[..], br#"{"x": 1}"#, b"\xff\xfe"] {
        let reply = request(&client, "points.swap", Bytes::copy_from_slice(bad)).await;
        let error = error_header(&reply).expect("an error reply");
        assert!(error.contains("JSON"), "{error}");
        let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
        assert!(body["error"].as_str().unwrap().contains("JSON"), "{body}");
    }
    let after = support::health(&client, "__telestion__/health").await;
    assert_eq!(after["errors"], 3, "{after}");

    // The route keeps working.
    let reply = request(&client, "points.swap", r#"{"x": 1, "y": 2}"#).await;
    assert!(error_header(&reply).is_none());
    let point: Point = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!((point.x, point.y), (2, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_bodies() {
    let server = NatsServer::start();
    let service = start_service(&server.url(), "binary", &[]).await;
    service
        .subscribe(Route::new("bin.text", |text: String| async move {
            text.len().to_string()
        }))
        .await
        .unwrap();
    service
        .subscribe(Route::new("bin.bytes", |body: Bytes| async move { body }))
        .await
        .unwrap();
    service
        .subscribe(Route::new("bin.vec", |body: Vec<u8>| async move {
            body.len().to_string()
        }))
        .await
        .unwrap();
    settle(&service).await;
    let client = server.client().await;
    let binary = Bytes::from_static(&[0xff, 0x00, 0xc3, 0x28, 0x80]);

    let reply = request(&client, "bin.text", binary.clone()).await;
    let error = error_header(&reply).expect("non-UTF-8 text must be an error");
    assert!(error.contains("UTF-8"), "{error}");

    let reply = request(&client, "bin.bytes", binary.clone()).await;
    assert!(error_header(&reply).is_none());
    assert_eq!(reply.payload, binary);

    let reply = request(&client, "bin.vec", binary.clone()).await;
    assert_eq!(&reply.payload[..], b"5");

    // UTF-8 text (also multi-byte) reaches the String handler.
    let reply = request(&client, "bin.text", "grüß").await;
    assert_eq!(&reply.payload[..], b"6");
    let health = support::health(&client, "__telestion__.health").await;
    assert_eq!(health["errors"], 1, "{health}");
}

#[tokio::test(flavor = "multi_thread")]
async fn return_values_become_replies() {
    let server = NatsServer::start();
    let service = start_service(&server.url(), "replies", &[]).await;
    let routes = [
        Route::new("r.json", || async { Json(serde_json::json!({"ok": true})) }),
        Route::new("r.string", || async { String::from("text") }),
        Route::new("r.ok", || async { Ok::<_, String>("fine") }),
        Route::new("r.err", || async { Err::<&'static str, _>("it broke") }),
        Route::new("r.some", || async { Some("here") }),
    ];
    for route in routes {
        service.subscribe(route).await.unwrap();
    }
    settle(&service).await;
    let client = server.client().await;

    let reply = request(&client, "r.json", "").await;
    let value: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(value, serde_json::json!({"ok": true}));
    assert_eq!(&request(&client, "r.string", "").await.payload[..], b"text");
    assert_eq!(&request(&client, "r.ok", "").await.payload[..], b"fine");
    assert_eq!(&request(&client, "r.some", "").await.payload[..], b"here");

    let reply = request(&client, "r.err", "").await;
    assert_eq!(error_header(&reply).as_deref(), Some("it broke"));
    let code = reply
        .headers
        .as_ref()
        .unwrap()
        .get("Nats-Service-Error-Code")
        .map(|v| v.as_str().to_owned());
    assert_eq!(code.as_deref(), Some("500"));
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(body["error"], "it broke");
}

#[tokio::test(flavor = "multi_thread")]
async fn panics_and_errors_are_counted_logged_and_answered() {
    let server = NatsServer::start();
    let client = server.client().await;
    let mut proc = start_by_hand(&server.url(), "fragile", &[], &client).await;

    let reply = request(&client, "byhand.panic", "x").await;
    let error = error_header(&reply).expect("a panic gives an error reply");
    assert!(error.contains("panicked"), "{error}");
    assert!(error.contains("on purpose"), "{error}");

    let reply = request(&client, "byhand.fail", "x").await;
    assert_eq!(
        error_header(&reply).as_deref(),
        Some("nothing works on byhand.fail")
    );

    // Logged with subject and handler name.
    proc.wait_for_stderr("byhand.panic", Duration::from_secs(5));
    proc.wait_for_stderr("byhand.fail", Duration::from_secs(5));
    let stderr = proc.stderr();
    let line = stderr.lines().find(|l| l.contains("byhand.panic")).unwrap();
    assert!(line.contains("panics"), "no handler name: {line}");
    assert!(line.contains("ERROR"), "{line}");
    let line = stderr.lines().find(|l| l.contains("byhand.fail")).unwrap();
    assert!(line.contains("handler=fail"), "no handler name: {line}");

    let health = support::health(&client, "__telestion__/health").await;
    assert_eq!(health["errors"], 2, "{health}");

    // The service keeps running and answering, also after more panics.
    for _ in 0..3 {
        request(&client, "byhand.panic", "x").await;
    }
    let reply = request(&client, "byhand.echo", r#"{"still": "alive"}"#).await;
    assert_eq!(&reply.payload[..], br#"{"still":"alive"}"#);
    let health = support::health(&client, "__telestion__/health").await;
    assert_eq!(health["errors"], 5, "{health}");
    drop(proc);
}

/// A small pseudo-random delay in ms for message `n` (0..=4).
fn jitter(n: u64) -> u64 {
    n.wrapping_mul(6364136223846793005).rotate_left(17) % 5
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_are_handled_in_arrival_order_by_default() {
    let server = NatsServer::start();
    let service = start_service(&server.url(), "ordered", &[]).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    service
        .subscribe(Route::new("telemetry", move |Json(n): Json<u64>| {
            let log = log.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(jitter(n))).await;
                log.lock().unwrap().push(n);
            }
        }))
        .await
        .unwrap();
    settle(&service).await;
    let client = server.client().await;
    for n in 0..100u64 {
        client
            .publish("telemetry", n.to_string().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    support::eventually(Duration::from_secs(10), "100 messages handled", || {
        seen.lock().unwrap().len() == 100
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
}

/// Subscribes a slow handler with `concurrency` and returns the largest
/// number of messages it handled at the same time for 8 messages.
async fn max_in_flight(concurrency: Option<usize>) -> usize {
    let server = NatsServer::start();
    let service = start_service(&server.url(), "parallel", &[]).await;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (i, m, d) = (in_flight.clone(), max.clone(), done.clone());
    let mut route = Route::new("slow.work", move || {
        let (i, m, d) = (i.clone(), m.clone(), d.clone());
        async move {
            let now = i.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(150)).await;
            i.fetch_sub(1, Ordering::SeqCst);
            d.fetch_add(1, Ordering::SeqCst);
        }
    });
    if let Some(n) = concurrency {
        route = route.concurrency(n);
    }
    service.subscribe(route).await.unwrap();
    settle(&service).await;
    let client = server.client().await;
    for _ in 0..8 {
        client.publish("slow.work", "".into()).await.unwrap();
    }
    client.flush().await.unwrap();
    support::eventually(Duration::from_secs(10), "8 messages handled", || {
        done.load(Ordering::SeqCst) == 8
    })
    .await;
    max.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_limit_overlaps_up_to_n() {
    assert_eq!(max_in_flight(Some(4)).await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn default_is_one_message_at_a_time() {
    assert_eq!(max_in_flight(None).await, 1);
}
