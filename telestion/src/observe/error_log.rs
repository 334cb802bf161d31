//! Log volume of handler errors: the first occurrence of an error (same
//! route, same message) is logged; identical repeats within
//! [`REPEATED_ERROR_LOG_SECS`] are counted and summarised in one line per
//! interval. Counting in health and answering are not affected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tracing::instrument::WithSubscriber;

/// How often, at most, a repeated handler error (same handler, same
/// message) is logged: the first occurrence is logged at once, later
/// identical ones within this many seconds are summarised in one line
/// (`"... repeated N more times"`) when the interval ends. Health counts,
/// and a request is answered, every time.
///
/// ```
/// assert!(telestion::REPEATED_ERROR_LOG_SECS >= 1);
/// ```
pub const REPEATED_ERROR_LOG_SECS: u64 = 5;

/// More distinct messages than this per route: stale ones are forgotten.
const MAX_ENTRIES: usize = 1024;

/// How a handler error is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    /// The message was at fault (4xx): WARN.
    Client,
    /// The handler was at fault (5xx): ERROR.
    Server,
}

impl Severity {
    /// WARN for 4xx codes, ERROR otherwise.
    pub(crate) fn of_code(code: u16) -> Severity {
        if (400..500).contains(&code) {
            Severity::Client
        } else {
            Severity::Server
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// Repeats until then are suppressed.
    until: Instant,
    suppressed: u64,
    /// A summary is scheduled for `until`.
    flush_pending: bool,
}

/// The repeated-error limiter of one route.
#[derive(Debug, Default, Clone)]
pub(crate) struct ErrorLog {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn interval() -> Duration {
    Duration::from_secs(REPEATED_ERROR_LOG_SECS)
}

impl ErrorLog {
    /// Logs a failure of handler `name` for a message on `subject`, unless
    /// the same error was logged within the interval (then it is counted
    /// for the summary line).
    pub(crate) fn log(
        &self,
        name: &Arc<str>,
        subject: &str,
        error: &str,
        severity: Severity,
        code: u16,
    ) {
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, entry| entry.until > now || entry.flush_pending);
        }
        match entries.get_mut(error) {
            Some(entry) if entry.until > now || entry.flush_pending => {
                entry.suppressed += 1;
                if !entry.flush_pending {
                    entry.flush_pending = true;
                    let until = entry.until;
                    drop(entries);
                    self.schedule_summary(name.clone(), error.to_owned(), until, severity, code);
                }
            }
            _ => {
                entries.insert(
                    error.to_owned(),
                    Entry {
                        until: now + interval(),
                        suppressed: 0,
                        flush_pending: false,
                    },
                );
                drop(entries);
                match severity {
                    Severity::Client => {
                        tracing::warn!(handler = %name, %subject, code, %error, "handler rejected a message")
                    }
                    Severity::Server => {
                        tracing::error!(handler = %name, %subject, code, %error, "handler failed")
                    }
                }
            }
        }
    }

    /// At `until`, logs how often the error repeated since it was logged.
    fn schedule_summary(
        &self,
        name: Arc<str>,
        error: String,
        until: Instant,
        severity: Severity,
        code: u16,
    ) {
        let entries = self.entries.clone();
        let summary = async move {
            tokio::time::sleep_until(until).await;
            let repeats = {
                let mut entries = lock(&entries);
                let Some(entry) = entries.get_mut(&error) else {
                    return;
                };
                let repeats = std::mem::take(&mut entry.suppressed);
                entry.flush_pending = false;
                // Repeats in the next interval are summarised again.
                entry.until = Instant::now() + interval();
                repeats
            };
            let secs = REPEATED_ERROR_LOG_SECS;
            match severity {
                Severity::Client => tracing::warn!(
                    handler = %name, code, %error, repeats,
                    "the same rejection repeated {repeats} more times in the last {secs} s"
                ),
                Severity::Server => tracing::error!(
                    handler = %name, code, %error, repeats,
                    "the same failure repeated {repeats} more times in the last {secs} s"
                ),
            }
        };
        tokio::spawn(summary.with_current_subscriber());
    }
}
