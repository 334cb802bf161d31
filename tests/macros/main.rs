//! End-to-end tests of macro-built services (`tests/fixtures/e2e_*.rs`,
//! binaries of this package) against real nats-server processes.
use telestion_test as support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use support::{NatsServer, Process, WAIT, clean_command, error_header, request, spawn_ready};

/// A command for fixture binary `name` configured for `server` (when given).
fn service_cmd(name: &str, server: Option<&NatsServer>, service: &str, data: &Path) -> Command {
    let mut cmd = clean_command(support::workspace_binary("telestion-tests", name));
    cmd.env("SERVICE_NAME", service).env("DATA_DIR", data);
    if let Some(server) = server {
        cmd.env("NATS_URL", server.url());
    }
    cmd
}

/// The main test service with valid config.
fn macro_service(server: &NatsServer, service: &str, data: &Path) -> Command {
    let mut cmd = service_cmd("e2e_macro_service", Some(server), service, data);
    cmd.env("ECHO_SUBJECT", "e2e.echo.configured")
        .env("FACTOR", "3");
    cmd
}

/// Runs `cmd` to completion; asserts exit code 1 and no panic; returns
/// stderr.
fn failed_start(cmd: Command) -> String {
    let mut proc = Process::spawn(cmd);
    let code = proc.wait_exit(WAIT);
    let stderr = proc.stderr();
    assert_eq!(code, Some(1), "expected exit code 1; stderr:\n{stderr}");
    assert!(!stderr.contains(" ready"), "got ready; stderr:\n{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "a failed start must not panic; stderr:\n{stderr}"
    );
    stderr
}

fn text(message: &async_nats::Message) -> String {
    String::from_utf8_lossy(&message.payload).into_owned()
}

fn json(message: &async_nats::Message) -> serde_json::Value {
    serde_json::from_slice(&message.payload)
        .unwrap_or_else(|e| panic!("reply {:?} is not JSON: {e}", text(message)))
}

