//! Durable batch handlers and durable publish targets (issue 14, points 1
//! and 4), against Debian's nats-server and the current release: every
//! message of a successful batch is acknowledged, every message of a failed
//! one redelivered; a message the `Batch<T>` rejects is dead-lettered on
//! its own; the return value is published durably, once per batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use telestion::{Batch, Durable, Json, Route, Service, StreamSpec};

use crate::durable::{jetstream_server, server_binaries};
use crate::support::{self, NatsServer, TestService, WAIT, start_service};

/// Declares the input stream `IN` (`in.>`) and the output stream `OUT`
/// (`out.>`) through a helper service, which then publishes `values` to
/// `in.values` durably.
async fn setup(server: &NatsServer, values: &[&str]) -> (Service, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let setup = start_service(&server.url(), "setup", dir.path(), &[]).await;
    setup
        .declare_stream(StreamSpec::new("IN").subjects(["in.>"]))
        .await
        .unwrap();
    setup
        .declare_stream(StreamSpec::new("OUT").subjects(["out.>"]))
        .await
        .unwrap();
    for value in values {
        setup
            .publish_durable("in.values", value.to_string())
            .await
            .unwrap();
    }
    (setup, dir)
}

/// The bodies stored in stream `OUT`, oldest first.
async fn stored(server: &NatsServer) -> Vec<serde_json::Value> {
    let js = async_nats::jetstream::new(server.client().await);
    let mut stream = js.get_stream("OUT").await.unwrap();
    let info = stream.info().await.unwrap();
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut bodies = Vec::new();
    if info.state.messages == 0 {
        return bodies;
    }
    for sequence in first..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            bodies.push(serde_json::from_slice(&message.payload).unwrap());
        }
    }
    bodies
}

/// Waits until the durable consumer has nothing pending and nothing
/// unacknowledged.
async fn wait_all_acknowledged(server: &NatsServer, consumer: &str) {
    let js = async_nats::jetstream::new(server.client().await);
    support::eventually_async(WAIT, "every message acknowledged", || {
        let js = js.clone();
        let consumer = consumer.to_owned();
        async move {
            let Ok(stream) = js.get_stream("IN").await else {
                return false;
            };
            let Ok(mut consumer) = stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&consumer)
                .await
            else {
                return false;
            };
            consumer
                .info()
                .await
                .is_ok_and(|info| info.num_pending == 0 && info.num_ack_pending == 0)
        }
    })
    .await;
}

/// 300 messages in batches of at most 50: the first call fails (a
/// transient failure), so its batch is tried again after the back-off; in
/// the end every message is in exactly one published batch, in stream
/// order, everything is acknowledged, and each message of the failed batch
/// counts as an error.
#[tokio::test]
async fn batches_are_acknowledged_on_success_and_retried_on_failure() {
    for (label, bin) in server_binaries() {
        let server = jetstream_server(&bin);
        let values: Vec<String> = (0..300).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let (_setup, _dir) = setup(&server, &refs).await;

        let failed_once = Arc::new(AtomicBool::new(false));
        let first_batch = Arc::new(AtomicUsize::new(0));
        let handler = {
            let failed_once = failed_once.clone();
            let first_batch = first_batch.clone();
            move |batch: Batch<Json<u64>>| {
                let failed_once = failed_once.clone();
                let first_batch = first_batch.clone();
                async move {
                    if !failed_once.swap(true, Ordering::SeqCst) {
                        first_batch.store(batch.len(), Ordering::SeqCst);
                        return Err("the first batch fails".to_owned());
                    }
                    Ok(Json(batch.into_iter().map(|Json(x)| x).collect::<Vec<_>>()))
                }
            }
        };
        let service = TestService::start(
            &server,
            "batcher",
            vec![
                Route::new("in.values", handler)
                    .name("store")
                    .batch(50, Duration::from_millis(200))
                    .durable(
                        Durable::new()
                            .stream("IN")
                            .consumer("store")
                            .backoff([Duration::from_millis(100)]),
                    )
                    .publish_to("out.batches"),
            ],
        )
        .await;

        wait_all_acknowledged(&server, "store").await;
        let batches = stored(&server).await;
        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        for batch in &batches {
            let batch = batch.as_array().expect("a published batch is a JSON array");
            assert!(
                !batch.is_empty() && batch.len() <= 50,
                "{label}: batch of {}",
                batch.len()
            );
            for value in batch {
                *seen.entry(value.as_u64().unwrap()).or_default() += 1;
            }
        }
        assert_eq!(
            seen.keys().copied().collect::<Vec<_>>(),
            (0..300).collect::<Vec<_>>(),
            "{label}: every message in a published batch"
        );
        assert!(
            seen.values().all(|count| *count == 1),
            "{label}: a message published twice: {:?}",
            seen.iter().filter(|(_, c)| **c > 1).collect::<Vec<_>>()
        );
        let failed = first_batch.load(Ordering::SeqCst) as u64;
        assert!(failed > 0, "{label}: the first batch was empty");
        let health = service.health();
        assert_eq!(
            health.errors_total, failed,
            "{label}: each message of the failed batch counts"
        );
        service.stop().await.unwrap();
    }
}

