//! Every log line is read back by serde_json and by Python's `json` (the
//! readers users have), and both recover the body byte for byte, however
//! hostile the body.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use standard_ops::log_line;
use support::{ack, assert_recovered, lines, log_file, ops, raw_lines};
use telestion_test::{NatsServer, health, spawn_ready};

/// Bodies that only lenient parsers accept, or that a reader of the raw
/// embedded JSON would not get back byte for byte.
fn hostile_bodies() -> Vec<Vec<u8>> {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    [
        r#""\ud800""#,
        r#""\udc00\ud800""#,
        r#"{"a":["\udfff"]}"#,
        "1e400",
        "-1e400",
        "[1e999]",
        "1e-400",
        "NaN",
        "Infinity",
        "-Infinity",
        " {\"a\":1}",
        "{\"a\":1} ",
        "\t1",
        "1\t",
        "[1,\n2]",
        "{\"a\":\r\n1}",
        "\n",
        "\u{feff}{}",
        "{\"a\":1,\"a\":2}",
        "123456789012345678901234567890",
        "-0",
        "1E+2",
        "\"\u{2028}\u{2029}\"",
        "\"tab\there\"",
        "\"nul\u{0}\"",
        "{\"a\":1}{\"b\":2}",
        "123abc",
        "\"\\u0000\"",
        "",
        "[\"\\ud83d\\ude00\"]",
    ]
    .iter()
    .map(|body| body.as_bytes().to_vec())
    .chain([
        deep(126).into_bytes(),
        deep(127).into_bytes(),
        vec![0xff, 0xfe, b'{', b'}'],
        b"\"\xed\xa0\x80\"".to_vec(),
        "9".repeat(400).into_bytes(),
    ])
    .collect()
}

/// Hostile bodies sent to the running service: every line it writes is
/// read back by serde_json (as a value and as raw text) and by Python, and
/// gives back exactly the body sent.
///
/// Old behaviour: `"\ud800"` and `1e400` were embedded as JSON, so
/// serde_json could not read their lines (`lone leading surrogate`,
/// `number out of range`); `[1,\n2]` was compacted to `[1,2]`, so the raw
/// JSON was not the body sent.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_bodies_are_logged_so_every_reader_recovers_them() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let _ops = spawn_ready(ops(&server, data.path(), &[]));
    let client = server.client().await;
    let bodies = hostile_bodies();
    for body in &bodies {
        let reply = ack(&client, "__telestion__/log/hostile", body.clone()).await;
        assert_eq!(reply, serde_json::json!({"ok": true}), "{body:?}");
    }
    let written = raw_lines(&log_file(data.path(), "hostile"));
    assert_recovered(&written, &bodies);
    assert_eq!(lines(data.path(), "hostile").len(), bodies.len());
    assert_eq!(health(&client, "__telestion__/health").await["errors"], 0);
}

/// Bodies a hostile client might send: JSON-ish text with surrogate
/// escapes, out-of-range numbers, surrounding whitespace and line breaks,
/// arbitrary JSON values (compact and pretty), any text, any bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let json_like = prop_oneof![
        "\"(\\\\u[dD][89a-fA-F][0-9a-fA-F]{2}){1,3}\"",
        "-?[0-9]{1,3}[eE][+-]?[0-9]{1,4}",
        "-?[0-9]{1,400}(\\.[0-9]{1,20})?",
        "[ \\t\\r\\n]{0,2}\\{\"[a-z]{0,3}\":[0-9]{1,3}\\}[ \\t\\r\\n]{0,2}",
        "\\[[0-9, \\t\\n]{0,12}\\]",
        "(NaN|-?Infinity|true|false|null)[ \\n]?",
    ];
    prop_oneof![
        json_like.prop_map(String::into_bytes),
        telestion_test::json_value().prop_map(|v| v.to_string().into_bytes()),
        telestion_test::json_value()
            .prop_map(|v| serde_json::to_string_pretty(&v).unwrap().into_bytes()),
        ".{0,24}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..32),
    ]
}

/// The line format for any body: serde_json and Python read every line
/// and recover the body byte for byte (one Python run per batch of bodies).
#[test]
fn every_line_parses_back_to_its_body() {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&prop::collection::vec(body(), 1..64), |bodies| {
            let written: Vec<String> = bodies
                .iter()
                .map(|body| log_line("__telestion__/log/p", body, std::time::SystemTime::now()))
                .collect();
            assert_recovered(&written, &bodies);
            Ok(())
        })
        .unwrap();
}
