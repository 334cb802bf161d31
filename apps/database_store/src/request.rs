//! Query requests: the upstream members (`measurement`, `range`,
//! `fields`, `filters`) and the extensions (`start`, `stop`, `limit`,
//! `order`, `every`, `fn`, `continuation`), checked into a [`Query`].
//! Nothing of a request ever becomes SQL text: names and values are
//! parameters or compared in Rust.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::continuation::Position;
use crate::store::Order;
use crate::time::{now_ns, parse_duration, parse_instant};

/// The most names in `fields`, and the most `filters`.
pub const MAX_NAMES: usize = 256;
/// The longest string in a request (a name, a filter value, a time).
pub const MAX_STRING_BYTES: usize = 4096;
/// The default `range` (upstream's).
pub const DEFAULT_RANGE: &str = "-1h";

/// A request as sent (every member optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The measurement (all when missing).
    pub measurement: Option<String>,
    /// Upstream's start of the range (`-1h` by default).
    pub range: Option<serde_json::Value>,
    /// The start (inclusive): relative, RFC 3339 or Unix seconds.
    pub start: Option<serde_json::Value>,
    /// The stop (exclusive; default now).
    pub stop: Option<serde_json::Value>,
    /// Only these fields.
    pub fields: Option<Vec<String>>,
    /// Tag or field values the points must have.
    pub filters: Option<serde_json::Map<String, serde_json::Value>>,
    /// The most rows in the reply.
    pub limit: Option<serde_json::Value>,
    /// `asc` (default) or `desc`.
    pub order: Option<String>,
    /// Aggregation window (`1m`).
    pub every: Option<String>,
    /// Aggregate function.
    #[serde(rename = "fn")]
    pub function: Option<String>,
    /// Where the previous page ended.
    pub continuation: Option<String>,
    /// Upstream's raw Flux query: refused.
    pub query: Option<serde_json::Value>,
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    /// Average of the numbers.
    Mean,
    /// Smallest number.
    Min,
    /// Largest number.
    Max,
    /// Sum of the numbers.
    Sum,
    /// Number of values (of any type).
    Count,
    /// The earliest value.
    First,
    /// The latest value.
    Last,
}

impl Function {
    fn parse(name: &str) -> Result<Function, String> {
        Ok(match name {
            "mean" => Function::Mean,
            "min" => Function::Min,
            "max" => Function::Max,
            "sum" => Function::Sum,
            "count" => Function::Count,
            "first" => Function::First,
            "last" => Function::Last,
            other => {
                return Err(format!(
                    "unknown fn {:?}: use mean, min, max, sum, count, first or last",
                    shorten(other)
                ));
            }
        })
    }
}

/// One filter: the point's tag or field `key` equals `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Tag or field name.
    pub key: String,
    /// A string matches a tag or a string field; a number or boolean
    /// matches a field.
    pub value: serde_json::Value,
}

/// A checked query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Only this measurement.
    pub measurement: Option<String>,
    /// Start, ns (inclusive).
    pub start: i64,
    /// Stop, ns (exclusive).
    pub stop: i64,
    /// Only these fields.
    pub fields: Option<BTreeSet<String>>,
    /// Every filter must match.
    pub filters: Vec<Filter>,
    /// Most rows in the page.
    pub limit: usize,
    /// Time order.
    pub order: Order,
    /// Window length (ns) and function.
    pub aggregate: Option<(i64, Function)>,
    /// Where to go on (a continuation).
    pub position: Option<Position>,
    /// Identifies the request (without its continuation), so that a
    /// continuation is only used with the request that made it.
    pub fingerprint: u64,
}

/// Why a request is refused (the reply's `error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

