//! The data-logging protocol of the Standard Operations service: a message
//! on `__telestion__/log/<category>` (the spec's subject) or
//! `__telestion__.log.<category>` (Telestion's Deno library) is appended to
//! `logs/<category>.log` in the shared data directory.
//!
//! This module holds the protocol both sides share: the subjects and the
//! category rule. Any service logs with
//! [`Service::log_data`](crate::Service::log_data); the `standard_ops` app
//! writes the files.
//!
//! ```
//! use telestion::data_log::{category_of, valid_category};
//! assert_eq!(category_of("__telestion__/log/temperature"), Some("temperature"));
//! assert!(valid_category("temperature"));
//! assert!(!valid_category("../etc"));
//! ```

use crate::error::ServiceError;

/// Subject prefix of the spec (the category follows; one NATS token).
pub const PREFIX: &str = "__telestion__/log/";
/// Subject prefix used by Telestion's Deno library.
pub const PREFIX_DOTTED: &str = "__telestion__.log.";

/// Whether `category` is acceptable: `^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$`.
/// Rejects empty and hidden names, `..`, and anything with `/`.
pub fn valid_category(category: &str) -> bool {
    let bytes = category.as_bytes();
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    !bytes.is_empty()
        && bytes.len() <= 128
        && allowed(bytes[0])
        && bytes[1..].iter().all(|&b| allowed(b) || b == b'.')
}

/// [`valid_category`] as a result, with an error that states the rule.
pub fn check_category(category: &str) -> Result<(), ServiceError> {
    if valid_category(category) {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "invalid log category {:?}: it must match ^[A-Za-z0-9_-][A-Za-z0-9._-]{{0,127}}$",
            shorten(category)
        )))
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(140).collect()
}

/// The category of a data-log subject (not validated), or `None` when the
/// subject is not a data-log subject.
pub fn category_of(subject: &str) -> Option<&str> {
    subject
        .strip_prefix(PREFIX)
        .or_else(|| subject.strip_prefix(PREFIX_DOTTED))
}

/// The subject to log under `category`, after checking the category: the
/// spec's slash form, which is one NATS token, or, when the category
/// contains a dot (which would split it into tokens no wildcard of the
/// Standard Operations service matches), the dotted form.
///
/// ```
/// use telestion::data_log::subject_for;
/// assert_eq!(subject_for("temperature").unwrap(), "__telestion__/log/temperature");
/// assert_eq!(subject_for("team.readings").unwrap(), "__telestion__.log.team.readings");
/// assert!(subject_for("../etc").is_err());
/// ```
pub fn subject_for(category: &str) -> Result<String, ServiceError> {
    check_category(category)?;
    Ok(if category.contains('.') {
        format!("{PREFIX_DOTTED}{category}")
    } else {
        format!("{PREFIX}{category}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        for ok in ["a", "A-1_b.c", "_x", "-", "a..b"] {
            assert!(valid_category(ok), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in ["", ".x", "..", "../x", "a/b", "a b", "ä", long.as_str()] {
            assert!(!valid_category(bad), "{bad}");
        }
        assert!(valid_category(&"a".repeat(128)));
    }
}
