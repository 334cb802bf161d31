//! The SQLite back-end: one file, WAL mode (readers never wait for the
//! writer), a `WITHOUT ROWID` points table clustered on its key.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::error::StoreError;
use crate::point::{Fields, Point};
use crate::store::{Order, RawPoint, Read, Scan, Write};

/// The schema (idempotent).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    measurement_id INTEGER NOT NULL,
    tags TEXT NOT NULL,
    UNIQUE (measurement_id, tags)
);
CREATE TABLE IF NOT EXISTS points (
    measurement_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    series_id INTEGER NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (measurement_id, ts, series_id)
) WITHOUT ROWID;";

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The most series ids a writer remembers (it asks the database for others).
const SERIES_CACHE: usize = 100_000;

const SCAN_ASC: &str = "SELECT ts, series_id, fields FROM points \
     WHERE measurement_id = ?1 AND (ts, series_id) >= (?2, ?3) AND ts < ?4 \
     ORDER BY ts, series_id LIMIT ?5";
const SCAN_DESC: &str = "SELECT ts, series_id, fields FROM points \
     WHERE measurement_id = ?1 AND (ts, series_id) <= (?2, ?3) AND ts >= ?4 \
     ORDER BY ts DESC, series_id DESC LIMIT ?5";

/// The writer's connection, with the ids of measurements and series it
/// has seen.
pub struct SqliteWriter {
    connection: Connection,
    measurements: HashMap<String, i64>,
    series: HashMap<(i64, String), i64>,
}

impl SqliteWriter {
    /// Opens (creates) the file: WAL mode, `synchronous` FULL or NORMAL,
    /// the schema.
    pub fn open(path: &Path, synchronous_full: bool) -> Result<SqliteWriter, StoreError> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(
            None,
            "synchronous",
            if synchronous_full { "FULL" } else { "NORMAL" },
        )?;
        connection.execute_batch(SCHEMA)?;
        Ok(SqliteWriter {
            connection,
            measurements: HashMap::new(),
            series: HashMap::new(),
        })
    }
}

fn id_of(
    transaction: &rusqlite::Transaction<'_>,
    insert: &str,
    select: &str,
    params: impl rusqlite::Params + Clone,
) -> Result<i64, StoreError> {
    transaction
        .prepare_cached(insert)?
        .execute(params.clone())?;
    Ok(transaction
        .prepare_cached(select)?
        .query_row(params, |row| row.get(0))?)
}

impl Write for SqliteWriter {
    fn write(&mut self, points: &[Point]) -> Result<usize, StoreError> {
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Ids learned in this transaction count only once it committed.
        let mut new_measurements: HashMap<String, i64> = HashMap::new();
        let mut new_series: HashMap<(i64, String), i64> = HashMap::new();
        let mut rows: BTreeMap<(i64, i64, i64), Fields> = BTreeMap::new();
        for point in points {
            let measurement = match self
                .measurements
                .get(&point.measurement)
                .or_else(|| new_measurements.get(&point.measurement))
            {
                Some(id) => *id,
                None => {
                    let id = id_of(
                        &transaction,
                        "INSERT OR IGNORE INTO measurements (name) VALUES (?1)",
                        "SELECT id FROM measurements WHERE name = ?1",
                        [point.measurement.as_str()],
                    )?;
                    new_measurements.insert(point.measurement.clone(), id);
                    id
                }
            };
            let tags = serde_json::to_string(&point.tags).unwrap_or_else(|_| "{}".into());
            let key = (measurement, tags);
            let series = match self.series.get(&key).or_else(|| new_series.get(&key)) {
                Some(id) => *id,
                None => {
                    let id = id_of(
                        &transaction,
                        "INSERT OR IGNORE INTO series (measurement_id, tags) VALUES (?1, ?2)",
                        "SELECT id FROM series WHERE measurement_id = ?1 AND tags = ?2",
                        params![key.0, key.1],
                    )?;
                    new_series.insert(key, id);
                    id
                }
            };
            rows.entry((measurement, point.time, series))
                .or_default()
                .extend(point.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        {
            let mut upsert = transaction.prepare_cached(
                "INSERT INTO points (measurement_id, ts, series_id, fields) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (measurement_id, ts, series_id) \
                 DO UPDATE SET fields = json_patch(fields, excluded.fields)",
            )?;
            for ((measurement, time, series), fields) in &rows {
                let fields = serde_json::to_string(fields).unwrap_or_else(|_| "{}".into());
                upsert.execute(params![measurement, time, series, fields])?;
            }
        }
        transaction.commit()?;
        self.measurements.extend(new_measurements);
        if self.series.len() + new_series.len() > SERIES_CACHE {
            self.series.clear();
        }
        self.series.extend(new_series);
        Ok(rows.len())
    }

    fn delete_before(&mut self, cutoff: i64) -> Result<u64, StoreError> {
        let ids: Vec<i64> = self
            .connection
            .prepare_cached("SELECT id FROM measurements")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let mut deleted = 0;
        for id in ids {
            let transaction = self
                .connection
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            deleted += transaction
                .prepare_cached("DELETE FROM points WHERE measurement_id = ?1 AND ts < ?2")?
                .execute(params![id, cutoff])? as u64;
            transaction.commit()?;
        }
        Ok(deleted)
    }
}

/// Read-only connections to the file, opened when needed.
pub struct SqliteReadPool {
    path: PathBuf,
    pool: r2d2::Pool<SqliteConnectionManager>,
}

impl SqliteReadPool {
    /// Up to `size` read-only connections to `path` (which need not exist
    /// yet).
    pub fn new(path: &Path, size: u32) -> Result<SqliteReadPool, StoreError> {
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|connection| connection.busy_timeout(BUSY_TIMEOUT));
        let pool = r2d2::Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(10))
            .build_unchecked(manager);
        Ok(SqliteReadPool {
            path: path.to_owned(),
            pool,
        })
    }