fn shorten(text: &str) -> String {
    if text.len() <= 64 {
        return text.to_owned();
    }
    let mut end = 64;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

fn check_string(name: &str, text: &str) -> Result<(), BadRequest> {
    if text.len() > MAX_STRING_BYTES {
        return Err(BadRequest(format!(
            "{name} is longer than {MAX_STRING_BYTES} bytes"
        )));
    }
    Ok(())
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Request {
    /// Parses a request body; an empty body is the empty request.
    pub fn from_body(body: &[u8]) -> Result<Request, BadRequest> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Request::default());
        }
        serde_json::from_slice(body).map_err(|e| {
            BadRequest(format!(
                "the request is not a query object ({e}); members: measurement, range, start, \
                 stop, fields, filters, limit, order, every, fn, continuation"
            ))
        })
    }

    /// Checks the request. `max_rows` is the largest `limit` (and the
    /// default); `now` the time relative times count from.
    pub fn check(self, max_rows: usize, now: i64) -> Result<Query, BadRequest> {
        if self.query.is_some() {
            return Err(BadRequest(
                "raw queries (\"query\") are not accepted: they would let any client run any \
                 query; use the structured members measurement, range or start/stop, fields, \
                 filters, limit, order, every and fn"
                    .into(),
            ));
        }
        let fingerprint = self.fingerprint();
        if let Some(measurement) = &self.measurement {
            check_string("measurement", measurement)?;
        }
        let start_value = match (&self.range, &self.start) {
            (Some(_), Some(_)) => {
                return Err(BadRequest(
                    "give range or start, not both (range is start's upstream name)".into(),
                ));
            }
            (Some(value), None) | (None, Some(value)) => value.clone(),
            (None, None) => serde_json::Value::String(DEFAULT_RANGE.into()),
        };
        if let serde_json::Value::String(text) = &start_value {
            check_string("start", text)?;
        }
        let start = parse_instant(&start_value, now, "start").map_err(BadRequest)?;
        let stop = match &self.stop {
            Some(value) => {
                if let serde_json::Value::String(text) = value {
                    check_string("stop", text)?;
                }
                parse_instant(value, now, "stop").map_err(BadRequest)?
            }
            None => now,
        };
        if start >= stop {
            return Err(BadRequest(
                "the range is empty: start must be before stop".into(),
            ));
        }
        let fields = match self.fields {
            Some(fields) if !fields.is_empty() => {
                if fields.len() > MAX_NAMES {
                    return Err(BadRequest(format!("more than {MAX_NAMES} fields")));
                }
                for field in &fields {
                    check_string("a field name", field)?;
                }
                Some(fields.into_iter().collect::<BTreeSet<_>>())
            }
            _ => None,
        };
        let mut query_fields = fields;
        let mut measurement = self.measurement;
        let mut filters = Vec::new();
        for (key, value) in self.filters.unwrap_or_default() {
            if filters.len() >= MAX_NAMES {
                return Err(BadRequest(format!("more than {MAX_NAMES} filters")));
            }
            check_string("a filter name", &key)?;
            match &value {
                serde_json::Value::String(text) => check_string("a filter value", text)?,
                serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {}
                _ => {
                    return Err(BadRequest(format!(
                        "filter {:?}: the value must be a string, number or boolean",
                        shorten(&key)
                    )));
                }
            }
            // The columns of upstream's rows can be filtered on too.
            match (key.as_str(), &value) {
                ("_measurement", serde_json::Value::String(name)) => {
                    if measurement.as_ref().is_some_and(|m| m != name) {
                        // Contradicting: nothing matches.
                        query_fields = Some(BTreeSet::new());
                    }
                    measurement = Some(name.clone());
                }
                ("_field", serde_json::Value::String(name)) => {
                    let only: BTreeSet<String> = [name.clone()].into();
                    query_fields = Some(match query_fields {
                        Some(fields) => fields.intersection(&only).cloned().collect(),
                        None => only,
                    });
                }
                _ => filters.push(Filter { key, value }),
            }
        }
        let limit = match &self.limit {
            None => max_rows,
            Some(value) => match value.as_u64() {
                Some(n) if n >= 1 && n <= max_rows as u64 => n as usize,
                _ => {
                    return Err(BadRequest(format!(
                        "limit must be a whole number from 1 to {max_rows}"
                    )));
                }
            },
        };
        let order = match self.order.as_deref() {
            None | Some("asc") => Order::Asc,
            Some("desc") => Order::Desc,
            Some(other) => {
                return Err(BadRequest(format!(
                    "order must be \"asc\" or \"desc\", not {:?}",
                    shorten(other)
                )));
            }
        };
        let aggregate = match (&self.every, &self.function) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(BadRequest(
                    "fn needs every (the window length, e.g. \"1m\")".into(),
                ));
            }
            (Some(every), function) => {
                check_string("every", every)?;
                let every = parse_duration(every).map_err(|e| BadRequest(format!("every: {e}")))?;
                if every <= 0 {
                    return Err(BadRequest("every must be a positive duration".into()));
                }
                let function =
                    Function::parse(function.as_deref().unwrap_or("mean")).map_err(BadRequest)?;
                Some((every, function))
            }
        };
        let mut query = Query {
            measurement,
            start,
            stop,
            fields: query_fields,
            filters,
            limit,
            order,
            aggregate,
            position: None,
            fingerprint,
        };
        if let Some(token) = &self.continuation {
            let position = Position::decode(token, fingerprint).map_err(BadRequest)?;
            // The page's range is the first page's (relative times do not
            // move between pages).
            query.start = position.start;
            query.stop = position.stop;
            query.position = Some(position);
        }
        Ok(query)
    }

    /// A hash of every member but the continuation.
    fn fingerprint(&self) -> u64 {
        let filters: std::collections::BTreeMap<&String, String> = self
            .filters
            .iter()
            .flatten()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        let text = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.measurement,
            self.range.as_ref().map(ToString::to_string),
            self.start.as_ref().map(ToString::to_string),
            self.stop.as_ref().map(ToString::to_string),
            self.fields,
            filters,
            self.limit.as_ref().map(ToString::to_string),
            self.order,
            self.every,
            self.function,
        );
        fnv1a(text.as_bytes())
    }
}

