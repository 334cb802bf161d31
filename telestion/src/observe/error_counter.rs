//! The error counter: every handler failure, rejected message, failed
//! publish or reply and slow-consumer drop is counted here, in total and
//! within a sliding window ("recent" errors, as health replies report).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Default length of the "recent errors" window, in seconds.
pub const DEFAULT_ERROR_WINDOW_SECS: u64 = 60;

/// Counts errors: in total and within a sliding window of whole seconds.
///
/// ```
/// use std::time::Duration;
/// let counter = telestion::ErrorCounter::new(Duration::from_secs(60));
/// counter.record();
/// assert_eq!((counter.recent(), counter.total()), (1, 1));
/// ```
#[derive(Debug)]
pub struct ErrorCounter {
    window: Duration,
    origin: Instant,
    total: AtomicU64,
    buckets: Mutex<VecDeque<(u64, u64)>>,
}

impl ErrorCounter {
    /// A counter whose recent count covers `window` (at least one second).
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
