use telestion::{Json, subscribe};

#[subscribe("a.b")]
async fn handler<T: serde::de::DeserializeOwned + Send + 'static>(Json(_x): Json<T>) {}

#[telestion::service]
async fn main() {}
