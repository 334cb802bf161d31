//! Batch routes: one call for up to N messages, or for what arrived
//! within a time window (closed early when no message follows within the
//! quiet gap), in arrival order. The messages a `Batch<T>`
//! parameter rejects fail on their own; the call's outcome applies to the
//! others. The core route's loop is here; the durable one settles the same
//! [`BatchCall`] in `jetstream`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Message, Subscriber};
use futures::{FutureExt, StreamExt};

use crate::error::ExtractError;
use crate::handler::Handler;
use crate::handler::extract::{BatchParts, Incoming};
use crate::handler::reply::Reply;
use crate::observe::call_context::CallContext;
use crate::service::Service;

use super::RouteInfo;
use super::core::warn_drain_unconfirmed;
use super::deliver::{Sink, publish_targets, send_error_reply};
use super::outcome::{Cause, Failure, Outcome, record_failure};

/// How long a batch waits for its next message before it is handled: a
/// batch closes when it holds `max` messages, when `window` has passed
/// since its first message, or when no further message arrived for this
/// long, whichever comes first. Messages published back to back (one
/// flush, or a burst) arrive well within it and form one batch; a lone
/// message is handled about a millisecond after it arrived. Under load
/// the next message is always near, so batches grow towards `max` or the
/// window: batching costs latency only when it saves work.
pub(crate) const QUIET_GAP: Duration = Duration::from_millis(1);

/// When a batch waiting since `now` for its next message closes: after
/// the quiet gap, never after the window's end.
pub(crate) fn quiet_until(now: Instant, window_end: Instant) -> Instant {
    (now + QUIET_GAP).min(window_end)
}

/// A route's batch size and window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchSpec {
    pub(crate) max: usize,
    pub(crate) window: Duration,
}

/// What one call of a batch handler came to.
pub(crate) struct BatchCall {
    /// The call's outcome for the messages the `Batch<T>` parameter took
    /// (`Done(Reply::None)` when it took none: the handler was not called).
    pub(crate) outcome: Outcome,
    /// The messages the `Batch<T>` parameter rejected, by index, as
    /// failures.
    pub(crate) rejected: Vec<(usize, Failure)>,
    /// How long the call took.
    pub(crate) elapsed: Duration,
}

impl BatchCall {
    /// Whether message `index` was rejected.
    pub(crate) fn rejected(&self, index: usize) -> Option<&Failure> {
        self.rejected
            .iter()
            .find(|(rejected, _)| *rejected == index)
            .map(|(_, failure)| failure)
    }
}

/// Calls a batch handler once for `messages` (their clones go into the
/// `Batch` parameter; the caller keeps the originals for replies, acks and
/// dead letters), through the call step.
pub(crate) async fn call_batch<H, Args>(
    handler: &H,
    context: &H::Context,
    service: &Service,
    messages: &[Message],
) -> BatchCall
where
    H: Handler<Args>,
    Args: 'static,
{
    let started = Instant::now();
    let total = messages.len();
    // What the other parameters see: the first message's subject, no body,
    // no headers, no reply subject.
    let mut first = super::timer::tick_message("");
    if let Some(message) = messages.first() {
        first.subject = message.subject.clone();
    }
    let mut incoming = Incoming::new(first, service.clone());
    incoming.batch = Some(Box::new(BatchParts {
        messages: messages.to_vec(),
        rejected: Vec::new(),
    }));
    let outcome = super::call::call!(handler, context, &mut incoming, |incoming: &Incoming| {
        incoming
            .batch
            .as_ref()
            .is_none_or(|parts| parts.rejected.len() < total)
    });
    let rejected = incoming
        .batch
        .take()
        .map(|parts| parts.rejected)
        .unwrap_or_default()
        .into_iter()
        .map(|(index, error): (usize, ExtractError)| (index, Failure::rejected(&error)))
        .collect();
    BatchCall {
        outcome,
        rejected,
        elapsed: started.elapsed(),
    }
}

/// Runs a core batch route until its subscription ends: collect up to
/// `max` messages, or what arrives within `window` of the first as long
/// as the next one follows within the [`QUIET_GAP`], call the handler
/// once, answer every request. At shutdown the subscription is
/// drained like any route's (bounded by `SHUTDOWN_TIMEOUT`), and what
/// arrives is still handled in batches.
pub(crate) async fn run<H, Args>(
    handler: H,
    context: Arc<H::Context>,
    service: Service,
    subscriber: Subscriber,
    info: Arc<RouteInfo>,
    spec: BatchSpec,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let call_context = info.call_context();
    call_context
        .scope(serve(
            handler,
            context,
            service,
            subscriber,
            &info,
            spec,
            &call_context,
        ))
        .await;
}