/// Parses and checks a request body at the current time.
pub fn parse_query(body: &[u8], max_rows: usize) -> Result<Query, BadRequest> {
    Request::from_body(body)?.check(max_rows, now_ns())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str) -> Result<Query, BadRequest> {
        Request::from_body(body.as_bytes())?.check(1000, 3_600_000_000_000)
    }

    #[test]
    fn upstream_defaults() {
        let query = check("{}").unwrap();
        assert_eq!((query.start, query.stop), (0, 3_600_000_000_000));
        assert_eq!(query.limit, 1000);
        assert_eq!(query.order, Order::Asc);
        let query = check(
            r#"{"measurement": "m", "range": "-1m", "fields": ["value"],
            "filters": {"sensor": "a", "_field": "value"}}"#,
        )
        .unwrap();
        assert_eq!(query.start, 3_540_000_000_000);
        assert_eq!(query.fields.unwrap().len(), 1);
        assert_eq!(query.filters.len(), 1);
    }

    #[test]
    fn refusals() {
        let refused = check(r#"{"query": "from(bucket: \"x\")"}"#).unwrap_err();
        assert!(refused.0.contains("raw queries"), "{refused}");
        for bad in [
            r#"{"range": "-1h", "start": "-2h"}"#,
            r#"{"limit": 0}"#,
            r#"{"limit": 1001}"#,
            r#"{"limit": "10"}"#,
            r#"{"order": "up"}"#,
            r#"{"fn": "mean"}"#,
            r#"{"every": "0s", "fn": "mean"}"#,
            r#"{"every": "1m", "fn": "median"}"#,
            r#"{"filters": {"a": null}}"#,
            r#"{"start": "-1m", "stop": "-2m"}"#,
            r#"{"measurment": "typo"}"#,
            "[]",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
