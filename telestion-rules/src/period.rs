//! Periods and durations: a number and a unit, `"100ms"`, `"1.5s"`, `"5m"`,
//! `"1h"`. One parser for every such value, whether it is a `#[subscribe]`
//! argument (checked at compile time) or a config key (checked at start).

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

/// Why a text is not a period.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeriodError {
    /// No unit after the number.
    NoUnit {
        /// The text.
        text: String,
    },
    /// It does not start with a number.
    NoNumber {
        /// The text.
        text: String,
    },
    /// The unit is not `ms`, `s`, `m`/`min` or `h`.
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The text.
        text: String,
    },
    /// The period is outside the allowed range.
    OutOfRange {
        /// The text.
        text: String,
        /// The smallest allowed period.
        min: Duration,
        /// The largest allowed period.
        max: Duration,
    },
}

impl fmt::Display for PeriodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeriodError::NoUnit { text } => write!(
                f,
                "`{text}` has no unit; write e.g. `100ms`, `2s`, `5m` or `1h`"
            ),
            PeriodError::NoNumber { text } => write!(
                f,
                "`{text}` does not start with a number; write e.g. `100ms`"
            ),
            PeriodError::UnknownUnit { unit, text } => write!(
                f,
                "unknown unit `{unit}` in `{text}`; write `ms`, `s`, `m` or `h`"
            ),
            PeriodError::OutOfRange { text, min, max } => write!(
                f,
                "`{text}` is out of range: it must be at least {} and at most {}",
                show(*min),
                show(*max)
            ),
        }
    }
}

impl std::error::Error for PeriodError {}

/// A duration as a user would write it back: `100ms`, `2s`, `1h`.
fn show(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 && !duration.is_zero() {
        format!("{}ns", duration.as_nanos())
    } else if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Parses a period: a number (digits, optionally a decimal point) and a
/// unit (`ms`, `s`, `m` or `min`, `h`), spaces around allowed. Zero is a
/// period here; [`parse_within`] checks bounds.
///
/// ```
/// use std::time::Duration;
/// use telestion_rules::period::parse;
/// assert_eq!(parse("100ms"), Ok(Duration::from_millis(100)));
/// assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(parse(" 5 m "), Ok(Duration::from_secs(300)));
/// assert!(parse("fast").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, PeriodError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| PeriodError::NoUnit {
            text: trimmed.to_owned(),
        })?;
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| PeriodError::NoNumber {
        text: trimmed.to_owned(),
    })?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(PeriodError::UnknownUnit {
                unit: other.to_owned(),
                text: trimmed.to_owned(),
            });
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| PeriodError::OutOfRange {
        text: trimmed.to_owned(),
        min: Duration::ZERO,
        max: Duration::MAX,
    })
}

/// Parses a period ([`parse`]) and checks that it lies within `bounds`.
///
/// ```
/// use std::time::Duration;
/// use telestion_rules::period::parse_within;
/// let bounds = Duration::from_millis(1)..=Duration::from_secs(3600);
/// assert_eq!(parse_within("2s", bounds.clone()), Ok(Duration::from_secs(2)));
/// assert!(parse_within("0ms", bounds.clone()).is_err());
/// assert!(parse_within("2h", bounds).is_err());
/// ```
pub fn parse_within(text: &str, bounds: RangeInclusive<Duration>) -> Result<Duration, PeriodError> {
    let period = parse(text)?;
    if bounds.contains(&period) {
        Ok(period)
    } else {
        Err(PeriodError::OutOfRange {
            text: text.trim().to_owned(),
            min: *bounds.start(),
            max: *bounds.end(),
        })
    }
}

/// The bounds of a timer's period (`every = "..."`, `every_config`) and a
/// batch window: more than 0 (1 ns), at most 30 days.
pub const TIMER_BOUNDS: RangeInclusive<Duration> =
    Duration::from_nanos(1)..=Duration::from_secs(30 * 86_400);

/// How [`parse_setting`] reads a number without a unit (`"5"`): refused,
/// or in the unit the key has always used (`TELECOMMAND_TIMEOUT=5` is five
/// seconds, `WEB_REQUEST_TIMEOUT_MS=1500` is 1500 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareNumber {
    /// A number needs a unit.
    Refused,
    /// A bare number is seconds.
    Seconds,
    /// A bare number is milliseconds.
    Milliseconds,
}

