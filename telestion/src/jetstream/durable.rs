//! The durable route's loop: keep a standing pull open on the route's
//! consumer, handle what it delivers (in place at concurrency 1, in stream
//! order; on their own tasks otherwise; or in batches), through the engine's
//! call step, and settle each outcome (`settle`). On shutdown no new
//! messages are pulled; what was pulled is finished and acknowledged, what
//! has arrived for the open pull is handed back, and the pull is closed.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::engine::batch::{call_batch, quiet_until};
use crate::engine::call::call_handler;
use crate::engine::outcome::{Cause, Failure, Outcome, record, record_failure};
use crate::handler::Handler;
use crate::handler::extract::Incoming;
use crate::handler::reply::Reply;
use crate::jetstream::condition::Retrying;
use crate::jetstream::consumer::DurableRoute;
use crate::jetstream::settle::{give_up, nak, parse_ack_subject, publish_result, settle_done};
use crate::observe::call_context::CallContext;
use crate::service::Service;

/// Messages asked for per pull and handling slot (see [`run`]).
const PULL_BATCH_PER_SLOT: usize = 100;

/// Runs a durable route until shutdown: keep a standing pull open, handle
/// what it delivers (in place at concurrency 1, in stream order; on their
/// own tasks otherwise; the consumer's max_ack_pending limits how many are
/// unacknowledged), and after the stop signal finish what was pulled and
/// hand back what still arrives.
pub(crate) async fn run<H, Args>(
    handler: H,
    context: Arc<H::Context>,
    service: Service,
    route: Arc<DurableRoute>,
) where
    H: Handler<Args>,
    Args: 'static,
{
    // One call context for what this loop handles in place (in order, or
    // in batches); a message handled on its own task has its own.
    let call_context = route.info.call_context();
    call_context
        .scope(serve(
            handler,
            context,
            service,
            route.clone(),
            &call_context,
        ))
        .await;
}

