//! Every row of the table in `testbed.md`, driven through the testbed
//! binary, plus the testbed's own rules (exit 0, JSON on the last line,
//! secrets redacted).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, NatsServer};
use crate::{run_testbed, tmp_dir};

const USER: &str = "testbed-user";
const PASSWORD: &str = "pw-testbed-3c9e";

/// The testbed with the full config ("full config" of testbed.md).
fn full_config(url: &str, user: &str, password: &str) -> Command {
    let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_testbed"));
    cmd.env("NATS_URL", url)
        .env("NATS_USER", user)
        .env("NATS_PASSWORD", password)
        .env("SERVICE_NAME", "testbed")
        .env("DATA_DIR", tmp_dir());
    cmd
}

/// The full config pointing at a port nobody listens on, with NATS disabled.
fn no_nats() -> Command {
    let mut cmd = full_config(
        &format!("nats://127.0.0.1:{}", support::free_port()),
        USER,
        PASSWORD,
    );
    cmd.env("X_DISABLE_NATS", "1");
    cmd
}

/// The suite compares config values as strings.
fn config_str(result: &Value, key: &str) -> Option<String> {
    result["config"].get(key).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn assert_started(result: &Value) {
    assert_eq!(result["started"], true, "{result}");
    assert!(result.get("error").is_none(), "{result}");
    for key in ["NATS_URL", "SERVICE_NAME", "DATA_DIR"] {
        assert!(result["config"][key].is_string(), "{key} in {result}");
    }
}

fn assert_failed(result: &Value) -> String {
    assert_eq!(result["started"], false, "{result}");
    assert!(result.get("config").is_none(), "{result}");
    result["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {result}"))
        .to_owned()
}

#[test]
fn plain_start_with_full_config() {
    let server = NatsServer::with_auth(USER, PASSWORD);
    let (result, _) = run_testbed(full_config(&server.url(), USER, PASSWORD));
    assert_started(&result);
    assert_eq!(config_str(&result, "SERVICE_NAME").unwrap(), "testbed");
    assert_eq!(config_str(&result, "NATS_URL").unwrap(), server.url());
    assert_eq!(config_str(&result, "DATA_DIR").unwrap(), tmp_dir());
    assert_eq!(result["env"]["SERVICE_NAME"], "testbed");
}

#[test]
fn nats_enabled_connects_and_exposes_the_client() {
    let server = NatsServer::start();
    let (result, _) = run_testbed(full_config(&server.url(), USER, PASSWORD));
    assert_started(&result);
    assert_eq!(result["nats_api_available"], true, "{result}");
    assert_eq!(result["nats_connected"], true, "{result}");
}

#[test]
fn nats_disabled_starts_without_connecting() {
    let (result, _) = run_testbed(no_nats());
    assert_started(&result);
    assert_eq!(result["nats_api_available"], false, "{result}");
    assert_eq!(result["nats_connected"], false, "{result}");
}

#[test]
fn x_disable_nats_other_than_1_keeps_nats_enabled() {
    // Nothing listens there, so an enabled NATS fails the start.
    let mut cmd = no_nats();
    cmd.env("X_DISABLE_NATS", "0");
    let (result, _) = run_testbed(cmd);
    assert_failed(&result);
}

#[test]
fn config_from_env() {
    let mut cmd = no_nats();
    cmd.env("TEST", "1");
    let (result, _) = run_testbed(cmd);
    assert_started(&result);
    assert_eq!(
        config_str(&result, "TEST").as_deref(),
        Some("1"),
        "{result}"
    );
    assert_eq!(result["env"]["TEST"], "1");
}

#[test]
fn config_from_cli() {
    let mut cmd = no_nats();
    cmd.arg("--TEST=1");
    let (result, _) = run_testbed(cmd);
    assert_started(&result);
    assert_eq!(
        config_str(&result, "TEST").as_deref(),
        Some("1"),
        "{result}"
    );
}

#[test]
fn cli_beats_env() {
    let mut cmd = no_nats();
    cmd.env("TEST", "1").arg("--TEST=2");
    let (result, _) = run_testbed(cmd);
    assert_started(&result);
    assert_eq!(
        config_str(&result, "TEST").as_deref(),
        Some("2"),
        "{result}"
    );
}

