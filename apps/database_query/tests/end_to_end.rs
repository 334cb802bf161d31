//! The writer and the query service together, as a deployment runs them,
//! against SQLite and PostgreSQL: upstream requests get upstream replies,
//! hostile values in every member are only ever data, and replies are
//! bounded pages that continue where they stopped.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use telestion_test::{
    NatsServer, PostgresServer, Process, WAIT, eventually_async, request, service_command,
    spawn_ready, workspace_binary,
};

const QUERY: &str = env!("CARGO_BIN_EXE_database_query");

/// Which database a stack uses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Store {
    Sqlite,
    Postgres,
}

/// NATS, (PostgreSQL,) the writer and the query service.
struct Stack {
    server: NatsServer,
    data: tempfile::TempDir,
    _postgres: Option<PostgresServer>,
    database_url: Option<String>,
    processes: Vec<Process>,
    client: async_nats::Client,
}

impl Stack {
    async fn start(store: Store) -> Stack {
        let server = NatsServer::start();
        let data = tempfile::tempdir().unwrap();
        let postgres = (store == Store::Postgres).then(PostgresServer::start);
        let database_url = postgres.as_ref().map(PostgresServer::url);
        let client = server.client().await;
        let mut stack = Stack {
            server,
            data,
            _postgres: postgres,
            database_url,
            processes: Vec::new(),
            client,
        };
        // The upstream services' configuration, with the InfluxDB keys a
        // deployment moving over still has.
        let writer = stack.command(
            &workspace_binary("database", "database"),
            "database",
            &[("DATA_SUBJECT", "data.>"), ("BATCH_WINDOW_MS", "10")],
        );
        stack.processes.push(spawn_ready(writer));
        let query = stack.command(
            Path::new(QUERY),
            "database_query",
            &[("QUERY_SUBJECT", "query.database")],
        );
        stack.processes.push(spawn_ready(query));
        stack
    }

    fn command(&self, binary: &Path, name: &str, extra: &[(&str, &str)]) -> Command {
        let mut cmd = service_command(binary, &self.server, name, self.data.path());
        cmd.env("INFLUXDB_URL", "http://influxdb:8086")
            .env("INFLUXDB_TOKEN", "my-super-secret-token")
            .env("INFLUXDB_ORG", "my-org")
            .env("INFLUXDB_BUCKET", "telemetry");
        if let Some(url) = &self.database_url {
            cmd.env("DATABASE_URL", url);
        }
        for (key, value) in extra {
            cmd.env(key, value);
        }
        cmd
    }

    /// Another query service on `subject` with extra settings.
    fn add_query(&mut self, subject: &str, extra: &[(&str, &str)]) {
        let mut settings = vec![("QUERY_SUBJECT", subject)];
        settings.extend_from_slice(extra);
        let cmd = self.command(Path::new(QUERY), "database_query_extra", &settings);
        self.processes.push(spawn_ready(cmd));
    }

    async fn publish(&self, subject: &str, body: Value) {
        self.client
            .publish(subject.to_owned(), body.to_string().into())
            .await
            .unwrap();
    }

    async fn query_on(&self, subject: &str, body: &Value) -> Value {
        let reply = request(&self.client, subject, body.to_string()).await;
        serde_json::from_slice(&reply.payload).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&reply.payload)
            )
        })
    }

    async fn query(&self, body: Value) -> Value {
        self.query_on("query.database", &body).await
    }

    /// Asks until the reply has `count` rows.
    async fn wait_count(&self, body: Value, count: u64) {
        eventually_async(WAIT, &format!("{count} rows for {body}"), || async {
            self.query(body.clone()).await["count"] == count
        })
        .await;
    }

    fn stop(mut self) {
        for process in &mut self.processes {
            process.signal(libc::SIGTERM);
        }
        for mut process in self.processes.drain(..) {
            assert_eq!(process.wait_exit(WAIT), Some(0), "{}", process.stderr());
        }
    }
}

fn rfc3339(ago: Duration) -> String {
    let now = std::time::SystemTime::now() - ago;
    let secs = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // Whole seconds, as InfluxDB prints them.
    database_store::time::format_rfc3339(secs as i64 * 1_000_000_000)
}

