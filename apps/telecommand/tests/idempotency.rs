//! The id is a telecommand's idempotency key, from the sender to the
//! device (issue 25, point 6), against Debian's `nats-server` and the
//! current release:
//!
//! - a device stopped for 7 s (SIGSTOP) while a command is on its way: the
//!   reply is a 504 that says "not confirmed, may still run", the command
//!   reaches the device once and runs once when it resumes, and asking
//!   again with the same id answers `confirmed` without running it again;
//! - an id reused for another command is refused with 409 and nothing
//!   runs; the same command with that id answers its recorded outcome;
//! - a message on `telecommand.outgoing` that reuses an id for another
//!   command (a producer that bypasses the telecommand service) is
//!   rejected by the IO service and never reaches the device.
//!
//! Old behaviour: the 504 said "no ack from the device within 5s" and the
//! IO service sent the command again while the device was stopped (it
//! received it twice); a request could not carry an id; a reused id with
//! another command was acknowledged by the device (with the earlier
//! command's ack) but not run.
//!
//! Real processes: a JetStream `nats-server`, `device_sim`, `io_service`
//! and `telecommand` (through `backend_tests::Backend`).

use std::path::Path;
use std::time::{Duration, Instant};

use backend_tests::Backend;
use backend_tests::telecommands::{body, code, send};
use serde_json::{Value, json};
use telestion_test::{WAIT, error_header, eventually};

/// How often the device received a telecommand frame with `id` (it logs
/// each one).
fn received(backend: &Backend, id: &str) -> usize {
    let needle = format!("device_sim: telecommand {id} ");
    backend.device.stderr().matches(&needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_idempotency_keys_on_debians_nats_server() {
    let (_, binary) = backend_tests::server_binaries().swap_remove(0);
    ids_are_idempotency_keys(&binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_idempotency_keys_on_the_current_nats_server() {
    let (_, binary) = backend_tests::server_binaries().swap_remove(1);
    ids_are_idempotency_keys(&binary).await;
}

async fn ids_are_idempotency_keys(server: &Path) {
    // The defaults (TELECOMMAND_TIMEOUT 5 s, ACK_TIMEOUT 3 s) and a quick
    // redelivery, as in the report: the old IO service sent the command
    // again 4 s after the first time, while the device was still stopped.
    let env = vec![("io_service", "DURABLE_BACKOFF".into(), "1".into())];
    let backend = Backend::start_on(
        telestion_test::ServerOptions::new().binary(server),
        10,
        &["io_service", "telecommand"],
        env,
    );
    let client = backend.server.client().await;

    // Without an id the service assigns one.
    let reply = body(&send(&client, json!({"command": "ping"})).await);
    assert_eq!(reply["status"], "confirmed", "{reply}");
    assert!(reply["id"].as_str().is_some_and(|id| !id.is_empty()));

    // The device stopped for 7 s while a command is on its way.
    let id = "stopped-7s";
    let commands = backend.device_stat("commands");
    backend.device.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    let reply = send(
        &client,
        json!({"id": id, "command": "set_rate", "args": {"hz": 20}}),
    )
    .await;
    let resume_at = stopped + Duration::from_secs(7);
    tokio::time::sleep(resume_at.saturating_duration_since(Instant::now())).await;
    backend.device.signal(libc::SIGCONT);
    assert_eq!(code(&reply).as_deref(), Some("504"), "{reply:?}");
    let error = error_header(&reply).unwrap();
    assert!(error.contains("not confirmed, may still run"), "{error}");
    assert!(error.contains(id), "{error}");
    eventually(WAIT, "the command ran when the device resumed", || {
        backend.device_stat("rate_hz") == 20
    })
    .await;
    // Time for a second delivery, had there been one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(received(&backend, id), 1, "{}", backend.device.stderr());
    assert_eq!(backend.device_stat("commands"), commands + 1);
    // Asking again with the same id tells the outcome; nothing runs again.
    let reply = body(
        &send(
            &client,
            json!({"id": id, "command": "set_rate", "args": {"hz": 20}}),
        )
        .await,
    );
    assert_eq!(reply["status"], "confirmed", "{reply}");
    assert_eq!(reply["repeated"], true, "{reply}");
    assert_eq!(reply["id"], id, "{reply}");
    assert_eq!(received(&backend, id), 1);
    assert_eq!(backend.device_stat("commands"), commands + 1);

    // An id reused for another command: 409, nothing runs.
    let id = "reused-id";
    let reply = body(&send(&client, json!({"id": id, "command": "ping"})).await);
    assert_eq!(reply["status"], "confirmed", "{reply}");
    let commands = backend.device_stat("commands");
    for other in [
        json!({"id": id, "command": "reboot"}),
        json!({"id": id, "command": "set_heater", "args": {"on": true}}),
    ] {
        let reply = send(&client, other.clone()).await;
        assert_eq!(code(&reply).as_deref(), Some("409"), "{other}");
        let error = error_header(&reply).unwrap();
        assert!(error.contains("already used"), "{error}");
    }
    let reply = body(&send(&client, json!({"id": id, "command": "ping", "args": {}})).await);
    assert_eq!(reply["status"], "confirmed", "{reply}");
    assert_eq!(reply["repeated"], true, "{reply}");
    assert_eq!(backend.device_stat("commands"), commands);
    assert_eq!(received(&backend, id), 1);

    // Below the telecommand service: a message reusing the id for another
    // command (another message id, so the stream stores it) is refused by
    // the IO service and never reaches the device.
    let mut acks = client
        .subscribe(format!("telecommand.ack.{id}"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "another-producer-1");
    let outgoing = json!({"id": id, "command": "reboot", "args": {}});
    js.publish_with_headers("telecommand.outgoing", headers, outgoing.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let ack = telestion_test::next_message(&mut acks, WAIT).await;
    let ack: Value = serde_json::from_slice(&ack.payload).unwrap();
    assert_eq!(ack["status"], "rejected", "{ack}");
    assert_eq!(ack["conflict"], true, "{ack}");
    assert!(
        ack["reason"].as_str().unwrap().contains("already used"),
        "{ack}"
    );
    assert_eq!(backend.device_stat("commands"), commands);
    assert_eq!(received(&backend, id), 1);
}
