//! Names: JetStream streams and consumers, queue groups, config keys.

/// Whether `name` can name a JetStream stream or consumer: not empty, no
/// `.`, `*`, `>`, `/`, `\`, whitespace or control characters.
///
/// ```
/// use telestion_rules::names::is_stream_or_consumer_name;
/// assert!(is_stream_or_consumer_name("COMMANDS"));
/// assert!(!is_stream_or_consumer_name("a.b"));
/// ```
pub fn is_stream_or_consumer_name(name: &str) -> bool {
    !name.is_empty()
        && !name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        })
}

/// What a stream or consumer name may not contain, for error messages.
pub const STREAM_OR_CONSUMER_NAME_RULE: &str = "without `.`, `*`, `>`, `/`, `\\` or whitespace";

/// Whether `name` can name a queue group: not empty, no whitespace.
///
/// ```
/// assert!(telestion_rules::names::is_queue_group("workers"));
/// assert!(!telestion_rules::names::is_queue_group("two words"));
/// ```
pub fn is_queue_group(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace)
}

/// Whether `key` can be a config key: not empty, no whitespace.
///
/// ```
/// assert!(telestion_rules::names::is_config_key("INPUT_SUBJECT"));
/// assert!(!telestion_rules::names::is_config_key(""));
/// ```
pub fn is_config_key(key: &str) -> bool {
    !key.is_empty() && !key.chars().any(char::is_whitespace)
}
