//! Shutdown: on SIGTERM, SIGINT or `service.shutdown()` every
//! delivered message is handled (drain), publishes are flushed, exit 0.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;

use crate::support::{NatsServer, Process};
use crate::{request, start_by_hand};

const MESSAGES: usize = 30;

/// Starts `by_hand` with a slow handler, queues `MESSAGES` messages, waits
/// until the first is done, calls `trigger`, and checks that the process
/// exits 0 after confirming every message exactly once.
async fn drains_on(trigger: impl AsyncFnOnce(&Process, &async_nats::Client)) {
    let server = NatsServer::start();
    let client = server.client().await;
    let mut proc = start_by_hand(&server.url(), "drainer", &[("SLOW_MS", "30")], &client).await;
    let mut done = client.subscribe("byhand.done").await.unwrap();
    client.flush().await.unwrap();
    for i in 0..MESSAGES {
        client
            .publish("byhand.slow", i.to_string().into())
            .await
            .unwrap();
    }
    // Everything is at the server before the shutdown starts.
    client.flush().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), done.next())
        .await
        .expect("no message handled")
        .unwrap();
    trigger(&proc, &client).await;

    let code = tokio::task::spawn_blocking(move || {
        let code = proc.wait_exit(Duration::from_secs(30));
        (code, proc.stderr())
    })
    .await
    .unwrap();
    assert_eq!(code.0, Some(0), "stderr:\n{}", code.1);
    assert!(code.1.contains("shutting down"), "stderr:\n{}", code.1);

    let mut confirmed = vec![String::from_utf8(first.payload.to_vec()).unwrap()];
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(1000), done.next()).await
    {
        confirmed.push(String::from_utf8(message.payload.to_vec()).unwrap());
    }
    let unique: BTreeSet<usize> = confirmed.iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(
        confirmed.len(),
        MESSAGES,
        "duplicates or losses: {confirmed:?}"
    );
    assert_eq!(unique, (0..MESSAGES).collect(), "{confirmed:?}");
    // In arrival order, too.
    let order: Vec<usize> = confirmed.iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(order, (0..MESSAGES).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_every_queued_message() {
    drains_on(async |proc: &Process, _: &async_nats::Client| proc.signal(libc::SIGTERM)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_drains_every_queued_message() {
    drains_on(async |proc: &Process, _: &async_nats::Client| proc.signal(libc::SIGINT)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_from_code_drains_and_exits_0() {
    drains_on(async |_: &Process, client: &async_nats::Client| {
        let reply = request(client, "byhand.stop", "").await;
        assert_eq!(&reply.payload[..], b"stopping");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn second_signal_while_draining_exits_at_once_with_130() {
    let server = NatsServer::start();
    let client = server.client().await;
    let mut proc = start_by_hand(&server.url(), "impatient", &[("SLOW_MS", "5000")], &client).await;
    for i in 0..5 {
        client
            .publish("byhand.slow", i.to_string().into())
            .await
            .unwrap();
    }
    // The server delivers in order per connection: once this echo is
    // answered, the service has read the slow messages (one is in work).
    request(&client, "byhand.echo", "barrier").await;
    proc.signal(libc::SIGTERM);
    let code = tokio::task::spawn_blocking(move || {
        // The drain would take 25 s; the second signal cuts it short.
        proc.wait_for_stderr("shutting down", Duration::from_secs(10));
        proc.signal(libc::SIGTERM);
        let started = std::time::Instant::now();
        let code = proc.wait_exit(Duration::from_secs(10));
        (code, started.elapsed(), proc.stderr())
    })
    .await
    .unwrap();
    assert_eq!(code.0, Some(130), "stderr:\n{}", code.2);
    assert!(code.1 < Duration::from_secs(5), "took {:?}", code.1);
    assert!(
        code.2.contains("again while draining"),
        "stderr:\n{}",
        code.2
    );
}
