//! Telestion's database services (case 10, run only when named: `--only
//! database`), on SQLite and on PostgreSQL (Debian's, started by the test
//! kit with its default, durable settings for ingest):
//!
//! - ingest: points in the upstream format published as fast as one
//!   connection sends them, until the `database` writer (release build,
//!   queue-group mode, its default batches) has stored every one, beside
//!   the same points written by the store alone (no NATS, no parsing):
//!   what the service costs over its database;
//! - queries over ten million stored points (loaded through the store in
//!   batches of 10,000): the newest value and a 1,000-row range at a random
//!   place, through `database_query` over NATS, round trip per request;
//!   on SQLite beside the example backend's `db_query` answering the same
//!   questions (`latest {"n": 1}`, `range` of 1,000 rows) over the same ten
//!   million frames, and its `count`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use database_store::Location;
use database_store::point::{FieldValue, Point};
use serde_json::{Value, json};
use telestion_test::{PostgresServer, Process, clean_command, spawn_ready};

use crate::bus::Res;
use crate::measure::{ms, percentile};
use crate::session::Ctx;

/// The first point's time (ns): 2024-01-01T00:00:00Z.
const BASE_NS: i64 = 1_704_067_200_000_000_000;
/// Series (tag `sensor`) of the stored points.
const SERIES: i64 = 10;
/// The goal of ingest (points per second).
const INGEST_GOAL: f64 = 50_000.0;
/// The goal of a query's median (ms).
const QUERY_GOAL_MS: f64 = 10.0;

/// The sizes of a run.
struct Sizes {
    ingest: i64,
    stored: i64,
    requests: usize,
}

fn point(i: i64, measurement: &str) -> Point {
    Point {
        measurement: measurement.to_owned(),
        time: BASE_NS + i * 1_000_000,
        tags: [("sensor".to_owned(), format!("s{}", i % SERIES))].into(),
        fields: [("value".to_owned(), FieldValue::Float(i as f64))].into(),
    }
}

fn body(i: i64) -> String {
    json!({
        "time": database_store::time::format_rfc3339(BASE_NS + i * 1_000_000),
        "value": i as f64,
        "tags": {"sensor": format!("s{}", i % SERIES)},
    })
    .to_string()
}

/// Points stored in `measurement` (read from the database itself).
fn stored(location: &Location, measurement: &str) -> Res<i64> {
    let sql = "SELECT count(*) FROM points p JOIN measurements m ON m.id = p.measurement_id \
               WHERE m.name = $1";
    match location {
        Location::Sqlite(path) => {
            if !path.exists() {
                return Ok(0);
            }
            let connection = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
            Ok(connection
                .query_row(&sql.replace("$1", "?1"), [measurement], |row| row.get(0))
                .unwrap_or(0))
        }
        Location::Postgres(config) => {
            let mut client = config.connect(postgres::NoTls).map_err(|e| e.to_string())?;
            Ok(client
                .query_one(sql, &[&measurement])
                .map(|row| row.get(0))
                .unwrap_or(0))
        }
    }
}

/// Writes `n` points through the store alone, in batches of `batch`;
/// returns the seconds it took.
fn write_direct(location: &Location, measurement: &str, n: i64, batch: i64) -> Res<f64> {
    let mut writer = location.open_writer(true).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let points: Vec<Point> = (i..(i + batch).min(n))
            .map(|j| point(j, measurement))
            .collect();
        writer.write(&points).map_err(|e| e.to_string())?;
        i += batch;
    }
    let took = started.elapsed().as_secs_f64();
    // Closed here, on this (non-runtime) thread.
    drop(writer);
    Ok(took)
}

/// Runs `f` on a thread of its own (the synchronous PostgreSQL client may
/// not run on the runtime's threads).
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Res<T> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = sender.send(f());
    });
    receiver
        .await
        .map_err(|_| "a database thread panicked".to_string())
}

fn service(ctx: &Ctx, binary: &Path, name: &str, data: &Path, env: &[(&str, &str)]) -> Process {
    let mut cmd = clean_command(binary);
    cmd.env("NATS_URL", &ctx.url)
        .env("SERVICE_NAME", name)
        .env("DATA_DIR", data)
        .env("RUST_LOG", "warn,telestion=info");
    for (key, value) in env {
        cmd.env(key, value);
    }
    spawn_ready(cmd)
}

