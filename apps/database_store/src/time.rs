//! Time: nanoseconds since the Unix epoch (`i64`, 1677 to 2262), parsed
//! from RFC 3339, relative durations (`-15m`, `-1h30m`) and Unix numbers,
//! and formatted as RFC 3339 in UTC with the shortest fraction (InfluxDB's
//! `_time` format).

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Nanoseconds per unit of a relative duration.
const UNITS: [(&str, i64); 9] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
    ("w", 7 * 86_400 * 1_000_000_000),
];

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An RFC 3339 date and time (`2024-01-15T10:30:00Z`,
/// `2024-01-15T12:30:00.5+02:00`) as nanoseconds since the epoch.
///
/// ```
/// use database_store::time::parse_rfc3339;
/// assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Ok(1_500_000_000));
/// assert!(parse_rfc3339("yesterday").is_err());
/// ```
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e})"))?;
    i64::try_from(parsed.unix_timestamp_nanos())
        .map_err(|_| format!("{text:?} is outside the years 1677 to 2262"))
}

/// A relative duration such as `-15m`, `-7d`, `-1h30m`, `+5s` or `0s`, in
/// nanoseconds (units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, `d`, `w`; the
/// calendar units `mo` and `y` are refused: their length varies).
///
/// ```
/// use database_store::time::parse_duration;
/// assert_eq!(parse_duration("-1h30m"), Ok(-5_400_000_000_000));
/// assert!(parse_duration("-1mo").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad =
        |why: &str| format!("{text:?} is not a duration ({why}); write e.g. -15m, -7d, -1h30m");
    let (sign, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (-1i64, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    };
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("a number must come before each unit"));
        }
        let number: i64 = rest[..digits]
            .parse()
            .map_err(|_| bad("the number is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some((_, nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(bad(&format!(
                "unknown unit {unit:?}; use ns, us, ms, s, m, h, d or w"
            )));
        };
        total = number
            .checked_mul(*nanos)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| bad("too long"))?;
    }
    Ok(sign * total)
}

/// A point in time as a query gives it: a relative duration from `now`
/// (`"-1h"`), an RFC 3339 string, or a number of Unix seconds (as Flux's
/// `range(start: 0)`).
pub fn parse_instant(value: &serde_json::Value, now: i64, name: &str) -> Result<i64, String> {
    match value {
        serde_json::Value::String(text) => {
            if text.contains('T') || text.contains(':') {
                parse_rfc3339(text).map_err(|e| format!("{name}: {e}"))
            } else {
                let offset = parse_duration(text).map_err(|e| format!("{name}: {e}"))?;
                now.checked_add(offset)
                    .ok_or_else(|| format!("{name}: {text:?} is out of range"))
            }
        }
        serde_json::Value::Number(number) => {
            let seconds = number
                .as_i64()
                .ok_or_else(|| format!("{name}: Unix seconds must be a whole number"))?;
            seconds
                .checked_mul(1_000_000_000)
                .ok_or_else(|| format!("{name}: {seconds} s is out of range"))
        }
        _ => Err(format!(
            "{name} must be a relative duration (\"-1h\"), an RFC 3339 time or Unix seconds"
        )),
    }
}

/// Nanoseconds since the epoch as RFC 3339 in UTC, with as many fraction
/// digits as needed (`2024-01-15T10:30:00Z`, `2024-01-15T10:30:00.25Z`).
///
/// ```
/// use database_store::time::format_rfc3339;
/// assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
/// assert_eq!(format_rfc3339(1_250_000_000), "1970-01-01T00:00:01.25Z");
/// ```
pub fn format_rfc3339(ns: i64) -> String {
    let Ok(time) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)) else {
        return ns.to_string();
    };
    let seconds = ns.rem_euclid(1_000_000_000);
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
    if seconds == 0 {
        format!("{base}Z")
    } else {
        let fraction = format!("{seconds:09}");
        format!("{base}.{}Z", fraction.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("-15m"), Ok(-900_000_000_000));
        assert_eq!(parse_duration("7d"), Ok(604_800_000_000_000));
        assert_eq!(parse_duration("+1s500ms"), Ok(1_500_000_000));
        for bad in ["", "-", "h", "1x", "1h-2m", "99999999999999999999s", "1y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instants() {
        let now = 10_000_000_000_000;
        let value = |v: serde_json::Value| parse_instant(&v, now, "start");
        assert_eq!(value("-1s".into()), Ok(now - 1_000_000_000));
        assert_eq!(value(0.into()), Ok(0));
        assert_eq!(
            value("2001-09-09T01:46:40Z".into()),
            Ok(1_000_000_000_000_000_000)
        );
        assert!(value(true.into()).is_err());
        assert!(value(1.5.into()).is_err());
        assert!(value("3000-01-01T00:00:00Z".into()).is_err());
    }

    #[test]
    fn formats_round_trip() {
        for ns in [0, 1, 999_999_999, 1_700_000_000_123_000_000, -1] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ns)), Ok(ns));
        }
    }
}
