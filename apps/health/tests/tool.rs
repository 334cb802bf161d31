//! The `health` tool against a real nats-server and in-process services:
//! the per-instance and per-handler tables, `--json`, `--service`,
//! `--expect` and `--check` exit codes, `--watch` refreshing, and a bad
//! option failing clearly.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use telestion::Route;
use telestion_test::{
    NatsServer, Process, TestService, request, run_with_timeout, service_command, service_config,
};

const WAIT: Duration = Duration::from_secs(30);

async fn echo(body: String) -> String {
    body
}

async fn fail() -> Result<(), String> {
    Err("sensor offline".into())
}

/// `parser` (id parser-1: an echo handler and a failing one, 3 messages
/// and 2 failures) and `archive` (id archive-1: one quiet handler).
async fn services(server: &NatsServer) -> (TestService, TestService) {
    let data = std::env::temp_dir();
    let parser = TestService::start_with(
        service_config(
            &server.url(),
            "parser",
            &data,
            &[("SERVICE_ID", "parser-1")],
        ),
        vec![
            Route::new("tool.echo", echo).name("echo"),
            Route::new("tool.fail", fail).name("fail"),
        ],
    )
    .await
    .unwrap();
    let archive = TestService::start_with(
        service_config(
            &server.url(),
            "archive",
            &data,
            &[("SERVICE_ID", "archive-1"), ("SERVICE_VERSION", "2.0.1")],
        ),
        vec![Route::new("tool.archive", echo).name("store")],
    )
    .await
    .unwrap();
    let client = server.client().await;
    for i in 0..3 {
        request(&client, "tool.echo", i.to_string()).await;
    }
    for _ in 0..2 {
        request(&client, "tool.fail", "").await;
    }
    (parser, archive)
}

fn tool(server: &NatsServer, args: &[&str]) -> Command {
    let data = std::env::temp_dir();
    let mut cmd = service_command(env!("CARGO_BIN_EXE_health"), server, "health", &data);
    cmd.env("HEALTH_WAIT_MS", "300").args(args);
    cmd
}

