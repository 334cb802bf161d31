//! Typed access to the merged configuration: one key ([`Config::get`]) or
//! the whole map as a serde struct ([`Config::typed`], through [`envy`]: a
//! field `my_number: u32` reads the key `MY_NUMBER`, strings are coerced to
//! numbers and booleans, errors name the key).
//!
//! A secret key's value never appears in an error: the message for a
//! secret key is built without the decoder's text (which may quote it).

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Config, value_to_string};
use crate::config::secret::{REDACTED, is_secret_key};
use crate::error::ConfigError;

impl Config {
    /// Decodes one key into `T`: the JSON value itself, or, for strings, the
    /// string parsed as JSON (so `"5"` gives `5u32`) or taken as a string.
    /// `Ok(None)` when the key is missing.
    ///
    /// ```
    /// let config = telestion::Config::from_pairs([("PORT", "x")]);
    /// let error = config.get::<u16>("PORT").unwrap_err().to_string();
    /// assert!(error.contains("PORT"));
    /// ```
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        self.check_utf8(&[key])?;
        let Some(value) = self.values.get(key) else {
            return Ok(None);
        };
        let first = serde_json::from_value::<T>(value.clone());
        let result = match (first, value) {
            (Ok(v), _) => Ok(v),
            (Err(e), Value::String(s)) => serde_json::from_str::<T>(s).map_err(|_| e),
            (Err(e), _) => Err(e),
        };
        result.map(Some).map_err(|e| ConfigError::Invalid {
            key: Some(key.to_owned()),
            message: if is_secret_key(key) {
                format!("key {key}: cannot decode the value ({REDACTED})")
            } else {
                format!("key {key}: {e}")
            },
        })
    }

    /// Decodes the whole merged configuration into a serde struct whose
    /// fields are the lower-case keys (`my_number` reads `MY_NUMBER`).
    /// Strings are coerced to numbers and booleans; other file values are
    /// passed as their JSON text. Errors name the key.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Settings {
    ///     frequency: u64,
    /// }
    /// let config = telestion::Config::from_pairs([("FREQUENCY", "500")]);
    /// assert_eq!(config.typed::<Settings>().unwrap().frequency, 500);
    /// ```
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let pairs = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), value_to_string(v)));
        envy::from_iter::<_, T>(pairs).map_err(|e| self.envy_error(e))
    }

    fn envy_error(&self, error: envy::Error) -> ConfigError {
        match error {
            envy::Error::MissingValue(field) => {
                let key = field.to_ascii_uppercase();
                if self.not_utf8.contains(&key) {
                    return self.not_utf8_error(&key);
                }
                ConfigError::Invalid {
                    message: format!(
                        "missing key {key}; set it as environment variable `{key}=...` or \
                         pass `--{key}=...`"
                    ),
                    key: Some(key),
                }
            }
            envy::Error::Custom(message) => {
                // envy ends its messages with "... provided by <field>".
                let key = message
                    .rfind(" provided by ")
                    .map(|pos| message[pos + " provided by ".len()..].to_ascii_uppercase());
                let message = match &key {
                    Some(key) if is_secret_key(key) => {
                        format!("key {key}: cannot decode the value ({REDACTED})")
                    }
                    Some(key) => {
                        let pos = message.rfind(" provided by ").unwrap_or(message.len());
                        format!("{} provided by {key}", &message[..pos])
                    }
                    // No key named: the text may quote any value, so it is
                    // shown only when no secret is configured.
                    None if self.values.keys().any(|k| is_secret_key(k)) => {
                        format!("cannot decode the configuration ({REDACTED})")
                    }
                    None => message,
                };
                ConfigError::Invalid { key, message }
            }
        }
    }
}
