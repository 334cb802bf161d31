//! Batch handlers on core subscriptions (issue 14, point 4): one call for
//! up to N messages or what arrived back to back within the window, in
//! order; a lone message not held back by the window; every
//! request of a batch answered; rejected messages answered on their own;
//! a failure counted per message; the batch setting checked at start.
//! Durable batches are in `tests/reliability/durable_batch.rs`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use telestion::{Batch, HandlerError, Json, Route};

use crate::support::{self, NatsServer, TestService, WAIT};

/// Every batch the handler was called with, as the values it held.
#[derive(Default)]
struct Seen(Mutex<Vec<Vec<u64>>>);

impl Seen {
    fn batches(&self) -> Vec<Vec<u64>> {
        self.0.lock().unwrap().clone()
    }
}

/// A batch handler that records each batch it gets and replies with its
/// size.
fn recorder(subject: &str, seen: Arc<Seen>) -> Route {
    let handler = move |batch: Batch<Json<u64>>| {
        let seen = seen.clone();
        async move {
            let values: Vec<u64> = batch.iter().map(|Json(x)| *x).collect();
            let len = values.len();
            seen.0.lock().unwrap().push(values);
            Json(len)
        }
    };
    Route::new(subject, handler)
}

/// 1,000 messages published at once arrive in batches of at most 100, in
/// publish order, each exactly once.
#[tokio::test]
async fn messages_arrive_in_ordered_batches_of_at_most_n() {
    let server = NatsServer::start();
    let client = server.client().await;
    let seen = Arc::new(Seen::default());
    let service = TestService::start(
        &server,
        "batcher",
        vec![recorder("batch.in", seen.clone()).batch(100, Duration::from_millis(200))],
    )
    .await;
    for i in 0..1000u64 {
        client
            .publish("batch.in", i.to_string().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    support::eventually(WAIT, "every message handled", || {
        seen.batches().iter().map(Vec::len).sum::<usize>() == 1000
    })
    .await;
    let batches = seen.batches();
    assert!(
        batches
            .iter()
            .all(|batch| !batch.is_empty() && batch.len() <= 100),
        "batch sizes {:?}",
        batches.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(
        batches.len() < 100,
        "1000 messages published at once should come in far fewer than 100 calls, got {}",
        batches.len()
    );
    let all: Vec<u64> = batches.concat();
    assert_eq!(all, (0..1000).collect::<Vec<_>>(), "order or completeness");
    service.stop().await.unwrap();
}

/// A lone message is not held back: its batch closes once no further
/// message follows (the quiet gap), long before a 5 s window ends, and the
/// request is answered with the batch's return value.
#[tokio::test]
async fn a_lone_request_is_handled_long_before_the_window_ends() {
    let (logs, _guard) = support::capture_logs();
    let server = NatsServer::start();
    let client = server.client().await;
    let seen = Arc::new(Seen::default());
    let service = TestService::start(
        &server,
        "lone",
        vec![recorder("batch.lone", seen.clone()).batch(1000, Duration::from_secs(5))],
    )
    .await;
    let started = Instant::now();
    let reply = support::try_request(&client, "batch.lone", "7").await;
    let reply = reply.unwrap_or_else(|| panic!("no reply: {}", logs.text()));
    let waited = started.elapsed();
    assert_eq!(&reply.payload[..], b"1", "a batch of one");
    assert!(
        waited < Duration::from_secs(2),
        "the lone message waited for the window ({waited:?})"
    );
    assert_eq!(seen.batches(), vec![vec![7]]);
    service.stop().await.unwrap();
}

/// Requests published back to back (one flush), each with its own reply
/// subject; the replies in publish order.
async fn requests_back_to_back(
    client: &async_nats::Client,
    subject: &str,
    bodies: &[&str],
) -> Vec<async_nats::Message> {
    let mut inboxes = Vec::new();
    for body in bodies {
        let inbox = client.new_inbox();
        let replies = client.subscribe(inbox.clone()).await.unwrap();
        inboxes.push((inbox, replies, body.to_string()));
    }
    client.flush().await.unwrap();
    for (inbox, _, body) in &inboxes {
        client
            .publish_with_reply(subject.to_owned(), inbox.clone(), body.clone().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let mut replies = Vec::new();
    for (_, mut subscriber, _) in inboxes {
        replies.push(support::next_message(&mut subscriber, WAIT).await);
    }
    replies
}

/// Every request of a batch gets the reply; one message the `Batch<T>`
/// rejects (not JSON) is answered with a 400 on its own and counted, the
/// others are handled; a failing batch answers every request with the
/// error and counts every message.
#[tokio::test]
async fn requests_rejections_and_failures_are_answered_per_message() {
    async fn sum(batch: Batch<Json<i64>>) -> Result<Json<i64>, HandlerError> {
        let values: Vec<i64> = batch.iter().map(|Json(x)| *x).collect();
        if values.contains(&-1) {
            return Err(HandlerError::client("-1 is not allowed").with_code(422));
        }
        Ok(Json(values.iter().sum()))
    }
    let server = NatsServer::start();
    let client = server.client().await;
    let service = TestService::start(
        &server,
        "summer",
        vec![Route::new("batch.sum", sum).batch(10, Duration::from_millis(300))],
    )
    .await;

    // Three requests back to back (one batch), one of them not JSON.
    let replies = requests_back_to_back(&client, "batch.sum", &["1", "not json", "2"]).await;
    assert_eq!(&replies[0].payload[..], b"3");
    assert_eq!(&replies[2].payload[..], b"3");
    let rejected = support::error_header(&replies[1]).expect("an error reply");
    assert!(rejected.contains("cannot handle the message"), "{rejected}");
    assert_eq!(
        replies[1]
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error-Code"))
            .map(|v| v.as_str().to_owned())
            .as_deref(),
        Some("400")
    );
    let before = support::health(&client, "__telestion__/health").await["errors_total"]
        .as_u64()
        .unwrap();
    assert_eq!(before, 1, "the rejected message is counted");

    // A failing batch: both requests get the handler's error and code.
    for reply in requests_back_to_back(&client, "batch.sum", &["-1", "5"]).await {
        assert_eq!(
            support::error_header(&reply).as_deref(),
            Some("-1 is not allowed")
        );
        assert_eq!(
            reply
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Service-Error-Code"))
                .map(|v| v.as_str().to_owned())
                .as_deref(),
            Some("422")
        );
    }
    let after = support::health(&client, "__telestion__/health").await["errors_total"]
        .as_u64()
        .unwrap();
    assert_eq!(after, 3, "each message of the failed batch is counted");
    service.stop().await.unwrap();
}

/// A batch handler can be blocking and publish its return value: one
/// publish per batch.
#[tokio::test]
async fn a_blocking_batch_handler_publishes_once_per_batch() {
    fn total(batch: Batch<Json<u64>>) -> Json<u64> {
        std::thread::sleep(Duration::from_millis(10));
        Json(batch.iter().map(|Json(x)| *x).sum())
    }
    let server = NatsServer::start();
    let client = server.client().await;
    let mut totals = client.subscribe("batch.totals").await.unwrap();
    client.flush().await.unwrap();
    let service = TestService::start(
        &server,
        "totals",
        vec![
            Route::blocking("batch.numbers", total)
                .batch(50, Duration::from_millis(500))
                .publish_to("batch.totals"),
        ],
    )
    .await;
    for i in 1..=50u64 {
        client
            .publish("batch.numbers", i.to_string().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let message = support::next_message(&mut totals, WAIT).await;
    assert_eq!(
        &message.payload[..],
        b"1275",
        "one total for the full batch"
    );
    assert!(
        tokio::time::timeout(
            Duration::from_millis(700),
            futures::StreamExt::next(&mut totals)
        )
        .await
        .is_err(),
        "a second publish for one batch"
    );
    service.stop().await.unwrap();
}

/// The batch setting must fit the handler: `Batch<T>` without a batch
/// size, a batch size without `Batch<T>`, and a batch route with
/// concurrency fail the start, naming the handler.
#[tokio::test]
async fn batch_settings_that_do_not_fit_fail_the_start() {
    async fn one(Json(x): Json<u64>) -> Json<u64> {
        Json(x)
    }
    async fn many(batch: Batch<Json<u64>>) -> Json<usize> {
        Json(batch.len())
    }
    let server = NatsServer::start();
    let cases = [
        (Route::new("b.1", many), "has no batch size"),
        (
            Route::new("b.2", one).batch(10, Duration::from_millis(10)),
            "takes no `Batch<T>`",
        ),
        (
            Route::new("b.3", many)
                .batch(10, Duration::from_millis(10))
                .concurrency(4),
            "one batch at a time",
        ),
    ];
    for (route, expected) in cases {
        let data = tempfile::tempdir().unwrap();
        let config = support::service_config(&server.url(), "misfit", data.path(), &[]);
        let error = TestService::start_with(config, vec![route])
            .await
            .expect_err("a misfit batch setting must fail the start");
        let text = telestion::error_chain(&error);
        assert!(text.contains(expected), "{text}");
    }
}
