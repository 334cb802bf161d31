//! Pages move on: with a budget that is already spent, every page still
//! holds at least one point, and the pages add up to the whole answer.

use std::time::{Duration, Instant};

use database_store::Location;
use database_store::point::{FieldValue, Point};
use database_store::query::{Budget, SeriesCache, run};
use database_store::request::Request;

#[test]
fn pages_with_a_spent_budget_add_up_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    pages_add_up(&Location::Sqlite(dir.path().join("pages.sqlite3")));
}

#[test]
fn pages_with_a_spent_budget_add_up_postgres() {
    let server = telestion_test::PostgresServer::start();
    pages_add_up(&Location::parse(&server.url(), None).unwrap());
}

fn pages_add_up(location: &Location) {
    let points: Vec<Point> = (0..300)
        .map(|i| Point {
            measurement: "m".into(),
            time: 1_000_000_000 + i,
            tags: [("s".to_owned(), (i % 2).to_string())].into(),
            fields: [
                ("a".to_owned(), FieldValue::Float(i as f64)),
                ("b".to_owned(), FieldValue::Bool(i % 3 == 0)),
            ]
            .into(),
        })
        .collect();
    location.open_writer(false).unwrap().write(&points).unwrap();
    let readers = location.open_readers(1, Duration::from_secs(10)).unwrap();
    let cache = SeriesCache::default();
    for order in ["asc", "desc"] {
        let request = serde_json::json!({"measurement": "m", "range": 0, "order": order});
        let mut body = request.clone();
        let mut rows = Vec::new();
        let mut pages = 0;
        loop {
            pages += 1;
            assert!(pages <= 600, "no progress");
            let query = Request::from_body(body.to_string().as_bytes())
                .unwrap()
                .check(10_000, 2_000_000_000)
                .unwrap();
            let budget = Budget {
                deadline: Instant::now(),
                hard_deadline: Instant::now() + Duration::from_secs(10),
                max_bytes: 1 << 20,
            };
            let page = readers
                .with(Instant::now() + Duration::from_secs(10), |read| {
                    run(read, &query, budget, &cache)
                })
                .unwrap();
            assert!(
                !page.rows.is_empty() || page.continuation.is_none(),
                "an empty page"
            );
            rows.extend(page.rows);
            match page.continuation {
                Some(token) => {
                    body = request.clone();
                    body["continuation"] = token.into();
                }
                None => break,
            }
        }
        assert_eq!(rows.len(), 600, "{order}: {pages} pages");
        assert!(pages > 1, "{order}");
    }
}
