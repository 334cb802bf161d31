//! The HTTP routes: the page, login and logout, the live stream and the
//! requests forwarded on the operator's own NATS connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_nats::RequestErrorKind;
use async_nats::StatusCode as NatsStatus;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use telestion::Service;
use telestion::tokio;
use telestion::tokio::sync::broadcast::error::RecvError;

use crate::guard::{self, Authenticated, COOKIE, JsonBody, MAX_BODY};
use crate::hub::{Hub, Next};
use crate::server::Kill;
use crate::sessions::{LoginError, MAX_PASSWORD, MAX_USER, Session, Sessions};
use crate::settings::Settings;

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// What every handler shares.
#[derive(Clone)]
pub struct App {
    /// The web service itself.
    pub service: Service,
    /// Its configuration.
    pub settings: Arc<Settings>,
    /// The `Origin` values a write may come from.
    pub origins: Arc<Vec<String>>,
    /// The signed-in operators.
    pub sessions: Arc<Sessions>,
    /// The live streams.
    pub hub: Arc<Hub>,
}

/// The routes, behind [`guard::guard`].
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], SCRIPT) }),
        )
        .route(
            "/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], STYLE) }),
        )
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/session", get(whoami))
        .route("/api/live", get(live))
        .route("/api/query/{kind}", post(query))
        .route("/api/history", post(history))
        .route("/api/telecommand", post(telecommand))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::guard,
        ))
        .with_state(app)
}

/// An error response: `{"error": "<message>"}` with `status`.
pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = serde_json::json!({ "error": message.to_string() });
    (status, axum::Json(body)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    user: String,
    password: String,
}

fn cookie(app: &App, value: &str, max_age: Option<u32>) -> HeaderValue {
    let mut text = format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/");
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    if app.settings.secure_cookie {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn login(State(app): State<App>, JsonBody(body): JsonBody) -> Response {
    let Ok(credentials) = serde_json::from_slice::<Credentials>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "send {\"user\": \"...\", \"password\": \"...\"}",
        );
    };
    if credentials.user.is_empty()
        || credentials.user.len() > MAX_USER
        || credentials.password.len() > MAX_PASSWORD
    {
        return error(
            StatusCode::BAD_REQUEST,
            "user name or password too long or empty",
        );
    }
    match app
        .sessions
        .login(&credentials.user, &credentials.password)
        .await
    {
        Ok(token) => {
            let mut response =
                axum::Json(serde_json::json!({ "user": credentials.user })).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, cookie(&app, &token, None));
            response
        }
        Err(e @ LoginError::Refused) => error(StatusCode::UNAUTHORIZED, e),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn logout(State(app): State<App>, headers: HeaderMap, _body: JsonBody) -> Response {
    if let Some(token) = guard::token(&headers)
        && let Some(session) = app.sessions.logout(&token)
    {
        telestion::tracing::info!(user = %session.user.escape_debug(), "signed out");
    }
    let mut response = axum::Json(serde_json::json!({ "user": null })).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&app, "", Some(0)));
    response
}

async fn whoami(Authenticated(session): Authenticated) -> Response {
    axum::Json(serde_json::json!({ "user": session.user })).into_response()
}

/// The reply's error, as the framework's services send it.
fn remote_error(message: &async_nats::Message) -> Option<(u16, String)> {
    let headers = message.headers.as_ref()?;
    let text = headers.get("Nats-Service-Error")?.as_str().to_owned();
    let code = headers
        .get("Nats-Service-Error-Code")
        .and_then(|v| v.as_str().trim().parse::<u16>().ok())
        .unwrap_or(500);
    Some((code, text))
}

/// Resolves when the server reports that `session` may not publish to
/// `subject`.
async fn denied(mut denials: tokio::sync::broadcast::Receiver<String>, subject: &str) {
    loop {
        match denials.recv().await {
            Ok(denied) if denied == subject => return,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// Forwards `body` as a NATS request to `subject` on the session's own
/// connection; the reply (or its error) becomes the response. A publish
/// the user's NATS permissions refuse is 403 as soon as the server says
/// so.
async fn forward(app: &App, session: &Session, subject: &str, body: Bytes) -> Response {
    let timeout = app.settings.request_timeout;
    let denials = session.denials();
    let request = session.client.request(subject.to_owned(), body);
    let reply = tokio::select! {
        () = denied(denials, subject) => {
            return error(
                StatusCode::FORBIDDEN,
                format!("NATS does not allow user {:?} to send to {subject}", session.user),
            );
        }
        reply = tokio::time::timeout(timeout, request) => reply,
    };
    match reply {
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("no reply from {subject} within {timeout:?}"),
        ),
        Ok(Ok(message)) if message.status == Some(NatsStatus::NO_RESPONDERS) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no responders on {subject}"),
        ),
        Ok(Ok(message)) => match remote_error(&message) {
            Some((code, text)) => error(
                StatusCode::from_u16(code)
                    .ok()
                    .filter(|s| s.is_client_error() || s.is_server_error())
                    .unwrap_or(StatusCode::BAD_GATEWAY),
                text,
            ),
            None => (
                [(header::CONTENT_TYPE, "application/json")],
                message.payload,
            )
                .into_response(),
        },
        Ok(Err(e)) => match e.kind() {
            RequestErrorKind::NoResponders => error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no responders on {subject}"),
            ),
            RequestErrorKind::TimedOut => error(
                StatusCode::GATEWAY_TIMEOUT,
                format!("no reply from {subject} within {timeout:?}"),
            ),
            _ => error(
                StatusCode::BAD_GATEWAY,
                format!("request to {subject} failed: {e}"),
            ),
        },
    }
}

