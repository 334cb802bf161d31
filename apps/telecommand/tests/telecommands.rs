//! Telecommands end to end: a request on `telecommand.send` goes through
//! the telecommand service, the `TELECOMMANDS` stream and the IO service
//! to the simulated device, and its ack comes back as the reply. Invalid
//! commands are refused with 400 and their reason, the device's rejection
//! is the reply's status, and with the IO service down the reply is a 504
//! (and the command is not run later, when the IO service is back).
//!
//! Real processes: a JetStream `nats-server`, `device_sim`, `io_service`
//! and `telecommand` (through `backend_tests::Backend`).

use std::time::Duration;

use backend_tests::Backend;
use serde_json::{Value, json};
use telestion_test::{WAIT, error_header, request_within};

async fn send(client: &async_nats::Client, request: Value) -> async_nats::Message {
    request_within(
        client,
        "telecommand.send",
        request.to_string(),
        Duration::from_secs(20),
    )
    .await
}

fn code(reply: &async_nats::Message) -> Option<String> {
    reply
        .headers
        .as_ref()?
        .get("Nats-Service-Error-Code")
        .map(|v| v.as_str().to_owned())
}

/// The ack in a successful reply.
fn ack(reply: &async_nats::Message) -> Value {
    assert_eq!(
        error_header(reply),
        None,
        "error reply: {}",
        String::from_utf8_lossy(&reply.payload)
    );
    let ack: Value = serde_json::from_slice(&reply.payload).expect("the reply is not JSON");
    assert!(ack["id"].as_str().is_some_and(|id| !id.is_empty()), "{ack}");
    ack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telecommands_on_debians_nats_server() {
    telecommands_are_acknowledged_rejected_refused_and_time_out(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telecommands_on_the_current_nats_server() {
    let path = std::env::var_os("NATS_SERVER_CURRENT_BIN").unwrap_or_else(|| {
        panic!(
            "NATS_SERVER_CURRENT_BIN is not set: run `. scripts/ensure-nats-server-current.sh` \
             or point it at a nats-server binary of the current release"
        )
    });
    telecommands_are_acknowledged_rejected_refused_and_time_out(Some(path.into())).await;
}

async fn telecommands_are_acknowledged_rejected_refused_and_time_out(
    server: Option<std::path::PathBuf>,
) {
    let env = vec![
        ("telecommand", "TELECOMMAND_TIMEOUT".into(), "2s".into()),
        ("io_service", "DURABLE_BACKOFF".into(), "1".into()),
    ];
    let mut backend = Backend::start_with(10, &[], env);
    if let Some(binary) = server {
        backend.server = telestion_test::NatsServer::start_with(
            telestion_test::ServerOptions::new()
                .jetstream()
                .binary(binary),
        );
    }
    backend.start_service("io_service");
    backend.start_service("telecommand");
    let client = backend.server.client().await;

    // Round trips.
    let reply = ack(&send(&client, json!({"command": "ping"})).await);
    assert_eq!(reply["status"], "acknowledged", "{reply}");
    let reply = ack(&send(&client, json!({"command": "set_rate", "args": {"hz": 50}})).await);
    assert_eq!(reply["status"], "acknowledged", "{reply}");
    assert_eq!(backend.device_stat("rate_hz"), 50);
    let first = ack(&send(&client, json!({"command": "reboot", "args": {}})).await);
    let second = ack(&send(&client, json!({"command": "reboot"})).await);
    assert_ne!(first["id"], second["id"], "every command gets its own id");

    // The device rejects set_heater while its fault flag is set.
    backend.control("fault on");
    let heater = json!({"command": "set_heater", "args": {"on": true}});
    let reply = ack(&send(&client, heater.clone()).await);
    assert_eq!(reply["status"], "rejected", "{reply}");
    assert!(
        reply["reason"].as_str().unwrap().contains("fault"),
        "{reply}"
    );
    backend.control("fault off");
    let reply = ack(&send(&client, heater).await);
    assert_eq!(reply["status"], "acknowledged", "{reply}");
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
    assert!(error_header(&reply).unwrap().contains("no ack"));

    // Back up, the IO service drops the expired command instead of running
    // it, and serves new ones.
    let connections = backend.device_stat("connections");
    backend.start_service("io_service");
    telestion_test::eventually(WAIT, "the IO service reconnected", || {
        backend.device_stat("connections") > connections
    })
    .await;
    let reply = ack(&send(&client, json!({"command": "ping"})).await);
    assert_eq!(reply["status"], "acknowledged", "{reply}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(backend.device_stat("commands"), executed + 1);
    assert!(
        backend.service("io_service").stderr().contains("expired"),
        "{}",
        backend.service("io_service").stderr()
    );
}
