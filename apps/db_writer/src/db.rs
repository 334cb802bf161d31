//! The SQLite side: schema, opening, storing frames.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, params};
use serde::{Deserialize, Serialize};
use telestion::HandlerError;
use telestion::extract::{DataDir, DataFileError, FileAccess};

/// The database file's name inside the service's data directory.
pub const FILE_NAME: &str = "telemetry.sqlite3";
/// The files SQLite keeps beside the database (`<name><suffix>`); like the
/// database, each must be a regular file or absent, never a link.
pub const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// The schema (idempotent): the table, its time index, and the
/// per-session counts a trigger keeps.
pub const SCHEMA: &str = include_str!("schema.sql");

/// Fills `sessions` from the rows of a database made before it existed
/// (the trigger counts only rows inserted after it was created).
const BACKFILL: &str = "INSERT INTO sessions (session, min_counter, max_counter, count, newest_ms)
    SELECT session, min(counter), max(counter), count(*), max(time_ms) FROM telemetry
    GROUP BY session";

/// One parsed telemetry frame, as the parser publishes it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Telemetry {
    /// Random per simulator start.
    pub session: u32,
    /// 0, 1, 2, ... per session.
    pub counter: u32,
    /// Unix milliseconds at the device (at most `i64::MAX`, SQLite's
    /// largest integer: a larger value rejects the message).
    #[serde(deserialize_with = "sqlite_time")]
    pub time_ms: u64,
    /// Degrees Celsius.
    pub temperature_c: f64,
    /// Volts.
    pub voltage_v: f64,
    /// Amperes.
    pub current_a: f64,
    /// Status flags.
    pub status: u16,
}

/// A `u64` that fits SQLite's signed 64-bit integers.
fn sqlite_time<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let value = u64::deserialize(deserializer)?;
    if i64::try_from(value).is_err() {
        return Err(serde::de::Error::custom(format!(
            "time_ms {value} is larger than {}",
            i64::MAX
        )));
    }
    Ok(value)
}

/// The open database, one connection behind a mutex (SQLite allows one
/// writer at a time anyway).
pub struct Db {
    connection: Mutex<Connection>,
    path: PathBuf,
}

/// Why the database cannot be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The database or a companion file is not a regular file (a symbolic
    /// link, ...), or the data directory cannot be opened.
    Files(DataFileError),
    /// SQLite failed.
    Sqlite {
        /// The database.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Files(_) => write!(f, "cannot open the database safely"),
            OpenError::Sqlite { path, .. } => {
                write!(f, "cannot open the database {}", path.display())
            }
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Files(source) => Some(source),
            OpenError::Sqlite { source, .. } => Some(source),
        }
    }
}