#[test]
fn missing_config_fails_naming_every_key() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_testbed"));
    cmd.env_clear();
    let (result, _) = run_testbed(cmd);
    let error = assert_failed(&result);
    for key in ["NATS_URL", "SERVICE_NAME", "DATA_DIR"] {
        assert!(error.contains(key), "{key} not named in: {error}");
    }
    assert!(error.contains("--dev"), "no hint how to fix it: {error}");
    assert_eq!(result["env"], serde_json::json!({}), "{result}");
}

#[test]
fn missing_config_names_only_the_missing_keys() {
    let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_testbed"));
    cmd.env("NATS_URL", "nats://127.0.0.1:1");
    let (result, _) = run_testbed(cmd);
    let error = assert_failed(&result);
    assert!(error.contains("SERVICE_NAME, DATA_DIR"), "{error}");
    assert!(!error.contains("NATS_URL,"), "{error}");
}

#[test]
fn a_service_binary_exits_non_zero_on_missing_config() {
    let output = support::run_with_timeout(
        support::clean_command(support::workspace_example("telestion-examples", "by_hand")),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        output.status.code().is_some(),
        "killed by a signal: {stderr}"
    );
    assert!(
        stderr.contains("NATS_URL, SERVICE_NAME, DATA_DIR"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn dev_mode() {
    let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_testbed"));
    cmd.env("X_DISABLE_NATS", "1").arg("--dev");
    let (result, _) = run_testbed(cmd);
    assert_started(&result);
    assert_eq!(config_str(&result, "NATS_URL").unwrap(), "localhost:4222");
    // The executable's name: stable across runs, so a dev run finds the
    // data directory of the previous one.
    assert_eq!(
        config_str(&result, "SERVICE_NAME").unwrap(),
        "testbed",
        "{result}"
    );
    assert_eq!(config_str(&result, "DATA_DIR").unwrap(), "./data");
    assert!(result["config"].get("NATS_USER").is_none(), "{result}");
    assert!(result["config"].get("NATS_PASSWORD").is_none(), "{result}");
}

#[test]
fn dev_mode_overridden() {
    let server = NatsServer::start();
    let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_testbed"));
    cmd.env("NATS_URL", server.url())
        .args(["--dev", "--DATA_DIR=/tmp"]);
    let (result, _) = run_testbed(cmd);
    assert_started(&result);
    assert_eq!(result["nats_connected"], true, "{result}");
    assert_eq!(config_str(&result, "DATA_DIR").unwrap(), "/tmp");
    assert_eq!(config_str(&result, "NATS_URL").unwrap(), server.url());
}

#[test]
fn auth_ok() {
    let server = NatsServer::with_auth(USER, PASSWORD);
    let (result, output) = run_testbed(full_config(&server.url(), USER, PASSWORD));
    assert_started(&result);
    assert_eq!(result["nats_connected"], true, "{result}");
    // Deliberate deviation: secrets are redacted in the echo.
    assert_eq!(result["config"]["NATS_PASSWORD"], "[redacted]", "{result}");
    assert_eq!(result["env"]["NATS_PASSWORD"], "[redacted]", "{result}");
    assert_eq!(result["config"]["NATS_USER"], USER, "{result}");
    assert!(!output.contains(PASSWORD), "password printed:\n{output}");
}

#[test]
fn auth_wrong() {
    let server = NatsServer::with_auth(USER, PASSWORD);
    let wrong = "pw-wrong-77a1";
    let started = Instant::now();
    let (result, output) = run_testbed(full_config(&server.url(), USER, wrong));
    let error = assert_failed(&result);
    assert!(error.contains("credentials"), "unclear error: {error}");
    assert!(!output.contains(wrong), "password printed:\n{output}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn auth_missing() {
    let server = NatsServer::with_auth(USER, PASSWORD);
    let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_testbed"));
    cmd.env("NATS_URL", server.url())
        .env("SERVICE_NAME", "testbed")
        .env("DATA_DIR", tmp_dir());
    let started = Instant::now();
    let (result, _) = run_testbed(cmd);
    let error = assert_failed(&result);
    assert!(error.contains("NATS"), "unclear error: {error}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn server_offline_fails_promptly() {
    let port = support::free_port();
    let started = Instant::now();
    let (result, _) = run_testbed(full_config(
        &format!("nats://127.0.0.1:{port}"),
        USER,
        PASSWORD,
    ));
    let elapsed = started.elapsed();
    let error = assert_failed(&result);
    assert!(error.contains(&port.to_string()), "which server? {error}");
    assert_eq!(result["nats_connected"], false);
    // The runtime guarantees 10 s; allow for process start-up on a busy machine.
    assert!(elapsed < Duration::from_secs(12), "took {elapsed:?}");
}
