//! Point 9, requests from a service: `Service::request` and
//! `Service::request_json` turn an error reply into the typed
//! [`ServiceError::Remote`] (code and message), name the subject nobody
//! serves, and call a reply that is not JSON a decode error.
//!
//! Old behaviour (commit 32e0a30): an error reply came back as an ordinary
//! `Ok` reply (`request_json::<Value>` even decoded its `{"error": ...}`
//! body as a success), there was no `Remote` or `NoResponders` variant, and
//! a reply that was not JSON became `ServiceError::Encode`, "cannot encode
//! JSON".

use telestion::{Reply, Route, ServiceError};

use crate::support::{NatsServer, TestService};

async fn fails() -> Result<String, String> {
    Err("the sensor is offline".into())
}

async fn refuses() -> Reply {
    Reply::Error {
        code: 422,
        message: "out of range".into(),
    }
}

async fn not_json() -> &'static str {
    "plain text, not JSON"
}

/// A service that answers `req.fail` (a handler error), `req.refuse` (an
/// explicit error code) and `req.text` (a reply that is not JSON).
async fn responder(server: &NatsServer) -> TestService {
    TestService::start(
        server,
        "responder",
        vec![
            Route::new("req.fail", fails),
            Route::new("req.refuse", refuses),
            Route::new("req.text", not_json),
        ],
    )
    .await
}

/// A failing handler's reply reaches the caller as `ServiceError::Remote`
/// with code 500 and the handler's message, from `request` and from
/// `request_json`; an explicit code comes through as sent.
#[tokio::test(flavor = "multi_thread")]
async fn handler_error_is_a_typed_remote_error_with_code_and_message() {
    let server = NatsServer::start();
    let responder = responder(&server).await;
    let caller = TestService::start(&server, "caller", Vec::new()).await;

    let error = caller.request("req.fail", "x").await.unwrap_err();
    match &error {
        ServiceError::Remote {
            subject,
            code,
            message,
        } => {
            assert_eq!(subject, "req.fail");
            assert_eq!(*code, 500);
            assert!(message.contains("the sensor is offline"), "{message}");
        }
        other => panic!("expected ServiceError::Remote, got {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains("req.fail") && text.contains("500") && text.contains("the sensor is offline"),
        "{text}"
    );

    // The error body is JSON, but it is not the answer.
    let error = caller
        .request_json::<_, serde_json::Value>("req.fail", &1)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ServiceError::Remote { code: 500, .. }),
        "{error:?}"
    );

    let error = caller.request("req.refuse", "").await.unwrap_err();
    match error {
        ServiceError::Remote { code, message, .. } => {
            assert_eq!(code, 422);
            assert_eq!(message, "out of range");
        }
        other => panic!("expected ServiceError::Remote, got {other:?}"),
    }
    caller.stop().await.unwrap();
    responder.stop().await.unwrap();
}

/// A request to a subject nobody subscribes to fails at once with
/// `ServiceError::NoResponders`, whose message names the subject.
#[tokio::test(flavor = "multi_thread")]
async fn request_nobody_serves_names_the_subject() {
    let server = NatsServer::start();
    let caller = TestService::start(&server, "caller", Vec::new()).await;

    let error = caller.request("nobody.serves.this", "x").await.unwrap_err();
    assert!(
        matches!(&error, ServiceError::NoResponders { subject } if subject == "nobody.serves.this"),
        "{error:?}"
    );
    assert!(error.to_string().contains("nobody.serves.this"), "{error}");

    let error = caller
        .request_json::<_, i64>("nobody.serves.this", &1)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ServiceError::NoResponders { .. }),
        "{error:?}"
    );
    caller.stop().await.unwrap();
}

/// A reply that is not JSON makes `request_json` fail with
/// `ServiceError::Decode`, which says "decode" (not "encode") and names the
/// subject.
#[tokio::test(flavor = "multi_thread")]
async fn reply_that_is_not_json_is_a_decode_error() {
    let server = NatsServer::start();
    let responder = responder(&server).await;
    let caller = TestService::start(&server, "caller", Vec::new()).await;

    let error = caller
        .request_json::<_, serde_json::Value>("req.text", &"hello")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ServiceError::Decode { subject, .. } if subject == "req.text"),
        "{error:?}"
    );
    let text = telestion::error_chain(&error);
    assert!(text.contains("decode"), "{text}");
    assert!(!text.contains("encode"), "{text}");
    assert!(text.contains("req.text"), "{text}");

    // The same reply is fine as raw bytes.
    let reply = caller.request("req.text", "").await.unwrap();
    assert_eq!(&reply.payload[..], b"plain text, not JSON");
    caller.stop().await.unwrap();
    responder.stop().await.unwrap();
}
