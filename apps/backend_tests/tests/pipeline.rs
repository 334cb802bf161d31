//! Device to database: every frame the simulator sent is stored exactly
//! once, across a SIGTERM and a SIGKILL of the database writer and of the
//! parser; the query service answers what the database holds.

use std::time::Duration;

use backend_tests::{Backend, query_count, read_counts};
use serde_json::{Value, json};
use telestion_test::{error_header, eventually_async, request, request_json};

/// Polls `telemetry.query.count` until session `session` has `rows` rows.
async fn wait_for_rows(client: &async_nats::Client, session: u32, rows: u64, what: &str) {
    eventually_async(Duration::from_secs(40), what, || async {
        let Ok(reply) = tokio::time::timeout(
            Duration::from_secs(5),
            client.request("telemetry.query.count", "{}".into()),
        )
        .await
        else {
            return false;
        };
        let Ok(reply) = reply else { return false };
        if error_header(&reply).is_some() {
            return false;
        }
        let count: backend_tests::Count = serde_json::from_slice(&reply.payload).unwrap();
        count
            .sessions
            .iter()
            .any(|s| s.session == session && s.count >= rows)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_is_stored_once_across_restarts_and_kills() {
    let mut backend = Backend::start(
        200,
        &["io_service", "telemetry_parser", "db_writer", "db_query"],
    );
    let client = backend.server.client().await;
    let session = backend.session;

    wait_for_rows(&client, session, 100, "the first 100 frames stored").await;
    backend.restart_gracefully("db_writer");
    wait_for_rows(
        &client,
        session,
        400,
        "400 frames after a SIGTERM of db_writer",
    )
    .await;
    backend.restart_killed("db_writer");
    wait_for_rows(
        &client,
        session,
        700,
        "700 frames after a SIGKILL of db_writer",
    )
    .await;
    backend.restart_gracefully("telemetry_parser");
    wait_for_rows(
        &client,
        session,
        1000,
        "1000 frames after a SIGTERM of the parser",
    )
    .await;
    backend.restart_killed("telemetry_parser");
    wait_for_rows(
        &client,
        session,
        1300,
        "1300 frames after a SIGKILL of the parser",
    )
    .await;

    let sent = backend.stop_telemetry();
    wait_for_rows(&client, session, sent, "every frame the device sent").await;
    // Give a late duplicate the chance to show up (none may).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let count = query_count(&client).await;
    let expected = backend_tests::SessionCount {
        session,
        min_counter: 0,
        max_counter: u32::try_from(sent - 1).unwrap(),
        count: sent,
    };
    assert_eq!(
        count.sessions,
        std::slice::from_ref(&expected),
        "count reply: {count:?}"
    );
    assert_eq!(count.rows, sent);
    // The file itself says the same (a primary key makes count == range
    // mean every counter exactly once).
    assert_eq!(read_counts(&backend.database()), [expected]);

    queries_match_the_database(&backend, &client).await;
}

/// latest, range and series against a direct read of the file.
async fn queries_match_the_database(backend: &Backend, client: &async_nats::Client) {
    let connection = rusqlite::Connection::open_with_flags(
        backend.database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let rows = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Vec<Value> {
        let mut statement = connection.prepare(sql).unwrap();
        statement
            .query_map(params, |r| {
                Ok(json!({
                    "session": r.get::<_, u32>(0)?,
                    "counter": r.get::<_, u32>(1)?,
                    "time_ms": r.get::<_, i64>(2)?,
                    "temperature_c": r.get::<_, f64>(3)?,
                    "voltage_v": r.get::<_, f64>(4)?,
                    "current_a": r.get::<_, f64>(5)?,
                    "status": r.get::<_, u16>(6)?,
                    "stored_ms": r.get::<_, i64>(7)?,
                }))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let columns =
        "session, counter, time_ms, temperature_c, voltage_v, current_a, status, stored_ms";

    let latest: Value = request_json(client, "telemetry.query.latest", &json!({"n": 25})).await;
    let expected = rows(
        &format!(
            "SELECT {columns} FROM telemetry ORDER BY time_ms DESC, session DESC, counter DESC LIMIT 25"
        ),
        &[],
    );
    assert_eq!(latest["rows"], json!(expected));

    let (first, last): (i64, i64) = connection
        .query_row(
            "SELECT min(time_ms), max(time_ms) FROM telemetry",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let middle = (first + last) / 2;
    let range: Value = request_json(
        client,
        "telemetry.query.range",
        &json!({"from_ms": first, "to_ms": middle, "limit": 100}),
    )
    .await;
    let expected = rows(
        &format!(
            "SELECT {columns} FROM telemetry WHERE time_ms BETWEEN ?1 AND ?2 ORDER BY time_ms, session, counter LIMIT 100"
        ),
        &[&first, &middle],
    );
    assert_eq!(range["rows"], json!(expected));
    let in_range: i64 = connection
        .query_row(
            "SELECT count(*) FROM telemetry WHERE time_ms BETWEEN ?1 AND ?2",
            [first, middle],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(range["truncated"], json!(in_range > 100));

    // The series: each bucket's count, min, max and average, recomputed.
    let series: Value = request_json(
        client,
        "telemetry.query.series",
        &json!({"field": "temperature_c", "from_ms": first, "to_ms": last, "points": 10}),
    )
    .await;
    let points = series["points"].as_array().unwrap();
    assert!(!points.is_empty() && points.len() <= 10, "{series}");
    let total: u64 = points.iter().map(|p| p["count"].as_u64().unwrap()).sum();
    let all: i64 = connection
        .query_row("SELECT count(*) FROM telemetry", [], |r| r.get(0))
        .unwrap();
    assert_eq!(total, all as u64, "every row is in one bucket");
    let width = (last - first) / 10 + 1;
    for point in points {
        let start = point["time_ms"].as_i64().unwrap();
        let (min, max, avg, count): (f64, f64, f64, i64) = connection
            .query_row(
                "SELECT min(temperature_c), max(temperature_c), avg(temperature_c), count(*) \
                 FROM telemetry WHERE time_ms >= ?1 AND time_ms < ?2",
                [start, start + width],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(point["count"].as_i64(), Some(count), "{point}");
        assert_eq!(point["min"].as_f64(), Some(min), "{point}");
        assert_eq!(point["max"].as_f64(), Some(max), "{point}");
        assert!(
            (point["avg"].as_f64().unwrap() - avg).abs() < 1e-9,
            "{point}"
        );
    }
}

#[tokio::test]
async fn bad_queries_get_400_and_a_missing_database_503() {
    let mut backend = Backend::start(10, &["db_query"]);
    let client = backend.server.client().await;

    // No db_writer has run: the database does not exist.
    let reply = request(&client, "telemetry.query.count", "{}").await;
    let error = error_header(&reply).expect("an error reply");
    assert!(error.contains("does not exist yet"), "{error}");
    assert_eq!(code(&reply), "503");

    backend.start_service("db_writer");
    let count = query_count(&client).await;
    assert_eq!(count.rows, 0);

    for (subject, body, reason) in [
        (
            "telemetry.query.latest",
            r#"{"n": 0}"#,
            "n must be 1..=1000",
        ),
        (
            "telemetry.query.latest",
            r#"{"n": 1001}"#,
            "n must be 1..=1000",
        ),
        ("telemetry.query.latest", r#"{"n": "ten"}"#, "invalid"),
        ("telemetry.query.latest", "not json", "invalid"),
        (
            "telemetry.query.range",
            r#"{"from_ms": 5, "to_ms": 1}"#,
            "after to_ms",
        ),
        (
            "telemetry.query.range",
            r#"{"from_ms": 1, "to_ms": 5, "limit": 5000}"#,
            "limit must be",
        ),
        (
            "telemetry.query.series",
            r#"{"field": "status", "from_ms": 1, "to_ms": 5, "points": 3}"#,
            "unknown field",
        ),
        (
            "telemetry.query.series",
            r#"{"field": "voltage_v", "from_ms": 1, "to_ms": 5, "points": 0}"#,
            "points must be",
        ),
        (
            "telemetry.query.series",
            r#"{"field": "voltage_v", "from_ms": 1, "to_ms": 5, "points": 100000}"#,
            "points must be",
        ),
        ("telemetry.query.count", r#"{"all": true}"#, "no arguments"),
    ] {
        let reply = request(&client, subject, body).await;
        let error =
            error_header(&reply).unwrap_or_else(|| panic!("{subject} {body}: no error reply"));
        assert_eq!(code(&reply), "400", "{subject} {body}: {error}");
        assert!(error.contains(reason), "{subject} {body}: {error}");
    }
    // Still serving.
    assert_eq!(query_count(&client).await.rows, 0);
}

fn code(reply: &async_nats::Message) -> String {
    reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_delays_frames_but_loses_none() {
    let backend = Backend::start_with(
        50,
        &["io_service", "telemetry_parser", "db_writer", "db_query"],
        vec![("db_writer", "DURABLE_BACKOFF".into(), "1".into())],
    );
    let client = backend.server.client().await;
    let session = backend.session;
    wait_for_rows(&client, session, 20, "the first frames stored").await;

    // Another writer holds the database for longer than db_writer's busy
    // timeout (5 s): its transactions fail and the frames come again.
    let database = backend.database();
    let locker = tokio::task::spawn_blocking(move || {
        let connection = rusqlite::Connection::open(database).unwrap();
        connection.execute_batch("BEGIN EXCLUSIVE").unwrap();
        std::thread::sleep(Duration::from_secs(7));
        connection.execute_batch("COMMIT").unwrap();
    });
    locker.await.unwrap();

    let sent = backend.stop_telemetry();
    wait_for_rows(&client, session, sent, "every frame after the lock").await;
    let count = query_count(&client).await;
    assert_eq!(count.rows, sent);
    assert_eq!(
        count.sessions[0].max_counter,
        u32::try_from(sent - 1).unwrap()
    );
    // The failures were handler errors: logged, and the writer kept running.
    let mut backend = backend;
    assert!(backend.service("db_writer").is_running());
    let stderr = backend.service("db_writer").stderr();
    assert!(stderr.contains("database is locked"), "{stderr}");
}
