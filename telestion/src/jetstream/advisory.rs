//! Messages the server gave up on: a durable message that the service
//! never settles (the client cannot read it, e.g. a malformed header block
//! from a raw publisher; or the process dies while handling it) is
//! delivered `DURABLE_MAX_DELIVER` times, then the server stops delivering
//! it and says so on
//! `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`. One
//! instance of the service (a queue group) takes that advisory, reads the
//! message's stored copy through the JetStream API (the header block
//! base64-encoded in JSON, so nothing the client could choke on), and
//! dead-letters it like any message that failed for the last time: counted
//! in health, logged, never redelivered forever.

use std::sync::Arc;

use async_nats::Subject;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;

use crate::engine::outcome::{Cause, Failure, record_failure};
use crate::error::StartError;
use crate::jetstream::consumer::DurableRoute;
use crate::jetstream::dead_letter::{dead_letter, dead_letter_headers};
use crate::service::Service;

/// The header of a dead letter given up by the server that carries the
/// original header block, base64-encoded (it may not be readable as
/// headers).
pub(crate) const ORIGINAL_HEADERS: &str = "Telestion-Original-Headers";

/// What the advisory says.
#[derive(Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    #[serde(default)]
    deliveries: u64,
}

/// The answer of `$JS.API.STREAM.MSG.GET.<stream>`.
#[derive(Deserialize)]
struct Stored {
    message: Option<StoredMessage>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct StoredMessage {
    subject: String,
    #[serde(default)]
    hdrs: Option<String>,
    #[serde(default)]
    data: Option<String>,
}

/// The advisory subject of a route's consumer.
fn subject(route: &DurableRoute) -> String {
    format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
        route.stream, route.consumer_name
    )
}

/// Subscribes the route's advisory (in a queue group: one instance
/// dead-letters each message) and handles it until aborted.
pub(crate) async fn spawn(
    service: &Service,
    route: &Arc<DurableRoute>,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let client = service.nats().map_err(|e| StartError::Handler {
        handler: route.info.name.to_string(),
        source: e.into(),
    })?;
    let subject = subject(route);
    let mut advisories = client
        .queue_subscribe(subject.clone(), route.consumer_name.clone())
        .await
        .map_err(|source| StartError::Subscribe {
            handler: route.info.name.to_string(),
            subject,
            source,
        })?;
    let service = service.clone();
    let route = route.clone();
    Ok(tokio::spawn(async move {
        while let Some(message) = advisories.next().await {
            match serde_json::from_slice::<MaxDeliveries>(&message.payload) {
                Ok(advisory) => given_up(&service, &route, advisory).await,
                Err(e) => {
                    tracing::warn!(handler = %route.info.name, error = %e, "unreadable max-deliveries advisory")
                }
            }
        }
    }))
}

/// Dead-letters the message the server gave up on.
async fn given_up(service: &Service, route: &DurableRoute, advisory: MaxDeliveries) {
    let sequence = advisory.stream_seq;
    let error = format!(
        "the server gave up on this message after {} deliveries without an acknowledgement: \
         the client could not read it (a malformed header block?) or the service stopped \
         while handling it",
        advisory.deliveries
    );
    let failure = Failure::new(500, &error, Cause::Error);
    record_failure(&route.info, &failure, 1, &route.info.subject);
    let (subject, original, payload) = match stored(service, route, sequence).await {
        Ok(stored) => stored,
        Err(reason) => {
            tracing::error!(
                handler = %route.info.name, stream = %route.stream, stream_sequence = sequence,
                %reason, "the server gave up on a durable message, and its stored copy cannot \
                be read; it is not dead-lettered"
            );
            return;
        }
    };
    tracing::error!(
        handler = %route.info.name, %subject, stream_sequence = sequence,
        deliveries = advisory.deliveries, dead_letter = %route.dead_letter, %error,
        "dead-lettering a durable message the server gave up on"
    );
    let mut headers = dead_letter_headers(
        None,
        &Subject::from(subject.as_str()),
        &error,
        route,
        sequence,
        advisory.deliveries,
    );
    if let Some(block) = original {
        let encoded = base64::engine::general_purpose::STANDARD.encode(block);
        headers.insert(ORIGINAL_HEADERS, encoded.as_str());
    }
    dead_letter(service, route, headers, payload).await;
}

/// The stored copy of message `sequence`: its subject, raw header block
/// and body.
async fn stored(
    service: &Service,
    route: &DurableRoute,
    sequence: u64,
) -> Result<(String, Option<Vec<u8>>, Bytes), String> {
    let request = serde_json::json!({ "seq": sequence }).to_string();
    let reply = service
        .request(format!("$JS.API.STREAM.MSG.GET.{}", route.stream), request)
        .await
        .map_err(|e| e.to_string())?;
    let stored: Stored = serde_json::from_slice(&reply.payload).map_err(|e| e.to_string())?;
    let message = match (stored.message, stored.error) {
        (Some(message), _) => message,
        (None, error) => return Err(format!("the server answered {error:?}")),
    };
    let decode = |text: Option<String>| -> Result<Option<Vec<u8>>, String> {
        text.map(|text| base64::engine::general_purpose::STANDARD.decode(text))
            .transpose()
            .map_err(|e| e.to_string())
    };
    let original = decode(message.hdrs)?;
    let payload = decode(message.data)?.unwrap_or_default();
    Ok((message.subject, original, Bytes::from(payload)))
}
