//! JetStream streams: what a service declares ([`StreamSpec`], created or
//! updated at start) or binds by name, and finding the stream that
//! captures a durable handler's subject. Below `durable` (the durable route
//! loop) and `durable_publish`; above the service handle.

use std::time::Duration;

use async_nats::jetstream::{self, context::GetStreamErrorKind, stream};

use crate::config::Config;
use crate::error::{BoxError, StartError};
use crate::service::Service;

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StreamStorage {
    /// On disk: survives a server restart (default).
    #[default]
    File,
    /// In memory: lost when the server (or, in a cluster, every replica)
    /// restarts.
    Memory,
}

/// When a stream removes a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StreamRetention {
    /// Keep messages until a limit (count, bytes, age) removes them
    /// (default): other consumers (archives, replays) can read them too.
    #[default]
    Limits,
    /// Remove a message once a consumer acknowledged it: a work queue of
    /// commands. Each subject may be consumed by one consumer only.
    WorkQueue,
    /// Remove a message once every consumer that existed when it arrived
    /// acknowledged it.
    Interest,
}

/// How many servers keep a copy of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Replicas {
    Fixed(usize),
    FromKey { key: String, default: usize },
}

/// A JetStream stream a service needs: created at start when missing,
/// updated when its subjects, limits or replicas differ, refused (failing
/// the start with an error naming the stream) when its storage or
/// retention differ, which a stream cannot change.
///
/// Only what is set here is compared and updated; other settings of an
/// existing stream (made by an operator, say) are kept.
///
/// ```no_run
/// use std::time::Duration;
/// use telestion::{StreamRetention, StreamSpec};
///
/// # async fn example(service: telestion::Service) -> Result<(), telestion::StartError> {
/// service
///     .declare_stream(
///         StreamSpec::new("COMMANDS")
///             .subjects(["cmd.>"])
///             .retention(StreamRetention::WorkQueue)
///             .max_age(Duration::from_secs(7 * 24 * 3600))
///             .replicas_from_key("COMMANDS_REPLICAS"),
///     )
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    name: String,
    subjects: Vec<String>,
    storage: StreamStorage,
    retention: StreamRetention,
    max_messages: Option<i64>,
    max_bytes: Option<i64>,
    max_age: Option<Duration>,
    duplicate_window: Option<Duration>,
    replicas: Option<Replicas>,
}

impl StreamSpec {
    /// A stream named `name` (letters, digits, `-` and `_`), file storage,
    /// limits retention, no limits, one replica.
    pub fn new(name: impl Into<String>) -> StreamSpec {
        StreamSpec {
            name: name.into(),
            subjects: Vec::new(),
            storage: StreamStorage::File,
            retention: StreamRetention::Limits,
            max_messages: None,
            max_bytes: None,
            max_age: None,
            duplicate_window: None,
            replicas: None,
        }
    }