async fn serve<H, Args>(
    handler: H,
    context: Arc<H::Context>,
    service: Service,
    route: Arc<DurableRoute>,
    call_context: &CallContext,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let stop = service.stopped();
    tokio::pin!(stop);
    let permits = Arc::new(Semaphore::new(route.concurrency));
    let mut stopping = false;
    let mut failures: u32 = 0;
    while !stopping {
        // A free slot: at concurrency 1, the previous message is done.
        let first = tokio::select! {
            biased;
            () = &mut stop => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        // A standing pull for many messages: the server's max_ack_pending
        // (= concurrency) still lets only that many be unacknowledged, and
        // it sends the next one as soon as it has processed an ack, without
        // waiting for a new pull request (one round trip per message, not
        // two). The permits keep the local limit.
        let wanted = match route.batch {
            Some(batch) => batch.max.saturating_mul(2).max(PULL_BATCH_PER_SLOT),
            None => route.concurrency.saturating_mul(PULL_BATCH_PER_SLOT),
        };
        let pull = route
            .consumer
            .batch()
            .max_messages(wanted)
            .expires(route.pull_expires)
            .messages();
        let batch = tokio::select! {
            biased;
            () = &mut stop => break,
            batch = pull => batch,
        };
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(handler = %route.info.name, stream = %route.stream, %error, "cannot pull messages; retrying");
                }
                tokio::select! {
                    biased;
                    () = &mut stop => break,
                    () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        let mut first = Some(first);
        // A batch route's messages waiting for their call, and when the
        // window of the first of them closes.
        let mut pending: Vec<async_nats::Message> = Vec::new();
        let mut window_end = Instant::now();
        // When the pending batch closes: the quiet gap after its latest
        // message, at the latest the window's end.
        let mut close_at = window_end;
        loop {
            let item = tokio::select! {
                biased;
                () = tokio::time::sleep_until(close_at), if !pending.is_empty() => {
                    let messages = std::mem::take(&mut pending);
                    handle_batch(&handler, &context, &service, messages, &route, call_context).await;
                    continue;
                }
                item = batch.next() => item,
                // The consumer was created again: this pull went to the
                // old one.
                () = route.repull.notified() => break,
                () = &mut stop => {
                    stopping = true;
                    // What was pulled for the batch is handled first.
                    if !pending.is_empty() {
                        let messages = std::mem::take(&mut pending);
                        handle_batch(&handler, &context, &service, messages, &route, call_context).await;
                    }
                    // What has arrived for the open pull goes back; then the
                    // pull is closed (its inbox unsubscribed, when `batch`
                    // is dropped below), so the server sends no more here
                    // while the handlers still running finish.
                    while let Some(Some(Ok(message))) = batch.next().now_or_never() {
                        hand_back(&service, &route, message.message).await;
                    }
                    break;
                }
            };
            let Some(item) = item else { break };
            let message = match item {
                Ok(message) => message,
                Err(error) => {
                    // A status such as a leadership change or a deleted
                    // consumer ends this pull; the next one tries again.
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::warn!(handler = %route.info.name, stream = %route.stream, %error, "pull ended with an error; retrying");
                    }
                    if !stopping {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    break;
                }
            };
            failures = 0;
            // Held (kept alive by the watcher) from here until settled.
            if let Some(ack) = &message.message.reply
                && let Some((_, sequence)) = parse_ack_subject(ack.as_str())
            {
                route.condition.hold(sequence, ack);
            }
            if let Some(spec) = route.batch {
                let now = Instant::now();
                if pending.is_empty() {
                    window_end = now + spec.window;
                }
                close_at = Instant::from_std(quiet_until(now.into_std(), window_end.into_std()));
                pending.push(message.message);
                if pending.len() >= spec.max {
                    let messages = std::mem::take(&mut pending);
                    handle_batch(&handler, &context, &service, messages, &route, call_context)
                        .await;
                }
                continue;
            }
            let permit = match first.take() {
                Some(permit) => permit,
                None => match permits.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            if route.concurrency == 1 {
                handle(
                    &handler,
                    &context,
                    service.clone(),
                    message.message,
                    &route,
                    call_context,
                )
                .await;
                drop(permit);
            } else {
                let handler = handler.clone();
                let context = context.clone();
                let service = service.clone();
                let route = route.clone();
                tokio::spawn(async move {
                    let call_context = route.info.call_context();
                    call_context
                        .scope(handle(
                            &handler,
                            &context,
                            service,
                            message.message,
                            &route,
                            &call_context,
                        ))
                        .await;
                    drop(permit);
                });
            }
        }
        // The pull ended (its expiry, or an error): what it delivered for
        // a batch is handled now.
        if !pending.is_empty() {
            handle_batch(&handler, &context, &service, pending, &route, call_context).await;
        }
    }
    // Wait for every message still being handled.
    let _ = permits.acquire_many(route.concurrency as u32).await;
    tracing::debug!(handler = %route.info.name, subject = %route.info.subject, stream = %route.stream, "durable route stopped");
}

/// The wait before a message handed back at shutdown is delivered again:
/// past this instance's last pull, so that it does not come back into that
/// still open pull (a negative acknowledgement without a delay would be
/// redelivered at once into it, handed back again, and so on, each time
/// counting as a delivery until the server gives up on the message).
fn hand_back_delay(route: &DurableRoute) -> Duration {
    route.pull_expires + Duration::from_millis(500)
}

/// Gives a message back to the stream for redelivery (to another instance,
/// or to this one after a restart).
async fn hand_back(service: &Service, route: &DurableRoute, mut message: async_nats::Message) {
    if let Some(ack) = message.reply.take() {
        if let Some((_, sequence)) = parse_ack_subject(ack.as_str()) {
            route.condition.release(sequence);
        }
        nak(service, route, ack, Some(hand_back_delay(route))).await;
    }
}

/// One delivery being handled: its ack subject, delivery count and stream
/// sequence, and the message itself (to call the handler again after a
/// failure, and for a dead letter).
pub(crate) struct Delivery {
    pub(crate) ack: Subject,
    pub(crate) delivered: u64,
    pub(crate) sequence: u64,
    pub(crate) subject: Subject,
    pub(crate) headers: Option<HeaderMap>,
    pub(crate) payload: Bytes,
}

impl Delivery {
    /// Takes the ack subject out of `message`; `None` (logged) when it has
    /// none.
    fn of(mut message: async_nats::Message, route: &DurableRoute) -> Option<Delivery> {
        let Some(ack) = message.reply.take() else {
            tracing::warn!(handler = %route.info.name, "a durable message without an ack subject; ignored");
            return None;
        };
        let (delivered, sequence) = parse_ack_subject(ack.as_str()).unwrap_or((1, 0));
        Some(Delivery {
            ack,
            delivered,
            sequence,
            subject: message.subject,
            headers: message.headers,
            payload: message.payload,
        })
    }

    /// The message, for a call of the handler (without its ack subject).
    fn message(&self) -> async_nats::Message {
        async_nats::Message {
            subject: self.subject.clone(),
            reply: None,
            payload: self.payload.clone(),
            headers: self.headers.clone(),
            status: None,
            description: None,
            length: self.payload.len(),
        }
    }
}

/// What becomes of a message (or a batch) after its tries.
enum Settle {
    /// Handled: acknowledge it.
    Done,
    /// Give it up: dead-letter it.
    GiveUp(Failure),
    /// The service stops while it waits for another try: hand it back.
    HandBack,
}

/// What follows a failed try: give the message up when the failure is
/// permanent (rejected, or a 4xx code) or the retries took longer than
/// `DURABLE_RETRY_FOR`; else try again after the back-off, unless the
/// service stops meanwhile.
async fn after_failure<'a>(
    service: &Service,
    route: &'a DurableRoute,
    failure: Failure,
    tries: &mut Tries<'a>,
) -> Option<Settle> {
    if failure.is_permanent() {
        return Some(Settle::GiveUp(failure));
    }
    let first = *tries.first_failure.get_or_insert_with(Instant::now);
    if first.elapsed() >= route.retry_for {
        return Some(Settle::GiveUp(failure));
    }
    match &tries.retrying {
        Some(retrying) => retrying.failed_again(&failure.message),
        None => tries.retrying = Some(route.condition.retrying(&failure.message)),
    }
    tries.failures += 1;
    let delay = route.delay_after(tries.failures);
    tracing::debug!(
        handler = %route.info.name, retry_in_s = delay.as_secs_f64(), error = %failure.message,
        "durable handler failed; trying again after the back-off"
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => None,
        () = service.stopped() => Some(Settle::HandBack),
    }
}

/// The tries of one message or batch so far.
#[derive(Default)]
struct Tries<'a> {
    failures: u64,
    first_failure: Option<Instant>,
    /// Marks the route failing while it retries.
    retrying: Option<Retrying<'a>>,
}

