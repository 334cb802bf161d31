//! Dead letters: a message given up on is published, with its error and
//! where it came from in headers, to the route's dead-letter subject.

use std::sync::atomic::Ordering;

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
    // A dead letter is a new message: an id meant for the original publish
    // would make the dead-letter stream drop it (it gets its own id).
    let mut headers = HeaderMap::new();
    for (name, values) in original.iter().flat_map(HeaderMap::iter) {
        if AsRef::<str>::as_ref(name) != crate::jetstream::publish::MESSAGE_ID_HEADER {
            for value in values {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    headers.insert(h::ERROR, crate::text::one_line(error).as_ref());
    headers.insert(h::SUBJECT, subject.as_str());
    headers.insert(h::STREAM, route.stream.as_str());
    headers.insert(h::SEQUENCE, sequence.to_string().as_str());
    headers.insert(h::CONSUMER, route.consumer_name.as_str());
    headers.insert(h::DELIVERIES, delivered.to_string().as_str());
    headers.insert(h::HANDLER, route.info.name.as_ref());
    headers
}

/// Publishes a dead letter durably (the stream that captures the
/// dead-letter subject confirms it stored it; its message id, made of the
/// stream, consumer and sequence, stores it once however often it is
/// published) and counts it for health. An error when it was not stored.
pub(crate) async fn dead_letter(
    service: &Service,
    route: &DurableRoute,
    sequence: u64,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<(), String> {
    let id = format!("dead-{}-{}-{sequence}", route.stream, route.consumer_name);
    if let Err(e) = service
        .publish_durable_inner(route.dead_letter.clone(), id, Some(headers), payload)
        .await
    {
        if service.is_stopping() {
            service.note_unconfirmed();
        }
        return Err(crate::error::error_chain(&e));
    }
    route.dead_lettered.fetch_add(1, Ordering::Relaxed);
    service
        .inner
        .instance
        .update_durable(route.health, |entry| {
            entry.dead_lettered = route.dead_lettered.load(Ordering::Relaxed);
        });
    Ok(())
}
