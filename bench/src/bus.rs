//! Talking to the processes under test: connections, bounded requests, and
//! waiting for a fresh process's first reply.

use std::time::{Duration, Instant};

use async_nats::Client;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

/// Results of the benchmark's steps: the error says what broke.
pub type Res<T> = Result<T, String>;

/// The health subject of the spec.
pub const HEALTH: &str = telestion::health::SUBJECT;

/// A client with a subscription buffer large enough for any round.
pub async fn connect(url: &str) -> Res<Client> {
    async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))
}

/// The body of the reply to a request answered within 10 s.
pub async fn request(client: &Client, subject: &str, body: impl Into<Bytes>) -> Res<Bytes> {
    telestion_test::try_request_within(client, subject, body, Duration::from_secs(10))
        .await
        .map(|message| message.payload)
}

/// Waits until a fresh process answers: publishes `subject` (with an inbox
/// reply) every millisecond until a reply satisfies `accept`. Returns the
/// time since `since`.
pub async fn first_reply(
    client: &Client,
    subject: &str,
    since: Instant,
    accept: impl Fn(&[u8]) -> bool,
) -> Res<Duration> {
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    loop {
        if since.elapsed() > Duration::from_secs(20) {
            return Err(format!("no reply on {subject} within 20 s"));
        }
        client
            .publish_with_reply(subject.to_owned(), inbox.clone(), Bytes::new())
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::sleep(Duration::from_millis(1));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                message = replies.next() => {
                    let Some(message) = message else { return Err("inbox closed".into()) };
                    if accept(&message.payload) {
                        return Ok(since.elapsed());
                    }
                }
                _ = &mut deadline => break,
            }
        }
    }
}

/// Accepts the raw program's answer on `bench.raw.ping` (and not the
/// server's no-responders status, which arrives, empty, while nobody
/// subscribes yet).
pub fn pong(body: &[u8]) -> bool {
    body == b"pong"
}

/// Waits until service instance `id` answers health and then a request to
/// one of its handlers (`subject`, a reply satisfying `accept`): health
/// answers as soon as a service is connected, while its handlers may still
/// be subscribing (under callgrind for seconds). Both waits count from
/// `since`.
pub async fn service_ready(
    client: &Client,
    id: &str,
    since: Instant,
    subject: &str,
    accept: impl Fn(&[u8]) -> bool,
) -> Res<Duration> {
    first_reply(client, HEALTH, since, health_from(id)).await?;
    first_reply(client, subject, since, accept).await
}

/// Waits until the benchmark service `id` is ready ([`service_ready`]) by
/// its control handler: an empty command to `bench.tel.reset` is refused
/// with an error reply, which is answer enough; the server's no-responders
/// status (an empty body) is not.
pub async fn bench_service_ready(client: &Client, id: &str, since: Instant) -> Res<Duration> {
    service_ready(client, id, since, "bench.tel.reset", |body| {
        !body.is_empty()
    })
    .await
}

/// Accepts the health reply of the service instance `id`.
pub fn health_from(id: &str) -> impl Fn(&[u8]) -> bool + '_ {
    move |body| {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("service").and_then(Value::as_str).map(|s| s == id))
            .unwrap_or(false)
    }
}
