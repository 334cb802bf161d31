//! The error types of the runtime, one enum per concern.

use std::path::PathBuf;

/// Why the configuration could not be loaded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// One or more required keys are missing (and `--dev` was not given).
    #[error(
        "missing required configuration: {}. Set them as environment variables (e.g. `{}=...`), \
         pass them as CLI arguments (e.g. `--{}=...`), put them in the JSON file named by \
         CONFIG_FILE, or start with `--dev` for local defaults",
        .keys.join(", "), .keys[0], .keys[0]
    )]
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
    /// The file named by `CONFIG_FILE` could not be read.
    #[error("cannot read config file {path:?} (from CONFIG_FILE): {source}")]
    FileRead {
        /// The path from `CONFIG_FILE`.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid JSON, or not the expected shape.
    #[error("invalid config file {path:?} (from CONFIG_FILE): {reason}")]
    FileFormat {
        /// The path from `CONFIG_FILE`.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A key is present but its value cannot be decoded into the wanted type.
    #[error("invalid configuration: {message}")]
    Invalid {
        /// The key, when known.
        key: Option<String>,
        /// A message naming the key and the problem.
        message: String,
    },
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
        /// A short description of the cause.
        reason: String,
        /// The underlying client error, when there is one.
        #[source]
        source: Option<async_nats::ConnectError>,
    },
    /// A subscription could not be set up.
    #[error("cannot subscribe handler `{handler}` to `{subject}`: {reason}")]
    Subscribe {
        /// The handler's name.
        handler: String,
        /// The subject (after config resolution).
        subject: String,
        /// What went wrong.
        reason: String,
    },
    /// A handler needs something the service does not provide.
    #[error("handler `{handler}`: {reason}")]
    Handler {
        /// The handler's name.
        handler: String,
        /// What is missing.
        reason: String,
    },
    /// Two routes conflict.
    #[error("conflicting handlers: {0}")]
    Conflict(String),
    /// The user's start-up code failed.
    #[error("{0}")]
    Setup(String),
    /// Something the runtime needs from the OS failed (signals, runtime).
    #[error("{0}")]
    Runtime(String),
}

/// Errors of the [`Service`](crate::Service) helpers (publish, request, data dir).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The service runs without NATS (`nats = false`).
    #[error("this service runs without NATS (no-NATS mode); there is no client to {0}")]
    NoNats(&'static str),
    /// Publishing failed.
    #[error("publish to `{subject}` failed: {source}")]
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
    /// A request failed (no responder, timeout, ...).
    #[error("request to `{subject}` failed: {source}")]
    Request {
        /// The subject.
        subject: String,
        /// The client error.
        #[source]
        source: async_nats::RequestError,
    },
    /// The payload could not be serialized to JSON.
    #[error("cannot encode JSON: {0}")]
    Encode(#[from] serde_json::Error),
    /// A filesystem operation in the data directory failed.
    #[error("data directory {path:?}: {source}")]
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
}

/// Why a message could not be turned into a handler's arguments.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The body is not the JSON the handler expects.
    #[error("invalid JSON body: {0}")]
    Json(#[source] serde_json::Error),
    /// The body is not valid UTF-8 text.
    #[error("body is not valid UTF-8: {0}")]
    Utf8(#[source] std::str::Utf8Error),
    /// Anything else (missing state, invalid typed config, ...).
    #[error("{0}")]
    Other(String),
}