async fn serve<H, Args>(
    handler: H,
    context: Arc<H::Context>,
    service: Service,
    mut subscriber: Subscriber,
    info: &RouteInfo,
    spec: BatchSpec,
    call_context: &CallContext,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let stop = service.stopped();
    tokio::pin!(stop);
    let mut deadline: Option<Instant> = None;
    let mut pending: Vec<Message> = Vec::with_capacity(spec.max.min(1024));
    let handle = |pending: Vec<Message>| {
        handle_core_batch(&handler, &context, &service, info, pending, call_context)
    };
    loop {
        // The first message of the next batch.
        let first = match deadline {
            Some(limit) => match tokio::time::timeout_at(limit.into(), subscriber.next()).await {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(_) => {
                    // The server did not confirm the drain: handle what the
                    // client holds, then stop.
                    let mut left = 0;
                    while let Some(Some(message)) = subscriber.next().now_or_never() {
                        pending.push(message);
                        left += 1;
                        if pending.len() >= spec.max {
                            handle(std::mem::take(&mut pending)).await;
                        }
                    }
                    if !pending.is_empty() {
                        handle(std::mem::take(&mut pending)).await;
                    }
                    warn_drain_unconfirmed(&service, info, left);
                    break;
                }
            },
            None => tokio::select! {
                biased;
                message = subscriber.next() => match message {
                    Some(message) => message,
                    None => break,
                },
                () = &mut stop => {
                    let limit = Instant::now() + service.server_wait();
                    deadline = Some(limit);
                    if let Ok(Err(e)) = tokio::time::timeout_at(limit.into(), subscriber.drain()).await {
                        tracing::warn!(handler = %info.name, error = %e, "cannot drain subscription");
                    }
                    continue;
                }
            },
        };
        pending.push(first);
        // The rest of the batch: up to `max`, within the window (and the
        // drain's limit).
        let mut window_end = Instant::now() + spec.window;
        if let Some(limit) = deadline {
            window_end = window_end.min(limit);
        }
        let mut ended = false;
        while pending.len() < spec.max {
            // What the client already holds joins at once; otherwise wait
            // for the quiet gap (never past the window).
            let next = match subscriber.next().now_or_never() {
                Some(next) => Ok(next),
                None => {
                    let limit = quiet_until(Instant::now(), window_end);
                    tokio::time::timeout_at(limit.into(), subscriber.next()).await
                }
            };
            match next {
                Ok(Some(message)) => pending.push(message),
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(_) => break,
            }
        }
        handle(std::mem::take(&mut pending)).await;
        if ended {
            break;
        }
    }
    tracing::debug!(handler = %info.name, subject = %info.subject, "route stopped");
}

/// Calls the handler for one batch of core messages and settles it:
/// rejected messages are answered and recorded one by one; the return
/// value is published once to the publish targets and sent to every
/// request of the batch; a failure is recorded for every message the
/// handler took, logged once and answered to every request.
async fn handle_core_batch<H, Args>(
    handler: &H,
    context: &H::Context,
    service: &Service,
    info: &RouteInfo,
    messages: Vec<Message>,
    call_context: &CallContext,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let subject = messages.first().map_or("", |m| m.subject.as_str());
    call_context.begin(subject, None);
    let call = call_batch(handler, context, service, &messages).await;
    settle_core_batch(service, info, &messages, call).await;
    call_context.end();
}

/// What a core batch call means for its messages (see
/// [`handle_core_batch`]).
pub(crate) async fn settle_core_batch<S: Sink>(
    sink: &S,
    info: &RouteInfo,
    messages: &[Message],
    call: BatchCall,
) {
    let subject = messages.first().map_or("", |m| m.subject.as_str());
    for (index, failure) in &call.rejected {
        if let Some(message) = messages.get(*index) {
            if let Some(reply_to) = &message.reply {
                send_error_reply(sink, reply_to.to_string(), failure).await;
            }
            record_failure(info, failure, 1, message.subject.as_str());
        }
    }
    let accepted: Vec<&Message> = messages
        .iter()
        .enumerate()
        .filter(|(index, _)| call.rejected(*index).is_none())
        .map(|(_, message)| message)
        .collect();
    let outcome = match call.outcome {
        Outcome::Done(reply) => match reply_to_all(sink, info, reply, &accepted, subject).await {
            Some(failure) => Outcome::Failed(failure),
            None => Outcome::Done(Reply::None),
        },
        failed => failed,
    };
    if let Outcome::Failed(failure) = &outcome {
        for message in &accepted {
            if let Some(reply_to) = &message.reply {
                send_error_reply(sink, reply_to.to_string(), failure).await;
            }
        }
        record_failure(info, failure, accepted.len() as u64, subject);
    }
    info.stats.record(
        messages.len() as u64,
        call.elapsed,
        outcome.failure().is_some(),
    );
}

/// Publishes a batch's return value once and answers every request of the
/// batch with it; a failure when it is too large to send.
async fn reply_to_all<S: Sink>(
    sink: &S,
    info: &RouteInfo,
    reply: Reply,
    accepted: &[&Message],
    subject: &str,
) -> Option<Failure> {
    let (headers, payload) = match reply {
        Reply::Body { payload, headers } => {
            publish_targets(sink, info, headers.clone(), payload.clone(), subject).await;
            (headers, payload)
        }
        Reply::Empty => (None, bytes::Bytes::new()),
        _ => return None,
    };
    if payload.len() > sink.max_payload() {
        return Some(Failure::new(
            500,
            &format!(
                "the reply is {} bytes, more than the NATS server accepts ({} bytes)",
                payload.len(),
                sink.max_payload()
            ),
            Cause::Error,
        ));
    }
    for message in accepted {
        if let Some(reply_to) = &message.reply
            && let Err(e) = sink
                .send(reply_to.to_string(), headers.clone(), payload.clone())
                .await
        {
            tracing::error!(handler = %info.name, subject = %message.subject, error = %e, "cannot send reply");
        }
    }
    None
}
