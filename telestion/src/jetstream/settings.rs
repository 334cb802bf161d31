//! How a durable route consumes its stream: the [`Durable`] settings of a
//! route, the service-wide `DURABLE_*` keys they override, and the names a
//! route gets by default (consumer, dead-letter subject).

use std::time::Duration;

use crate::config::Config;
use crate::error::StartError;

/// Default of `DURABLE_ACK_WAIT`, in seconds: short, so that the messages
/// of an instance that died are delivered again within seconds; a message
/// being worked on is kept with in-progress acknowledgements.
pub const DEFAULT_ACK_WAIT_SECS: f64 = 5.0;
/// Default of `DURABLE_MAX_DELIVER`: deliveries of a message that no
/// instance settles (it cannot be read, or the instance stops or dies while
/// holding it) before the server gives up on it and it is dead-lettered.
pub const DEFAULT_MAX_DELIVER: u32 = 10;
/// Default of `DURABLE_BACKOFF`, in seconds: the waits between the tries
/// of a message whose handler failed transiently (the last one repeats).
pub const DEFAULT_BACKOFF_SECS: [f64; 3] = [1.0, 5.0, 30.0];
/// Default of `DURABLE_RETRY_FOR`, in seconds: how long a transient
/// failure (5xx, a panic) is retried before the message is dead-lettered.
pub const DEFAULT_RETRY_FOR_SECS: f64 = 3600.0;
/// Default of `DURABLE_DEAD_LETTER_PREFIX`: dead letters go to
/// `<prefix>.<SERVICE_NAME>.<handler>`.
pub const DEFAULT_DEAD_LETTER_PREFIX: &str = "telestion.dead";
/// The stream a service declares for its dead letters when none captures
/// them: `TELESTION_DEAD_LETTERS`, capturing `<prefix>.>`, kept 30 days (at
/// most 1 GiB, the oldest go first).
pub const DEAD_LETTER_STREAM: &str = "TELESTION_DEAD_LETTERS";

/// The configuration keys of durable handlers, with their meaning (for
/// `--help`): service-wide defaults that a route's [`Durable`] settings
/// override.
pub const DURABLE_KEYS: [(&str, &str); 5] = [
    (
        "DURABLE_ACK_WAIT",
        "seconds a durable message may go unacknowledged (a handler working on it keeps it) \
         before it is delivered again, e.g. after a crash (default 5)",
    ),
    (
        "DURABLE_MAX_DELIVER",
        "deliveries of a durable message no instance settles (unreadable, or the instance died \
         on it) before it is dead-lettered (default 10)",
    ),
    (
        "DURABLE_BACKOFF",
        "seconds between the tries of a message whose handler failed transiently, \
         comma-separated, the last repeats (default 1,5,30)",
    ),
    (
        "DURABLE_RETRY_FOR",
        "seconds a transient failure (5xx, panic) is retried before the message is \
         dead-lettered (default 3600); a rejected message or a 4xx error is dead-lettered at once",
    ),
    (
        "DURABLE_DEAD_LETTER_PREFIX",
        "subject prefix for dead letters: <prefix>.<SERVICE_NAME>.<handler> (default telestion.dead)",
    ),
];

/// Headers of a dead letter (besides the original message's own headers).
pub mod dead_letter_headers {
    /// The last error, one line.
    pub const ERROR: &str = "Telestion-Error";
    /// The subject the message was published to.
    pub const SUBJECT: &str = "Telestion-Original-Subject";
    /// The stream it was stored in.
    pub const STREAM: &str = "Telestion-Stream";
    /// Its sequence number in that stream.
    pub const SEQUENCE: &str = "Telestion-Stream-Sequence";
    /// The durable consumer that gave up on it.
    pub const CONSUMER: &str = "Telestion-Consumer";
    /// How often it was delivered.
    pub const DELIVERIES: &str = "Telestion-Deliveries";
    /// The handler that failed.
    pub const HANDLER: &str = "Telestion-Handler";
}

