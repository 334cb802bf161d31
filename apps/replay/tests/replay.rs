//! The `replay` tool end to end: a real nats-server, the real binary, a
//! subscriber that checks what arrives.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::StreamExt;
use telestion_test::{
    NatsServer, Process, ServerOptions, WAIT, clean_command, free_port, next_message, request,
    spawn_ready,
};

/// The `replay` binary configured for `server`, with `args`.
fn replay_cmd(server: &NatsServer, args: &[&str]) -> std::process::Command {
    let mut cmd = clean_command(env!("CARGO_BIN_EXE_replay"));
    cmd.env("NATS_URL", server.url()).args(args);
    cmd
}

/// A data-log line as standard_ops writes it; `tail` is the body field.
fn line(time: &str, subject: &str, tail: &str) -> String {
    format!("{{\"time\":\"{time}\",\"subject\":\"{subject}\",{tail}}}\n")
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Writes `lines` to `name` in `dir`.
fn log_file(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.concat()).unwrap();
    path
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Subscribes to `subject` and makes sure the server knows it.
async fn subscribe(client: &async_nats::Client, subject: &str) -> async_nats::Subscriber {
    let subscriber = client.subscribe(subject.to_owned()).await.unwrap();
    client.flush().await.unwrap();
    subscriber
}

/// The next `n` messages as (subject, body).
async fn receive(subscriber: &mut async_nats::Subscriber, n: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let message = next_message(subscriber, WAIT).await;
        out.push((message.subject.to_string(), message.payload.to_vec()));
    }
    out
}

