//! # telestion-rules
//!
//! The rules that both halves of [telestion](https://docs.rs/telestion)
//! apply: `telestion-macros` at compile time (so that a `#[subscribe]` that
//! compiles never fails the start for these reasons) and the `telestion`
//! runtime at start (for routes built by hand and values from
//! configuration). A proc-macro crate cannot depend on the runtime, so the
//! rules live here, once, in plain Rust without dependencies.
//!
//! - [`subject`]: what a subject to subscribe to, or to publish to, may be;
//! - [`period`]: periods and durations (`"100ms"`, `"2s"`, `"5m"`, `"1h"`);
//! - [`names`]: stream, consumer, queue group and config key names;
//! - [`limits`]: the numbers both halves check (batch size, ...);
//! - [`shape`]: which route settings go together (a timer takes no queue
//!   group, a batch handler no concurrency, ...).
//!
//! Users of telestion do not need this crate; its items are re-exported
//! where they belong (`telestion::validate_subject`, `telestion::parse_period`).

pub mod limits;
pub mod names;
pub mod period;
pub mod shape;
pub mod subject;
