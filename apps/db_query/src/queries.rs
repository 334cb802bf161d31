//! Requests, replies and the SQL behind them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, Row, params};
use serde::{Deserialize, Serialize};
use telestion::extract::DataDir;
use telestion::{HandlerError, tracing};

/// The most rows or points one reply carries.
pub const MAX_ROWS: u32 = 1000;

/// `telemetry.query.latest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatestRequest {
    /// How many rows, 1..=1000.
    pub n: u32,
}

/// `telemetry.query.range`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeRequest {
    /// Device time, unix ms, inclusive.
    pub from_ms: u64,
    /// Device time, unix ms, inclusive.
    pub to_ms: u64,
    /// At most this many rows, 1..=1000 (default 1000).
    pub limit: Option<u32>,
}

/// `telemetry.query.series`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesRequest {
    /// `temperature_c`, `voltage_v` or `current_a`.
    pub field: String,
    /// Device time, unix ms, inclusive.
    pub from_ms: u64,
    /// Device time, unix ms, inclusive.
    pub to_ms: u64,
    /// Buckets, 1..=1000.
    pub points: u32,
}

/// One stored frame.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct StoredRow {
    /// Simulator session.
    pub session: u32,
    /// Frame counter in the session.
    pub counter: u32,
    /// Unix ms at the device.
    pub time_ms: u64,
    /// Degrees Celsius.
    pub temperature_c: f64,
    /// Volts.
    pub voltage_v: f64,
    /// Amperes.
    pub current_a: f64,
    /// Status flags.
    pub status: u16,
    /// Unix ms when `db_writer` stored it.
    pub stored_ms: u64,
}

/// Reply to `latest`.
#[derive(Debug, Serialize)]
pub struct RowsReply {
    /// Newest first.
    pub rows: Vec<StoredRow>,
}

/// Reply to `range`.
#[derive(Debug, Serialize)]
pub struct RangeReply {
    /// Oldest first.
    pub rows: Vec<StoredRow>,
    /// More rows are in the range than the reply carries.
    pub truncated: bool,
}

/// One bucket of a series.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Point {
    /// The bucket's start (unix ms).
    pub time_ms: u64,
    /// Smallest value in the bucket.
    pub min: f64,
    /// Largest value in the bucket.
    pub max: f64,
    /// Average.
    pub avg: f64,
    /// Rows in the bucket.
    pub count: u64,
}

/// Reply to `series`.
#[derive(Debug, Serialize)]
pub struct SeriesReply {
    /// The field.
    pub field: String,
    /// Non-empty buckets, oldest first.
    pub points: Vec<Point>,
}

/// Rows of one session.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SessionCount {
    /// The session.
    pub session: u32,
    /// Its smallest counter stored.
    pub min_counter: u32,
    /// Its largest counter stored.
    pub max_counter: u32,
    /// Its rows.
    pub count: u64,
}

/// Reply to `count`.
#[derive(Debug, Serialize)]
pub struct CountReply {
    /// All rows.
    pub rows: u64,
    /// Per session (the 1000 most recent sessions), ordered by session.
    pub sessions: Vec<SessionCount>,
}

/// `count` takes `{}` or an empty body.
pub fn check_empty_request(body: &[u8]) -> Result<(), HandlerError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body) {
        Ok(map) if map.is_empty() => Ok(()),
        Ok(_) => Err(HandlerError::client("count takes no arguments: send {}")),
        Err(e) => Err(HandlerError::client(format!(
            "the request is not a JSON object: {e}"
        ))),
    }
}

fn to_i64(value: u64, name: &str) -> Result<i64, HandlerError> {
    i64::try_from(value).map_err(|_| HandlerError::client(format!("{name} is out of range")))
}

fn check_range(from_ms: u64, to_ms: u64) -> Result<(i64, i64), HandlerError> {
    if from_ms > to_ms {
        return Err(HandlerError::client(format!(
            "from_ms ({from_ms}) is after to_ms ({to_ms})"
        )));
    }
    Ok((to_i64(from_ms, "from_ms")?, to_i64(to_ms, "to_ms")?))
}

