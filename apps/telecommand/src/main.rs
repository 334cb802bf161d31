//! `telecommand`: the example backend's telecommand service.
//!
//! A request on `telecommand.send`,
//! `{"id"?: "...", "command": "set_heater"|"set_rate"|"reboot"|"ping", "args": {...}}`,
//! is checked (`set_heater` takes `{"on": bool}`, `set_rate`
//! `{"hz": 1..=1000}`, `reboot` and `ping` take `{}` or no `args`; the id,
//! when given, 1 to 64 of `A-Z a-z 0-9 _ -`; anything else is refused with
//! a 400 error reply naming the reason), queued durably on
//! `telecommand.outgoing` (stream `TELECOMMANDS`, a work queue) as
//! `{"id", "command", "args", "deadline_ms"}` with the message id `<id>`,
//! and answered with the device's ack.
//!
//! # The id is the idempotency key
//!
//! The sender chooses the id (the web page makes one per command; without
//! one the service assigns a NUID), and it stays the command's key all the
//! way to the device: a command is never run twice for one id.
//!
//! - The ids, with their command and outcome, are recorded in the
//!   JetStream key-value bucket `TELECOMMAND_IDS` (24 h, 64 MiB), shared
//!   by every instance. A request whose id is already recorded with the
//!   **same** command is a repeat: it is answered with the recorded
//!   outcome, or, while that is unknown, waits for it (the command is
//!   queued again with the same message id, which the stream, the IO
//!   service and the device each recognise; it does not run again). With
//!   a **different** command the request is refused with 409.
//! - Every ack on `telecommand.ack.<id>` is recorded (also one that comes
//!   after its request gave up), so asking again with the same id tells
//!   what became of a command.
//!
//! # Replies
//!
//! `{"id", "status": "confirmed"|"refused", "reason"?, "repeated"?: true}`:
//! the device ran the command (`confirmed`) or refused it (`refused`, with
//! its reason); `repeated` when the outcome was recorded for an earlier
//! request with this id. Error replies: 400 (bad request), 409 (the id was
//! used for another command), 504 when no ack comes within
//! `TELECOMMAND_TIMEOUT`: the command is **not confirmed and may still
//! run** (ask again with the same id to learn its outcome; it will not run
//! twice), and 503 when it could not be queued (the message says whether
//! it may still run). `deadline_ms` tells the IO service not to send the
//! command after the moment its first request stops waiting.
//!
//! The service subscribes to `telecommand.ack.<id>` *before* it publishes,
//! so the ack cannot be missed.
//!
//! # Configuration
//!
//! The standard keys, and `TELECOMMAND_TIMEOUT` (default `5s`; `500ms`,
//! `2s`, ... or a number of seconds; 100 ms to 1 h), `TELECOMMANDS_REPLICAS`
//! (default 1; also the bucket's replicas).

mod registry;
mod request;

use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use telestion::period::{BareNumber, parse_setting};
use telestion::{
    HandlerError, Json, Service, ServiceError, State, StreamRetention, StreamSpec, Subject,
    subscribe, tokio, tracing,
};

use registry::{Claim, Outcome, Registry};

/// The bounds of `TELECOMMAND_TIMEOUT`.
const TIMEOUT_BOUNDS: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(3600);

/// How long a request waits for the device's ack.
struct Timeout(Duration);

/// The JSON the IO service publishes on `telecommand.ack.<id>`.
#[derive(Debug, Deserialize)]
struct DeviceAck {
    id: String,
    /// `acknowledged` or `rejected`.
    status: String,
    #[serde(default)]
    reason: Option<String>,
    /// The IO service refused a message that reused this id for another
    /// command: an answer to that message, not to this id's command.
    #[serde(default)]
    conflict: bool,
}

