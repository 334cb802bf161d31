//! Per-handler statistics: what every route counts for discovery (the NATS
//! micro protocol's `$SRV.STATS`) and metrics. Each route owns one
//! [`HandlerStats`]; the service keeps a list of them in subscription order.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// Every call is timed until a route has taken this many messages (so a
/// route that handles few messages reports exact times).
pub(crate) const TIME_EVERY_CALL_UNTIL: u64 = 256;

/// After that, one call in this many is timed (when the route's message
/// count is a multiple of it as the call begins).
pub(crate) const TIME_ONE_IN: u64 = 16;

/// The start of a handler call's timing, when the call is timed (see
/// [`HandlerStats::stopwatch`]).
#[derive(Debug, Clone, Copy)]
#[must_use]
pub(crate) struct Stopwatch(Option<Instant>);

#[cfg(test)]
impl Stopwatch {
    /// A stopwatch that times the call.
    pub(crate) fn started() -> Stopwatch {
        Stopwatch(Some(Instant::now()))
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
    /// The handling time of the timed calls (see [`HandlerStats::stopwatch`]).
    timed_ns: AtomicU64,
    /// The messages of the timed calls.
    timed_messages: AtomicU64,
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
    /// Total handling time, nanoseconds (estimated from the timed calls
    /// once not every call is timed, see [`HandlerStats::stopwatch`]).
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
            timed_ns: AtomicU64::new(0),
            timed_messages: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
            observer,
        }
    }

    /// Starts a stopwatch for the route's next call. Every call is timed
    /// while the route has taken fewer than [`TIME_EVERY_CALL_UNTIL`]
    /// messages, and always when an observer (the metrics) needs every
    /// handling time; after that one call in [`TIME_ONE_IN`]: two clock
    /// reads are the largest part of what the statistics cost per message,
    /// and the total handling time is then estimated from the timed calls
    /// (see [`HandlerStats::snapshot`]).
    #[inline]
    pub(crate) fn stopwatch(&self) -> Stopwatch {
        let taken = self.messages.load(Ordering::Relaxed);
        let timed = self.observer.is_some()
            || taken < TIME_EVERY_CALL_UNTIL
            || taken.is_multiple_of(TIME_ONE_IN);
        Stopwatch(timed.then(Instant::now))
    }

    /// Counts `count` messages handled together in one call, timed by
    /// `watch` (started before the call).
    #[inline]
    pub(crate) fn record_call(&self, count: u64, watch: Stopwatch, failed: bool) {
        self.messages.fetch_add(count, Ordering::Relaxed);
        if let Some(started) = watch.0 {
            self.timed(count, started.elapsed(), failed);
        }
    }

    /// Counts `count` messages handled together in `elapsed` (a call timed
    /// by its caller).
    #[inline]
    pub(crate) fn record(&self, count: u64, elapsed: Duration, failed: bool) {
        self.messages.fetch_add(count, Ordering::Relaxed);
        self.timed(count, elapsed, failed);
    }

    fn timed(&self, count: u64, elapsed: Duration, failed: bool) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.timed_ns.fetch_add(nanos, Ordering::Relaxed);
        self.timed_messages.fetch_add(count, Ordering::Relaxed);
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

    /// The total handling time: exact while every call was timed,
    /// afterwards the timed calls' average per message times the messages
    /// taken.
    fn processing_ns(&self) -> u64 {
        let messages = self.messages.load(Ordering::Relaxed);
        let timed_ns = self.timed_ns.load(Ordering::Relaxed);
        let timed = self.timed_messages.load(Ordering::Relaxed);
        if timed == 0 || timed >= messages {
            return timed_ns;
        }
        let estimate = u128::from(timed_ns) * u128::from(messages) / u128::from(timed);
        u64::try_from(estimate).unwrap_or(u64::MAX)
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            messages: self.messages.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            processing_ns: self.processing_ns(),
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

    #[test]
    fn after_the_first_calls_one_in_n_is_timed_and_the_total_estimated() {
        let stats = HandlerStats::new(
            "h".into(),
            "s".into(),
            None,
            RouteKind::Subscription,
            Vec::new(),
            None,
        );
        let mut timed = 0;
        let total = TIME_EVERY_CALL_UNTIL + 64 * TIME_ONE_IN;
        for _ in 0..total {
            let watch = stats.stopwatch();
            timed += u64::from(watch.0.is_some());
            stats.record_call(1, watch, false);
        }
        assert_eq!(timed, TIME_EVERY_CALL_UNTIL + 64);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.messages, total);
        // Estimated: the timed calls' total scaled to every message.
        let timed_ns = stats.timed_ns.load(Ordering::Relaxed);
        assert_eq!(
            u128::from(snapshot.processing_ns),
            u128::from(timed_ns) * u128::from(total) / u128::from(timed)
        );
    }

    #[test]
    fn an_observer_gets_every_call_timed() {
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        let observer: Observer = Arc::new(move |_, _, _| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let stats = HandlerStats::new(
            "h".into(),
            "s".into(),
            None,
            RouteKind::Subscription,
            Vec::new(),
            Some(observer),
        );
        for _ in 0..1000 {
            let watch = stats.stopwatch();
            stats.record_call(1, watch, false);
        }
        assert_eq!(seen.load(Ordering::Relaxed), 1000);
    }
}
