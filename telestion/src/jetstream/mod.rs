//! JetStream: streams a service declares, durable handlers (their
//! consumers, the loop that pulls and settles, dead letters, what the
//! server gave up on) and durable publishing.

pub(crate) mod advisory;
pub(crate) mod consumer;
pub(crate) mod dead_letter;
pub(crate) mod declare;
pub(crate) mod durable;
pub(crate) mod publish;
pub(crate) mod settings;
pub(crate) mod settle;
pub(crate) mod stream;
