//! The writer as users run it: queue-group and durable modes with two
//! instances and restarts store each point once (read back from the
//! database itself), and a message that is not a point is dead-lettered
//! with its reason and counted.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use telestion_test::{
    NatsServer, PostgresServer, Process, ServerOptions, WAIT, collect_replies, eventually_async,
    health, nats_server_bin, nats_server_current_bin, service_command, spawn_ready,
};

const BIN: &str = env!("CARGO_BIN_EXE_database");

fn writer(server: &NatsServer, data: &Path, database_url: &str, extra: &[(&str, &str)]) -> Command {
    let mut cmd = service_command(BIN, server, "database", data);
    cmd.env("DATA_SUBJECT", "data.>")
        .env("DATABASE_URL", database_url)
        .env("BATCH_WINDOW_MS", "20")
        .env("DURABLE_BACKOFF", "0.2");
    for (key, value) in extra {
        cmd.env(key, value);
    }
    cmd
}

/// The `n` field of every stored point of `measurement`, sorted.
async fn stored(database_url: &str, measurement: &str) -> Vec<i64> {
    let url = database_url.to_owned();
    let measurement = measurement.to_owned();
    let sql = "SELECT p.fields FROM points p JOIN measurements m ON m.id = p.measurement_id \
               WHERE m.name = $1";
    let texts: Vec<String> = tokio::task::spawn_blocking(move || {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let Ok(connection) = rusqlite::Connection::open(path) else {
                return Vec::new();
            };
            let Ok(mut statement) = connection.prepare(&sql.replace("$1", "?1")) else {
                return Vec::new();
            };
            statement
                .query_map([&measurement], |row| row.get(0))
                .map(|rows| rows.flatten().collect())
                .unwrap_or_default()
        } else {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let sql = sql.replace("p.fields", "p.fields::text");
            match client.query(&sql, &[&measurement]) {
                Ok(rows) => rows.iter().map(|row| row.get(0)).collect(),
                Err(_) => Vec::new(),
            }
        }
    })
    .await
    .unwrap();
    let mut values: Vec<i64> = texts
        .iter()
        .map(|text| {
            let fields: Value = serde_json::from_str(text).unwrap();
            fields["n"].as_f64().unwrap() as i64
        })
        .collect();
    values.sort_unstable();
    values
}

async fn wait_stored(database_url: &str, measurement: &str, n: usize) -> Vec<i64> {
    eventually_async(WAIT, &format!("{n} points of {measurement}"), || async {
        stored(database_url, measurement).await.len() >= n
    })
    .await;
    // Nothing more arrives afterwards (no late duplicates).
    tokio::time::sleep(Duration::from_millis(300)).await;
    stored(database_url, measurement).await
}

