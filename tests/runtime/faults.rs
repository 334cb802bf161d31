//! Faults around the service process: the NATS server gone at shutdown,
//! signals during start-up, a bad `SHUTDOWN_TIMEOUT`, a closed stderr or
//! stdout, a handler panic in JSON logs, SIGHUP, and `--help`. The process
//! under test is the `e2e_macro_service` fixture (the `health` tool for the
//! closed stdout). Each test's doc comment names the old behaviour it
//! fails on.

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::task::block_in_place;

use crate::support::{self, NatsServer, Process, Stream, WAIT};

/// The fixture configured for the server at `url`, with the keys its
/// handlers need (`ECHO_SUBJECT`, `FACTOR`).
pub(crate) fn fixture(url: &str, name: &str, data: &Path) -> Command {
    let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_e2e_macro_service"));
    cmd.env("NATS_URL", url)
        .env("SERVICE_NAME", name)
        .env("DATA_DIR", data)
        .env("ECHO_SUBJECT", "e2e.echo.faults")
        .env("FACTOR", "2");
    cmd
}

/// A TCP port that accepts connections and then never says anything: a
/// NATS client connecting there waits for the server's `INFO`.
fn silent_server() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("no free loopback port");
    listener.set_nonblocking(true).unwrap();
    let url = format!("nats://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// The next connection to `listener` (non-blocking).
///
/// # Panics
///
/// When none comes within `timeout`.
fn accept_within(listener: &TcpListener, timeout: Duration) -> TcpStream {
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((stream, _)) => return stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("no connection within {timeout:?}: {e}"),
        }
    }
}

/// Point 4. SIGTERM while the NATS server is unreachable: the drain cannot
/// get anything confirmed, so it stops waiting after `SHUTDOWN_TIMEOUT`,
/// warns about the publishes and replies it could not flush, and exits 3
/// (`exit_code::UNCONFIRMED`: messages may be lost; issue 23, point 8).
///
/// Old behaviour: the drain waited for the server without a bound (each
/// subscription's drain and the final flush), so the process hung until
/// it was killed; later it exited 0 although nothing was confirmed.
#[test]
fn sigterm_while_the_server_is_unreachable_exits_3_with_a_warning() {
    let mut server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = fixture(&server.url(), "unreachable", data.path());
    cmd.env("SHUTDOWN_TIMEOUT", "2");
    let mut proc = support::spawn_ready(cmd);
    server.stop();
    proc.wait_for_stderr("disconnected from NATS", WAIT);

    proc.signal(libc::SIGTERM);
    // 2 × SHUTDOWN_TIMEOUT at most, plus generous slack.
    let code = proc.wait_exit(Duration::from_secs(15));
    let stderr = proc.stderr();
    assert_eq!(
        code,
        Some(telestion::exit_code::UNCONFIRMED.into()),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("pending publishes and replies"),
        "no warning about what could not be flushed; stderr:\n{stderr}"
    );
}

/// Point 4. The server dies while a drain waits for a handler holding a
/// message: the handler still finishes that message, and the process
/// exits 3 (nothing after that could be confirmed; issue 23, point 8).
///
/// Old behaviour: once the server was gone, the drain waited for it
/// forever (hang); later it exited 0.
#[tokio::test(flavor = "multi_thread")]
async fn server_dying_during_a_drain_still_finishes_the_held_message_and_exits_3() {
    let mut server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = fixture(&server.url(), "drain-dies", data.path());
    cmd.env("SHUTDOWN_TIMEOUT", "3").env("SLOW_MS", "2000");
    let mut proc = block_in_place(|| support::spawn_ready(cmd));
    let client = server.client().await;
    client
        .publish("e2e.fault.slow", "held-1".into())
        .await
        .unwrap();
    client.flush().await.unwrap();

    let (code, stderr) = block_in_place(|| {
        proc.wait_for_stderr("slow handler started", WAIT);
        proc.signal(libc::SIGTERM);
        proc.wait_for_stderr("shutting down", WAIT);
        server.stop();
        // The handler needs 2 s, the drain at most 2 × SHUTDOWN_TIMEOUT.
        let code = proc.wait_exit(Duration::from_secs(20));
        (code, proc.stderr())
    });
    assert_eq!(
        code,
        Some(telestion::exit_code::UNCONFIRMED.into()),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("slow handler finished") && l.contains("held-1")),
        "the held message was not finished; stderr:\n{stderr}"
    );
}

