//! The query plans: every scan the engine runs is a search of the points'
//! primary key (measurement, time, series), ascending and descending, with
//! no full scan and no sort, on SQLite (`EXPLAIN QUERY PLAN`) and on
//! PostgreSQL (`EXPLAIN`, after `ANALYZE` of 20,000 points).

use std::time::{Duration, Instant};

use database_store::point::{FieldValue, Point};
use database_store::store::Scan;
use database_store::{Location, Order};
use telestion_test::PostgresServer;

fn points(n: i64) -> Vec<Point> {
    (0..n)
        .map(|i| Point {
            measurement: format!("m{}", i % 4),
            time: 1_700_000_000_000_000_000 + i * 1_000_000,
            tags: [("sensor".to_owned(), format!("s{}", i % 3))].into(),
            fields: [("value".to_owned(), FieldValue::Float(i as f64))].into(),
        })
        .collect()
}

fn plans(location: &Location) -> Vec<String> {
    let readers = location.open_readers(1, Duration::from_secs(10)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    readers
        .with(deadline, |read| {
            let id = read.measurements(Some("m1"))?[0].0;
            let start = 1_700_000_000_000_000_000;
            let asc = Scan {
                measurement: id,
                key: (start, i64::MIN),
                bound: start + 10_000_000_000,
                order: Order::Asc,
                limit: 1001,
            };
            let desc = Scan {
                key: (start + 20_000_000_000, i64::MAX),
                bound: start,
                order: Order::Desc,
                limit: 2,
                ..asc
            };
            Ok(vec![read.explain(&asc)?, read.explain(&desc)?])
        })
        .unwrap()
}

#[test]
fn sqlite_scans_search_the_primary_key() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::Sqlite(dir.path().join("plans.sqlite3"));
    location
        .open_writer(false)
        .unwrap()
        .write(&points(20_000))
        .unwrap();
    for plan in plans(&location) {
        assert!(
            plan.contains("SEARCH points USING PRIMARY KEY (measurement_id=? AND"),
            "{plan}"
        );
        assert!(
            !plan.contains("SCAN") && !plan.contains("TEMP B-TREE"),
            "{plan}"
        );
    }
}

#[test]
fn postgres_scans_use_the_primary_key_index() {
    let server = PostgresServer::start();
    let location = Location::parse(&server.url(), None).unwrap();
    location
        .open_writer(false)
        .unwrap()
        .write(&points(20_000))
        .unwrap();
    let mut client = postgres::Client::connect(&server.url(), postgres::NoTls).unwrap();
    client.batch_execute("ANALYZE").unwrap();
    drop(client);
    for plan in plans(&location) {
        assert!(
            plan.contains("Index Scan") && plan.contains("points_pkey"),
            "{plan}"
        );
        assert!(
            !plan.contains("Seq Scan") && !plan.contains("Sort"),
            "{plan}"
        );
    }
}