#[tokio::test]
async fn handlers_in_modules_answer_typed_requests() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut proc = spawn_ready(macro_service(&server, "calc", data.path()));
    let client = server.client().await;

    // Typed JSON request/reply (module `math`).
    let reply = request(&client, "e2e.math.divide", r#"{"dividend":17,"divisor":5}"#).await;
    assert_eq!(error_header(&reply), None, "{}", text(&reply));
    assert_eq!(
        json(&reply),
        serde_json::json!({"quotient": 3, "remainder": 2})
    );

    // `Err` from the handler: error reply with its message.
    let reply = request(&client, "e2e.math.divide", r#"{"dividend":17,"divisor":0}"#).await;
    assert_eq!(
        error_header(&reply).as_deref(),
        Some("cannot divide 17 by zero")
    );
    assert_eq!(json(&reply)["error"], "cannot divide 17 by zero");

    // A body that is not the handler's JSON: error reply, handler not run.
    let reply = request(&client, "e2e.math.divide", "not json").await;
    let error = error_header(&reply).expect("no error reply for bad JSON");
    assert!(!error.is_empty());
    assert!(json(&reply)["error"].is_string());
    let reply = request(&client, "e2e.math.divide", r#"{"dividend":"x"}"#).await;
    assert!(error_header(&reply).is_some(), "{}", text(&reply));

    // Typed config (`FACTOR=3`) reaching a `pub(crate)` handler.
    let reply = request(&client, "e2e.math.scale", "7").await;
    assert_eq!(text(&reply), "21");

    // Nested module, wildcard subject, state made in main, the subject.
    let reply = request(&client, "e2e.text.quiet.greet", "Ada").await;
    assert_eq!(text(&reply), "Hello from calc, Ada! (e2e.text.quiet.greet)");

    // Subject from config (`ECHO_SUBJECT`).
    let reply = request(&client, "e2e.echo.configured", "hi").await;
    assert_eq!(text(&reply), "e2e.echo.configured:hi");

    // A handler at the crate root returning `&'static str`.
    assert_eq!(text(&request(&client, "e2e.ping", "").await), "pong");

    // The three failures were counted and logged with the handler's path.
    let health = support::health(&client, "__telestion__.health").await;
    assert_eq!(health["errors_total"], 3, "{health}");
    proc.wait_for_stderr("e2e_macro_service::math::divide", WAIT);
}

/// Collects `e2e.observed.<kind>` lines (`<instance> <body>`) until
/// `count` arrived, then a little longer to catch extra deliveries.
async fn observe(
    observed: &mut async_nats::Subscriber,
    count: usize,
) -> BTreeMap<String, Vec<String>> {
    let mut lines = Vec::new();
    while lines.len() < count {
        let message = tokio::time::timeout(WAIT, observed.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} observations: {lines:?}", lines.len()))
            .unwrap();
        lines.push((message.subject.to_string(), text(&message)));
    }
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(300), observed.next()).await
    {
        lines.push((message.subject.to_string(), text(&message)));
    }
    let mut by_subject: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (subject, line) in lines {
        by_subject.entry(subject).or_default().push(line);
    }
    by_subject
}

#[tokio::test]
async fn queue_group_shares_messages_and_broadcast_reaches_every_instance() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let _a = spawn_ready(macro_service(&server, "pair", data.path()));
    let _b = spawn_ready(macro_service(&server, "pair", data.path()));
    let client = server.client().await;
    let mut observed = client.subscribe("e2e.observed.*").await.unwrap();
    client.flush().await.unwrap();

    for n in 0..20 {
        client
            .publish("e2e.work", n.to_string().into())
            .await
            .unwrap();
    }
    for n in 0..10 {
        client
            .publish("e2e.announce", n.to_string().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let seen = observe(&mut observed, 20 + 2 * 10).await;

    // Queue group: each message handled once in total.
    let mut queued: Vec<u32> = seen["e2e.observed.queue"]
        .iter()
        .map(|line| line.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    queued.sort();
    assert_eq!(queued, (0..20).collect::<Vec<_>>());

    // Broadcast: each message handled by both instances.
    let broadcast = &seen["e2e.observed.broadcast"];
    assert_eq!(broadcast.len(), 20, "{broadcast:?}");
    let mut per_instance: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for line in broadcast {
        let (instance, n) = line.split_once(' ').unwrap();
        per_instance
            .entry(instance)
            .or_default()
            .push(n.parse().unwrap());
    }
    assert_eq!(per_instance.len(), 2, "{broadcast:?}");
    for numbers in per_instance.values_mut() {
        numbers.sort();
        assert_eq!(*numbers, (0..10).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn concurrency_limit_and_one_at_a_time_in_order() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let _proc = spawn_ready(macro_service(&server, "busy", data.path()));
    let client = server.client().await;

    // `concurrency = 3`: handlers wait at a barrier of 3, so these six
    // requests are only answered when three run at the same time.
    let replies =
        futures::future::join_all((0..6).map(|n| request(&client, "e2e.parallel", n.to_string())))
            .await;
    let mut answered: Vec<String> = replies.iter().map(text).collect();
    answered.sort();
    assert_eq!(answered, ["0", "1", "2", "3", "4", "5"]);

    // Default concurrency 1: one at a time, in arrival order.
    let mut observed = client.subscribe("e2e.observed.sequential").await.unwrap();
    client.flush().await.unwrap();
    for n in 0..10 {
        client
            .publish("e2e.sequential", n.to_string().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let seen = observe(&mut observed, 10).await;
    let order: Vec<&str> = seen["e2e.observed.sequential"]
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(order, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);

    // Never more in flight than the limit.
    let stats = json(&request(&client, "e2e.stats", "").await);
    assert_eq!(stats, serde_json::json!([3, 1]));
}

#[test]
fn invalid_typed_config_fails_the_start_naming_the_key() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = macro_service(&server, "calc", data.path());
    cmd.env("FACTOR", "three");
    let stderr = failed_start(cmd);
    assert!(stderr.contains("FACTOR"), "{stderr}");
    assert!(stderr.contains("math::scale"), "{stderr}");
}

#[test]
fn missing_config_subject_fails_the_start_naming_the_key() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = macro_service(&server, "calc", data.path());
    cmd.env_remove("ECHO_SUBJECT");
    let stderr = failed_start(cmd);
    assert!(stderr.contains("ECHO_SUBJECT"), "{stderr}");
}

#[test]
fn conflicting_handlers_fail_the_start() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let cmd = service_cmd("e2e_conflict", Some(&server), "clash", data.path());
    let stderr = failed_start(cmd);
    for needle in [
        "e2e_conflict::first",
        "e2e_conflict::other::second",
        "e2e.conflict",
        "clash",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("e2e_conflict::listener"), "{stderr}");
}

#[test]
fn failed_start_up_code_fails_the_start_with_its_message() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = macro_service(&server, "calc", data.path());
    cmd.env("FAIL_SETUP", "no database");
    let stderr = failed_start(cmd);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("start-up refused: no database"),
        "{stderr}"
    );
}

#[test]
fn service_without_nats_runs_its_start_up_code() {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = service_cmd("e2e_no_nats", None, "offline", data.path());
    // NATS_URL is a required key even without NATS; nothing listens here,
    // so connecting would fail the start.
    cmd.env(
        "NATS_URL",
        format!("nats://127.0.0.1:{}", support::free_port()),
    );
    let mut proc = Process::spawn(cmd);
    let code = proc.wait_exit(WAIT);
    assert_eq!(code, Some(0), "stderr:\n{}", proc.stderr());
    let written = std::fs::read_to_string(data.path().join("offline/started")).unwrap();
    assert_eq!(written, "offline connected=false");
}
