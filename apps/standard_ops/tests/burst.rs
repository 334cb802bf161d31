//! A burst larger than the subscription's buffer, at default settings, is
//! logged whole: not one line lost, every line once and in order.

mod support;

use std::time::{Duration, Instant};

use support::{log_file, ops};
use telestion_test::{NatsServer, health, spawn_ready};

/// Lines in the burst: three times the framework's default subscription
/// buffer (65,536 messages), within the service's own default (262,144).
const BURST: usize = 200_000;

/// The number of the first message.
const FIRST: usize = 100_000;

/// 200,000 messages of 128 B published back to back on one category, with
/// every setting at its default: each is logged exactly once, in order, and
/// health counts no error (a dropped message would be a slow-consumer
/// error there).
///
/// Old behaviour: one blocking job, `openat` and `fstat` per line (about
/// 20,000 lines/s): about two thirds of the burst was dropped by the
/// client as a slow consumer; with one writer per category (about 300,000
/// lines/s in release) still about 25,000 lines, until the service took a
/// subscription buffer of its own (262,144 messages).
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_at_default_settings_loses_no_line() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let _ops = spawn_ready(ops(&server, data.path(), &[]));
    let client = server.client().await;

    let subject = "__telestion__/log/burst";
    for n in 0..BURST {
        // 128 B of JSON (six digits without leading zeros):
        // {"n":123456,"pad":"xx...x"}
        let body = format!("{{\"n\":{},\"pad\":\"{}\"}}", FIRST + n, "x".repeat(107));
        assert_eq!(body.len(), 128);
        client.publish(subject, body.into()).await.unwrap();
    }
    client.flush().await.unwrap();

    let file = log_file(data.path(), "burst");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut count = 0;
    while Instant::now() < deadline {
        count = std::fs::read(&file)
            .map(|bytes| bytes.iter().filter(|b| **b == b'\n').count())
            .unwrap_or(0);
        if count >= BURST {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report = health(&client, "__telestion__/health").await;
    assert_eq!(count, BURST, "lines logged; health: {report}");
    let text = std::fs::read_to_string(&file).unwrap();
    for (expected, line) in text.lines().enumerate() {
        let prefix = format!("\"json\":{{\"n\":{},", FIRST + expected);
        assert!(line.contains(&prefix), "line {expected}: {line}");
    }
    assert_eq!(report["errors"], 0, "{report}");
}
