//! The execution engine: one way to call a handler and one way to record
//! what came of it, for every kind of route.
//!
//! - `call`: the call step (extract the arguments, call, turn the return
//!   value into a reply, catch a panic) giving one [`Outcome`](outcome::Outcome);
//! - `outcome`: what a call came to, and `record`, which counts it (health,
//!   statistics, metrics), summarises repeated errors and logs at the level
//!   its code says;
//! - `deliver`: what an outcome sends (the reply or the error reply, the
//!   return value to the publish targets), through a [`Sink`](deliver::Sink);
//! - the route kinds on top: `core` (a subscription, one message at a time
//!   or several at once), `batch`, `timer` and `task`. Durable routes
//!   (`jetstream`) add their settlement to the same outcome.

pub(crate) mod batch;
pub(crate) mod call;
pub(crate) mod core;
pub(crate) mod deliver;
pub(crate) mod outcome;
pub(crate) mod task;
pub(crate) mod timer;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::observe::call_context::CallContext;
use crate::observe::error_counter::ErrorCounter;
use crate::observe::error_log::ErrorLog;
use crate::observe::stats::HandlerStats;

/// What the engine knows about a running route.
#[derive(Debug)]
pub(crate) struct RouteInfo {
    /// The handler's name.
    pub(crate) name: Arc<str>,
    /// `SERVICE_NAME`.
    pub(crate) service: Arc<str>,
    /// The subject it listens on (`timer` / `task` for those).
    pub(crate) subject: String,
    /// Messages handled at once (1: one at a time, in order).
    pub(crate) concurrency: usize,
    /// Where the handler's return value is published, besides the reply.
    pub(crate) publish: Vec<String>,
    /// The route's counters (discovery, metrics).
    pub(crate) stats: Arc<HandlerStats>,
    /// Limits the log lines of repeated identical errors.
    pub(crate) log: ErrorLog,
    /// The service's error counter (health).
    pub(crate) errors: Arc<ErrorCounter>,
}

impl RouteInfo {
    /// A fresh call context of this route (one per route loop or call
    /// task).
    pub(crate) fn call_context(&self) -> CallContext {
        CallContext::new(self.service.clone(), self.name.clone())
    }
}
