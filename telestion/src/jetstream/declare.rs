//! Declaring and finding streams: `Service::declare_stream` creates or
//! updates a [`StreamSpec`](super::stream::StreamSpec)'s stream at start,
//! `lookup` binds one by name, `covers` tells whether a stream captures a
//! subject; and what a JetStream API error means (try again, or JetStream
//! is off).

use std::time::Duration;

use async_nats::jetstream::{self, context::GetStreamErrorKind, stream};

use super::stream::{StreamSpec, retention_policy, storage_type};
use crate::error::StartError;
use crate::service::Service;

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
