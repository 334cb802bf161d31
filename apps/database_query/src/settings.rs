//! The query service's configuration: the upstream keys plus the database
//! and the bounds, checked at start.

use std::path::Path;
use std::time::Duration;

use database_store::Location;
use database_store::run::valid_name;
use serde::Deserialize;

/// Default `QUERY_MAX_ROWS`.
pub const DEFAULT_MAX_ROWS: usize = 10_000;
/// Default `QUERY_TIMEOUT_MS`.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Default `QUERY_CONCURRENCY`.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Default `DATABASE_WRITER`: the writer's `SERVICE_NAME`.
pub const DEFAULT_WRITER: &str = "database";

/// Every key the query service reads (for `--help`), with its meaning.
pub const KEYS: [(&str, &str); 11] = [
    (
        "QUERY_SUBJECT",
        "required: the request subject (queue group SERVICE_NAME), e.g. query.database",
    ),
    (
        "DATABASE_URL",
        "sqlite:<file> or postgres://user@host:port/db (default: SQLite $DATA_DIR/<DATABASE_WRITER>/<INFLUXDB_BUCKET>.sqlite3, the writer's default)",
    ),
    (
        "DATABASE_PASSWORD",
        "the PostgreSQL password (instead of one in DATABASE_URL; never logged)",
    ),
    (
        "DATABASE_WRITER",
        "the writer's SERVICE_NAME, whose SQLite file is read by default (default database)",
    ),
    ("INFLUXDB_URL", "accepted for compatibility, not used"),
    ("INFLUXDB_TOKEN", "accepted for compatibility, not used"),
    ("INFLUXDB_ORG", "accepted for compatibility, not used"),
    (
        "INFLUXDB_BUCKET",
        "the SQLite file's name without .sqlite3 (default telemetry)",
    ),
    (
        "QUERY_MAX_ROWS",
        "the most rows in one reply, and the largest limit (default 10000)",
    ),
    (
        "QUERY_TIMEOUT_MS",
        "the time budget of one request: a reply after that is truncated (default 2000)",
    ),
    (
        "QUERY_CONCURRENCY",
        "requests answered at once, each on its own connection (default 4)",
    ),
];

/// The keys as the typed configuration sees them.
#[derive(Debug, Deserialize)]
pub struct QuerySettings {
    query_subject: String,
    database_url: Option<String>,
    database_password: Option<String>,
    database_writer: Option<String>,
    influxdb_url: Option<String>,
    influxdb_token: Option<String>,
    influxdb_org: Option<String>,
    influxdb_bucket: Option<String>,
    query_max_rows: Option<usize>,
    query_timeout_ms: Option<u64>,
    query_concurrency: Option<usize>,
}

/// What the service does, decided from the settings.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where the points are.
    pub location: Location,
    /// Rows per reply at most.
    pub max_rows: usize,
    /// Time budget per request.
    pub timeout: Duration,
    /// Requests at once.
    pub concurrency: usize,
}

impl QuerySettings {
    /// Checks the settings; `shared_data_dir` is `DATA_DIR`.
    pub fn plan(&self, shared_data_dir: &Path) -> Result<Plan, String> {
        let _compatible_only = (&self.influxdb_url, &self.influxdb_token, &self.influxdb_org);
        telestion::validate_subject(&self.query_subject)
            .map_err(|e| format!("QUERY_SUBJECT: {e}"))?;
        let location = match self.database_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => Location::parse(url, self.database_password.as_deref())
                .map_err(|e| e.to_string())?,
            None => {
                let writer = self.database_writer.as_deref().unwrap_or(DEFAULT_WRITER);
                let bucket = self.influxdb_bucket.as_deref().unwrap_or("telemetry");
                for (key, name) in [("DATABASE_WRITER", writer), ("INFLUXDB_BUCKET", bucket)] {
                    if !valid_name(name) {
                        return Err(format!(
                            "{key} {name:?} cannot name a file: use letters, digits, `_`, `-` \
                             and `.` (not first)"
                        ));
                    }
                }
                Location::Sqlite(
                    shared_data_dir
                        .join(writer)
                        .join(format!("{bucket}.sqlite3")),
                )
            }
        };
        let max_rows = self.query_max_rows.unwrap_or(DEFAULT_MAX_ROWS);
        if !(1..=1_000_000).contains(&max_rows) {
            return Err("QUERY_MAX_ROWS must be 1 to 1000000".into());
        }
        let timeout_ms = self.query_timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(1..=600_000).contains(&timeout_ms) {
            return Err("QUERY_TIMEOUT_MS must be 1 to 600000".into());
        }
        let concurrency = self.query_concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=64).contains(&concurrency) {
            return Err("QUERY_CONCURRENCY must be 1 to 64".into());
        }
        Ok(Plan {
            location,
            max_rows,
            timeout: Duration::from_millis(timeout_ms),
            concurrency,
        })
    }
}
