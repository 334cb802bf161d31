//! The example backend's web page and its gateway to NATS.
//!
//! Serves one page (HTML and JavaScript built into the binary, no external
//! resources) on `WEB_ADDR` (default `127.0.0.1:8080`) with a live plot of
//! the telemetry, query results and a telecommand form. The browser talks
//! to this service only:
//!
//! | HTTP | NATS |
//! | --- | --- |
//! | `GET /` | the page |
//! | `GET /api/live` (Server-Sent Events) | `telemetry.parsed` (event `telemetry`) and `device.link` (event `link`), core subscriptions of every instance |
//! | `POST /api/query/{latest,range,series,count}` | request to `telemetry.query.<kind>` |
//! | `POST /api/telecommand` | request to `telecommand.send` |
//! | `POST /api/history` | request to `HISTORY_SUBJECT` (default `query.database`: the `database_query` service, upstream request format) |
//!
//! A request body is at most 16 KiB; a forwarded request waits at most
//! `WEB_REQUEST_TIMEOUT_MS` (default 10000: milliseconds, or a period such
//! as `10s`; 100 ms to 1 h) for the reply. An error reply keeps its code as
//! the HTTP status (400, 409, 503, 504, ...) with the body
//! `{"error": "<reason>"}`; no responder is 503, no reply in time 504 (for
//! a telecommand: "not confirmed, may still run"). The page gives every
//! telecommand an id (its idempotency key) and sends the same command
//! again with the same id while its outcome is unknown. At
//! most `WEB_MAX_LIVE` (default 32) live streams at once (then 503); a
//! browser too slow for the live rate skips messages (it gets an event
//! `lagged` with the number skipped) instead of making the service buffer
//! without bound.

mod http;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use telestion::period::{BareNumber, parse_setting};
use telestion::tokio::sync::broadcast;
use telestion::{Bytes, HandlerError, Service, State, subscribe};

/// The bounds of `WEB_REQUEST_TIMEOUT_MS`: 100 ms to an hour.
const REQUEST_TIMEOUT_BOUNDS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(3600);

/// Messages for the live streams: (SSE event name, JSON body).
pub struct Hub {
    sender: broadcast::Sender<(&'static str, Arc<str>)>,
    live: AtomicUsize,
    max_live: usize,
    request_timeout: Duration,
    history_subject: String,
}

/// The listener bound in start-up code, so a bad `WEB_ADDR` fails the
/// start.
pub struct Listener(std::net::TcpListener);

/// Every parsed frame goes to the live streams.
#[subscribe("telemetry.parsed", queue = false)]
async fn telemetry(body: Bytes, hub: State<Hub>) -> Result<(), HandlerError> {
    hub.broadcast("telemetry", &body)
}

/// Every link report goes to the live streams.
#[subscribe("device.link", queue = false)]
async fn link(body: Bytes, hub: State<Hub>) -> Result<(), HandlerError> {
    hub.broadcast("link", &body)
}

impl Hub {
    /// Sends `body` (JSON, re-encoded on one line) to every live stream.
    fn broadcast(&self, event: &'static str, body: &[u8]) -> Result<(), HandlerError> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| HandlerError::client(format!("not JSON, not forwarded: {e}")))?;
        // No receiver (no browser open) is not an error.
        let _ = self.sender.send((event, value.to_string().into()));
        Ok(())
    }
}

/// The HTTP server, until shutdown.
#[subscribe(task)]
async fn serve_http(
    service: Service,
    hub: State<Hub>,
    listener: State<Listener>,
) -> Result<(), HandlerError> {
    let listener = listener.0.0.try_clone()?;
    let listener = telestion::tokio::net::TcpListener::from_std(listener)?;
    http::serve(listener, service, hub.0.clone()).await?;
    Ok(())
}

#[telestion::service(requests = ["telemetry.query.*", "telecommand.send", "{HISTORY_SUBJECT:query.database}"])]
async fn main(service: Service) -> Result<(), String> {
    let config = service.config();
    let addr = config
        .get_str("WEB_ADDR")
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let number = |key: &str, default: u64| -> Result<u64, String> {
        Ok(config
            .get::<u64>(key)
            .map_err(|e| e.to_string())?
            .unwrap_or(default))
    };
    let max_live = usize::try_from(number("WEB_MAX_LIVE", 32)?).unwrap_or(usize::MAX);
    let request_timeout = parse_setting(
        "WEB_REQUEST_TIMEOUT_MS",
        &config
            .get_str("WEB_REQUEST_TIMEOUT_MS")
            .unwrap_or_else(|| "10000".into()),
        BareNumber::Milliseconds,
        REQUEST_TIMEOUT_BOUNDS,
    )
    .map_err(|e| e.to_string())?;
    let history_subject = config
        .get_str("HISTORY_SUBJECT")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "query.database".to_owned());
    telestion::validate_subject(&history_subject).map_err(|e| format!("HISTORY_SUBJECT: {e}"))?;
    let listener = std::net::TcpListener::bind(&addr)
        .map_err(|e| format!("cannot listen on WEB_ADDR {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on WEB_ADDR {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    telestion::tracing::info!("web page at http://{bound}/");
    let (sender, _) = broadcast::channel(1024);
    service.provide(Hub {
        sender,
        live: AtomicUsize::new(0),
        max_live,
        request_timeout,
        history_subject,
    });
    service.provide(Listener(listener));
    Ok(())
}
