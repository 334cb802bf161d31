use telestion::{Batch, Json, subscribe};

struct NotAnExtractor;

#[subscribe("a.b", batch = 0)]
async fn empty_batch(batch: Batch<Json<u32>>) {
    let _ = batch;
}

#[subscribe("a.c", batch_window = "50ms")]
async fn window_without_batch(batch: Batch<Json<u32>>) {
    let _ = batch;
}

#[subscribe(every = "1s", batch = 10)]
async fn timer_batch() {}

#[subscribe("a.d", batch = 10, concurrency = 4)]
async fn concurrent_batch(batch: Batch<Json<u32>>) {
    let _ = batch;
}

#[subscribe("a.e", batch = 10, batch_window = "soon")]
async fn bad_window(batch: Batch<Json<u32>>) {
    let _ = batch;
}

#[subscribe("a.f", batch = 10)]
async fn batch_of_non_extractor(batch: Batch<NotAnExtractor>) {
    let _ = batch;
}

#[subscribe("a.g", batch = 10)]
async fn batch_and_body(batch: Batch<Json<u32>>, body: String) {
    let _ = (batch, body);
}

#[telestion::service]
async fn main() {}