fn check_count(value: u32, name: &str) -> Result<u32, HandlerError> {
    if value == 0 || value > MAX_ROWS {
        return Err(HandlerError::client(format!(
            "{name} must be 1..={MAX_ROWS}, not {value}"
        )));
    }
    Ok(value)
}

/// The newest rows: read backwards along `telemetry_time_key`.
const LATEST_SQL: &str = "SELECT session, counter, time_ms, temperature_c, voltage_v, current_a, \
     status, stored_ms FROM telemetry ORDER BY time_ms DESC, session DESC, counter DESC LIMIT ?1";

/// A time range, oldest first: a range of `telemetry_time_key`.
const RANGE_SQL: &str = "SELECT session, counter, time_ms, temperature_c, voltage_v, current_a, \
     status, stored_ms FROM telemetry WHERE time_ms BETWEEN ?1 AND ?2 \
     ORDER BY time_ms, session, counter LIMIT ?3";

/// Buckets of one column over a time range (`column` is one of a fixed
/// list, never text from a request).
fn series_sql(column: &str) -> String {
    format!(
        "SELECT (time_ms - ?1) / ?3 AS bucket, min({column}), max({column}), \
         avg({column}), count(*) FROM telemetry WHERE time_ms BETWEEN ?1 AND ?2 \
         GROUP BY bucket ORDER BY bucket"
    )
}

fn stored_row(row: &Row<'_>) -> rusqlite::Result<StoredRow> {
    Ok(StoredRow {
        session: row.get(0)?,
        counter: row.get(1)?,
        time_ms: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
        temperature_c: row.get(3)?,
        voltage_v: row.get(4)?,
        current_a: row.get(5)?,
        status: row.get(6)?,
        stored_ms: u64::try_from(row.get::<_, i64>(7)?).unwrap_or(0),
    })
}

/// How long a statement waits for the writer's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The database, read through a pool of read-only connections (WAL mode:
/// readers never wait for each other or for the writer), each request
/// within its own deadline.
pub struct Reader {
    path: PathBuf,
    pool: r2d2::Pool<SqliteConnectionManager>,
    timeout: Duration,
}

impl Reader {
    /// A reader of the database at `path` (it need not exist yet) with up
    /// to `connections` connections; a request still running after
    /// `timeout` is stopped and answered with 504.
    pub fn new(path: PathBuf, connections: u32, timeout: Duration) -> Reader {
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(
                // SQLITE_OPEN_NOFOLLOW: a link anywhere in the path is
                // refused.
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_NOFOLLOW,
            )
            .with_init(|connection| connection.busy_timeout(BUSY_TIMEOUT));
        let pool = r2d2::Pool::builder()
            .max_size(connections.max(1))
            .min_idle(Some(0))
            .build_unchecked(manager);
        Reader {
            path,
            pool,
            timeout,
        }
    }

    /// A 503 for the requester, which never names the server's files; the
    /// path goes to the log.
    fn unavailable(&self, what: impl std::fmt::Display) -> HandlerError {
        tracing::warn!(path = %self.path.display(), "the telemetry database {what}");
        HandlerError::server(format!(
            "the telemetry database {what} (has db_writer run?)"
        ))
        .with_code(503)
    }

