//! People on the bus as Telestion's web frontend puts them there (issue
//! 26, point 3): `@nats-io/nats-core`'s WebSocket transport (the successor
//! of nats.ws) from Node, signed in as the viewer and the operator that
//! `nats_config` made, on the WebSocket listener of a server with the
//! generated users. The viewer queries and receives telemetry but cannot
//! send a telecommand; the operator can; neither can publish
//! `telecommand.outgoing`, `telecommand.ack.*`, `telemetry.*` or call the
//! JetStream API; an anonymous WebSocket client is refused.
//!
//! Old behaviour: no WebSocket listener and no people's users existed; on
//! the open bus anyone could do all of this.

use std::process::Command;

use backend_tests::secured::{credentials_env, generate, password};
use backend_tests::{Backend, server_binaries};
use serde_json::Value;
use telestion_test::{ServerOptions, free_port, node_packages};

const SERVICES: [&str; 5] = [
    "io_service",
    "telemetry_parser",
    "db_writer",
    "db_query",
    "telecommand",
];

const FORGED: [&str; 6] = [
    "telecommand.outgoing",
    "telecommand.ack.evil",
    "telemetry.parsed",
    "telemetry.raw",
    "$JS.API.STREAM.DELETE.TELEMETRY",
    "$JS.API.INFO",
];

fn run_people(packages: &std::path::Path, ws_url: &str, dir: &std::path::Path) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/frontend/people.mjs");
    // The script runs beside its packages (Node resolves imports from the
    // script's directory).
    let copy = packages.join("people.mjs");
    std::fs::copy(script, &copy).unwrap();
    let mut command = Command::new("node");
    command
        .arg(&copy)
        .env("NATS_WS_URL", ws_url)
        .env("FORGED_SUBJECTS", FORGED.join(","))
        .env("VIEWER_USER", "vera")
        .env("VIEWER_PASS", password(dir, "vera"))
        .env("OPERATOR_USER", "otto")
        .env("OPERATOR_PASS", password(dir, "otto"));
    let mut process = telestion_test::Process::spawn(command);
    let code = process.wait_exit(std::time::Duration::from_secs(180));
    let stdout = process.stdout();
    assert_eq!(
        code,
        Some(0),
        "the frontend script failed:\n{stdout}\n{}",
        process.stderr()
    );
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("no result from the script ({e}):\n{stdout}"))
}

#[test]
fn people_over_websocket_can_do_what_their_role_allows_and_nothing_else() {
    let packages = node_packages("frontend", &["@nats-io/nats-core@3.4.0", "ws@8.23.1"]);
    for (label, server) in server_binaries() {
        let dir = tempfile::tempdir().unwrap();
        let auth = generate(dir.path(), &SERVICES, "otto:operator,vera:viewer");
        let ws_port = free_port();
        let config = format!(
            "{auth}\nwebsocket {{\n  listen: \"127.0.0.1:{ws_port}\"\n  no_tls: true\n}}\n"
        );
        let backend = Backend::start_on(
            ServerOptions::new().binary(&server).config(config),
            20,
            &SERVICES,
            credentials_env(dir.path(), &SERVICES),
        );
        let result = run_people(&packages, &format!("ws://127.0.0.1:{ws_port}"), dir.path());
        let viewer = &result["viewer"];
        let operator = &result["operator"];
        for (who, person) in [("viewer", viewer), ("operator", operator)] {
            assert_eq!(person["count"]["ok"], true, "[{label}] {who}: {person}");
            assert!(
                person["live"]["counter"].is_number(),
                "[{label}] {who} received no telemetry: {person}"
            );
            for subject in FORGED {
                assert_eq!(
                    person["refused"][subject], true,
                    "[{label}] {who} published {subject}: {person}"
                );
            }
        }
        assert_eq!(viewer["telecommand"]["ok"], false, "[{label}] {viewer}");
        assert_eq!(operator["telecommand"]["ok"], true, "[{label}] {operator}");
        assert_eq!(
            operator["telecommand"]["body"]["status"], "confirmed",
            "[{label}] {operator}"
        );
        // Only the operator's command reached the device.
        assert_eq!(backend.device_stat("rate_hz"), 30, "[{label}]");
        assert_eq!(backend.device_stat("commands"), 1, "[{label}]");
        assert!(
            result["anonymous"].as_str().unwrap().starts_with("refused"),
            "[{label}] {result}"
        );
    }
}