async fn run(server: &NatsServer, args: &[&str]) -> (Option<i32>, String, String) {
    let cmd = tool(server, args);
    let output: Output = tokio::task::spawn_blocking(move || run_with_timeout(cmd, WAIT))
        .await
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn cells(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_list_every_instance_and_its_handlers() {
    let server = NatsServer::start();
    let (_parser, _archive) = services(&server).await;
    let (code, stdout, stderr) = run(&server, &[]).await;
    assert_eq!(
        code,
        Some(0),
        "recent errors alone do not fail a plain run:\n{stdout}\n{stderr}"
    );
    let (instances, handlers) = stdout
        .split_once("answered within 300 ms")
        .unwrap_or_else(|| panic!("no instance table:\n{stdout}"));
    assert!(instances.contains("2 instances"), "{stdout}");
    let row = |table: &str, start: &[&str]| -> Vec<String> {
        table
            .lines()
            .map(cells)
            .find(|c| c.starts_with(start))
            .unwrap_or_else(|| panic!("no row {start:?}:\n{stdout}"))
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    // NAME INSTANCE ERRORS LATENCY ms TOTAL UPTIME VERSION
    let parser = row(instances, &["parser", "parser-1"]);
    assert_eq!(parser[2], "2", "{parser:?}");
    parser[3].parse::<f64>().expect("latency is a number");
    assert_eq!(parser[4], "ms");
    assert_eq!(parser[5], "2", "{parser:?}");
    assert!(parser[6].ends_with('s'), "{parser:?}");
    assert_eq!(parser[7], "0.0.0");
    let archive = row(instances, &["archive", "archive-1"]);
    assert_eq!((archive[2].as_str(), archive[7].as_str()), ("0", "2.0.1"));

    // NAME INSTANCE HANDLER SUBJECT MESSAGES ERRORS AVG ms PENDING REDELIVERED LAST ERROR
    assert!(
        handlers.contains("HANDLER") && handlers.contains("LAST ERROR"),
        "{stdout}"
    );
    let echo = row(handlers, &["parser", "parser-1", "echo"]);
    assert_eq!(&echo[3..6], ["tool.echo", "3", "0"], "{echo:?}");
    assert_eq!(&echo[8..], ["-", "-", "-"], "{echo:?}");
    let fail = row(handlers, &["parser", "parser-1", "fail"]);
    assert_eq!(&fail[3..6], ["tool.fail", "2", "2"], "{fail:?}");
    assert!(fail.join(" ").ends_with("sensor offline"), "{fail:?}");
    let store = row(handlers, &["archive", "archive-1", "store"]);
    assert_eq!(&store[3..6], ["tool.archive", "0", "0"], "{store:?}");
    assert!(
        !stdout.lines().any(|l| l.starts_with("health ")),
        "listed itself:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_output_filtered_by_service_name() {
    let server = NatsServer::start();
    let (_parser, _archive) = services(&server).await;
    let (code, stdout, stderr) = run(&server, &["--json", "--service", "parser"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let round: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}"));
    let instances = round["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{round}");
    let parser = &instances[0];
    assert_eq!(
        (&parser["name"], &parser["id"]),
        (&"parser".into(), &"parser-1".into())
    );
    assert_eq!(parser["errors"], 2);
    assert_eq!(parser["errors_total"], 2);
    assert_eq!(parser["version"], "0.0.0");
    let handlers = parser["handlers"].as_array().unwrap();
    let fail = handlers.iter().find(|h| h["name"] == "fail").unwrap();
    assert_eq!(
        (fail["messages"].as_u64(), fail["errors"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(fail["last_error"], "sensor offline");
    assert!(fail["average_ns"].as_u64().unwrap() > 0);
    assert_eq!(round["ok"], true);
    assert_eq!(round["missing"], serde_json::json!([]));
    assert_eq!(round["wait_ms"], 300);

    // Two names, comma separated.
    let (_, stdout, _) = run(&server, &["--json", "--service=parser,archive"]).await;
    let round: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(round["instances"].as_array().unwrap().len(), 2, "{round}");
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_and_check_set_the_exit_code() {
    let server = NatsServer::start();
    let (_parser, _archive) = services(&server).await;
    // Every expected service answers without recent errors: 0.
    let (code, stdout, _) = run(&server, &["--expect", "archive"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    // One is missing: 2, named.
    let (code, stdout, _) = run(&server, &["--expect", "archive,ghost"]).await;
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stdout.contains("MISSING: no instance of ghost answered"),
        "{stdout}"
    );
    // One reports recent errors: 3, named.
    let (code, stdout, _) = run(&server, &["--expect", "parser,archive"]).await;
    assert_eq!(code, Some(3), "{stdout}");
    assert!(
        stdout.contains("ERRORS: parser parser-1 reports 2 recent errors"),
        "{stdout}"
    );
    // Missing wins over errors.
    let (code, _, _) = run(&server, &["--expect", "parser,ghost"]).await;
    assert_eq!(code, Some(2));
    // --check: every listed instance; the filter narrows it.
    let (code, _, _) = run(&server, &["--check"]).await;
    assert_eq!(code, Some(3));
    let (code, _, _) = run(&server, &["--check", "--service", "archive"]).await;
    assert_eq!(code, Some(0));
    // JSON says the same.
    let (code, stdout, _) = run(&server, &["--json", "--expect", "ghost"]).await;
    assert_eq!(code, Some(2));
    let round: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(round["missing"], serde_json::json!(["ghost"]));
    assert_eq!(round["ok"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_refreshes_until_sigterm() {
    let server = NatsServer::start();
    let (_parser, _archive) = services(&server).await;
    let client = server.client().await;
    let mut proc = Process::spawn(tool(&server, &["--watch=0.3", "--service", "parser"]));
    let deadline = Instant::now() + WAIT;
    // The first round shows 3 echo messages; more come in between.
    while proc.stdout().matches("health at ").count() < 1 {
        assert!(Instant::now() < deadline, "no round:\n{}", proc.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..4 {
        request(&client, "tool.echo", "more").await;
    }
    let rounds_before = proc.stdout().matches("health at ").count();
    while proc.stdout().matches("health at ").count() < rounds_before + 2 {
        assert!(Instant::now() < deadline, "no refresh:\n{}", proc.stdout());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proc.signal(15);
    let code = tokio::task::block_in_place(|| proc.wait_exit(WAIT));
    let stdout = proc.stdout();
    assert_eq!(code, Some(0), "{stdout}\n{}", proc.stderr());
    assert!(stdout.contains("every 0.3 s"), "{stdout}");
    let echo_counts: Vec<&str> = stdout
        .lines()
        .map(cells)
        .filter(|c| c.get(2) == Some(&"echo"))
        .map(|c| c[4])
        .collect();
    assert!(echo_counts.len() >= 3, "{stdout}");
    assert_eq!(echo_counts.first(), Some(&"3"), "{stdout}");
    assert_eq!(
        echo_counts.last(),
        Some(&"7"),
        "the refresh shows new counts:\n{stdout}"
    );
    assert!(!stdout.contains("archive"), "the filter holds:\n{stdout}");
    // Not a terminal: no screen control codes.
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_options_fail_naming_the_key() {
    let server = NatsServer::start();
    for (args, key) in [
        (&["--watch=soon"][..], "WATCH"),
        (&["--json=maybe"][..], "JSON"),
        (&["--watch=0"][..], "WATCH"),
        (&["--watch=2h"][..], "WATCH"),
        (&["--HEALTH_WAIT_MS=0"][..], "HEALTH_WAIT_MS"),
        (&["--HEALTH_WAIT_MS=0ms"][..], "HEALTH_WAIT_MS"),
        (&["--HEALTH_WAIT_MS=999999999999999h"][..], "HEALTH_WAIT_MS"),
    ] {
        let (code, stdout, stderr) = run(&server, args).await;
        assert_eq!(code, Some(1), "{args:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(key), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn durable_handlers_show_pending_and_redelivered() {
    let server = NatsServer::start_jetstream();
    let data = tempfile::tempdir().unwrap();
    let service = telestion_test::start_service(
        &server.url(),
        "executor",
        data.path(),
        &[("SERVICE_ID", "executor-1")],
    )
    .await;
    service
        .declare_stream(telestion::StreamSpec::new("TOOL_JOBS").subjects(["tool.jobs.>"]))
        .await
        .unwrap();
    service
        .subscribe(
            Route::new("tool.jobs.>", echo)
                .name("work")
                .durable(telestion::Durable::new()),
        )
        .await
        .unwrap();
    let client = server.client().await;
    let jetstream = async_nats::jetstream::new(client.clone());
    for i in 0..2 {
        jetstream
            .publish(format!("tool.jobs.{i}"), "job".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, stdout, stderr) = run(&server, &["--json", "--service", "executor"]).await;
        assert_eq!(code, Some(0), "{stderr}");
        let round: Value = serde_json::from_str(stdout.trim()).unwrap();
        let work = &round["instances"][0]["handlers"][0];
        if work["messages"] == 2 {
            assert_eq!(work["name"], "work", "{round}");
            assert!(work["pending"].is_u64(), "{round}");
            assert!(work["redelivered"].is_u64(), "{round}");
            break;
        }
        assert!(Instant::now() < deadline, "never counted 2 jobs: {round}");
    }
    let (_, stdout, _) = run(&server, &["--service", "executor"]).await;
    let row: Vec<&str> = stdout
        .lines()
        .map(cells)
        .find(|c| c.get(2) == Some(&"work"))
        .unwrap_or_else(|| panic!("no handler row:\n{stdout}"));
    // MESSAGES ERRORS AVG ms PENDING REDELIVERED LAST-ERROR
    assert_eq!(&row[3..6], ["tool.jobs.>", "2", "0"], "{row:?}");
    row[8].parse::<u64>().expect("pending is a number");
    row[9].parse::<u64>().expect("redelivered is a number");
}

/// The python of a virtual environment with nats-py, installed by
/// `scripts/ensure-nats-py.sh` when missing.
fn nats_py_python() -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/ensure-nats-py.sh"
    ));
    let output = run_with_timeout(cmd, Duration::from_secs(300));
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

/// A micro service of another library (nats-py) is listed from its
/// `$SRV.STATS` reply alone: `-` for the health it does not answer.
#[tokio::test(flavor = "multi_thread")]
async fn lists_a_micro_service_of_another_library() {
    let python = tokio::task::spawn_blocking(nats_py_python).await.unwrap();
    let server = NatsServer::start();
    let mut cmd = Command::new(python);
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py_service.py"))
        .arg(server.url());
    let py = Process::spawn(cmd);
    let deadline = Instant::now() + WAIT;
    while !py.stdout().contains("ready") {
        assert!(
            Instant::now() < deadline,
            "nats-py service not ready:\n{}",
            py.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = server.client().await;
    request(&client, "py.greet", "").await;

    let (code, stdout, stderr) = run(&server, &["--expect", "pyservice"]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let instance = stdout
        .lines()
        .map(cells)
        .find(|c| c.first() == Some(&"pyservice"))
        .unwrap_or_else(|| panic!("no pyservice row:\n{stdout}"));
    // NAME INSTANCE ERRORS LATENCY ms TOTAL UPTIME VERSION
    assert_eq!(instance[2], "-", "{instance:?}");
    assert_eq!((instance[5], instance[6], instance[7]), ("-", "-", "3.1.0"));
    let greet = stdout
        .lines()
        .map(cells)
        .find(|c| c.first() == Some(&"pyservice") && c.get(2) == Some(&"greet"))
        .unwrap_or_else(|| panic!("no greet row:\n{stdout}"));
    assert_eq!(&greet[3..6], ["py.greet", "1", "0"], "{greet:?}");
}

/// `--watch --json`: one JSON object per line, one line per round.
#[tokio::test(flavor = "multi_thread")]
async fn watch_with_json_prints_one_object_per_round() {
    let server = NatsServer::start();
    let (_parser, _archive) = services(&server).await;
    let proc = Process::spawn(tool(&server, &["--watch=0.2", "--json"]));
    let deadline = Instant::now() + WAIT;
    // Three lines started: the first two are complete.
    while proc.stdout().lines().count() < 3 {
        assert!(
            Instant::now() < deadline,
            "no second round:\n{}",
            proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proc.signal(15);
    let stdout = proc.stdout();
    for line in stdout.lines().take(2) {
        let round: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert_eq!(round["instances"].as_array().unwrap().len(), 2, "{round}");
    }
}
