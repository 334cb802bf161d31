//! The public face of the shared rules (`telestion-rules`): checking a
//! subject, parsing a period.

/// Checks a subject for subscribing: not empty, no whitespace, no empty
/// token, `>` only as the last token. The runtime applies it to every
/// route when it subscribes (`#[subscribe]` applies the same rule at compile
/// time); use it to check subjects read from configuration early.
///
/// ```
/// assert!(telestion::validate_subject("sensors.*.temperature").is_ok());
/// assert!(telestion::validate_subject("a..b").is_err());
/// ```
pub fn validate_subject(subject: &str) -> Result<(), String> {
    telestion_rules::subject::validate(subject).map_err(|error| error.to_string())
}

/// Parses a period such as `100ms`, `2s`, `1.5s`, `5m` or `1h` (a number
/// and a unit: `ms`, `s`, `m` or `h`), the rule of `every = "..."` in
/// `#[subscribe]` and of every period from configuration.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(telestion::parse_period("100ms"), Ok(Duration::from_millis(100)));
/// assert_eq!(telestion::parse_period("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(telestion::parse_period("fast").is_err());
/// ```
pub fn parse_period(text: &str) -> Result<std::time::Duration, String> {
    telestion_rules::period::parse(text).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        for ok in ["a", "a.b", "a.*", "a.>", ">", "__telestion__/health", "*.x"] {
            assert!(validate_subject(ok).is_ok(), "{ok}");
        }
        for bad in ["", " a", "a b", "a..b", ".a", "a.", "a.>.b", ">.a"] {
            assert!(validate_subject(bad).is_err(), "{bad}");
        }
    }
}
