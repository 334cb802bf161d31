//! Settling a durable delivery once its outcome is known: the return value
//! published durably, then an acknowledgement confirmed by the server; or,
//! after a failure, a negative acknowledgement with a back-off delay, and
//! after the last delivery a dead letter and a termination.

use std::time::Duration;

use async_nats::Subject;
use async_nats::jetstream::AckKind;
use bytes::Bytes;

use crate::engine::outcome::Failure;
use crate::error::BoxError;
use crate::handler::reply::Reply;
use crate::jetstream::consumer::DurableRoute;
use crate::jetstream::dead_letter::{dead_letter, dead_letter_headers};
use crate::jetstream::durable::Delivery;
use crate::service::Service;

/// Publishes a successful call's return value to the route's publish
/// targets, durably, with a message id made of the stream, consumer and the
/// stream sequences handled (so a redelivered message, handled again, is
/// stored once). An error when a target did not store it.
pub(crate) async fn publish_result(
    service: &Service,
    route: &DurableRoute,
    reply: Reply,
    first: u64,
    last: u64,
) -> Result<(), String> {
    let Reply::Body { payload, headers } = reply else {
        return Ok(());
    };
    for (index, target) in route.info.publish.iter().enumerate() {
        let id = if first == last {
            format!("{}-{}-{first}-{index}", route.stream, route.consumer_name)
        } else {
            format!(
                "{}-{}-{first}-{last}-{index}",
                route.stream, route.consumer_name
            )
        };
        service
            .publish_durable_inner(target.clone(), id, headers.clone(), payload.clone())
            .await
            .map_err(|e| format!("cannot publish the return value to `{target}`: {e}"))?;
    }
    Ok(())
}

/// Acknowledges a handled delivery and waits for the server to confirm.
pub(crate) async fn settle_done(service: &Service, route: &DurableRoute, delivery: &Delivery) {
    if let Err(e) = acknowledge(service, &delivery.ack, AckKind::Ack, route.ack_wait).await {
        if service.is_stopping() {
            service.note_unconfirmed();
        }
        tracing::warn!(
            handler = %route.info.name, subject = %delivery.subject, stream_sequence = delivery.sequence, error = %e,
            "handled, but the acknowledgement was not confirmed; the message may be \
             handled again"
        );
    }
}

/// Settles a failed delivery (already counted and logged as a failure by
/// the engine): hands it back with a delay from the back-off list, or,
/// after its last delivery, dead-letters and terminates it.
pub(crate) async fn settle_failed(
    service: &Service,
    route: &DurableRoute,
    delivery: Delivery,
    failure: &Failure,
) {
    let Delivery {
        ack,
        delivered,
        sequence,
        subject,
        headers,
        payload,
    } = delivery;
    let name = &route.info.name;
    if delivered >= u64::from(route.max_deliver) {
        tracing::warn!(
            handler = %name, %subject, stream_sequence = sequence, delivery = delivered,
            code = failure.code, error = %failure.message, dead_letter = %route.dead_letter,
            "durable handler failed for the last time; dead-lettering the message"
        );
        let headers = dead_letter_headers(
            headers,
            &subject,
            &failure.message,
            route,
            sequence,
            delivered,
        );
        dead_letter(service, route, headers, payload).await;
        if let Err(e) = acknowledge(service, &ack, AckKind::Term, route.ack_wait).await {
            tracing::warn!(handler = %name, stream_sequence = sequence, error = %e, "cannot terminate a dead-lettered message; it may be delivered again");
        }
        return;
    }
    let delay = route.delay_after(delivered);
    tracing::debug!(
        handler = %name, %subject, stream_sequence = sequence, delivery = delivered,
        max_deliver = route.max_deliver, retry_in_s = delay.as_secs_f64(),
        "durable handler failed; the message is redelivered"
    );
    let kind = AckKind::Nak((!delay.is_zero()).then_some(delay));
    if let Some(client) = service.client()
        && let Err(e) = client.publish(ack, kind.into()).await
    {
        tracing::warn!(handler = %name, error = %e, "cannot send the negative acknowledgement; redelivered after DURABLE_ACK_WAIT");
    }
}

/// The delivery count and stream sequence from a `$JS.ACK.` subject (the
/// 7-token form after the prefix, or the 9-or-more-token form with domain
/// and account hash).
pub(crate) fn parse_ack_subject(ack: &str) -> Option<(u64, u64)> {
    let tokens: Vec<&str> = ack.strip_prefix("$JS.ACK.")?.split('.').collect();
    let first = match tokens.len() {
        7 | 8 => 2,
        n if n >= 9 => 4,
        _ => return None,
    };
    Some((tokens[first].parse().ok()?, tokens[first + 1].parse().ok()?))
}

/// Sends an acknowledgement and waits for the server to confirm it,
/// trying up to three times within `ack_wait`.
async fn acknowledge(
    service: &Service,
    ack: &Subject,
    kind: AckKind,
    ack_wait: Duration,
) -> Result<(), BoxError> {
    let client = service.client().ok_or("no NATS client")?;
    let body: Bytes = kind.into();
    let per_try = (ack_wait / 3).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut last: BoxError = "not sent".into();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match tokio::time::timeout(per_try, client.request(ack.clone(), body.clone())).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = Box::new(e),
            Err(_) => last = "no confirmation from the server in time".into(),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects() {
        assert_eq!(
            parse_ack_subject("$JS.ACK.S.C.3.42.40.1700000000000000000.5"),
            Some((3, 42))
        );
        assert_eq!(
            parse_ack_subject("$JS.ACK._.ACC.S.C.2.7.6.1700000000000000000.0.tok"),
            Some((2, 7))
        );
        assert_eq!(parse_ack_subject("_INBOX.x"), None);
    }
}
