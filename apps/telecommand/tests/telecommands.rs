//! Telecommands end to end: a request on `telecommand.send` goes through
//! the telecommand service, the `TELECOMMANDS` stream and the IO service
//! to the simulated device, and its ack comes back as the reply
//! (`confirmed`). Invalid commands are refused with 400 and their reason,
//! the device's rejection is the reply's status (`refused`), and with the
//! IO service down the reply is a 504 "not confirmed, may still run" (and
//! the command is not run later, when the IO service is back, since its
//! deadline passed). `TELECOMMAND_TIMEOUT` out of its bounds fails the
//! start. (The id as idempotency key: `tests/idempotency.rs`.)
//!
//! Real processes: a JetStream `nats-server`, `device_sim`, `io_service`
//! and `telecommand` (through `backend_tests::Backend`).

use std::time::Duration;

use backend_tests::Backend;
use backend_tests::telecommands::{body, code, send};
use serde_json::{Value, json};
use telestion_test::{WAIT, error_header, request_within};

/// The ack in a successful reply.
fn ack(reply: &async_nats::Message) -> Value {
    let ack = body(reply);
    assert!(ack["id"].as_str().is_some_and(|id| !id.is_empty()), "{ack}");
    ack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telecommands_on_debians_nats_server() {
    let (_, binary) = backend_tests::server_binaries().swap_remove(0);
    telecommands_are_confirmed_refused_rejected_and_time_out(&binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telecommands_on_the_current_nats_server() {
    let (_, binary) = backend_tests::server_binaries().swap_remove(1);
    telecommands_are_confirmed_refused_rejected_and_time_out(&binary).await;
}

/// `TELECOMMAND_TIMEOUT` goes through the one bounded parser: `0ms` (every
/// command would expire), a bare `0`, `3601` and `2h` (beyond an hour) and
/// `999999999999999h` fail the start, naming the key and the bounds.
///
/// Old behaviour: `0ms`, `2h` and `999999999999999h` were accepted; only
/// bare numbers were bounded.
#[test]
fn a_timeout_out_of_bounds_fails_the_start() {
    let server = telestion_test::NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    for value in ["0ms", "0", "3601", "2h", "999999999999999h", "soon"] {
        let mut cmd = telestion_test::service_command(
            backend_tests::binary("telecommand"),
            &server,
            "telecommand",
            data.path(),
        );
        cmd.env("TELECOMMAND_TIMEOUT", value);
        let stderr = telestion_test::assert_start_fails_naming(cmd, "TELECOMMAND_TIMEOUT");
        assert!(
            stderr.contains("100ms") && stderr.contains("1h"),
            "{value}: the bounds are not named:\n{stderr}"
        );
    }
}

async fn telecommands_are_confirmed_refused_rejected_and_time_out(server: &std::path::Path) {
    let env = vec![
        ("telecommand", "TELECOMMAND_TIMEOUT".into(), "2s".into()),
        ("io_service", "DURABLE_BACKOFF".into(), "1".into()),
    ];
    let mut backend = Backend::start_on(
        telestion_test::ServerOptions::new().binary(server),
        10,
        &["io_service", "telecommand"],
        env,
    );
    let client = backend.server.client().await;

    // Round trips.
    let reply = ack(&send(&client, json!({"command": "ping"})).await);
    assert_eq!(reply["status"], "confirmed", "{reply}");
    let reply = ack(&send(&client, json!({"command": "set_rate", "args": {"hz": 50}})).await);
    assert_eq!(reply["status"], "confirmed", "{reply}");
    assert_eq!(backend.device_stat("rate_hz"), 50);
    let first = ack(&send(&client, json!({"command": "reboot", "args": {}})).await);
    let second = ack(&send(&client, json!({"command": "reboot"})).await);
    assert_ne!(first["id"], second["id"], "every command gets its own id");

    // The device rejects set_heater while its fault flag is set.
    backend.control("fault on");
    let heater = json!({"command": "set_heater", "args": {"on": true}});
    let reply = ack(&send(&client, heater.clone()).await);
    assert_eq!(reply["status"], "refused", "{reply}");
    assert!(
        reply["reason"].as_str().unwrap().contains("fault"),
        "{reply}"
    );
    backend.control("fault off");
    let reply = ack(&send(&client, heater).await);
    assert_eq!(reply["status"], "confirmed", "{reply}");
    let executed = backend.device_stat("commands");
    assert_eq!(executed, 6);

    // Invalid commands never reach the device: 400 with the reason.
    for (request, reason) in [
        (json!({"command": "launch"}), "unknown command"),
        (
            json!({"command": "set_rate", "args": {"hz": 0}}),
            "1..=1000",
        ),
        (
            json!({"command": "set_heater", "args": {}}),
            "set_heater needs",
        ),
        (
            json!({"command": "ping", "args": {"x": 1}}),
            "unknown argument",
        ),
        (json!("ping"), "JSON object"),
    ] {
        let reply = send(&client, request.clone()).await;
        assert_eq!(code(&reply).as_deref(), Some("400"), "{request}");
        let error = error_header(&reply).unwrap_or_default();
        assert!(error.contains(reason), "{request}: {error}");
    }
    let reply = request_within(&client, "telecommand.send", "not json", WAIT).await;
    assert_eq!(code(&reply).as_deref(), Some("400"));
    assert_eq!(backend.device_stat("commands"), executed);

    // With the IO service down nobody answers: 504 after the timeout.
    let mut io = backend.services.remove("io_service").unwrap();
    io.signal(libc::SIGTERM);
    assert_eq!(io.wait_exit(WAIT), Some(0), "{}", io.stderr());
    let started = std::time::Instant::now();
    let reply = send(&client, json!({"command": "ping"})).await;
    assert_eq!(
        code(&reply).as_deref(),
        Some("504"),
        "{:?}",
        error_header(&reply)
    );
    assert!(started.elapsed() >= Duration::from_millis(1900));
    let error = error_header(&reply).unwrap();
    assert!(error.contains("not confirmed, may still run"), "{error}");

    // Back up, the IO service drops the expired command instead of running
    // it, and serves new ones.
    let connections = backend.device_stat("connections");
    backend.start_service("io_service");
    telestion_test::eventually(WAIT, "the IO service reconnected", || {
        backend.device_stat("connections") > connections
    })
    .await;
    let reply = ack(&send(&client, json!({"command": "ping"})).await);
    assert_eq!(reply["status"], "confirmed", "{reply}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(backend.device_stat("commands"), executed + 1);
    assert!(
        backend.service("io_service").stderr().contains("expired"),
        "{}",
        backend.service("io_service").stderr()
    );
}
