//! The execution engine: how a route's handler is called for messages
//! (core subscriptions, one at a time or concurrently, and batches), for
//! timer ticks and as a task.

pub(crate) mod batch;
pub(crate) mod core;
pub(crate) mod task;
pub(crate) mod timer;