/// Point 4. SIGTERM while the first connection is still being made (the
/// server accepted the TCP connection but never answers): the start ends
/// at once with exit 1 and a message naming the signal.
///
/// Old behaviour: signals were only looked at once the service served, so
/// the process went on connecting and exited only when the connection
/// attempt failed on its own, with the connection error.
#[test]
fn sigterm_while_connecting_ends_the_start_with_exit_1() {
    let (listener, url) = silent_server();
    let data = tempfile::tempdir().unwrap();
    let mut proc = Process::spawn(fixture(&url, "connecting", data.path()));
    // Connected at the TCP level: the signal handlers are installed and the
    // client waits for the server's INFO.
    let _connection = accept_within(&listener, WAIT);

    proc.signal(libc::SIGTERM);
    // The client's own connection timeout is 5 s; the signal must win.
    let code = proc.wait_exit(Duration::from_secs(4));
    let stderr = proc.stderr();
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("error: ") && stderr.contains("SIGTERM"),
        "no error line naming the signal; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
}

/// Point 4. Two signals while the start-up code (the body of `main`) still
/// runs: the first asks for a stop, the second exits at once with 130.
///
/// Old behaviour: signals during start-up code were held until serving
/// began (and the second was merged into the first), so the process sat
/// out the whole start-up code, then served and drained.
#[test]
fn second_signal_during_start_up_code_exits_130() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = fixture(&server.url(), "slow-setup", data.path());
    cmd.env("SETUP_DELAY_MS", "60000");
    let mut proc = Process::spawn(cmd);
    proc.wait_for_stderr("setup waiting", WAIT);

    proc.signal(libc::SIGTERM);
    proc.wait_for_stderr("received a stop signal", WAIT);
    proc.signal(libc::SIGTERM);
    let code = proc.wait_exit(Duration::from_secs(10));
    let stderr = proc.stderr();
    assert_eq!(code, Some(130), "stderr:\n{stderr}");
    assert!(stderr.contains("again"), "stderr:\n{stderr}");
    assert!(!stderr.contains(" ready"), "it served; stderr:\n{stderr}");
}

/// Point 4. A `SHUTDOWN_TIMEOUT` that is not a positive number of seconds
/// fails the start (exit 1) naming the key.
///
/// Old behaviour: the key did not exist; the service started with any
/// value (and never stopped waiting in a drain).
#[test]
fn invalid_shutdown_timeout_fails_the_start_naming_the_key() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    for value in ["abc", "0", "-1"] {
        let mut cmd = fixture(&server.url(), "bad-timeout", data.path());
        cmd.env("SHUTDOWN_TIMEOUT", value);
        support::assert_start_fails_naming(cmd, "SHUTDOWN_TIMEOUT");
    }
}

