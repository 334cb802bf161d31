//! The durable route's loop: keep a standing pull open on the route's
//! consumer, handle what it delivers (in place at concurrency 1, in stream
//! order; on their own tasks otherwise; or in batches), through the engine's
//! call step, and settle each outcome (`settle`). On shutdown no new
//! messages are pulled; what was pulled is finished and acknowledged, what
//! has arrived for the open pull is handed back, and the pull is closed.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::engine::batch::call_batch;
use crate::engine::call::call_handler;
use crate::engine::outcome::{Cause, Failure, Outcome, record, record_failure};
use crate::handler::Handler;
use crate::handler::extract::Incoming;
use crate::handler::reply::Reply;
use crate::jetstream::consumer::DurableRoute;
use crate::jetstream::settle::{parse_ack_subject, publish_result, settle_done, settle_failed};
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
        loop {
            let item = tokio::select! {
                biased;
                () = tokio::time::sleep_until(window_end), if !pending.is_empty() => {
                    let messages = std::mem::take(&mut pending);
                    handle_batch(&handler, &context, &service, messages, &route, call_context).await;
                    continue;
                }
                item = batch.next() => item,
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
            if let Some(spec) = route.batch {
                if pending.is_empty() {
                    window_end = Instant::now() + spec.window;
                }
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

/// Gives a message back to the stream for redelivery (to another instance,
/// or to this one after a restart) once this instance's last pull has
/// expired: a negative acknowledgement without a delay would be
/// redelivered at once into that still open pull, handed back again, and
/// so on, each time counting as a delivery until the server gives up on the
/// message.
async fn hand_back(service: &Service, route: &DurableRoute, mut message: async_nats::Message) {
    let delay = route.pull_expires + Duration::from_millis(500);
    if let Some(ack) = message.reply.take()
        && let Some(client) = service.client()
        && let Err(e) = client.publish(ack, AckKind::Nak(Some(delay)).into()).await
    {
        tracing::debug!(error = %e, "cannot hand a message back; it is redelivered after DURABLE_ACK_WAIT");
    }
}

/// One delivery being handled: its ack subject, delivery count and stream
/// sequence, and what a dead letter needs (kept before the extractors take
/// the body).
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
    fn of(message: &mut async_nats::Message, route: &DurableRoute) -> Option<Delivery> {
        let Some(ack) = message.reply.take() else {
            tracing::warn!(handler = %route.info.name, "a durable message without an ack subject; ignored");
            return None;
        };
        let (delivered, sequence) = parse_ack_subject(ack.as_str()).unwrap_or((1, 0));
        Some(Delivery {
            ack,
            delivered,
            sequence,
            subject: message.subject.clone(),
            headers: message.headers.clone(),
            payload: message.payload.clone(),
        })
    }
}

/// Runs `call` while telling the server every third of the ack wait that
/// the deliveries in `acks` are still being worked on.
async fn with_progress<F: std::future::Future>(
    service: &Service,
    route: &DurableRoute,
    acks: &[&Subject],
    call: F,
) -> F::Output {
    let client = service.client().cloned();
    let mut call = std::pin::pin!(call);
    let interval = (route.ack_wait / 3).max(Duration::from_millis(50));
    let mut progress = tokio::time::interval_at(Instant::now() + interval, interval);
    loop {
        tokio::select! {
            biased;
            outcome = &mut call => break outcome,
            _ = progress.tick() => {
                if let Some(client) = &client {
                    for ack in acks {
                        let _ = client.publish((*ack).clone(), AckKind::Progress.into()).await;
                    }
                }
            }
        }
    }
}

/// Handles one delivery: the call step with progress acks, its outcome
/// recorded like any route's, then settled: the return value published
/// durably and the message acknowledged, or the failure answered with a
/// redelivery after a back-off or, at the last delivery, a dead letter.
async fn handle<H, Args>(
    handler: &H,
    context: &H::Context,
    service: Service,
    mut message: async_nats::Message,
    route: &DurableRoute,
    call_context: &CallContext,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let Some(delivery) = Delivery::of(&mut message, route) else {
        return;
    };
    call_context.begin(
        delivery.subject.as_str(),
        Some((delivery.sequence, delivery.delivered)),
    );
    let mut incoming = Incoming::new(message, service.clone());
    let started = Instant::now();
    let outcome = with_progress(
        &service,
        route,
        &[&delivery.ack],
        call_handler(handler, context, &mut incoming),
    )
    .await;
    let outcome = match outcome {
        Outcome::Done(reply) => {
            match publish_result(&service, route, reply, delivery.sequence, delivery.sequence).await
            {
                Ok(()) => Outcome::Done(Reply::None),
                Err(error) => Outcome::Failed(Failure::new(500, &error, Cause::Error)),
            }
        }
        failed => failed,
    };
    record(
        &route.info,
        &outcome,
        1,
        started.elapsed(),
        delivery.subject.as_str(),
    );
    match outcome {
        Outcome::Done(_) => settle_done(&service, route, &delivery).await,
        Outcome::Failed(failure) => settle_failed(&service, route, delivery, &failure).await,
    }
    call_context.end();
}

/// Handles one batch of deliveries in one call: messages the `Batch<T>`
/// parameter rejects fail on their own; when the call succeeds, its return
/// value is published durably and every other message is acknowledged;
/// when it fails, every other message is redelivered (or dead-lettered
/// after its last delivery).
async fn handle_batch<H, Args>(
    handler: &H,
    context: &H::Context,
    service: &Service,
    mut messages: Vec<async_nats::Message>,
    route: &DurableRoute,
    call_context: &CallContext,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let mut deliveries = Vec::with_capacity(messages.len());
    messages.retain_mut(|message| match Delivery::of(message, route) {
        Some(delivery) => {
            deliveries.push(delivery);
            true
        }
        None => false,
    });
    let Some(first) = deliveries.first() else {
        return;
    };
    call_context.begin(
        first.subject.as_str(),
        Some((first.sequence, first.delivered)),
    );
    let acks: Vec<&Subject> = deliveries.iter().map(|delivery| &delivery.ack).collect();
    let call = with_progress(
        service,
        route,
        &acks,
        call_batch(handler, context, service, &messages),
    )
    .await;
    let subject = first.subject.to_string();
    let accepted = deliveries.len() - call.rejected.len();
    let outcome = match call.outcome {
        Outcome::Done(reply) => {
            let first = deliveries.first().map_or(0, |d| d.sequence);
            let last = deliveries.last().map_or(0, |d| d.sequence);
            match publish_result(service, route, reply, first, last).await {
                Ok(()) => Outcome::Done(Reply::None),
                Err(error) => Outcome::Failed(Failure::new(500, &error, Cause::Error)),
            }
        }
        failed => failed,
    };
    for (index, failure) in &call.rejected {
        if let Some(delivery) = deliveries.get(*index) {
            record_failure(&route.info, failure, 1, delivery.subject.as_str());
        }
    }
    route.info.stats.record(
        deliveries.len() as u64,
        call.elapsed,
        outcome.failure().is_some(),
    );
    if let Outcome::Failed(failure) = &outcome {
        record_failure(&route.info, failure, accepted as u64, &subject);
    }
    let mut done = Vec::new();
    for (index, delivery) in deliveries.into_iter().enumerate() {
        let rejected = call
            .rejected
            .iter()
            .find(|(rejected, _)| *rejected == index)
            .map(|(_, failure)| failure);
        match (rejected, &outcome) {
            (Some(failure), _) => settle_failed(service, route, delivery, failure).await,
            (None, Outcome::Done(_)) => done.push(delivery),
            (None, Outcome::Failed(failure)) => {
                settle_failed(service, route, delivery, failure).await;
            }
        }
    }
    futures::future::join_all(
        done.iter()
            .map(|delivery| settle_done(service, route, delivery)),
    )
    .await;
    call_context.end();
}