/// Round trips of `requests` requests made by `body(i)`; checks each
/// reply with `check`. Returns the round trips (ms).
async fn round_trips(
    ctx: &Ctx,
    subject: &str,
    requests: usize,
    body: impl Fn(usize) -> String,
    check: impl Fn(&Value) -> Result<(), String>,
) -> Res<Vec<f64>> {
    let mut times = Vec::with_capacity(requests);
    for i in 0..requests + requests / 10 {
        let payload = body(i);
        let started = Instant::now();
        let reply = tokio::time::timeout(
            Duration::from_secs(30),
            ctx.control
                .request(subject.to_owned(), payload.clone().into()),
        )
        .await
        .map_err(|_| format!("{subject}: no reply within 30 s"))?
        .map_err(|e| format!("{subject}: {e}"))?;
        let took = ms(started.elapsed());
        let value: Value = serde_json::from_slice(&reply.payload)
            .map_err(|e| format!("{subject}: not JSON ({e})"))?;
        check(&value).map_err(|e| format!("{subject} {payload}: {e}: {value}"))?;
        // The first tenth warms caches up and is not counted.
        if i >= requests / 10 {
            times.push(took);
        }
    }
    Ok(times)
}

fn rows_of(value: &Value, key: &str, n: usize) -> Result<(), String> {
    match value[key].as_array() {
        Some(rows) if rows.len() == n => Ok(()),
        Some(rows) => Err(format!("{} rows instead of {n}", rows.len())),
        None => Err("no rows".into()),
    }
}

fn p50_p99(times: &[f64]) -> (f64, f64) {
    (percentile(times, 50.0), percentile(times, 99.0))
}

/// Ingest of one store: via the service, and by the store alone.
async fn ingest(
    ctx: &mut Ctx,
    label: &str,
    service_location: Location,
    direct_location: Location,
    url: Option<String>,
    sizes: &Sizes,
) -> Res<Value> {
    let data = ctx.dir.join(format!("ingest-{label}"));
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let url = url.unwrap_or_else(|| match &service_location {
        Location::Sqlite(path) => format!("sqlite:{}", path.display()),
        Location::Postgres(_) => unreachable!("a PostgreSQL location comes with its URL"),
    });
    let writer = service(
        ctx,
        &ctx.bins.other("database", "database"),
        "database",
        &data,
        &[
            ("DATA_SUBJECT", "bench.data.>"),
            ("DATABASE_URL", &url),
            // Everything the publisher sends may wait in the client.
            ("NATS_SUBSCRIPTION_CAPACITY", "4000000"),
        ],
    );
    let n = sizes.ingest;
    let bodies: Vec<String> = (0..n).map(body).collect();
    let started = Instant::now();
    for text in bodies {
        ctx.publisher
            .publish("bench.data.ingest", text.into())
            .await
            .map_err(|e| e.to_string())?;
    }
    ctx.publisher.flush().await.map_err(|e| e.to_string())?;
    let published = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let location = service_location.clone();
        let count = off_runtime(move || stored(&location, "ingest")).await??;
        if count >= n {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{label}: {count} of {n} points stored within 600 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed().as_secs_f64();
    drop(writer);
    let via_service = n as f64 / took;
    let direct_took =
        off_runtime(move || write_direct(&direct_location, "ingest", n, 1000)).await??;
    let direct = n as f64 / direct_took;
    ctx.table.row(
        &format!("database: ingest into {label} via NATS vs the store alone (points/s)"),
        format!("{via_service:.0}"),
        format!("{direct:.0}"),
        format!("{:.2}", via_service / direct),
        ">= 50,000/s",
        Some(via_service >= INGEST_GOAL),
    );
    Ok(json!({
        "points": n,
        "published_ms": ms(published),
        "service_points_per_s": via_service,
        "store_alone_points_per_s": direct,
    }))
}

/// Loads the example backend's table with `n` frames (10 per 10 ms, one
/// session per sensor), as db_writer stores them.
fn load_db_writer_file(path: &Path, n: i64) -> Res<f64> {
    let started = Instant::now();
    let mut connection = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| e.to_string())?;
    connection
        .execute_batch(include_str!("../../../apps/db_writer/src/schema.sql"))
        .map_err(|e| e.to_string())?;
    let transaction = connection.transaction().map_err(|e| e.to_string())?;
    {
        let mut insert = transaction
            .prepare("INSERT INTO telemetry VALUES (?1, ?2, ?3, 21.5, 28.0, ?4, 0, ?3 + 20)")
            .map_err(|e| e.to_string())?;
        for i in 0..n {
            let time_ms = (BASE_NS / 1_000_000) + i;
            insert
                .execute(rusqlite::params![i % SERIES, i / SERIES, time_ms, i as f64])
                .map_err(|e| e.to_string())?;
        }
    }
    transaction.commit().map_err(|e| e.to_string())?;
    Ok(started.elapsed().as_secs_f64())
}

