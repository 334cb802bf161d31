//! Health replies and the recent-error counter.
//!
//! Every instance subscribes (outside any queue group) to
//! [`HEALTH_SUBJECT`] (the spec's subject) and [`HEALTH_SUBJECT_DOTTED`]
//! (the one Telestion's Deno library uses) and answers
//!
//! ```json
//! {"errors": 0, "service": "<instance id>", "name": "<SERVICE_NAME>",
//!  "errors_total": 0, "uptime_s": 12.5, "error_window_s": 60}
//! ```
//!
//! `errors` counts the errors of the last `HEALTH_ERROR_WINDOW` seconds
//! (config key, default 60): handler errors and panics, undecodable
//! messages, failed replies and publishes, and slow-consumer drops. The
//! health subscriptions have their own tasks and client channels, so they
//! answer at once even when every handler is busy or backlogged.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::service::Service;

/// The health subject of the Telestion spec.
pub const HEALTH_SUBJECT: &str = "__telestion__/health";
/// The health subject used by Telestion's Deno library.
pub const HEALTH_SUBJECT_DOTTED: &str = "__telestion__.health";
/// Default length of the "recent errors" window, in seconds.
pub const DEFAULT_ERROR_WINDOW_SECS: u64 = 60;

/// Counts errors: in total and within a sliding window of whole seconds.
#[derive(Debug)]
pub struct ErrorCounter {
    window: Duration,
    origin: Instant,
    total: AtomicU64,
    buckets: Mutex<VecDeque<(u64, u64)>>,
}

impl ErrorCounter {
    /// A counter whose recent count covers `window`.
    pub fn new(window: Duration) -> ErrorCounter {
        ErrorCounter {
            window: window.max(Duration::from_secs(1)),
            origin: Instant::now(),
            total: AtomicU64::new(0),
            buckets: Mutex::new(VecDeque::new()),
        }
    }

    /// The window of [`ErrorCounter::recent`].
    pub fn window(&self) -> Duration {
        self.window
    }

    fn now_sec(&self) -> u64 {
        self.origin.elapsed().as_secs()
    }

    fn prune(&self, buckets: &mut VecDeque<(u64, u64)>, now: u64) {
        let oldest_kept = now.saturating_sub(self.window.as_secs().saturating_sub(1));
        while buckets.front().is_some_and(|(sec, _)| *sec < oldest_kept) {
            buckets.pop_front();
        }
    }

    /// Records one error.
    pub fn record(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let now = self.now_sec();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match buckets.back_mut() {
            Some((sec, count)) if *sec == now => *count += 1,
            _ => buckets.push_back((now, 1)),
        }
        self.prune(&mut buckets, now);
    }

    /// Errors within the window.
    pub fn recent(&self) -> u64 {
        let now = self.now_sec();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        self.prune(&mut buckets, now);
        buckets.iter().map(|(_, count)| count).sum()
    }

    /// Errors since start.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// The body of a health reply for `service`.
pub fn health_body(service: &Service) -> serde_json::Value {
    let errors = service.error_counter();
    serde_json::json!({
        "errors": errors.recent(),
        "service": service.id(),
        "name": service.name(),
        "errors_total": errors.total(),
        "error_window_s": errors.window().as_secs(),
        "uptime_s": service.uptime().as_secs_f64(),
    })
}

/// Subscribes the health subjects; the returned tasks answer until they are
/// aborted, after every handler has drained at shutdown.
pub(crate) async fn start(
    service: &Service,
    client: &async_nats::Client,
) -> Result<Vec<tokio::task::JoinHandle<()>>, async_nats::SubscribeError> {
    let mut tasks = Vec::new();
    for subject in [HEALTH_SUBJECT, HEALTH_SUBJECT_DOTTED] {
        let mut subscriber = client.subscribe(subject).await?;
        let service = service.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let Some(reply) = message.reply else { continue };
                let body = health_body(&service).to_string();
                if let Err(e) = client.publish(reply, body.into()).await {
                    tracing::warn!(error = %e, "cannot send health reply");
                }
            }
        }));
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_recent_and_total() {
        let counter = ErrorCounter::new(Duration::from_secs(60));
        counter.record();
        counter.record();
        assert_eq!(counter.recent(), 2);
        assert_eq!(counter.total(), 2);
    }

    #[test]
    fn window_forgets() {
        let counter = ErrorCounter::new(Duration::from_secs(1));
        counter.record();
        assert_eq!(counter.recent(), 1);
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(counter.recent(), 0);
        assert_eq!(counter.total(), 1);
    }
}