/// How a durable route consumes its stream. Every setting left unset
/// comes from the service's configuration (the `DURABLE_*` keys) or from
/// the route.
///
/// ```
/// use std::time::Duration;
/// use telestion::{Durable, Route};
///
/// async fn execute(command: String) -> Result<(), String> {
///     Ok(())
/// }
///
/// let route = Route::new("cmd.>", execute).durable(
///     Durable::new()
///         .stream("COMMANDS")
///         .consumer("executor")
///         .max_deliver(3)
///         .backoff([Duration::from_secs(1), Duration::from_secs(10)])
///         .ack_wait(Duration::from_secs(60)),
/// );
/// # let _ = route;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Durable {
    pub(crate) stream: Option<String>,
    pub(crate) consumer: Option<String>,
    pub(crate) ack_wait: Option<Duration>,
    pub(crate) max_deliver: Option<u32>,
    pub(crate) backoff: Option<Vec<Duration>>,
    pub(crate) retry_for: Option<Duration>,
    pub(crate) dead_letter: Option<String>,
}

impl Durable {
    /// The defaults: the stream that captures the route's subject, the
    /// consumer `<SERVICE_NAME>_<handler>`, the `DURABLE_*` keys.
    pub fn new() -> Durable {
        Durable::default()
    }

    /// Consume stream `name` (default: the stream that captures the
    /// route's subject). A missing stream, or one that does not capture
    /// the subject, fails the start.
    pub fn stream(mut self, name: impl Into<String>) -> Durable {
        self.stream = Some(name.into());
        self
    }

    /// The durable consumer's name (default `<SERVICE_NAME>_<handler>`,
    /// with characters a consumer name cannot hold replaced by `_`). Every
    /// instance of the service shares it: each message goes to one of them.
    pub fn consumer(mut self, name: impl Into<String>) -> Durable {
        self.consumer = Some(name.into());
        self
    }

    /// How long a delivered message may go unacknowledged before the
    /// server delivers it again (`DURABLE_ACK_WAIT`). A running handler
    /// keeps its message with in-progress acks every third of this.
    pub fn ack_wait(mut self, wait: Duration) -> Durable {
        self.ack_wait = Some(wait);
        self
    }

    /// Deliveries of a message no instance settles before the server gives
    /// up on it and it is dead-lettered from its stored copy
    /// (`DURABLE_MAX_DELIVER`, at least 1): a message the client cannot
    /// read, or one the service keeps dying on. A handler's failure does
    /// not use up deliveries: it is retried in place (see
    /// [`Durable::retry_for`]).
    pub fn max_deliver(mut self, n: u32) -> Durable {
        self.max_deliver = Some(n.max(1));
        self
    }

    /// The waits between the tries of a message whose handler failed
    /// transiently: after the first failure `delays[0]`, after the second
    /// `delays[1]`, ..., later ones the last (`DURABLE_BACKOFF`).
    pub fn backoff(mut self, delays: impl IntoIterator<Item = Duration>) -> Durable {
        self.backoff = Some(delays.into_iter().collect());
        self
    }

    /// How long a message whose handler fails transiently (an error with a
    /// 5xx code or none, a panic) is retried before it is dead-lettered
    /// (`DURABLE_RETRY_FOR`, default an hour). The route holds the message
    /// meanwhile (at `concurrency = 1` nothing behind it is handled: a full
    /// disk stops the writer instead of skipping data) and shows as failing
    /// in health. A message an extractor rejects, or a 4xx error, is
    /// permanent: dead-lettered at its first delivery.
    ///
    /// ```
    /// use std::time::Duration;
    /// let durable = telestion::Durable::new().retry_for(Duration::from_secs(600));
    /// # let _ = durable;
    /// ```
    pub fn retry_for(mut self, duration: Duration) -> Durable {
        self.retry_for = Some(duration);
        self
    }

