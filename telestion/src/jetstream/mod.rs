//! JetStream: streams a service declares, durable handlers (their
//! consumers, the loop that pulls and settles, dead letters, what the
//! server gave up on) and durable publishing.

pub(crate) mod advisory;
pub(crate) mod durable;
pub(crate) mod publish;
pub(crate) mod stream;
