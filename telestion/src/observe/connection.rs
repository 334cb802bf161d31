//! The NATS connection as the service sees it: how often it dropped,
//! whether the server rejected the credentials, and whether it is gone for
//! good. Fed by the client's events (`connect`) and by the watchdog
//! (`service`); read by `Service::is_connected`, the metrics and the exit
//! code. A connection that is gone for good makes the service stop with
//! [`exit_code::CONNECTION_LOST`](crate::exit_code::CONNECTION_LOST)
//! instead of running on deaf.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a service stays up after the server rejected its credentials
/// without accepting them again: then the connection is gone for good.
pub(crate) const REJECTED_GRACE: Duration = Duration::from_secs(5);

/// How often the watchdog checks that the client's connection task still
/// runs.
pub(crate) const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The connection's condition.
#[derive(Debug, Default)]
pub(crate) struct ConnectionWatch {
    /// Why the connection is gone for good, once it is.
    lost: OnceLock<String>,
    disconnects: AtomicU64,
    /// When the server first rejected the credentials since the last
    /// successful connection.
    rejected_since: Mutex<Option<Instant>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConnectionWatch {
    /// The client lost its connection (it reconnects on its own).
    pub(crate) fn disconnected(&self) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// The client is connected (again).
    pub(crate) fn connected(&self) {
        *lock(&self.rejected_since) = None;
    }

    /// The server rejected the credentials (authorization violation).
    pub(crate) fn rejected(&self) {
        lock(&self.rejected_since).get_or_insert_with(Instant::now);
    }

    /// How long ago the server rejected the credentials, when it has not
    /// accepted them again since.
    pub(crate) fn rejected_for(&self) -> Option<Duration> {
        lock(&self.rejected_since).map(|since| since.elapsed())
    }

    /// Records that the connection is gone for good, and why; `true` the
    /// first time (later causes are ignored).
    pub(crate) fn mark_lost(&self, cause: String) -> bool {
        self.lost.set(cause).is_ok()
    }

    /// Why the connection is gone for good, if it is.
    pub(crate) fn lost(&self) -> Option<&str> {
        self.lost.get().map(String::as_str)
    }

    /// How often the connection dropped since start.
    pub(crate) fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_is_forgotten_on_connect() {
        let watch = ConnectionWatch::default();
        assert_eq!(watch.rejected_for(), None);
        watch.rejected();
        assert!(watch.rejected_for().is_some());
        watch.connected();
        assert_eq!(watch.rejected_for(), None);
    }

    #[test]
    fn the_first_cause_is_kept() {
        let watch = ConnectionWatch::default();
        assert!(watch.mark_lost("closed".into()));
        assert!(!watch.mark_lost("other".into()));
        assert_eq!(watch.lost(), Some("closed"));
    }
}