    /// The subjects it captures (wildcards allowed); default: the name.
    pub fn subjects<I, S>(mut self, subjects: I) -> StreamSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subjects = subjects.into_iter().map(Into::into).collect();
        self
    }

    /// File (default) or memory storage.
    pub fn storage(mut self, storage: StreamStorage) -> StreamSpec {
        self.storage = storage;
        self
    }

    /// Limits (default), work-queue or interest retention.
    pub fn retention(mut self, retention: StreamRetention) -> StreamSpec {
        self.retention = retention;
        self
    }

    /// Keep at most `n` messages (the oldest are removed).
    pub fn max_messages(mut self, n: i64) -> StreamSpec {
        self.max_messages = Some(n);
        self
    }

    /// Keep at most `n` bytes (the oldest messages are removed).
    pub fn max_bytes(mut self, n: i64) -> StreamSpec {
        self.max_bytes = Some(n);
        self
    }

    /// Remove messages older than `age`.
    pub fn max_age(mut self, age: Duration) -> StreamSpec {
        self.max_age = Some(age);
        self
    }

    /// How long the stream remembers message ids (`Nats-Msg-Id`) to store
    /// a retried durable publish once (server default: 2 minutes).
    pub fn duplicate_window(mut self, window: Duration) -> StreamSpec {
        self.duplicate_window = Some(window);
        self
    }

    /// `n` copies on `n` servers of a JetStream cluster (1, 3 or 5).
    pub fn replicas(mut self, n: usize) -> StreamSpec {
        self.replicas = Some(Replicas::Fixed(n.max(1)));
        self
    }

    /// The number of replicas from config key `key` (default 1 when it is
    /// not set): one setting for a single server in development and three
    /// in production.
    pub fn replicas_from_key(mut self, key: impl Into<String>) -> StreamSpec {
        self.replicas = Some(Replicas::FromKey {
            key: key.into(),
            default: 1,
        });
        self
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn error(&self, reason: impl Into<String>, source: Option<BoxError>) -> StartError {
        StartError::Stream {
            stream: self.name.clone(),
            reason: reason.into(),
            source,
        }
    }

    fn resolved_replicas(&self, config: &Config) -> Result<Option<usize>, StartError> {
        match &self.replicas {
            None => Ok(None),
            Some(Replicas::Fixed(n)) => Ok(Some(*n)),
            Some(Replicas::FromKey { key, default }) => {
                let n = config.get::<usize>(key)?.unwrap_or(*default);
                if n == 0 || n > 5 {
                    return Err(self.error(
                        format!("key {key}: the number of replicas must be 1 to 5, not {n}"),
                        None,
                    ));
                }
                Ok(Some(n))
            }
        }
    }

    fn subjects_or_name(&self) -> Vec<String> {
        if self.subjects.is_empty() {
            vec![self.name.clone()]
        } else {
            self.subjects.clone()
        }
    }

    /// The configuration of a new stream.
    fn new_config(&self, replicas: Option<usize>) -> stream::Config {
        let mut config = stream::Config {
            name: self.name.clone(),
            subjects: self.subjects_or_name(),
            storage: storage_type(self.storage),
            retention: retention_policy(self.retention),
            num_replicas: replicas.unwrap_or(1),
            ..Default::default()
        };
        config.max_messages = self.max_messages.unwrap_or(-1);
        config.max_bytes = self.max_bytes.unwrap_or(-1);
        if let Some(age) = self.max_age {
            config.max_age = age;
        }
        if let Some(window) = self.duplicate_window {
            config.duplicate_window = window;
        }
        config
    }

    /// The settings this spec sets that differ in `existing`, each as
    /// `setting: existing → declared`, and the existing configuration with
    /// them replaced.
    fn differences(
        &self,
        existing: &stream::Config,
        replicas: Option<usize>,
    ) -> (Vec<String>, stream::Config) {
        let mut changes = Vec::new();
        let mut updated = existing.clone();
        let mut wanted: Vec<String> = self.subjects_or_name();
        let mut have = existing.subjects.clone();
        wanted.sort();
        have.sort();
        if wanted != have {
            changes.push(format!("subjects: {have:?} → {wanted:?}"));
            updated.subjects = self.subjects_or_name();
        }
        let limits = [
            ("max_messages", self.max_messages, existing.max_messages),
            ("max_bytes", self.max_bytes, existing.max_bytes),
        ];
        for (setting, want, have) in limits {
            if let Some(want) = want
                && want != have
            {
                changes.push(format!("{setting}: {have} → {want}"));
            }
        }
        if let Some(n) = self.max_messages {
            updated.max_messages = n;
        }
        if let Some(n) = self.max_bytes {
            updated.max_bytes = n;
        }
        if let Some(age) = self.max_age
            && age != existing.max_age
        {
            changes.push(format!("max_age: {:?} → {age:?}", existing.max_age));
            updated.max_age = age;
        }
        if let Some(window) = self.duplicate_window
            && window != existing.duplicate_window
        {
            changes.push(format!(
                "duplicate_window: {:?} → {window:?}",
                existing.duplicate_window
            ));
            updated.duplicate_window = window;
        }
        if let Some(n) = replicas
            && n != existing.num_replicas.max(1)
        {
            changes.push(format!("replicas: {} → {n}", existing.num_replicas));
            updated.num_replicas = n;
        }
        (changes, updated)
    }
}

fn storage_type(storage: StreamStorage) -> stream::StorageType {
    match storage {
        StreamStorage::File => stream::StorageType::File,
        StreamStorage::Memory => stream::StorageType::Memory,
    }
}

fn retention_policy(retention: StreamRetention) -> stream::RetentionPolicy {
    match retention {
        StreamRetention::Limits => stream::RetentionPolicy::Limits,
        StreamRetention::WorkQueue => stream::RetentionPolicy::WorkQueue,
        StreamRetention::Interest => stream::RetentionPolicy::Interest,
    }
}

