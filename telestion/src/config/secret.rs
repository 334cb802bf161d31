//! Which configuration keys hold secrets, and how a secret is shown.

/// What a secret value is shown as in `Debug` output, logs and echoes.
pub const REDACTED: &str = "[redacted]";

/// Whether a key holds a secret that must never be printed: `NATS_PASSWORD`
/// and every key containing `PASSWORD`, `SECRET`, `TOKEN`, `SEED` or `NKEY`
/// (case-insensitive).
///
/// ```
/// assert!(telestion::is_secret_key("NATS_PASSWORD"));
/// assert!(telestion::is_secret_key("api_token"));
/// assert!(!telestion::is_secret_key("NATS_URL"));
/// ```
pub fn is_secret_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "SEED", "NKEY"]
        .iter()
        .any(|needle| upper.contains(needle))
}
