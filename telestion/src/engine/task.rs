//! Tasks: a handler started once, after the service's handlers are
//! subscribed, for long-running work (a link to a device, a watcher). A
//! failure (error or panic) is counted in health and logged, and the task
//! is restarted with back-off; an `Ok` return ends it for good. At shutdown
//! the task should return (it sees `service.stopped()`); the drain awaits
//! it within the shutdown limit, like a running handler.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::handler::Handler;
use crate::handler::extract::Incoming;
use crate::service::Service;

use super::RouteInfo;
use super::core::handle_one;
use super::timer::tick_message;

/// The first wait before a failed task is restarted; doubled after each
/// failure up to [`MAX_BACKOFF`], and back to this after a run that lasted
/// longer than that. A constant of the runtime, not a config key.
///
/// ```
/// assert!(telestion::task::FIRST_BACKOFF <= telestion::task::MAX_BACKOFF);
/// ```
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The longest wait before a failed task is restarted.
///
/// ```
/// assert_eq!(telestion::task::MAX_BACKOFF.as_secs(), 30);
/// ```
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// [`FIRST_BACKOFF`] in milliseconds (the name of earlier releases).
#[doc(hidden)]
pub const TASK_FIRST_BACKOFF_MS: u64 = 500;

/// [`MAX_BACKOFF`] in seconds (the name of earlier releases).
#[doc(hidden)]
pub const TASK_MAX_BACKOFF_SECS: u64 = 30;

/// Runs a task until it returns `Ok` or the service stops: restarts it
/// with back-off after each failure.
pub(crate) async fn run<H, Args>(
    handler: H,
    context: Arc<H::Context>,
    service: Service,
    info: Arc<RouteInfo>,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let (first, max) = (FIRST_BACKOFF, MAX_BACKOFF);
    let mut backoff = first;
    let call_context = info.call_context();
    loop {
        let started = Instant::now();
        let mut incoming = Incoming::new(tick_message(&info.subject), service.clone());
        let outcome = call_context
            .scope(handle_one(
                &handler,
                &context,
                &mut incoming,
                &info,
                &call_context,
            ))
            .await;
        if outcome.failure().is_none() {
            tracing::debug!(handler = %info.name, "task ended");
            return;
        }
        if service.is_stopping() {
            return;
        }
        if started.elapsed() > max {
            backoff = first;
        }
        tracing::warn!(
            handler = %info.name,
            restart_in_ms = backoff.as_millis() as u64,
            "task failed; restarting it after a back-off"
        );
        tokio::select! {
            _ = service.stopped() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(max);
    }
}
