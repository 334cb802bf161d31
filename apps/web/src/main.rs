//! The example backend's web page and its gateway to NATS, behind a login.
//!
//! Serves one page (HTML, JavaScript and CSS built into the binary, no
//! external resources) on `WEB_ADDR` (default `127.0.0.1:8080`) with a live
//! plot of the telemetry, query results and a telecommand form. The browser
//! talks to this service only:
//!
//! | HTTP | NATS |
//! | --- | --- |
//! | `GET /` (and `/app.js`, `/app.css`) | the page |
//! | `POST /api/login` `{"user", "password"}` | opens the operator's own NATS connection with these credentials; sets the session cookie |
//! | `POST /api/logout` | closes it |
//! | `GET /api/session` | `{"user"}` of the session (401 without one) |
//! | `GET /api/live` (Server-Sent Events) | `telemetry.parsed` (event `telemetry`) and `device.link` (event `link`), core subscriptions of the web service's own identity, checked |
//! | `POST /api/query/{latest,range,series,count}` | request to `telemetry.query.<kind>` on the operator's connection |
//! | `POST /api/telecommand` | request to `telecommand.send` on the operator's connection |
//! | `POST /api/history` | request to `HISTORY_SUBJECT` (default `query.database`: the `database_query` service, upstream request format) on the operator's connection |
//!
//! **Login** ([`sessions`]): the operator signs in with their NATS user
//! name and password; every query, history request and telecommand goes
//! out on that operator's own connection, so NATS permissions decide what
//! each person may do (a user who may not publish to `telecommand.send`
//! gets 403 as soon as the server reports the violation). Every `/api/*`
//! route but login needs the session cookie (401 otherwise). The web
//! service's own identity (`NATS_USER`/`NATS_PASSWORD` as for every
//! service) only subscribes to what the live view shows.
//!
//! **Writes and hosts** ([`guard`]): only the `Host` names of `WEB_HOSTS`
//! (421 otherwise); a write needs `Origin` of this site (403) and
//! `Content-Type: application/json` (415), and its body may not repeat an
//! object key (400). Every response carries a CSP without inline code,
//! frame protection, `nosniff`, `no-referrer` and `no-store`.
//!
//! **Bounds** ([`server`], [`hub`]): request heads (and bodies) within
//! `WEB_HEADER_TIMEOUT`, at most `WEB_MAX_CONNECTIONS` connections, request
//! bodies of 16 KiB, `WEB_MAX_LIVE` live streams (`WEB_MAX_LIVE_PER_SESSION`
//! per session), each queuing at most `WEB_LIVE_BUFFER` bytes: a client that
//! falls behind is dropped (a last event `dropped`, then its connection is
//! closed) and counted.
//!
//! **What is shown** ([`bus`]): a `telemetry.parsed` or `device.link`
//! message reaches the browsers only when it is at most 64 KiB and matches
//! the publisher's schema exactly (known fields, finite numbers, no
//! duplicate keys); anything else is dropped before it is buffered, counted
//! as a handler error and logged (repeats of one reason once per 5 s). A
//! well-formed forgery is stopped by NATS permissions on who may publish
//! there, not here.
//!
//! A forwarded request waits at most `WEB_REQUEST_TIMEOUT_MS` (default
//! 10000: milliseconds, or a period such as `10s`; 100 ms to 1 h). An error
//! reply keeps its code as the HTTP status (400, 409, 503, 504, ...) with
//! the body `{"error": "<reason>"}`; no responder is 503, no reply in time
//! 504 (for a telecommand: "not confirmed, may still run"). The page gives
//! every telecommand an id (its idempotency key) and sends the same command
//! again with the same id while its outcome is unknown.
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `WEB_ADDR` | `127.0.0.1:8080` | where to listen |
//! | `WEB_HOSTS` | host of `WEB_ADDR`, `localhost`, `127.0.0.1`, each with its port | accepted `Host` names, comma-separated `host[:port]` |
//! | `WEB_SESSION_IDLE` | `30min` | a session unused this long ends (seconds or a period, 1 s to 24 h) |
//! | `WEB_MAX_SESSIONS` | 64 | sessions at once; a login beyond is 503 |
//! | `WEB_SECURE_COOKIE` | `false` | mark the cookie `Secure` (behind HTTPS) |
//! | `WEB_HEADER_TIMEOUT` | `10s` | time for a request's head, and for its body (100 ms to 5 min) |
//! | `WEB_MAX_CONNECTIONS` | 256 | connections at once; more are closed at once |
//! | `WEB_MAX_LIVE` | 32 | live streams at once (then 503) |
//! | `WEB_MAX_LIVE_PER_SESSION` | 4 | live streams per session (then 429) |
//! | `WEB_LIVE_BUFFER` | 1048576 | bytes queued per live stream before it is dropped |
//! | `WEB_REQUEST_TIMEOUT_MS` | 10000 | wait for a forwarded request's reply |
//! | `HISTORY_SUBJECT` | `query.database` | where `/api/history` goes |

