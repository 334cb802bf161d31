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
//!   from 100 ms doubling to `LINK_BACKOFF_MAX`. The back-off starts again
//!   at 100 ms only after a connection that stayed up for 5 s: a link that
//!   fails as soon as it is up (the device closes it, telemetry cannot be
//!   stored) is retried less and less often, not ten times a second.
//! - **Telecommands out, at most once per id.** A durable handler on
//!   `telecommand.outgoing` (stream `TELECOMMANDS`, a work queue) sends
//!   each command to the device and publishes the device's ack on
//!   `telecommand.ack.<id>`. The id is the command's idempotency key: the
//!   service remembers the last 4096 ids it sent, with their command, and
//!   never sends an id twice. A command that comes again (a redelivery, a
//!   repeat) is not sent again: its ack is published again when known; one
//!   that reuses an id for another command is refused
//!   (`{"status": "rejected", "conflict": true}`) without reaching the
//!   device. When the link is down the command was not sent: the handler
//!   fails and it is delivered again with the durable back-off. When it
//!   was sent but no ack comes within `ACK_TIMEOUT` (or the link is lost
//!   first), it is not confirmed and may still run: counted as an error,
//!   not sent again, and the device's late ack is still published. A
//!   command whose `deadline_ms` has passed before it could be sent (its
//!   sender stopped waiting) is dropped, and a command that can never be
//!   sent (unknown, bad arguments, bad id) is answered with a rejection
//!   and counted as an error.
//!
//! # Configuration
//!
//! The standard keys, and:
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `DEVICE_ADDR` | (required) | `host:port` of the device |
//! | `LINK_BACKOFF_MAX` | `5s` | longest wait between connection attempts (100 ms to 10 min) |
//! | `ACK_TIMEOUT` | `3s` | how long a telecommand waits for the device's ack (100 ms to 10 min) |
//! | `PUBLISH_WINDOW` | `64` | telemetry frames being stored at once (1 to 1024) |
//! | `TELEMETRY_RAW_REPLICAS`, `TELECOMMANDS_REPLICAS` | `1` | replicas of the streams it declares |
//!
//! The two durations are periods (`500ms`, `2s`, `1m`); a value out of
//! bounds fails the start with a message naming the key and the bounds.

mod link;
mod sent;
mod telecommand;

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use telestion::period::{BareNumber, parse_setting};
use telestion::tokio::sync::{mpsc, oneshot};
use telestion::{Service, StreamRetention, StreamSpec, tracing};

/// Where telemetry goes.
const RAW_SUBJECT: &str = "telemetry.raw";
/// Where the link state goes.
const LINK_SUBJECT: &str = "device.link";
/// The bounds of `LINK_BACKOFF_MAX` and `ACK_TIMEOUT`.
const PERIOD_BOUNDS: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(600);

/// The state of the device link, shared by the link task and the
/// telecommand handler.
#[derive(Default)]
struct Link {
    /// Frames to write to the device; `None` while the link is down.
    out: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    /// Telecommands waiting for their ack, by id.
    pending: Mutex<HashMap<String, oneshot::Sender<backend_protocol::TelecommandAck>>>,
    /// Telecommands handed to the device, by id (never sent twice).
    sent: Mutex<sent::Sent>,
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

/// A duration key: a period within [`PERIOD_BOUNDS`].
fn period(service: &Service, key: &str, default: &str) -> Result<Duration, String> {
    let text = service
        .config()
        .get_str(key)
        .unwrap_or_else(|| default.to_owned());
    parse_setting(key, &text, BareNumber::Refused, PERIOD_BOUNDS).map_err(|e| e.to_string())
}

#[telestion::service(publishes = ["device.link", "telecommand.ack.*", "telemetry.raw"], streams = ["TELEMETRY_RAW", "TELECOMMANDS"])]
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
