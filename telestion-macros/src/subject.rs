//! Compile-time validation of subject literals. Mirrors
//! `telestion::validate_subject` (which checks subjects from
//! config at start), so a literal that compiles never fails the start.

/// Checks a subject literal: not empty, no whitespace, no empty token,
/// `>` only as the last token. The error says what to write instead.
pub(crate) fn validate(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err(
            "the subject is empty; write a subject such as `\"sensors.temperature\"`, or \
             `config = \"KEY\"` to read it from config"
                .into(),
        );
    }
    if subject.chars().any(char::is_whitespace) {
        return Err(format!(
            "the subject `{subject}` contains whitespace, which NATS does not allow; write \
             its tokens separated by `.` without spaces, e.g. `\"{}\"`",
            subject.split_whitespace().collect::<Vec<_>>().join(".")
        ));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.iter().any(|t| t.is_empty()) {
        let fixed = tokens
            .iter()
            .filter(|t| !t.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(".");
        return Err(format!(
            "the subject `{subject}` has an empty token (leading, trailing or double `.`); \
             write `\"{fixed}\"`"
        ));
    }
    if let Some(pos) = tokens.iter().position(|t| *t == ">")
        && pos + 1 != tokens.len()
    {
        let prefix = tokens[..pos].join(".");
        let suggestion = if prefix.is_empty() {
            "\">\"".to_owned()
        } else {
            format!("\"{prefix}.>\"")
        };
        return Err(format!(
            "in the subject `{subject}`, `>` matches all remaining tokens and must be the last \
             token; write `*` to match a single token, or end the subject there: `{suggestion}`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_valid_subjects() {
        for subject in ["a", "a.b", "a.*.c", "a.>", ">", "*", "__telestion__.health"] {
            assert_eq!(validate(subject), Ok(()), "{subject}");
        }
    }

    #[test]
    fn rejects_invalid_subjects() {
        for (subject, needle) in [
            ("", "empty"),
            ("a b", "whitespace"),
            ("a\tb", "whitespace"),
            (".a", "empty token"),
            ("a.", "empty token"),
            ("a..b", "empty token"),
            ("a.>.b", "last token"),
            (">.a", "last token"),
        ] {
            let error = validate(subject).expect_err(subject);
            assert!(error.contains(needle), "{subject}: {error}");
        }
    }

    /// Every string of up to 5 characters over an alphabet of the
    /// interesting ones: the macro accepts exactly what the runtime accepts.
    #[test]
    fn agrees_with_the_runtime() {
        let alphabet = ['a', '.', '*', '>', ' '];
        let mut subjects = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            subjects.extend(last.iter().cloned());
        }
        for subject in subjects {
            assert_eq!(
                validate(&subject).is_ok(),
                telestion::validate_subject(&subject).is_ok(),
                "{subject:?}"
            );
        }
    }
}
