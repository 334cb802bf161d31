//! The PostgreSQL back-end: the same tables as SQLite (fields and tags as
//! `jsonb`), batches written with one `INSERT ... SELECT FROM unnest(...)`
//! of arrays (parameters, never text pasted into SQL), readers from a pool.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use r2d2_postgres::PostgresConnectionManager;

use crate::error::StoreError;
use crate::point::{Fields, Point};
use crate::store::{Order, RawPoint, Read, Scan, Write};

/// The schema (idempotent), created under an advisory lock so that writers
/// starting together do not collide.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS measurements (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS series (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    measurement_id bigint NOT NULL,
    tags jsonb NOT NULL,
    UNIQUE (measurement_id, tags)
);
CREATE TABLE IF NOT EXISTS points (
    measurement_id bigint NOT NULL,
    ts bigint NOT NULL,
    series_id bigint NOT NULL,
    fields jsonb NOT NULL,
    PRIMARY KEY (measurement_id, ts, series_id)
);";

/// The advisory lock key of the schema creation.
const SCHEMA_LOCK: i64 = 0x7e1e_5710_da7a;

/// The most series ids a writer remembers.
const SERIES_CACHE: usize = 100_000;

const SCAN_ASC: &str = "SELECT ts, series_id, fields::text FROM points \
     WHERE measurement_id = $1 AND (ts, series_id) >= ($2, $3) AND ts < $4 \
     ORDER BY ts, series_id LIMIT $5";
const SCAN_DESC: &str = "SELECT ts, series_id, fields::text FROM points \
     WHERE measurement_id = $1 AND (ts, series_id) <= ($2, $3) AND ts >= $4 \
     ORDER BY ts DESC, series_id DESC LIMIT $5";

const UPSERT: &str = "INSERT INTO points (measurement_id, ts, series_id, fields) \
     SELECT m, t, s, f::jsonb FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[]) \
     AS u(m, t, s, f) \
     ON CONFLICT (measurement_id, ts, series_id) \
     DO UPDATE SET fields = points.fields || EXCLUDED.fields";

fn connect(config: &postgres::Config) -> Result<Client, StoreError> {
    Ok(config.connect(NoTls)?)
}

/// The writer: one connection (opened again after it was lost), with the
/// ids of measurements and series it has seen.
pub struct PgWriter {
    config: postgres::Config,
    client: Option<Client>,
    measurements: HashMap<String, i64>,
    series: HashMap<(i64, String), i64>,
}

impl PgWriter {
    /// Connects and creates the tables when missing.
    pub fn open(config: &postgres::Config) -> Result<PgWriter, StoreError> {
        let mut client = connect(config)?;
        let mut transaction = client.transaction()?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
        transaction.batch_execute(SCHEMA)?;
        transaction.commit()?;
        Ok(PgWriter {
            config: config.clone(),
            client: Some(client),
            measurements: HashMap::new(),
            series: HashMap::new(),
        })
    }

    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(connect(&self.config)?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    fn write_once(&mut self, points: &[Point]) -> Result<usize, StoreError> {
        // Names and tag sets first, each in its own short statement and in
        // sorted order: two writers never wait for each other in a cycle.
        let mut names: Vec<&str> = points
            .iter()
            .map(|p| p.measurement.as_str())
            .filter(|name| !self.measurements.contains_key(*name))
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let client = self.client()?;
            client.execute(
                "INSERT INTO measurements (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                &[&name],
            )?;
            let id: i64 = client
                .query_one("SELECT id FROM measurements WHERE name = $1", &[&name])?
                .get(0);
            self.measurements.insert(name.to_owned(), id);
        }
        let keys: Vec<(i64, String)> = points
            .iter()
            .map(|p| {
                (
                    self.measurements[&p.measurement],
                    serde_json::to_string(&p.tags).unwrap_or_else(|_| "{}".into()),
                )
            })
            .collect();
        let mut missing: Vec<&(i64, String)> = keys
            .iter()
            .filter(|key| !self.series.contains_key(*key))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let mut learned = Vec::new();
        for (measurement, tags) in missing {
            let client = self.client()?;
            client.execute(
                "INSERT INTO series (measurement_id, tags) VALUES ($1, $2::text::jsonb) \
                 ON CONFLICT (measurement_id, tags) DO NOTHING",
                &[measurement, tags],
            )?;
            let id: i64 = client
                .query_one(
                    "SELECT id FROM series WHERE measurement_id = $1 AND tags = $2::text::jsonb",
                    &[measurement, tags],
                )?
                .get(0);
            learned.push(((*measurement, tags.clone()), id));
        }
        if self.series.len() + learned.len() > SERIES_CACHE {
            self.series.clear();
        }
        self.series.extend(learned);
        let mut rows: BTreeMap<(i64, i64, i64), Fields> = BTreeMap::new();
        for (point, key) in points.iter().zip(&keys) {
            let series = self.series[key];
            rows.entry((key.0, point.time, series))
                .or_default()
                .extend(point.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let mut measurement_ids = Vec::with_capacity(rows.len());
        let mut times = Vec::with_capacity(rows.len());
        let mut series_ids = Vec::with_capacity(rows.len());
        let mut fields = Vec::with_capacity(rows.len());
        for ((m, t, s), f) in &rows {
            measurement_ids.push(*m);
            times.push(*t);
            series_ids.push(*s);
            fields.push(serde_json::to_string(f).unwrap_or_else(|_| "{}".into()));
        }
        let client = self.client()?;
        let mut transaction = client.transaction()?;
        transaction.execute(UPSERT, &[&measurement_ids, &times, &series_ids, &fields])?;
        transaction.commit()?;
        Ok(rows.len())
    }
}

impl PgWriter {
    fn delete_once(&mut self, cutoff: i64) -> Result<u64, StoreError> {
        let client = self.client()?;
        let ids: Vec<i64> = client
            .query("SELECT id FROM measurements", &[])?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut deleted = 0;
        for id in ids {
            deleted += client.execute(
                "DELETE FROM points WHERE measurement_id = $1 AND ts < $2",
                &[&id, &cutoff],
            )?;
        }
        Ok(deleted)
    }

    /// Forgets a connection that failed in a way a new one may not.
    fn after<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(error) = &result
            && error.is_transient()
        {
            // Connect afresh next time.
            self.client = None;
        }
        result
    }
}

impl Write for PgWriter {
    fn write(&mut self, points: &[Point]) -> Result<usize, StoreError> {
        let result = self.write_once(points);
        self.after(result)
    }

