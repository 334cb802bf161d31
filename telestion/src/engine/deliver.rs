//! What an outcome sends: the reply (an empty one for `None`), the return
//! value to the route's publish targets, or the error reply. Everything
//! goes out through a [`Sink`]: the service's client in a service, a
//! recording one in the engine's unit tests.

use std::future::Future;

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;

use crate::error::ServiceError;
use crate::handler::reply::Reply;
use crate::service::Service;

use super::RouteInfo;
use super::outcome::{Cause, Failure, Outcome};

/// Where the engine's messages go.
pub(crate) trait Sink: Send + Sync {
    /// Publishes one message.
    fn send(
        &self,
        subject: String,
        headers: Option<HeaderMap>,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;

    /// The largest payload the server accepts.
    fn max_payload(&self) -> usize;
}

impl Sink for Service {
    fn send(
        &self,
        subject: String,
        headers: Option<HeaderMap>,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send {
        self.publish_inner(subject, headers, payload)
    }

    fn max_payload(&self) -> usize {
        self.client()
            .map_or(usize::MAX, |client| client.max_payload())
    }
}

/// Sends what `outcome` means to the requester (`reply_to`) and the
/// route's publish targets. A reply too large for the server becomes a
/// failure (answered with an error reply instead); the outcome to record is
/// returned.
#[inline]
pub(crate) async fn deliver<S: Sink>(
    sink: &S,
    info: &RouteInfo,
    outcome: Outcome,
    reply_to: Option<&Subject>,
    subject: &str,
) -> Outcome {
    match outcome {
        Outcome::Done(Reply::None) => Outcome::Done(Reply::None),
        Outcome::Done(reply) => {
            match send_reply(sink, info, reply, reply_to.map(Subject::to_string), subject).await {
                Some(failure) => {
                    if let Some(reply_to) = reply_to {
                        send_error_reply(sink, reply_to.to_string(), &failure).await;
                    }
                    Outcome::Failed(failure)
                }
                None => Outcome::Done(Reply::None),
            }
        }
        Outcome::Failed(failure) => {
            if let Some(reply_to) = reply_to {
                send_error_reply(sink, reply_to.to_string(), &failure).await;
            }
            Outcome::Failed(failure)
        }
    }
}

/// Publishes a successful reply's body to the publish targets and answers
/// `reply_to`; a failure when the reply is larger than the server accepts
/// (a failed publish for another reason is logged: the client counted it).
pub(crate) async fn send_reply<S: Sink>(
    sink: &S,
    info: &RouteInfo,
    reply: Reply,
    reply_to: Option<String>,
    subject: &str,
) -> Option<Failure> {
    let (headers, payload) = match reply {
        Reply::Body { payload, headers } => {
            publish_targets(sink, info, headers.clone(), payload.clone(), subject).await;
            (headers, payload)
        }
        // `None` of an `Option`: an empty reply, nothing published.
        Reply::Empty => (None, Bytes::new()),
        _ => return None,
    };
    let reply_to = reply_to?;
    let size = payload.len();
    match sink.send(reply_to, headers, payload).await {
        Ok(()) => None,
        // The caller would wait for nothing: tell it why instead.
        Err(e) if too_large(&e) => Some(Failure::new(
            500,
            &format!(
                "the reply is {size} bytes, more than the NATS server accepts ({} bytes)",
                sink.max_payload()
            ),
            Cause::Error,
        )),
        Err(e) => {
            tracing::error!(handler = %info.name, %subject, error = %e, "cannot send reply");
            None
        }
    }
}

/// Publishes a return value to the route's publish targets.
pub(crate) async fn publish_targets<S: Sink>(
    sink: &S,
    info: &RouteInfo,
    headers: Option<HeaderMap>,
    payload: Bytes,
    subject: &str,
) {
    for target in &info.publish {
        if let Err(e) = sink
            .send(target.clone(), headers.clone(), payload.clone())
            .await
        {
            tracing::error!(handler = %info.name, %subject, %target, error = %e, "cannot publish the return value");
        }
    }
}

/// Sends an error reply in the NATS micro-services convention: headers
/// `Nats-Service-Error` (one line) and `Nats-Service-Error-Code`, body
/// `{"error": "<message>"}`. The message is bounded (see `text::bounded`),
/// so the reply always fits the server's payload limit.
pub(crate) async fn send_error_reply<S: Sink>(sink: &S, reply_to: String, failure: &Failure) {
    let error = crate::text::bounded(&failure.message);
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Service-Error", crate::text::one_line(&error).as_ref());
    headers.insert("Nats-Service-Error-Code", failure.code.to_string().as_str());
    let body = serde_json::json!({ "error": error }).to_string();
    if let Err(e) = sink.send(reply_to, Some(headers), body.into()).await {
        tracing::error!(error = %e, "cannot send error reply");
    }
}

/// Whether a publish failed because the message is larger than the
/// server's payload limit.
fn too_large(error: &ServiceError) -> bool {
    matches!(
        error,
        ServiceError::Publish { source, .. }
            if source.kind() == async_nats::client::PublishErrorKind::MaxPayloadExceeded
    )
}
