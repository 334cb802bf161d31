//! Reliability and security tests, against real `nats-server`
//! processes on loopback: cluster failover, server restart with the
//! publish buffer, slow consumers, hostile input (property tests), secrets
//! (redaction, TLS, NKeys), data-directory permissions, and the soak runs
//! (`#[ignore]`d; run them with
//! `cargo test --release --test reliability -- --ignored soak --nocapture`).
//! `drain_window` (also ignored) shows the async-nats 0.51 drain limit.
//! `durable` runs the durable (JetStream) handlers against both Debian's
//! nats-server and the current release (`NATS_SERVER_CURRENT_BIN`).

use telestion_test as support;

mod data_dir;
mod drain_window;
mod durable;
mod durable_batch;
mod failover;
mod hostile;
mod hostile_headers;
mod secrets;
mod slow_consumer;
mod soak;
