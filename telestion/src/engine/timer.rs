//! Timers: a handler called periodically instead of per message. Its
//! return value follows the rules of a message handler: published to the
//! route's publish targets (there is no one to reply to), errors and
//! panics counted and logged. Stopped at shutdown, awaited by the drain.

use std::sync::Arc;
use std::time::Duration;

use crate::handler::Handler;
use crate::handler::extract::Incoming;
use crate::service::Service;

use super::RouteInfo;
use super::core::handle_one;

/// Runs a timer route until shutdown: calls the handler every `period`
/// (the first call one period after start; a call that takes longer than
/// the period delays the next, calls never overlap).
pub(crate) async fn run<H, Args>(
    handler: H,
    context: Arc<H::Context>,
    service: Service,
    period: Duration,
    info: Arc<RouteInfo>,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = service.stopped();
    tokio::pin!(stopped);
    let call_context = info.call_context();
    let mut incoming = Incoming::new(tick_message(&info.subject), service);
    call_context
        .scope(async {
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    _ = ticks.tick() => {}
                }
                incoming.message = tick_message(&info.subject);
                handle_one(&handler, &context, &mut incoming, &info, &call_context).await;
            }
        })
        .await;
    tracing::debug!(handler = %info.name, "timer stopped");
}

/// The message a timer's (or task's) extractors see: the route's label as
/// its subject, empty body, no reply subject.
pub(crate) fn tick_message(subject: &str) -> async_nats::Message {
    async_nats::Message {
        subject: subject.into(),
        reply: None,
        payload: bytes::Bytes::new(),
        headers: None,
        status: None,
        description: None,
        length: 0,
    }
}
