//! The sample services (and the health tool listing them).

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use telestion_test::{
    self as support, NatsServer, Process, WAIT, assert_start_fails_naming as assert_fails_naming,
    clean_command, health, request, spawn_ready,
};

/// The binary of a sample (an example of this package) or of an app.
fn binary(name: &str) -> std::path::PathBuf {
    match name {
        "standard_ops" | "health" => support::workspace_binary(name, name),
        _ => support::workspace_example("telestion-examples", name),
    }
}

fn example_cmd(name: &str) -> std::process::Command {
    clean_command(binary(name))
}

fn service_cmd(
    name: &str,
    server: &NatsServer,
    service_name: &str,
    data_dir: &std::path::Path,
) -> std::process::Command {
    support::service_command(binary(name), server, service_name, data_dir)
}

async fn next(subscriber: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, subscriber.next())
        .await
        .expect("no message within the time limit")
        .expect("subscription ended")
}

// ---- publisher --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn publisher_publishes_value_and_time() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let client = server.client().await;
    let mut readings = client.subscribe("sensors.temperature").await.unwrap();
    client.flush().await.unwrap();
    let mut cmd = service_cmd("publisher", &server, "publisher", data.path());
    cmd.env("DATA_SUBJECT", "sensors.temperature")
        .env("FREQUENCY", "50");
    let _publisher = Process::spawn(cmd);

    let mut times = Vec::new();
    for _ in 0..3 {
        let message = next(&mut readings).await;
        let reading: Value = serde_json::from_slice(&message.payload).unwrap();
        assert!(reading["value"].is_f64(), "{reading}");
        let time = reading["time"].as_str().expect("time is a string");
        times.push(humantime::parse_rfc3339(time).expect("time is RFC 3339"));
        assert_eq!(reading.as_object().unwrap().len(), 2, "{reading}");
    }
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}

#[test]
fn publisher_rejects_missing_or_malformed_config() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let cmd = service_cmd("publisher", &server, "publisher", data.path());
    assert_fails_naming(cmd, "DATA_SUBJECT");

    let mut cmd = service_cmd("publisher", &server, "publisher", data.path());
    cmd.env("DATA_SUBJECT", "x").env("FREQUENCY", "fast");
    assert_fails_naming(cmd, "FREQUENCY");

    let mut cmd = service_cmd("publisher", &server, "publisher", data.path());
    cmd.env("DATA_SUBJECT", "data.>");
    assert_fails_naming(cmd, "DATA_SUBJECT");

    // The standard keys are required too.
    let mut cmd = example_cmd("publisher");
    cmd.env("NATS_URL", server.url())
        .env("DATA_DIR", data.path())
        .env("DATA_SUBJECT", "x");
    assert_fails_naming(cmd, "SERVICE_NAME");
}

// ---- latest_value_cache -----------------------------------------------------