    /// The dead-letter subject (default
    /// `<DURABLE_DEAD_LETTER_PREFIX>.<SERVICE_NAME>.<handler>`).
    pub fn dead_letter(mut self, subject: impl Into<String>) -> Durable {
        self.dead_letter = Some(subject.into());
        self
    }
}

/// `text` as one token of a subject or a consumer name: characters other
/// than letters, digits, `-` and `_` become `_`.
pub(crate) fn token(text: &str) -> String {
    let token: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if token.is_empty() { "_".into() } else { token }
}

/// The last part of a handler's path (`module::handler` → `handler`).
fn short_name(handler: &str) -> &str {
    handler.rsplit("::").next().unwrap_or(handler)
}

/// The default consumer name of a handler.
pub(crate) fn default_consumer(service_name: &str, handler: &str) -> String {
    format!("{}_{}", token(service_name), token(short_name(handler)))
}

/// `DURABLE_DEAD_LETTER_PREFIX`, or [`DEFAULT_DEAD_LETTER_PREFIX`].
pub(crate) fn dead_letter_prefix(config: &Config) -> String {
    config
        .get_str("DURABLE_DEAD_LETTER_PREFIX")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_DEAD_LETTER_PREFIX.to_owned())
}

/// The stream a service declares for dead letters under `prefix`:
/// `TELESTION_DEAD_LETTERS`, or `TELESTION_DEAD_LETTERS_<prefix>` for
/// another prefix.
pub(crate) fn dead_letter_stream(prefix: &str) -> String {
    if prefix == DEFAULT_DEAD_LETTER_PREFIX {
        DEAD_LETTER_STREAM.to_owned()
    } else {
        format!("{DEAD_LETTER_STREAM}_{}", token(prefix))
    }
}

/// The default dead-letter subject of a handler.
pub(crate) fn default_dead_letter(prefix: &str, service_name: &str, handler: &str) -> String {
    format!(
        "{prefix}.{}.{}",
        token(service_name),
        token(short_name(handler))
    )
}

pub(crate) fn seconds(config: &Config, key: &str) -> Result<Option<Duration>, StartError> {
    let Some(value) = config.get::<f64>(key)? else {
        return Ok(None);
    };
    if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
        return Err(invalid(
            key,
            "must be a number of seconds above 0 and at most 86400",
        ));
    }
    Ok(Some(Duration::from_secs_f64(value)))
}

pub(crate) fn invalid(key: &str, what: &str) -> StartError {
    crate::error::ConfigError::Invalid {
        key: Some(key.into()),
        message: format!("key {key}: {what}"),
    }
    .into()
}

pub(crate) fn backoff_from(config: &Config) -> Result<Option<Vec<Duration>>, StartError> {
    const KEY: &str = "DURABLE_BACKOFF";
    let Some(text) = config.get_str(KEY) else {
        return Ok(None);
    };
    let text = text.trim().trim_start_matches('[').trim_end_matches(']');
    let mut delays = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<f64>() {
            Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => {
                delays.push(Duration::from_secs_f64(s));
            }
            _ => {
                return Err(invalid(
                    KEY,
                    "must be seconds separated by commas, e.g. `1,5,30`",
                ));
            }
        }
    }
    Ok(Some(delays))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            default_consumer("ops.a", "svc::handle_cmd"),
            "ops_a_handle_cmd"
        );
        assert_eq!(
            default_dead_letter("telestion.dead", "ops", "svc::record"),
            "telestion.dead.ops.record"
        );
        assert_eq!(token(""), "_");
    }

    #[test]
    fn backoff_key() {
        let config = Config::from_pairs([("DURABLE_BACKOFF", "0.5, 2,10")]);
        assert_eq!(
            backoff_from(&config).unwrap().unwrap(),
            [0.5, 2.0, 10.0].map(Duration::from_secs_f64)
        );
        let config = Config::from_pairs([("DURABLE_BACKOFF", "soon")]);
        let error = backoff_from(&config).unwrap_err().to_string();
        assert!(error.contains("DURABLE_BACKOFF"), "{error}");
    }
}
