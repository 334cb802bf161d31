//! Sample: publishes a reading `{"value": <number>, "time": "<RFC 3339>"}`
//! to `DATA_SUBJECT` every `FREQUENCY` milliseconds (default 3000).
//!
//! A port of Telestion's Deno `publisher` sample, with the same keys.
//!
//! ```sh
//! NATS_URL=localhost:4222 SERVICE_NAME=publisher DATA_DIR=./data \
//!     DATA_SUBJECT=data.temperature FREQUENCY=1000 \
//!     cargo run --example publisher
//! ```

use std::time::{Duration, SystemTime};

use telestion::Service;

/// The sample's configuration.
#[derive(serde::Deserialize)]
struct Config {
    /// Where to publish.
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

/// A small pseudo-random generator (xorshift), enough for sample data.
struct Noise(u64);

impl Noise {
    fn new() -> Noise {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Noise(seed | 1)
    }

    /// A number in `[0, 1)`.
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[telestion::service]
async fn main(service: Service) -> Result<(), String> {
    let config = service
        .typed_config::<Config>()
        .map_err(|e| e.to_string())?;
    let frequency = config.frequency.unwrap_or(3000);
    if frequency == 0 {
        return Err("key FREQUENCY: must be at least 1 (milliseconds)".into());
    }
    let subject = config.data_subject.clone();
    if subject.is_empty() || subject.contains(['*', '>', ' ']) {
        return Err(format!(
            "key DATA_SUBJECT: `{subject}` is not a subject one can publish to"
        ));
    }
    tracing::info!(%subject, frequency_ms = frequency, "publishing");
    let stopped = service.stopped();
    tokio::spawn(async move {
        let mut noise = Noise::new();
        let mut ticks = tokio::time::interval(Duration::from_millis(frequency));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let publish = async {
            loop {
                ticks.tick().await;
                let reading = Reading {
                    value: noise.next() * 100.0,
                    time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                };
                match service.publish_json(subject.clone(), &reading).await {
                    Ok(()) => tracing::debug!(%subject, value = reading.value, "published"),
                    Err(e) => tracing::warn!(%subject, error = %e, "cannot publish"),
                }
            }
        };
        tokio::select! {
            _ = stopped => {}
            _ = publish => {}
        }
    });
    Ok(())
}
