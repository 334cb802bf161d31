//! The errors of the stores, keeping their cause.

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("SQLite: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[source] postgres::Error),
    /// No connection could be taken from the pool in time.
    #[error("no database connection available: {0}")]
    Pool(#[source] r2d2::Error),
    /// The database has no tables yet (no writer has opened it).
    #[error("the database {0} has no data yet (has the database writer run?)")]
    NoSchema(String),
    /// The SQLite file does not exist (yet).
    #[error("the database file {0} does not exist yet (has the database writer run?)")]
    Missing(String),
    /// The configuration names no usable database.
    #[error("{0}")]
    Config(String),
    /// The query ran past its time budget inside the database.
    #[error("the database did not answer within the time budget")]
    Timeout,
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        if let rusqlite::Error::SqliteFailure(failure, _) = &error
            && failure.code == rusqlite::ErrorCode::OperationInterrupted
        {
            return StoreError::Timeout;
        }
        StoreError::Sqlite(error)
    }
}

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> StoreError {
        if error.code() == Some(&postgres::error::SqlState::QUERY_CANCELED) {
            return StoreError::Timeout;
        }
        StoreError::Postgres(error)
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(error: r2d2::Error) -> StoreError {
        StoreError::Pool(error)
    }
}

impl StoreError {
    /// Whether trying again may succeed: a busy or locked SQLite file, a
    /// lost or refused PostgreSQL connection, a deadlock or serialization
    /// failure, an exhausted pool.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => matches!(
                failure.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            StoreError::Postgres(error) => {
                error.is_closed()
                    || error.code().is_none()
                    || matches!(
                        error.code(),
                        Some(&postgres::error::SqlState::T_R_DEADLOCK_DETECTED)
                            | Some(&postgres::error::SqlState::T_R_SERIALIZATION_FAILURE)
                            | Some(&postgres::error::SqlState::ADMIN_SHUTDOWN)
                            | Some(&postgres::error::SqlState::CANNOT_CONNECT_NOW)
                            | Some(&postgres::error::SqlState::TOO_MANY_CONNECTIONS)
                    )
            }
            StoreError::Pool(_) | StoreError::Timeout => true,
            _ => false,
        }
    }
}
