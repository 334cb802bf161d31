//! Points: what the writer stores, parsed from a message in the upstream
//! format (a JSON object on `<prefix>.<measurement>`), with the reason when
//! a message is not one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::parse_rfc3339;

/// The most fields one point may carry.
pub const MAX_FIELDS: usize = 1024;
/// The most tags one point may carry.
pub const MAX_TAGS: usize = 64;
/// The longest tag or field name, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// The longest measurement name, in bytes.
pub const MAX_MEASUREMENT_BYTES: usize = 512;

/// The tag every stored point has unless it sets `service` itself, as the
/// upstream writer's default tag (`service: telestion-database`).
pub const DEFAULT_TAG: (&str, &str) = ("service", "telestion-database");

/// Row members of a query reply; a tag may not have one of these names.
pub const RESERVED_NAMES: [&str; 8] = [
    "_time",
    "_measurement",
    "_field",
    "_value",
    "_start",
    "_stop",
    "result",
    "table",
];

/// One field value: upstream stores numbers as floats, booleans and strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// A JSON number (stored as a 64-bit float, as InfluxDB's float fields).
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A string.
    Str(String),
}

impl FieldValue {
    /// The value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            FieldValue::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            FieldValue::Bool(b) => serde_json::Value::Bool(*b),
            FieldValue::Str(s) => serde_json::Value::String(s.clone()),
        }
    }

    /// The value as a number, for `mean`, `min`, `max` and `sum`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            FieldValue::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// Fields by name (sorted).
pub type Fields = BTreeMap<String, FieldValue>;
/// Tags by name (sorted).
pub type Tags = BTreeMap<String, String>;

/// One point: a measurement, a time, tags and at least one field.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The subject after the writer's prefix (`telemetry.temperature`).
    pub measurement: String,
    /// Nanoseconds since the epoch.
    pub time: i64,
    /// String tags (without the default tag: it is added when read).
    pub tags: Tags,
    /// The fields.
    pub fields: Fields,
}

