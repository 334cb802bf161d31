//! The writer's configuration: the upstream keys plus the database and
//! delivery choices, checked at start.

use std::path::Path;
use std::time::Duration;

use database_store::Location;
use database_store::run::valid_name;
use serde::Deserialize;

/// Default `BATCH_SIZE`.
pub const DEFAULT_BATCH_SIZE: usize = 1000;
/// Default `BATCH_WINDOW_MS`.
pub const DEFAULT_BATCH_WINDOW_MS: u64 = 50;
/// Default `DATA_STREAM`.
pub const DEFAULT_STREAM: &str = "TELESTION_DATA";
/// Default `DATA_STREAM_MAX_BYTES` (1 GiB).
pub const DEFAULT_STREAM_MAX_BYTES: i64 = 1 << 30;
/// Default `INFLUXDB_BUCKET`: the SQLite file's name.
pub const DEFAULT_BUCKET: &str = "telemetry";

/// Every key the writer reads (for `--help`), with its meaning.
pub const KEYS: [(&str, &str); 14] = [
    (
        "DATA_SUBJECT",
        "required; ends with `>` (e.g. data.>): a message on data.a.b is a point of measurement a.b",
    ),
    (
        "DATABASE_URL",
        "sqlite:<file> or postgres://user@host:port/db (default: SQLite $DATA_DIR/$SERVICE_NAME/<INFLUXDB_BUCKET>.sqlite3)",
    ),
    (
        "DATABASE_PASSWORD",
        "the PostgreSQL password (instead of one in DATABASE_URL; never logged)",
    ),
    ("INFLUXDB_URL", "accepted for compatibility, not used"),
    ("INFLUXDB_TOKEN", "accepted for compatibility, not used"),
    ("INFLUXDB_ORG", "accepted for compatibility, not used"),
    (
        "INFLUXDB_BUCKET",
        "the SQLite file's name without .sqlite3 (default telemetry)",
    ),
    (
        "DURABLE",
        "true: consume DATA_SUBJECT through the JetStream stream DATA_STREAM (nothing lost while no writer runs); default false: queue group SERVICE_NAME",
    ),
    (
        "DATA_STREAM",
        "the stream of durable mode (default TELESTION_DATA; created as a work queue when missing)",
    ),
    (
        "DATA_STREAM_MAX_BYTES",
        "the stream's size limit in bytes (default 1 GiB; the oldest messages go first)",
    ),
    (
        "BATCH_SIZE",
        "points per transaction at most (default 1000, 1 to 10000)",
    ),
    (
        "BATCH_WINDOW_MS",
        "how long a batch waits for more points after its first (default 50)",
    ),
    (
        "SQLITE_SYNCHRONOUS",
        "FULL (default: every commit on disk) or NORMAL (faster; a power loss may lose the last commits)",
    ),
    (
        "RETENTION",
        "delete points older than this (e.g. 30d, 12h; checked every tenth of it, at least every hour); default: keep every point",
    ),
];

/// The keys as the typed configuration sees them.
#[derive(Debug, Deserialize)]
pub struct WriterSettings {
    data_subject: String,
    database_url: Option<String>,
    database_password: Option<String>,
    influxdb_url: Option<String>,
    influxdb_token: Option<String>,
    influxdb_org: Option<String>,
    influxdb_bucket: Option<String>,
    durable: Option<bool>,
    data_stream: Option<String>,
    data_stream_max_bytes: Option<i64>,
    batch_size: Option<usize>,
    batch_window_ms: Option<u64>,
    sqlite_synchronous: Option<String>,
    retention: Option<String>,
}

/// The durable mode's stream.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// Its name.
    pub name: String,
    /// Its size limit.
    pub max_bytes: i64,
}

/// What the writer does, decided from the settings.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The subscription (ends with `>`).
    pub data_subject: String,
    /// Where points go.
    pub location: Location,
    /// `Some` in durable mode.
    pub stream: Option<StreamPlan>,
    /// Points per batch.
    pub batch_size: usize,
    /// Batch window.
    pub batch_window: Duration,
    /// SQLite `synchronous = FULL`.
    pub synchronous_full: bool,
    /// Points older than this are deleted.
    pub retention: Option<Duration>,
}

impl WriterSettings {
    /// Checks the settings; `data_dir` is the service's own directory.
    pub fn plan(&self, data_dir: &Path) -> Result<Plan, String> {
        let _compatible_only = (&self.influxdb_url, &self.influxdb_token, &self.influxdb_org);
        if !self.data_subject.ends_with('>') {
            return Err(format!(
                "DATA_SUBJECT must end with `>` (e.g. data.>), not {:?}",
                self.data_subject
            ));
        }
        telestion::validate_subject(&self.data_subject)
            .map_err(|e| format!("DATA_SUBJECT: {e}"))?;
        let bucket = self.influxdb_bucket.as_deref().unwrap_or(DEFAULT_BUCKET);
        let location = match self.database_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => Location::parse(url, self.database_password.as_deref())
                .map_err(|e| e.to_string())?,
            None => {
                if !valid_name(bucket) {
                    return Err(format!(
                        "INFLUXDB_BUCKET {bucket:?} cannot name a file: use letters, digits, \
                         `_`, `-` and `.` (not first)"
                    ));
                }
                Location::Sqlite(data_dir.join(format!("{bucket}.sqlite3")))
            }
        };
        let stream = if self.durable.unwrap_or(false) {
            let name = self
                .data_stream
                .clone()
                .unwrap_or_else(|| DEFAULT_STREAM.into());
            if !valid_name(&name) || name.contains('.') {
                return Err(format!(
                    "DATA_STREAM {name:?} is not a stream name: use letters, digits, `_` and `-`"
                ));
            }
            let max_bytes = self
                .data_stream_max_bytes
                .unwrap_or(DEFAULT_STREAM_MAX_BYTES);
            if max_bytes < 1 {
                return Err("DATA_STREAM_MAX_BYTES must be at least 1".into());
            }
            Some(StreamPlan { name, max_bytes })
        } else {
            None
        };
        let batch_size = self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=telestion::MAX_BATCH).contains(&batch_size) {
            return Err(format!(
                "BATCH_SIZE must be 1 to {}, not {batch_size}",
                telestion::MAX_BATCH
            ));
        }
        let synchronous_full = match self.sqlite_synchronous.as_deref() {
            None | Some("FULL") | Some("full") => true,
            Some("NORMAL") | Some("normal") => false,
            Some(other) => {
                return Err(format!(
                    "SQLITE_SYNCHRONOUS must be FULL or NORMAL, not {other:?}"
                ));
            }
        };
        let retention = match self.retention.as_deref().filter(|r| !r.is_empty()) {
            None => None,
            Some(text) => match database_store::time::parse_duration(text) {
                Ok(ns) if ns > 0 => Some(Duration::from_nanos(ns as u64)),
                Ok(_) => return Err(format!("RETENTION must be positive, not {text:?}")),
                Err(e) => return Err(format!("RETENTION: {e}")),
            },
        };
        Ok(Plan {
            retention,
            data_subject: self.data_subject.clone(),
            location,
            stream,
            batch_size,
            batch_window: Duration::from_millis(
                self.batch_window_ms.unwrap_or(DEFAULT_BATCH_WINDOW_MS),
            ),
            synchronous_full,
        })
    }
}