/// Messages each writer instance took (by instance id), from the NATS
/// micro STATS replies.
async fn handled(client: &async_nats::Client) -> std::collections::HashMap<String, u64> {
    collect_replies(
        client,
        "$SRV.STATS.database",
        "",
        Duration::from_millis(500),
    )
    .await
    .iter()
    .map(|reply| {
        let stats: Value = serde_json::from_slice(&reply.payload).unwrap();
        let taken = stats["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["num_requests"].as_u64().unwrap_or(0))
            .sum::<u64>();
        (stats["id"].as_str().unwrap().to_owned(), taken)
    })
    .collect()
}

async fn publish(
    client: &async_nats::Client,
    measurement: &str,
    range: std::ops::Range<i64>,
    timed: bool,
) {
    for n in range {
        let body = if timed {
            json!({"time": format!("2024-01-01T00:00:{:02}.{:06}Z", n / 1_000_000 % 60, n % 1_000_000), "n": n})
        } else {
            json!({"n": n, "tags": {"writer": "test"}})
        };
        client
            .publish(format!("data.{measurement}"), body.to_string().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
}

fn stop(mut process: Process) {
    process.signal(libc::SIGTERM);
    assert_eq!(process.wait_exit(WAIT), Some(0), "{}", process.stderr());
}

/// Queue group (the default): two writers share the messages, each point
/// (without a time of its own) is stored once, also after one of them
/// restarted, and together they took each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_two_writers_and_a_restart_store_each_point_once() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", data.path().join("shared.sqlite3").display());
    let first = spawn_ready(writer(&server, data.path(), &url, &[]));
    let second = spawn_ready(writer(&server, data.path(), &url, &[]));
    let client = server.client().await;
    publish(&client, "queue", 0..500, false).await;
    assert_eq!(
        wait_stored(&url, "queue", 500).await,
        (0..500).collect::<Vec<_>>()
    );
    // Together they took each message once (a broadcast would give 1000).
    let before = handled(&client).await;
    assert_eq!(before.len(), 2);
    assert_eq!(before.values().sum::<u64>(), 500, "{before:?}");
    stop(first);
    let first = spawn_ready(writer(&server, data.path(), &url, &[]));
    publish(&client, "queue", 500..1000, false).await;
    assert_eq!(
        wait_stored(&url, "queue", 1000).await,
        (0..1000).collect::<Vec<_>>()
    );
    // The second half: the restarted writer (counting from 0) and the
    // other one together took each of the 500 once.
    let after = handled(&client).await;
    let second_half: u64 = after
        .iter()
        .map(|(id, taken)| taken - before.get(id).copied().unwrap_or(0))
        .sum();
    assert_eq!(second_half, 500, "before {before:?}, after {after:?}");
    stop(first);
    stop(second);
}

/// Durable mode on PostgreSQL, against Debian's nats-server and the
/// current release: points published while no writer runs, and while one
/// of two writers is killed (SIGKILL) and restarted, are each stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_two_writers_kill_and_restart_store_each_point_once() {
    for binary in [nats_server_bin(), nats_server_current_bin()] {
        let server = NatsServer::start_with(ServerOptions::new().jetstream().binary(&binary));
        let postgres = PostgresServer::start();
        let data = tempfile::tempdir().unwrap();
        let url = postgres.url();
        let durable = [
            ("DURABLE", "true"),
            ("BATCH_SIZE", "50"),
            ("DURABLE_ACK_WAIT", "2"),
        ];
        // The first start declares the stream; then nobody runs.
        stop(spawn_ready(writer(&server, data.path(), &url, &durable)));
        let client = server.client().await;
        let jetstream = async_nats::jetstream::new(client.clone());
        for n in 0..300 {
            let body = json!({"n": n}).to_string();
            jetstream
                .publish("data.offline".to_string(), body.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let first = spawn_ready(writer(&server, data.path(), &url, &durable));
        let second = spawn_ready(writer(&server, data.path(), &url, &durable));
        assert_eq!(
            wait_stored(&url, "offline", 300).await,
            (0..300).collect::<Vec<_>>()
        );
        // Timed points while the first writer is killed and restarted.
        let publisher = {
            let jetstream = jetstream.clone();
            tokio::spawn(async move {
                for n in 0..1000i64 {
                    let body = json!({"time": format!("2024-01-01T00:00:00.{n:06}Z"), "n": n});
                    jetstream
                        .publish("data.killed".to_string(), body.to_string().into())
                        .await
                        .unwrap()
                        .await
                        .unwrap();
                    if n % 100 == 0 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut first = first;
        first.signal(libc::SIGKILL);
        first.wait_exit(WAIT);
        let first = spawn_ready(writer(&server, data.path(), &url, &durable));
        publisher.await.unwrap();
        assert_eq!(
            wait_stored(&url, "killed", 1000).await,
            (0..1000).collect::<Vec<_>>(),
            "nats-server {}",
            binary.display()
        );
        stop(first);
        stop(second);
    }
}

/// A message that is not a point goes to the dead-letter subject with
/// the reason, counts as an error in health, and the valid points of the
/// same batch are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_messages_are_dead_lettered_with_the_reason() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", data.path().join("points.sqlite3").display());
    let process = spawn_ready(writer(&server, data.path(), &url, &[]));
    let client = server.client().await;
    let mut dead = client
        .subscribe("telestion.dead.database.store")
        .await
        .unwrap();
    client.flush().await.unwrap();
    let bad = [
        ("not json", "the body is not valid JSON"),
        ("[1, 2]", "not an object"),
        (r#"{"tags": {"a": "b"}}"#, "has no field"),
        (r#"{"time": "yesterday", "n": 1}"#, "not an RFC 3339 time"),
    ];
    for (body, _) in bad {
        client.publish("data.invalid", body.into()).await.unwrap();
    }
    publish(&client, "invalid", 0..3, true).await;
    for (body, reason) in bad {
        let letter = tokio::time::timeout(WAIT, dead.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(std::str::from_utf8(&letter.payload).unwrap(), body);
        let headers = letter.headers.unwrap();
        let error = headers.get("Telestion-Error").unwrap().as_str();
        assert!(error.contains(reason), "{error:?} does not say {reason:?}");
        assert_eq!(
            headers.get("Telestion-Original-Subject").unwrap().as_str(),
            "data.invalid"
        );
    }
    assert_eq!(wait_stored(&url, "invalid", 3).await, vec![0, 1, 2]);
    let report = health(&client, "__telestion__/health").await;
    assert_eq!(report["errors_total"], 4, "{report}");
    stop(process);
}

/// `RETENTION`: points older than it are deleted (the newer ones stay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_points() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", data.path().join("kept.sqlite3").display());
    let mut process = spawn_ready(writer(&server, data.path(), &url, &[("RETENTION", "10s")]));
    let client = server.client().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    for (n, age_s) in [(1, 60), (2, 0)] {
        let time = database_store::time::format_rfc3339(now - age_s * 1_000_000_000);
        let body = json!({"time": time, "n": n}).to_string();
        client.publish("data.kept", body.into()).await.unwrap();
    }
    client.flush().await.unwrap();
    eventually_async(WAIT, "the old point deleted, the new one kept", || async {
        stored(&url, "kept").await == [2] && process.stderr().contains("deleted=1")
    })
    .await;
    process.signal(libc::SIGTERM);
    assert_eq!(process.wait_exit(WAIT), Some(0));
}
