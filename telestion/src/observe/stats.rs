//! Per-handler statistics: what every route counts for discovery (the NATS
//! micro protocol's `$SRV.STATS`) and metrics. Each route owns one
//! [`HandlerStats`]; the service keeps a list of them in subscription order.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What kind of route a handler is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteKind {
    /// A core NATS subscription.
    Subscription,
    /// A JetStream durable consumer.
    Durable,
    /// A periodic handler.
    Timer,
    /// A long-running task.
    Task,
}

impl RouteKind {
    /// The kind's name in discovery replies and metrics labels.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RouteKind::Subscription => "subscription",
            RouteKind::Durable => "durable",
            RouteKind::Timer => "timer",
            RouteKind::Task => "task",
        }
    }
}

/// A callback told of every handled message (metrics): handler index,
/// handling time, failed or not.
pub(crate) type Observer = Arc<dyn Fn(&HandlerStats, Duration, bool) + Send + Sync>;

/// The counters of one route. Every message the handler took counts
/// (request or not; for a batch handler, every message of the batch), and
/// so does every failure.
pub(crate) struct HandlerStats {
    /// The handler's name.
    pub(crate) name: Arc<str>,
    /// The subject it listens on (`timer` / `task` for those).
    pub(crate) subject: String,
    /// Its queue group, when it has one.
    pub(crate) queue_group: Option<String>,
    /// What kind of route it is.
    pub(crate) kind: RouteKind,
    /// Where its return value is published.
    pub(crate) publish: Vec<String>,
    messages: AtomicU64,
    errors: AtomicU64,
    processing_ns: AtomicU64,
    last_error: Mutex<String>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for HandlerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerStats")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .field("kind", &self.kind)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// One reading of a handler's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StatsSnapshot {
    /// Messages taken (timer ticks and task runs for those).
    pub(crate) messages: u64,
    /// Messages whose handling failed.
    pub(crate) errors: u64,
    /// Total handling time, nanoseconds.
    pub(crate) processing_ns: u64,
    /// The latest failure's message ("" when none).
    pub(crate) last_error: String,
}

impl StatsSnapshot {
    /// Average handling time per message, nanoseconds.
    pub(crate) fn average_ns(&self) -> u64 {
        self.processing_ns.checked_div(self.messages).unwrap_or(0)
    }
}

impl HandlerStats {
    /// Counters for a route.
    pub(crate) fn new(
        name: Arc<str>,
        subject: String,
        queue_group: Option<String>,
        kind: RouteKind,
        publish: Vec<String>,
        observer: Option<Observer>,
    ) -> HandlerStats {
        HandlerStats {
            name,
            subject,
            queue_group,
            kind,
            publish,
            messages: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            processing_ns: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
            observer,
        }
    }

    /// Counts `count` messages handled together in `elapsed`.
    #[inline]
    pub(crate) fn record(&self, count: u64, elapsed: Duration, failed: bool) {
        self.messages.fetch_add(count, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.processing_ns.fetch_add(nanos, Ordering::Relaxed);
        if let Some(observer) = &self.observer {
            observer(self, elapsed, failed);
        }
    }

    /// Counts `count` failed messages and keeps the failure's message.
    pub(crate) fn record_error(&self, count: u64, error: &str) {
        self.errors.fetch_add(count, Ordering::Relaxed);
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        last.clear();
        // Bounded: a handler's error message can be anything.
        let mut end = error.len().min(1024);
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        last.push_str(&error[..end]);
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            messages: self.messages.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            processing_ns: self.processing_ns.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_averages() {
        let stats = HandlerStats::new(
            "h".into(),
            "s".into(),
            None,
            RouteKind::Subscription,
            Vec::new(),
            None,
        );
        stats.record(1, Duration::from_micros(10), false);
        stats.record(3, Duration::from_micros(20), true);
        stats.record_error(3, &"é".repeat(600));
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.messages, 4);
        assert_eq!(snapshot.errors, 3);
        assert_eq!(snapshot.processing_ns, 30_000);
        assert_eq!(snapshot.average_ns(), 7_500);
        assert_eq!(snapshot.last_error.len(), 1024);
    }
}
