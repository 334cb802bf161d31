//! Tasks: a handler started once, after the service's handlers are
//! subscribed, for long-running work (a link to a device, a watcher). A
//! failure (error or panic) is counted in health and logged, and the task
//! is restarted with back-off; an `Ok` return ends it for good. At shutdown
//! the task should return (it sees `service.stopped()`); the drain awaits
//! it within the shutdown limit, like a running handler.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;

use crate::engine::core::{RouteInfo, respond};
use crate::handler::Handler;
use crate::handler::extract::Incoming;
use crate::handler::reply::IntoReply;
use crate::service::Service;

/// The first wait before a failed task is restarted; doubled after each
/// failure up to [`TASK_MAX_BACKOFF_SECS`], and back to this after a run
/// that lasted longer than that.
///
/// ```
/// assert!(telestion::TASK_FIRST_BACKOFF_MS <= telestion::TASK_MAX_BACKOFF_SECS * 1000);
/// ```
pub const TASK_FIRST_BACKOFF_MS: u64 = 500;

/// The longest wait before a failed task is restarted.
///
/// ```
/// assert_eq!(telestion::TASK_MAX_BACKOFF_SECS, 30);
/// ```
pub const TASK_MAX_BACKOFF_SECS: u64 = 30;

/// Runs a task until it returns `Ok` or the service stops: restarts it
/// with back-off after each failure.
pub(crate) async fn run_task<H, Args>(
    handler: H,
    context: Arc<H::Context>,
    service: Service,
    info: Arc<RouteInfo>,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let first = Duration::from_millis(TASK_FIRST_BACKOFF_MS);
    let max = Duration::from_secs(TASK_MAX_BACKOFF_SECS);
    let mut backoff = first;
    loop {
        let started = Instant::now();
        let mut incoming = Incoming::new(
            crate::engine::timer::tick_message(&info.subject),
            service.clone(),
        );
        let outcome = AssertUnwindSafe(async {
            let args = H::extract(&mut incoming, &context)?;
            Ok(handler.invoke(args).await.into_reply())
        })
        .catch_unwind()
        .await;
        let failed = respond(&service, outcome, &incoming.message, &info).await;
        info.stats.record(1, started.elapsed(), failed);
        if !failed {
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
