//! Every duration key of the example backend goes through one parser with
//! bounds (issue 25, point 6): a value out of bounds (`0ms`, a bare `0`,
//! `2h`, `999999999999999h`) or no duration at all fails the start with
//! exit code 1 and a message naming the key and its bounds, and a value
//! within them starts. (`LOCK_TIMEOUT` of standard_ops and `HEALTH_WAIT_MS`
//! and `WATCH` of the health tool are tested with those apps.)
//!
//! Old behaviour: `TELECOMMAND_TIMEOUT=0ms`, `2h` and `999999999999999h`,
//! `ACK_TIMEOUT=0ms` and `LINK_BACKOFF_MAX=0ms` (a reconnect loop without
//! a pause) and `WEB_REQUEST_TIMEOUT_MS=0` (every request timed out) were
//! accepted.

use backend_tests::binary;
use telestion_test::{NatsServer, ServerOptions, assert_start_fails_naming, service_command};

/// A duration key and what it must do.
struct Key {
    service: &'static str,
    key: &'static str,
    /// The bounds as the message names them.
    bounds: [&'static str; 2],
    refused: &'static [&'static str],
    accepted: &'static str,
}

const KEYS: [Key; 4] = [
    Key {
        service: "telecommand",
        key: "TELECOMMAND_TIMEOUT",
        bounds: ["100ms", "1h"],
        refused: &["0ms", "0", "3601", "2h", "999999999999999h", "soon"],
        accepted: "2.5",
    },
    Key {
        service: "io_service",
        key: "ACK_TIMEOUT",
        bounds: ["100ms", "10m"],
        refused: &["0ms", "11m", "999999999999999h", "3"],
        accepted: "500ms",
    },
    Key {
        service: "io_service",
        key: "LINK_BACKOFF_MAX",
        bounds: ["100ms", "10m"],
        refused: &["0ms", "2h", "999999999999999h"],
        accepted: "1m",
    },
    Key {
        service: "web",
        key: "WEB_REQUEST_TIMEOUT_MS",
        bounds: ["100ms", "1h"],
        refused: &["0", "0ms", "3600001", "999999999999999h"],
        accepted: "2500",
    },
];

#[test]
fn duration_keys_out_of_bounds_fail_the_start_naming_key_and_bounds() {
    let server = NatsServer::start_with(ServerOptions::new().jetstream());
    let data = tempfile::tempdir().unwrap();
    let command = |service: &str, key: &str, value: &str| {
        let mut cmd = service_command(binary(service), &server, service, data.path());
        cmd.env("DEVICE_ADDR", "127.0.0.1:9")
            .env("WEB_ADDR", "127.0.0.1:0")
            .env(key, value);
        cmd
    };
    for Key {
        service,
        key,
        bounds: [min, max],
        refused,
        accepted,
    } in KEYS
    {
        for value in refused {
            let stderr = assert_start_fails_naming(command(service, key, value), key);
            assert!(
                stderr.contains(min) && stderr.contains(max),
                "{key}={value}: the bounds {min} and {max} are not named:\n{stderr}"
            );
        }
        let mut process = telestion_test::spawn_ready(command(service, key, accepted));
        process.signal(libc::SIGTERM);
        assert_eq!(
            process.wait_exit(telestion_test::WAIT),
            Some(0),
            "{key}={accepted}: {}",
            process.stderr()
        );
    }
}
