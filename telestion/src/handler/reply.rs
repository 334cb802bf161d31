//! Replies: [`IntoReply`] turns a handler's return value into a [`Reply`],
//! and error replies follow the NATS micro-services convention.

use std::fmt::Display;

use bytes::Bytes;
use serde::Serialize;

use crate::handler::extract::Json;

/// What a handler's return value means for a message.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Reply {
    /// Send nothing (the handler may have replied itself).
    None,
    /// Reply with an empty body (`None` of an `Option`): nothing is
    /// published to the route's publish targets.
    Empty,
    /// Reply with this body and optional headers (and publish them to the
    /// route's publish targets).
    Body {
        /// The reply body.
        payload: Bytes,
        /// Headers to send with it.
        headers: Option<async_nats::HeaderMap>,
    },
    /// The handler failed: count and log the error, and send an error reply.
    Error {
        /// `Nats-Service-Error-Code`: 4xx when the message was at fault,
        /// 5xx when the handler was.
        code: u16,
        /// `Nats-Service-Error`.
        message: String,
    },
}

impl Reply {
    /// A failure with code 500.
    pub fn error(message: impl Into<String>) -> Reply {
        Reply::Error {
            code: 500,
            message: message.into(),
        }
    }
}

/// Turns a handler's return value into a [`Reply`].
///
/// | return type | reply |
/// | --- | --- |
/// | `()` | none |
/// | `Json<T>` | `T` as JSON |
/// | `Bytes`, `Vec<u8>`, `String`, `&'static str` | the body as is |
/// | `Option<T>` | `None` → empty body (nothing published), `Some(t)` → `t`'s reply |
/// | `Result<T, E: Display>` | `Ok(t)` → `t`'s reply, `Err(e)` → error 500 |
/// | `Result<T, HandlerError>` | `Ok(t)` → `t`'s reply, `Err(e)` → error with `e`'s code |
///
/// An error is counted in health, logged with subject and handler name (at
/// WARN for codes 4xx, such as a rejected body, at ERROR otherwise;
/// identical repeats are summarised, see
/// [`REPEATED_ERROR_LOG_SECS`](crate::REPEATED_ERROR_LOG_SECS)) and,
/// when the message has a reply subject, answered with an error reply: body
/// `{"error": "<message>"}` and headers `Nats-Service-Error: <message>`,
/// `Nats-Service-Error-Code: 500` (or the [`HandlerError`](crate::HandlerError)'s
/// code; the NATS micro-service convention).
///
/// ```
/// use telestion::{IntoReply, Json, Reply};
/// assert!(matches!(().into_reply(), Reply::None));
/// assert!(matches!(Json(1).into_reply(), Reply::Body { .. }));
/// let failed: Result<String, String> = Err("no".into());
/// assert!(matches!(failed.into_reply(), Reply::Error { code: 500, .. }));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a handler",
    note = "handlers return `()`, `Json<T>`, `Bytes`, `Vec<u8>`, `String`, `&'static str`, \
            or `Result<T, E: Display>` / `Option<T>` of those"
)]
pub trait IntoReply {
    /// The reply.
    fn into_reply(self) -> Reply;
}

impl IntoReply for Reply {
    fn into_reply(self) -> Reply {
        self
    }
}

impl IntoReply for () {
    fn into_reply(self) -> Reply {
        Reply::None
    }
}

fn body(payload: impl Into<Bytes>) -> Reply {
    Reply::Body {
        payload: payload.into(),
        headers: None,
    }
}

impl IntoReply for Bytes {
    fn into_reply(self) -> Reply {
        body(self)
    }
}

impl IntoReply for Vec<u8> {
    fn into_reply(self) -> Reply {
        body(self)
    }
}

impl IntoReply for String {
    fn into_reply(self) -> Reply {
        body(self)
    }
}

impl IntoReply for &'static str {
    fn into_reply(self) -> Reply {
        body(self)
    }
}

impl<T: Serialize> IntoReply for Json<T> {
    fn into_reply(self) -> Reply {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => body(bytes),
            Err(e) => Reply::error(format!("cannot encode the JSON reply: {e}")),
        }
    }
}

impl<T: IntoReply> IntoReply for Option<T> {
    fn into_reply(self) -> Reply {
        match self {
            Some(value) => value.into_reply(),
            None => Reply::Empty,
        }
    }
}

impl<T: IntoReply, E: Display> IntoReply for Result<T, E> {
    fn into_reply(self) -> Reply {
        match self {
            Ok(value) => value.into_reply(),
            Err(e) => Reply::error(e.to_string()),
        }
    }
}
