//! A plain `fn` is a blocking handler: same extractors and returns.
use telestion::{Json, Subject, subscribe};

#[subscribe("b.plain")]
fn plain() {}

#[subscribe("b.json", concurrency = 4)]
fn json(Json(x): Json<i64>, subject: Subject) -> Result<Json<i64>, String> {
    let _ = subject;
    std::thread::sleep(std::time::Duration::from_millis(1));
    Ok(Json(x))
}

#[subscribe(config = "INPUT_SUBJECT", default = "b.defaulted")]
fn defaulted(body: String) -> String {
    body
}

#[telestion::service]
async fn main(service: telestion::Service) {
    service.shutdown();
}
