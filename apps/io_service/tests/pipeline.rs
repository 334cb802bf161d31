//! Device -> IO service -> parser, observed in the streams: every frame the
//! simulator produced is stored once in `TELEMETRY_RAW` and once, parsed,
//! in `TELEMETRY`, across SIGTERM and SIGKILL of the IO service and of the
//! parser; injected bad frames are rejected, reported and counted in
//! health while the flow goes on; a lost link is reported on `device.link`
//! and in health, and recovered; a silent device resumes without a gap; a
//! restarted device (new session) is found again; a restart of the NATS
//! server loses no frame.
//!
//! Real processes: a JetStream `nats-server` (Debian's and the current
//! release at `NATS_SERVER_CURRENT_BIN`), `device_sim`, `io_service` and
//! `telemetry_parser` (through `backend_tests::Backend`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use backend_protocol::{Frame, decode_body};
use backend_tests::Backend;
use futures::StreamExt;
use serde_json::Value;
use telestion_test::{NatsServer, ServerOptions, eventually_async, next_message};

mod support;
use support::errors_total;

const PIPELINE: [&str; 2] = ["io_service", "telemetry_parser"];

/// The current nats-server release (see `scripts/ensure-nats-server-current.sh`).
fn current_server() -> PathBuf {
    let path = std::env::var_os("NATS_SERVER_CURRENT_BIN").unwrap_or_else(|| {
        panic!(
            "NATS_SERVER_CURRENT_BIN is not set: run `. scripts/ensure-nats-server-current.sh` \
             or point it at a nats-server binary of the current release"
        )
    });
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "NATS_SERVER_CURRENT_BIN={path:?} is not a file"
    );
    path
}

