//! Deleting old points: everything before the cutoff goes, in every
//! measurement, the rest stays; on SQLite and PostgreSQL.

use database_store::Location;
use database_store::point::{FieldValue, Point};

fn point(measurement: &str, time: i64) -> Point {
    Point {
        measurement: measurement.into(),
        time,
        tags: Default::default(),
        fields: [("v".to_owned(), FieldValue::Float(time as f64))].into(),
    }
}

fn deletes_before_the_cutoff(location: &Location) {
    let mut writer = location.open_writer(false).unwrap();
    let points: Vec<Point> = ["a", "b"]
        .iter()
        .flat_map(|m| (0..10).map(move |t| point(m, t * 1000)))
        .collect();
    writer.write(&points).unwrap();
    assert_eq!(writer.delete_before(5000).unwrap(), 10);
    assert_eq!(writer.delete_before(5000).unwrap(), 0);
    assert_eq!(writer.delete_before(i64::MAX).unwrap(), 10);
}

#[test]
fn sqlite_deletes_before_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    deletes_before_the_cutoff(&Location::Sqlite(dir.path().join("r.sqlite3")));
}

#[test]
fn postgres_deletes_before_the_cutoff() {
    let server = telestion_test::PostgresServer::start();
    deletes_before_the_cutoff(&Location::parse(&server.url(), None).unwrap());
}
