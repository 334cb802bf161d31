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
}