fn success(reply: &Value) -> &Vec<Value> {
    assert_eq!(reply["success"], true, "{reply}");
    let data = reply["data"].as_array().unwrap();
    assert_eq!(reply["count"], data.len(), "{reply}");
    data
}

/// The upstream README's data and requests give the upstream reply shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_requests_get_upstream_replies() {
    for store in [Store::Sqlite, Store::Postgres] {
        let stack = Stack::start(store).await;
        let recent = rfc3339(Duration::from_secs(600));
        let newer = rfc3339(Duration::from_secs(300));
        let old = rfc3339(Duration::from_secs(7200));
        stack
            .publish(
                "data.telemetry.temperature",
                json!({"time": recent, "value": 23.5, "unit": "celsius",
                       "tags": {"sensor": "temp-01", "location": "payload-bay"}}),
            )
            .await;
        stack
            .publish(
                "data.telemetry.temperature",
                json!({"timestamp": newer, "value": 24, "tags": {"sensor": "temp-02"}}),
            )
            .await;
        stack
            .publish(
                "data.telemetry.temperature",
                json!({"time": old, "value": 1.0, "tags": {"sensor": "temp-01"}}),
            )
            .await;
        stack
            .publish(
                "data.telemetry.pressure",
                json!({"value": 1013, "ok": true, "note": null}),
            )
            .await;
        stack.wait_count(json!({"range": 0}), 6).await;

        // The upstream README's request.
        let reply = stack
            .query(
                json!({"measurement": "telemetry.temperature", "range": "-1h",
                          "fields": ["value"], "filters": {"sensor": "temp-01"}}),
            )
            .await;
        let data = success(&reply);
        assert_eq!(data.len(), 1, "{reply}");
        let row = &data[0];
        assert_eq!(row["_time"], recent.as_str());
        assert_eq!(row["_measurement"], "telemetry.temperature");
        assert_eq!(row["_field"], "value");
        assert_eq!(row["_value"], 23.5);
        assert_eq!(row["sensor"], "temp-01");
        assert_eq!(row["location"], "payload-bay");
        assert_eq!(row["service"], "telestion-database");
        assert!(
            row["_start"].is_string() && row["_stop"].is_string(),
            "{row}"
        );

        // Defaults: every measurement, the last hour (the old point is out).
        assert_eq!(success(&stack.query(json!({})).await).len(), 5);
        let temperature = stack
            .query(json!({"measurement": "telemetry.temperature"}))
            .await;
        assert_eq!(success(&temperature).len(), 3, "{temperature}");
        assert_eq!(
            success(&stack.query(json!({"range": "-3h"})).await).len(),
            6
        );
        // An empty body is the empty request.
        let reply = request(&stack.client, "query.database", "").await;
        let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(success(&reply).len(), 5);

        // Filters match tags or fields (strings, numbers, booleans).
        let unit = stack.query(json!({"filters": {"unit": "celsius"}})).await;
        assert_eq!(success(&unit).len(), 2, "{unit}");
        let number = stack.query(json!({"filters": {"value": 24}})).await;
        assert_eq!(success(&number)[0]["sensor"], "temp-02");
        let flag = stack
            .query(json!({"filters": {"ok": true}, "fields": ["value"]}))
            .await;
        assert_eq!(success(&flag)[0]["_value"], 1013.0);
        let field = stack.query(json!({"filters": {"_field": "ok"}})).await;
        assert_eq!(success(&field)[0]["_value"], true);

        // Upstream's raw Flux query is refused, in upstream's error shape.
        let raw = stack
            .query(json!({"query": "from(bucket: \"telemetry\") |> range(start: -1h)"}))
            .await;
        assert_eq!(raw["success"], false, "{raw}");
        assert!(
            raw["error"].as_str().unwrap().contains("raw queries"),
            "{raw}"
        );
        stack.stop();
    }
}

