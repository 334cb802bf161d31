//! Telecommands as a client sends them (`telecommand.send`), for the tests
//! of the `telecommand` service.

use std::time::Duration;

use serde_json::Value;
use telestion_test::{error_header, request_within};

/// Sends `request` on `telecommand.send` and waits up to 20 s for the
/// reply.
///
/// # Panics
///
/// When no reply comes in time.
pub async fn send(client: &async_nats::Client, request: Value) -> async_nats::Message {
    request_within(
        client,
        "telecommand.send",
        request.to_string(),
        Duration::from_secs(20),
    )
    .await
}

/// The error code of an error reply (`Nats-Service-Error-Code`).
pub fn code(reply: &async_nats::Message) -> Option<String> {
    reply
        .headers
        .as_ref()?
        .get("Nats-Service-Error-Code")
        .map(|v| v.as_str().to_owned())
}

/// The JSON of a successful reply.
///
/// # Panics
///
/// When it is an error reply or not JSON.
pub fn body(reply: &async_nats::Message) -> Value {
    assert_eq!(
        error_header(reply),
        None,
        "error reply: {}",
        String::from_utf8_lossy(&reply.payload)
    );
    serde_json::from_slice(&reply.payload).expect("the reply is not JSON")
}