/// Queries over `sizes.stored` points of one store.
async fn queries(
    ctx: &mut Ctx,
    label: &str,
    location: Location,
    url: String,
    sizes: &Sizes,
    peer: Option<PathBuf>,
) -> Res<Value> {
    let n = sizes.stored;
    let loading = location.clone();
    let load_s = off_runtime(move || write_direct(&loading, "big", n, 10_000)).await??;
    let data = ctx.dir.join(format!("query-{label}"));
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let query = service(
        ctx,
        &ctx.bins.other("database_query", "database_query"),
        "database_query",
        &data,
        &[("QUERY_SUBJECT", "bench.query"), ("DATABASE_URL", &url)],
    );
    let requests = sizes.requests;
    let latest = round_trips(
        ctx,
        "bench.query",
        requests,
        |_| r#"{"measurement": "big", "range": 0, "order": "desc", "limit": 1}"#.into(),
        |v| rows_of(v, "data", 1),
    )
    .await?;
    let window = |i: usize| {
        // A random-looking place, 1,000 points (1 ms apart) from there.
        let at = ((i as i64 * 7_919_993) % (n - 1_000).max(1)) * 1_000_000 + BASE_NS;
        json!({
            "measurement": "big",
            "start": database_store::time::format_rfc3339(at),
            "stop": database_store::time::format_rfc3339(at + 1_000_000_000),
            "limit": 1000,
        })
        .to_string()
    };
    let range = round_trips(ctx, "bench.query", requests, window, |v| {
        rows_of(v, "data", 1000)
    })
    .await?;
    drop(query);
    let (latest_p50, latest_p99) = p50_p99(&latest);
    let (range_p50, range_p99) = p50_p99(&range);
    let mut figures = json!({
        "points": n,
        "load_points_per_s": n as f64 / load_s,
        "latest_p50_ms": latest_p50,
        "latest_p99_ms": latest_p99,
        "range_1000_p50_ms": range_p50,
        "range_1000_p99_ms": range_p99,
    });
    let mut peer_rows = (String::new(), String::new(), String::new(), String::new());
    if let Some(db_query) = peer {
        let file = data.join("db_writer").join("telemetry.sqlite3");
        std::fs::create_dir_all(file.parent().unwrap_or(&data)).map_err(|e| e.to_string())?;
        let loading = file.clone();
        let peer_load_s = off_runtime(move || load_db_writer_file(&loading, n)).await??;
        let file_text = file.display().to_string();
        let peer_service = service(
            ctx,
            &db_query,
            "db_query",
            &data,
            &[("DB_PATH", &file_text)],
        );
        let latest = round_trips(
            ctx,
            "telemetry.query.latest",
            requests,
            |_| r#"{"n": 1}"#.into(),
            |v| rows_of(v, "rows", 1),
        )
        .await?;
        let range = round_trips(
            ctx,
            "telemetry.query.range",
            requests,
            |i| {
                let at = (BASE_NS / 1_000_000) + (i as i64 * 7_919_993) % (n - 1_000).max(1);
                json!({"from_ms": at, "to_ms": at + 999, "limit": 1000}).to_string()
            },
            |v| rows_of(v, "rows", 1000),
        )
        .await?;
        let count = round_trips(
            ctx,
            "telemetry.query.count",
            (requests / 10).max(2),
            |_| "{}".into(),
            |v| match v["rows"].as_i64() {
                Some(rows) if rows == n => Ok(()),
                other => Err(format!("count {other:?}")),
            },
        )
        .await?;
        drop(peer_service);
        let (lp50, lp99) = p50_p99(&latest);
        let (rp50, rp99) = p50_p99(&range);
        let (cp50, _) = p50_p99(&count);
        peer_rows = (
            format!("{lp50:.2} / {lp99:.2} ms"),
            format!("{:.2}", latest_p50 / lp50),
            format!("{rp50:.2} / {rp99:.2} ms"),
            format!("{:.2}", range_p50 / rp50),
        );
        ctx.table.row(
            &format!("db_query (example backend): count over {n} rows, p50"),
            format!("{cp50:.2} ms"),
            String::new(),
            String::new(),
            "",
            None,
        );
        figures["db_query"] = json!({
            "load_rows_per_s": n as f64 / peer_load_s,
            "latest_p50_ms": lp50,
            "latest_p99_ms": lp99,
            "range_1000_p50_ms": rp50,
            "range_1000_p99_ms": rp99,
            "count_p50_ms": cp50,
        });
    }
    ctx.table.row(
        &format!("database_query: latest of {n} points ({label}), p50 / p99 (vs db_query)"),
        format!("{latest_p50:.2} / {latest_p99:.2} ms"),
        peer_rows.0,
        peer_rows.1,
        "p50 < 10 ms",
        Some(latest_p50 < QUERY_GOAL_MS),
    );
    ctx.table.row(
        &format!(
            "database_query: 1,000-row range of {n} points ({label}), p50 / p99 (vs db_query)"
        ),
        format!("{range_p50:.2} / {range_p99:.2} ms"),
        peer_rows.2,
        peer_rows.3,
        "p50 < 10 ms",
        Some(range_p50 < QUERY_GOAL_MS),
    );
    Ok(figures)
}