    fn delete_before(&mut self, cutoff: i64) -> Result<u64, StoreError> {
        let result = self.delete_once(cutoff);
        self.after(result)
    }
}

/// Reading connections, opened when needed, each with the time budget as
/// its `statement_timeout`.
pub struct PgReadPool {
    pool: r2d2::Pool<PostgresConnectionManager<NoTls>>,
    schema_seen: AtomicBool,
    name: String,
}

#[derive(Debug)]
struct StatementTimeout(u64);

impl r2d2::CustomizeConnection<Client, postgres::Error> for StatementTimeout {
    fn on_acquire(&self, client: &mut Client) -> Result<(), postgres::Error> {
        client.batch_execute(&format!("SET statement_timeout = {}", self.0))
    }
}

impl PgReadPool {
    /// Up to `size` connections; statements are cancelled after `limit`.
    pub fn new(
        config: &postgres::Config,
        size: u32,
        limit: Duration,
    ) -> Result<PgReadPool, StoreError> {
        let manager = PostgresConnectionManager::new(config.clone(), NoTls);
        let timeout_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX).max(1);
        let pool = r2d2::Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(10))
            .connection_customizer(Box::new(StatementTimeout(timeout_ms)))
            .build_unchecked(manager);
        Ok(PgReadPool {
            pool,
            schema_seen: AtomicBool::new(false),
            name: config.get_dbname().unwrap_or("(default)").to_owned(),
        })
    }

    /// Runs `read` on a connection taken before `deadline`.
    pub fn with<T>(
        &self,
        deadline: Instant,
        read: impl FnOnce(&mut dyn Read) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.pool.get_timeout(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        )?;
        if !self.schema_seen.load(Ordering::Relaxed) {
            let exists: bool = client
                .query_one("SELECT to_regclass('points') IS NOT NULL", &[])?
                .get(0);
            if !exists {
                return Err(StoreError::NoSchema(self.name.clone()));
            }
            self.schema_seen.store(true, Ordering::Relaxed);
        }
        // A lost connection is replaced: r2d2 checks connections before
        // handing them out again.
        read(&mut PgRead(&mut client))
    }
}

/// [`Read`] on one PostgreSQL connection.
pub struct PgRead<'a>(pub &'a mut Client);

fn scan_sql(order: Order) -> &'static str {
    match order {
        Order::Asc => SCAN_ASC,
        Order::Desc => SCAN_DESC,
    }
}

impl Read for PgRead<'_> {
    fn measurements(&mut self, name: Option<&str>) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = match name {
            Some(name) => self.0.query(
                "SELECT id, name FROM measurements WHERE name = $1",
                &[&name],
            )?,
            None => self.0.query(
                "SELECT id, name FROM measurements ORDER BY name COLLATE \"C\"",
                &[],
            )?,
        };
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    fn series_tags(&mut self, ids: &[i64]) -> Result<Vec<(i64, String)>, StoreError> {
        let ids = ids.to_vec();
        Ok(self
            .0
            .query(
                "SELECT id, tags::text FROM series WHERE id = ANY($1)",
                &[&ids],
            )?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    fn scan(&mut self, scan: &Scan) -> Result<Vec<RawPoint>, StoreError> {
        let limit = i64::try_from(scan.limit).unwrap_or(i64::MAX);
        Ok(self
            .0
            .query(
                scan_sql(scan.order),
                &[
                    &scan.measurement,
                    &scan.key.0,
                    &scan.key.1,
                    &scan.bound,
                    &limit,
                ],
            )?
            .iter()
            .map(|row| RawPoint {
                time: row.get(0),
                series: row.get(1),
                fields: row.get(2),
            })
            .collect())
    }

    fn explain(&mut self, scan: &Scan) -> Result<String, StoreError> {
        let limit = i64::try_from(scan.limit).unwrap_or(i64::MAX);
        let rows = self.0.query(
            &format!("EXPLAIN {}", scan_sql(scan.order)),
            &[
                &scan.measurement,
                &scan.key.0,
                &scan.key.1,
                &scan.bound,
                &limit,
            ],
        )?;
        Ok(rows
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}