async fn query(
    State(app): State<App>,
    Authenticated(session): Authenticated,
    Path(kind): Path<String>,
    JsonBody(body): JsonBody,
) -> Response {
    match kind.as_str() {
        "latest" | "range" | "series" | "count" => {
            forward(&app, &session, &format!("telemetry.query.{kind}"), body).await
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "no such query: use latest, range, series or count",
        ),
    }
}

/// A request in the upstream database format to `database_query`.
async fn history(
    State(app): State<App>,
    Authenticated(session): Authenticated,
    JsonBody(body): JsonBody,
) -> Response {
    let subject = app.settings.history_subject.clone();
    forward(&app, &session, &subject, body).await
}

async fn telecommand(
    State(app): State<App>,
    Authenticated(session): Authenticated,
    JsonBody(body): JsonBody,
) -> Response {
    let response = forward(&app, &session, "telecommand.send", body).await;
    if response.status() == StatusCode::GATEWAY_TIMEOUT {
        // Whatever timed out, the command was not confirmed, and it may have
        // been queued: say so (the telecommand service's own 504 says it
        // already).
        let (parts, body) = response.into_parts();
        let reason = axum::body::to_bytes(body, MAX_BODY)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if reason.contains("may still run") {
            return error(parts.status, reason);
        }
        return error(
            parts.status,
            format!("telecommand not confirmed, may still run: {reason}"),
        );
    }
    response
}

/// Counts an open live stream (in the hub and in its session); uncounts it
/// when dropped.
struct LiveSlot {
    hub: Arc<Hub>,
    session: Arc<Session>,
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.hub.open.fetch_sub(1, Ordering::SeqCst);
        self.session.live.fetch_sub(1, Ordering::SeqCst);
    }
}

fn take_slot(app: &App, session: &Arc<Session>) -> Result<LiveSlot, (StatusCode, String)> {
    let settings = &app.settings;
    if app.hub.open.fetch_add(1, Ordering::SeqCst) >= settings.max_live {
        app.hub.open.fetch_sub(1, Ordering::SeqCst);
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("at most {} live streams at once", settings.max_live),
        ));
    }
    if session.live.fetch_add(1, Ordering::SeqCst) >= settings.max_live_per_session {
        session.live.fetch_sub(1, Ordering::SeqCst);
        app.hub.open.fetch_sub(1, Ordering::SeqCst);
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "at most {} live streams per session",
                settings.max_live_per_session
            ),
        ));
    }
    Ok(LiveSlot {
        hub: app.hub.clone(),
        session: session.clone(),
    })
}

/// The live stream: the hub's messages until the client falls behind (a
/// last event `dropped`, then its connection is closed), the session ends
/// (event `signed-out`) or the service stops.
async fn live(
    State(app): State<App>,
    Authenticated(session): Authenticated,
    kill: Option<axum::Extension<Kill>>,
) -> Response {
    let slot = match take_slot(&app, &session) {
        Ok(slot) => slot,
        Err((status, reason)) => return error(status, reason),
    };
    let client = app.hub.join();
    let service = app.service.clone();
    let hub = app.hub.clone();
    let events = async_stream(move |yielder| async move {
        let _slot = slot;
        let stopped = service.stopped();
        tokio::pin!(stopped);
        loop {
            let next = tokio::select! {
                () = &mut stopped => return,
                () = session.ended() => {
                    yielder.send(Event::default().event("signed-out").data("")).await;
                    return;
                }
                next = client.next() => next,
            };
            match next {
                Next::Item((name, data)) => {
                    yielder
                        .send(Event::default().event(name).data(&*data))
                        .await;
                }
                Next::Dropped => {
                    telestion::tracing::warn!(
                        user = %session.user.escape_debug(),
                        dropped = hub.dropped.load(Ordering::Relaxed),
                        "a live stream fell behind and was dropped"
                    );
                    // The connection closes shortly whatever the client
                    // does; one that still reads learns why.
                    if let Some(axum::Extension(kill)) = &kill {
                        kill.close_soon();
                    }
                    yielder
                        .send(Event::default().event("dropped").data(""))
                        .await;
                    return;
                }
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Sends stream items from the producer task.
struct Yielder(tokio::sync::mpsc::Sender<Event>);

impl Yielder {
    async fn send(&self, event: Event) {
        let _ = self.0.send(event).await;
    }
}

/// A stream fed by `producer` through a channel of one item (so nothing
/// queues here: the hub's queue is the only buffer).
fn async_stream<F, Fut>(
    producer: F,
) -> impl futures::Stream<Item = Result<Event, Infallible>> + Send + 'static
where
    F: FnOnce(Yielder) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(producer(Yielder(sender)));
    let abort = task.abort_handle();
    futures::stream::unfold(
        (receiver, AbortOnDrop(abort)),
        |(mut receiver, guard)| async move {
            let event = receiver.recv().await?;
            Some((Ok(event), (receiver, guard)))
        },
    )
}

/// Stops the producer when the stream is dropped (the client went away).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