/// The backend on `server` (Debian's when `None`) with `services`.
fn start(
    server: Option<PathBuf>,
    hz: u32,
    services: &[&'static str],
    env: Vec<(&'static str, String, String)>,
) -> Backend {
    let mut backend = Backend::start_with(hz, &[], env);
    if let Some(binary) = server {
        backend.server = NatsServer::start_with(ServerOptions::new().jetstream().binary(binary));
    }
    for name in services {
        backend.start_service(name);
    }
    backend
}

/// Messages stored in `stream` (0 while it does not exist).
async fn stored(client: &async_nats::Client, stream: &str) -> u64 {
    let js = jetstream::new(client.clone());
    match js.get_stream(stream).await {
        Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }
}

async fn wait_stored(client: &async_nats::Client, stream: &str, at_least: u64, what: &str) {
    eventually_async(Duration::from_secs(30), what, || async {
        stored(client, stream).await >= at_least
    })
    .await;
}

/// Every message of `stream`: (`Nats-Msg-Id`, body).
async fn read_stream(client: &async_nats::Client, name: &str) -> Vec<(String, Vec<u8>)> {
    let total = stored(client, name).await as usize;
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(name).await.expect("no such stream");
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("cannot create a consumer");
    let mut messages = consumer.messages().await.expect("cannot read the stream");
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .unwrap_or_else(|_| panic!("{name}: only {} of {total} messages read", out.len()))
            .expect("the consumer ended")
            .expect("cannot read a message");
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        out.push((id, message.payload.to_vec()));
    }
    out
}

/// Asserts that `stream` holds each counter `0..sent` of `session` exactly
/// once (by message id and by content), and returns the other messages.
fn assert_every_counter_once(
    name: &str,
    messages: &[(String, Vec<u8>)],
    session: u32,
    sent: u64,
    counter_of: impl Fn(&[u8]) -> Option<(u32, u32)>,
    prefix: &str,
) -> usize {
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    let mut others = 0;
    for (id, body) in messages {
        match counter_of(body) {
            Some((s, counter)) => {
                assert_eq!(s, session, "{name}: a frame of another session");
                assert_eq!(*id, format!("{prefix}-{s}-{counter}"), "{name}: message id");
                *seen.entry(counter).or_default() += 1;
            }
            None => others += 1,
        }
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "{name}: duplicates {duplicates:?}");
    let missing: Vec<u64> = (0..sent)
        .filter(|c| !seen.contains_key(&(*c as u32)))
        .collect();
    assert!(
        missing.is_empty(),
        "{name}: {} counters missing: {missing:?}",
        missing.len()
    );
    assert_eq!(
        seen.len() as u64,
        sent,
        "{name}: counters beyond the last sent"
    );
    others
}

fn raw_counter(body: &[u8]) -> Option<(u32, u32)> {
    match decode_body(body) {
        Ok(Frame::Telemetry(t)) => Some((t.session, t.counter)),
        _ => None,
    }
}

fn parsed_counter(body: &[u8]) -> Option<(u32, u32)> {
    let value: Value = serde_json::from_slice(body).expect("parsed telemetry is not JSON");
    for key in [
        "time_ms",
        "temperature_c",
        "voltage_v",
        "current_a",
        "status",
    ] {
        assert!(value.get(key).is_some(), "no {key} in {value}");
    }
    Some((
        value["session"].as_u64()? as u32,
        value["counter"].as_u64()? as u32,
    ))
}

/// Stops the telemetry, waits until both streams hold every frame, and
/// checks them; returns the frames sent.
async fn assert_complete(backend: &Backend, client: &async_nats::Client, bad_frames: usize) -> u64 {
    let sent = backend.stop_telemetry();
    wait_stored(client, "TELEMETRY", sent, "every frame parsed").await;
    wait_stored(
        client,
        "TELEMETRY_RAW",
        sent + bad_frames as u64,
        "every frame stored raw",
    )
    .await;
    // Give a late duplicate the chance to show up (none may).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let raw = read_stream(client, "TELEMETRY_RAW").await;
    let others = assert_every_counter_once(
        "TELEMETRY_RAW",
        &raw,
        backend.session,
        sent,
        raw_counter,
        "raw",
    );
    assert_eq!(others, bad_frames, "bad frames in TELEMETRY_RAW");
    let parsed = read_stream(client, "TELEMETRY").await;
    assert_every_counter_once(
        "TELEMETRY",
        &parsed,
        backend.session,
        sent,
        parsed_counter,
        "parsed",
    );
    // The device was told that everything is stored.
    eventually_async(
        Duration::from_secs(10),
        "the device got every ack",
        || async { backend.device_stat("buffered") == 0 },
    )
    .await;
    assert_eq!(backend.device_stat("dropped"), 0);
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_is_stored_once_across_io_and_parser_kills() {
    let mut backend = start(None, 200, &PIPELINE, Vec::new());
    let client = backend.server.client().await;

    wait_stored(&client, "TELEMETRY", 200, "200 frames parsed").await;
    backend.restart_gracefully("io_service");
    wait_stored(
        &client,
        "TELEMETRY",
        500,
        "500 frames after a SIGTERM of io",
    )
    .await;
    backend.restart_killed("io_service");
    wait_stored(
        &client,
        "TELEMETRY",
        800,
        "800 frames after a SIGKILL of io",
    )
    .await;
    backend.restart_killed("telemetry_parser");
    wait_stored(
        &client,
        "TELEMETRY",
        1100,
        "1100 frames after a SIGKILL of the parser",
    )
    .await;
    backend.restart_gracefully("telemetry_parser");
    wait_stored(
        &client,
        "TELEMETRY",
        1300,
        "1300 frames after a SIGTERM of the parser",
    )
    .await;

    let sent = assert_complete(&backend, &client, 0).await;
    assert!(sent >= 1300, "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_and_link_losses_are_counted_and_the_flow_goes_on() {
    let env = vec![("io_service", "LINK_BACKOFF_MAX".into(), "1s".into())];
    let backend = start(Some(current_server()), 100, &PIPELINE, env);
    let client = backend.server.client().await;
    let mut rejected = client.subscribe("telemetry.rejected").await.unwrap();
    let mut link = client.subscribe("device.link").await.unwrap();
    client.flush().await.unwrap();
    wait_stored(&client, "TELEMETRY", 50, "50 frames parsed").await;
    let parser_errors = errors_total(&client, "telemetry_parser").await;

    // Bad frames: rejected with their reason, counted, not retried.
    backend.control("bad_checksum 3");
    backend.control("truncated 2");
    let mut reasons = Vec::new();
    for _ in 0..5 {
        let message = next_message(&mut rejected, Duration::from_secs(10)).await;
        let value: Value = serde_json::from_slice(&message.payload).unwrap();
        reasons.push(value["reason"].as_str().unwrap().to_owned());
        assert!(value["bytes"].as_u64().unwrap() > 0, "{value}");
    }
    reasons.sort();
    assert!(
        reasons[..3].iter().all(|r| r.starts_with("bad checksum")),
        "{reasons:?}"
    );
    assert!(
        reasons[3..].iter().all(|r| r.starts_with("truncated")),
        "{reasons:?}"
    );
    eventually_async(
        Duration::from_secs(10),
        "5 parser errors in health",
        || async { errors_total(&client, "telemetry_parser").await >= parser_errors + 5 },
    )
    .await;

    // Link losses: reported on device.link and in health, then recovered.
    let io_errors = errors_total(&client, "io_service").await;
    for fault in ["disconnect", "garbage"] {
        backend.control(fault);
        let mut states = Vec::new();
        while !(states.contains(&false) && states.last() == Some(&true)) {
            let message = next_message(&mut link, Duration::from_secs(15)).await;
            let value: Value = serde_json::from_slice(&message.payload).unwrap();
            let connected = value["connected"].as_bool().unwrap();
            if !connected {
                assert!(value["reason"].is_string(), "{value}");
            }
            if states.last() != Some(&connected) {
                states.push(connected);
            }
        }
    }
    assert!(
        errors_total(&client, "io_service").await >= io_errors + 2,
        "the lost links are not counted"
    );
    assert!(backend.device_stat("connections") >= 3);

    // Silence: no frames (the counter stands still), then the flow goes on
    // without a gap (checked below).
    backend.control("silence 1.5");
    let silent = backend.device_stat("next_counter");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(backend.device_stat("next_counter") <= silent + 1);
    telestion_test::eventually(
        Duration::from_secs(10),
        "telemetry after the silence",
        || backend.device_stat("next_counter") > silent + 10,
    )
    .await;

    assert_complete(&backend, &client, 5).await;
}

/// Figures (ignored by default; `cargo test -p io_service --test pipeline
/// -- --ignored --nocapture`): how fast the IO service and the parser
/// drain a backlog of 20,000 frames the device buffered while they were
/// down, and whether they keep up with 1000 frames/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let mut backend = start(None, 1000, &[], Vec::new());
    let client = backend.server.client().await;
    telestion_test::eventually(Duration::from_secs(60), "20,000 frames buffered", || {
        backend.device_stat("buffered") >= 20_000
    })
    .await;
    backend.control("silence 3600");
    let backlog = backend.device_stat("next_counter");
    let started = std::time::Instant::now();
    backend.start_service("io_service");
    wait_stored(&client, "TELEMETRY_RAW", backlog, "the backlog stored raw").await;
    let raw = started.elapsed();
    backend.start_service("telemetry_parser");
    let started_parser = std::time::Instant::now();
    wait_stored(&client, "TELEMETRY", backlog, "the backlog parsed").await;
    let parsed = started_parser.elapsed();
    println!(
        "backlog of {backlog} frames: io_service stored {:.0} frames/s, parser {:.0} frames/s",
        backlog as f64 / raw.as_secs_f64(),
        backlog as f64 / parsed.as_secs_f64()
    );
    // Live at 1000 Hz for 20 s.
    backend.control("silence 0");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let produced = backend.device_stat("next_counter") - backlog;
    let buffered = backend.device_stat("buffered");
    let lag = backend.device_stat("next_counter") - stored(&client, "TELEMETRY").await;
    println!(
        "live: {produced} frames in 20 s ({:.0}/s); {buffered} unacknowledged at the device, \
         {lag} not yet parsed",
        produced as f64 / 20.0
    );
    assert_complete(&backend, &client, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_device_is_found_again() {
    let env = vec![("io_service", "LINK_BACKOFF_MAX".into(), "500ms".into())];
    let mut backend = start(None, 100, &PIPELINE, env);
    let client = backend.server.client().await;
    let mut link = client.subscribe("device.link").await.unwrap();
    client.flush().await.unwrap();
    wait_stored(&client, "TELEMETRY", 50, "50 frames parsed").await;
    let io_errors = errors_total(&client, "io_service").await;

    // The device goes away: the link is reported down, with the reason.
    backend.device.signal(libc::SIGKILL);
    backend.device.wait_exit(telestion_test::WAIT);
    loop {
        let message = next_message(&mut link, Duration::from_secs(10)).await;
        let value: Value = serde_json::from_slice(&message.payload).unwrap();
        if value["connected"] == false {
            assert!(
                value["reason"].as_str().unwrap().contains("device"),
                "{value}"
            );
            break;
        }
    }
    // Reconnection attempts fail (counted) until it is back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(errors_total(&client, "io_service").await >= io_errors + 2);

    let mut cmd =
        telestion_test::clean_command(telestion_test::workspace_binary("device_sim", "device_sim"));
    cmd.env("DEVICE_ADDR", &backend.device_addr)
        .env("TELEMETRY_HZ", "100");
    let device = telestion_test::Process::spawn(cmd);
    telestion_test::eventually(telestion_test::WAIT, "the new device's session", || {
        device.stdout().contains("session ")
    })
    .await;
    let session: u32 = device
        .stdout()
        .lines()
        .find_map(|line| line.strip_prefix("session "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(session, backend.session);
    loop {
        let message = next_message(&mut link, Duration::from_secs(10)).await;
        let value: Value = serde_json::from_slice(&message.payload).unwrap();
        if value["connected"] == true {
            break;
        }
    }
    let before = stored(&client, "TELEMETRY").await;
    wait_stored(
        &client,
        "TELEMETRY",
        before + 50,
        "frames of the new session",
    )
    .await;
    let parsed = read_stream(&client, "TELEMETRY").await;
    let new_session = parsed
        .iter()
        .filter_map(|(_, body)| parsed_counter(body))
        .filter(|(s, _)| *s == session)
        .count();
    assert!(new_session >= 50, "{new_session} frames of the new session");
    backend.device = device;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_restart_loses_no_frame() {
    let mut backend = start(Some(current_server()), 200, &PIPELINE, Vec::new());
    let client = backend.server.client().await;
    wait_stored(&client, "TELEMETRY", 200, "200 frames parsed").await;
    backend.server.restart();
    let client = backend.server.client().await;
    let before = stored(&client, "TELEMETRY").await;
    wait_stored(
        &client,
        "TELEMETRY",
        before + 400,
        "400 more frames after the restart",
    )
    .await;
    assert_complete(&backend, &client, 0).await;
}

/// A longer run (ignored by default): 500 frames/s while the IO service
/// and the parser are killed (SIGKILL) or stopped (SIGTERM) in turn, 20
/// times; every frame still arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn soak_with_kills() {
    let mut backend = start(None, 500, &PIPELINE, Vec::new());
    let client = backend.server.client().await;
    for cycle in 0..20u64 {
        let before = stored(&client, "TELEMETRY").await;
        wait_stored(&client, "TELEMETRY", before + 500, "500 more frames").await;
        let name = if cycle % 2 == 0 {
            "io_service"
        } else {
            "telemetry_parser"
        };
        if cycle % 4 < 2 {
            backend.restart_killed(name);
        } else {
            backend.restart_gracefully(name);
        }
    }
    let sent = assert_complete(&backend, &client, 0).await;
    println!("soak: {sent} frames, 20 restarts, every frame once");
}
