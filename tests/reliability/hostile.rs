//! Hostile input through a running service: property tests of the body
//! extractors, plus the named edge cases (max payload, invalid UTF-8,
//! deeply nested JSON). The config loader's property tests are unit tests
//! of the runtime (`telestion/src/config/`), the data-log line's are the
//! standard_ops app's.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use telestion::{Json, Message, Route, Service};

use crate::support::NatsServer;
use crate::support::{json_value, start_service};

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

#[derive(serde::Deserialize)]
struct Point {
    x: i64,
    y: i64,
}

async fn bytes_len(body: Bytes) -> String {
    body.len().to_string()
}
async fn vec_len(body: Vec<u8>) -> String {
    body.len().to_string()
}
async fn message_len(message: Message) -> String {
    message.payload.len().to_string()
}
async fn text_len(body: String) -> String {
    body.len().to_string()
}
async fn json_ok(Json(_value): Json<serde_json::Value>) -> &'static str {
    "ok"
}
async fn point_sum(Json(point): Json<Point>) -> String {
    (point.x.wrapping_add(point.y)).to_string()
}
async fn echo(body: Bytes) -> Bytes {
    body
}

const HANDLERS: [&str; 6] = [
    "hostile.bytes",
    "hostile.vec",
    "hostile.message",
    "hostile.string",
    "hostile.json",
    "hostile.point",
];

async fn extractor_service(server: &NatsServer, dir: &std::path::Path) -> Service {
    let service = start_service(&server.url(), "hostile", dir, &[]).await;
    let routes = [
        Route::new(HANDLERS[0], bytes_len),
        Route::new(HANDLERS[1], vec_len),
        Route::new(HANDLERS[2], message_len),
        Route::new(HANDLERS[3], text_len),
        Route::new(HANDLERS[4], json_ok),
        Route::new(HANDLERS[5], point_sum),
        Route::new("hostile.echo", echo),
    ];
    for route in routes {
        service.subscribe(route).await.unwrap();
    }
    service
}

/// `Ok(body)` for a normal reply, `Err(error)` for an error reply.
async fn ask(client: &async_nats::Client, subject: &str, body: Bytes) -> Result<String, String> {
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(subject.to_owned(), body),
    )
    .await
    .unwrap_or_else(|_| panic!("no reply from {subject} within 5 s"))
    .unwrap_or_else(|e| panic!("request to {subject} failed: {e}"));
    let text = String::from_utf8_lossy(&reply.payload).into_owned();
    match reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error"))
    {
        Some(code) => {
            assert!(!code.as_str().is_empty());
            let json: serde_json::Value = serde_json::from_str(&text).expect("error body is JSON");
            Err(json["error"]
                .as_str()
                .expect("error body names the error")
                .to_owned())
        }
        None => Ok(text),
    }
}

