//! Talking to services from a test: requests that must be answered within
//! a bound, waiting for a published message, health, and polling.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use telestion::health::{self, HealthReport};

use crate::WAIT;

/// A request that must be answered within `timeout`.
///
/// # Panics
///
/// On timeout or error, naming the subject.
pub async fn request_within(
    client: &async_nats::Client,
    subject: &str,
    body: impl Into<bytes::Bytes>,
    timeout: Duration,
) -> async_nats::Message {
    tokio::time::timeout(timeout, client.request(subject.to_string(), body.into()))
        .await
        .unwrap_or_else(|_| panic!("request to {subject} timed out after {timeout:?}"))
        .unwrap_or_else(|e| panic!("request to {subject} failed: {e}"))
}

/// A request that must be answered within [`WAIT`].
pub async fn request(
    client: &async_nats::Client,
    subject: &str,
    body: impl Into<bytes::Bytes>,
) -> async_nats::Message {
    request_within(client, subject, body, WAIT).await
}

/// Sends `value` as JSON and decodes the JSON reply.
///
/// # Panics
///
/// On timeout, an error reply (showing it) or a reply that is not `R`.
pub async fn request_json<T: Serialize + ?Sized, R: DeserializeOwned>(
    client: &async_nats::Client,
    subject: &str,
    value: &T,
) -> R {
    let body = serde_json::to_vec(value).expect("cannot encode the request");
    let reply = request(client, subject, body).await;
    if let Some(error) = error_header(&reply) {
        panic!("{subject} answered with an error: {error}");
    }
    serde_json::from_slice(&reply.payload).unwrap_or_else(|e| {
        panic!(
            "the reply from {subject} is not the expected JSON ({e}): {}",
            String::from_utf8_lossy(&reply.payload)
        )
    })
}

/// A request with a 2 s timeout; `None` when it fails or times out.
pub async fn try_request(
    client: &async_nats::Client,
    subject: &str,
    body: impl Into<bytes::Bytes>,
) -> Option<async_nats::Message> {
    try_request_within(client, subject, body, Duration::from_secs(2))
        .await
        .ok()
}

/// A request answered within `timeout`, or an error that names the subject
/// and says what went wrong (no reply in time, no responders, ...): for
/// code that reports a failure and goes on instead of panicking, such as a
/// benchmark that runs its other cases.
///
/// ```no_run
/// # async fn example(client: async_nats::Client) {
/// use std::time::Duration;
/// match telestion_test::try_request_within(&client, "math.double", "21", Duration::from_secs(5)).await {
///     Ok(reply) => println!("{}", String::from_utf8_lossy(&reply.payload)),
///     Err(e) => eprintln!("{e}"),
/// }
/// # }
/// ```
pub async fn try_request_within(
    client: &async_nats::Client,
    subject: &str,
    body: impl Into<bytes::Bytes>,
    timeout: Duration,
) -> Result<async_nats::Message, String> {
    match tokio::time::timeout(timeout, client.request(subject.to_string(), body.into())).await {
        Ok(Ok(message)) => Ok(message),
        Ok(Err(e)) => Err(format!("request to {subject}: {e}")),
        Err(_) => Err(format!("request to {subject}: no reply within {timeout:?}")),
    }
}

/// The `Nats-Service-Error` header of a reply, if any.
pub fn error_header(message: &async_nats::Message) -> Option<String> {
    message
        .headers
        .as_ref()?
        .get("Nats-Service-Error")
        .map(|v| v.as_str().to_owned())
}

/// The next message of a subscription.
///
/// # Panics
///
/// When none arrives within `timeout` or the subscription ends.
pub async fn next_message(
    subscriber: &mut async_nats::Subscriber,
    timeout: Duration,
) -> async_nats::Message {
    tokio::time::timeout(timeout, subscriber.next())
        .await
        .unwrap_or_else(|_| panic!("no message within {timeout:?}"))
        .expect("the subscription ended")
}

/// Asks the health subject (`__telestion__/health` or the dotted form) and
/// returns the first reply as JSON.
///
/// # Panics
///
/// When no reply comes within 5 s or it is not JSON.
pub async fn health(client: &async_nats::Client, subject: &str) -> serde_json::Value {
    let reply = request_within(client, subject, "", Duration::from_secs(5)).await;
    serde_json::from_slice(&reply.payload).expect("health reply is not JSON")
}

/// Like [`health()`], decoded as a [`HealthReport`].
///
/// # Panics
///
/// When no reply comes within 5 s or it is not a health report.
pub async fn health_report(client: &async_nats::Client, subject: &str) -> HealthReport {
    let value = health(client, subject).await;
    serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("not a health report ({e}): {value}"))
}

/// The health reply of the single service on the bus, if any (2 s).
pub async fn try_health(client: &async_nats::Client) -> Option<serde_json::Value> {
    let reply = try_request(client, health::SUBJECT, "").await?;
    serde_json::from_slice(&reply.payload).ok()
}

/// Polls `check` until it returns true.
///
/// # Panics
///
/// After `timeout`, naming `what`.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, what: &str, mut check: F) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// Polls the async `check` until it returns true.
///
/// # Panics
///
/// After `timeout`, naming `what`.
pub async fn eventually_async<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// Publishes a request on `subject` and collects every reply that arrives
/// within `wait` (for subjects every instance answers, such as
/// `$SRV.STATS.<name>`).
///
/// ```no_run
/// # async fn example(client: async_nats::Client) {
/// use std::time::Duration;
/// let replies = telestion_test::collect_replies(&client, "$SRV.PING", "", Duration::from_millis(500)).await;
/// println!("{} instances", replies.len());
/// # }
/// ```
///
/// # Panics
///
/// When the client cannot subscribe or publish.
pub async fn collect_replies(
    client: &async_nats::Client,
    subject: &str,
    body: impl Into<bytes::Bytes>,
    wait: Duration,
) -> Vec<async_nats::Message> {
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .expect("cannot subscribe to an inbox");
    client
        .publish_with_reply(subject.to_string(), inbox, body.into())
        .await
        .expect("cannot publish the request");
    let mut collected = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await {
        collected.push(reply);
    }
    collected
}