/// Runs the measurements; figures as JSON, rows in the table.
pub async fn database(ctx: &mut Ctx) -> Res<Value> {
    let sizes = if ctx.plan.smoke {
        Sizes {
            ingest: 2_000,
            stored: 20_000,
            requests: 20,
        }
    } else {
        Sizes {
            ingest: 200_000,
            stored: 10_000_000,
            requests: 200,
        }
    };
    let dir = ctx.dir.join("database");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut results = serde_json::Map::new();

    // Ingest: SQLite (synchronous FULL, the default), then PostgreSQL with
    // its default settings (fsync, synchronous_commit on).
    let sqlite = Location::Sqlite(dir.join("ingest.sqlite3"));
    let sqlite_direct = Location::Sqlite(dir.join("ingest-direct.sqlite3"));
    let value = ingest(ctx, "SQLite", sqlite, sqlite_direct, None, &sizes).await?;
    results.insert("ingest_sqlite".into(), value);
    // (Starting and stopping a server blocks: off the async scheduling.)
    let (pg, pg_direct) = tokio::task::block_in_place(|| {
        (
            PostgresServer::start_durable(),
            PostgresServer::start_durable(),
        )
    });
    let location =
        |server: &PostgresServer| Location::parse(&server.url(), None).map_err(|e| e.to_string());
    let value = ingest(
        ctx,
        "PostgreSQL",
        location(&pg)?,
        location(&pg_direct)?,
        Some(pg.url()),
        &sizes,
    )
    .await?;
    results.insert("ingest_postgres".into(), value);
    tokio::task::block_in_place(|| drop((pg, pg_direct)));

    // Queries over the stored points.
    let file = dir.join("big.sqlite3");
    let url = format!("sqlite:{}", file.display());
    let peer = Some(ctx.bins.other("db_query", "db_query"));
    let value = queries(ctx, "SQLite", Location::Sqlite(file), url, &sizes, peer).await?;
    results.insert("queries_sqlite".into(), value);
    let pg = tokio::task::block_in_place(PostgresServer::start);
    let value = queries(ctx, "PostgreSQL", location(&pg)?, pg.url(), &sizes, None).await?;
    results.insert("queries_postgres".into(), value);
    tokio::task::block_in_place(|| drop(pg));
    Ok(Value::Object(results))
}
