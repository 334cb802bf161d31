//! Writes never leave `$DATA_DIR/logs`: symbolic links are never followed
//! (for a file or for the log directory), and what is not a regular file is
//! refused without blocking. Each refusal is an error reply, counted in
//! health, and writes nothing anywhere.

mod support;

use std::os::unix::fs::symlink;
use std::time::Duration;

use support::{ack, assert_refused, lines, log_file, ops};
use telestion_test::{NatsServer, health, paths_below, request_within, spawn_ready};

/// `logs/evil.log -> <outside>/target` and a dangling
/// `logs/dangling.log -> <outside>/new` are refused; the target keeps its
/// content and no file appears outside.
///
/// Old behaviour: the target was appended to and the request answered
/// `{"ok": true}`; the dangling link created `<outside>/new`.
#[tokio::test(flavor = "multi_thread")]
async fn symlinked_log_files_are_refused_and_nothing_outside_changes() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("target");
    std::fs::write(&target, "keep me\n").unwrap();
    std::fs::create_dir(data.path().join("logs")).unwrap();
    symlink(&target, log_file(data.path(), "evil")).unwrap();
    symlink(
        outside.path().join("new"),
        log_file(data.path(), "dangling"),
    )
    .unwrap();
    let _ops = spawn_ready(ops(&server, data.path(), &[]));
    let client = server.client().await;

    for category in ["evil", "dangling", "evil"] {
        let subject = format!("__telestion__/log/{category}");
        assert_refused(&ack(&client, &subject, "secret").await, "symbolic link");
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
    assert_eq!(paths_below(outside.path()), std::slice::from_ref(&target));
    assert!(log_file(data.path(), "evil").is_symlink());
    assert_eq!(health(&client, "__telestion__/health").await["errors"], 3);
    // Other categories are not affected.
    let reply = ack(&client, "__telestion__/log/fine", "ok").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(lines(data.path(), "fine").len(), 1);
}

/// A `logs` directory that is a symbolic link fails the start (exit 1,
/// naming DATA_DIR and the link); one swapped in while the service runs is
/// refused for every message. The link's target stays empty throughout.
///
/// Old behaviour: the link was followed; the service started and wrote its
/// files into the target.
#[tokio::test(flavor = "multi_thread")]
async fn a_symlinked_log_directory_is_never_followed() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let logs = data.path().join("logs");
    symlink(outside.path(), &logs).unwrap();
    let stderr =
        telestion_test::assert_start_fails_naming(ops(&server, data.path(), &[]), "DATA_DIR");
    assert!(stderr.contains(&format!("{logs:?}")), "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(paths_below(outside.path()).is_empty());

    // Swapped in while running: the real directory moves away and the link
    // takes its place.
    std::fs::remove_file(&logs).unwrap();
    let _ops = spawn_ready(ops(&server, data.path(), &[]));
    let client = server.client().await;
    assert_eq!(
        ack(&client, "__telestion__/log/before", "1").await["ok"],
        true
    );
    std::fs::rename(&logs, data.path().join("logs.old")).unwrap();
    symlink(outside.path(), &logs).unwrap();
    for category in ["before", "after"] {
        let subject = format!("__telestion__/log/{category}");
        assert_refused(&ack(&client, &subject, "2").await, "symbolic link");
    }
    assert!(
        paths_below(outside.path()).is_empty(),
        "{:?}",
        paths_below(outside.path())
    );
    assert_eq!(
        std::fs::read_to_string(data.path().join("logs.old/before.log"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    assert_eq!(health(&client, "__telestion__/health").await["errors"], 2);
}

/// A FIFO at `logs/<category>.log` (with or without a reader), a directory
/// and a socket there are refused at once; health and other categories
/// keep answering, and nothing is written into the FIFO.
///
/// Old behaviour: opening the FIFO without a reader blocked an async worker
/// while holding the global lock, so the service stopped answering
/// anything (health included); with a reader, the line went into the FIFO.
#[tokio::test(flavor = "multi_thread")]
async fn fifos_and_other_non_regular_files_are_refused_without_blocking() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let logs = data.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let fifo = log_file(data.path(), "fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir(log_file(data.path(), "dir")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(log_file(data.path(), "socket")).unwrap();
    let _ops = spawn_ready(ops(&server, data.path(), &[]));
    let client = server.client().await;

    let answer = Duration::from_secs(10);
    let reply = request_within(&client, "__telestion__/log/fifo", "no reader", answer).await;
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_refused(&reply, "FIFO");
    assert_eq!(health(&client, "__telestion__/health").await["errors"], 1);

    // With a reader: still refused, and the reader gets nothing.
    use std::os::unix::fs::OpenOptionsExt;
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    assert_refused(
        &ack(&client, "__telestion__/log/fifo", "a reader").await,
        "FIFO",
    );
    let mut got = Vec::new();
    let read = std::io::Read::read_to_end(&mut reader, &mut got);
    assert!(got.is_empty(), "the FIFO received {got:?} ({read:?})");

    assert_refused(
        &ack(&client, "__telestion__/log/dir", "x").await,
        "directory",
    );
    assert_refused(
        &ack(&client, "__telestion__/log/socket", "x").await,
        "socket",
    );
    assert_eq!(
        ack(&client, "__telestion__/log/other", "x").await["ok"],
        true
    );
    let report = health(&client, "__telestion__/health").await;
    assert_eq!(report["errors"], 4, "{report}");
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["dir.log", "fifo.log", "other.log", "socket.log"]);
    assert!(paths_below(&log_file(data.path(), "dir")).is_empty());
}
