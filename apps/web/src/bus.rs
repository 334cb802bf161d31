//! What the page shows from the bus, checked: anyone allowed to publish on
//! `telemetry.parsed` or `device.link` could otherwise blank the plot or
//! show a false link state. A message is forwarded to the browsers only
//! re-encoded from these types (so only known fields, finite numbers and
//! bounded text leave); anything else is refused with a fixed reason that
//! never echoes the message.

use serde::{Deserialize, Serialize};

/// The largest bus message looked at; a larger one is dropped before it
/// is decoded or buffered (a parsed frame is about 150 bytes).
pub const MAX_BUS_MESSAGE: usize = 64 * 1024;

/// The longest link `reason` shown, in bytes.
const MAX_REASON: usize = 1024;

/// A parsed frame as `telemetry_parser` publishes it (the contract of
/// `telemetry.parsed`).
#[derive(Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Frame {
    session: u32,
    counter: u32,
    time_ms: u64,
    temperature_c: f64,
    voltage_v: f64,
    current_a: f64,
    status: u16,
}

/// The link state as `io_service` publishes it on `device.link`.
#[derive(Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Link {
    connected: bool,
    since_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Why a bus message is not shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over [`MAX_BUS_MESSAGE`].
    TooLarge,
    /// Not the expected JSON (a field missing, unknown or of the wrong
    /// type, a duplicate key, not JSON at all).
    Schema,
    /// A number that is not finite.
    NotFinite,
    /// A link reason over 1 KiB.
    LongReason,
}

impl Refused {
    /// A fixed text (the framework logs repeats of one text once per
    /// interval).
    pub fn reason(self) -> &'static str {
        match self {
            Refused::TooLarge => "over 64 KiB: dropped, not shown",
            Refused::Schema => "not the expected JSON: dropped, not shown",
            Refused::NotFinite => "a number is not finite: dropped, not shown",
            Refused::LongReason => "link reason over 1 KiB: dropped, not shown",
        }
    }
}

fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Refused> {
    if body.len() > MAX_BUS_MESSAGE {
        return Err(Refused::TooLarge);
    }
    // The derived decoder refuses duplicate fields and unknown ones.
    serde_json::from_slice(body).map_err(|_| Refused::Schema)
}

/// A `telemetry.parsed` message as the JSON the page gets.
pub fn frame(body: &[u8]) -> Result<String, Refused> {
    let frame: Frame = decode(body)?;
    if ![frame.temperature_c, frame.voltage_v, frame.current_a]
        .iter()
        .all(|v| v.is_finite())
    {
        return Err(Refused::NotFinite);
    }
    serde_json::to_string(&frame).map_err(|_| Refused::Schema)
}

/// A `device.link` message as the JSON the page gets.
pub fn link(body: &[u8]) -> Result<String, Refused> {
    let link: Link = decode(body)?;
    if link.reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
        return Err(Refused::LongReason);
    }
    serde_json::to_string(&link).map_err(|_| Refused::Schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: &str = r#"{"session":1,"counter":7,"time_ms":5,"temperature_c":20.5,"voltage_v":3.3,"current_a":0.1,"status":1}"#;

    #[test]
    fn a_parsed_frame_passes_as_it_is() {
        assert_eq!(frame(FRAME.as_bytes()).unwrap(), FRAME);
    }

    #[test]
    fn anything_else_is_refused() {
        let extra = FRAME.replace("\"status\":1", "\"status\":1,\"x\":1");
        assert_eq!(frame(extra.as_bytes()), Err(Refused::Schema));
        let missing = FRAME.replace(",\"status\":1", "");
        assert_eq!(frame(missing.as_bytes()), Err(Refused::Schema));
        let twice = FRAME.replace("\"status\":1", "\"status\":1,\"status\":2");
        assert_eq!(frame(twice.as_bytes()), Err(Refused::Schema));
        let text = FRAME.replace("20.5", "\"hot\"");
        assert_eq!(frame(text.as_bytes()), Err(Refused::Schema));
        let huge = FRAME.replace("20.5", "1e400");
        assert!(frame(huge.as_bytes()).is_err());
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_BUS_MESSAGE));
        assert_eq!(frame(big.as_bytes()), Err(Refused::TooLarge));
        assert_eq!(frame(b"not json"), Err(Refused::Schema));
    }

    #[test]
    fn link_states() {
        let up = r#"{"connected":true,"since_ms":3}"#;
        assert_eq!(link(up.as_bytes()).unwrap(), up);
        let down = r#"{"connected":false,"since_ms":3,"reason":"refused"}"#;
        assert_eq!(link(down.as_bytes()).unwrap(), down);
        assert_eq!(link(br#"{"connected":"no"}"#), Err(Refused::Schema));
        assert_eq!(link(br#"{"connected":false}"#), Err(Refused::Schema));
        let long = format!(
            r#"{{"connected":false,"since_ms":3,"reason":"{}"}}"#,
            "r".repeat(2000)
        );
        assert_eq!(link(long.as_bytes()), Err(Refused::LongReason));
    }
}
