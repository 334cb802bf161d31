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
//! Everything the macros do is available by hand:
//!
//! ```no_run
//! use telestion::{Json, Options, Route, Service};
//!
//! async fn double(Json(x): Json<i64>) -> Json<i64> {
//!     Json(2 * x)
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), telestion::StartError> {
//!     telestion::init_logging();
//!     let service = Service::start(Options::new()).await?;
//!     service.serve([Route::new("math.double", double)]).await
//! }
//! ```
//!
//! Modules, in the order data flows: [`config`] → [`connect`] →
//! [`mod@service`] → [`dispatch`] → [`handler`] (with [`extract`]); [`health`]
//! and [`run`] watch from the side; [`datalog`] is the Standard Operations
//! data logging.

#![warn(missing_docs)]

pub mod config;
pub mod connect;
pub mod datalog;
pub mod dispatch;
pub mod error;
pub mod extract;
pub mod handler;
pub mod health;
pub mod registry;
pub mod run;
pub mod service;

pub use config::Config;
pub use dispatch::{QueueGroup, Route, SubjectSource};
pub use error::{ConfigError, ExtractError, ServiceError, StartError};
pub use extract::{FromMessage, Headers, Incoming, Json, ReplyTo, State, Subject, TypedConfig};
pub use handler::{Handler, IntoReply, Reply};
pub use run::init_logging;
pub use service::{Options, Service};

pub use async_nats::{self, HeaderMap, Message};
pub use bytes::{self, Bytes};
pub use serde;
pub use serde_json;
pub use tokio;

pub use telestion_macros::{service, subscribe};

/// What generated code uses. Not a public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::extract::FromMessage;
    pub use crate::handler::Handler;
    pub use crate::registry::ROUTES;
    pub use crate::run::{SetupResult, run};
    pub use linkme;
    pub use tokio;

    /// Compile-time check used by `#[subscribe]`: a type is an extractor.
    pub const fn assert_extractor<T: FromMessage>() {}

    /// Compile-time check used by `#[subscribe]`: whether `T` consumes the body.
    pub const fn is_body<T: FromMessage>() -> bool {
        T::BODY
    }

    /// Compile-time check used by `#[subscribe]`: the return type makes a reply.
    pub const fn assert_into_reply<T: crate::handler::IntoReply>() {}

    /// Used by `#[telestion::service]`: the result of the body of `main`
    /// (an unsupported return type is reported at the user's return type).
    pub fn setup_result<T: SetupResult>(value: T) -> Result<(), String> {
        value.into_result()
    }

    /// Used by `#[subscribe]`'s check for a second body extractor:
    /// `<BodyProbe<T>>::BODY` is `T::BODY` for an extractor and, through
    /// [`NotAnExtractor`], `false` otherwise (a non-extractor is reported
    /// once, by [`assert_extractor`], not again here).
    pub struct BodyProbe<T: ?Sized>(core::marker::PhantomData<T>);

    impl<T: FromMessage> BodyProbe<T> {
        /// Whether `T` consumes the body.
        pub const BODY: bool = T::BODY;
    }

    /// The fallback of [`BodyProbe`] for types that are not extractors.
    pub trait NotAnExtractor {
        /// Not a body extractor.
        const BODY: bool = false;
    }

    impl<T: ?Sized> NotAnExtractor for BodyProbe<T> {}

    /// The routes collected by `#[subscribe]`.
    pub fn collected_routes() -> Vec<crate::Route> {
        crate::registry::collected()
    }
}