/// Quote, backslash, comment and union payloads in every member of a
/// request are data: they match only what was stored with them, or are
/// refused with a reason that is not a database error; nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_payloads_are_only_data() {
    let payloads = [
        "'",
        "\"",
        "\\",
        "it's",
        "'; DROP TABLE points; --",
        "\" OR \"1\"=\"1",
        "x' OR '1'='1",
        "1 /* comment */",
        "-- comment",
        "' UNION SELECT name, name, name FROM measurements --",
        "\") |> drop() //",
        "$.a[0]",
        "{\"a\": 1}",
    ];
    for store in [Store::Sqlite, Store::Postgres] {
        let stack = Stack::start(store).await;
        // Stored with hostile names and values everywhere (a subject token
        // cannot hold spaces or dots, so the measurement gets a compact one).
        let measurement = "x'\"\\;--/*";
        for (i, payload) in payloads.iter().enumerate() {
            stack
                .publish(
                    &format!("data.{measurement}"),
                    json!({"time": format!("2024-01-01T00:00:{i:02}Z"), *payload: payload,
                           "tags": {*payload: payload}}),
                )
                .await;
        }
        stack
            .wait_count(json!({"range": 0}), payloads.len() as u64)
            .await;
        for payload in payloads {
            let reply = stack
                .query(
                    json!({"measurement": measurement, "range": 0, "fields": [payload],
                              "filters": {payload: payload}}),
                )
                .await;
            let data = success(&reply);
            assert_eq!(data.len(), 1, "{payload}: {reply}");
            assert_eq!(data[0]["_field"], payload);
            assert_eq!(data[0]["_value"], payload);
            assert_eq!(data[0][payload], payload);
            assert_eq!(data[0]["_measurement"], measurement);
        }
        for payload in payloads {
            let requests = [
                json!({"measurement": payload, "range": 0}),
                json!({"fields": [payload], "range": 0}),
                json!({"filters": {payload: "x"}, "range": 0}),
                json!({"filters": {"x": payload}, "range": 0}),
                json!({"range": payload}),
                json!({"start": payload}),
                json!({"stop": payload}),
                json!({"order": payload}),
                json!({"every": payload, "fn": "mean"}),
                json!({"every": "1s", "fn": payload}),
                json!({"limit": payload}),
                json!({"continuation": payload}),
            ];
            for body in requests {
                let reply = stack.query(body.clone()).await;
                if reply["success"] == true {
                    // At most the one point stored with this payload.
                    let data = success(&reply);
                    assert!(data.len() <= 1, "{body}: {reply}");
                    for row in data {
                        assert!(
                            row["_field"] == payload || row[payload] == payload,
                            "{body}: {reply}"
                        );
                    }
                } else {
                    let error = reply["error"].as_str().unwrap();
                    assert!(
                        !error.contains("SQLite")
                            && !error.contains("PostgreSQL")
                            && !error.contains("syntax"),
                        "{store:?}: {body} reached the database: {error}"
                    );
                }
            }
        }
        // Everything is still there.
        let all = stack.query(json!({"range": 0})).await;
        assert_eq!(success(&all).len(), payloads.len(), "{store:?}");
        stack.stop();
    }
}