/// How long start-up waits for a JetStream cluster that is electing its
/// leaders ("temporarily unavailable") before it gives up.
const UNAVAILABLE_PATIENCE: Duration = Duration::from_secs(15);

/// The JetStream context of the service's client.
pub(crate) fn context(service: &Service) -> Option<jetstream::Context> {
    service
        .client()
        .map(|client| jetstream::new(client.clone()))
}

/// Whether a JetStream API error means "try again soon" (a cluster
/// electing a leader, a request lost in a fail-over), not "JetStream is
/// off".
pub(crate) fn transient(error: &async_nats::jetstream::Error) -> bool {
    let off = [
        jetstream::ErrorCode::JETSTREAM_NOT_ENABLED,
        jetstream::ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT,
    ];
    (error.code() == 503 || error.code() == 408) && !off.contains(&error.error_code())
}

/// Whether a failed request found nobody listening: JetStream is not
/// enabled on the server at all.
pub(crate) fn no_responders(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(cause) = source {
        if let Some(request) = cause.downcast_ref::<async_nats::RequestError>()
            && request.kind() == async_nats::RequestErrorKind::NoResponders
        {
            return true;
        }
        if let Some(request) = cause.downcast_ref::<jetstream::context::RequestError>()
            && matches!(
                request.kind(),
                jetstream::context::RequestErrorKind::NoResponders
            )
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Looks up stream `name`: `Ok(None)` when the server says it does not
/// exist. Retries while a cluster is electing its leaders.
pub(crate) async fn lookup(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<stream::Stream>, StartError> {
    let give_up = tokio::time::Instant::now() + UNAVAILABLE_PATIENCE;
    loop {
        let error = match js.get_stream(name).await {
            Ok(stream) => return Ok(Some(stream)),
            Err(error) => error,
        };
        let retry = match error.kind() {
            GetStreamErrorKind::JetStream(e)
                if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                return Ok(None);
            }
            GetStreamErrorKind::JetStream(e) => transient(&e),
            GetStreamErrorKind::Request => !no_responders(&error),
            _ => false,
        };
        if !retry || tokio::time::Instant::now() >= give_up {
            let reason = if no_responders(&error) {
                "cannot look it up: JetStream is not enabled on the NATS server; start it with \
                 `nats-server -js` or a `jetstream {}` block in its config"
            } else {
                "cannot look it up; is JetStream enabled on the NATS server (`nats-server -js`, \
                 or `jetstream {}` in its config)?"
            };
            return Err(StartError::Stream {
                stream: name.to_owned(),
                reason: reason.into(),
                source: Some(Box::new(error)),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether `filter` (a subject with wildcards) only matches subjects that
/// `pattern` matches too.
pub(crate) fn covers(pattern: &str, filter: &str) -> bool {
    let mut pattern = pattern.split('.');
    let mut filter = filter.split('.');
    loop {
        match (pattern.next(), filter.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(f)) => {
                if f == ">" {
                    return false;
                }
            }
            (Some(p), Some(f)) => {
                if p != f {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Service {
    /// Makes sure the stream `spec` describes exists: creates it when it
    /// is missing, updates its subjects, limits and replicas when they
    /// differ, and fails (naming the stream and the setting) when its
    /// storage or retention differ or JetStream is unavailable. Call it in
    /// start-up code, before durable handlers are subscribed. Instances
    /// that start at once may both create it: the same configuration is
    /// accepted twice.
    ///
    /// ```no_run
    /// use telestion::StreamSpec;
    ///
    /// #[telestion::service]
    /// async fn main(service: telestion::Service) -> Result<(), telestion::StartError> {
    ///     service
    ///         .declare_stream(StreamSpec::new("COMMANDS").subjects(["cmd.>"]))
    ///         .await
    /// }
    /// ```
    pub async fn declare_stream(&self, spec: StreamSpec) -> Result<(), StartError> {
        let js = context(self).ok_or_else(|| {
            spec.error(
                "streams need NATS, but the service runs in no-NATS mode",
                None,
            )
        })?;
        let replicas = spec.resolved_replicas(self.config())?;
        let give_up = tokio::time::Instant::now() + UNAVAILABLE_PATIENCE;
        loop {
            let Some(mut existing) = lookup(&js, &spec.name).await? else {
                match js.create_stream(spec.new_config(replicas)).await {
                    Ok(_) => {
                        tracing::info!(stream = %spec.name, "created stream");
                        return Ok(());
                    }
                    Err(error) => {
                        // Another instance may have created it meanwhile,
                        // or the cluster is still electing: look again.
                        if tokio::time::Instant::now() < give_up {
                            tracing::debug!(stream = %spec.name, %error, "cannot create stream yet");
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            continue;
                        }
                        return Err(spec.error("cannot create it", Some(Box::new(error))));
                    }
                }
            };
            let info = existing
                .info()
                .await
                .map_err(|e| spec.error("cannot read its configuration", Some(Box::new(e))))?;
            let config = &info.config;
            let want_storage = storage_type(spec.storage);
            if config.storage != want_storage {
                return Err(spec.error(
                    format!(
                        "it exists with {:?} storage, but the service declares {:?}; a stream \
                         cannot change its storage: declare {:?}, or delete and recreate the \
                         stream (`nats stream rm {}`)",
                        config.storage, want_storage, config.storage, spec.name
                    ),
                    None,
                ));
            }
            let want_retention = retention_policy(spec.retention);
            if config.retention != want_retention {
                return Err(spec.error(
                    format!(
                        "it exists with {:?} retention, but the service declares {:?}; a \
                         stream cannot change its retention: declare {:?}, or delete and \
                         recreate the stream (`nats stream rm {}`)",
                        config.retention, want_retention, config.retention, spec.name
                    ),
                    None,
                ));
            }
            let (changes, updated) = spec.differences(config, replicas);
            if changes.is_empty() {
                tracing::debug!(stream = %spec.name, "stream exists as declared");
                return Ok(());
            }
            return match js.update_stream(updated).await {
                Ok(_) => {
                    tracing::info!(stream = %spec.name, changes = %changes.join(", "), "updated stream");
                    Ok(())
                }
                Err(error) => Err(spec.error(
                    format!(
                        "it exists with other settings ({}) and the server refused the update",
                        changes.join(", ")
                    ),
                    Some(Box::new(error)),
                )),
            };
        }
    }

    /// Checks that stream `name` exists (made by an operator or another
    /// service), failing the start with an error naming it otherwise. Call
    /// it in start-up code.
    ///
    /// ```no_run
    /// # async fn example(service: telestion::Service) -> Result<(), telestion::StartError> {
    /// service.bind_stream("COMMANDS").await?;
    /// # Ok(()) }
    /// ```
    pub async fn bind_stream(&self, name: &str) -> Result<(), StartError> {
        let js = context(self).ok_or_else(|| StartError::Stream {
            stream: name.to_owned(),
            reason: "streams need NATS, but the service runs in no-NATS mode".into(),
            source: None,
        })?;
        match lookup(&js, name).await? {
            Some(_) => Ok(()),
            None => Err(StartError::Stream {
                stream: name.to_owned(),
                reason: "it does not exist; create it (`nats stream add`) or declare it in \
                         start-up code with `service.declare_stream(StreamSpec::new(..))`"
                    .into(),
                source: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_coverage() {
        assert!(covers("cmd.>", "cmd.>"));
        assert!(covers("cmd.>", "cmd.a.b"));
        assert!(covers("cmd.*", "cmd.a"));
        assert!(covers("cmd.*", "cmd.*"));
        assert!(!covers("cmd.*", "cmd.>"));
        assert!(!covers("cmd.*", "cmd.a.b"));
        assert!(!covers("cmd.a", "cmd.*"));
        assert!(covers(">", "anything.at.all"));
        assert!(!covers("cmd.>", "cmd"));
    }

    #[test]
    fn differences_name_each_setting() {
        let spec = StreamSpec::new("S").subjects(["a.>"]).max_messages(10);
        let existing = spec.new_config(Some(1));
        assert!(spec.differences(&existing, Some(1)).0.is_empty());
        let other = StreamSpec::new("S").subjects(["b.>"]).max_messages(20);
        let (changes, updated) = other.differences(&existing, Some(3));
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert_eq!(updated.subjects, ["b.>"]);
        assert_eq!(updated.max_messages, 20);
        assert_eq!(updated.num_replicas, 3);
    }
}
