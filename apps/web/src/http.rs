//! The HTTP side: the page, the live stream and the NATS requests.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use telestion::tokio::sync::broadcast::error::RecvError;
use telestion::{Service, ServiceError};

use crate::Hub;

/// The largest request body accepted.
const MAX_BODY: usize = 16 * 1024;

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("app.js");

#[derive(Clone)]
struct App {
    service: Service,
    hub: Arc<Hub>,
}

/// Serves until the service stops.
pub async fn serve(
    listener: telestion::tokio::net::TcpListener,
    service: Service,
    hub: Arc<Hub>,
) -> std::io::Result<()> {
    let stopped = service.stopped();
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], SCRIPT) }),
        )
        .route("/api/live", get(live))
        .route("/api/query/{kind}", post(query))
        .route("/api/history", post(history))
        .route("/api/telecommand", post(telecommand))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(App { service, hub });
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = serde_json::json!({ "error": message.to_string() });
    (status, axum::Json(body)).into_response()
}

/// Forwards `body` as a NATS request to `subject`; the reply (or its error)
/// becomes the response.
async fn forward(app: &App, subject: &str, body: Bytes) -> Response {
    let timeout = app.hub.request_timeout;
    let reply =
        telestion::tokio::time::timeout(timeout, app.service.request(subject.to_owned(), body))
            .await;
    match reply {
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("no reply from {subject} within {timeout:?}"),
        ),
        Ok(Ok(message)) => (
            [(header::CONTENT_TYPE, "application/json")],
            message.payload,
        )
            .into_response(),
        Ok(Err(ServiceError::Remote { code, message, .. })) => error(
            StatusCode::from_u16(code)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::BAD_GATEWAY),
            message,
        ),
        Ok(Err(e @ ServiceError::NoResponders { .. })) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Ok(Err(e @ ServiceError::Timeout { .. })) => error(StatusCode::GATEWAY_TIMEOUT, e),
        Ok(Err(e)) => error(StatusCode::BAD_GATEWAY, e),
    }
}

async fn query(State(app): State<App>, Path(kind): Path<String>, body: Bytes) -> Response {
    match kind.as_str() {
        "latest" | "range" | "series" | "count" => {
            forward(&app, &format!("telemetry.query.{kind}"), body).await
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no query {kind:?}: use latest, range, series or count"),
        ),
    }
}

/// A request in the upstream database format to `database_query`.
async fn history(State(app): State<App>, body: Bytes) -> Response {
    let subject = app.hub.history_subject.clone();
    forward(&app, &subject, body).await
}

async fn telecommand(State(app): State<App>, body: Bytes) -> Response {
    let response = forward(&app, "telecommand.send", body).await;
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

/// Counts an open live stream; uncounts it when dropped.
struct LiveSlot(Arc<Hub>);

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

type Stopped = Pin<Box<dyn Future<Output = ()> + Send>>;

async fn live(State(app): State<App>) -> Response {
    let hub = app.hub.clone();
    if hub.live.fetch_add(1, Ordering::SeqCst) >= hub.max_live {
        hub.live.fetch_sub(1, Ordering::SeqCst);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("at most {} live streams at once", hub.max_live),
        );
    }
    let slot = LiveSlot(hub.clone());
    let receiver = hub.sender.subscribe();
    let stopped: Stopped = Box::pin(app.service.stopped());
    let events = futures::stream::unfold(
        (receiver, slot, stopped),
        |(mut receiver, slot, mut stopped)| async move {
            let event = telestion::tokio::select! {
                _ = &mut stopped => return None,
                received = receiver.recv() => match received {
                    Ok((name, data)) => Event::default().event(name).data(&*data),
                    Err(RecvError::Lagged(skipped)) => {
                        Event::default().event("lagged").data(skipped.to_string())
                    }
                    Err(RecvError::Closed) => return None,
                },
            };
            Some((Ok::<_, Infallible>(event), (receiver, slot, stopped)))
        },
    );
    sse(events).into_response()
}

fn sse(
    events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(events).keep_alive(KeepAlive::default())
}
