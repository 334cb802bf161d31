//! `io_service`: the example backend's link to the mission device.
//!
//! - **Telemetry in.** A task keeps a TCP connection to the device
//!   (`DEVICE_ADDR`) and publishes the body of every frame it receives,
//!   unchanged, durably to `telemetry.raw` (stream `TELEMETRY_RAW`), with
//!   the message id `raw-<session>-<counter>` for telemetry frames (a
//!   frame the device sends again is stored once) and `raw-invalid-<nuid>`
//!   for frames that do not decode (the parser rejects and counts those).
//!   Up to `PUBLISH_WINDOW` publishes are in flight at once; when the
//!   stream confirmed a frame (and every frame before it), the service
//!   acknowledges it to the device, which then forgets it. So a frame is
//!   never lost between the device and the stream: what the service had
//!   not stored when it died or lost the link is sent again by the device
//!   after the reconnect.
//! - **Link state.** Every change and every 5 s it publishes
//!   `{"connected": bool, "since_ms": u64, "reason": "..."}` on
//!   `device.link`. A lost link or a failed connection attempt is logged
//!   and counted as an error in health; it reconnects with a back-off
//!   from 100 ms doubling to `LINK_BACKOFF_MAX`.
//! - **Telecommands out.** A durable handler on `telecommand.outgoing`
//!   (stream `TELECOMMANDS`, a work queue) sends each command to the
//!   device and publishes the device's ack on `telecommand.ack.<id>`. When
//!   the link is down or the device does not answer within `ACK_TIMEOUT`,
//!   the handler fails and the command is delivered again with the durable
//!   back-off (`DURABLE_BACKOFF`); a command whose `deadline_ms` has passed
//!   (its sender stopped waiting) is dropped instead, and a command that
//!   can never be sent (unknown, bad arguments, bad id) is answered with a
//!   rejection and counted as an error.
//!
//! # Configuration
//!
//! The standard keys, and:
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `DEVICE_ADDR` | (required) | `host:port` of the device |
//! | `LINK_BACKOFF_MAX` | `5s` | longest wait between connection attempts |
//! | `ACK_TIMEOUT` | `3s` | how long a telecommand waits for the device's ack |
//! | `PUBLISH_WINDOW` | `64` | telemetry frames being stored at once (1 to 1024) |
//! | `TELEMETRY_RAW_REPLICAS`, `TELECOMMANDS_REPLICAS` | `1` | replicas of the streams it declares |

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backend_protocol::{
    Command, Frame, Telecommand, TelemetryAck, body_len, decode_body, encode_frame, raw_message_id,
};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use serde::{Deserialize, Serialize};
use telestion::tokio::io::{AsyncReadExt, AsyncWriteExt};
use telestion::tokio::net::TcpStream;
use telestion::tokio::sync::{mpsc, oneshot};
use telestion::{
    HandlerError, Json, Service, State, StreamRetention, StreamSpec, parse_period, subscribe,
    tokio, tracing,
};

/// Where telemetry goes.
const RAW_SUBJECT: &str = "telemetry.raw";
/// Where the link state goes.
const LINK_SUBJECT: &str = "device.link";
/// Frames read from the device but not yet handled.
const READ_QUEUE: usize = 256;
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The state of the device link, shared by the link task and the
/// telecommand handler.
#[derive(Default)]
struct Link {
    /// Frames to write to the device; `None` while the link is down.
    out: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    /// Telecommands waiting for their ack, by id.
    pending: Mutex<HashMap<String, oneshot::Sender<backend_protocol::TelecommandAck>>>,
    status: Mutex<LinkStatus>,
}

