//! # telestion-test
//!
//! The test kit for [telestion](https://docs.rs/telestion) services, used
//! by this project's own tests and benchmark. Add it as a dev-dependency:
//!
//! ```toml
//! [dev-dependencies]
//! telestion-test = "0.1"
//! ```
//!
//! Everything runs against real parts: a real `nats-server` process on a
//! free loopback port (never 4222), killed when dropped; services either in
//! this process (from your `#[subscribe]` handlers or an explicit route
//! list) or as their real binaries.
//!
//! A test leaves nothing running, also when it fails: every process the
//! kit starts ([`Process`], [`NatsServer`]) runs in a process group of its
//! own that is killed as a whole on drop (also while a panic unwinds) and
//! when the test process dies, even by `SIGKILL`; [`ProcessMark`] checks
//! that nothing a command started is left.
//!
//! ```no_run
//! use telestion::{Json, subscribe};
//! use telestion_test::{NatsServer, TestService, request_json};
//!
//! #[subscribe("math.double")]
//! async fn double(Json(x): Json<i64>) -> Json<i64> {
//!     Json(2 * x)
//! }
//!
//! #[tokio::test]
//! async fn doubles() {
//!     let server = NatsServer::start();
//!     let service = TestService::start(&server, "math", telestion::collected_routes()).await;
//!     let client = server.client().await;
//!     let doubled: i64 = request_json(&client, "math.double", &21).await;
//!     assert_eq!(doubled, 42);
//!     service.stop().await;
//! }
//! # fn main() {}
//! ```
//!
//! `nats-server` is found on `PATH` (and in `/usr/sbin`, `/usr/local/bin`),
//! or at `NATS_SERVER_BIN`; a missing server fails the test with the
//! install hint, it never skips it. [`PostgresServer`] does the same for
//! PostgreSQL (a private cluster on a free loopback port).

mod arbitrary;
mod auth;
mod binaries;
mod client;
mod files;
mod limits;
mod logs;
mod mark;
mod node;
mod pki;
mod postgres;
mod process;
mod process_group;
mod procs;
mod raw;
mod server;
mod service;

pub use arbitrary::json_value;
pub use auth::{authorization, service_permissions};
pub use binaries::{target_dir, workspace_binary, workspace_example};
pub use client::{
    collect_replies, error_header, eventually, eventually_async, health, health_report,
    next_message, request, request_json, request_within, try_health, try_request,
    try_request_within,
};
pub use files::{Umask, files_below, mode, paths_below};
pub use limits::{Resource, Tmpfs, limit};
pub use logs::{Logs, capture_logs};
pub use mark::{MARK_VAR, MarkedProcess, ProcessMark};
pub use node::node_packages;
pub use pki::Pki;
pub use postgres::{PostgresServer, postgres_bin_dir};
pub use process::{
    Process, Stream, assert_start_fails_naming, clean_command, closed_pipe, run_with_timeout,
    service_command, spawn_ready,
};
pub use raw::{HostileHeaders, RawPublisher, hostile_header_blocks};
pub use server::{
    NatsServer, ServerOptions, free_port, nats_server_bin, nats_server_current_bin,
    server_binaries, server_version, wait_for_port,
};
pub use service::{TestService, service_config, start_service};

/// A generous limit for a process to start, answer or exit.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(30);
