//! The `latest_value_cache` sample's bounds end to end: `CACHE_MAX_KEYS`
//! and `CACHE_MAX_BYTES` evict the least recently stored keys, an
//! over-sized value is not stored, and memory stays bounded under a flood
//! of large values.

use std::path::Path;
use std::time::{Duration, Instant};

use telestion::health::SUBJECT as HEALTH_SUBJECT;
use telestion_test::{
    NatsServer, WAIT, assert_start_fails_naming, health_report, request, service_command,
    spawn_ready, workspace_example,
};

/// The cache on `data.>` / `latest.>` with the given bounds.
fn cache_cmd(server: &NatsServer, data: &Path, bounds: &[(&str, &str)]) -> std::process::Command {
    let binary = workspace_example("telestion-examples", "latest_value_cache");
    let mut cmd = service_command(binary, server, "cache", data);
    cmd.env("DATA_SUBJECT", "data.>")
        .env("REQUEST_SUBJECT", "latest.>");
    for (key, value) in bounds {
        cmd.env(key, value);
    }
    cmd
}

/// What the cache answers for `key`.
async fn latest(client: &async_nats::Client, key: &str) -> Vec<u8> {
    request(client, &format!("latest.{key}"), "")
        .await
        .payload
        .to_vec()
}

async fn publish(client: &async_nats::Client, key: &str, value: impl Into<Vec<u8>>) {
    client
        .publish(format!("data.{key}"), value.into().into())
        .await
        .unwrap();
}

/// Publishes `marker` as the value of key `marker` and waits until the
/// cache answers with it: every value published before is handled then
/// (the data subscription handles its messages in order).
async fn settle(client: &async_nats::Client, marker: &str) {
    publish(client, marker, marker).await;
    client.flush().await.unwrap();
    let deadline = Instant::now() + WAIT;
    while latest(client, marker).await != marker.as_bytes() {
        assert!(Instant::now() < deadline, "{marker} was never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn more_keys_than_cache_max_keys_evict_the_least_recently_stored() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let bounds = [("CACHE_MAX_KEYS", "3"), ("CACHE_MAX_BYTES", "1000")];
    let _cache = spawn_ready(cache_cmd(&server, data.path(), &bounds));
    let client = server.client().await;

    for key in ["k1", "k2", "k3", "k4"] {
        publish(&client, key, format!("value of {key}")).await;
    }
    // The fifth key: k1 and k2 are gone, the three newest stay.
    settle(&client, "k5").await;
    assert_eq!(latest(&client, "k1").await, b"");
    assert_eq!(latest(&client, "k2").await, b"");
    assert_eq!(latest(&client, "k3").await, b"value of k3");
    assert_eq!(latest(&client, "k4").await, b"value of k4");
    assert_eq!(latest(&client, "k5").await, b"k5");

    // Storing k3 again makes it the newest (asking for it did not): the
    // next new key evicts k4.
    publish(&client, "k3", "k3 again").await;
    settle(&client, "k6").await;
    assert_eq!(latest(&client, "k4").await, b"");
    assert_eq!(latest(&client, "k3").await, b"k3 again");
    assert_eq!(latest(&client, "k5").await, b"k5");
    assert_eq!(latest(&client, "k6").await, b"k6");
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_max_bytes_evicts_the_oldest_and_refuses_oversized_values() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let bounds = [("CACHE_MAX_KEYS", "100"), ("CACHE_MAX_BYTES", "1000")];
    let mut cache = spawn_ready(cache_cmd(&server, data.path(), &bounds));
    let client = server.client().await;

    // Key and value count: 1 + 400 bytes each; the third does not fit
    // beside the first two.
    for key in ["a", "b", "c"] {
        publish(&client, key, key.repeat(400)).await;
    }
    settle(&client, "m").await;
    assert_eq!(latest(&client, "a").await, b"");
    assert_eq!(latest(&client, "b").await, "b".repeat(400).as_bytes());
    assert_eq!(latest(&client, "c").await, "c".repeat(400).as_bytes());

    // 3 + 1000 bytes can never fit: not stored, nothing evicted for it.
    publish(&client, "big", vec![b'x'; 1000]).await;
    settle(&client, "n").await;
    assert_eq!(latest(&client, "big").await, b"");
    assert_eq!(latest(&client, "b").await, "b".repeat(400).as_bytes());
    assert_eq!(latest(&client, "c").await, "c".repeat(400).as_bytes());

    // An over-sized value for a stored key: the older value is not served
    // as the latest any more.
    publish(&client, "c", vec![b'y'; 5000]).await;
    settle(&client, "o").await;
    assert_eq!(latest(&client, "c").await, b"");
    assert_eq!(latest(&client, "b").await, "b".repeat(400).as_bytes());

    // Both refusals were logged and counted.
    cache.wait_for_stderr("not stored", WAIT);
    let report = health_report(&client, HEALTH_SUBJECT).await;
    assert_eq!(report.errors, 2, "{report:?}");
    assert!(
        cache.stderr().contains("CACHE_MAX_BYTES"),
        "{}",
        cache.stderr()
    );
}

/// VmRSS or VmHWM of a process, in bytes.
fn memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"));
    kib * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_stays_bounded_under_many_large_values() {
    const MIB: u64 = 1 << 20;
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let bounds = [("CACHE_MAX_BYTES", "16777216")];
    let cache = spawn_ready(cache_cmd(&server, data.path(), &bounds));
    let client = server.client().await;

    // 300 values of 1 MB (under the server's 1 MiB max_payload): without a
    // bound the cache would hold 300 MB.
    let value = vec![b'v'; 1_000_000];
    for i in 0..300 {
        publish(&client, &format!("k{i}"), value.clone()).await;
        if i % 20 == 0 {
            client.flush().await.unwrap();
        }
    }
    settle(&client, "done").await;
    assert_eq!(latest(&client, "k299").await.len(), 1_000_000);
    assert_eq!(latest(&client, "k0").await, b"");

    let rss = memory(cache.pid(), "VmRSS:");
    let peak = memory(cache.pid(), "VmHWM:");
    eprintln!("cache: VmRSS {} MiB, VmHWM {} MiB", rss / MIB, peak / MIB);
    assert!(rss < 100 * MIB, "VmRSS {} MiB", rss / MIB);
}

#[test]
fn bounds_must_be_positive_numbers() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("CACHE_MAX_KEYS", "0"),
        ("CACHE_MAX_KEYS", "many"),
        ("CACHE_MAX_BYTES", "0"),
        ("CACHE_MAX_BYTES", "-1"),
    ] {
        let cmd = cache_cmd(&server, data.path(), &[(key, value)]);
        assert_start_fails_naming(cmd, key);
    }
}
