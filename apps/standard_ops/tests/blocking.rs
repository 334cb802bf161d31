//! A file locked by another process delays only its own category: health,
//! other categories and SIGTERM keep working, and a lock held longer than
//! `LOCK_TIMEOUT` is an error reply.

mod support;

use std::fs::File;
use std::time::Duration;

use serde_json::json;
use support::{ack, assert_refused, lines, log_file, ops};
use telestion_test::{NatsServer, WAIT, health, spawn_ready};

/// Another process's lock on `logs/locked.log`, taken like `flock -s`.
fn hold_lock(data: &std::path::Path, category: &str) -> File {
    std::fs::create_dir_all(data.join("logs")).unwrap();
    let file = File::create(log_file(data, category)).unwrap();
    file.lock_shared().unwrap();
    file
}

/// While another process holds a lock on one category's file, health and
/// other categories are answered at once; the locked category's request
/// waits and is written (and answered) once the lock is released.
///
/// Old behaviour: open and `flock` ran on the async workers under a global
/// mutex, so the waiting request stopped health replies and every other
/// category until the lock was released.
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_file_delays_only_its_own_category() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let lock = hold_lock(data.path(), "locked");
    let _ops = spawn_ready(ops(&server, data.path(), &[("LOCK_TIMEOUT", "60")]));
    let client = server.client().await;

    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { ack(&client, "__telestion__/log/locked", "late").await })
    };
    // Health, other categories and the dotted form answer meanwhile.
    for n in 0..20 {
        let reply = ack(&client, &format!("__telestion__/log/free{}", n % 4), "x").await;
        assert_eq!(reply, json!({"ok": true}));
    }
    assert_eq!(
        ack(&client, "__telestion__.log.dotted", "x").await["ok"],
        true
    );
    assert_eq!(health(&client, "__telestion__/health").await["errors"], 0);
    assert!(
        !waiting.is_finished(),
        "the locked category was answered while locked"
    );
    assert!(lines(data.path(), "locked").is_empty());

    drop(lock);
    let reply = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(reply, json!({"ok": true}));
    assert_eq!(lines(data.path(), "locked")[0]["text"], "late");
}

/// A lock held longer than `LOCK_TIMEOUT` is an error reply naming it,
/// counted in health, with nothing written; lines queued behind it are
/// refused the same way instead of piling up. SIGTERM while the lock is
/// still held ends the service (exit 0).
///
/// Old behaviour: no bound: the request was never answered and the
/// service could not drain.
#[tokio::test(flavor = "multi_thread")]
async fn a_lock_held_too_long_is_an_error_reply_and_sigterm_still_works() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let _lock = hold_lock(data.path(), "stuck");
    let mut service = spawn_ready(ops(&server, data.path(), &[("LOCK_TIMEOUT", "1")]));
    let client = server.client().await;

    let replies = futures::future::join_all(
        (0..5).map(|n| ack(&client, "__telestion__/log/stuck", format!("{n}"))),
    )
    .await;
    for reply in &replies {
        assert_refused(reply, "LOCK_TIMEOUT");
    }
    assert_eq!(health(&client, "__telestion__/health").await["errors"], 5);
    assert!(lines(data.path(), "stuck").is_empty());

    client
        .publish("__telestion__/log/stuck", "in flight".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    service.signal(libc::SIGTERM);
    assert_eq!(service.wait_exit(WAIT), Some(0), "{}", service.stderr());
    assert!(lines(data.path(), "stuck").is_empty());
}