/// Why the value of a duration setting (a configuration key) is refused:
/// the key, the bounds and what is wrong with the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The configuration key.
    pub key: String,
    /// What is wrong with its text.
    pub error: PeriodError,
    /// The smallest allowed value.
    pub min: Duration,
    /// The largest allowed value.
    pub max: Duration,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {}: {}", self.key, self.error)?;
        if !matches!(self.error, PeriodError::OutOfRange { .. }) {
            write!(f, " (from {} to {})", show(self.min), show(self.max))?;
        }
        Ok(())
    }
}

impl std::error::Error for SettingError {}

/// Parses the value of the duration setting `key`: a period ([`parse`]:
/// `"500ms"`, `"2s"`, `"5m"`), or a bare number in the key's unit when
/// `bare` allows one, that must lie within `bounds`. The one rule for every
/// duration key: the error names the key and, for a value out of range,
/// the bounds, so `0ms`, `2h` or `999999999999999h` for a key bounded to
/// `100ms..=1h` all fail the same way.
///
/// ```
/// use std::time::Duration;
/// use telestion_rules::period::{BareNumber, parse_setting};
/// let bounds = Duration::from_millis(100)..=Duration::from_secs(3600);
/// let timeout = |text| parse_setting("TIMEOUT", text, BareNumber::Seconds, bounds.clone());
/// assert_eq!(timeout("2s"), Ok(Duration::from_secs(2)));
/// assert_eq!(timeout("1.5"), Ok(Duration::from_millis(1500)));
/// let error = timeout("0ms").unwrap_err().to_string();
/// assert_eq!(error, "key TIMEOUT: `0ms` is out of range: it must be at least 100ms and at most 1h");
/// assert!(timeout("3601").is_err());
/// assert!(timeout("999999999999999h").is_err());
/// ```
pub fn parse_setting(
    key: &str,
    text: &str,
    bare: BareNumber,
    bounds: RangeInclusive<Duration>,
) -> Result<Duration, SettingError> {
    let trimmed = text.trim();
    let is_number = !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let parsed = match (is_number, bare) {
        (true, BareNumber::Seconds) => parse(&format!("{trimmed}s")),
        (true, BareNumber::Milliseconds) => parse(&format!("{trimmed}ms")),
        _ => parse(trimmed),
    };
    let (min, max) = (*bounds.start(), *bounds.end());
    let error = |error| SettingError {
        key: key.to_owned(),
        error,
        min,
        max,
    };
    let out_of_range = || {
        error(PeriodError::OutOfRange {
            text: trimmed.to_owned(),
            min,
            max,
        })
    };
    match parsed {
        Ok(duration) if bounds.contains(&duration) => Ok(duration),
        Ok(_) | Err(PeriodError::OutOfRange { .. }) => Err(out_of_range()),
        Err(other) => Err(error(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("0.5ms"), Ok(Duration::from_micros(500)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn errors_say_what_to_write() {
        for (text, needle) in [
            ("10", "no unit"),
            ("ms", "does not start with a number"),
            ("1.2.3s", "does not start with a number"),
            ("5d", "unknown unit `d`"),
            ("9999999999999999999999h", "out of range"),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn bounds() {
        assert!(parse_within("0s", TIMER_BOUNDS).is_err());
        assert!(parse_within("721h", TIMER_BOUNDS).is_err());
        let error = parse_within("999999999999h", TIMER_BOUNDS)
            .unwrap_err()
            .to_string();
        assert!(error.contains("at most 720h"), "{error}");
    }

    #[test]
    fn settings_name_the_key_and_the_bounds() {
        let bounds = Duration::from_millis(100)..=Duration::from_secs(3600);
        let seconds = |text| parse_setting("T", text, BareNumber::Seconds, bounds.clone());
        for bad in [
            "0ms",
            "0",
            "2h",
            "3601",
            "999999999999999h",
            "99999999999999999999999",
        ] {
            let error = seconds(bad).unwrap_err().to_string();
            assert!(
                error.starts_with("key T: ") && error.contains("at least 100ms and at most 1h"),
                "{bad}: {error}"
            );
        }
        assert_eq!(seconds("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(seconds(" 0.5 "), Ok(Duration::from_millis(500)));
        let error = seconds("soon").unwrap_err().to_string();
        assert!(
            error.contains("does not start with a number") && error.contains("from 100ms to 1h"),
            "{error}"
        );
        let ms = |text| parse_setting("T_MS", text, BareNumber::Milliseconds, bounds.clone());
        assert_eq!(ms("1500"), Ok(Duration::from_millis(1500)));
        assert_eq!(ms("2s"), Ok(Duration::from_secs(2)));
        let refused = parse_setting("P", "5", BareNumber::Refused, bounds.clone());
        assert!(refused.unwrap_err().to_string().contains("has no unit"));
    }
}
