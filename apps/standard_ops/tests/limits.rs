//! When the system says no: a full disk or the file size limit leave no
//! torn line (the partial line is cut off, the request refused) and do not
//! end the process; open files stay bounded, and running low on
//! descriptors never costs the NATS connection.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{ack, lines, log_file, ops, raw_lines};
use telestion_test::{
    NatsServer, Resource, ServerOptions, Tmpfs, WAIT, health, limit, spawn_ready,
};

/// Sends `body` to `category` until a request is refused (at most
/// `attempts`); returns how many were accepted and the refusal.
async fn fill(
    client: &async_nats::Client,
    category: &str,
    body: &str,
    attempts: usize,
) -> (usize, Value) {
    let subject = format!("__telestion__/log/{category}");
    for accepted in 0..attempts {
        let reply = ack(client, &subject, body.to_owned()).await;
        if reply["ok"] != true {
            return (accepted, reply);
        }
    }
    panic!(
        "{attempts} lines of {} bytes never filled the disk",
        body.len()
    );
}

/// Asserts that the file holds exactly `count` complete lines, all readable.
fn assert_whole_lines(data: &Path, category: &str, count: usize) {
    let written = raw_lines(&log_file(data, category));
    assert_eq!(written.len(), count, "one line per accepted request");
    for line in &written {
        support::serde_body(line);
    }
}

/// `ulimit -f` (4 KiB): the line that would cross it is refused with
/// EFBIG and cut off; the process lives on (SIGXFSZ is ignored) and keeps
/// answering.
///
/// Old behaviour: SIGXFSZ killed the process at the first write past the
/// limit, leaving a torn line.
#[tokio::test(flavor = "multi_thread")]
async fn the_file_size_limit_is_an_error_reply_not_a_crash() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = ops(&server, data.path(), &[]);
    limit(&mut cmd, Resource::FileSize, 4096);
    let mut service = spawn_ready(cmd);
    let client = server.client().await;

    let body = "x".repeat(300);
    let (accepted, refusal) = fill(&client, "big", &body, 40).await;
    assert!(accepted > 0);
    support::assert_refused(&refusal, "too large");
    // Again: still refused, the file unchanged.
    support::assert_refused(
        &ack(&client, "__telestion__/log/big", body.clone()).await,
        "too large",
    );
    assert!(service.is_running(), "{}", service.stderr());
    assert!(
        std::fs::metadata(log_file(data.path(), "big"))
            .unwrap()
            .len()
            <= 4096
    );
    assert_whole_lines(data.path(), "big", accepted);
    assert_eq!(health(&client, "__telestion__/health").await["errors"], 2);
    assert_eq!(
        ack(&client, "__telestion__/log/small", "fits").await["ok"],
        true
    );
}

/// A full disk (a 64 KiB tmpfs): the line that does not fit is refused and
/// cut off, so the file still ends with a complete line; once there is room
/// again the next line starts on a line of its own.
///
/// Old behaviour: the partial line stayed, the request got an error, and
/// the next line was glued onto the torn one (neither could be read).
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_leaves_no_torn_line() {
    let disk = Tmpfs::mount(64 * 1024);
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 16 * 1024]).unwrap();
    let data = disk.path().join("data");
    let server = NatsServer::start();
    let _ops = spawn_ready(ops(&server, &data, &[]));
    let client = server.client().await;

    let body = "y".repeat(1000);
    let (accepted, refusal) = fill(&client, "full", &body, 200).await;
    support::assert_refused(&refusal, "No space left");
    assert_whole_lines(&data, "full", accepted);

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(
        ack(&client, "__telestion__/log/full", "room again").await,
        json!({"ok": true})
    );
    assert_whole_lines(&data, "full", accepted + 1);
    assert_eq!(lines(&data, "full")[accepted]["text"], "room again");
    assert_eq!(health(&client, "__telestion__/health").await["errors"], 1);
}

