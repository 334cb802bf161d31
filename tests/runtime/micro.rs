//! Discovery (the NATS micro protocol, ADR-32): `$SRV.PING`, `$SRV.INFO`
//! and `$SRV.STATS` in all three subject forms, every reply valid against
//! the protocol's JSON schemas (copied into `micro_schemas/`), every
//! instance answering, counts after requests, plain messages and failures,
//! durable endpoints with their consumer's counts, requests without a
//! reply subject ignored, the version from the macro, config and default,
//! and a foreign client (nats-py's micro types) discovering the service.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use telestion::{Durable, Route, Service, StreamSpec};

use crate::support::{self, NatsServer};
use crate::{request, settle, start_service};

const NAME: &str = "micro_fixture";
const VERSION: &str = "1.4.2-rc.1";

async fn echo(body: String) -> String {
    body
}

async fn fail() -> Result<(), String> {
    Err("deliberate failure".into())
}

async fn noop() {}

/// A service with three subscriptions (a queue-group echo, a failing
/// handler, a broadcast one) and a timer.
async fn fixture(url: &str, id: &str) -> Service {
    let service = start_service(
        url,
        NAME,
        &[("SERVICE_ID", id), ("SERVICE_VERSION", VERSION)],
    )
    .await;
    for route in [
        Route::new("micro.echo", echo).name("echo"),
        Route::new("micro.fail", fail).name("fail"),
        Route::new("micro.all", noop).name("everyone").broadcast(),
        Route::every(Duration::from_secs(3600), noop).name("tick"),
    ] {
        service.subscribe(route).await.unwrap();
    }
    settle(&service).await;
    service
}

