//! Settling a durable delivery once its outcome is known: the return value
//! published durably, then an acknowledgement confirmed by the server; or,
//! when the message is given up (a permanent failure, or a transient one
//! past `DURABLE_RETRY_FOR`), a durable dead letter and a termination (a
//! dead letter that cannot be stored hands the message back instead); or,
//! at shutdown, the message handed back for another instance.

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

/// Gives a delivery up (its failure already counted and logged by the
/// engine): publishes it durably with its error to the dead-letter subject
/// and terminates it. When the dead letter is not stored, the message is
/// handed back instead (negative acknowledgement after the back-off), so it
/// is never lost.
pub(crate) async fn give_up(
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
    tracing::warn!(
        handler = %name, %subject, stream_sequence = sequence, delivery = delivered,
        code = failure.code, error = %failure.message, dead_letter = %route.dead_letter,
        "giving the message up; dead-lettering it"
    );
    let headers = dead_letter_headers(
        headers,
        &subject,
        &failure.message,
        route,
        sequence,
        delivered,
    );
    if let Err(error) = dead_letter(service, route, sequence, headers, payload).await {
        let delay = route.delay_after(delivered);
        tracing::error!(
            handler = %name, stream_sequence = sequence, %error, retry_in_s = delay.as_secs_f64(),
            "the dead letter was not stored; the message is handed back and given up again later"
        );
        nak(service, route, ack, Some(delay)).await;
        return;
    }
    if let Err(e) = acknowledge(service, &ack, AckKind::Term, route.ack_wait).await {
        tracing::warn!(handler = %name, stream_sequence = sequence, error = %e, "cannot terminate a dead-lettered message; it may be delivered again (its dead letter is stored once)");
    }
}

/// Gives a message back to the stream (a negative acknowledgement, after
/// `delay` when given).
pub(crate) async fn nak(
    service: &Service,
    route: &DurableRoute,
    ack: Subject,
    delay: Option<Duration>,
) {
    let kind = AckKind::Nak(delay.filter(|delay| !delay.is_zero()));
    if let Some(client) = service.client()
        && let Err(e) = client.publish(ack, kind.into()).await
    {
        tracing::warn!(handler = %route.info.name, error = %e, "cannot send the negative acknowledgement; redelivered after DURABLE_ACK_WAIT");
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