/// Why a message is not a point. Its `Display` is the reason a dead letter
/// carries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    /// The body is JSON, but not an object.
    #[error("the body is a JSON {0}, not an object")]
    NotObject(&'static str),
    /// `time` or `timestamp` is not a time.
    #[error("{0}")]
    BadTime(String),
    /// No member is a number, boolean or string.
    #[error("the object has no field (a member with a number, boolean or string value)")]
    NoFields,
    /// Too many fields or tags, or a name too long or reserved.
    #[error("{0}")]
    Limit(String),
    /// The subject does not start with the writer's prefix.
    #[error("the subject {0:?} is not below the data subject")]
    Subject(String),
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Whether a JSON value counts as set, as in JavaScript's `time || timestamp`.
fn truthy(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        serde_json::Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

fn parse_time(name: &str, value: &serde_json::Value) -> Result<i64, Invalid> {
    match value {
        serde_json::Value::String(text) => {
            parse_rfc3339(text).map_err(|e| Invalid::BadTime(format!("{name}: {e}")))
        }
        serde_json::Value::Number(number) => {
            // JavaScript's `new Date(number)`: Unix milliseconds.
            let ms = number.as_f64().unwrap_or(f64::NAN);
            let ns = ms * 1e6;
            if ns.is_finite() && ns.abs() < 9.2e18 {
                Ok(ns.round() as i64)
            } else {
                Err(Invalid::BadTime(format!(
                    "{name}: {number} ms is outside the years 1677 to 2262"
                )))
            }
        }
        other => Err(Invalid::BadTime(format!(
            "{name} must be an RFC 3339 string or Unix milliseconds, not a {}",
            json_kind(other)
        ))),
    }
}

fn check_key(kind: &str, key: &str) -> Result<(), Invalid> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Invalid::Limit(format!(
            "a {kind} name is longer than {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The measurement of a message on `subject`, for a writer subscribed to
/// `data_subject` (which ends with `>`): the subject without the prefix
/// (`data.>` and `data.telemetry.temperature` give `telemetry.temperature`).
///
/// ```
/// use database_store::point::measurement_of;
/// assert_eq!(measurement_of("data.>", "data.a.b").unwrap(), "a.b");
/// assert!(measurement_of("data.>", "other.a").is_err());
/// ```
pub fn measurement_of<'a>(data_subject: &str, subject: &'a str) -> Result<&'a str, Invalid> {
    let prefix = data_subject.strip_suffix('>').unwrap_or(data_subject);
    match subject.strip_prefix(prefix) {
        Some(measurement) if !measurement.is_empty() => {
            if measurement.len() > MAX_MEASUREMENT_BYTES {
                Err(Invalid::Limit(format!(
                    "the measurement is longer than {MAX_MEASUREMENT_BYTES} bytes"
                )))
            } else {
                Ok(measurement)
            }
        }
        _ => Err(Invalid::Subject(subject.to_owned())),
    }
}

/// Parses a message body in the upstream format into a point of
/// `measurement`: a JSON object whose optional `time` (else `timestamp`;
/// RFC 3339 or Unix milliseconds) gives the time (else `arrival`), whose
/// optional `tags` object gives the tags (string values; others are left
/// out), and whose other members with a number, boolean or string value
/// are the fields (`null`, arrays and objects are left out).
///
/// ```
/// use database_store::point::{FieldValue, parse_point};
/// let body = br#"{"time": "2024-01-15T10:30:00Z", "value": 23.5, "ok": true,
///                 "tags": {"sensor": "temp-01"}}"#;
/// let point = parse_point("telemetry.temperature", body, 0).unwrap();
/// assert_eq!(point.fields["value"], FieldValue::Float(23.5));
/// assert_eq!(point.tags["sensor"], "temp-01");
/// assert_eq!(point.time, 1_705_314_600_000_000_000);
/// ```
pub fn parse_point(measurement: &str, body: &[u8], arrival: i64) -> Result<Point, Invalid> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Invalid::NotJson(e.to_string()))?;
    let serde_json::Value::Object(object) = value else {
        return Err(Invalid::NotObject(json_kind(&value)));
    };
    let time = match (object.get("time"), object.get("timestamp")) {
        (Some(time), _) if truthy(time) => parse_time("time", time)?,
        (_, Some(timestamp)) if truthy(timestamp) => parse_time("timestamp", timestamp)?,
        _ => arrival,
    };
    let mut tags = Tags::new();
    if let Some(serde_json::Value::Object(given)) = object.get("tags") {
        for (key, value) in given {
            if let serde_json::Value::String(value) = value {
                check_key("tag", key)?;
                if RESERVED_NAMES.contains(&key.as_str()) {
                    return Err(Invalid::Limit(format!(
                        "the tag name {key:?} is reserved for a reply's row members"
                    )));
                }
                tags.insert(key.clone(), value.clone());
            }
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(Invalid::Limit(format!("more than {MAX_TAGS} tags")));
    }
    let mut fields = Fields::new();
    for (key, value) in &object {
        if matches!(key.as_str(), "time" | "timestamp" | "tags") {
            continue;
        }
        let field = match value {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if f.is_finite() => FieldValue::Float(f),
                _ => continue,
            },
            serde_json::Value::Bool(b) => FieldValue::Bool(*b),
            serde_json::Value::String(s) => FieldValue::Str(s.clone()),
            _ => continue,
        };
        check_key("field", key)?;
        fields.insert(key.clone(), field);
    }
    if fields.is_empty() {
        return Err(Invalid::NoFields);
    }
    if fields.len() > MAX_FIELDS {
        return Err(Invalid::Limit(format!("more than {MAX_FIELDS} fields")));
    }
    Ok(Point {
        measurement: measurement.to_owned(),
        time,
        tags,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Point, Invalid> {
        parse_point("m", body.as_bytes(), 42)
    }

    #[test]
    fn upstream_members() {
        let point = parse(
            r#"{"value": 1, "label": "x", "flag": false, "nothing": null, "list": [1],
                "object": {"a": 1}, "tags": {"a": "b", "n": 1}}"#,
        )
        .unwrap();
        assert_eq!(point.time, 42);
        assert_eq!(point.fields.len(), 3);
        assert_eq!(point.tags.len(), 1);
        let timestamp = parse(r#"{"timestamp": 1000, "v": 1}"#).unwrap();
        assert_eq!(timestamp.time, 1_000_000_000);
        // `time` wins over `timestamp`; a falsy `time` does not.
        let both = parse(r#"{"time": "1970-01-01T00:00:02Z", "timestamp": 1000, "v": 1}"#);
        assert_eq!(both.unwrap().time, 2_000_000_000);
        let falsy = parse(r#"{"time": "", "timestamp": 1000, "v": 1}"#);
        assert_eq!(falsy.unwrap().time, 1_000_000_000);
    }

    #[test]
    fn invalid_bodies_have_reasons() {
        assert!(matches!(parse("{"), Err(Invalid::NotJson(_))));
        assert_eq!(parse("[1]"), Err(Invalid::NotObject("array")));
        assert_eq!(parse(r#"{"tags": {"a": "b"}}"#), Err(Invalid::NoFields));
        assert!(matches!(
            parse(r#"{"time": "noon", "v": 1}"#),
            Err(Invalid::BadTime(_))
        ));
        assert!(matches!(
            parse(r#"{"time": [], "v": 1}"#),
            Err(Invalid::BadTime(_))
        ));
        assert!(matches!(
            parse(r#"{"time": 1e300, "v": 1}"#),
            Err(Invalid::BadTime(_))
        ));
        assert!(matches!(
            parse(r#"{"v": 1, "tags": {"_field": "x"}}"#),
            Err(Invalid::Limit(_))
        ));
        let long = format!(r#"{{"{}": 1}}"#, "k".repeat(MAX_KEY_BYTES + 1));
        assert!(matches!(parse(&long), Err(Invalid::Limit(_))));
    }
}
