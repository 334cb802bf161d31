use telestion::{Json, Options, Route, Service};

async fn double(Json(x): Json<i64>) -> Json<i64> {
    Json(2 * x)
}

#[telestion::tokio::main(crate = "telestion::tokio")]
async fn main() -> Result<(), telestion::StartError> {
    telestion::init_logging();
    let service = Service::start(Options::new()).await?;
    service
        .serve([Route::new("math.double", double).concurrency(4)])
        .await
}
