//! What a handler call came to, and how it is recorded: the one place that
//! counts a call (statistics, metrics), counts a failure (health, the
//! route's error count and last error), summarises repeated errors and
//! logs at the level the code says (4xx: WARN, else ERROR), for every kind
//! of route.

use crate::error::{ExtractError, error_chain};
use crate::handler::reply::Reply;
use crate::observe::error_log::Severity;
use crate::observe::stats::Stopwatch;

use super::RouteInfo;

/// What a call came to.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The handler returned; what it returned (never [`Reply::Error`]).
    Done(Reply),
    /// The call failed.
    Failed(Failure),
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The reply code: 4xx when the message was at fault, 5xx when the
    /// handler was.
    pub(crate) code: u16,
    /// What went wrong, with its causes, bounded (see `text::bounded`).
    pub(crate) message: String,
    /// How it failed.
    pub(crate) cause: Cause,
}

/// How a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// An extractor rejected the message (the handler was not called).
    Rejected,
    /// The handler returned an error.
    Error,
    /// The handler panicked.
    Panic,
}

impl Failure {
    /// A failure with `code`, its message bounded.
    pub(crate) fn new(code: u16, message: &str, cause: Cause) -> Failure {
        Failure {
            code,
            message: crate::text::bounded(message).into_owned(),
            cause,
        }
    }

    /// A message an extractor rejected.
    pub(crate) fn rejected(error: &ExtractError) -> Failure {
        Failure::new(
            error.code(),
            &format!("cannot handle the message: {}", error_chain(error)),
            Cause::Rejected,
        )
    }

    /// A panic of the handler.
    pub(crate) fn panic(payload: &(dyn std::any::Any + Send)) -> Failure {
        Failure::new(
            500,
            &format!(
                "handler panicked: {}",
                crate::observe::logging::panic_message(payload)
            ),
            Cause::Panic,
        )
    }

    /// Whether handling the message again cannot help: an extractor
    /// rejected it, or the handler said so with a 4xx code. Anything else
    /// (5xx, no code, a panic) may pass: a durable route retries it.
    pub(crate) fn is_permanent(&self) -> bool {
        self.cause == Cause::Rejected || (400..500).contains(&self.code)
    }
}

impl Outcome {
    /// The outcome of a call's result: the reply, an extractor's rejection,
    /// or a panic.
    pub(crate) fn of(result: std::thread::Result<Result<Reply, ExtractError>>) -> Outcome {
        match result {
            Ok(Ok(Reply::Error { code, message })) => {
                Outcome::Failed(Failure::new(code, &message, Cause::Error))
            }
            Ok(Ok(reply)) => Outcome::Done(reply),
            Ok(Err(error)) => Outcome::Failed(Failure::rejected(&error)),
            Err(panic) => Outcome::Failed(Failure::panic(&*panic)),
        }
    }

    /// The failure, if the call failed.
    pub(crate) fn failure(&self) -> Option<&Failure> {
        match self {
            Outcome::Failed(failure) => Some(failure),
            Outcome::Done(_) => None,
        }
    }
}

/// Records one call of `info`'s handler for `count` messages that took
/// `elapsed`: the statistics, and the failure if it failed (see
/// [`record_failure`]).
#[inline]
pub(crate) fn record(
    info: &RouteInfo,
    outcome: &Outcome,
    count: u64,
    watch: Stopwatch,
    subject: &str,
) {
    let failure = outcome.failure();
    info.stats.record_call(count, watch, failure.is_some());
    if let Some(failure) = failure {
        record_failure(info, failure, count, subject);
    }
}

/// Counts a failure for `count` messages (health and the route's
/// statistics) and logs it: at WARN for codes 4xx, at ERROR otherwise,
/// repeated identical ones summarised.
pub(crate) fn record_failure(info: &RouteInfo, failure: &Failure, count: u64, subject: &str) {
    for _ in 0..count {
        info.errors.record();
    }
    info.stats.record_error(count, &failure.message);
    let message = if count > 1 {
        format!("{} (a batch of {count} messages)", failure.message)
    } else {
        failure.message.clone()
    };
    info.log.log(
        &info.name,
        subject,
        &message,
        Severity::of_code(failure.code),
        failure.code,
    );
}
