//! Telecommands out: a durable handler on `telecommand.outgoing` (stream
//! `TELECOMMANDS`) that sends each command to the device at most once per
//! id and publishes the device's ack on `telecommand.ack.<id>`.

use backend_protocol::{Command, Frame, Telecommand, TelecommandAck, encode_frame};
use serde::{Deserialize, Serialize};
use telestion::tokio::sync::oneshot;
use telestion::{HandlerError, Json, Service, ServiceError, State, subscribe, tokio, tracing};

use crate::sent::Seen;
use crate::{Link, Settings, lock, now_ms};

/// A telecommand as the telecommand service sends it.
#[derive(Debug, Deserialize)]
struct Outgoing {
    id: String,
    command: String,
    #[serde(default)]
    args: serde_json::Value,
    /// Unix ms after which nobody waits for the ack any more.
    #[serde(default)]
    deadline_ms: Option<u64>,
}

/// The JSON on `telecommand.ack.<id>`.
#[derive(Debug, Serialize)]
struct AckJson<'a> {
    id: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    /// The answer to a message that reused the id for another command (not
    /// to the id's own command, which is not affected).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    conflict: bool,
}

/// Publishes the device's `ack` on `telecommand.ack.<id>`.
pub(crate) async fn publish_ack(
    service: &Service,
    ack: &TelecommandAck,
) -> Result<(), ServiceError> {
    let json = AckJson {
        id: &ack.id,
        status: if ack.accepted {
            "acknowledged"
        } else {
            "rejected"
        },
        reason: ack.reason.as_deref(),
        conflict: false,
    };
    service
        .publish_json(format!("telecommand.ack.{}", ack.id), &json)
        .await
}

/// Publishes a rejection of the service's own (the device never saw the
/// command).
async fn publish_rejection(
    service: &Service,
    id: &str,
    reason: &str,
    conflict: bool,
) -> Result<(), ServiceError> {
    let json = AckJson {
        id,
        status: "rejected",
        reason: Some(reason),
        conflict,
    };
    service
        .publish_json(format!("telecommand.ack.{id}"), &json)
        .await
}

/// The device command for a command name and its JSON arguments.
fn device_command(name: &str, args: &serde_json::Value) -> Result<Command, String> {
    let arg = |key: &str| args.get(key);
    match name {
        "set_heater" => match arg("on").and_then(|v| v.as_bool()) {
            Some(on) => Ok(Command::SetHeater { on }),
            None => Err("set_heater needs {\"on\": bool}".into()),
        },
        "set_rate" => match arg("hz").and_then(|v| v.as_u64()) {
            Some(hz) if (1..=1000).contains(&hz) => Ok(Command::SetRate { hz: hz as u32 }),
            _ => Err("set_rate needs {\"hz\": 1..=1000}".into()),
        },
        "reboot" => Ok(Command::Reboot),
        "ping" => Ok(Command::Ping),
        other => Err(format!("unknown command {other:?}")),
    }
}

/// A valid id is 1 to 64 of `A-Z a-z 0-9 _ -` (it becomes a subject token).
fn valid_id(id: &str) -> bool {
    (1..=backend_protocol::MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Sends a telecommand to the device (at most once per id) and publishes
/// its ack.
///
/// - Link down: the handler fails and the message comes again (the
///   command was not sent).
/// - Sent, but no ack within `ACK_TIMEOUT` or the link lost: not sent
///   again (the device may run it); counted as an error, and a late ack is
///   still published when it comes.
/// - An id already sent: with the same command, not sent again (its ack is
///   published again when known); with another command, refused
///   (`"conflict": true`) without reaching the device.
#[subscribe("telecommand.outgoing", durable, stream = "TELECOMMANDS")]
async fn send_telecommand(
    Json(outgoing): Json<Outgoing>,
    service: Service,
    link: State<Link>,
    settings: State<Settings>,
) -> Result<(), HandlerError> {
    let id = outgoing.id.as_str();
    if !valid_id(id) {
        service.record_error();
        tracing::warn!(id = ?outgoing.id, "telecommand with an invalid id dropped");
        return Ok(());
    }
    let command = match device_command(&outgoing.command, &outgoing.args) {
        Ok(command) => command,
        Err(reason) => {
            service.record_error();
            tracing::warn!(%id, %reason, "telecommand refused");
            publish_rejection(&service, id, &reason, false).await?;
            return Ok(());
        }
    };
    let seen = lock(&link.sent).lookup(id, command);
    match seen {
        Seen::New => {}
        Seen::InFlight => {
            tracing::info!(%id, "telecommand already sent, its ack not in yet: not sent again");
            return Ok(());
        }
        Seen::Answered(ack) => {
            tracing::info!(%id, "telecommand already answered: its ack published again");
            publish_ack(&service, &ack).await?;
            return Ok(());
        }
        Seen::Conflict(earlier) => {
            service.record_error();
            let reason =
                format!("id {id} was already used for another command ({earlier:?}); not sent");
            tracing::warn!(%id, ?command, "{reason}");
            publish_rejection(&service, id, &reason, true).await?;
            return Ok(());
        }
    }
    if outgoing
        .deadline_ms
        .is_some_and(|deadline| now_ms() > deadline)
    {
        tracing::warn!(%id, "telecommand expired before it could be sent; dropped");
        return Ok(());
    }
    let (tx, rx) = oneshot::channel();
    lock(&link.pending).insert(outgoing.id.clone(), tx);
    let out = lock(&link.out).clone();
    let frame = encode_frame(&Frame::Telecommand(Telecommand {
        id: outgoing.id.clone(),
        command,
    }));
    let sent = match out {
        Some(out) => {
            // Marked before it goes out: its ack may come back at once.
            lock(&link.sent).mark_sent(id, command);
            out.send(frame).await.is_ok()
        }
        None => false,
    };
    if !sent {
        lock(&link.pending).remove(id);
        return Err(
            HandlerError::server("device link down; the telecommand was not sent").with_code(503),
        );
    }
    let unconfirmed = |why: &str| {
        service.record_error();
        tracing::warn!(
            %id,
            "telecommand sent, {why}: not confirmed, may still run; not sent again (a late ack is \
             still published)"
        );
        Ok(())
    };
    match tokio::time::timeout(settings.ack_timeout, rx).await {
        Ok(Ok(ack)) => {
            publish_ack(&service, &ack).await?;
            Ok(())
        }
        Ok(Err(_)) => unconfirmed("the device link was lost before its ack"),
        Err(_) => {
            lock(&link.pending).remove(id);
            unconfirmed(&format!(
                "no ack from the device within {:?}",
                settings.ack_timeout
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_are_checked() {
        assert_eq!(
            device_command("set_heater", &json!({"on": true})),
            Ok(Command::SetHeater { on: true })
        );
        assert_eq!(
            device_command("set_rate", &json!({"hz": 1000})),
            Ok(Command::SetRate { hz: 1000 })
        );
        assert!(device_command("set_rate", &json!({"hz": 0})).is_err());
        assert!(device_command("set_rate", &json!({"hz": 1001})).is_err());
        assert!(device_command("set_heater", &json!({})).is_err());
        assert!(device_command("launch", &json!({})).is_err());
        assert_eq!(device_command("ping", &json!(null)), Ok(Command::Ping));
    }

    #[test]
    fn ids_must_be_subject_tokens() {
        assert!(valid_id("abcDEF123_-"));
        assert!(!valid_id(""));
        assert!(!valid_id("a.b"));
        assert!(!valid_id("a*"));
        assert!(!valid_id(&"a".repeat(65)));
    }
}
