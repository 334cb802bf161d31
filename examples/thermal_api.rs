//! Sample: a small thermal-control service whose subjects and message
//! shapes are described by its AsyncAPI document (`--asyncapi`), with the
//! JSON schemas of its payload types (the `schemas` feature of telestion;
//! the types derive `schemars::JsonSchema`).
//!
//! ```sh
//! cargo run --example thermal_api -- --asyncapi > api.json
//! NATS_URL=localhost:4222 SERVICE_NAME=thermal DATA_DIR=./data \
//!     cargo run --example thermal_api
//! ```

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use telestion::{Batch, Json, State, Subject, subscribe};

/// A temperature reading of one sensor.
#[derive(Deserialize, schemars::JsonSchema)]
struct Reading {
    /// Degrees Celsius.
    celsius: f64,
}

/// A heater command.
#[derive(Deserialize, schemars::JsonSchema)]
struct SetHeater {
    /// Heater power, 0 to 100 percent.
    power_percent: u8,
}

/// A pressure reading of one sensor.
#[derive(Deserialize, schemars::JsonSchema)]
struct Pressure {
    /// Hectopascal.
    hpa: f64,
}

/// What a command is answered with.
#[derive(Serialize, schemars::JsonSchema)]
struct Ack {
    /// Whether the command was accepted.
    accepted: bool,
    /// Why not, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The latest reading of every sensor, published every 5 s.
#[derive(Serialize, schemars::JsonSchema)]
struct Summary {
    /// The hottest sensor's temperature, degrees Celsius.
    max_celsius: Option<f64>,
    /// How many readings arrived since the start.
    readings: u64,
}

#[derive(Default)]
struct Thermal {
    max_celsius: Option<f64>,
    readings: u64,
    min_hpa: Option<f64>,
}

/// Takes readings from every sensor (`sensors.<sensor>.temperature`).
#[subscribe("sensors.*.temperature", queue = false)]
async fn record(Json(reading): Json<Reading>, _subject: Subject, state: State<Mutex<Thermal>>) {
    let mut thermal = state.lock().unwrap_or_else(|e| e.into_inner());
    thermal.readings += 1;
    thermal.max_celsius = Some(thermal.max_celsius.unwrap_or(f64::MIN).max(reading.celsius));
}

/// Takes pressure readings in batches of up to 100 (or what arrived
/// within 200 ms); the document shows one message's schema.
#[subscribe(
    "sensors.*.pressure",
    queue = false,
    batch = 100,
    batch_window = "200ms"
)]
async fn pressures(batch: Batch<Json<Pressure>>, state: State<Mutex<Thermal>>) {
    let mut thermal = state.lock().unwrap_or_else(|e| e.into_inner());
    for Json(reading) in batch {
        thermal.min_hpa = Some(thermal.min_hpa.unwrap_or(f64::MAX).min(reading.hpa));
    }
}

/// Sets the heater (a request; answered with an `Ack`).
#[subscribe("thermal.heater.set")]
async fn set_heater(Json(command): Json<SetHeater>) -> Json<Ack> {
    if command.power_percent > 100 {
        return Json(Ack {
            accepted: false,
            reason: Some("power_percent is at most 100".into()),
        });
    }
    Json(Ack {
        accepted: true,
        reason: None,
    })
}

/// Publishes a summary every 5 s.
#[subscribe(every = "5s", publish = "thermal.summary")]
async fn summary(state: State<Mutex<Thermal>>) -> Json<Summary> {
    let thermal = state.lock().unwrap_or_else(|e| e.into_inner());
    Json(Summary {
        max_celsius: thermal.max_celsius,
        readings: thermal.readings,
    })
}

#[telestion::service]
async fn main(service: telestion::Service) {
    service.provide(Mutex::new(Thermal::default()));
}
