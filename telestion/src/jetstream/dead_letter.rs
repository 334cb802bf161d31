//! Dead letters: a message given up on is published, with its error and
//! where it came from in headers, to the route's dead-letter subject.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;

use crate::jetstream::consumer::DurableRoute;
use crate::jetstream::settings::dead_letter_headers;
use crate::service::Service;

/// The headers of a dead letter: the original message's own (when it has
/// readable ones) and what went wrong (see [`dead_letter_headers`](crate::dead_letter_headers)).
pub(crate) fn dead_letter_headers(
    original: Option<HeaderMap>,
    subject: &Subject,
    error: &str,
    route: &DurableRoute,
    sequence: u64,
    delivered: u64,
) -> HeaderMap {
    use dead_letter_headers as h;
    let mut headers = original.unwrap_or_default();
    // A dead letter is a new message: an id meant for the original publish
    // would make a stream that captures dead letters drop it.
    headers.insert(
        "Nats-Msg-Id",
        format!("{}-{}-{sequence}", route.stream, route.consumer_name).as_str(),
    );
    headers.insert(h::ERROR, crate::text::one_line(error).as_ref());
    headers.insert(h::SUBJECT, subject.as_str());
    headers.insert(h::STREAM, route.stream.as_str());
    headers.insert(h::SEQUENCE, sequence.to_string().as_str());
    headers.insert(h::CONSUMER, route.consumer_name.as_str());
    headers.insert(h::DELIVERIES, delivered.to_string().as_str());
    headers.insert(h::HANDLER, route.info.name.as_ref());
    headers
}

/// Publishes a dead letter (and waits until the server has it), counts it
/// for health; a failure is logged.
pub(crate) async fn dead_letter(
    service: &Service,
    route: &DurableRoute,
    headers: HeaderMap,
    payload: Bytes,
) {
    let sent = service
        .publish_inner(route.dead_letter.clone(), Some(headers), payload)
        .await;
    let flushed = match (&sent, service.client()) {
        (Ok(()), Some(client)) => tokio::time::timeout(Duration::from_secs(5), client.flush())
            .await
            .map_err(|_| "no confirmation in time".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string())),
        (Err(e), _) => Err(e.to_string()),
        (Ok(()), None) => Ok(()),
    };
    if let Err(e) = flushed {
        if service.is_stopping() {
            service.note_unconfirmed();
        }
        tracing::error!(handler = %route.info.name, subject = %route.dead_letter, error = %e, "cannot publish the dead letter");
    }
    route.dead_lettered.fetch_add(1, Ordering::Relaxed);
    service
        .inner
        .instance
        .update_durable(route.health, |entry| {
            entry.dead_lettered = route.dead_lettered.load(Ordering::Relaxed);
        });
}
