//! # telestion
//!
//! Write [Telestion](https://telestion.wuespace.de) backend services in Rust:
//! small programs that talk over the NATS message bus. A service is a few
//! annotated functions:
//!
//! ```no_run
//! use telestion::{Json, subscribe};
//!
//! #[derive(serde::Deserialize)]
//! struct Reading { celsius: f64 }
//!
//! #[subscribe("sensors.temperature")]
//! async fn to_fahrenheit(Json(reading): Json<Reading>) -> Json<f64> {
//!     Json(reading.celsius * 9.0 / 5.0 + 32.0)
//! }
//!
//! #[telestion::service]
//! async fn main() {}
//! ```
//!
//! `#[telestion::service]` loads the configuration (env, CLI, config file,
//! `--dev`), connects to NATS, answers health requests, subscribes every
//! `#[subscribe]` handler in a queue group named `SERVICE_NAME`, counts and
//! logs every handler error, and drains on SIGINT/SIGTERM.
//!
//! Handlers are called the same way for every kind of route (core,
//! request/reply, batch, durable, timer, task): one call step, one outcome,
//! recorded in health, statistics and metrics and logged at the level its
//! code says; see [`extract`] for the parameters a handler can take, and
//! [`IntoReply`] for what it can return.
//!
//! The manual is the [`guide`]: one chapter per topic (configuration,
//! handlers, replies and errors, publish targets, timers and tasks, batches,
//! durable handlers, health, discovery, metrics, AsyncAPI, shutdown,
//! testing, deployment, security).
//!
//! Everything the macros do is available by hand:
//!
//! ```no_run
//! use telestion::{Json, Options, Route, Service};
//!
//! async fn double(Json(x): Json<i64>) -> Json<i64> {
//!     Json(2 * x)
//! }
//!
//! #[telestion::tokio::main(crate = "telestion::tokio")]
//! async fn main() -> Result<(), telestion::StartError> {
//!     telestion::init_logging();
//!     let service = Service::start(Options::new()).await?;
//!     service.serve([Route::new("math.double", double)]).await
//! }
//! ```
//!
//! ## How the crate is built
//!
//! Data flows one way, and so do the imports between the modules:
//!
//! - `config`: the configuration (CLI, environment, file, `--dev`), its
//!   secrets and `NATS_URL` parsing;
//! - `observe`: what watches a running instance: logging and the call
//!   context of every log line, the error counter, per-handler statistics,
//!   the connection's condition, health replies, discovery ([`micro`]) and
//!   the Prometheus endpoint;
//! - `service`: the [`Service`] handle (start, connection, identity, state,
//!   publish and request, the data directory, the stop signal, the
//!   watchdog);
//! - `handler`: the [`Handler`] trait, the [`extract`]ors, replies
//!   ([`IntoReply`]), [`HandlerError`], [`Batch`], [`Blocking`];
//! - `engine`: the one call step and the one outcome every route kind
//!   uses, and the loops of core, batch, timer and task routes;
//! - `jetstream`: streams, durable routes (their consumers, loop,
//!   settlement and dead letters) and durable publishing;
//! - `route`: the [`Route`] builder with its one kind, the registry of
//!   `#[subscribe]` handlers, publish targets, payload schemas and the
//!   AsyncAPI document;
//! - `serve`: subscribing routes, the one path from a route's kind to its
//!   engine loop, the drain; `run`: what the generated `main` calls.
//!
//! The rules the macros check at compile time and the runtime at start
//! (subjects, periods, names, limits, which route settings go together)
//! live once, in the `telestion-rules` crate.
//!
//! ## Features
//!
//! - `metrics` (on by default): the Prometheus endpoint (`METRICS_ADDR`);
//!   without it, setting `METRICS_ADDR` fails the start.
//! - `schemas` (on by default): JSON schemas of `Json<T>` payloads (types
//!   that derive `schemars::JsonSchema`) in the AsyncAPI document.

#![warn(missing_docs)]

pub mod config;
pub mod data_log;
mod engine;
mod error;
pub mod exit_code;
pub mod guide;
mod handler;
mod jetstream;
mod observe;
pub mod permissions;
mod route;
mod run;
mod serve;
mod service;
mod text;

#[doc(hidden)]
pub mod __private;

pub use telestion_macros::{service, subscribe};

