//! Subjects: what a subject to subscribe to, or to publish to, may be. The
//! error says what to write instead.

use std::fmt;

/// Why a string is not a subject one can subscribe to (or publish to).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectError {
    /// The subject is empty.
    Empty,
    /// It contains whitespace.
    Whitespace {
        /// The subject.
        subject: String,
    },
    /// It has an empty token (leading, trailing or double `.`).
    EmptyToken {
        /// The subject.
        subject: String,
    },
    /// `>` is not its last token.
    GreaterNotLast {
        /// The subject.
        subject: String,
    },
    /// A subject to publish to has a wildcard (`*` or `>`).
    Wildcard {
        /// The subject.
        subject: String,
    },
}

impl fmt::Display for SubjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectError::Empty => {
                write!(
                    f,
                    "the subject is empty; write a subject such as `\"sensors.temperature\"`"
                )
            }
            SubjectError::Whitespace { subject } => write!(
                f,
                "the subject `{subject}` contains whitespace, which NATS does not allow; write its \
                 tokens separated by `.` without spaces, e.g. `\"{}\"`",
                subject.split_whitespace().collect::<Vec<_>>().join(".")
            ),
            SubjectError::EmptyToken { subject } => write!(
                f,
                "the subject `{subject}` has an empty token (leading, trailing or double `.`); \
                 write `\"{}\"`",
                subject
                    .split('.')
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
                    .join(".")
            ),
            SubjectError::GreaterNotLast { subject } => {
                let tokens: Vec<&str> = subject.split('.').collect();
                let position = tokens.iter().position(|t| *t == ">").unwrap_or(0);
                let prefix = tokens[..position].join(".");
                let suggestion = if prefix.is_empty() {
                    "\">\"".to_owned()
                } else {
                    format!("\"{prefix}.>\"")
                };
                write!(
                    f,
                    "in the subject `{subject}`, `>` matches all remaining tokens and must be the \
                     last token; write `*` to match a single token, or end the subject there: \
                     `{suggestion}`"
                )
            }
            SubjectError::Wildcard { subject } => write!(
                f,
                "`{subject}` is a subject to publish to, which cannot contain the wildcards `*` \
                 or `>`; name one subject"
            ),
        }
    }
}

impl std::error::Error for SubjectError {}

/// Checks a subject to subscribe to: not empty, no whitespace, no empty
/// token, `>` only as the last token (wildcards allowed).
///
/// ```
/// use telestion_rules::subject::{SubjectError, validate};
/// assert_eq!(validate("sensors.*.temperature"), Ok(()));
/// assert!(matches!(validate("a..b"), Err(SubjectError::EmptyToken { .. })));
/// ```
pub fn validate(subject: &str) -> Result<(), SubjectError> {
    if subject.is_empty() {
        return Err(SubjectError::Empty);
    }
    if subject.chars().any(char::is_whitespace) {
        return Err(SubjectError::Whitespace {
            subject: subject.to_owned(),
        });
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.iter().any(|t| t.is_empty()) {
        return Err(SubjectError::EmptyToken {
            subject: subject.to_owned(),
        });
    }
    if let Some(position) = tokens.iter().position(|t| *t == ">")
        && position + 1 != tokens.len()
    {
        return Err(SubjectError::GreaterNotLast {
            subject: subject.to_owned(),
        });
    }
    Ok(())
}

/// Checks a subject to publish to: a valid subject without wildcards.
///
/// ```
/// use telestion_rules::subject::validate_publish;
/// assert!(validate_publish("sensors.fahrenheit").is_ok());
/// assert!(validate_publish("sensors.*").is_err());
/// ```
pub fn validate_publish(subject: &str) -> Result<(), SubjectError> {
    validate(subject)?;
    if subject.split('.').any(|token| token == "*" || token == ">") {
        return Err(SubjectError::Wildcard {
            subject: subject.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        for ok in [
            "a",
            "a.b",
            "a.*",
            "a.>",
            ">",
            "*",
            "__telestion__/health",
            "*.x",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for (bad, needle) in [
            ("", "empty"),
            (" a", "whitespace"),
            ("a b", "whitespace"),
            ("a\tb", "whitespace"),
            ("a..b", "empty token"),
            (".a", "empty token"),
            ("a.", "empty token"),
            ("a.>.b", "last token"),
            (">.a", "last token"),
        ] {
            let error = validate(bad).expect_err(bad).to_string();
            assert!(error.contains(needle), "{bad}: {error}");
        }
    }

    #[test]
    fn suggestions() {
        let error = validate("sensors..temperature").unwrap_err().to_string();
        assert!(error.contains("`\"sensors.temperature\"`"), "{error}");
        let error = validate("sensors.>.temperature").unwrap_err().to_string();
        assert!(error.ends_with("`\"sensors.>\"`"), "{error}");
        let error = validate(">.a").unwrap_err().to_string();
        assert!(error.ends_with("`\">\"`"), "{error}");
    }

    #[test]
    fn publish_subjects_have_no_wildcards() {
        assert!(validate_publish("a.b").is_ok());
        for bad in ["a.*", "a.>", ">", "a..b"] {
            assert!(validate_publish(bad).is_err(), "{bad}");
        }
    }
}
