//! The dispatch engine: one task per subscription, messages in arrival
//! order (or up to N at once), panics caught, every failure counted, logged
//! and answered, and a drain bounded by the shutdown limit.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_nats::Subscriber;
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;

use crate::error::{ExtractError, error_chain};
use crate::extract::Incoming;
use crate::handler::Handler;
use crate::logging::HandlerScope;
use crate::reply::{IntoReply, Reply, send_error_reply};
use crate::service::Service;

/// What the dispatch engine knows about a running route.
#[derive(Debug)]
pub(crate) struct RouteInfo {
    pub(crate) name: Arc<str>,
    pub(crate) subject: String,
    pub(crate) concurrency: usize,
}

/// Runs one route until its subscription ends: after shutdown was
/// requested, the subscription is drained (the server stops sending; what
/// it sent is still handled) until the stream ends or the shutdown limit
/// passes; then whatever the client already holds is handled and the route
/// stops.
pub(crate) async fn run_route<H, Args>(
    handler: H,
    context: Arc<H::Context>,
    mut service: Service,
    mut subscriber: Subscriber,
    info: Arc<RouteInfo>,
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
        let message = match deadline {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline.into(), subscriber.next()).await {
                    Ok(message) => message,
                    Err(_) => {
                        let left = handle_buffered(
                            &handler,
                            &context,
                            &service,
                            &mut subscriber,
                            &info,
                            &permits,
                        )
                        .await;
                        tracing::warn!(
                            handler = %info.name,
                            subject = %info.subject,
                            handled_after_limit = left,
                            "the server did not confirm the drain within SHUTDOWN_TIMEOUT; \
                             handled what had arrived, messages still in flight may be lost"
                        );
                        break;
                    }
                }
            }
            None => {
                // Hot path: a message already waiting is taken at once; under
                // a constant backlog the stop signal costs one atomic load.
                let stopping = stop.has_changed().unwrap_or(true) && *stop.borrow_and_update();
                let next = if stopping {
                    None
                } else {
                    std::future::poll_fn(|cx| {
                        if let Poll::Ready(message) = subscriber.poll_next_unpin(cx) {
                            return Poll::Ready(Some(message));
                        }
                        stop_signal.as_mut().poll(cx).map(|()| None)
                    })
                    .await
                };
                match next {
                    Some(message) => message,
                    None => {
                        let limit = Instant::now() + service.shutdown_timeout();
                        deadline = Some(limit);
                        // UNSUB + PING: the server stops sending; what it
                        // already sent is still delivered to the stream,
                        // which then ends. While disconnected the request
                        // may not even be taken: bounded by the limit.
                        match tokio::time::timeout_at(limit.into(), subscriber.drain()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                tracing::warn!(handler = %info.name, error = %e, "cannot drain subscription");
                            }
                            Err(_) => {}
                        }
                        continue;
                    }
                }
            }
        };
        let Some(message) = message else { break };
        service = dispatch_one(&handler, &context, service, message, &info, &permits).await;
    }
    if let Some(permits) = permits {
        // Wait for every in-flight message of this route.
        let _ = permits.acquire_many(info.concurrency as u32).await;
    }
    tracing::debug!(handler = %info.name, subject = %info.subject, "route stopped");
}

/// Handles one message in place (concurrency 1) or on its own task.
async fn dispatch_one<H, Args>(
    handler: &H,
    context: &Arc<H::Context>,
    service: Service,
    message: async_nats::Message,
    info: &Arc<RouteInfo>,
    permits: &Option<Arc<Semaphore>>,
) -> Service
where
    H: Handler<Args>,
    Args: 'static,
{
    match permits {
        // The service handle moves into the message and back: no reference
        // count traffic per message.
        None => handle_message(handler, context, Incoming { message, service }, info).await,
        Some(permits) => {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return service;
            };
            let handler = handler.clone();
            let context = context.clone();
            let incoming = Incoming {
                message,
                service: service.clone(),
            };
            let info = info.clone();
            tokio::spawn(async move {
                handle_message(&handler, &context, incoming, &info).await;
                drop(permit);
            });
            service
        }
    }
}

/// After the shutdown limit: handles the messages the client already holds
/// for this subscription, without waiting for more. Returns how many.
async fn handle_buffered<H, Args>(
    handler: &H,
    context: &Arc<H::Context>,
    service: &Service,
    subscriber: &mut Subscriber,
    info: &Arc<RouteInfo>,
    permits: &Option<Arc<Semaphore>>,
) -> usize
where
    H: Handler<Args>,
    Args: 'static,
{
    let mut count = 0;
    let mut service = service.clone();
    while let Some(Some(message)) = subscriber.next().now_or_never() {
        service = dispatch_one(handler, context, service, message, info, permits).await;
        count += 1;
    }
    count
}

/// Polls the handler's future with its name recorded for the panic hook.
struct Scoped<'a, F> {
    future: F,
    name: &'a Arc<str>,
}

impl<F: Future + Unpin> Future for Scoped<'_, F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _scope = HandlerScope::enter(self.name);
        Pin::new(&mut self.future).poll(cx)
    }
}

/// Handles one message: extract, call, catch panics, reply, count errors.
/// Gives the service handle back.
async fn handle_message<H, Args>(
    handler: &H,
    context: &H::Context,
    incoming: Incoming,
    info: &RouteInfo,
) -> Service
where
    H: Handler<Args>,
    Args: 'static,
{
    let mut incoming = incoming;
    let call = AssertUnwindSafe(async {
        match handler.call(&mut incoming, context) {
            Ok(future) => Ok(future.await.into_reply()),
            Err(e) => Err(e),
        }
    })
    .catch_unwind();
    let outcome = Scoped {
        future: std::pin::pin!(call),
        name: &info.name,
    }
    .await;
    let Incoming { message, service } = incoming;
    if !matches!(outcome, Ok(Ok(Reply::None))) {
        let async_nats::Message {
            subject,
            reply: reply_to,
            ..
        } = message;
        respond(&service, outcome, subject, reply_to, info).await;
    }
    service
}

/// What a handler's outcome means: send the reply, or count, log and answer
/// the error.
async fn respond(
    service: &Service,
    outcome: std::thread::Result<Result<Reply, ExtractError>>,
    subject: async_nats::Subject,
    reply_to: Option<async_nats::Subject>,
    info: &RouteInfo,
) {
    let (error, code) = match outcome {
        Ok(Ok(Reply::None)) => return,
        Ok(Ok(Reply::Body { payload, headers })) => {
            if let Some(reply_to) = reply_to
                && let Err(e) = service
                    .publish_inner(reply_to.to_string(), headers, payload)
                    .await
            {
                tracing::error!(handler = %info.name, %subject, error = %e, "cannot send reply");
            }
            return;
        }
        Ok(Ok(Reply::Error { code, message })) => (message, code),
        Ok(Err(error)) => (
            format!("cannot handle the message: {}", error_chain(&error)),
            400,
        ),
        Err(panic) => (
            format!(
                "handler panicked: {}",
                crate::logging::panic_message(&*panic)
            ),
            500,
        ),
    };
    service.record_error();
    tracing::error!(handler = %info.name, %subject, %error, "handler failed");
    if let Some(reply_to) = reply_to {
        send_error_reply(service, reply_to.to_string(), &error, code).await;
    }
}
