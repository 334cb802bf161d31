//! What a storage back-end does, and which one a `DATABASE_URL` selects.
//!
//! Both back-ends keep the same three tables: `measurements` (id, name),
//! `series` (id, measurement, tags as canonical JSON; one row per tag set)
//! and `points` (measurement, time in ns, series, fields as JSON) with the
//! primary key `(measurement_id, ts, series_id)`: every query is a range
//! scan of that key, in time order, so the newest value and a range of
//! 1,000 rows are read from the index, whatever the table holds. A point
//! with the measurement, tags and time of a stored one is merged into it
//! (its fields overwrite those of the same name), as InfluxDB does: a
//! message stored twice is stored once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::point::Point;
use crate::postgres::{PgReadPool, PgWriter};
use crate::sqlite::{SqliteReadPool, SqliteWriter};

/// Time order of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest first (the default).
    Asc,
    /// Newest first.
    Desc,
}

/// A stored point as a scan returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawPoint {
    /// Nanoseconds since the epoch.
    pub time: i64,
    /// The series (tag set) id.
    pub series: i64,
    /// The fields, as JSON text.
    pub fields: String,
}

/// One key-range scan of a measurement's points: from `key` (inclusive,
/// `(time, series)`) towards `bound` (exclusive when ascending, inclusive
/// when descending), at most `limit` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// The measurement id.
    pub measurement: i64,
    /// Where the scan starts (inclusive).
    pub key: (i64, i64),
    /// Ascending: `ts < bound`; descending: `ts >= bound`.
    pub bound: i64,
    /// Direction.
    pub order: Order,
    /// Most points returned.
    pub limit: usize,
}

/// Reading, on one connection. Blocking.
pub trait Read {
    /// Measurements (id, name) sorted by name: all, or the one named.
    fn measurements(&mut self, name: Option<&str>) -> Result<Vec<(i64, String)>, StoreError>;
    /// The tags (canonical JSON text) of these series.
    fn series_tags(&mut self, ids: &[i64]) -> Result<Vec<(i64, String)>, StoreError>;
    /// The points of one key range, in key order.
    fn scan(&mut self, scan: &Scan) -> Result<Vec<RawPoint>, StoreError>;
    /// The database's plan for `scan` (`EXPLAIN QUERY PLAN` or `EXPLAIN`),
    /// one line per step: tests check that it searches the primary key.
    fn explain(&mut self, scan: &Scan) -> Result<String, StoreError>;
}

/// Writing. Blocking.
pub trait Write: Send {
    /// Stores `points` in one transaction (a point with the key of a stored
    /// one is merged into it); returns how many points were written.
    fn write(&mut self, points: &[Point]) -> Result<usize, StoreError>;

    /// Deletes every point older than `cutoff` (ns), one measurement at a
    /// time (a range of the primary key each, in its own transaction);
    /// returns how many were deleted.
    fn delete_before(&mut self, cutoff: i64) -> Result<u64, StoreError>;
}

/// Where the data lives, from `DATABASE_URL`.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(Box<postgres::Config>),
}

impl Location {
    /// `sqlite:///abs/file.sqlite3`, `sqlite://relative/file`,
    /// `sqlite:file`, or `postgres://` / `postgresql://` URLs (and
    /// PostgreSQL's `key=value` connection strings after `postgres:`);
    /// `password` (from `DATABASE_PASSWORD`) replaces one in the URL.
    ///
    /// ```
    /// use database_store::Location;
    /// assert!(matches!(Location::parse("sqlite:///tmp/x.sqlite3", None), Ok(Location::Sqlite(_))));
    /// assert!(matches!(Location::parse("postgres://u@localhost/db", None), Ok(Location::Postgres(_))));
    /// assert!(Location::parse("mysql://x", None).is_err());
    /// ```
    pub fn parse(url: &str, password: Option<&str>) -> Result<Location, StoreError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreError::Config(
                    "DATABASE_URL sqlite: names no file".into(),
                ));
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut config: postgres::Config = url.parse().map_err(|e| {
                StoreError::Config(format!("DATABASE_URL is not a PostgreSQL URL: {e}"))
            })?;
            if let Some(password) = password {
                config.password(password);
            }
            if config.get_connect_timeout().is_none() {
                config.connect_timeout(Duration::from_secs(10));
            }
            if config.get_application_name().is_none() {
                config.application_name("telestion-database");
            }
            return Ok(Location::Postgres(Box::new(config)));
        }
        Err(StoreError::Config(
            "DATABASE_URL must start with sqlite: or postgres:// (postgresql://)".into(),
        ))
    }

    /// A description for logs, without any password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(path) => format!("SQLite {}", path.display()),
            Location::Postgres(config) => {
                let hosts: Vec<String> = config
                    .get_hosts()
                    .iter()
                    .map(|host| match host {
                        postgres::config::Host::Tcp(name) => name.clone(),
                        postgres::config::Host::Unix(path) => path.display().to_string(),
                    })
                    .collect();
                format!(
                    "PostgreSQL database {} on {} as {}",
                    config.get_dbname().unwrap_or("(default)"),
                    hosts.join(","),
                    config.get_user().unwrap_or("(default user)")
                )
            }
        }
    }

    /// Opens the writer's connection (creating the file and the tables
    /// when missing). `synchronous_full`: SQLite syncs every commit to
    /// disk (`synchronous = FULL`) instead of only at checkpoints.
    pub fn open_writer(&self, synchronous_full: bool) -> Result<Box<dyn Write>, StoreError> {
        Ok(match self {
            Location::Sqlite(path) => Box::new(SqliteWriter::open(path, synchronous_full)?),
            Location::Postgres(config) => Box::new(PgWriter::open(config)?),
        })
    }

    /// A pool of up to `size` reading connections, opened when needed;
    /// one statement may take at most `statement_limit`.
    pub fn open_readers(
        &self,
        size: u32,
        statement_limit: Duration,
    ) -> Result<ReadPool, StoreError> {
        Ok(match self {
            Location::Sqlite(path) => ReadPool::Sqlite(SqliteReadPool::new(path, size)?),
            Location::Postgres(config) => {
                ReadPool::Postgres(PgReadPool::new(config, size, statement_limit)?)
            }
        })
    }
}

/// Reading connections.
pub enum ReadPool {
    /// Read-only SQLite connections (WAL: they read while the writer writes).
    Sqlite(SqliteReadPool),
    /// PostgreSQL connections.
    Postgres(PgReadPool),
}

impl ReadPool {
    /// Runs `read` on a connection taken before `deadline`, which also
    /// ends a SQLite statement still running then (PostgreSQL's
    /// `statement_timeout`, the pool's statement limit, ends its
    /// statements): a hard limit beside the engine's own budget. Blocking.
    pub fn with<T>(
        &self,
        deadline: Instant,
        read: impl FnOnce(&mut dyn Read) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            ReadPool::Sqlite(pool) => pool.with(deadline, read),
            ReadPool::Postgres(pool) => pool.with(deadline, read),
        }
    }
}
