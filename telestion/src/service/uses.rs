//! What a service does on the bus from its own code (besides its routes),
//! declared once so that its permissions cover it, and the inbox prefix
//! its replies come to. (Here, in `service`, so that starting a service
//! needs nothing from `permissions`; `telestion::permissions` re-exports
//! both.)

/// What a service's own code does on the bus besides its routes: the
/// subjects it publishes to and requests on, the subjects it subscribes
/// to by hand, the JetStream streams and key-value buckets it declares.
/// Set with [`Options`](crate::Options)' builders or the keys of
/// `#[telestion::service(...)]`; [`nats_permissions`](crate::permissions::nats_permissions)
/// turns them, with the routes, into the service's NATS permissions.
///
/// A subject may name a config key: `{KEY}` is the subject in config key
/// `KEY`, `{KEY:default}` the same with a default.
///
/// ```
/// use telestion::Options;
///
/// let options = Options::new()
///     .publishes("device.link")
///     .publishes("{DATA_SUBJECT:data.telemetry.device}")
///     .requests("telemetry.query.*")
///     .streams("TELEMETRY_RAW")
///     .key_value("TELECOMMAND_IDS");
/// # let _ = options;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uses {
    pub(crate) publishes: Vec<String>,
    pub(crate) requests: Vec<String>,
    pub(crate) subscribes: Vec<String>,
    pub(crate) streams: Vec<String>,
    pub(crate) key_values: Vec<String>,
}

impl Uses {
    /// Nothing declared.
    pub fn new() -> Uses {
        Uses::default()
    }

    /// Subjects published to (wildcards allowed: `telecommand.ack.*`).
    pub fn publishes(mut self, subject: impl Into<String>) -> Uses {
        self.publishes.push(subject.into());
        self
    }

    /// Subjects requested on (the reply comes to the service's inbox).
    pub fn requests(mut self, subject: impl Into<String>) -> Uses {
        self.requests.push(subject.into());
        self
    }

    /// Subjects subscribed to by hand (not through a route).
    pub fn subscribes(mut self, subject: impl Into<String>) -> Uses {
        self.subscribes.push(subject.into());
        self
    }

    /// JetStream streams declared with
    /// [`Service::declare_stream`](crate::Service::declare_stream).
    pub fn streams(mut self, name: impl Into<String>) -> Uses {
        self.streams.push(name.into());
        self
    }

    /// JetStream key-value buckets used (created, read and written).
    pub fn key_value(mut self, bucket: impl Into<String>) -> Uses {
        self.key_values.push(bucket.into());
        self
    }
}

/// The inbox prefix of service (or person) `name`: its requests' replies
/// come to `_INBOX.<name>.…`, the only inbox its permissions let it read.
///
/// ```
/// assert_eq!(telestion::permissions::inbox_prefix("parser"), "_INBOX.parser");
/// ```
pub fn inbox_prefix(name: &str) -> String {
    format!("_INBOX.{name}")
}

/// `subject` with a `{KEY}` or `{KEY:default}` form resolved from
/// `config`; `None` when the key is not set and has no default.
pub(crate) fn resolve(subject: &str, config: &crate::Config) -> Option<String> {
    let Some(inner) = subject
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
    else {
        return Some(subject.to_owned());
    };
    let (key, default) = match inner.split_once(':') {
        Some((key, default)) => (key, Some(default)),
        None => (inner, None),
    };
    config
        .get_str(key)
        .filter(|value| !value.is_empty())
        .or_else(|| default.map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_forms() {
        let config = crate::Config::from_pairs([("A", "x.y")]);
        assert_eq!(
            resolve("plain.subject", &config).as_deref(),
            Some("plain.subject")
        );
        assert_eq!(resolve("{A}", &config).as_deref(), Some("x.y"));
        assert_eq!(resolve("{A:z}", &config).as_deref(), Some("x.y"));
        assert_eq!(resolve("{B:z.w}", &config).as_deref(), Some("z.w"));
        assert_eq!(resolve("{B}", &config), None);
    }
}
