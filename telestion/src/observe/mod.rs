//! What watches a running service: logging and the panic hook, the error
//! counter and the repeated-error summary, per-handler statistics, the
//! connection's condition, health replies, discovery (the NATS micro
//! protocol) and the Prometheus endpoint.

pub(crate) mod call_context;
pub(crate) mod connection;
pub(crate) mod error_counter;
pub(crate) mod error_log;
pub mod health;
pub(crate) mod instance;
pub(crate) mod logging;
#[cfg(feature = "metrics")]
pub(crate) mod metrics;
#[cfg(not(feature = "metrics"))]
#[path = "metrics_off.rs"]
pub(crate) mod metrics;
pub mod micro;
pub(crate) mod stats;
