//! `telemetry_parser`: decodes the raw device frames the IO service stores
//! on `telemetry.raw` (stream `TELEMETRY_RAW`) and publishes each as JSON,
//! durably, on `telemetry.parsed` (stream `TELEMETRY`):
//!
//! ```json
//! {"session":7,"counter":42,"time_ms":1750000000000,"temperature_c":21.5,
//!  "voltage_v":28.1,"current_a":1.25,"status":0}
//! ```
//!
//! with the message id `parsed-<session>-<counter>`, so a frame handled
//! twice (a redelivery after a crash, a frame the device sent again) is
//! stored once. Floats are the device's `f32` values written in their
//! shortest form (`28.1`, not `28.100000381469727`).
//!
//! A frame that cannot be parsed (bad checksum, truncated, unknown kind,
//! not telemetry, a sensor value that is not a finite number) is never
//! retried: the parser logs it with its reason (the first 10, then every
//! 1000th, with the running total), counts it as an error in health, publishes `{"reason": "...", "bytes": <length>}` on
//! `telemetry.rejected` and acknowledges it. A failed publish (NATS or the
//! stream unavailable) fails the handler, and the frame is delivered again
//! with the durable back-off.
//!
//! Each parsed frame is also published (core NATS, after the durable
//! publish) in the upstream Telestion database format on `DATA_SUBJECT`
//! (default `data.telemetry.device`), for the `database` writer:
//!
//! ```json
//! {"time":"2025-06-15T15:06:40Z","temperature_c":21.5,"voltage_v":28.1,
//!  "current_a":1.25,"status":0,"counter":42,"tags":{"session":"7"}}
//! ```
//!
//! A frame handled twice is published twice there; the writer merges a
//! point with the time and tags of a stored one, so it is stored once. A
//! failed publish there is logged and counted, and does not fail the frame.
//!
//! # Configuration
//!
//! The standard keys (and the `DURABLE_*` keys of durable handlers),
//! `DATA_SUBJECT` (see above; empty: not published), and
//! `TELEMETRY_REPLICAS`, `TELEMETRY_RAW_REPLICAS` (default 1): the
//! replicas of the streams it declares.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backend_protocol::{Frame, Telemetry, decode_body, parsed_message_id};
use serde::Serialize;
use telestion::{Bytes, HandlerError, Service, StreamSpec, subscribe, tracing};

/// Frames rejected since start.
static REJECTED: AtomicU64 = AtomicU64::new(0);

/// The JSON of a parsed frame (the contract of `telemetry.parsed`).
#[derive(Debug, Serialize, PartialEq)]
struct Parsed {
    session: u32,
    counter: u32,
    time_ms: u64,
    temperature_c: f64,
    voltage_v: f64,
    current_a: f64,
    status: u16,
}

/// The default `DATA_SUBJECT`: where the upstream-format point goes.
const DEFAULT_DATA_SUBJECT: &str = "data.telemetry.device";

/// A parsed frame as a point of the upstream database format.
fn upstream_point(parsed: &Parsed) -> telestion::serde_json::Value {
    let nanos = i128::from(parsed.time_ms) * 1_000_000;
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    telestion::serde_json::json!({
        "time": time,
        "temperature_c": parsed.temperature_c,
        "voltage_v": parsed.voltage_v,
        "current_a": parsed.current_a,
        "status": parsed.status,
        "counter": parsed.counter,
        "tags": {"session": parsed.session.to_string()},
    })
}

/// The JSON on `telemetry.rejected`.
#[derive(Debug, Serialize)]
struct Rejected {
    reason: String,
    bytes: usize,
}

/// `value` as the shortest `f64` that prints like the `f32`; `None` when
/// it is not finite.
fn widen(name: &str, value: f32) -> Result<f64, String> {
    if !value.is_finite() {
        return Err(format!("{name} is not a finite number ({value})"));
    }
    value
        .to_string()
        .parse()
        .map_err(|e| format!("{name}: {e}"))
}

/// The JSON of a raw frame body, or why it is not telemetry.
fn parse_frame(body: &[u8]) -> Result<Parsed, String> {
    let t: Telemetry = match decode_body(body) {
        Ok(Frame::Telemetry(t)) => t,
        Ok(other) => return Err(format!("not a telemetry frame: {other:?}")),
        Err(e) => return Err(e.to_string()),
    };
    Ok(Parsed {
        session: t.session,
        counter: t.counter,
        time_ms: t.time_ms,
        temperature_c: widen("temperature_c", t.temperature_c)?,
        voltage_v: widen("voltage_v", t.voltage_v)?,
        current_a: widen("current_a", t.current_a)?,
        status: t.status,
    })
}

