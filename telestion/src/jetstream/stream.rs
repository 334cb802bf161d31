//! JetStream streams a service needs: [`StreamSpec`], what a stream should
//! be (subjects, storage, retention, limits, replicas); `declare` creates or
//! updates it at start.

use std::time::Duration;

use async_nats::jetstream::stream;

use crate::config::Config;
use crate::error::{BoxError, StartError};

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
pub(crate) enum Replicas {
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
    pub(crate) name: String,
    pub(crate) subjects: Vec<String>,
    pub(crate) storage: StreamStorage,
    pub(crate) retention: StreamRetention,
    pub(crate) max_messages: Option<i64>,
    pub(crate) max_bytes: Option<i64>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) duplicate_window: Option<Duration>,
    pub(crate) replicas: Option<Replicas>,
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

    pub(crate) fn error(&self, reason: impl Into<String>, source: Option<BoxError>) -> StartError {
        StartError::Stream {
            stream: self.name.clone(),
            reason: reason.into(),
            source,
        }
    }

    pub(crate) fn resolved_replicas(&self, config: &Config) -> Result<Option<usize>, StartError> {
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

    pub(crate) fn subjects_or_name(&self) -> Vec<String> {
        if self.subjects.is_empty() {
            vec![self.name.clone()]
        } else {
            self.subjects.clone()
        }
    }

    /// The configuration of a new stream.
    pub(crate) fn new_config(&self, replicas: Option<usize>) -> stream::Config {
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
    pub(crate) fn differences(
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

pub(crate) fn storage_type(storage: StreamStorage) -> stream::StorageType {
    match storage {
        StreamStorage::File => stream::StorageType::File,
        StreamStorage::Memory => stream::StorageType::Memory,
    }
}

pub(crate) fn retention_policy(retention: StreamRetention) -> stream::RetentionPolicy {
    match retention {
        StreamRetention::Limits => stream::RetentionPolicy::Limits,
        StreamRetention::WorkQueue => stream::RetentionPolicy::WorkQueue,
        StreamRetention::Interest => stream::RetentionPolicy::Interest,
    }
}
