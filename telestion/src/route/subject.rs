//! Subject rules for subscribing.

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