/// Point 6. stderr is a pipe nobody reads any more: every log line fails
/// to be written, yet a failing handler keeps its route (a later request
/// still gets its error reply), health answers, and SIGTERM exits 0.
///
/// Old behaviour: a failed log write panicked (tracing reported it with
/// `eprintln!`, which panics on a closed stderr): the process died with
/// 101 at its first log line, or a route task died at its first error
/// and the drain ended in exit 101.
#[tokio::test(flavor = "multi_thread")]
async fn closed_stderr_does_not_kill_a_failing_route() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = fixture(&server.url(), "no-stderr", data.path());
    cmd.env("SHUTDOWN_TIMEOUT", "2");
    let mut proc = Process::spawn_with_closed(cmd, Stream::Stderr);
    let client = server.client().await;
    // No " ready" to wait for: wait until the route answers.
    support::eventually_async(WAIT, "e2e.math.divide answers", || async {
        support::try_request(&client, "e2e.math.divide", r#"{"dividend":7,"divisor":2}"#)
            .await
            .is_some()
    })
    .await;

    for _ in 0..2 {
        let reply =
            support::request(&client, "e2e.math.divide", r#"{"dividend":7,"divisor":0}"#).await;
        assert_eq!(
            support::error_header(&reply).as_deref(),
            Some("cannot divide 7 by zero")
        );
    }
    let reply = support::request(&client, "e2e.math.divide", r#"{"dividend":7,"divisor":2}"#).await;
    assert_eq!(support::error_header(&reply), None);
    assert_eq!(&reply.payload[..], br#"{"quotient":3,"remainder":1}"#);
    let health = support::health(&client, "__telestion__.health").await;
    assert_eq!(health["errors_total"], 2, "{health}");

    proc.signal(libc::SIGTERM);
    let code = block_in_place(|| proc.wait_exit(WAIT));
    assert_eq!(code, Some(0), "exit code with a closed stderr");
}

/// Point 6. A start that fails (a required key missing) with a closed
/// stderr exits 1.
///
/// Old behaviour: the `error: ...` line was written with `eprintln!`,
/// which panicked on the closed pipe: exit 101.
#[test]
fn closed_stderr_and_a_missing_key_exit_1() {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_e2e_macro_service"));
    cmd.env("SERVICE_NAME", "no-url")
        .env("DATA_DIR", data.path());
    let mut proc = Process::spawn_with_closed(cmd, Stream::Stderr);
    assert_eq!(proc.wait_exit(WAIT), Some(1));
}

/// Point 6. The `health` tool with a closed stdout (its reader is gone, as
/// in `health | head -0`) exits 0 quietly.
///
/// Old behaviour: `println!` panicked on the closed pipe: exit 101 with a
/// panic message.
#[test]
fn health_tool_with_a_closed_stdout_exits_0() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = support::service_command(
        support::workspace_binary("health", "health"),
        &server,
        "health",
        data.path(),
    );
    cmd.env("HEALTH_WAIT_MS", "100");
    let mut proc = Process::spawn_with_closed(cmd, Stream::Stdout);
    let code = proc.wait_exit(WAIT);
    let stderr = proc.stderr();
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
}

/// Point 7. With `LOG_FORMAT=json`, a panicking handler leaves only JSON
/// lines on stderr, and one event carries the panic message, its location
/// and the handler's name.
///
/// Old behaviour: Rust's default panic hook printed its multi-line text
/// (`thread '...' panicked at ...`, the message, the backtrace note) among
/// the JSON lines, without the handler's name.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_a_handler_panic_as_one_event() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = fixture(&server.url(), "json-panic", data.path());
    cmd.env("LOG_FORMAT", "json");
    let mut proc = Process::spawn(cmd);
    block_in_place(|| proc.wait_for_stderr(r#""message":"ready""#, WAIT));
    let client = server.client().await;

    let reply = support::request(&client, "e2e.fault.panic", "boom").await;
    let error = support::error_header(&reply).expect("no error reply for a panic");
    assert!(error.contains("fault injected: boom"), "{error}");
    proc.signal(libc::SIGTERM);
    let code = block_in_place(|| proc.wait_exit(WAIT));
    let stderr = proc.stderr();
    assert_eq!(code, Some(0), "stderr:\n{stderr}");

    let mut panics = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\nstderr:\n{stderr}"));
        if event["fields"]["message"] == "handler panicked" {
            panics.push(event);
        }
    }
    assert_eq!(panics.len(), 1, "stderr:\n{stderr}");
    let fields = &panics[0]["fields"];
    assert_eq!(fields["panic"], "fault injected: boom", "{fields}");
    let location = fields["location"].as_str().unwrap_or_default();
    assert!(
        location.contains("e2e_macro_service.rs:"),
        "no location: {fields}"
    );
    let handler = fields["handler"].as_str().unwrap_or_default();
    assert!(handler.ends_with("faults::panics"), "no handler: {fields}");
}

/// Point 13. SIGHUP (the terminal closed, or a supervisor's stop) drains
/// the service like SIGTERM: exit 0.
///
/// Old behaviour: SIGHUP was not handled; its default action killed the
/// process (no drain; exit status 129 in a shell).
#[test]
fn sighup_drains_and_exits_0() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut proc = support::spawn_ready(fixture(&server.url(), "hup", data.path()));
    proc.signal(libc::SIGHUP);
    let code = proc.wait_exit(WAIT);
    let stderr = proc.stderr();
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(stderr.contains("SIGHUP"), "stderr:\n{stderr}");
    assert!(stderr.contains("drained"), "stderr:\n{stderr}");
}

/// Point 13. A service that takes over SIGHUP with `Service::hangups`
/// keeps serving after each SIGHUP and observes it (a log line and the
/// count on `e2e.fault.hangups`); SIGTERM still drains it.
///
/// Old behaviour: there was no way to take SIGHUP over; it killed the
/// process.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_that_takes_hangups_keeps_serving_after_sighup() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = fixture(&server.url(), "reloader", data.path());
    cmd.env("TAKE_HANGUPS", "1");
    let mut proc = block_in_place(|| support::spawn_ready(cmd));
    let client = server.client().await;
    let count = async || {
        let reply = support::request(&client, "e2e.fault.hangups", "").await;
        String::from_utf8_lossy(&reply.payload).into_owned()
    };
    assert_eq!(count().await, "0");

    for expected in ["1", "2"] {
        proc.signal(libc::SIGHUP);
        support::eventually_async(WAIT, &format!("{expected} hangups observed"), || async {
            count().await == expected
        })
        .await;
    }
    let reply = support::request(&client, "e2e.ping", "").await;
    assert_eq!(&reply.payload[..], b"pong");
    assert!(proc.is_running());

    proc.signal(libc::SIGTERM);
    let code = block_in_place(|| proc.wait_exit(WAIT));
    let stderr = proc.stderr();
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert_eq!(
        stderr.matches("hangup observed").count(),
        2,
        "stderr:\n{stderr}"
    );
}