impl DeviceAck {
    fn outcome(&self) -> Outcome {
        Outcome {
            status: if self.status == "acknowledged" {
                "confirmed".into()
            } else {
                "refused".into()
            },
            reason: self.reason.clone(),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn reply(id: &str, outcome: &Outcome, repeated: bool) -> Json<Value> {
    let mut reply = json!({"id": id, "status": outcome.status});
    if let Some(reason) = &outcome.reason {
        reply["reason"] = json!(reason);
    }
    if repeated {
        reply["repeated"] = json!(true);
    }
    Json(reply)
}

/// Sends one telecommand and answers with the device's ack.
#[subscribe("telecommand.send", concurrency = 64)]
async fn send(
    Json(request): Json<Value>,
    service: Service,
    limit: State<Timeout>,
    registry: State<Registry>,
) -> Result<Json<Value>, HandlerError> {
    let request = request::validate(&request).map_err(HandlerError::client)?;
    let id = request
        .id
        .clone()
        .unwrap_or_else(|| nuid::next().to_string());
    let command = request.command.as_str();
    let timeout = limit.0;
    let started = tokio::time::Instant::now();
    let claim = registry
        .claim(&id, command, &request.args)
        .await
        .map_err(|e| {
            HandlerError::server(format!(
                "telecommand {id} ({command}) not queued, it will not run: {e}"
            ))
            .with_code(503)
        })?;
    match claim {
        Claim::Conflict(earlier) => {
            return Err(HandlerError::client(format!(
                "telecommand id {id} was already used for another command ({earlier}); \
                 send this one with a new id"
            ))
            .with_code(409));
        }
        Claim::Known(outcome) => return Ok(reply(&id, &outcome, true)),
        Claim::New | Claim::Pending => {}
    }
    // Subscribe first: the ack may come back before the publish returns.
    let mut acks = service
        .nats()?
        .subscribe(format!("telecommand.ack.{id}"))
        .await
        .map_err(|e| HandlerError::server(format!("cannot subscribe to the ack: {e}")))?;
    let outgoing = json!({
        "id": id,
        "command": command,
        "args": request.args,
        "deadline_ms": now_ms() + timeout.as_millis() as u64,
    });
    match service
        .publish_durable_with_id("telecommand.outgoing", id.clone(), outgoing.to_string())
        .await
    {
        Ok(_) => {}
        Err(e @ (ServiceError::NoStream { .. } | ServiceError::NoNats(_))) => {
            return Err(HandlerError::server(format!(
                "telecommand {id} ({command}) not queued, it will not run: {e}"
            ))
            .with_code(503));
        }
        Err(e) => {
            return Err(HandlerError::server(format!(
                "telecommand {id} ({command}) not confirmed, may still run: the queue did not \
                 confirm it ({e}); send it again with the same id to learn its outcome (it will \
                 not run twice)"
            ))
            .with_code(503));
        }
    }
    tracing::info!(%id, %command, repeat = matches!(claim, Claim::Pending), "telecommand queued");
    let wait = async {
        while let Some(message) = acks.next().await {
            match serde_json::from_slice::<DeviceAck>(&message.payload) {
                Ok(ack) if !ack.conflict => return Some(ack),
                Ok(_) => {}
                Err(e) => tracing::warn!(%id, error = %e, "unreadable ack ignored"),
            }
        }
        None
    };
    let left = timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, wait).await {
        Ok(Some(ack)) => Ok(reply(&id, &ack.outcome(), false)),
        _ => Err(HandlerError::server(format!(
            "telecommand {id} ({command}) not confirmed, may still run: no ack from the device \
             within {timeout:?}; send it again with the same id to learn its outcome (it will \
             not run twice)"
        ))
        .with_code(504)),
    }
}

/// Records every ack (also a late one, after its request gave up), so a
/// repeated request learns the outcome.
#[subscribe("telecommand.ack.*")]
async fn record_ack(
    Subject(subject): Subject,
    Json(ack): Json<DeviceAck>,
    registry: State<Registry>,
) -> Result<(), HandlerError> {
    if ack.conflict {
        return Ok(());
    }
    if subject.strip_prefix("telecommand.ack.") != Some(ack.id.as_str()) {
        return Err(HandlerError::client(format!(
            "ack for {:?} on {subject}: ignored",
            ack.id
        )));
    }
    registry
        .settle(&ack.id, ack.outcome())
        .await
        .map_err(|e| HandlerError::server(e.to_string()))
}

#[telestion::service(publishes = ["telecommand.outgoing"], subscribes = ["telecommand.ack.*"], streams = ["TELECOMMANDS"], key_value = ["TELECOMMAND_IDS"])]
async fn main(service: Service) -> Result<(), Box<dyn std::error::Error>> {
    let text = service
        .config()
        .get_str("TELECOMMAND_TIMEOUT")
        .unwrap_or_else(|| "5s".into());
    let timeout = parse_setting(
        "TELECOMMAND_TIMEOUT",
        &text,
        BareNumber::Seconds,
        TIMEOUT_BOUNDS,
    )?;
    service.provide(Timeout(timeout));
    // Declared identically by the IO service: whoever starts first creates it.
    service
        .declare_stream(
            StreamSpec::new("TELECOMMANDS")
                .subjects(["telecommand.outgoing"])
                .retention(StreamRetention::WorkQueue)
                .max_age(Duration::from_secs(3600))
                .replicas_from_key("TELECOMMANDS_REPLICAS"),
        )
        .await?;
    let replicas = service
        .config()
        .get::<usize>("TELECOMMANDS_REPLICAS")?
        .unwrap_or(1)
        .max(1);
    service.provide(Registry::open(&service, replicas).await?);
    Ok(())
}
