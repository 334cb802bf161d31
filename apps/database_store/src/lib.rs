//! # database_store
//!
//! The storage and query engine behind the `database` and
//! `database_query` services: points in the upstream Telestion format
//! (measurement, time, tags, fields) stored in SQLite or PostgreSQL, and
//! structured queries answered in bounded pages of upstream rows.
//!
//! Data flows one way: [`point`] (a message becomes a point) → [`store`]
//! (what a back-end does; [`sqlite`] and [`postgres`] do it) → [`request`]
//! (a query request becomes a checked [`request::Query`]) → [`query`] (the
//! engine: scans, filters, [`aggregate`] windows, pages with a
//! [`continuation`]). [`time`] and [`error`] sit at the bottom.
//!
//! ```
//! use database_store::{Location, point::parse_point, query, request::parse_query};
//! use std::time::{Duration, Instant};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let location = Location::Sqlite(dir.path().join("telemetry.sqlite3"));
//! let mut writer = location.open_writer(false).unwrap();
//! let body = br#"{"time": "2024-01-15T10:30:00Z", "value": 23.5, "tags": {"sensor": "temp-01"}}"#;
//! writer.write(&[parse_point("telemetry.temperature", body, 0).unwrap()]).unwrap();
//!
//! let readers = location.open_readers(2, Duration::from_secs(5)).unwrap();
//! let request = br#"{"measurement": "telemetry.temperature", "range": 0}"#;
//! let query = parse_query(request, 1000).unwrap();
//! let deadline = Instant::now() + Duration::from_secs(5);
//! let budget = query::Budget { deadline, hard_deadline: deadline, max_bytes: 1 << 20 };
//! let cache = query::SeriesCache::default();
//! let page = readers.with(budget.deadline, |read| query::run(read, &query, budget, &cache)).unwrap();
//! assert_eq!(page.rows.len(), 1);
//! assert!(page.to_reply().starts_with(r#"{"success":true,"count":1,"data":[{"#));
//! ```

#![warn(missing_docs)]

pub mod aggregate;
pub mod continuation;
pub mod error;
pub mod point;
pub mod postgres;
pub mod query;
pub mod request;
pub mod run;
pub mod sqlite;
pub mod store;
pub mod time;

pub use rayon;

pub use error::StoreError;
pub use store::{Location, Order, Read, ReadPool, Write};