impl From<DataFileError> for OpenError {
    fn from(error: DataFileError) -> OpenError {
        OpenError::Files(error)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Db {
    /// Opens (creates) the database [`FILE_NAME`] in `dir`: WAL mode, full
    /// sync, the schema. No symbolic link is followed: the directory, the
    /// database and its companions ([`COMPANIONS`]) must not be links
    /// (SQLite would put the database, and its WAL and shared-memory files
    /// beside it, wherever a link points); a new database is created
    /// owner-only (`0600`), and so are its companions. Blocking.
    pub fn open(dir: &DataDir) -> Result<Db, OpenError> {
        let files = dir.files()?;
        // Created here, owner-only: SQLite gives its companion files the
        // database's permissions.
        drop(files.open(FILE_NAME, FileAccess::ReadWrite)?);
        let path = files.library_path(FILE_NAME, &COMPANIONS)?;
        let error = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        // SQLITE_OPEN_NOFOLLOW: SQLite refuses a link anywhere in the path
        // (the path from `library_path` has none); it opens its companions
        // with O_NOFOLLOW itself.
        let flags = OpenFlags::default() | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let connection = Connection::open_with_flags(&path, flags).map_err(error)?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(error)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(error)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(error)?;
        let transaction = connection.unchecked_transaction().map_err(error)?;
        let had_counts: bool = transaction
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sessions'",
                [],
                |row| row.get::<_, i64>(0).map(|n| n > 0),
            )
            .map_err(error)?;
        transaction.execute_batch(SCHEMA).map_err(error)?;
        if !had_counts {
            transaction.execute_batch(BACKFILL).map_err(error)?;
        }
        transaction.commit().map_err(error)?;
        Ok(Db {
            connection: Mutex::new(connection),
            path,
        })
    }

    /// Stores `frames` in one transaction (`INSERT OR IGNORE`: a frame
    /// already stored is skipped). Returns how many rows were new. A frame
    /// that cannot be stored is a client error (400); a database failure
    /// is a server error (500) and stores nothing.
    pub fn store(&self, frames: &[Telemetry]) -> Result<usize, HandlerError> {
        for frame in frames {
            if i64::try_from(frame.time_ms).is_err() {
                return Err(HandlerError::client(format!(
                    "time_ms {} of frame {}/{} is out of range",
                    frame.time_ms, frame.session, frame.counter
                )));
            }
        }
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let failed = |e: rusqlite::Error| {
            HandlerError::server(format!(
                "cannot store telemetry in {}: {e}",
                self.path.display()
            ))
        };
        let transaction = connection.transaction().map_err(failed)?;
        let stored_ms = now_ms();
        let mut inserted = 0;
        {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT OR IGNORE INTO telemetry (session, counter, time_ms, temperature_c, \
                     voltage_v, current_a, status, stored_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(failed)?;
            for frame in frames {
                inserted += insert
                    .execute(params![
                        frame.session,
                        frame.counter,
                        frame.time_ms as i64,
                        frame.temperature_c,
                        frame.voltage_v,
                        frame.current_a,
                        frame.status,
                        stored_ms,
                    ])
                    .map_err(failed)?;
            }
        }
        transaction.commit().map_err(failed)?;
        Ok(inserted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(session: u32, counter: u32) -> Telemetry {
        Telemetry {
            session,
            counter,
            time_ms: 1_700_000_000_000 + u64::from(counter),
            temperature_c: 21.5,
            voltage_v: 12.0,
            current_a: 0.5,
            status: 0,
        }
    }

    #[test]
    fn stores_each_frame_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DataDir(dir.path().to_owned())).unwrap();
        assert_eq!(db.store(&[frame(1, 0), frame(1, 1)]).unwrap(), 2);
        assert_eq!(db.store(&[frame(1, 1), frame(1, 2)]).unwrap(), 1);
        let rows: i64 = db
            .connection
            .lock()
            .unwrap()
            .query_row("SELECT count(*) FROM telemetry", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 3);
        let mode: String = db
            .connection
            .lock()
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn reopening_keeps_rows() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir(dir.path().to_owned());
        Db::open(&data).unwrap().store(&[frame(7, 0)]).unwrap();
        let db = Db::open(&data).unwrap();
        assert_eq!(db.store(&[frame(7, 0)]).unwrap(), 0);
    }

    #[test]
    fn out_of_range_time_is_a_client_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DataDir(dir.path().to_owned())).unwrap();
        let mut bad = frame(1, 0);
        bad.time_ms = u64::MAX;
        let error = db.store(&[frame(1, 1), bad]).unwrap_err();
        assert_eq!(error.code(), 400);
        // Nothing of the batch is stored.
        assert_eq!(db.store(&[frame(1, 1)]).unwrap(), 1);
    }

    #[test]
    fn out_of_range_time_is_not_a_frame() {
        let json = r#"{"session":1,"counter":2,"time_ms":18446744073709551615,
            "temperature_c":1,"voltage_v":2,"current_a":3,"status":0}"#;
        let error = serde_json::from_str::<Telemetry>(json).unwrap_err();
        assert!(error.to_string().contains("larger than"), "{error}");
    }

    #[test]
    fn a_database_failure_is_a_server_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DataDir(dir.path().to_owned())).unwrap();
        db.connection
            .lock()
            .unwrap()
            .execute_batch("DROP TABLE telemetry")
            .unwrap();
        assert_eq!(db.store(&[frame(1, 0)]).unwrap_err().code(), 500);
    }

    #[test]
    fn links_and_their_targets_are_never_used() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let data = DataDir(dir.path().to_owned());
        for name in [FILE_NAME.to_owned(), format!("{FILE_NAME}-wal")] {
            let link = dir.path().join(&name);
            symlink(outside.path().join("elsewhere"), &link).unwrap();
            let error = telestion::error_chain(&Db::open(&data).err().expect("opened"));
            assert!(error.contains("symbolic link"), "{name}: {error}");
            assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
            std::fs::remove_file(&link).unwrap();
        }
        let db = Db::open(&data).unwrap();
        db.store(&[frame(1, 0)]).unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let path = dir.path().join(format!("{FILE_NAME}{suffix}"));
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{path:?}");
        }
    }
}