pub use config::Config;
pub use error::{BoxError, ConfigError, ExtractError, ServiceError, StartError, error_chain};
pub use handler::Handler;
pub use handler::batch::Batch;
pub use handler::blocking::{Blocking, BlockingCall};
pub use handler::error::HandlerError;
pub use handler::extract;
pub use handler::extract::{
    DataDir, FromMessage, Headers, Incoming, Json, ReplyTo, State, Subject, TypedConfig,
};
pub use handler::reply::{IntoReply, Reply};
pub use jetstream::publish::DurableAck;
pub use jetstream::settings::Durable;
pub use jetstream::stream::{StreamRetention, StreamSpec, StreamStorage};
pub use observe::error_counter::ErrorCounter;
pub use observe::logging::init_logging;
pub use observe::{health, micro};
pub use route::asyncapi::asyncapi_document;
pub use route::publish_target::PublishTarget;
pub use route::registry::collected_routes;
pub use route::rules::{parse_period, validate_subject};
pub use route::schema::PayloadSchema;
pub use route::{QueueGroup, Route, SubjectSource};
pub use run::help_text;
pub use service::{Hangups, Options, Service};

/// The NATS message type (the [`extract`]or of the whole message) and its
/// headers, and the body type, from the crates below.
pub use async_nats::{HeaderMap, Message};
pub use bytes::Bytes;

/// Durations from configuration: every duration key is read with one
/// parser and one bounds check, [`parse_setting`](period::parse_setting)
/// (a period such as `500ms`, or a bare number in the key's unit; out of
/// bounds, `0ms` and `999999999999999h` alike, the error names the key and
/// the bounds). [`parse_period`] parses without bounds.
///
/// ```
/// use std::time::Duration;
/// use telestion::period::{BareNumber, parse_setting};
///
/// let config = telestion::Config::from_pairs([("POLL_TIMEOUT", "0ms")]);
/// let text = config.get_str("POLL_TIMEOUT").unwrap_or_else(|| "5s".into());
/// let bounds = Duration::from_millis(100)..=Duration::from_secs(60);
/// let error = parse_setting("POLL_TIMEOUT", &text, BareNumber::Seconds, bounds).unwrap_err();
/// assert!(error.to_string().contains("key POLL_TIMEOUT"));
/// ```
pub mod period {
    pub use telestion_rules::period::{
        BareNumber, PeriodError, SettingError, parse_setting, parse_within,
    };
}

/// Batch handlers' limits.
pub mod batch {
    pub use crate::handler::batch::{DEFAULT_BATCH_WINDOW_MS, MAX_BATCH};
}

/// Durable handlers' defaults, configuration keys and dead-letter headers;
/// the settings themselves are [`Durable`].
pub mod durable {
    pub use crate::jetstream::publish::MESSAGE_ID_HEADER;
    pub use crate::jetstream::settings::{
        DEAD_LETTER_STREAM, DEFAULT_ACK_WAIT_SECS, DEFAULT_BACKOFF_SECS,
        DEFAULT_DEAD_LETTER_PREFIX, DEFAULT_MAX_DELIVER, DEFAULT_RETRY_FOR_SECS, DURABLE_KEYS,
        dead_letter_headers,
    };
}

/// Logging: [`init_logging`], how repeated handler
/// errors are summarised, and the count of log writes that failed.
pub mod logging {
    pub use crate::observe::error_log::REPEATED_ERROR_LOG_SECS;
    pub use crate::observe::logging::{dropped_log_writes, init_logging};
}

/// Tasks: how a failed task is restarted.
pub mod task {
    pub use crate::engine::task::{FIRST_BACKOFF, MAX_BACKOFF};
}

/// The crates a service may need besides `telestion` and `serde`, in the
/// versions telestion uses: a service's `Cargo.toml` does not have to name
/// them (`telestion::deps::tokio::time::sleep`, ...).
pub mod deps {
    pub use async_nats;
    pub use bytes;
    #[cfg(feature = "schemas")]
    pub use schemars;
    pub use serde;
    pub use serde_json;
    pub use tokio;
    pub use tracing;
}

// The paths of earlier releases, kept so that existing code compiles; the
// documented paths are the modules above.
#[doc(hidden)]
pub use async_nats;
#[doc(hidden)]
pub use bytes;
#[doc(hidden)]
pub use config::{CONFIG_FILE, CONFIG_KEY, MAX_FILE_BYTES, REQUIRED_KEYS};
#[doc(hidden)]
pub use config::{REDACTED, is_secret_key};
#[doc(hidden)]
pub use durable::*;
#[doc(hidden)]
pub use engine::task::{TASK_FIRST_BACKOFF_MS, TASK_MAX_BACKOFF_SECS};
#[doc(hidden)]
pub use handler::batch::{DEFAULT_BATCH_WINDOW_MS, MAX_BATCH};
#[doc(hidden)]
pub use logging::{REPEATED_ERROR_LOG_SECS, dropped_log_writes};
#[doc(hidden)]
pub use observe::error_counter::DEFAULT_ERROR_WINDOW_SECS;
#[cfg(feature = "schemas")]
#[doc(hidden)]
pub use schemars;
#[doc(hidden)]
pub use serde;
#[doc(hidden)]
pub use serde_json;
#[doc(hidden)]
pub use tokio;
#[doc(hidden)]
pub use tracing;
