//! The device link: a task that connects to the device, reads its frames
//! (telemetry to `telemetry.raw`, acks to their telecommands), writes the
//! frames for it, and reconnects with a growing back-off.

use std::time::Duration;

use backend_protocol::{Frame, TelemetryAck, body_len, decode_body, encode_frame, raw_message_id};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use telestion::tokio::io::{AsyncReadExt, AsyncWriteExt};
use telestion::tokio::net::TcpStream;
use telestion::tokio::sync::mpsc;
use telestion::tokio::time::Instant;
use telestion::{HandlerError, Service, State, subscribe, tokio, tracing};

use crate::telecommand::publish_ack;
use crate::{LINK_SUBJECT, Link, RAW_SUBJECT, Settings, lock};

/// Frames read from the device but not yet handled.
const READ_QUEUE: usize = 256;
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The first wait before connecting again.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// A connection that stayed up this long was healthy: after it, the
/// back-off starts again at [`FIRST_BACKOFF`]. A link that fails sooner
/// (the device closes it at once, telemetry cannot be stored) keeps
/// doubling the wait up to `LINK_BACKOFF_MAX` instead of reconnecting ten
/// times a second.
pub const LINK_STABLE: Duration = Duration::from_secs(5);

/// Keeps the link to the device: connects, reads, reconnects.
#[subscribe(task)]
async fn device_link(
    service: Service,
    link: State<Link>,
    settings: State<Settings>,
) -> Result<(), HandlerError> {
    let mut backoff = FIRST_BACKOFF;
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
                    let up = Instant::now();
                    link.set_status(&service, true, None).await;
                    let result = run_connection(&service, &link, &settings, stream).await;
                    // Only a connection that stayed up resets the back-off:
                    // one that fails at once is a failure like a refused
                    // connection.
                    if up.elapsed() >= LINK_STABLE {
                        failures_in_a_row = 0;
                        backoff = FIRST_BACKOFF;
                    }
                    match result {
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
            let sent = lock(&link.sent).answer(&ack);
            let waiter = lock(&link.pending).remove(&ack.id);
            match waiter {
                Some(waiter) => {
                    let _ = waiter.send(ack);
                }
                // Its handler stopped waiting: the ack is published anyway,
                // so that the sender can learn the outcome.
                None if sent => {
                    tracing::info!(id = %ack.id, accepted = ack.accepted, "late ack from the device");
                    let service = service.clone();
                    tokio::spawn(async move {
                        if let Err(e) = publish_ack(&service, &ack).await {
                            tracing::warn!(id = %ack.id, error = %e, "cannot publish a late ack");
                        }
                    });
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