/// `MAX_OPEN_FILES=4`: after writing to 12 categories at most 4 log files
/// are open; a category whose file was closed is opened again.
///
/// Old behaviour: one descriptor per category, kept forever.
#[tokio::test(flavor = "multi_thread")]
async fn open_log_files_are_bounded_by_max_open_files() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let service = spawn_ready(ops(&server, data.path(), &[("MAX_OPEN_FILES", "4")]));
    let client = server.client().await;
    let logs = data.path().join("logs");
    for round in 0..2 {
        for n in 0..12 {
            let subject = format!("__telestion__/log/c{n}");
            assert_eq!(ack(&client, &subject, format!("{round}")).await["ok"], true);
        }
    }
    let open = service
        .open_files()
        .into_iter()
        .filter(|path| path.parent() == Some(logs.as_path()))
        .count();
    assert!(open <= 4, "{open} log files open");
    for n in 0..12 {
        assert_eq!(lines(data.path(), &format!("c{n}")).len(), 2);
    }
}

/// `ulimit -n 64` and 200 categories: every line is written (the least
/// recently used files are closed), and after the NATS server restarts the
/// service reconnects and goes on logging.
///
/// Old behaviour: one descriptor per category forever: after about 50
/// categories every new one failed with EMFILE ("Too many open files"),
/// and after a server restart the service could not reconnect at all.
#[tokio::test(flavor = "multi_thread")]
async fn few_descriptors_and_many_categories_keep_the_connection() {
    let port = telestion_test::free_port();
    let mut server = NatsServer::start_with(ServerOptions::new().port(port));
    let data = tempfile::tempdir().unwrap();
    let mut cmd = ops(&server, data.path(), &[]);
    limit(&mut cmd, Resource::OpenFiles, 64);
    let mut service = spawn_ready(cmd);
    let client = server.client().await;
    for n in 0..200 {
        let reply = ack(&client, &format!("__telestion__/log/many{n}"), "first").await;
        assert_eq!(reply, json!({"ok": true}), "category {n}");
    }
    assert!(service.open_files().len() <= 64);

    server.restart();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let reply = tokio::time::timeout(
            Duration::from_secs(2),
            client.request("__telestion__/log/many0", "after the restart".into()),
        )
        .await;
        if let Ok(Ok(reply)) = reply {
            let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
            assert_eq!(reply, json!({"ok": true}));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not reconnect; stderr:\n{}",
            service.stderr()
        );
        assert!(service.is_running(), "{}", service.stderr());
    }
    for n in (0..200).step_by(7) {
        let reply = ack(&client, &format!("__telestion__/log/many{n}"), "second").await;
        assert_eq!(reply, json!({"ok": true}), "category {n}");
    }
    for n in 0..200 {
        let expected = 1 + usize::from(n % 7 == 0) + usize::from(n == 0);
        assert_eq!(
            lines(data.path(), &format!("many{n}")).len(),
            expected,
            "many{n}"
        );
    }
    // The one error is the disconnect of the server's restart (messages in
    // flight may have been lost): nothing else failed.
    assert_eq!(health(&client, "__telestion__/health").await["errors"], 1);
}

/// `LOCK_TIMEOUT` and `MAX_OPEN_FILES` out of range or not numbers fail the
/// start (exit 1), naming the key.
#[test]
fn bad_limits_fail_the_start_naming_the_key() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("LOCK_TIMEOUT", "0"),
        ("LOCK_TIMEOUT", "-1"),
        ("LOCK_TIMEOUT", "soon"),
        ("LOCK_TIMEOUT", "0ms"),
        ("LOCK_TIMEOUT", "3601"),
        ("LOCK_TIMEOUT", "2h"),
        ("LOCK_TIMEOUT", "999999999999999h"),
        ("MAX_OPEN_FILES", "0"),
        ("MAX_OPEN_FILES", "many"),
    ] {
        let cmd = ops(&server, data.path(), &[(key, value)]);
        telestion_test::assert_start_fails_naming(cmd, key);
    }
}