mod bus;
mod guard;
mod http;
mod hub;
mod server;
mod sessions;
mod settings;
mod unique_keys;

use std::sync::Arc;

use telestion::{Bytes, HandlerError, Service, State, subscribe};

use crate::hub::Hub;
use crate::sessions::{Sessions, Target};
use crate::settings::Settings;

/// The listener bound in start-up code, so a bad `WEB_ADDR` fails the
/// start.
pub struct Listener(std::net::TcpListener);

/// Shows a message on the live streams when `check` accepts it.
fn show(
    hub: &Hub,
    event: &'static str,
    body: &[u8],
    check: fn(&[u8]) -> Result<String, bus::Refused>,
) -> Result<(), HandlerError> {
    let json = check(body).map_err(|refused| HandlerError::client(refused.reason()))?;
    hub.broadcast(event, json.into());
    Ok(())
}

/// Every valid parsed frame goes to the live streams.
#[subscribe("telemetry.parsed", queue = false)]
async fn telemetry(body: Bytes, hub: State<Hub>) -> Result<(), HandlerError> {
    show(&hub, "telemetry", &body, bus::frame)
}

/// Every valid link report goes to the live streams.
#[subscribe("device.link", queue = false)]
async fn link(body: Bytes, hub: State<Hub>) -> Result<(), HandlerError> {
    show(&hub, "link", &body, bus::link)
}

/// Ends idle sessions (and closes their connections) in time, also when
/// nobody calls.
#[subscribe(every = "10s")]
async fn expire_sessions(sessions: State<Sessions>) -> Result<(), HandlerError> {
    sessions.expire();
    Ok(())
}

/// The HTTP server, until shutdown.
#[subscribe(task)]
async fn serve_http(
    service: Service,
    hub: State<Hub>,
    sessions: State<Sessions>,
    settings: State<Settings>,
    listener: State<Listener>,
) -> Result<(), HandlerError> {
    let listener = listener.0.try_clone()?;
    let listener = telestion::tokio::net::TcpListener::from_std(listener)?;
    let settings = State::arc(&settings).clone();
    let app = http::App {
        service: service.clone(),
        origins: Arc::new(settings.origins()),
        settings: settings.clone(),
        sessions: State::arc(&sessions).clone(),
        hub: State::arc(&hub).clone(),
    };
    server::serve(
        listener,
        http::router(app),
        settings.max_connections,
        settings.header_timeout,
        service.stopped(),
    )
    .await?;
    sessions.end_all();
    Ok(())
}

#[telestion::service]
async fn main(service: Service) -> Result<(), String> {
    let settings = Settings::from_config(service.config())?;
    let addr = settings.addr.clone();
    let listener = std::net::TcpListener::bind(&addr)
        .map_err(|e| format!("cannot listen on WEB_ADDR {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on WEB_ADDR {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let settings = settings.with_bound_port(bound.port());
    telestion::tracing::info!(
        hosts = %settings.hosts.join(","),
        "web page at http://{bound}/"
    );
    service.provide(Hub::new(settings.live_buffer));
    service.provide(Sessions::new(
        Target {
            servers: settings.nats_servers.clone(),
            tls_ca: settings.nats_tls_ca.clone(),
            request_timeout: settings.request_timeout,
        },
        settings.session_idle,
        settings.max_sessions,
    ));
    service.provide(settings);
    service.provide(Listener(listener));
    Ok(())
}