/// Point 14. `--help` prints the standard keys and the keys of the
/// service's handlers on stdout and exits 0, without any configuration
/// and without connecting.
///
/// Old behaviour: `--help` was taken as a config flag and the service
/// started: without `NATS_URL` it failed with exit 1 (missing key), with
/// it it connected.
#[test]
fn help_lists_the_keys_without_connecting() {
    let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_e2e_macro_service"));
    cmd.arg("--help");
    let output = support::run_with_timeout(cmd, WAIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
    for key in [
        "NATS_URL",
        "SERVICE_NAME",
        "DATA_DIR",
        "SHUTDOWN_TIMEOUT",
        "CONFIG_FILE",
        // The handlers' keys: a config-driven subject and typed configs.
        "ECHO_SUBJECT",
        "FACTOR",
        "SLOW_MS",
    ] {
        assert!(stdout.contains(key), "{key} missing; stdout:\n{stdout}");
    }
    assert!(!stderr.contains("error"), "stderr:\n{stderr}");

    // With a complete configuration, `--help` still does not connect.
    let (listener, url) = silent_server();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = fixture(&url, "helped", data.path());
    cmd.arg("--help");
    let output = support::run_with_timeout(cmd, WAIT);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("NATS_URL"));
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("--help connected to NATS_URL: {other:?}"),
    }
}
