//! Sample: every `FREQUENCY` milliseconds (default 5000), sends a request
//! to `REQUEST_SUBJECT` and forwards the reply's body to `OUTPUT_SUBJECT`.
//!
//! A port of Telestion's Deno `requester` sample, with the same keys. A
//! failed request (no responder, timeout) is logged and counted as an error
//! in health; the service keeps running.
//!
//! Forwarding to a data-log subject stores the replies in a file through the
//! Standard Operations service:
//!
//! ```sh
//! NATS_URL=localhost:4222 SERVICE_NAME=requester DATA_DIR=./data \
//!     REQUEST_SUBJECT=latest.temperature OUTPUT_SUBJECT=__telestion__/log/temperature \
//!     FREQUENCY=1000 cargo run --example requester
//! ```

use std::time::Duration;

use telestion::Service;

/// The sample's configuration.
#[derive(serde::Deserialize)]
struct Config {
    /// Where to send the requests.
    request_subject: String,
    /// Where to publish the replies.
    output_subject: String,
    /// Milliseconds between two requests.
    frequency: Option<u64>,
}

/// Checks that `subject` (from config `key`) can be published to.
fn publishable(key: &str, subject: &str) -> Result<(), String> {
    if subject.is_empty() || subject.contains(['*', '>']) || subject.contains(char::is_whitespace) {
        return Err(format!(
            "key {key}: `{subject}` is not a subject one can publish to"
        ));
    }
    Ok(())
}

#[telestion::service(requests = ["{REQUEST_SUBJECT}"], publishes = ["{OUTPUT_SUBJECT}"])]
async fn main(service: Service) -> Result<(), String> {
    let config = service
        .typed_config::<Config>()
        .map_err(|e| e.to_string())?;
    publishable("REQUEST_SUBJECT", &config.request_subject)?;
    publishable("OUTPUT_SUBJECT", &config.output_subject)?;
    let frequency = config.frequency.unwrap_or(5000);
    if frequency == 0 {
        return Err("key FREQUENCY: must be at least 1 (milliseconds)".into());
    }
    tracing::info!(
        request = %config.request_subject,
        output = %config.output_subject,
        frequency_ms = frequency,
        "requesting"
    );
    let stopped = service.stopped();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(frequency));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let work = async {
            loop {
                ticks.tick().await;
                match service.request(config.request_subject.clone(), "").await {
                    Ok(reply) => {
                        if let Err(e) = service
                            .publish(config.output_subject.clone(), reply.payload)
                            .await
                        {
                            tracing::warn!(error = %e, "cannot forward the reply");
                        }
                    }
                    Err(e) => {
                        service.record_error();
                        tracing::warn!(error = %e, "request failed");
                    }
                }
            }
        };
        tokio::select! {
            _ = stopped => {}
            _ = work => {}
        }
    });
    Ok(())
}
