//! Durable publishing: a publish that waits until a JetStream stream
//! confirms it stored the message, retried with the same message id
//! (`Nats-Msg-Id`) so that a retry is stored once.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;
use serde::Serialize;
use tokio::time::Instant;

use crate::error::ServiceError;
use crate::service::Service;

/// The header that carries a message's id: a stream stores a message
/// whose id it saw within its duplicate window (2 minutes by default) only
/// once.
pub const MESSAGE_ID_HEADER: &str = "Nats-Msg-Id";

/// How long one attempt waits for the stream's confirmation.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a durable publish keeps trying (a reconnect, a cluster
/// electing a new stream leader).
const PUBLISH_PATIENCE: Duration = Duration::from_secs(15);
/// How long "nobody answers" is retried before it counts as "JetStream is
/// not enabled" (a restarting server answers like that for a moment).
const NO_STREAM_PATIENCE: Duration = Duration::from_secs(3);

/// A stream's confirmation of a durable publish.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DurableAck {
    /// The stream that stored the message.
    pub stream: String,
    /// Its sequence number in that stream.
    pub sequence: u64,
    /// `true` when the stream had already stored a message with this id
    /// (a retry): it is stored once.
    pub duplicate: bool,
    /// The message id (`Nats-Msg-Id`) used.
    pub message_id: String,
}

impl Service {
    /// Publishes `payload` to `subject` and waits until the stream that
    /// captures the subject confirms it stored it. The message gets a new
    /// id (`Nats-Msg-Id`, a NUID); a publish whose confirmation is lost
    /// (a reconnect, a stream leader fail-over) is retried with that id for
    /// up to 15 s, and the stream stores it once. Fails with
    /// [`ServiceError::NoStream`] when no stream captures the subject, and
    /// [`ServiceError::NotStored`] when no attempt was confirmed. Usable
    /// from handlers and from start-up code.
    ///
    /// ```no_run
    /// # async fn example(service: telestion::Service) -> Result<(), telestion::ServiceError> {
    /// let ack = service.publish_durable("cmd.reboot", "now").await?;
    /// println!("stored as #{} in {}", ack.sequence, ack.stream);
    /// # Ok(()) }
    /// ```
    pub async fn publish_durable(
        &self,
        subject: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Result<DurableAck, ServiceError> {
        self.publish_durable_with_id(subject, nuid::next().to_string(), payload)
            .await
    }

    /// Like [`Service::publish_durable`], with `value` encoded as JSON.
    ///
    /// ```no_run
    /// # async fn example(service: telestion::Service) -> Result<(), telestion::ServiceError> {
    /// service.publish_durable_json("cmd.move", &serde_json::json!({"x": 1})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_durable_json<T: Serialize + ?Sized>(
        &self,
        subject: impl Into<String>,
        value: &T,
    ) -> Result<DurableAck, ServiceError> {
        let body = serde_json::to_vec(value).map_err(ServiceError::Encode)?;
        self.publish_durable(subject, body).await
    }

    /// Like [`Service::publish_durable`] with a message id of the caller's:
    /// publishing the same id again within the stream's duplicate window
    /// (2 minutes by default) stores the message once, also across restarts
    /// of the publisher (derive the id from what the message is about, e.g.
    /// `"command-<uuid>"`).
    ///
    /// ```no_run
    /// # async fn example(service: telestion::Service) -> Result<(), telestion::ServiceError> {
    /// let first = service.publish_durable_with_id("cmd.a", "cmd-17", "x").await?;
    /// let again = service.publish_durable_with_id("cmd.a", "cmd-17", "x").await?;
    /// assert!(again.duplicate && again.sequence == first.sequence);
    /// # Ok(()) }
    /// ```
    pub async fn publish_durable_with_id(
        &self,
        subject: impl Into<String>,
        message_id: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Result<DurableAck, ServiceError> {
        self.publish_durable_inner(subject.into(), message_id.into(), None, payload.into())
            .await
    }

    /// [`Service::publish_durable_with_id`] with headers (a durable
    /// route's return value keeps its headers).
    pub(crate) async fn publish_durable_inner(
        &self,
        subject: String,
        message_id: String,
        extra_headers: Option<async_nats::HeaderMap>,
        payload: Bytes,
    ) -> Result<DurableAck, ServiceError> {
        let client = self.nats()?.clone();
        let js = jetstream::ContextBuilder::new()
            .timeout(ATTEMPT_TIMEOUT)
            .build(client);
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let mut headers = extra_headers.clone().unwrap_or_default();
            headers.insert(MESSAGE_ID_HEADER, message_id.as_str());
            let attempt = async {
                js.publish_with_headers(subject.clone(), headers, payload.clone())
                    .await?
                    .await
            };
            let error = match attempt.await {
                Ok(ack) => {
                    return Ok(DurableAck {
                        stream: ack.stream,
                        sequence: ack.sequence,
                        duplicate: ack.duplicate,
                        message_id,
                    });
                }
                Err(error) => error,
            };
            let elapsed = started.elapsed();
            let retry = match error.kind() {
                PublishErrorKind::StreamNotFound => {
                    // Nobody answered: no stream captures the subject, or
                    // its leader is being elected. Ask which.
                    match js.stream_by_subject(subject.clone()).await {
                        Ok(_) => true,
                        Err(e)
                            if matches!(
                                e.kind(),
                                jetstream::context::GetStreamByNameErrorKind::NotFound
                            ) =>
                        {
                            self.record_error();
                            return Err(ServiceError::NoStream { subject });
                        }
                        // JetStream is off: nobody answers this either.
                        Err(e)
                            if crate::jetstream::declare::no_responders(&e)
                                && elapsed >= NO_STREAM_PATIENCE =>
                        {
                            self.record_error();
                            return Err(ServiceError::NoStream { subject });
                        }
                        // A cluster electing its leaders: try again.
                        Err(_) => true,
                    }
                }
                PublishErrorKind::TimedOut
                | PublishErrorKind::BrokenPipe
                | PublishErrorKind::Other
                | PublishErrorKind::MaxAckPending => true,
                _ => false,
            };
            if !retry || elapsed + pause >= PUBLISH_PATIENCE {
                self.record_error();
                tracing::error!(%subject, %message_id, %error, "durable publish not confirmed");
                return Err(ServiceError::NotStored {
                    subject,
                    message_id,
                    source: error,
                });
            }
            tracing::debug!(%subject, %message_id, %error, "durable publish not confirmed yet; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}
