//! Core subscriptions: one task per route, messages in arrival order (or
//! up to N at once), each through the call step, its outcome delivered and
//! recorded; and a drain bounded by the shutdown limit.

use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use async_nats::Subscriber;
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;

use crate::handler::Handler;
use crate::handler::extract::Incoming;
use crate::handler::reply::Reply;
use crate::observe::call_context::CallContext;
use crate::service::Service;

use super::RouteInfo;
use super::call::{call_handler, call_result};
use super::deliver::deliver;
use super::outcome::{Outcome, record};

/// Handles one message in place: call, deliver, record, with the call's
/// context set for the logs. A macro for the same reason as [`call_result!`]: it
/// expands into the route's own loop.
macro_rules! handle {
    ($handler:expr, $context:expr, $incoming:expr, $info:expr, $call_context:expr) => {{
        let incoming: &mut Incoming = $incoming;
        let info: &RouteInfo = $info;
        let call_context: &CallContext = $call_context;
        call_context.begin(&incoming.message.subject, None);
        let watch = info.stats.stopwatch();
        let result = call_result!($handler, $context, &mut *incoming, |_| true);
        // The common case (nothing to send, no failure) costs nothing more.
        if !matches!(result, Ok(Ok(Reply::None))) || incoming.message.reply.is_some() {
            let outcome = Outcome::of(result);
            let subject = incoming.message.subject.as_str();
            let outcome = deliver(
                &incoming.service,
                info,
                outcome,
                incoming.message.reply.as_ref(),
                subject,
            )
            .await;
            record(info, &outcome, 1, watch, subject);
        } else {
            info.stats.record_call(1, watch, false);
        }
        call_context.end();
    }};
}

/// Runs one route until its subscription ends: after shutdown was
/// requested, the subscription is drained (the server stops sending; what
/// it sent is still handled) until the stream ends or the shutdown limit
/// passes; then whatever the client already holds is handled and the route
/// stops.
pub(crate) async fn run<H, Args>(
    handler: H,
    context: Arc<H::Context>,
    service: Service,
    subscriber: Subscriber,
    info: Arc<RouteInfo>,
) where
    H: Handler<Args>,
    Args: 'static,
{
    // One call context for the messages handled in this loop (a route with
    // `concurrency` > 1 runs each message on its own task, with its own).
    let call_context = info.call_context();
    call_context
        .scope(serve(
            handler,
            context,
            service,
            subscriber,
            &info,
            &call_context,
        ))
        .await;
}