fn cache_cmd(server: &NatsServer, data: &std::path::Path) -> std::process::Command {
    let mut cmd = service_cmd("latest_value_cache", server, "cache", data);
    cmd.env("DATA_SUBJECT", "data.>")
        .env("REQUEST_SUBJECT", "latest.>");
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn latest_value_cache_answers_with_the_latest_value_per_key() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    // Two instances: every one must see every value (no queue group on the
    // data subject), while requests are shared (queue group).
    let _first = spawn_ready(cache_cmd(&server, data.path()));
    let _second = spawn_ready(cache_cmd(&server, data.path()));
    let client = server.client().await;

    let empty = request(&client, "latest.temperature", "").await;
    assert!(empty.payload.is_empty(), "{:?}", empty.payload);

    client
        .publish("data.temperature", "1".into())
        .await
        .unwrap();
    client
        .publish("data.temperature", vec![0xffu8, 0, 7].into())
        .await
        .unwrap();
    client
        .publish("data.probe.inner", r#"{"x": 1}"#.into())
        .await
        .unwrap();
    client.flush().await.unwrap();

    // Values are stored when they arrive; wait until a request sees them.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let reply = request(&client, "latest.probe.inner", "").await;
        if reply.payload.as_ref() == br#"{"x": 1}"# {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the value never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both instances have the values: every request gets the latest one.
    for _ in 0..20 {
        let reply = request(&client, "latest.temperature", "").await;
        assert_eq!(reply.payload.as_ref(), [0xff, 0, 7]);
        let reply = request(&client, "latest.probe.inner", "").await;
        assert_eq!(reply.payload.as_ref(), br#"{"x": 1}"#);
        let reply = request(&client, "latest.unknown", "").await;
        assert!(reply.payload.is_empty());
    }
    // Requests are in a queue group: each gets exactly one answer.
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply("latest.temperature", inbox, "".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    next(&mut replies).await;
    let second = tokio::time::timeout(Duration::from_millis(500), replies.next()).await;
    assert!(second.is_err(), "two instances answered one request");
}

#[test]
fn latest_value_cache_rejects_missing_or_malformed_config() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = service_cmd("latest_value_cache", &server, "cache", data.path());
    cmd.env("REQUEST_SUBJECT", "latest.>");
    assert_fails_naming(cmd, "DATA_SUBJECT");

    let mut cmd = service_cmd("latest_value_cache", &server, "cache", data.path());
    cmd.env("DATA_SUBJECT", "data.>");
    assert_fails_naming(cmd, "REQUEST_SUBJECT");

    let mut cmd = cache_cmd(&server, data.path());
    cmd.env("DATA_SUBJECT", "data.temperature");
    assert_fails_naming(cmd, "DATA_SUBJECT");

    let mut cmd = cache_cmd(&server, data.path());
    cmd.env("REQUEST_SUBJECT", "latest*>");
    assert_fails_naming(cmd, "REQUEST_SUBJECT");
}

// ---- requester --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn requester_forwards_replies_and_survives_failed_requests() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let client = server.client().await;
    let mut output = client.subscribe("out.values").await.unwrap();
    client.flush().await.unwrap();
    let mut cmd = service_cmd("requester", &server, "requester", data.path());
    cmd.env("REQUEST_SUBJECT", "in.values")
        .env("OUTPUT_SUBJECT", "out.values")
        .env("FREQUENCY", "50");
    let mut requester = spawn_ready(cmd);

    // Nobody answers yet: the requests fail, are counted, and it keeps going.
    requester.wait_for_stderr("request failed", WAIT);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let report = health(&client, "__telestion__/health").await;
        if report["errors"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "errors not counted: {report}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Now answer: the replies arrive on the output subject as they are.
    let mut requests = client.subscribe("in.values").await.unwrap();
    client.flush().await.unwrap();
    let responder = client.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(message) = requests.next().await {
            if let Some(reply) = message.reply {
                n += 1;
                let body = if n % 2 == 0 {
                    format!("reply {n}").into_bytes()
                } else {
                    vec![0xff, n as u8]
                };
                let _ = responder.publish(reply, body.into()).await;
            }
        }
    });
    let mut texts = 0;
    let mut binaries = 0;
    while texts < 2 || binaries < 2 {
        let message = next(&mut output).await;
        if message.payload.starts_with(b"reply ") {
            texts += 1;
        } else {
            assert_eq!(message.payload[0], 0xff, "{:?}", message.payload);
            binaries += 1;
        }
    }
    let mut requester = requester;
    assert!(
        requester.child.try_wait().unwrap().is_none(),
        "requester died"
    );
    requester.signal(libc::SIGTERM);
    assert_eq!(requester.wait_exit(WAIT), Some(0));
}

#[test]
fn requester_rejects_missing_or_malformed_config() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = service_cmd("requester", &server, "requester", data.path());
    cmd.env("OUTPUT_SUBJECT", "out");
    assert_fails_naming(cmd, "REQUEST_SUBJECT");

    let mut cmd = service_cmd("requester", &server, "requester", data.path());
    cmd.env("REQUEST_SUBJECT", "in");
    assert_fails_naming(cmd, "OUTPUT_SUBJECT");

    let mut cmd = service_cmd("requester", &server, "requester", data.path());
    cmd.env("REQUEST_SUBJECT", "in")
        .env("OUTPUT_SUBJECT", "out")
        .env("FREQUENCY", "-5");
    assert_fails_naming(cmd, "FREQUENCY");
}