/// A message the `Batch<Json<u64>>` rejects fails on its own: it is
/// dead-lettered with its reason at once (a rejection is permanent), while
/// the messages around it are handled and acknowledged.
#[tokio::test]
async fn a_rejected_message_is_dead_lettered_alone() {
    for (label, bin) in server_binaries() {
        let server = jetstream_server(&bin);
        let client = server.client().await;
        let mut dead = client.subscribe("telestion.dead.>").await.unwrap();
        client.flush().await.unwrap();
        let (_setup, _dir) = setup(&server, &["1", "not json", "2"]).await;

        async fn collect(batch: Batch<Json<u64>>) -> Json<Vec<u64>> {
            Json(batch.into_iter().map(|Json(x)| x).collect())
        }
        let service = TestService::start(
            &server,
            "rejecter",
            vec![
                Route::new("in.values", collect)
                    .name("collect")
                    .batch(10, Duration::from_millis(100))
                    .durable(
                        Durable::new()
                            .stream("IN")
                            .max_deliver(2)
                            .backoff([Duration::from_millis(50)]),
                    )
                    .publish_to("out.collected"),
            ],
        )
        .await;

        let letter = support::next_message(&mut dead, WAIT).await;
        assert_eq!(&letter.payload[..], b"not json", "{label}");
        let reason = letter
            .headers
            .as_ref()
            .and_then(|h| h.get("Telestion-Error"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        assert!(
            reason.contains("cannot handle the message"),
            "{label}: {reason}"
        );
        wait_all_acknowledged(&server, "rejecter_collect").await;
        let handled: Vec<u64> = stored(&server)
            .await
            .iter()
            .flat_map(|batch| batch.as_array().cloned().unwrap_or_default())
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(handled, [1, 2], "{label}");
        assert!(
            tokio::time::timeout(Duration::from_millis(500), dead.next())
                .await
                .is_err(),
            "{label}: a second dead letter"
        );
        service.stop().await.unwrap();
    }
}

/// A durable handler (no batch) publishes its return value durably with a
/// message id per stream sequence; a publish target no stream captures
/// fails the start, naming it.
#[tokio::test]
async fn durable_publish_targets_are_stored_and_checked_at_start() {
    let server = NatsServer::start_jetstream();
    let (_setup, _dir) = setup(&server, &["1", "2", "3"]).await;
    async fn double(Json(x): Json<u64>) -> Json<u64> {
        Json(2 * x)
    }
    let service = TestService::start(
        &server,
        "doubler",
        vec![
            Route::new("in.values", double)
                .durable(Durable::new().stream("IN"))
                .publish_to("out.doubled"),
        ],
    )
    .await;
    support::eventually_async(WAIT, "three doubled values stored", || async {
        stored(&server).await.len() == 3
    })
    .await;
    assert_eq!(
        stored(&server).await,
        [
            serde_json::json!(2),
            serde_json::json!(4),
            serde_json::json!(6)
        ]
    );
    service.stop().await.unwrap();

    let data = tempfile::tempdir().unwrap();
    let config = support::service_config(&server.url(), "nowhere", data.path(), &[]);
    let error = TestService::start_with(
        config,
        vec![
            Route::new("in.values", double)
                .durable(Durable::new().stream("IN").consumer("nowhere"))
                .publish_to("elsewhere.doubled"),
        ],
    )
    .await
    .expect_err("a durable publish target without a stream must fail the start");
    let text = telestion::error_chain(&error);
    assert!(text.contains("elsewhere.doubled"), "{text}");
}
