//! The error types of the runtime, one enum per concern.
//!
//! Underlying errors are kept as [`std::error::Error::source`], never
//! flattened into the message, so a reporter that prints the chain (as the
//! generated `main` does: `error: <error>: <cause>: <cause>`) shows each
//! cause once. Decide what went wrong by matching the variant (and the
//! source's type or kind), never by searching the message text.

use std::path::PathBuf;

/// A boxed error with its own causes: what start-up code, extractors'
/// preparation and other user code may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `error` and its sources, as one line: `a: b: c` (a cause whose text
/// already ends the line is not repeated).
///
/// ```
/// let error = telestion::Config::from_sources(Vec::<String>::new(), [("NATS_URL", "x")])
///     .unwrap_err();
/// assert!(telestion::error_chain(&error).contains("SERVICE_NAME"));
/// ```
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// An error's chain of messages, detached from the error itself (which may
/// be neither `Send` nor `Sync`, like `Box<dyn Error>`): each link displays
/// one message and has the next as its source.
#[derive(Debug)]
pub(crate) struct DetachedError {
    message: String,
    source: Option<Box<DetachedError>>,
}

impl DetachedError {
    /// The messages of `error` and of each of its sources.
    pub(crate) fn from_chain(error: &(dyn std::error::Error + 'static)) -> DetachedError {
        DetachedError {
            message: error.to_string(),
            source: error
                .source()
                .map(|cause| Box::new(DetachedError::from_chain(cause))),
        }
    }
}

impl std::fmt::Display for DetachedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DetachedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

/// Why the configuration could not be loaded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// One or more required keys are missing (and `--dev` was not given).
    #[error("{}", missing_message(.keys))]
    Missing {
        /// The missing keys, in upper case.
        keys: Vec<String>,
    },
    /// A CLI argument could not be understood.
    #[error("invalid command-line argument `{arg}`: {reason}")]
    InvalidArgument {
        /// The argument as given (shortened when very long).
        arg: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file named by `CONFIG_FILE` could not be read (missing, not a
    /// regular file, unreadable, larger than the limit).
    #[error("cannot read config file {path:?} (from CONFIG_FILE): {reason}")]
    FileRead {
        /// The path from `CONFIG_FILE`.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// The I/O error, when there is one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The config file is not valid JSON.
    #[error("invalid config file {path:?} (from CONFIG_FILE): not valid JSON")]
    FileJson {
        /// The path from `CONFIG_FILE`.
        path: PathBuf,
        /// The parser's error (line and column).
        #[source]
        source: serde_json::Error,
    },
    /// The config file is JSON, but not the expected shape (an object, with
    /// an object under `CONFIG_KEY`).
    #[error("invalid config file {path:?} (from CONFIG_FILE): {reason}")]
    FileShape {
        /// The path from `CONFIG_FILE`.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A key is present but its value cannot be decoded into the wanted
    /// type, or it is out of range.
    #[error("invalid configuration: {message}")]
    Invalid {
        /// The key, when known.
        key: Option<String>,
        /// A message naming the key and the problem.
        message: String,
    },
}

fn missing_message(keys: &[String]) -> String {
    let first = keys.first().map_or("KEY", String::as_str);
    let list = if keys.is_empty() {
        "(none named)".to_owned()
    } else {
        keys.join(", ")
    };
    format!(
        "missing required configuration: {list}. Set them as environment variables (e.g. \
         `{first}=...`), pass them as CLI arguments (e.g. `--{first}=...`), put them in the JSON \
         file named by CONFIG_FILE, or start with `--dev` for local defaults"
    )
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The NATS server could not be reached, or rejected the connection.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The configured `NATS_URL` (never contains the password).
        url: String,
        /// What went wrong and what to check; never repeats the source.
        reason: String,
        /// The underlying client error, when there is one.
        #[source]
        source: Option<async_nats::ConnectError>,
    },
    /// A route's subject is not a valid subject, or comes from a config key
    /// that is not set.
    #[error("handler `{handler}`: invalid subject `{subject}`: {reason}")]
    InvalidSubject {
        /// The handler's name.
        handler: String,
        /// The subject (after config resolution).
        subject: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server did not accept a subscription.
    #[error("cannot subscribe handler `{handler}` to `{subject}`")]
    Subscribe {
        /// The handler's name.
        handler: String,
        /// The subject (after config resolution).
        subject: String,
        /// The client error.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// A handler needs something the service does not provide (state,
    /// a config key, a usable data directory, NATS).
    #[error("handler `{handler}` cannot be subscribed")]
    Handler {
        /// The handler's name.
        handler: String,
        /// What is missing, with its own causes.
        #[source]
        source: BoxError,
    },
    /// Two routes conflict.
    #[error("conflicting handlers: {0}")]
    Conflict(String),
    /// A JetStream stream the service declares or binds is missing, does
    /// not match the declaration, or cannot be created or read.
    #[error("stream `{stream}`: {reason}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// What is wrong and what to do.
        reason: String,
        /// The server's or client's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The user's start-up code (the body of `main`) failed; its error,
    /// with its causes.
    #[error(transparent)]
    Setup(BoxError),
    /// A signal (SIGINT, SIGTERM, SIGHUP) arrived before the service was
    /// serving; it stops without serving.
    #[error("interrupted by {signal} during start-up")]
    Interrupted {
        /// The signal's name.
        signal: &'static str,
    },
    /// Something the runtime needs from the OS failed (signals, threads).
    #[error("cannot {what}")]
    Runtime {
        /// What could not be done, e.g. "handle SIGTERM".
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Errors of the [`Service`](crate::Service) helpers (publish, request,
/// data directory).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The service runs without NATS (`nats = false`).
    #[error("this service runs without NATS (no-NATS mode); there is no client to {0}")]
    NoNats(&'static str),
    /// Publishing failed.
    #[error("publish to `{subject}` failed")]
    Publish {
        /// The subject.
        subject: String,
        /// The client error.
        #[source]
        source: async_nats::PublishError,
    },
    /// The client's outgoing buffer stayed full (typically while disconnected
    /// for long): the message was not queued.
    #[error(
        "publish to `{subject}` failed: the outgoing buffer is full (disconnected from NATS?); \
         message not sent"
    )]
    BufferFull {
        /// The subject.
        subject: String,
    },
    /// Nobody subscribes to the subject of a request.
    #[error("request to `{subject}` failed: no responders (nothing subscribes to `{subject}`)")]
    NoResponders {
        /// The subject.
        subject: String,
    },
    /// No reply came within the request timeout.
    #[error("request to `{subject}` failed: no reply within the timeout")]
    Timeout {
        /// The subject.
        subject: String,
    },
    /// A request failed for another reason.
    #[error("request to `{subject}` failed")]
    Request {
        /// The subject.
        subject: String,
        /// The client error.
        #[source]
        source: async_nats::RequestError,
    },
    /// The responder answered with an error (`Nats-Service-Error` headers,
    /// as every Telestion handler does when it fails).
    #[error("`{subject}` answered with error {code}: {message}")]
    Remote {
        /// The subject of the request.
        subject: String,
        /// `Nats-Service-Error-Code` (500 when the header is missing or
        /// not a number).
        code: u16,
        /// `Nats-Service-Error`.
        message: String,
    },
    /// The payload could not be encoded as JSON.
    #[error("cannot encode the payload as JSON")]
    Encode(#[source] serde_json::Error),
    /// The reply is not the JSON the caller expects.
    #[error("cannot decode the reply from `{subject}` as JSON")]
    Decode {
        /// The subject of the request.
        subject: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A filesystem operation in the data directory failed; the message
    /// names `DATA_DIR`, the key to fix.
    #[error("cannot use {path:?} in the data directory (DATA_DIR)")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An argument was rejected (for example an invalid log category).
    #[error("{0}")]
    Invalid(String),
    /// A durable publish found no JetStream stream that captures the
    /// subject (or JetStream is not enabled on the server).
    #[error(
        "durable publish to `{subject}` failed: no JetStream stream captures `{subject}`; \
         declare one with `service.declare_stream(StreamSpec::new(..).subjects([..]))`"
    )]
    NoStream {
        /// The subject.
        subject: String,
    },
    /// A durable publish was not confirmed as stored by its stream (every
    /// retry timed out or was refused): the message may or may not be
    /// stored; publishing it again with the same message id stores it at
    /// most once.
    #[error("durable publish to `{subject}` (message id `{message_id}`) was not confirmed")]
    NotStored {
        /// The subject.
        subject: String,
        /// The `Nats-Msg-Id` used.
        message_id: String,
        /// The client's error of the last attempt.
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
}

/// Why a message could not be turned into a handler's arguments: the
/// message is rejected (code 400 unless an extractor chose another),
/// counted, logged at WARN (4xx) and answered with an error reply, like a
/// handler's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The body is not the JSON the handler expects.
    #[error("invalid JSON body")]
    Json(#[source] serde_json::Error),
    /// The body is not valid UTF-8 text.
    #[error("body is not valid UTF-8")]
    Utf8(#[source] std::str::Utf8Error),
    /// Never constructed (a missing state fails the start instead); kept so
    /// that code matching it still compiles.
    #[doc(hidden)]
    #[deprecated(note = "never constructed: a missing state fails the start")]
    #[error("no state of type `{type_name}` was provided")]
    MissingState {
        /// The type's name.
        type_name: &'static str,
    },
    /// Never constructed (invalid typed configuration fails the start
    /// instead); kept so that code matching it still compiles.
    #[doc(hidden)]
    #[deprecated(note = "never constructed: invalid typed configuration fails the start")]
    #[error("invalid typed configuration")]
    Config(#[source] ConfigError),
    /// An extractor (a user's, typically) rejected the message with its own
    /// code and message; see [`ExtractError::reject`].
    #[error("{message}")]
    Rejected {
        /// The reply code (`Nats-Service-Error-Code`): 4xx when the message
        /// is at fault (logged at WARN), 5xx otherwise (logged at ERROR).
        code: u16,
        /// What is wrong with the message.
        message: String,
        /// The cause, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

impl ExtractError {
    /// A rejection by an extractor with reply code `code` (for example
    /// 401 for a missing token, 400 for a malformed field) and `message`.
    ///
    /// ```
    /// use telestion::{BoxError, ExtractError, FromMessage, Incoming, Service};
    ///
    /// /// The caller's token, from the `Authorization` header.
    /// struct Token(String);
    ///
    /// impl FromMessage for Token {
    ///     type Context = ();
    ///     fn prepare(_: &Service) -> Result<(), BoxError> {
    ///         Ok(())
    ///     }
    ///     fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
    ///         incoming
    ///             .message
    ///             .headers
    ///             .as_ref()
    ///             .and_then(|headers| headers.get("Authorization"))
    ///             .map(|value| Token(value.to_string()))
    ///             .ok_or_else(|| ExtractError::reject(401, "no Authorization header"))
    ///     }
    /// }
    ///
    /// assert_eq!(ExtractError::reject(401, "no token").code(), 401);
    /// ```
    pub fn reject(code: u16, message: impl Into<String>) -> ExtractError {
        ExtractError::Rejected {
            code,
            message: message.into(),
            source: None,
        }
    }

    /// Like [`ExtractError::reject`], keeping `source` as the cause.
    ///
    /// ```
    /// let cause = "x".parse::<u32>().unwrap_err();
    /// let error = telestion::ExtractError::reject_with(400, "bad count", cause);
    /// assert!(telestion::error_chain(&error).contains("invalid digit"));
    /// ```
    pub fn reject_with(
        code: u16,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> ExtractError {
        ExtractError::Rejected {
            code,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// The reply code of the rejection: the extractor's own, else 400.
    ///
    /// ```
    /// let error = telestion::ExtractError::Utf8(std::str::from_utf8(b"\xff").unwrap_err());
    /// assert_eq!(error.code(), 400);
    /// ```
    pub fn code(&self) -> u16 {
        match self {
            ExtractError::Rejected { code, .. } => *code,
            _ => 400,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_without_keys_does_not_panic() {
        let text = ConfigError::Missing { keys: Vec::new() }.to_string();
        assert!(text.contains("missing required configuration"), "{text}");
        let text = ConfigError::Missing {
            keys: vec!["NATS_URL".into(), "DATA_DIR".into()],
        }
        .to_string();
        assert!(text.contains("NATS_URL, DATA_DIR"), "{text}");
        assert!(text.contains("--NATS_URL=..."), "{text}");
    }
}
