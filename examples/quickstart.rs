use serde::Deserialize;
use telestion::{Json, subscribe};

#[derive(Deserialize)]
struct Reading {
    celsius: f64,
}

/// Replies to `{"celsius": 20}` on `sensors.fahrenheit` with `68.0`.
#[subscribe("sensors.fahrenheit")]
async fn to_fahrenheit(Json(reading): Json<Reading>) -> Json<f64> {
    Json(reading.celsius * 9.0 / 5.0 + 32.0)
}

#[telestion::service]
async fn main() {}
