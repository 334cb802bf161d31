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
    if subject.is_empty() {
        return Err("the subject is empty".into());
    }
    if subject.chars().any(char::is_whitespace) {
        return Err("it contains whitespace".into());
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.iter().any(|t| t.is_empty()) {
        return Err("it has an empty token (leading, trailing or double `.`)".into());
    }
    if let Some(pos) = tokens.iter().position(|t| *t == ">")
        && pos + 1 != tokens.len()
    {
        return Err("`>` must be the last token".into());
    }
    Ok(())
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
