//! Sample: publishes a reading `{"value": <number>, "time": "<RFC 3339>"}`
//! to `DATA_SUBJECT` every `FREQUENCY` milliseconds (default 3000).
//!
//! A port of Telestion's Deno `publisher` sample, with the same keys,
//! written as a timer (`Route::every`) with a publish target.
//!
//! ```sh
//! NATS_URL=localhost:4222 SERVICE_NAME=publisher DATA_DIR=./data \
//!     DATA_SUBJECT=data.temperature FREQUENCY=1000 \
//!     cargo run --example publisher
//! ```

use std::time::{Duration, SystemTime};

use std::sync::Mutex;

use telestion::{Json, PublishTarget, Route, Service, State};

/// The sample's configuration.
#[derive(serde::Deserialize)]
struct Config {
    /// Where to publish (read again as the timer's publish target).
    data_subject: String,
    /// Milliseconds between two readings.
    frequency: Option<u64>,
}

/// One published reading.
#[derive(serde::Serialize)]
struct Reading {
    value: f64,
    time: String,
}

/// A small pseudo-random generator (xorshift), enough for sample data;
/// shared with the timer as `State<Noise>`.
struct Noise(Mutex<u64>);

impl Noise {
    fn new() -> Noise {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Noise(Mutex::new(seed | 1))
    }

    /// A number in `[0, 1)`.
    fn next(&self) -> f64 {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The timer: one reading per tick, published to `DATA_SUBJECT` (the
/// route's publish target).
async fn reading(noise: State<Noise>) -> Json<Reading> {
    Json(Reading {
        value: noise.next() * 100.0,
        time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
    })
}

// The timer is built at start (below), so what it publishes is declared
// here for the service's NATS permissions.
#[telestion::service(publishes = ["{DATA_SUBJECT}"])]
async fn main(service: Service) -> Result<(), String> {
    let config = service
        .typed_config::<Config>()
        .map_err(|e| e.to_string())?;
    let frequency = config.frequency.unwrap_or(3000);
    if frequency == 0 {
        return Err("key FREQUENCY: must be at least 1 (milliseconds)".into());
    }
    service.provide(Noise::new());
    tracing::info!(subject = %config.data_subject, frequency_ms = frequency, "publishing");
    // A timer whose period is a number of milliseconds (FREQUENCY) rather
    // than a period such as `3s`, so it is built here instead of with
    // `#[subscribe(every_config = ..)]`; a DATA_SUBJECT with wildcards
    // fails the start, naming the key.
    let timer = Route::every(Duration::from_millis(frequency), reading)
        .name("publisher::reading")
        .publish_to(PublishTarget::config("DATA_SUBJECT"));
    service
        .subscribe(timer)
        .await
        .map_err(|e| telestion::error_chain(&e))
}