    /// Runs `read` on a connection interrupted at `deadline`.
    pub fn with<T>(
        &self,
        deadline: Instant,
        read: impl FnOnce(&mut dyn Read) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if !self.path.exists() {
            return Err(StoreError::Missing(self.path.display().to_string()));
        }
        let connection = self.pool.get_timeout(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        )?;
        let tables: i64 = connection.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'points'",
            [],
            |row| row.get(0),
        )?;
        if tables == 0 {
            return Err(StoreError::NoSchema(self.path.display().to_string()));
        }
        connection.progress_handler(1_000, Some(move || Instant::now() >= deadline));
        let result = read(&mut SqliteRead(&connection));
        connection.progress_handler(0, None::<fn() -> bool>);
        result
    }
}

/// [`Read`] on one SQLite connection.
pub struct SqliteRead<'a>(pub &'a Connection);

fn scan_sql(order: Order) -> &'static str {
    match order {
        Order::Asc => SCAN_ASC,
        Order::Desc => SCAN_DESC,
    }
}

impl Read for SqliteRead<'_> {
    fn measurements(&mut self, name: Option<&str>) -> Result<Vec<(i64, String)>, StoreError> {
        let row = |row: &rusqlite::Row<'_>| Ok((row.get(0)?, row.get(1)?));
        Ok(match name {
            Some(name) => self
                .0
                .prepare_cached("SELECT id, name FROM measurements WHERE name = ?1")?
                .query_row([name], row)
                .optional()?
                .into_iter()
                .collect(),
            None => self
                .0
                .prepare_cached("SELECT id, name FROM measurements ORDER BY name")?
                .query_map([], row)?
                .collect::<Result<_, _>>()?,
        })
    }

    fn series_tags(&mut self, ids: &[i64]) -> Result<Vec<(i64, String)>, StoreError> {
        let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        Ok(self
            .0
            .prepare_cached(
                "SELECT id, tags FROM series WHERE id IN (SELECT value FROM json_each(?1))",
            )?
            .query_map([list], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?)
    }

    fn scan(&mut self, scan: &Scan) -> Result<Vec<RawPoint>, StoreError> {
        let limit = i64::try_from(scan.limit).unwrap_or(i64::MAX);
        Ok(self
            .0
            .prepare_cached(scan_sql(scan.order))?
            .query_map(
                params![scan.measurement, scan.key.0, scan.key.1, scan.bound, limit],
                |row| {
                    Ok(RawPoint {
                        time: row.get(0)?,
                        series: row.get(1)?,
                        fields: row.get(2)?,
                    })
                },
            )?
            .collect::<Result<_, _>>()?)
    }

    fn explain(&mut self, scan: &Scan) -> Result<String, StoreError> {
        let limit = i64::try_from(scan.limit).unwrap_or(i64::MAX);
        let mut statement = self
            .0
            .prepare(&format!("EXPLAIN QUERY PLAN {}", scan_sql(scan.order)))?;
        let lines: Vec<String> = statement
            .query_map(
                params![scan.measurement, scan.key.0, scan.key.1, scan.bound, limit],
                |row| row.get::<_, String>(3),
            )?
            .collect::<Result<_, _>>()?;
        Ok(lines.join("\n"))
    }
}
