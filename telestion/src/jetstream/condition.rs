//! What a durable route knows about itself, for health and for keeping its
//! messages: the deliveries it holds (kept alive with in-progress
//! acknowledgements, so a short ack wait brings a dead instance's messages
//! back within seconds), whether it is retrying a failing handler or cannot
//! reach its consumer, and when it last got a message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::Subject;

/// A durable route's condition.
#[derive(Debug, Default)]
pub(crate) struct Condition(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    /// Ack subjects of the deliveries held, by stream sequence.
    held: HashMap<u64, Subject>,
    /// Messages whose handler failed and that are being retried.
    retrying: usize,
    /// The latest of their failures.
    failure: String,
    /// Why the route cannot consume (its consumer or stream is gone).
    problem: Option<String>,
    /// When this instance last got a message.
    last_delivery: Option<Instant>,
}

/// How a durable route stands, for health.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Standing {
    /// `consuming`, `failing` or `stalled`.
    pub(crate) state: &'static str,
    /// Why, when not consuming.
    pub(crate) reason: String,
    /// Seconds since this instance last got a message.
    pub(crate) last_delivery_age_s: Option<f64>,
}

fn lock(condition: &Condition) -> std::sync::MutexGuard<'_, State> {
    condition.0.lock().unwrap_or_else(|e| e.into_inner())
}

impl Condition {
    /// A delivery arrived and is held until settled.
    pub(crate) fn hold(&self, sequence: u64, ack: &Subject) {
        let mut state = lock(self);
        state.held.insert(sequence, ack.clone());
        state.last_delivery = Some(Instant::now());
    }

    /// A delivery was settled (or handed back).
    pub(crate) fn release(&self, sequence: u64) {
        lock(self).held.remove(&sequence);
    }

    /// The ack subjects of every delivery held.
    pub(crate) fn held(&self) -> Vec<Subject> {
        lock(self).held.values().cloned().collect()
    }

    /// A message is being retried after `failure`; the route is failing
    /// until the returned guard is dropped (the message was handled or
    /// given up).
    pub(crate) fn retrying(&self, failure: &str) -> Retrying<'_> {
        let mut state = lock(self);
        state.retrying += 1;
        state.failure = failure.to_owned();
        Retrying(self)
    }

    /// The route cannot consume, and why (`None`: it can again); `true`
    /// when that changed.
    pub(crate) fn set_problem(&self, problem: Option<String>) -> bool {
        let mut state = lock(self);
        let changed = state.problem != problem;
        state.problem = problem;
        changed
    }

    /// How the route stands: failing when it cannot consume or is retrying
    /// a failure; stalled when messages wait (`pending`) but none has
    /// arrived for `stall_after` and none is held; else consuming.
    pub(crate) fn standing(&self, pending: u64, stall_after: Duration) -> Standing {
        let state = lock(self);
        let last_delivery_age_s = state.last_delivery.map(|at| at.elapsed().as_secs_f64());
        let (state_name, reason) = if let Some(problem) = &state.problem {
            ("failing", problem.clone())
        } else if state.retrying > 0 {
            (
                "failing",
                format!(
                    "retrying {} message(s) after: {}",
                    state.retrying, state.failure
                ),
            )
        } else if pending > 0
            && state.held.is_empty()
            && last_delivery_age_s.is_none_or(|age| age > stall_after.as_secs_f64())
        {
            (
                "stalled",
                format!(
                    "{pending} message(s) wait, and none arrived for {} s",
                    stall_after.as_secs()
                ),
            )
        } else {
            ("consuming", String::new())
        };
        Standing {
            state: state_name,
            reason,
            last_delivery_age_s,
        }
    }
}

/// A message being retried (see [`Condition::retrying`]).
pub(crate) struct Retrying<'a>(&'a Condition);

impl Retrying<'_> {
    /// A later failure of the same message.
    pub(crate) fn failed_again(&self, failure: &str) {
        lock(self.0).failure = failure.to_owned();
    }
}

impl Drop for Retrying<'_> {
    fn drop(&mut self) {
        let mut state = lock(self.0);
        state.retrying = state.retrying.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standing_follows_what_happens() {
        let condition = Condition::default();
        let minute = Duration::from_secs(60);
        assert_eq!(condition.standing(0, minute).state, "consuming");
        // Messages wait and none ever arrived: stalled.
        assert_eq!(condition.standing(3, minute).state, "stalled");
        condition.hold(7, &Subject::from("$JS.ACK.x"));
        assert_eq!(condition.standing(3, minute).state, "consuming");
        assert_eq!(condition.held().len(), 1);
        {
            let retrying = condition.retrying("disk full");
            let standing = condition.standing(3, minute);
            assert_eq!(standing.state, "failing");
            assert!(standing.reason.contains("disk full"), "{}", standing.reason);
            retrying.failed_again("disk still full");
            assert!(condition.standing(0, minute).reason.contains("still"));
        }
        assert_eq!(condition.standing(0, minute).state, "consuming");
        condition.release(7);
        assert!(condition.held().is_empty());
        assert!(condition.set_problem(Some("stream X is gone".into())));
        assert!(!condition.set_problem(Some("stream X is gone".into())));
        assert_eq!(condition.standing(0, minute).reason, "stream X is gone");
    }
}