/// Settles `delivery` as decided.
async fn settle(service: &Service, route: &DurableRoute, delivery: Delivery, settle: &Settle) {
    let sequence = delivery.sequence;
    match settle {
        Settle::Done => settle_done(service, route, &delivery).await,
        Settle::GiveUp(failure) => give_up(service, route, delivery, failure).await,
        Settle::HandBack => {
            nak(service, route, delivery.ack, Some(hand_back_delay(route))).await;
        }
    }
    route.condition.release(sequence);
}

/// The outcome after the return value was published durably (a target that
/// did not store it is a transient failure).
async fn published(
    service: &Service,
    route: &DurableRoute,
    outcome: Outcome,
    first: u64,
    last: u64,
) -> Outcome {
    match outcome {
        Outcome::Done(reply) => match publish_result(service, route, reply, first, last).await {
            Ok(()) => Outcome::Done(Reply::None),
            Err(error) => Outcome::Failed(Failure::new(500, &error, Cause::Error)),
        },
        failed => failed,
    }
}

/// Handles one delivery: the call step, its outcome recorded like any
/// route's, then settled: the return value published durably and the
/// message acknowledged; after a transient failure the handler is called
/// again after the back-off (the message held meanwhile, the route failing
/// in health) for up to `DURABLE_RETRY_FOR`; a permanent failure, or one
/// past that, dead-letters the message.
async fn handle<H, Args>(
    handler: &H,
    context: &H::Context,
    service: Service,
    message: async_nats::Message,
    route: &DurableRoute,
    call_context: &CallContext,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let Some(delivery) = Delivery::of(message, route) else {
        return;
    };
    call_context.begin(
        delivery.subject.as_str(),
        Some((delivery.sequence, delivery.delivered)),
    );
    let mut tries = Tries::default();
    let decision = loop {
        let mut incoming = Incoming::new(delivery.message(), service.clone());
        let watch = route.info.stats.stopwatch();
        let outcome = call_handler(handler, context, &mut incoming).await;
        let sequence = delivery.sequence;
        let outcome = published(&service, route, outcome, sequence, sequence).await;
        let subject = delivery.subject.as_str();
        record(&route.info, &outcome, 1, watch, subject);
        match outcome {
            Outcome::Done(_) => break Settle::Done,
            Outcome::Failed(failure) => {
                if let Some(decision) = after_failure(&service, route, failure, &mut tries).await {
                    break decision;
                }
            }
        }
    };
    settle(&service, route, delivery, &decision).await;
    drop(tries);
    call_context.end();
}