// ---- config -----------------------------------------------------------------

fn config_cmd() -> std::process::Command {
    let mut cmd = example_cmd("config");
    // Nothing listens there: the sample must not need NATS.
    cmd.env(
        "NATS_URL",
        format!("nats://127.0.0.1:{}", support::free_port()),
    )
    .env("NATS_USER", "operator")
    .env("NATS_PASSWORD", "hunter2-secret")
    .env("SERVICE_NAME", "config-sample")
    .env("DATA_DIR", "/tmp/telestion-config-sample");
    cmd
}

#[test]
fn config_prints_standard_and_custom_config_without_nats() {
    let mut cmd = config_cmd();
    cmd.env("MY_STRING", "hello from env")
        .env("MY_NUMBER", "42.5");
    let output = support::run_with_timeout(cmd, WAIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for expected in [
        "SERVICE_NAME = config-sample",
        "DATA_DIR = /tmp/telestion-config-sample",
        "NATS_USER = operator",
        "MY_STRING = hello from env",
        "MY_NUMBER = 42.5",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"));

    // CLI arguments override the environment.
    let mut cmd = config_cmd();
    cmd.env("MY_STRING", "env").arg("--MY_STRING=cli");
    let output = support::run_with_timeout(cmd, WAIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(stdout.contains("MY_STRING = cli"), "{stdout}");
    assert!(stdout.contains("MY_NUMBER is not set"), "{stdout}");
}

#[test]
fn config_fails_clearly_on_missing_or_malformed_keys() {
    assert_fails_naming(config_cmd(), "MY_STRING");

    let mut cmd = config_cmd();
    cmd.env("MY_STRING", "x").env("MY_NUMBER", "forty-two");
    let stderr = assert_fails_naming(cmd, "MY_NUMBER");
    assert!(
        stderr.contains("forty-two") || stderr.contains("number") || stderr.contains("f64"),
        "{stderr}"
    );

    let mut cmd = example_cmd("config");
    cmd.env("MY_STRING", "x");
    assert_fails_naming(cmd, "DATA_DIR");
}

// ---- health tool ------------------------------------------------------------

fn health_tool(server: &NatsServer, data: &std::path::Path) -> (String, String) {
    let cmd = service_cmd("health", server, "health", data);
    let output = support::run_with_timeout(cmd, WAIT);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn health_tool_lists_every_running_instance() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();

    let (stdout, _) = health_tool(&server, data.path());
    assert!(stdout.contains("NAME"), "{stdout}");
    assert!(stdout.contains("0 instances answered"), "{stdout}");

    let mut instances = Vec::new();
    for id in ["ops-one", "ops-two"] {
        let mut cmd = service_cmd("standard_ops", &server, "standard_ops", data.path());
        cmd.env("SERVICE_ID", id);
        instances.push(spawn_ready(cmd));
    }
    let mut cmd = service_cmd("latest_value_cache", &server, "cache", data.path());
    cmd.env("DATA_SUBJECT", "data.>")
        .env("REQUEST_SUBJECT", "latest.>")
        .env("SERVICE_ID", "cache-one");
    instances.push(spawn_ready(cmd));
    // One rejected log message: one of the standard_ops instances counts it.
    let client = server.client().await;
    request(&client, "__telestion__/log/a/b", "").await;

    let (stdout, _) = health_tool(&server, data.path());
    // The instance table (the handler table follows it).
    let instances = stdout.split("answered within").next().unwrap();
    let rows: Vec<&str> = instances
        .lines()
        .filter(|l| l.contains("-one") || l.contains("-two"))
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    for (name, id) in [
        ("standard_ops", "ops-one"),
        ("standard_ops", "ops-two"),
        ("cache", "cache-one"),
    ] {
        let row = rows
            .iter()
            .find(|r| r.contains(id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{stdout}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], name, "{row}");
        assert_eq!(cells[1], id, "{row}");
        cells[2].parse::<u64>().expect("errors is a number");
        assert_eq!(cells[4], "ms", "{row}");
        cells[3].parse::<f64>().expect("latency is a number");
    }
    let errors: u64 = rows
        .iter()
        .map(|r| r.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(errors, 1, "{stdout}");
    assert!(stdout.contains("3 instances answered"), "{stdout}");
    assert!(
        !stdout.lines().any(|l| l.starts_with("health ")),
        "the tool listed itself:\n{stdout}"
    );
}

#[test]
fn health_tool_rejects_malformed_wait() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = service_cmd("health", &server, "health", data.path());
    cmd.env("HEALTH_WAIT_MS", "soon");
    assert_fails_naming(cmd, "HEALTH_WAIT_MS");
}

// ---- under generated permissions -------------------------------------------

/// The samples and examples as a secured deployment runs them: each as its
/// own NATS user with exactly the permissions it prints for
/// `--nats-permissions`. Everything they do keeps working, and the server
/// refuses nothing (its log has no permissions violation). A client with
/// every right drives them.
#[tokio::test(flavor = "multi_thread")]
async fn samples_work_under_their_generated_permissions() {
    let data = tempfile::tempdir().unwrap();
    let publisher_env = [
        ("DATA_SUBJECT", "data.demo.temperature"),
        ("FREQUENCY", "100"),
    ];
    let cache_env = [
        ("DATA_SUBJECT", "data.demo.>"),
        ("REQUEST_SUBJECT", "latest.demo.>"),
    ];
    let requester_env = [
        ("REQUEST_SUBJECT", "latest.demo.temperature"),
        ("OUTPUT_SUBJECT", "out.temperature"),
        ("FREQUENCY", "200"),
    ];
    let samples: [(&str, &[(&str, &str)]); 5] = [
        ("publisher", &publisher_env),
        ("latest_value_cache", &cache_env),
        ("requester", &requester_env),
        ("thermal_api", &[]),
        ("quickstart", &[]),
    ];
    let permissions: Vec<String> = samples
        .iter()
        .map(|(name, env)| support::service_permissions(&binary(name), name, env))
        .collect();
    let mut users: Vec<(&str, &str, Option<&str>)> = samples
        .iter()
        .zip(&permissions)
        .map(|((name, _), permissions)| (*name, "pw", Some(permissions.as_str())))
        .collect();
    users.push(("probe", "pw-probe", None));
    let server = NatsServer::start_with(
        support::ServerOptions::new().config(support::authorization(&users)),
    );
    let mut processes = Vec::new();
    for (name, env) in samples {
        let mut cmd = service_cmd(name, &server, name, data.path());
        cmd.env("NATS_USER", name).env("NATS_PASSWORD", "pw");
        for (key, value) in env {
            cmd.env(key, value);
        }
        processes.push(spawn_ready(cmd));
    }
    let client =
        async_nats::ConnectOptions::with_user_and_password("probe".into(), "pw-probe".into())
            .connect(server.url())
            .await
            .unwrap();
    // publisher -> latest_value_cache <- requester -> out.temperature.
    let mut out = client.subscribe("out.temperature").await.unwrap();
    let forwarded = next(&mut out).await;
    let reading: Value = serde_json::from_slice(&forwarded.payload).unwrap();
    assert!(reading["value"].is_f64(), "{reading}");
    // thermal_api answers, quickstart answers.
    let ack = request(&client, "thermal.heater.set", r#"{"power_percent": 50}"#).await;
    let ack: Value = serde_json::from_slice(&ack.payload).unwrap();
    assert_eq!(ack["accepted"], true, "{ack}");
    let fahrenheit = request(&client, "sensors.fahrenheit", r#"{"celsius": 20}"#).await;
    assert_eq!(&fahrenheit.payload[..], b"68.0");
    // Each answers health (the probe asks; every instance replies once).
    for (name, _) in samples {
        let report = health(&client, &format!("$SRV.PING.{name}")).await;
        assert_eq!(report["name"], name, "{report}");
    }
    let log = server.log();
    assert!(
        !log.contains("Violation"),
        "a sample was refused by the server:\n{log}"
    );
    drop(processes);
}