/// Row limits, byte-bounded pages, the time budget and aggregation windows:
/// pages continue where they stopped and add up to the whole answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_pages_continue_where_they_stopped() {
    for store in [Store::Sqlite, Store::Postgres] {
        let mut stack = Stack::start(store).await;
        stack.add_query("query.slow", &[("QUERY_TIMEOUT_MS", "1")]);
        let base = 1_700_000_000_000i64; // ms
        for i in 0..2500i64 {
            let time = database_store::time::format_rfc3339((base + i) * 1_000_000);
            stack
                .publish(
                    "data.pages",
                    json!({"time": time, "n": i, "tags": {"s": (i % 2).to_string()}}),
                )
                .await;
        }
        let everything = json!({"measurement": "pages", "range": 0});
        stack.wait_count(everything.clone(), 2500).await;
        let all = success(&stack.query(everything.clone()).await).clone();
        let ns: Vec<f64> = all.iter().map(|r| r["_value"].as_f64().unwrap()).collect();
        assert_eq!(ns, (0..2500).map(|i| i as f64).collect::<Vec<_>>());

        for (order, expected) in [
            ("asc", ns.clone()),
            ("desc", ns.iter().rev().copied().collect()),
        ] {
            let request =
                json!({"measurement": "pages", "range": 0, "limit": 1000, "order": order});
            let mut body = request.clone();
            let mut pages = Vec::new();
            let mut rows = Vec::new();
            loop {
                let reply = stack.query(body.clone()).await;
                let data = success(&reply);
                pages.push((data.len(), reply["truncated"] == true));
                rows.extend(data.iter().map(|r| r["_value"].as_f64().unwrap()));
                match reply["continuation"].as_str() {
                    Some(token) => {
                        body = request.clone();
                        body["continuation"] = token.into();
                    }
                    None => break,
                }
            }
            assert_eq!(pages, [(1000, true), (1000, true), (500, false)], "{order}");
            assert_eq!(rows, expected, "{order}");
        }

        // A 1 ms budget: truncated pages that still add up.
        let mut body = everything.clone();
        let mut rows = Vec::new();
        let mut pages = 0;
        loop {
            pages += 1;
            let reply = stack.query_on("query.slow", &body).await;
            rows.extend(
                success(&reply)
                    .iter()
                    .map(|r| r["_value"].as_f64().unwrap()),
            );
            match reply["continuation"].as_str() {
                Some(token) => body["continuation"] = token.into(),
                None => break,
            }
            assert!(pages < 10_000, "no progress");
        }
        assert!(pages > 1, "a 1 ms budget answered 2500 rows at once");
        assert_eq!(rows, ns, "{store:?}");

        // Windows of 100 ms: per series 50 points each.
        let windows = json!({"measurement": "pages", "range": 0, "every": "100ms", "fn": "count"});
        let counts = success(&stack.query(windows).await).clone();
        assert_eq!(counts.len(), 50, "25 windows x 2 series");
        assert!(counts.iter().all(|r| r["_value"] == 50), "{counts:?}");
        let sums = json!({"measurement": "pages", "range": 0, "every": "100ms", "fn": "sum",
                          "filters": {"s": "0"}});
        let sums = success(&stack.query(sums).await).clone();
        let first: f64 = (0..100).filter(|i| i % 2 == 0).map(f64::from).sum();
        assert_eq!(sums[0]["_value"], first);
        assert_eq!(
            sums[0]["_time"],
            database_store::time::format_rfc3339((base + 100) * 1_000_000),
            "a window's time is its end, as Flux's aggregateWindow"
        );
        // Windows of 1 s (aligned to the epoch; the points span 2.5 s):
        // the first holds the odd n from 1 to 999.
        for (function, expected) in [
            ("mean", 500.0),
            ("min", 1.0),
            ("max", 999.0),
            ("first", 1.0),
            ("last", 999.0),
        ] {
            let reply = stack
                .query(
                    json!({"measurement": "pages", "range": 0, "every": "1s", "fn": function,
                              "filters": {"s": "1"}}),
                )
                .await;
            let data = success(&reply);
            assert_eq!(data.len(), 3, "{function}: {reply}");
            assert_eq!(data[0]["_value"], expected, "{function}");
        }
        // Aggregated pages continue too.
        let request = json!({"measurement": "pages", "range": 0, "every": "100ms", "fn": "count",
                             "limit": 7});
        let mut body = request.clone();
        let mut rows = 0;
        while let Some(token) = {
            let reply = stack.query(body.clone()).await;
            rows += success(&reply).len();
            reply["continuation"].as_str().map(str::to_owned)
        } {
            body = request.clone();
            body["continuation"] = token.into();
        }
        assert_eq!(rows, 50);
        // Windows with a 1 ms budget: each page finishes at least one.
        let mut body = request.clone();
        body["limit"] = 10_000.into();
        let mut windows = 0;
        let mut pages = 0;
        loop {
            pages += 1;
            assert!(pages < 1_000, "no progress");
            let reply = stack.query_on("query.slow", &body).await;
            windows += success(&reply).len();
            match reply["continuation"].as_str() {
                Some(token) => body["continuation"] = token.into(),
                None => break,
            }
        }
        assert_eq!(windows, 50, "{store:?}: {pages} pages");

        // A continuation belongs to its request.
        let first = stack
            .query(json!({"measurement": "pages", "range": 0, "limit": 1}))
            .await;
        let token = first["continuation"].as_str().unwrap();
        let other = stack
            .query(json!({"measurement": "pages", "range": 0, "limit": 2, "continuation": token}))
            .await;
        assert_eq!(other["success"], false, "{other}");
        stack.stop();
    }
}
