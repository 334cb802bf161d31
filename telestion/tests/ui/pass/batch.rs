use telestion::{Batch, Bytes, HandlerError, Json, Service, State, subscribe};

struct Db;

#[subscribe("a.b", batch = 100)]
async fn count(batch: Batch<Json<u32>>) -> Json<usize> {
    Json(batch.len())
}

#[subscribe("a.c", batch = 50, batch_window = "20ms", publish = "a.sum")]
fn store(batch: Batch<Bytes>, db: State<Db>, service: Service) -> Result<Json<usize>, HandlerError> {
    let _ = (db, service);
    Ok(Json(batch.into_iter().map(|frame| frame.len()).sum()))
}

#[subscribe("a.d", durable, stream = "A", batch = 10, publish = "archive.d")]
async fn durable(batch: Batch<Json<u32>>) -> Result<Json<Vec<u32>>, String> {
    Ok(Json(batch.into_iter().map(|Json(x)| x).collect()))
}

#[telestion::service]
async fn main(service: Service) {
    service.provide(Db);
}
