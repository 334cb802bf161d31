//! The parser binary against a real JetStream server, fed by hand on
//! `telemetry.raw`: good frames become the contract JSON on
//! `telemetry.parsed`, once each even when a raw frame arrives twice under
//! two ids; every kind of bad frame is rejected with its reason, counted
//! in health and not retried; SIGTERM exits 0.

use std::time::Duration;

use async_nats::jetstream;
use backend_protocol::{Frame, TelecommandAck, Telemetry, encode_body};
use futures::StreamExt;
use serde_json::{Value, json};
use telestion_test::{
    NatsServer, WAIT, eventually_async, next_message, service_command, spawn_ready,
};

fn frame(counter: u32, voltage_v: f32) -> Vec<u8> {
    encode_body(&Frame::Telemetry(Telemetry {
        session: 3,
        counter,
        time_ms: 1_750_000_000_000 + u64::from(counter),
        temperature_c: 21.5,
        voltage_v,
        current_a: 0.25,
        status: 1,
    }))
}

async fn publish(js: &jetstream::Context, id: &str, body: Vec<u8>) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    js.publish_with_headers("telemetry.raw", headers, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn parsed(js: &jetstream::Context) -> Vec<Value> {
    let Ok(mut stream) = js.get_stream("TELEMETRY").await else {
        return Vec::new();
    };
    let total = stream.info().await.unwrap().state.messages as usize;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while out.len() < total {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("cannot read TELEMETRY")
            .unwrap()
            .unwrap();
        out.push(serde_json::from_slice(&message.payload).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_are_parsed_once_and_bad_ones_rejected() {
    let server = NatsServer::start_jetstream();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = service_command(
        env!("CARGO_BIN_EXE_telemetry_parser"),
        &server,
        "telemetry_parser",
        data.path(),
    );
    cmd.env("DURABLE_ACK_WAIT", "2");
    let mut parser = spawn_ready(cmd);
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let mut rejected = client.subscribe("telemetry.rejected").await.unwrap();
    client.flush().await.unwrap();

    for counter in 0..3 {
        publish(&js, &format!("raw-3-{counter}"), frame(counter, 28.1)).await;
    }
    // The same frame again under another id (the device resent it after
    // the stream's duplicate window): parsed once all the same.
    publish(&js, "raw-3-1-again", frame(1, 28.1)).await;

    let mut bad_checksum = frame(9, 28.1);
    bad_checksum[4] ^= 0x10;
    let ack = encode_body(&Frame::TelecommandAck(TelecommandAck {
        id: "x".into(),
        accepted: true,
        reason: None,
    }));
    let bad = [
        (bad_checksum, "bad checksum"),
        (frame(10, f32::NAN), "voltage_v is not a finite number"),
        (frame(11, f32::INFINITY), "voltage_v is not a finite number"),
        (ack, "not a telemetry frame"),
        (vec![1], "truncated"),
        (vec![0; 600], "too long"),
        (vec![0xff; 40], "bad checksum"),
    ];
    for (i, (body, _)) in bad.iter().enumerate() {
        publish(&js, &format!("bad-{i}"), body.clone()).await;
    }
    let mut reasons = Vec::new();
    for _ in 0..bad.len() {
        let message = next_message(&mut rejected, Duration::from_secs(10)).await;
        let value: Value = serde_json::from_slice(&message.payload).unwrap();
        reasons.push(value);
    }
    // Up to 16 frames are parsed at once: match them in any order.
    for (body, reason) in &bad {
        let found = reasons.iter().position(|r| {
            r["bytes"] == body.len() && r["reason"].as_str().unwrap().contains(reason)
        });
        let Some(found) = found else {
            panic!(
                "no rejection of {} bytes for {reason:?} in {reasons:?}",
                body.len()
            );
        };
        reasons.remove(found);
    }

    eventually_async(WAIT, "3 frames parsed", || async {
        parsed(&js).await.len() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut rows = parsed(&js).await;
    rows.sort_by_key(|row| row["counter"].as_u64());
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        rows[1],
        json!({"session": 3, "counter": 1, "time_ms": 1_750_000_000_001u64,
               "temperature_c": 21.5, "voltage_v": 28.1, "current_a": 0.25, "status": 1})
    );

    // Rejections are counted in health, and none is retried: every raw
    // message is acknowledged.
    let health = telestion_test::health(&client, telestion::health::SUBJECT).await;
    assert_eq!(health["errors_total"], bad.len(), "{health}");
    eventually_async(WAIT, "every raw frame acknowledged", || async {
        let mut consumer: jetstream::consumer::PullConsumer = js
            .get_stream("TELEMETRY_RAW")
            .await
            .unwrap()
            .get_consumer("telemetry_parser_parse")
            .await
            .unwrap();
        let info = consumer.info().await.unwrap();
        info.num_ack_pending == 0 && info.num_pending == 0 && info.num_redelivered == 0
    })
    .await;

    parser.signal(libc::SIGTERM);
    assert_eq!(parser.wait_exit(WAIT), Some(0), "{}", parser.stderr());
}