/// Validates `reply` against the protocol's schema for `kind` (`ping`,
/// `info`, `stats`).
fn assert_schema_valid(kind: &str, reply: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("runtime/micro_schemas")
        .join(format!("{kind}_response.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(reply)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{kind} reply does not match the schema: {errors:?}\n{reply}"
    );
}

async fn ask(client: &async_nats::Client, subject: &str) -> Value {
    let reply = request(client, subject, "").await;
    serde_json::from_slice(&reply.payload)
        .unwrap_or_else(|e| panic!("{subject}: not JSON ({e}): {:?}", reply.payload))
}

/// Asks `subject` until the reply satisfies `done` (at most 10 s).
async fn ask_until(
    client: &async_nats::Client,
    subject: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = ask(client, subject).await;
        if done(&reply) {
            return reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{subject}: the expected counts never came: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn endpoint<'a>(reply: &'a Value, name: &str) -> &'a Value {
    reply["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no endpoint {name}: {reply}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_info_and_stats_answer_on_all_three_subjects_with_valid_json() {
    let server = NatsServer::start();
    let _service = fixture(&server.url(), "m-1").await;
    let client = server.client().await;
    for verb in ["PING", "INFO", "STATS"] {
        let kind = verb.to_ascii_lowercase();
        for subject in [
            format!("$SRV.{verb}"),
            format!("$SRV.{verb}.{NAME}"),
            format!("$SRV.{verb}.{NAME}.m-1"),
        ] {
            let reply = ask(&client, &subject).await;
            assert_schema_valid(&kind, &reply);
            assert_eq!(
                reply["type"],
                format!("io.nats.micro.v1.{kind}_response"),
                "{subject}"
            );
            assert_eq!(reply["name"], NAME, "{subject}");
            assert_eq!(reply["id"], "m-1", "{subject}");
            assert_eq!(reply["version"], VERSION, "{subject}");
            let metadata = &reply["metadata"];
            assert_eq!(metadata["telestion.version"], env!("CARGO_PKG_VERSION"));
            assert_eq!(metadata["telestion.timers"], "tick", "{reply}");
        }
    }
    // Another name or another id: nobody answers.
    for subject in ["$SRV.PING.other", "$SRV.INFO.micro_fixture.m-2"] {
        let answer =
            support::try_request_within(&client, subject, "", Duration::from_millis(500)).await;
        assert!(answer.is_err(), "{subject} was answered: {answer:?}");
    }

    let info = ask(&client, "$SRV.INFO").await;
    assert_eq!(info["description"], format!("Telestion service {NAME}"));
    let endpoints: Vec<(&str, &str, &str)> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["subject"].as_str().unwrap(),
                e["queue_group"].as_str().unwrap(),
            )
        })
        .collect();
    // The timer is no endpoint (it has no subject).
    assert_eq!(
        endpoints,
        [
            ("echo", "micro.echo", NAME),
            ("fail", "micro.fail", NAME),
            ("everyone", "micro.all", ""),
        ]
    );
    let echo = endpoint(&info, "echo");
    assert_eq!(echo["metadata"]["telestion.kind"], "subscription");
    assert_eq!(echo["metadata"]["telestion.handler"], "echo");
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_count_requests_plain_messages_and_failures() {
    let server = NatsServer::start();
    let _service = fixture(&server.url(), "m-1").await;
    let client = server.client().await;
    let fresh = ask(&client, "$SRV.STATS").await;
    assert_eq!(endpoint(&fresh, "echo")["num_requests"], 0);
    assert_eq!(endpoint(&fresh, "fail")["last_error"], "");
    let started = fresh["started"].as_str().unwrap();
    humantime::parse_rfc3339(started).expect("started is RFC 3339");

    for i in 0..5 {
        request(&client, "micro.echo", i.to_string()).await;
    }
    // Messages without a reply subject count too.
    for _ in 0..2 {
        client.publish("micro.echo", "x".into()).await.unwrap();
    }
    for _ in 0..3 {
        request(&client, "micro.fail", "").await;
    }
    client.flush().await.unwrap();
    let stats = ask_until(&client, "$SRV.STATS.micro_fixture.m-1", |stats| {
        endpoint(stats, "echo")["num_requests"] == 7
    })
    .await;
    assert_schema_valid("stats", &stats);
    assert_eq!(stats["started"], started, "started does not change");
    let echo = endpoint(&stats, "echo");
    assert_eq!(echo["num_errors"], 0, "{echo}");
    let fail = endpoint(&stats, "fail");
    assert_eq!(fail["num_requests"], 3, "{fail}");
    assert_eq!(fail["num_errors"], 3, "{fail}");
    assert!(
        fail["last_error"]
            .as_str()
            .unwrap()
            .contains("deliberate failure"),
        "{fail}"
    );
    for e in [echo, fail] {
        let total = e["processing_time"].as_u64().unwrap();
        let count = e["num_requests"].as_u64().unwrap();
        assert!(total > 0, "{e}");
        assert_eq!(
            e["average_processing_time"].as_u64().unwrap(),
            total / count
        );
        assert_eq!(e["data"], Value::Null, "{e}");
    }
    assert_eq!(endpoint(&stats, "everyone")["num_requests"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_instance_answers_and_the_id_form_picks_one() {
    let server = NatsServer::start();
    let _a = fixture(&server.url(), "m-a").await;
    let _b = fixture(&server.url(), "m-b").await;
    let client = server.client().await;
    let collect = |subject: &'static str| {
        let client = client.clone();
        async move {
            let inbox = client.new_inbox();
            let mut replies = client.subscribe(inbox.clone()).await.unwrap();
            client
                .publish_with_reply(subject, inbox, "".into())
                .await
                .unwrap();
            client.flush().await.unwrap();
            let mut ids = HashSet::new();
            while let Ok(Some(reply)) =
                tokio::time::timeout(Duration::from_millis(700), replies.next()).await
            {
                let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
                ids.insert(reply["id"].as_str().unwrap().to_owned());
            }
            ids
        }
    };
    let both: HashSet<String> = ["m-a".to_owned(), "m-b".to_owned()].into();
    assert_eq!(collect("$SRV.PING").await, both);
    assert_eq!(collect("$SRV.STATS.micro_fixture").await, both);
    assert_eq!(
        collect("$SRV.INFO.micro_fixture.m-b").await,
        ["m-b".to_owned()].into()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_a_reply_subject_are_ignored() {
    let server = NatsServer::start();
    let service = fixture(&server.url(), "m-1").await;
    let client = server.client().await;
    let mut seen = client.subscribe("$SRV.>").await.unwrap();
    for subject in [
        "$SRV.PING",
        "$SRV.INFO.micro_fixture",
        "$SRV.STATS.micro_fixture.m-1",
    ] {
        client.publish(subject, "{}".into()).await.unwrap();
    }
    client
        .publish("$SRV.PING", "garbage \u{0}".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    // Our own subscription saw the four; the service answered none (a
    // reply would need a reply subject) and still answers requests.
    for _ in 0..4 {
        tokio::time::timeout(Duration::from_secs(5), seen.next())
            .await
            .expect("the published discovery requests");
    }
    let ping = ask(&client, "$SRV.PING").await;
    assert_eq!(ping["id"], "m-1");
    assert!(!service.is_stopping());
    assert_eq!(service.health().errors_total, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn durable_endpoints_carry_their_consumer_counts() {
    let server = NatsServer::start_jetstream();
    let service = start_service(&server.url(), "micro_durable", &[]).await;
    service
        .declare_stream(StreamSpec::new("MICRO_JOBS").subjects(["micro.jobs.>"]))
        .await
        .unwrap();
    service
        .subscribe(
            Route::new("micro.jobs.>", noop)
                .name("work")
                .durable(Durable::new()),
        )
        .await
        .unwrap();
    settle(&service).await;
    let client = server.client().await;
    let jetstream = async_nats::jetstream::new(client.clone());
    for i in 0..3 {
        jetstream
            .publish(format!("micro.jobs.{i}"), "job".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let stats = ask_until(&client, "$SRV.STATS.micro_durable", |stats| {
        endpoint(stats, "work")["num_requests"] == 3
    })
    .await;
    assert_schema_valid("stats", &stats);
    // The service's version defaults to 0.0.0 without the macro or
    // SERVICE_VERSION.
    assert_eq!(stats["version"], "0.0.0");
    let work = endpoint(&stats, "work");
    for key in ["pending", "ack_pending", "redelivered", "dead_lettered"] {
        assert!(work["data"][key].is_u64(), "{key}: {work}");
    }
    let info = ask(&client, "$SRV.INFO.micro_durable").await;
    assert_schema_valid("info", &info);
    let work = endpoint(&info, "work");
    assert_eq!(work["subject"], "micro.jobs.>");
    assert_eq!(work["metadata"]["telestion.kind"], "durable");
    assert_eq!(work["metadata"]["telestion.stream"], "MICRO_JOBS");
    assert_eq!(work["metadata"]["telestion.consumer"], "micro_durable_work");
}

#[tokio::test(flavor = "multi_thread")]
async fn version_comes_from_the_macro_and_a_bad_one_fails_the_start() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let macro_service = || {
        let mut cmd = support::service_command(
            env!("CARGO_BIN_EXE_e2e_macro_service"),
            &server,
            "macro_svc",
            data.path(),
        );
        cmd.env("ECHO_SUBJECT", "e2e.echo.configured")
            .env("FACTOR", "3");
        cmd
    };
    let _proc = support::spawn_ready(macro_service());
    let client = server.client().await;
    let info = ask(&client, "$SRV.INFO.macro_svc").await;
    assert_schema_valid("info", &info);
    // #[telestion::service] passes the fixture crate's version.
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    // Handler names with `::` become valid endpoint names; metadata keeps
    // the name as written.
    let endpoints = info["endpoints"].as_array().unwrap();
    assert!(endpoints.len() > 3, "{info}");
    assert!(
        endpoints.iter().any(|e| e["metadata"]["telestion.handler"]
            .as_str()
            .unwrap()
            .contains("::")),
        "{info}"
    );

    let mut cmd = macro_service();
    cmd.env("SERVICE_VERSION", "1.2");
    let stderr = support::assert_start_fails_naming(cmd, "SERVICE_VERSION");
    assert!(stderr.contains("semantic version"), "{stderr}");
}

/// The python of a virtual environment with nats-py, installed by
/// `scripts/ensure-nats-py.sh` when missing.
fn nats_py_python() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ensure-nats-py.sh");
    let output = support::run_with_timeout(
        {
            let mut cmd = Command::new("bash");
            cmd.arg(script);
            cmd
        },
        Duration::from_secs(300),
    );
    assert!(
        output.status.success(),
        "cannot install nats-py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .expect("the script prints the python path")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_py_discovers_every_instance() {
    let python = tokio::task::spawn_blocking(nats_py_python).await.unwrap();
    let server = NatsServer::start();
    let _a = fixture(&server.url(), "py-a").await;
    let _b = fixture(&server.url(), "py-b").await;
    let client = server.client().await;
    for _ in 0..4 {
        request(&client, "micro.echo", "hi").await;
    }
    request(&client, "micro.fail", "").await;

    let mut cmd = Command::new(python);
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/micro_client.py"))
        .arg(server.url())
        .arg(NAME);
    let output = tokio::task::spawn_blocking(move || {
        support::run_with_timeout(cmd, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "nats-py client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let found: Value = serde_json::from_str(stdout.trim()).unwrap();
    let instances = found["instances"].as_object().unwrap();
    assert_eq!(
        instances.keys().collect::<Vec<_>>(),
        ["py-a", "py-b"],
        "{found}"
    );
    let mut requests = BTreeMap::new();
    for (id, instance) in instances {
        assert_eq!(instance["name"], NAME);
        assert_eq!(instance["version"], VERSION);
        assert_eq!(instance["stats_type"], "io.nats.micro.v1.stats_response");
        assert_eq!(instance["endpoints"]["echo"], "micro.echo", "{instance}");
        requests.insert(id.clone(), instance["requests"]["echo"].as_u64().unwrap());
        assert_eq!(instance["requests"]["everyone"], 0);
    }
    // The queue group shared the four requests.
    assert_eq!(requests.values().sum::<u64>(), 4, "{found}");
    let errors: u64 = instances
        .values()
        .map(|i| i["errors"]["fail"].as_u64().unwrap())
        .sum();
    assert_eq!(errors, 1, "{found}");
}
