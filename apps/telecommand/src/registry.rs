//! The telecommand ids seen, with their command and outcome: the
//! idempotency record, in the JetStream key-value bucket
//! `TELECOMMAND_IDS` (shared by every instance, kept across restarts).
//!
//! An id is claimed atomically (`create`): the first request with it
//! registers its command; a later one with the same command is a repeat
//! (answered with the recorded outcome, or waiting for it), with another
//! command a conflict (409). Outcomes are recorded from the acks on
//! `telecommand.ack.<id>` (also the late ones, after a request gave up).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use telestion::{Bytes, Service, ServiceError};

/// The bucket's name (its stream is `KV_TELECOMMAND_IDS`).
pub const BUCKET: &str = "TELECOMMAND_IDS";
/// How long an id is remembered: within that time it is never run twice.
pub const ID_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// The bucket's size limit; when full, new ids are refused (503) until old
/// ones expire.
pub const MAX_BYTES: i64 = 64 << 20;

/// What the device said about a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// `confirmed` (the device ran it) or `refused` (it did not).
    pub status: String,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One id's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    command: String,
    args: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
}

/// What a request finds for its id.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// The id is new: send the command.
    New,
    /// The same command was sent with this id before, its outcome unknown
    /// (it may be running): do not run it again, wait for its ack.
    Pending,
    /// The same command with this id has this outcome already.
    Known(Outcome),
    /// The id was used for another command (named).
    Conflict(String),
}

/// Why the record could not be used.
#[derive(Debug)]
pub struct RegistryError(String);

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RegistryError {}

/// The idempotency record.
pub struct Registry {
    store: kv::Store,
}

fn error(what: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError(format!("the telecommand id record ({BUCKET}): {what}: {e}"))
}

impl Registry {
    /// Declares the bucket (its stream, as the key-value API lays it out)
    /// and opens it. Start-up code.
    ///
    /// The stream is declared directly rather than with async-nats's
    /// `create_key_value`, which asks for account details that Debian's
    /// nats-server 2.9 does not send.
    pub async fn open(service: &Service, replicas: usize) -> Result<Registry, RegistryError> {
        let client = service
            .nats()
            .map_err(|e: ServiceError| error("no connection", e))?;
        let js = jetstream::new(client.clone());
        js.get_or_create_stream(jetstream::stream::Config {
            name: format!("KV_{BUCKET}"),
            description: Some("telecommand ids: command and outcome (idempotency record)".into()),
            subjects: vec![format!("$KV.{BUCKET}.>")],
            max_messages_per_subject: 1,
            max_age: ID_RETENTION,
            max_bytes: MAX_BYTES,
            max_message_size: 4096,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            discard: jetstream::stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(|e| error("cannot declare the bucket", e))?;
        let store = js
            .get_key_value(BUCKET)
            .await
            .map_err(|e| error("cannot open the bucket", e))?;
        Ok(Registry { store })
    }

    /// Claims `id` for `command` with `args`.
    pub async fn claim(
        &self,
        id: &str,
        command: &str,
        args: &Value,
    ) -> Result<Claim, RegistryError> {
        let record = Record {
            command: command.to_owned(),
            args: args.clone(),
            outcome: None,
        };
        let body = Bytes::from(serde_json::to_vec(&record).map_err(|e| error("encode", e))?);
        // A record that expires between `create` and `get` is claimed again.
        for _ in 0..3 {
            match self.store.create(id, body.clone()).await {
                Ok(_) => return Ok(Claim::New),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(error("cannot register the id", e)),
            }
            let Some(found) = self
                .store
                .get(id)
                .await
                .map_err(|e| error("cannot read the id", e))?
            else {
                continue;
            };
            let earlier: Record =
                serde_json::from_slice(&found).map_err(|e| error("unreadable record", e))?;
            if earlier.command != record.command || earlier.args != record.args {
                return Ok(Claim::Conflict(format!(
                    "{} {}",
                    earlier.command, earlier.args
                )));
            }
            return Ok(match earlier.outcome {
                Some(outcome) => Claim::Known(outcome),
                None => Claim::Pending,
            });
        }
        Err(error("cannot register the id", "it kept changing"))
    }

    /// Records the outcome of `id` (the first one counts; an unknown id,
    /// one registered by nobody or expired, is left alone).
    pub async fn settle(&self, id: &str, outcome: Outcome) -> Result<(), RegistryError> {
        for _ in 0..3 {
            let Some(entry) = self
                .store
                .entry(id)
                .await
                .map_err(|e| error("cannot read the id", e))?
            else {
                return Ok(());
            };
            if entry.operation != kv::Operation::Put {
                return Ok(());
            }
            let mut record: Record =
                serde_json::from_slice(&entry.value).map_err(|e| error("unreadable record", e))?;
            if record.outcome.is_some() {
                return Ok(());
            }
            record.outcome = Some(outcome.clone());
            let body = serde_json::to_vec(&record).map_err(|e| error("encode", e))?;
            match self.store.update(id, body.into(), entry.revision).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(error("cannot record the outcome", e)),
            }
        }
        Err(error("cannot record the outcome", "it kept changing"))
    }
}