async fn serve<H, Args>(
    handler: H,
    context: Arc<H::Context>,
    mut service: Service,
    mut subscriber: Subscriber,
    info: &Arc<RouteInfo>,
    call_context: &CallContext,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let mut stop = service.stop_receiver();
    if *stop.borrow() {
        // Shutdown began before this route started: let the hot path see it.
        stop.mark_changed();
    }
    // One stop future for the route's life (not one per message); polled
    // only when no message is waiting.
    let stop_signal = service.stopped();
    tokio::pin!(stop_signal);
    let permits = (info.concurrency > 1).then(|| Arc::new(Semaphore::new(info.concurrency)));
    let mut deadline: Option<Instant> = None;
    loop {
        if let Some(deadline) = deadline {
            // Draining: what the server sent before the UNSUB, until the
            // stream ends or the limit passes.
            match tokio::time::timeout_at(deadline.into(), subscriber.next()).await {
                Ok(Some(message)) => {
                    service = dispatch(
                        &handler,
                        &context,
                        service,
                        message,
                        info,
                        &permits,
                        call_context,
                    )
                    .await;
                    continue;
                }
                Ok(None) => break,
                Err(_) => {
                    let mut left = 0;
                    while let Some(Some(message)) = subscriber.next().now_or_never() {
                        service = dispatch(
                            &handler,
                            &context,
                            service,
                            message,
                            info,
                            &permits,
                            call_context,
                        )
                        .await;
                        left += 1;
                    }
                    warn_drain_unconfirmed(&service, info, left);
                    break;
                }
            }
        }
        // Hot path: a message already waiting is taken at once; under a
        // constant backlog the stop signal costs one atomic load per message.
        let mut stopping = false;
        let message = std::future::poll_fn(|cx| {
            if stop.has_changed().unwrap_or(true) && *stop.borrow_and_update() {
                stopping = true;
                return Poll::Ready(None);
            }
            if let Poll::Ready(message) = subscriber.poll_next_unpin(cx) {
                return Poll::Ready(message);
            }
            stopping = stop_signal.as_mut().poll(cx).is_ready();
            if stopping {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        })
        .await;
        let message = match message {
            Some(message) => message,
            None if stopping => {
                let limit = Instant::now() + service.server_wait();
                deadline = Some(limit);
                // UNSUB + PING: the server stops sending; what it already
                // sent is still delivered to the stream, which then ends.
                // While disconnected the request may not even be taken:
                // bounded by the limit.
                if let Ok(Err(e)) = tokio::time::timeout_at(limit.into(), subscriber.drain()).await
                {
                    tracing::warn!(handler = %info.name, error = %e, "cannot drain subscription");
                }
                continue;
            }
            None => break,
        };
        if permits.is_some() {
            service = dispatch(
                &handler,
                &context,
                service,
                message,
                info,
                &permits,
                call_context,
            )
            .await;
            continue;
        }
        // One message at a time, handled in this loop (see `handle!`). The
        // service handle moves into the message and back: no reference-count
        // traffic per message.
        let mut incoming = Incoming::new(message, service);
        handle!(handler, &*context, &mut incoming, info, call_context);
        service = incoming.service;
    }
    if let Some(permits) = permits {
        // Wait for every in-flight message of this route.
        let _ = permits.acquire_many(info.concurrency as u32).await;
    }
    tracing::debug!(handler = %info.name, subject = %info.subject, "route stopped");
}

/// Handles one message in place (concurrency 1) or on its own task (with
/// its own call context).
async fn dispatch<H, Args>(
    handler: &H,
    context: &Arc<H::Context>,
    service: Service,
    message: async_nats::Message,
    info: &Arc<RouteInfo>,
    permits: &Option<Arc<Semaphore>>,
    call_context: &CallContext,
) -> Service
where
    H: Handler<Args>,
    Args: 'static,
{
    let Some(permits) = permits else {
        let mut incoming = Incoming::new(message, service);
        handle!(handler, &**context, &mut incoming, info, call_context);
        return incoming.service;
    };
    let Ok(permit) = permits.clone().acquire_owned().await else {
        return service;
    };
    let handler = handler.clone();
    let context = context.clone();
    let mut incoming = Incoming::new(message, service.clone());
    let info = info.clone();
    tokio::spawn(async move {
        let call_context = info.call_context();
        call_context
            .scope(async {
                handle!(handler, &*context, &mut incoming, &info, &call_context);
            })
            .await;
        drop(permit);
    });
    service
}

/// The warning when the server did not confirm a route's drain in time:
/// what had arrived (`left` messages) was handled, what was in flight may
/// be lost; the exit code says so.
pub(crate) fn warn_drain_unconfirmed(service: &Service, info: &RouteInfo, left: usize) {
    service.note_unconfirmed();
    tracing::warn!(
        handler = %info.name,
        subject = %info.subject,
        handled_after_limit = left,
        "the server did not confirm the drain within SHUTDOWN_TIMEOUT; \
         handled what had arrived, messages still in flight may be lost"
    );
}

/// Handles one message outside a subscription loop (a timer's tick, a
/// task's run): call, deliver to the publish targets, record, with the
/// call's context set for the logs. Returns the outcome that was recorded.
pub(crate) async fn handle_one<H, Args>(
    handler: &H,
    context: &H::Context,
    incoming: &mut Incoming,
    info: &RouteInfo,
    call_context: &CallContext,
) -> Outcome
where
    H: Handler<Args>,
    Args: 'static,
{
    call_context.begin(&incoming.message.subject, None);
    let watch = info.stats.stopwatch();
    let outcome = call_handler(handler, context, incoming).await;
    let subject = incoming.message.subject.as_str();
    let outcome = deliver(
        &incoming.service,
        info,
        outcome,
        incoming.message.reply.as_ref(),
        subject,
    )
    .await;
    record(info, &outcome, 1, watch, subject);
    call_context.end();
    outcome
}