/// Asserts that nothing more arrives for a moment.
async fn assert_quiet(subscriber: &mut async_nats::Subscriber) {
    let extra = tokio::time::timeout(Duration::from_millis(300), subscriber.next()).await;
    assert!(extra.is_err(), "an unexpected message arrived: {extra:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fast_replay_publishes_every_body_byte_for_byte_in_order() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let binary = [0x00u8, 0xff, 0x10, 0x80, 0x00];
    // Hours apart: --fast does not wait.
    let lines = [
        line(
            "2025-01-01T12:00:00.000000Z",
            "data.json",
            r#""json":{"a" : 1.50}"#,
        ),
        line(
            "2025-01-01T13:00:00.000000Z",
            "data.unicode",
            "\"text\":\"grüße \\u00e4 🚀 \\\"q\\\"\"",
        ),
        line(
            "2025-01-01T14:00:00.000000Z",
            "data.binary",
            &format!("\"base64\":\"{}\"", base64(&binary)),
        ),
        line("2025-01-01T15:00:00.000000Z", "data.empty", r#""text":"""#),
        line("2025-01-01T16:00:00.000000Z", "data.null", r#""json":null"#),
        line(
            "2025-01-01T17:00:00.123456Z",
            "data.escaped",
            r#""json":[ "\u00e4", 1e3 ]"#,
        ),
        line(
            "2025-01-01T18:00:00.000000Z",
            "data.json",
            r#""json":{"b":2}"#,
        ),
    ];
    let file = log_file(dir.path(), "data.log", &lines);
    let client = server.client().await;
    let mut subscriber = subscribe(&client, "data.>").await;

    let started = Instant::now();
    let mut replay = Process::spawn(replay_cmd(&server, &["--fast", arg(&file)]));
    assert_eq!(replay.wait_exit(WAIT), Some(0), "{}", replay.stderr());
    assert!(started.elapsed() < Duration::from_secs(15), "--fast waited");

    let received = receive(&mut subscriber, lines.len()).await;
    let expected: Vec<(String, Vec<u8>)> = [
        ("data.json", br#"{"a" : 1.50}"#.to_vec()),
        ("data.unicode", "grüße ä 🚀 \"q\"".as_bytes().to_vec()),
        ("data.binary", binary.to_vec()),
        ("data.empty", Vec::new()),
        ("data.null", b"null".to_vec()),
        ("data.escaped", br#"[ "\u00e4", 1e3 ]"#.to_vec()),
        ("data.json", br#"{"b":2}"#.to_vec()),
    ]
    .into_iter()
    .map(|(subject, body)| (subject.to_owned(), body))
    .collect();
    assert_eq!(received, expected);
    assert_quiet(&mut subscriber).await;
    let stderr = replay.stderr();
    assert!(
        stderr.contains("7 messages published, 0 lines skipped, 1 file"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn files_are_replayed_one_after_the_other() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let first = log_file(
        dir.path(),
        "first.log",
        &[line(
            "2025-01-01T12:00:00Z",
            "__telestion__/log/first",
            r#""text":"1""#,
        )],
    );
    let second = log_file(
        dir.path(),
        "second.log",
        &[
            line("2024-01-01T12:00:00Z", "x.second", r#""text":"2""#),
            line("2024-01-01T12:00:00Z", "x.second", r#""text":"3""#),
        ],
    );
    let client = server.client().await;
    let mut subscriber = subscribe(&client, ">").await;
    let mut replay = Process::spawn(replay_cmd(&server, &[arg(&first), "--", arg(&second)]));
    assert_eq!(replay.wait_exit(WAIT), Some(0), "{}", replay.stderr());
    let received = receive(&mut subscriber, 3).await;
    let bodies: Vec<&[u8]> = received.iter().map(|(_, body)| body.as_slice()).collect();
    assert_eq!(bodies, [b"1", b"2", b"3"]);
    assert_eq!(received[0].0, "__telestion__/log/first");
    assert!(
        replay
            .stderr()
            .contains("3 messages published, 0 lines skipped, 2 files")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn speed_divides_the_recorded_gaps() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = log_file(
        dir.path(),
        "paced.log",
        &[
            line("2025-01-01T12:00:00.000000Z", "paced", r#""json":1"#),
            line("2025-01-01T12:00:01.000000Z", "paced", r#""json":2"#),
        ],
    );
    let client = server.client().await;
    let mut subscriber = subscribe(&client, "paced").await;

    // One second recorded, four times faster: about 0.25 s. (The gap seen
    // here is shorter than the one replay keeps when the first message went
    // out late, hence the generous lower bounds.)
    let mut replay = Process::spawn(replay_cmd(&server, &["--speed", "4", arg(&file)]));
    next_message(&mut subscriber, WAIT).await;
    let first = Instant::now();
    next_message(&mut subscriber, WAIT).await;
    let gap = first.elapsed();
    assert!(gap >= Duration::from_millis(150), "too fast: {gap:?}");
    assert!(gap < Duration::from_millis(900), "too slow: {gap:?}");
    assert_eq!(replay.wait_exit(WAIT), Some(0), "{}", replay.stderr());

    // The recorded pace: about one second.
    let mut replay = Process::spawn(replay_cmd(&server, &[arg(&file)]));
    next_message(&mut subscriber, WAIT).await;
    let first = Instant::now();
    next_message(&mut subscriber, WAIT).await;
    let gap = first.elapsed();
    assert!(gap >= Duration::from_millis(700), "too fast: {gap:?}");
    assert!(gap < Duration::from_secs(5), "too slow: {gap:?}");
    assert_eq!(replay.wait_exit(WAIT), Some(0), "{}", replay.stderr());
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_lines_are_reported_skipped_and_counted() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let time = "2025-01-01T12:00:00.000000Z";
    let lines = [
        line(time, "good", r#""text":"one""#),
        "{\"time\":\"2025-01-01T12:00:00Z\",\"subj\n".to_owned(),
        line(time, "good", r#""text":"two""#),
        format!("{{\"time\":\"{time}\",\"subject\":\"good\"}}\n"),
        line("noon", "good", r#""text":"x""#),
        line(time, "good", r#""base64":"not base64!""#),
        line(time, "good", r#""text":"three""#),
    ];
    let file = log_file(dir.path(), "broken.log", &lines);
    let client = server.client().await;
    let mut subscriber = subscribe(&client, "good").await;
    let mut replay = Process::spawn(replay_cmd(&server, &["--fast", arg(&file)]));
    assert_eq!(replay.wait_exit(WAIT), Some(2), "{}", replay.stderr());

    let bodies: Vec<Vec<u8>> = receive(&mut subscriber, 3)
        .await
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    assert_eq!(
        bodies,
        [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
    assert_quiet(&mut subscriber).await;
    let stderr = replay.stderr();
    let name = file.display().to_string();
    for (number, why) in [
        (2, "not a data-log line"),
        (4, "no body"),
        (5, "RFC 3339"),
        (6, "base64"),
    ] {
        let report = format!("{name}:{number}: ");
        let at = stderr
            .find(&report)
            .unwrap_or_else(|| panic!("line {number} not reported:\n{stderr}"));
        let rest = &stderr[at..];
        let report_line = rest.lines().next().unwrap();
        assert!(report_line.contains(why), "{report_line}");
        assert!(report_line.ends_with("line skipped"), "{report_line}");
    }
    assert!(
        stderr.contains("3 messages published, 4 lines skipped, 1 file"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_the_server_does_not_take_is_skipped() {
    let server = NatsServer::start_with(ServerOptions::new().config("max_payload: 100"));
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(101);
    let file = log_file(
        dir.path(),
        "big.log",
        &[
            line(
                "2025-01-01T12:00:00Z",
                "sized",
                &format!("\"text\":\"{big}\""),
            ),
            line("2025-01-01T12:00:00Z", "sized", r#""text":"small""#),
        ],
    );
    let client = server.client().await;
    let mut subscriber = subscribe(&client, "sized").await;
    let mut replay = Process::spawn(replay_cmd(&server, &["--fast", arg(&file)]));
    assert_eq!(replay.wait_exit(WAIT), Some(2), "{}", replay.stderr());
    let message = next_message(&mut subscriber, WAIT).await;
    assert_eq!(message.payload.as_ref(), b"small");
    assert_quiet(&mut subscriber).await;
    let stderr = replay.stderr();
    let report = format!("{}:1: not published", file.display());
    assert!(stderr.contains(&report), "{stderr}");
    assert!(
        stderr.contains("1 message published, 1 line skipped, 1 file"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_file_fails_before_anything_is_published() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let good = log_file(
        dir.path(),
        "good.log",
        &[line("2025-01-01T12:00:00Z", "good", r#""text":"one""#)],
    );
    let missing = dir.path().join("missing.log");
    let client = server.client().await;
    let mut subscriber = subscribe(&client, "good").await;
    let mut replay = Process::spawn(replay_cmd(&server, &["--fast", arg(&good), arg(&missing)]));
    assert_eq!(replay.wait_exit(WAIT), Some(1), "{}", replay.stderr());
    let stderr = replay.stderr();
    assert!(
        stderr.contains(&format!("cannot read {}", missing.display())),
        "{stderr}"
    );
    assert!(stderr.contains("No such file"), "{stderr}");
    assert_quiet(&mut subscriber).await;

    // A directory is no file either.
    let mut replay = Process::spawn(replay_cmd(&server, &["--fast", arg(dir.path())]));
    assert_eq!(replay.wait_exit(WAIT), Some(1), "{}", replay.stderr());
    assert!(
        replay.stderr().contains("is a directory"),
        "{}",
        replay.stderr()
    );
}

#[test]
fn usage_mistakes_and_no_server_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = log_file(
        dir.path(),
        "x.log",
        &[line("2025-01-01T12:00:00Z", "x", r#""json":1"#)],
    );
    let run = |cmd: std::process::Command| {
        let mut process = Process::spawn(cmd);
        let code = process.wait_exit(WAIT);
        (code, process.stderr())
    };
    let bin = env!("CARGO_BIN_EXE_replay");

    let (code, stderr) = run(clean_command(bin));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no FILE given"), "{stderr}");

    let mut cmd = clean_command(bin);
    cmd.args(["--fast", "--speed", "2", arg(&file)]);
    let (code, stderr) = run(cmd);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not both"), "{stderr}");

    // NATS_URL is required.
    let mut cmd = clean_command(bin);
    cmd.arg(arg(&file));
    let (code, stderr) = run(cmd);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("NATS_URL"), "{stderr}");

    // Nobody listens on the port: a clear error, no waiting for long.
    let mut cmd = clean_command(bin);
    cmd.arg(format!("--nats-url=127.0.0.1:{}", free_port()))
        .arg(arg(&file));
    let started = Instant::now();
    let (code, stderr) = run(cmd);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));

    // --help: usage and exit codes on stdout, exit 0.
    let mut process = Process::spawn({
        let mut cmd = clean_command(bin);
        cmd.arg("--help");
        cmd
    });
    assert_eq!(process.wait_exit(WAIT), Some(0));
    let help = process.stdout();
    assert!(
        help.contains("Usage: replay [--speed N | --fast]"),
        "{help}"
    );
    assert!(help.contains("NATS_CREDS"), "{help}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_stops_the_replay_promptly() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    // An hour between the two messages at the recorded pace.
    let file = log_file(
        dir.path(),
        "slow.log",
        &[
            line("2025-01-01T12:00:00Z", "slow", r#""text":"now""#),
            line("2025-01-01T13:00:00Z", "slow", r#""text":"in an hour""#),
        ],
    );
    let client = server.client().await;
    let mut subscriber = subscribe(&client, "slow").await;
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut replay = Process::spawn(replay_cmd(&server, &[arg(&file)]));
        let first = next_message(&mut subscriber, WAIT).await;
        assert_eq!(first.payload.as_ref(), b"now");
        replay.signal(signal);
        let stopped = Instant::now();
        assert_eq!(replay.wait_exit(WAIT), Some(130), "{}", replay.stderr());
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "{:?}",
            stopped.elapsed()
        );
        let stderr = replay.stderr();
        assert!(stderr.contains("stopped by a signal"), "{stderr}");
        assert!(
            stderr.contains("1 message published, 0 lines skipped, 1 file"),
            "{stderr}"
        );
    }
    assert_quiet(&mut subscriber).await;
}

/// standard_ops writes the log, replay reads it back: every body comes out
/// as it went in, and the replayed messages, logged again, give the same
/// lines.
#[tokio::test(flavor = "multi_thread")]
async fn round_trip_through_standard_ops() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let standard_ops = telestion_test::service_command(
        telestion_test::workspace_binary("standard_ops", "standard_ops"),
        &server,
        "standard_ops",
        data.path(),
    );
    let _standard_ops = spawn_ready(standard_ops);
    let client = server.client().await;
    let subject = "__telestion__/log/roundtrip";
    let bodies: Vec<Vec<u8>> = vec![
        br#"{"a" : 1.50}"#.to_vec(),
        b"[1,\n2]".to_vec(),
        b" {\"a\":\r\n1} ".to_vec(),
        b"\"x\"\n".to_vec(),
        b"\t\n".to_vec(),
        br#"[1,2, "x\u00e4"]"#.to_vec(),
        b"null".to_vec(),
        b"42".to_vec(),
        "plain text with ünïcödé 🚀".as_bytes().to_vec(),
        b"not json {".to_vec(),
        Vec::new(),
        vec![0x00, 0xff, 0x01, 0x80],
        (0..=255u8).collect(),
    ];
    for body in &bodies {
        // standard_ops answers once the line is written.
        let ack = request(&client, subject, body.clone()).await;
        assert_eq!(ack.payload.as_ref(), br#"{"ok":true}"#);
    }
    let log = data.path().join("logs").join("roundtrip.log");
    let original = std::fs::read_to_string(&log).unwrap();
    assert_eq!(original.lines().count(), bodies.len());

    let mut subscriber = subscribe(&client, subject).await;
    // standard_ops logs the replayed messages again, into the very file
    // being replayed: replay reads only what the file held at the start.
    let mut replay = Process::spawn(replay_cmd(&server, &["--fast", arg(&log)]));
    assert_eq!(replay.wait_exit(WAIT), Some(0), "{}", replay.stderr());
    let received = receive(&mut subscriber, bodies.len()).await;
    for ((got_subject, got), sent) in received.iter().zip(&bodies) {
        assert_eq!(got_subject, subject);
        assert_eq!(
            got,
            sent,
            "{:?} != {:?}",
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(sent)
        );
    }
    assert_quiet(&mut subscriber).await;

    // Logged again: the same lines but for the time.
    let without_time = |line: &str| line.split_once(",\"subject\"").unwrap().1.to_owned();
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.lines().count() == 2 * bodies.len() || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lines: Vec<String> = text.lines().map(without_time).collect();
    assert_eq!(lines.len(), 2 * bodies.len(), "{text}");
    // A standard_ops that handles messages arriving together concurrently
    // may write them in another order: compare sorted.
    let (mut first, mut again) = (
        lines[..bodies.len()].to_vec(),
        lines[bodies.len()..].to_vec(),
    );
    first.sort();
    again.sort();
    assert_eq!(first, again);
}