/// What each handler must answer for `body`.
fn expected(subject: &str, body: &[u8]) -> Result<String, ()> {
    let len = body.len().to_string();
    match subject {
        "hostile.bytes" | "hostile.vec" | "hostile.message" => Ok(len),
        "hostile.string" => std::str::from_utf8(body).map(|_| len).map_err(|_| ()),
        "hostile.json" => serde_json::from_slice::<serde_json::Value>(body)
            .map(|_| "ok".to_owned())
            .map_err(|_| ()),
        "hostile.point" => serde_json::from_slice::<Point>(body)
            .map(|p| p.x.wrapping_add(p.y).to_string())
            .map_err(|_| ()),
        _ => unreachable!(),
    }
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        ".{0,64}".prop_map(String::into_bytes),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (any::<i64>(), any::<i64>())
            .prop_map(|(x, y)| format!(r#"{{"x": {x}, "y": {y}}}"#).into_bytes()),
    ]
}

#[test]
fn arbitrary_bodies_always_get_an_answer() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (service, client) = runtime.block_on(async {
        (
            extractor_service(&server, dir.path()).await,
            server.client().await,
        )
    });
    let failures_ref = std::cell::Cell::new(0u64);
    runner(128)
        .run(&body(), |body| {
            runtime.block_on(async {
                for subject in HANDLERS {
                    let answer = ask(&client, subject, Bytes::from(body.clone())).await;
                    match (expected(subject, &body), &answer) {
                        (Ok(want), Ok(got)) => prop_assert_eq!(&want, got, "{}", subject),
                        (Err(()), Err(error)) => {
                            failures_ref.set(failures_ref.get() + 1);
                            prop_assert!(error.starts_with("cannot handle the message"), "{error}");
                        }
                        (want, got) => {
                            return Err(TestCaseError::fail(format!(
                                "{subject}: expected {want:?}, got {got:?}"
                            )));
                        }
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    let failures = failures_ref.get();
    runtime.block_on(async {
        assert!(service.is_connected());
        // Every failure was counted; the service is still healthy otherwise.
        assert_eq!(service.error_counter().total(), failures);
        let health = crate::support::health(&client, "__telestion__/health").await;
        assert_eq!(health["errors_total"], failures);
        service.shutdown();
        service.drain().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_payload_invalid_utf8_and_deep_json() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let service = extractor_service(&server, dir.path()).await;
    let client = server.client().await;
    let max = client.server_info().max_payload;
    assert_eq!(max, 1 << 20, "nats-server's default max payload");

    // Bodies of exactly the maximum size reach every kind of handler.
    let binary: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
    for subject in ["hostile.bytes", "hostile.vec", "hostile.message"] {
        assert_eq!(
            ask(&client, subject, binary.clone().into()).await,
            Ok(max.to_string()),
            "{subject}"
        );
    }
    let text = "é".repeat(max / 2);
    assert_eq!(
        ask(&client, "hostile.string", text.into()).await,
        Ok(max.to_string())
    );
    let json_string = format!("\"{}\"", "a".repeat(max - 2));
    assert_eq!(
        ask(&client, "hostile.json", json_string.into()).await,
        Ok("ok".into())
    );
    // A reply of the maximum size goes back.
    let reply = client
        .request("hostile.echo", binary.clone().into())
        .await
        .unwrap();
    assert_eq!(reply.payload.len(), max);
    // One byte more cannot even be sent: the client refuses it.
    let too_big = vec![0u8; max + 1];
    assert!(
        client
            .publish("hostile.bytes", too_big.into())
            .await
            .is_err()
    );

    // Invalid UTF-8: an error reply for text and JSON, fine for bytes.
    let invalid = Bytes::from_static(&[b'{', 0xff, 0xfe, b'}']);
    let err = ask(&client, "hostile.string", invalid.clone())
        .await
        .unwrap_err();
    assert!(err.contains("not valid UTF-8"), "{err}");
    let err = ask(&client, "hostile.json", invalid.clone())
        .await
        .unwrap_err();
    assert!(err.contains("invalid JSON"), "{err}");
    assert_eq!(ask(&client, "hostile.bytes", invalid).await, Ok("4".into()));

    // 100,000 nested arrays: serde_json's recursion limit, no stack overflow.
    let deep = "[".repeat(100_000);
    let err = ask(&client, "hostile.json", deep.clone().into())
        .await
        .unwrap_err();
    assert!(err.contains("recursion limit"), "{err}");
    let err = ask(&client, "hostile.point", deep.clone().into())
        .await
        .unwrap_err();
    assert!(err.contains("invalid JSON"), "{err}");
    let balanced = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = ask(&client, "hostile.json", balanced.clone().into())
        .await
        .unwrap_err();
    assert!(err.contains("recursion limit"), "{err}");

    // Still serving.
    assert_eq!(
        ask(&client, "hostile.bytes", "ok".into()).await,
        Ok("2".into())
    );
    assert!(service.is_connected());
    service.shutdown();
    service.drain().await;
}