/// Handles one batch of deliveries in one call: messages the `Batch<T>`
/// parameter rejects are dead-lettered on their own; when the call
/// succeeds, its return value is published durably and every other message
/// is acknowledged; after a transient failure the batch is tried again
/// (like one message, see [`handle`]); a permanent one dead-letters it.
async fn handle_batch<H, Args>(
    handler: &H,
    context: &H::Context,
    service: &Service,
    messages: Vec<async_nats::Message>,
    route: &DurableRoute,
    call_context: &CallContext,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let mut deliveries: Vec<Delivery> = messages
        .into_iter()
        .filter_map(|message| Delivery::of(message, route))
        .collect();
    let Some(first) = deliveries.first() else {
        return;
    };
    let subject = first.subject.to_string();
    call_context.begin(&subject, Some((first.sequence, first.delivered)));
    let mut tries = Tries::default();
    let decision = loop {
        let messages: Vec<async_nats::Message> = deliveries.iter().map(Delivery::message).collect();
        let call = call_batch(handler, context, service, &messages).await;
        // A rejected message will not get better: dead-lettered now, alone.
        let mut rejected: Vec<(usize, Failure)> = call.rejected;
        rejected.sort_by_key(|(index, _)| std::cmp::Reverse(*index));
        for (index, failure) in rejected {
            if index < deliveries.len() {
                let delivery = deliveries.remove(index);
                record_failure(&route.info, &failure, 1, delivery.subject.as_str());
                settle(service, route, delivery, &Settle::GiveUp(failure)).await;
            }
        }
        let first = deliveries.first().map_or(0, |d| d.sequence);
        let last = deliveries.last().map_or(0, |d| d.sequence);
        let outcome = published(service, route, call.outcome, first, last).await;
        route.info.stats.record(
            messages.len() as u64,
            call.elapsed,
            outcome.failure().is_some(),
        );
        match outcome {
            Outcome::Done(_) => break Settle::Done,
            Outcome::Failed(failure) => {
                record_failure(&route.info, &failure, deliveries.len() as u64, &subject);
                if deliveries.is_empty() {
                    break Settle::Done;
                }
                if let Some(decision) = after_failure(service, route, failure, &mut tries).await {
                    break decision;
                }
            }
        }
    };
    match decision {
        Settle::Done => {
            futures::future::join_all(
                deliveries
                    .into_iter()
                    .map(|delivery| settle(service, route, delivery, &Settle::Done)),
            )
            .await;
        }
        decision => {
            for delivery in deliveries {
                settle(service, route, delivery, &decision).await;
            }
        }
    }
    drop(tries);
    call_context.end();
}