/// The JSON on `device.link`.
#[derive(Debug, Clone, Default, Serialize)]
struct LinkStatus {
    connected: bool,
    since_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The link's settings, read in `main`.
struct Settings {
    device_addr: String,
    backoff_max: Duration,
    ack_timeout: Duration,
    window: usize,
}

impl Link {
    /// Records a change of the link state and publishes it.
    async fn set_status(&self, service: &Service, connected: bool, reason: Option<String>) {
        let status = {
            let mut status = lock(&self.status);
            if status.connected == connected && status.since_ms != 0 && status.reason == reason {
                return;
            }
            *status = LinkStatus {
                connected,
                since_ms: now_ms(),
                reason,
            };
            status.clone()
        };
        if !connected {
            *lock(&self.out) = None;
            // Dropping the senders fails every waiting telecommand handler.
            lock(&self.pending).clear();
        }
        if let Err(e) = service.publish_json(LINK_SUBJECT, &status).await {
            tracing::warn!(error = %e, "cannot publish the link state");
        }
    }
}

/// Keeps the link to the device: connects, reads, reconnects.
#[subscribe(task)]
async fn device_link(
    service: Service,
    link: State<Link>,
    settings: State<Settings>,
) -> Result<(), HandlerError> {
    let first_backoff = Duration::from_millis(100);
    let mut backoff = first_backoff;
    let mut failures_in_a_row = 0u32;
    link.set_status(&service, false, Some("not connected yet".into()))
        .await;
    while !service.is_stopping() {
        let connect = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect(settings.device_addr.as_str()),
        );
        let reason = tokio::select! {
            _ = service.stopped() => break,
            attempt = connect => match attempt {
                Ok(Ok(stream)) => {
                    tracing::info!(device = %settings.device_addr, "device link up");
                    failures_in_a_row = 0;
                    backoff = first_backoff;
                    link.set_status(&service, true, None).await;
                    match run_connection(&service, &link, &settings, stream).await {
                        Ok(()) => break,
                        Err(reason) => reason,
                    }
                }
                Ok(Err(e)) => format!("cannot connect to {}: {e}", settings.device_addr),
                Err(_) => format!("cannot connect to {}: timed out", settings.device_addr),
            },
        };
        if service.is_stopping() {
            break;
        }
        service.record_error();
        failures_in_a_row += 1;
        if failures_in_a_row <= 3 || failures_in_a_row.is_multiple_of(20) {
            tracing::warn!(
                reason = %reason,
                retry_in_ms = backoff.as_millis() as u64,
                failures_in_a_row,
                "device link down"
            );
        }
        link.set_status(&service, false, Some(reason)).await;
        tokio::select! {
            _ = service.stopped() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(settings.backoff_max);
    }
    link.set_status(&service, false, Some("service stopped".into()))
        .await;
    Ok(())
}

/// Reads frames from the device into `frames` until the stream fails.
async fn read_frames(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    frames: mpsc::Sender<Result<Vec<u8>, String>>,
) {
    loop {
        let mut prefix = [0u8; 2];
        let result = match reader.read_exact(&mut prefix).await {
            Err(e) => Err(format!("the device closed the link ({e})")),
            Ok(_) => match body_len(prefix) {
                Err(e) => Err(format!("unreadable stream from the device: {e}")),
                Ok(len) => {
                    let mut body = vec![0; len];
                    match reader.read_exact(&mut body).await {
                        Ok(_) => Ok(body),
                        Err(e) => Err(format!("the device closed the link ({e})")),
                    }
                }
            },
        };
        let failed = result.is_err();
        if frames.send(result).await.is_err() || failed {
            return;
        }
    }
}

/// Writes frames to the device.
async fn write_frames(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut frames: mpsc::Receiver<Vec<u8>>,
) -> String {
    while let Some(frame) = frames.recv().await {
        if let Err(e) = writer.write_all(&frame).await {
            return format!("cannot write to the device: {e}");
        }
    }
    "writer closed".into()
}

/// Serves one connection: `Ok` when the service stops, `Err(reason)` when
/// the link is lost.
async fn run_connection(
    service: &Service,
    link: &Link,
    settings: &Settings,
    stream: TcpStream,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (out_tx, out_rx) = mpsc::channel(1024);
    let (frames_tx, mut frames_rx) = mpsc::channel(READ_QUEUE);
    *lock(&link.out) = Some(out_tx.clone());
    let read_task = tokio::spawn(read_frames(reader, frames_tx));
    let mut write_task = tokio::spawn(write_frames(writer, out_rx));
    let mut inflight = FuturesOrdered::new();
    let stopped = service.stopped();
    tokio::pin!(stopped);
    // `drain`: store what was already read before leaving (not after a
    // failed publish: NATS is in trouble, and the device resends telemetry).
    let (result, drain) = loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break (Ok(()), true),
            written = &mut write_task => {
                let reason = written.unwrap_or_else(|e| format!("writer failed: {e}"));
                break (Err(reason), true);
            }
            Some(done) = inflight.next(), if !inflight.is_empty() => match done {
                Ok(Some(ack)) => {
                    let frame = encode_frame(&Frame::TelemetryAck(ack));
                    if out_tx.send(frame).await.is_err() {
                        break (Err("writer closed".into()), true);
                    }
                }
                Ok(None) => {}
                Err(reason) => break (Err(reason), false),
            },
            frame = frames_rx.recv(), if inflight.len() < settings.window => match frame {
                Some(Ok(body)) => {
                    if let Some(publish) = handle_frame(service, link, body) {
                        inflight.push_back(publish);
                    }
                }
                Some(Err(reason)) => break (Err(reason), true),
                None => break (Err("reader ended".into()), true),
            },
        }
    };
    read_task.abort();
    if drain {
        // Frames that are not telemetry (bad ones) are never resent, so
        // they are stored now; acks go out while the link still works.
        while let Some(done) = inflight.next().await {
            match done {
                Ok(Some(ack)) => {
                    let _ = out_tx.try_send(encode_frame(&Frame::TelemetryAck(ack)));
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
    if result.is_ok() {
        // Stopping: the writer sends the last acks and ends once every
        // sender is gone.
        *lock(&link.out) = None;
        drop(out_tx);
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut write_task).await;
    }
    write_task.abort();
    result
}

type Publish = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<TelemetryAck>, String>> + Send>,
>;

/// Routes one frame from the device: an ack to its waiting telecommand,
/// anything else to `telemetry.raw` (the returned publish).
fn handle_frame(service: &Service, link: &Link, body: Vec<u8>) -> Option<Publish> {
    let (id, ack) = match decode_body(&body) {
        Ok(Frame::TelecommandAck(ack)) => {
            match lock(&link.pending).remove(&ack.id) {
                Some(waiter) => {
                    let _ = waiter.send(ack);
                }
                None => tracing::warn!(id = %ack.id, "ack for an unknown telecommand"),
            }
            return None;
        }
        Ok(Frame::Telemetry(t)) => (
            raw_message_id(t.session, t.counter),
            Some(TelemetryAck {
                session: t.session,
                counter: t.counter,
            }),
        ),
        // The parser rejects and counts these.
        _ => (format!("raw-invalid-{}", nuid::next()), None),
    };
    let service = service.clone();
    Some(Box::pin(async move {
        service
            .publish_durable_with_id(RAW_SUBJECT, id, body)
            .await
            .map(|_| ack)
            .map_err(|e| format!("cannot store telemetry: {e}"))
    }))
}

/// Publishes the link state every 5 s.
#[subscribe(every = "5s")]
async fn link_heartbeat(service: Service, link: State<Link>) -> Result<(), HandlerError> {
    let status = lock(&link.status).clone();
    service.publish_json(LINK_SUBJECT, &status).await?;
    Ok(())
}

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

/// Sends a telecommand to the device and publishes its ack.
#[subscribe("telecommand.outgoing", durable, stream = "TELECOMMANDS")]
async fn send_telecommand(
    Json(outgoing): Json<Outgoing>,
    service: Service,
    link: State<Link>,
    settings: State<Settings>,
) -> Result<(), HandlerError> {
    if !valid_id(&outgoing.id) {
        service.record_error();
        tracing::warn!(id = ?outgoing.id, "telecommand with an invalid id dropped");
        return Ok(());
    }
    let ack_subject = format!("telecommand.ack.{}", outgoing.id);
    let command = match device_command(&outgoing.command, &outgoing.args) {
        Ok(command) => command,
        Err(reason) => {
            service.record_error();
            tracing::warn!(id = %outgoing.id, %reason, "telecommand refused");
            let ack = AckJson {
                id: &outgoing.id,
                status: "rejected",
                reason: Some(&reason),
            };
            service.publish_json(ack_subject, &ack).await?;
            return Ok(());
        }
    };
    if outgoing
        .deadline_ms
        .is_some_and(|deadline| now_ms() > deadline)
    {
        tracing::warn!(id = %outgoing.id, "telecommand expired before it could be sent; dropped");
        return Ok(());
    }
    let (tx, rx) = oneshot::channel();
    lock(&link.pending).insert(outgoing.id.clone(), tx);
    let out = lock(&link.out).clone();
    let sent = match out {
        Some(out) => {
            let frame = encode_frame(&Frame::Telecommand(Telecommand {
                id: outgoing.id.clone(),
                command,
            }));
            out.send(frame).await.is_ok()
        }
        None => false,
    };
    if !sent {
        lock(&link.pending).remove(&outgoing.id);
        return Err(HandlerError::server("device link down").with_code(503));
    }
    let ack = match tokio::time::timeout(settings.ack_timeout, rx).await {
        Ok(Ok(ack)) => ack,
        Ok(Err(_)) => {
            return Err(HandlerError::server("device link lost before the ack").with_code(503));
        }
        Err(_) => {
            lock(&link.pending).remove(&outgoing.id);
            return Err(HandlerError::server(format!(
                "no ack from the device within {:?}",
                settings.ack_timeout
            ))
            .with_code(504));
        }
    };
    let json = AckJson {
        id: &outgoing.id,
        status: if ack.accepted {
            "acknowledged"
        } else {
            "rejected"
        },
        reason: ack.reason.as_deref(),
    };
    service.publish_json(ack_subject, &json).await?;
    Ok(())
}

/// The stream of raw frames (declared identically by the parser).
fn telemetry_raw_stream() -> StreamSpec {
    StreamSpec::new("TELEMETRY_RAW")
        .subjects([RAW_SUBJECT])
        .max_age(Duration::from_secs(3600))
        .max_bytes(1 << 30)
        .replicas_from_key("TELEMETRY_RAW_REPLICAS")
}

/// The telecommand queue (declared identically by the telecommand service).
fn telecommands_stream() -> StreamSpec {
    StreamSpec::new("TELECOMMANDS")
        .subjects(["telecommand.outgoing"])
        .retention(StreamRetention::WorkQueue)
        .max_age(Duration::from_secs(3600))
        .replicas_from_key("TELECOMMANDS_REPLICAS")
}

fn period(service: &Service, key: &str, default: &str) -> Result<Duration, String> {
    let text = service
        .config()
        .get_str(key)
        .unwrap_or_else(|| default.to_owned());
    parse_period(&text).map_err(|e| format!("{key}: {e}"))
}

#[telestion::service]
async fn main(service: Service) -> Result<(), Box<dyn std::error::Error>> {
    let device_addr = service
        .config()
        .get_str("DEVICE_ADDR")
        .filter(|addr| !addr.trim().is_empty())
        .ok_or("DEVICE_ADDR is not set (host:port of the device)")?;
    let window = service
        .config()
        .get::<usize>("PUBLISH_WINDOW")?
        .unwrap_or(64);
    if !(1..=1024).contains(&window) {
        return Err(format!("PUBLISH_WINDOW must be 1 to 1024, not {window}").into());
    }
    service.provide(Settings {
        device_addr,
        backoff_max: period(&service, "LINK_BACKOFF_MAX", "5s")?,
        ack_timeout: period(&service, "ACK_TIMEOUT", "3s")?,
        window,
    });
    service.provide(Link::default());
    service.declare_stream(telemetry_raw_stream()).await?;
    service.declare_stream(telecommands_stream()).await?;
    Ok(())
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
