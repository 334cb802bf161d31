use serde::{Deserialize, Serialize};
use telestion::{Json, Service, subscribe, tracing};

#[derive(Deserialize)]
struct Reading {
    celsius: f64,
}

#[derive(Serialize)]
struct Status {
    service: String,
}

#[subscribe("sensors.fahrenheit")]
async fn to_fahrenheit(Json(reading): Json<Reading>) -> Json<f64> {
    tracing::debug!(celsius = reading.celsius, "converting");
    Json(reading.celsius * 9.0 / 5.0 + 32.0)
}

#[subscribe(every = "10s", publish = "status.converter")]
async fn status(service: Service) -> Json<Status> {
    Json(Status {
        service: service.name().to_owned(),
    })
}

#[telestion::service]
async fn main() {
    tracing::info!("converter starting");
}