/// Parses one raw frame.
///
/// The parsed frame is published by hand rather than with
/// `publish = "telemetry.parsed"`: a publish target's message id is made of
/// the input stream's sequence, while `parsed-<session>-<counter>` also
/// makes a frame that reached `telemetry.raw` twice (the device resent it)
/// one message in `TELEMETRY`.
#[subscribe("telemetry.raw", durable, stream = "TELEMETRY_RAW", concurrency = 16)]
async fn parse(body: Bytes, service: Service) -> Result<(), HandlerError> {
    match parse_frame(&body) {
        Ok(parsed) => {
            let json = telestion::serde_json::to_vec(&parsed)
                .map_err(|e| HandlerError::server(e.to_string()))?;
            service
                .publish_durable_with_id(
                    "telemetry.parsed",
                    parsed_message_id(parsed.session, parsed.counter),
                    json,
                )
                .await?;
            let subject = service
                .config()
                .get_str("DATA_SUBJECT")
                .unwrap_or_else(|| DEFAULT_DATA_SUBJECT.into());
            if !subject.is_empty()
                && let Err(e) = service
                    .publish_json(subject, &upstream_point(&parsed))
                    .await
            {
                // Counted by the runtime; the frame itself is done.
                tracing::warn!(error = %e, "cannot publish the upstream-format point");
            }
            Ok(())
        }
        Err(reason) => {
            // Never parses: do not retry it, count and report it.
            service.record_error();
            let rejected_total = REJECTED.fetch_add(1, Ordering::Relaxed) + 1;
            // A device sending nothing but bad frames must not flood the log.
            if rejected_total <= 10 || rejected_total.is_multiple_of(1000) {
                tracing::warn!(%reason, bytes = body.len(), rejected_total, "frame rejected");
            }
            let rejected = Rejected {
                reason,
                bytes: body.len(),
            };
            if let Err(e) = service.publish_json("telemetry.rejected", &rejected).await {
                tracing::warn!(error = %e, "cannot publish the rejection");
            }
            Ok(())
        }
    }
}

#[telestion::service(publishes = ["telemetry.parsed", "telemetry.rejected", "{DATA_SUBJECT:data.telemetry.device}"], streams = ["TELEMETRY_RAW", "TELEMETRY"])]
async fn main(service: Service) -> Result<(), telestion::StartError> {
    // Both declared identically by their other users (io_service, db_writer):
    // whoever starts first creates them.
    service
        .declare_stream(
            StreamSpec::new("TELEMETRY_RAW")
                .subjects(["telemetry.raw"])
                .max_age(Duration::from_secs(3600))
                .max_bytes(1 << 30)
                .replicas_from_key("TELEMETRY_RAW_REPLICAS"),
        )
        .await?;
    service
        .declare_stream(
            StreamSpec::new("TELEMETRY")
                .subjects(["telemetry.parsed"])
                .max_age(Duration::from_secs(3600))
                .replicas_from_key("TELEMETRY_REPLICAS"),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_protocol::{TelecommandAck, crc16, encode_body};

    fn frame() -> Telemetry {
        Telemetry {
            session: 7,
            counter: 42,
            time_ms: 1_750_000_000_000,
            temperature_c: 21.5,
            voltage_v: 28.1,
            current_a: -1.25,
            status: 3,
        }
    }

    #[test]
    fn telemetry_becomes_the_contract_json() {
        let parsed = parse_frame(&encode_body(&Frame::Telemetry(frame()))).unwrap();
        assert_eq!(
            telestion::serde_json::to_string(&parsed).unwrap(),
            r#"{"session":7,"counter":42,"time_ms":1750000000000,"temperature_c":21.5,"voltage_v":28.1,"current_a":-1.25,"status":3}"#
        );
    }

    #[test]
    fn telemetry_becomes_an_upstream_point() {
        let parsed = parse_frame(&encode_body(&Frame::Telemetry(frame()))).unwrap();
        let expected: telestion::serde_json::Value = telestion::serde_json::from_str(
            r#"{"time":"2025-06-15T15:06:40Z","temperature_c":21.5,"voltage_v":28.1,
                "current_a":-1.25,"status":3,"counter":42,"tags":{"session":"7"}}"#,
        )
        .unwrap();
        assert_eq!(upstream_point(&parsed), expected);
    }

    #[test]
    fn bad_frames_are_rejected_with_their_reason() {
        let mut body = encode_body(&Frame::Telemetry(frame()));
        body[3] ^= 1;
        assert!(parse_frame(&body).unwrap_err().contains("bad checksum"));
        let mut short = encode_body(&Frame::Telemetry(frame()))[..17].to_vec();
        let crc = crc16(&short);
        short.extend_from_slice(&crc.to_be_bytes());
        assert!(parse_frame(&short).unwrap_err().contains("truncated"));
        assert!(parse_frame(&[]).unwrap_err().contains("truncated"));
        let ack = encode_body(&Frame::TelecommandAck(TelecommandAck {
            id: "a".into(),
            accepted: true,
            reason: None,
        }));
        assert!(
            parse_frame(&ack)
                .unwrap_err()
                .contains("not a telemetry frame")
        );
        let nan = Telemetry {
            voltage_v: f32::NAN,
            ..frame()
        };
        assert!(
            parse_frame(&encode_body(&Frame::Telemetry(nan)))
                .unwrap_err()
                .contains("voltage_v is not a finite number")
        );
    }
}
