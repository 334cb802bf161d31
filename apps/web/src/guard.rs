//! What every request passes before a handler runs, and the headers every
//! response gets.
//!
//! - `Host` must be one of `WEB_HOSTS` (DNS rebinding: a name that points
//!   at this address from another site is not ours): otherwise 421
//!   Misdirected Request; a request without `Host` is 400.
//! - A write (any method but GET and HEAD) must carry `Origin` equal to one
//!   of the allowed origins (`http://` or `https://` and an allowed host):
//!   otherwise 403, also when `Origin` is missing; and `Content-Type:
//!   application/json`: otherwise 415. A page of another site can send
//!   neither without the browser asking this server first (CORS preflight,
//!   which is never allowed), and a form cannot send JSON.
//! - The body ([`JsonBody`]) is read within `WEB_HEADER_TIMEOUT` (408
//!   otherwise), at most 16 KiB (413), and must be one JSON value without
//!   duplicate object keys (400).
//! - Every response: `Content-Security-Policy: default-src 'self';
//!   frame-ancestors 'none'; base-uri 'none'; form-action 'self'`,
//!   `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`,
//!   `Referrer-Policy: no-referrer`, `Cache-Control: no-store`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

use crate::http::{App, error};
use crate::sessions::Session;
use crate::unique_keys;

/// The largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;

/// The session cookie's name.
pub const COOKIE: &str = "telestion_session";

const CSP: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The media type of `Content-Type`, without parameters, lower case.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

/// The checks of the module docs, then the response headers.
pub async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    let mut response = match check(&app, &request) {
        Ok(()) => next.run(request).await,
        Err((status, reason)) => error(status, reason),
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn check(app: &App, request: &Request) -> Result<(), (StatusCode, &'static str)> {
    let headers = request.headers();
    let Some(host) = headers.get(header::HOST) else {
        return Err((StatusCode::BAD_REQUEST, "no Host header"));
    };
    let host = host.to_str().unwrap_or_default().to_ascii_lowercase();
    if !app.settings.hosts.contains(&host) {
        return Err((
            StatusCode::MISDIRECTED_REQUEST,
            "this Host is not served here (WEB_HOSTS)",
        ));
    }
    if request.method() == Method::GET || request.method() == Method::HEAD {
        return Ok(());
    }
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_ascii_lowercase);
    if !origin.is_some_and(|o| app.origins.contains(&o)) {
        return Err((
            StatusCode::FORBIDDEN,
            "a write must come from this site's own page (Origin)",
        ));
    }
    if media_type(headers).as_deref() != Some("application/json") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be Content-Type: application/json",
        ));
    }
    Ok(())
}

/// A JSON request body, checked (see the module docs).
pub struct JsonBody(pub Bytes);

impl FromRequest<App> for JsonBody {
    type Rejection = Response;

    async fn from_request(request: Request, app: &App) -> Result<JsonBody, Response> {
        let body = request.into_body();
        let read = axum::body::to_bytes(body, MAX_BODY);
        let bytes = match telestion::tokio::time::timeout(app.settings.header_timeout, read).await {
            Err(_) => {
                return Err(error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body did not arrive in time",
                ));
            }
            Ok(Err(_)) => {
                return Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is over {} KiB or broken", MAX_BODY / 1024),
                ));
            }
            Ok(Ok(bytes)) => bytes,
        };
        unique_keys::check(&bytes).map_err(|reason| error(StatusCode::BAD_REQUEST, reason))?;
        Ok(JsonBody(bytes))
    }
}

/// The session token of the request's cookie, if any.
pub fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_owned())
        })
}

/// The request's open session: 401 otherwise.
pub struct Authenticated(pub Arc<Session>);

impl FromRequestParts<App> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Authenticated, Response> {
        token(&parts.headers)
            .and_then(|token| app.sessions.get(&token))
            .map(Authenticated)
            .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "sign in first"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            "a=1; telestion_session=abc".parse().unwrap(),
        );
        assert_eq!(token(&headers).as_deref(), Some("abc"));
        headers.clear();
        headers.append(header::COOKIE, "xtelestion_session=abc".parse().unwrap());
        assert_eq!(token(&headers), None);
    }

    #[test]
    fn the_media_type_ignores_parameters() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(media_type(&headers).as_deref(), Some("application/json"));
    }
}
