// The guide, as chapters (one module each, no items): the manual of the
// crate. The text lives in Markdown files under `src/docs/`, every Rust
// block a doc test.
#![doc = include_str!("docs/guide.md")]

#[doc = include_str!("docs/configuration.md")]
pub mod configuration {}

#[doc = include_str!("docs/handlers.md")]
pub mod handlers {}

#[doc = include_str!("docs/replies_and_errors.md")]
pub mod replies_and_errors {}

#[doc = include_str!("docs/publish_targets.md")]
pub mod publish_targets {}

#[doc = include_str!("docs/timers_and_tasks.md")]
pub mod timers_and_tasks {}

#[doc = include_str!("docs/batches.md")]
pub mod batches {}

#[doc = include_str!("docs/durable.md")]
pub mod durable {}

#[doc = include_str!("docs/health.md")]
pub mod health {}

#[doc = include_str!("docs/discovery.md")]
pub mod discovery {}

#[doc = include_str!("docs/metrics.md")]
pub mod metrics {}

#[doc = include_str!("docs/asyncapi.md")]
pub mod asyncapi {}

#[doc = include_str!("docs/shutdown.md")]
pub mod shutdown {}

#[doc = include_str!("docs/testing.md")]
pub mod testing {}

#[doc = include_str!("docs/deployment.md")]
pub mod deployment {}

#[doc = include_str!("docs/security.md")]
pub mod security {}
