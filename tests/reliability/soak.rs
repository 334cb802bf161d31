//! Soak runs (`#[ignore]`d: minutes in release mode): one million messages
//! through the `standard_ops` data logger and through a request/reply
//! handler (the `soak` example), checking that none is lost or duplicated
//! and reporting the service's resident memory (VmRSS) at start and end.
//!
//! ```sh
//! cargo test --release --test reliability -- --ignored soak --nocapture
//! ```
//!
//! `SOAK_MESSAGES` overrides the count (default 1,000,000).
//!
//! Flow control: the driver keeps at most `WINDOW` messages in flight,
//! each sent with a reply subject and counted when its reply arrives.
//! Without it a publisher on loopback outruns the handler; the client
//! library would then drop what does not fit in the subscription buffer
//! (a slow consumer, counted in health), or the server would cut the
//! connection of a consumer that does not read fast enough. Pacing is the
//! publisher's job in NATS core; the counters make any loss visible.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::support::try_health;
use crate::support::{NatsServer, Process, clean_command, workspace_binary};

const WINDOW: usize = 2_000;

fn total() -> usize {
    std::env::var("SOAK_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// VmRSS of `pid` in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("no VmRSS")
}

/// Sends `count` messages (`body(seq)` to `subject(seq)`), each with a reply
/// subject, at most `WINDOW` unanswered; `on_reply` sees every reply.
/// Returns when all replies arrived (panics after a stall of 30 s).
async fn drive(
    client: &async_nats::Client,
    count: usize,
    subject: impl Fn(usize) -> String,
    on_reply: impl Fn(&async_nats::Message) + Send + 'static,
    mut on_progress: impl FnMut(usize),
) {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(format!("{inbox}.*")).await.unwrap();
    let window = Arc::new(Semaphore::new(WINDOW));
    let received = Arc::new(AtomicU64::new(0));
    let collector = {
        let window = window.clone();
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(reply) = replies.next().await {
                on_reply(&reply);
                received.fetch_add(1, Ordering::SeqCst);
                window.add_permits(1);
            }
        })
    };
    for seq in 0..count {
        let permit = tokio::time::timeout(Duration::from_secs(30), window.acquire())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "stalled at {seq}: {} replies for {seq} messages",
                    received.load(Ordering::SeqCst)
                )
            })
            .unwrap();
        permit.forget();
        client
            .publish_with_reply(
                subject(seq),
                format!("{inbox}.{seq}"),
                seq.to_string().into(),
            )
            .await
            .unwrap();
        on_progress(seq);
    }
    client.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::SeqCst) < count as u64 {
        assert!(Instant::now() < deadline, "replies missing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything extra would be a duplicate.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        received.load(Ordering::SeqCst),
        count as u64,
        "duplicate replies"
    );
    collector.abort();
}

fn report(what: &str, count: usize, elapsed: Duration, start_kb: u64, end_kb: u64) {
    println!(
        "soak {what}: {count} messages in {:.1} s ({:.0}/s), service VmRSS start {start_kb} kB, end {end_kb} kB ({:+} kB)",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        end_kb as i64 - start_kb as i64
    );
}

fn spawn_service(example: &str, server: &NatsServer, data: &std::path::Path) -> Process {
    let package = if example == "standard_ops" {
        "standard_ops"
    } else {
        "telestion-tests"
    };
    let mut cmd = clean_command(workspace_binary(package, example));
    cmd.env("NATS_URL", server.url())
        .env("SERVICE_NAME", example)
        .env("DATA_DIR", data)
        .env("RUST_LOG", "warn,telestion=info");
    let mut proc = Process::spawn(cmd);
    proc.wait_for_stderr("ready", Duration::from_secs(60));
    proc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: minutes; run with --release --ignored"]
async fn soak_request_reply() {
    let count = total();
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut service = spawn_service("soak", &server, data.path());
    let pid = service.child.id();
    let client = server.client().await;
    let seen: Arc<Vec<std::sync::atomic::AtomicU8>> =
        Arc::new((0..count).map(|_| Default::default()).collect());
    let bad = Arc::new(AtomicU64::new(0));
    let (seen2, bad2) = (seen.clone(), bad.clone());
    let started = Instant::now();
    let mut start_kb = 0;
    drive(
        &client,
        count,
        |_| "soak.echo".to_owned(),
        move |reply| {
            // The reply subject's last token and the echoed body are the seq.
            let seq: usize = std::str::from_utf8(&reply.payload)
                .unwrap()
                .parse()
                .unwrap();
            if !reply.subject.ends_with(&format!(".{seq}")) {
                bad2.fetch_add(1, Ordering::SeqCst);
            }
            seen2[seq].fetch_add(1, Ordering::SeqCst);
        },
        |seq| {
            if seq == 10_000.min(count - 1) {
                start_kb = rss_kb(pid);
            }
        },
    )
    .await;
    let elapsed = started.elapsed();
    let end_kb = rss_kb(pid);
    assert_eq!(
        bad.load(Ordering::SeqCst),
        0,
        "replies to the wrong request"
    );
    let wrong: Vec<usize> = (0..count)
        .filter(|&i| seen[i].load(Ordering::SeqCst) != 1)
        .take(10)
        .collect();
    assert!(wrong.is_empty(), "not answered exactly once: {wrong:?}");
    let health = try_health(&client).await.unwrap();
    assert_eq!(health["errors_total"], 0, "{health}");
    report("request/reply", count, elapsed, start_kb, end_kb);
    assert!(
        end_kb < start_kb + 64 * 1024,
        "memory grew from {start_kb} kB to {end_kb} kB"
    );
    service.signal(libc::SIGTERM);
    assert_eq!(service.wait_exit(Duration::from_secs(30)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: minutes; run with --release --ignored"]
async fn soak_standard_ops() {
    let count = total();
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut service = spawn_service("standard_ops", &server, data.path());
    let pid = service.child.id();
    let client = server.client().await;
    let acks_ok = Arc::new(AtomicU64::new(0));
    let acks = acks_ok.clone();
    let started = Instant::now();
    let mut start_kb = 0;
    drive(
        &client,
        count,
        |_| "__telestion__/log/soak".to_owned(),
        move |reply| {
            let ack: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
            if ack["ok"] == true {
                acks.fetch_add(1, Ordering::SeqCst);
            }
        },
        |seq| {
            if seq == 10_000.min(count - 1) {
                start_kb = rss_kb(pid);
            }
        },
    )
    .await;
    let elapsed = started.elapsed();
    let end_kb = rss_kb(pid);
    assert_eq!(acks_ok.load(Ordering::SeqCst), count as u64);
    // Every message is in the file exactly once.
    let text = std::fs::read_to_string(data.path().join("logs/soak.log")).unwrap();
    let mut seen = vec![0u8; count];
    let mut lines = 0;
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let seq = value["json"].as_u64().expect("seq") as usize;
        seen[seq] += 1;
        lines += 1;
    }
    assert_eq!(lines, count, "lines in the log");
    let wrong: Vec<usize> = (0..count).filter(|&i| seen[i] != 1).take(10).collect();
    assert!(wrong.is_empty(), "not logged exactly once: {wrong:?}");
    let health = try_health(&client).await.unwrap();
    assert_eq!(health["errors_total"], 0, "{health}");
    report("standard_ops", count, elapsed, start_kb, end_kb);
    assert!(
        end_kb < start_kb + 64 * 1024,
        "memory grew from {start_kb} kB to {end_kb} kB"
    );
    service.signal(libc::SIGTERM);
    assert_eq!(service.wait_exit(Duration::from_secs(30)), Some(0));
}