    /// The database's path once it is checked: its directory, the file and
    /// SQLite's files beside it (`-wal`, `-shm`, `-journal`) are no
    /// symbolic links (the database would be read, and its shared-memory
    /// file written, wherever one points). Blocking.
    fn checked_path(&self) -> Result<PathBuf, HandlerError> {
        let (Some(dir), Some(name)) = (
            self.path.parent(),
            self.path.file_name().and_then(|n| n.to_str()),
        ) else {
            return Err(self.unavailable("path (DB_PATH) names no file"));
        };
        let dir = if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            dir
        };
        let refused = |e: telestion::extract::DataFileError| {
            tracing::error!(error = %telestion::error_chain(&e), "the telemetry database is not used");
            HandlerError::server(
                "the telemetry database cannot be opened safely: a symbolic link or a special \
                 file is where it should be (see the query service's log)",
            )
            .with_code(503)
        };
        let files = match DataDir(dir.to_owned()).files() {
            Ok(files) => files,
            Err(telestion::extract::DataFileError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(self.unavailable("does not exist yet"));
            }
            Err(e) => return Err(refused(e)),
        };
        match files.check(name) {
            Ok(true) => {}
            Ok(false) => return Err(self.unavailable("does not exist yet")),
            Err(e) => return Err(refused(e)),
        }
        files
            .library_path(name, &["-wal", "-shm", "-journal"])
            .map_err(refused)
    }

    /// Runs `query` on a pooled connection, interrupted at the deadline.
    /// Blocking.
    fn with<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, HandlerError> {
        let deadline = Instant::now() + self.timeout;
        // Checked before every query: the files may have been replaced by
        // links since the pool opened its connections.
        self.checked_path()?;
        let connection = self
            .pool
            .get_timeout(self.timeout)
            .map_err(|e| self.unavailable(format_args!("cannot be opened: {e}")))?;
        connection.progress_handler(1_000, Some(move || Instant::now() >= deadline));
        let result = query(&connection);
        connection.progress_handler(0, None::<fn() -> bool>);
        match result {
            Ok(value) => Ok(value),
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::OperationInterrupted =>
            {
                Err(HandlerError::server(format!(
                    "the query took longer than {} ms (QUERY_TIMEOUT_MS) and was stopped",
                    self.timeout.as_millis()
                ))
                .with_code(504))
            }
            Err(e) if e.to_string().contains("no such table") => {
                Err(self.unavailable("has no telemetry table yet"))
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "query failed");
                Err(HandlerError::server(format!("the query failed: {e}")))
            }
        }
    }

    /// `telemetry.query.latest`.
    pub fn latest(&self, request: &LatestRequest) -> Result<RowsReply, HandlerError> {
        let n = check_count(request.n, "n")?;
        let rows = self.with(|c| {
            let mut statement = c.prepare_cached(LATEST_SQL)?;
            statement
                .query_map(params![n], stored_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(RowsReply { rows })
    }

    /// `telemetry.query.range`.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeReply, HandlerError> {
        let (from, to) = check_range(request.from_ms, request.to_ms)?;
        let limit = check_count(request.limit.unwrap_or(MAX_ROWS), "limit")?;
        let mut rows = self.with(|c| {
            let mut statement = c.prepare_cached(RANGE_SQL)?;
            statement
                .query_map(params![from, to, limit + 1], stored_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let truncated = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        Ok(RangeReply { rows, truncated })
    }

    /// `telemetry.query.series`.
    pub fn series(&self, request: &SeriesRequest) -> Result<SeriesReply, HandlerError> {
        // The column name is chosen from a fixed list, never copied from the
        // request into the SQL.
        let column = match request.field.as_str() {
            "temperature_c" => "temperature_c",
            "voltage_v" => "voltage_v",
            "current_a" => "current_a",
            other => {
                return Err(HandlerError::client(format!(
                    "unknown field {other:?}: use temperature_c, voltage_v or current_a"
                )));
            }
        };
        let (from, to) = check_range(request.from_ms, request.to_ms)?;
        let points = i64::from(check_count(request.points, "points")?);
        // Wide enough that (to - from) / width < points: bucket indexes
        // are 0..points.
        let width = (to - from) / points + 1;
        let points = self.with(|c| {
            let mut statement = c.prepare_cached(&series_sql(column))?;
            statement
                .query_map(params![from, to, width], |row| {
                    let bucket: i64 = row.get(0)?;
                    Ok(Point {
                        time_ms: u64::try_from(from + bucket * width).unwrap_or(0),
                        min: row.get(1)?,
                        max: row.get(2)?,
                        avg: row.get(3)?,
                        count: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(SeriesReply {
            field: request.field.clone(),
            points,
        })
    }

    /// `telemetry.query.count`: from the per-session counts the writer
    /// keeps (one row per session), or, in a database made before them,
    /// from the rows.
    pub fn count(&self) -> Result<CountReply, HandlerError> {
        self.with(|c| {
            let counted: bool = c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sessions'",
                [],
                |row| row.get::<_, i64>(0).map(|n| n > 0),
            )?;
            let (total, sessions) = if counted {
                (
                    "SELECT coalesce(sum(count), 0) FROM sessions",
                    format!(
                        "SELECT * FROM (SELECT session, min_counter, max_counter, count \
                         FROM sessions ORDER BY newest_ms DESC LIMIT {MAX_ROWS}) ORDER BY session"
                    ),
                )
            } else {
                (
                    "SELECT count(*) FROM telemetry",
                    format!(
                        "SELECT session, min_c, max_c, n FROM (SELECT session, min(counter) AS min_c, \
                         max(counter) AS max_c, count(*) AS n, max(time_ms) AS newest \
                         FROM telemetry GROUP BY session ORDER BY newest DESC LIMIT {MAX_ROWS}) \
                         ORDER BY session"
                    ),
                )
            };
            let rows: i64 = c.query_row(total, [], |r| r.get(0))?;
            let mut statement = c.prepare_cached(&sessions)?;
            let sessions = statement
                .query_map([], |row| {
                    Ok(SessionCount {
                        session: row.get(0)?,
                        min_counter: row.get(1)?,
                        max_counter: row.get(2)?,
                        count: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(CountReply {
                rows: u64::try_from(rows).unwrap_or(0),
                sessions,
            })
        })
    }

    /// The database's plan (`EXPLAIN QUERY PLAN`) of `sql` with `params`,
    /// one line per step.
    #[cfg(test)]
    fn explain(&self, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        self.with(|c| {
            c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?
                .query_map(params, |row| row.get::<_, String>(3))?
                .collect()
        })
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's schema, as db_writer creates it.
    const SCHEMA: &str = include_str!("../../db_writer/src/schema.sql");

    /// Every query reads an index range (or the per-session counts), never
    /// the whole table, and `latest` and `range` need no sorting.
    #[test]
    fn query_plans_use_the_indexes() {
        let rows: Vec<_> = (0..2000u32)
            .map(|i| (i % 3, i, 1000 + u64::from(i), f64::from(i)))
            .collect();
        let (_dir, reader) = database(&rows);
        let latest = reader.explain(LATEST_SQL, params![10]).join("\n");
        assert!(
            latest.contains("SCAN telemetry USING INDEX telemetry_time_key"),
            "{latest}"
        );
        let range = reader
            .explain(RANGE_SQL, params![1000, 2000, 1001])
            .join("\n");
        assert!(
            range.contains(
                "SEARCH telemetry USING INDEX telemetry_time_key (time_ms>? AND time_ms<?)"
            ),
            "{range}"
        );
        for plan in [&latest, &range] {
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
        let series = reader
            .explain(&series_sql("voltage_v"), params![1000, 2000, 10])
            .join("\n");
        assert!(
            series.contains(
                "SEARCH telemetry USING INDEX telemetry_time_key (time_ms>? AND time_ms<?)"
            ),
            "{series}"
        );
        // `count` reads the per-session counts only.
        let total = reader
            .explain("SELECT coalesce(sum(count), 0) FROM sessions", [])
            .join("\n");
        let sessions = reader
            .explain(
                "SELECT * FROM (SELECT session, min_counter, max_counter, count FROM sessions \
                 ORDER BY newest_ms DESC LIMIT 1000) ORDER BY session",
                [],
            )
            .join("\n");
        for plan in [&total, &sessions] {
            assert!(!plan.contains("telemetry"), "{plan}");
        }
        let count = reader.count().unwrap();
        assert_eq!(count.rows, 2000);
        assert_eq!(count.sessions.len(), 3);
        assert_eq!(count.sessions[0].count, 667);
    }

    fn database(rows: &[(u32, u32, u64, f64)]) -> (tempfile::TempDir, Reader) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("telemetry.sqlite3");
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c.execute_batch("BEGIN").unwrap();
        for (session, counter, time, value) in rows {
            c.execute(
                "INSERT INTO telemetry VALUES (?1, ?2, ?3, ?4, 12.0, 0.5, 0, ?3 + 5)",
                params![session, counter, *time as i64, value],
            )
            .unwrap();
        }
        c.execute_batch("COMMIT").unwrap();
        (dir, Reader::new(path, 2, Duration::from_secs(5)))
    }

    #[test]
    fn missing_database_is_503() {
        let dir = tempfile::tempdir().unwrap();
        let reader = Reader::new(dir.path().join("none.sqlite3"), 1, Duration::from_secs(5));
        let error = reader.count().unwrap_err();
        assert_eq!(error.code(), 503);
        assert!(error.message().contains("does not exist yet"));
    }

    #[test]
    fn latest_range_series_count() {
        let rows: Vec<_> = (0..10u32)
            .map(|i| (1, i, 1000 + u64::from(i) * 100, f64::from(i)))
            .collect();
        let (_dir, reader) = database(&rows);
        let latest = reader.latest(&LatestRequest { n: 3 }).unwrap();
        let counters: Vec<_> = latest.rows.iter().map(|r| r.counter).collect();
        assert_eq!(counters, [9, 8, 7]);
        assert_eq!(latest.rows[0].stored_ms, 1905);

        let range = reader
            .range(&RangeRequest {
                from_ms: 1100,
                to_ms: 1500,
                limit: Some(3),
            })
            .unwrap();
        assert!(range.truncated);
        let counters: Vec<_> = range.rows.iter().map(|r| r.counter).collect();
        assert_eq!(counters, [1, 2, 3]);

        // 1000..=1900 in 2 buckets of width 451: [1000, 1451) and [1451, 1902).
        let series = reader
            .series(&SeriesRequest {
                field: "temperature_c".into(),
                from_ms: 1000,
                to_ms: 1900,
                points: 2,
            })
            .unwrap();
        assert_eq!(
            series.points,
            [
                Point {
                    time_ms: 1000,
                    min: 0.0,
                    max: 4.0,
                    avg: 2.0,
                    count: 5
                },
                Point {
                    time_ms: 1451,
                    min: 5.0,
                    max: 9.0,
                    avg: 7.0,
                    count: 5
                }
            ]
        );

        let count = reader.count().unwrap();
        assert_eq!(count.rows, 10);
        assert_eq!(
            count.sessions,
            [SessionCount {
                session: 1,
                min_counter: 0,
                max_counter: 9,
                count: 10
            }]
        );
    }

    #[test]
    fn bad_requests_are_400() {
        let (_dir, reader) = database(&[]);
        assert_eq!(
            reader.latest(&LatestRequest { n: 0 }).unwrap_err().code(),
            400
        );
        assert_eq!(
            reader
                .latest(&LatestRequest { n: 1001 })
                .unwrap_err()
                .code(),
            400
        );
        let backwards = RangeRequest {
            from_ms: 2,
            to_ms: 1,
            limit: None,
        };
        assert_eq!(reader.range(&backwards).unwrap_err().code(), 400);
        let field = SeriesRequest {
            field: "status; DROP TABLE telemetry".into(),
            from_ms: 0,
            to_ms: 1,
            points: 1,
        };
        assert_eq!(reader.series(&field).unwrap_err().code(), 400);
        let huge = RangeRequest {
            from_ms: 0,
            to_ms: u64::MAX,
            limit: None,
        };
        assert_eq!(reader.range(&huge).unwrap_err().code(), 400);
        assert!(check_empty_request(b"{}").is_ok());
        assert!(check_empty_request(b"").is_ok());
        assert_eq!(check_empty_request(b"[1]").unwrap_err().code(), 400);
        assert_eq!(check_empty_request(b"{\"a\":1}").unwrap_err().code(), 400);
    }

    #[test]
    fn full_range_series_stays_bounded() {
        let (_dir, reader) = database(&[(1, 0, 0, 1.0), (1, 1, i64::MAX as u64, 2.0)]);
        let series = reader
            .series(&SeriesRequest {
                field: "voltage_v".into(),
                from_ms: 0,
                to_ms: i64::MAX as u64,
                points: 1000,
            })
            .unwrap();
        assert_eq!(series.points.len(), 2);
        assert!(series.points.iter().all(|p| p.count == 1));
    }
}
