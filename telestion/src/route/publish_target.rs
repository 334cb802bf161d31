//! Publish targets: subjects a route publishes its handler's return value
//! to (besides answering a request), fixed or from config.

use crate::config::Config;

/// A subject a route publishes its handler's return value to (see
/// [`Route::publish_to`](crate::Route::publish_to)): a fixed subject (from
/// a `&str` or `String`) or the value of a config key, with an optional
/// default. Wildcards are not allowed.
///
/// ```
/// use telestion::PublishTarget;
///
/// let fixed: PublishTarget = "sensors.fahrenheit".into();
/// let configured = PublishTarget::config("OUTPUT_SUBJECT").or_default("sensors.out");
/// assert_eq!(configured.config_key(), Some("OUTPUT_SUBJECT"));
/// # let _ = fixed;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishTarget {
    /// A fixed subject.
    Literal(String),
    /// The value of a config key, resolved at start.
    Config {
        /// The config key.
        key: String,
        /// The subject when the key is not set.
        default: Option<String>,
    },
}

impl PublishTarget {
    /// The subject is the value of config key `key` (a missing key fails
    /// the start, unless [`or_default`](PublishTarget::or_default) gives
    /// one).
    ///
    /// ```
    /// let target = telestion::PublishTarget::config("OUTPUT_SUBJECT");
    /// assert_eq!(target.config_key(), Some("OUTPUT_SUBJECT"));
    /// ```
    pub fn config(key: impl Into<String>) -> PublishTarget {
        PublishTarget::Config {
            key: key.into(),
            default: None,
        }
    }

    /// For a config target: the subject when the key is not set. No effect
    /// on a fixed subject.
    ///
    /// ```
    /// let target = telestion::PublishTarget::config("OUT").or_default("a.b");
    /// assert_eq!(target.default_subject(), Some("a.b"));
    /// ```
    pub fn or_default(self, subject: impl Into<String>) -> PublishTarget {
        match self {
            PublishTarget::Config { key, .. } => PublishTarget::Config {
                key,
                default: Some(subject.into()),
            },
            literal => literal,
        }
    }

    /// The config key, for a config target.
    ///
    /// ```
    /// let target: telestion::PublishTarget = "a.b".into();
    /// assert_eq!(target.config_key(), None);
    /// ```
    pub fn config_key(&self) -> Option<&str> {
        match self {
            PublishTarget::Config { key, .. } => Some(key),
            PublishTarget::Literal(_) => None,
        }
    }

    /// The default subject, for a config target that has one.
    ///
    /// ```
    /// let target = telestion::PublishTarget::config("OUT");
    /// assert_eq!(target.default_subject(), None);
    /// ```
    pub fn default_subject(&self) -> Option<&str> {
        match self {
            PublishTarget::Config { default, .. } => default.as_deref(),
            PublishTarget::Literal(_) => None,
        }
    }

    /// The subject for this configuration, checked; the error says why not.
    pub(crate) fn resolve(&self, config: &Config) -> Result<String, String> {
        let subject = match self {
            PublishTarget::Literal(subject) => subject.clone(),
            PublishTarget::Config { key, default } => config
                .get_str(key)
                .filter(|s| !s.is_empty())
                .or_else(|| default.clone())
                .ok_or_else(|| {
                    format!(
                        "its publish target comes from config key {key}, which is not set; set \
                         `{key}=...` in the environment or pass `--{key}=...`"
                    )
                })?,
        };
        validate_publish_subject(&subject).map_err(|reason| match self {
            PublishTarget::Config { key, .. } => format!(
                "config key {key} = `{subject}` is not a subject one can publish to: {reason}"
            ),
            PublishTarget::Literal(_) => {
                format!("publish target `{subject}` is not valid: {reason}")
            }
        })?;
        Ok(subject)
    }
}

impl From<&str> for PublishTarget {
    fn from(subject: &str) -> PublishTarget {
        PublishTarget::Literal(subject.to_owned())
    }
}

impl From<String> for PublishTarget {
    fn from(subject: String) -> PublishTarget {
        PublishTarget::Literal(subject)
    }
}

/// A subject to publish to: a valid subject without wildcards.
fn validate_publish_subject(subject: &str) -> Result<(), String> {
    telestion_rules::subject::validate_publish(subject).map_err(|error| error.to_string())
}
