//! Runtime integration tests against real nats-server processes, one module
//! per numbered point of the runtime issue: config and identity, connection,
//! dispatch, health, logging, shutdown, and the testbed protocol.
//!
//! In-process tests start services with
//! `Service::start(Options::new().config(..))`; tests that need a whole
//! process (signals, logs, exit codes) run the `testbed` and `by_hand`
//! examples.

use telestion_test as support;

mod batches;
mod config;
mod connect;
mod connection_lost;
mod data_dir;
mod dispatch;
mod faults;
mod features;
mod health;
mod identity;
mod logging;
mod metrics;
mod micro;
mod redaction;
mod requests;
mod shutdown;
mod testbed;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use telestion::{Config, Options, Service};

/// Runs the testbed binary (the command is prepared by the caller), checks
/// that it exits 0 and returns the JSON object on its last stdout line and
/// its stderr.
pub fn run_testbed(cmd: Command) -> (Value, String) {
    let output = support::run_with_timeout(cmd, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(0),
        "the testbed must exit 0; stderr:\n{stderr}"
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("the testbed printed nothing; stderr:\n{stderr}"));
    let value: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last stdout line is not JSON ({e}): {last}"));
    assert!(value.is_object(), "not a JSON object: {last}");
    (value, stdout + &stderr)
}

/// A writable directory for `DATA_DIR`.
pub fn tmp_dir() -> String {
    std::env::temp_dir().to_string_lossy().into_owned()
}

/// Config pairs with the required keys for a service on `url`.
pub fn base_pairs(url: &str, name: &str) -> Vec<(String, String)> {
    vec![
        ("NATS_URL".into(), url.into()),
        ("SERVICE_NAME".into(), name.into()),
        ("DATA_DIR".into(), tmp_dir()),
    ]
}

/// Starts a service in this process with the required keys plus `extra`.
pub async fn start_service(url: &str, name: &str, extra: &[(&str, &str)]) -> Service {
    let mut pairs = base_pairs(url, name);
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Service::start(Options::new().config(Config::from_pairs(pairs)))
        .await
        .expect("service did not start")
}

/// Waits until the server has processed everything `service` sent so far
/// (its subscriptions are active).
pub async fn settle(service: &Service) {
    service.client().unwrap().flush().await.unwrap();
}

/// A request with a 5 s timeout (panics on timeout or error).
pub async fn request(
    client: &async_nats::Client,
    subject: &str,
    payload: impl Into<telestion::Bytes>,
) -> async_nats::Message {
    support::request_within(client, subject, payload, Duration::from_secs(5)).await
}

pub use support::error_header;

/// Starts the `by_hand` example against `server_url` with `extra` env and
/// waits until all its routes are subscribed.
pub async fn start_by_hand(
    server_url: &str,
    name: &str,
    extra: &[(&str, &str)],
    client: &async_nats::Client,
) -> support::Process {
    let mut cmd =
        support::clean_command(support::workspace_example("telestion-examples", "by_hand"));
    cmd.env("NATS_URL", server_url)
        .env("SERVICE_NAME", name)
        .env("DATA_DIR", tmp_dir());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let proc = support::Process::spawn(cmd);
    wait_ready(client, &proc).await;
    proc
}

/// Waits until `byhand.echo` (the last route `by_hand` subscribes) answers.
pub async fn wait_ready(client: &async_nats::Client, proc: &support::Process) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_millis(500),
            client.request("byhand.echo", "1".into()),
        )
        .await;
        if let Ok(Ok(reply)) = attempt
            && &reply.payload[..] == b"1"
        {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!("by_hand did not become ready; stderr:\n{}", proc.stderr());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
