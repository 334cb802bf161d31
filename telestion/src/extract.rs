//! Extractors: the types a handler may take as parameters, in any order.
//!
//! Each parameter type implements [`FromMessage`]. At most one of them may
//! consume the body ([`FromMessage::BODY`]): [`Json<T>`], [`Bytes`],
//! `Vec<u8>`, `String` or the whole [`Message`](async_nats::Message). The others ([`Subject`],
//! [`Headers`], [`ReplyTo`], [`Service`], [`State<T>`], [`TypedConfig<T>`])
//! can be combined freely.
//!
//! Deviation from axum's two-trait design (body vs. parts): one trait over a
//! mutable borrow of the message keeps the API small; a body extractor takes
//! the body out (no copy), the others read. The one-body rule is checked by
//! the `#[subscribe]` macro at compile time (spanned at the second body
//! parameter) and by [`Route`](crate::Route) at start.

use std::any::type_name;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::ExtractError;
use crate::service::Service;

/// A message being handled, with the service that received it.
#[derive(Debug)]
pub struct Incoming {
    /// The NATS message.
    pub message: async_nats::Message,
    /// The receiving service.
    pub service: Service,
}

/// A type a handler can take as a parameter.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler parameter",
    note = "handler parameters must be extractors: `Json<T>`, `Bytes`, `Vec<u8>`, `String`, \
            `Message` (body, at most one), or `Subject`, `Headers`, `ReplyTo`, `Service`, \
            `State<T>`, `TypedConfig<T>`"
)]
pub trait FromMessage: Sized + Send + 'static {
    /// Whether this extractor consumes the message body (at most one may).
    const BODY: bool = false;

    /// Extracts the value from a message. A body extractor
    /// ([`FromMessage::BODY`]) may take the body out of the message (a
    /// handler has at most one); every other extractor leaves it alone.
    fn from_message(incoming: &mut Incoming) -> Result<Self, ExtractError>;

    /// Checked once when the handler is subscribed: fails the start when the
    /// service cannot provide this extractor (missing state, invalid typed
    /// config).
    fn check(service: &Service) -> Result<(), String> {
        let _ = service;
        Ok(())
    }
}

/// A JSON body decoded into `T` (or, as a return value, `T` encoded as the
/// JSON reply). A body that is not valid JSON for `T` is a handler error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T> Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Json<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: DeserializeOwned + Send + 'static> FromMessage for Json<T> {
    const BODY: bool = true;
    fn from_message(incoming: &mut Incoming) -> Result<Self, ExtractError> {
        serde_json::from_slice(&incoming.message.payload)
            .map(Json)
            .map_err(ExtractError::Json)
    }
}

impl FromMessage for Bytes {
    const BODY: bool = true;
    fn from_message(incoming: &mut Incoming) -> Result<Self, ExtractError> {
        // The only body extractor of the handler: take the body, no copy
        // and no reference-count traffic.
        Ok(std::mem::take(&mut incoming.message.payload))
    }
}

impl FromMessage for Vec<u8> {
    const BODY: bool = true;
    fn from_message(incoming: &mut Incoming) -> Result<Self, ExtractError> {
        // Reuses the allocation when the body is not shared.
        Ok(Vec::from(std::mem::take(&mut incoming.message.payload)))
    }
}

/// The body as UTF-8 text; a body that is not UTF-8 is a handler error.
impl FromMessage for String {
    const BODY: bool = true;
    fn from_message(incoming: &mut Incoming) -> Result<Self, ExtractError> {
        let body = Vec::from(std::mem::take(&mut incoming.message.payload));
        String::from_utf8(body).map_err(|e| ExtractError::Utf8(e.utf8_error()))
    }
}

/// The whole NATS message (subject, reply, headers, body).
impl FromMessage for async_nats::Message {
    const BODY: bool = true;
    fn from_message(incoming: &mut Incoming) -> Result<Self, ExtractError> {
        Ok(incoming.message.clone())
    }
}

/// The subject the message was published to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(pub String);

impl Deref for Subject {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl FromMessage for Subject {
    fn from_message(incoming: &mut Incoming) -> Result<Self, ExtractError> {
        Ok(Subject(incoming.message.subject.to_string()))
    }
}

/// The message headers (empty when it has none).
#[derive(Debug, Clone, Default)]
pub struct Headers(pub async_nats::HeaderMap);

impl Deref for Headers {
    type Target = async_nats::HeaderMap;
    fn deref(&self) -> &async_nats::HeaderMap {
        &self.0
    }
}

impl FromMessage for Headers {
    fn from_message(incoming: &mut Incoming) -> Result<Self, ExtractError> {
        Ok(Headers(
            incoming.message.headers.clone().unwrap_or_default(),
        ))
    }
}

/// The reply subject, when the sender expects a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo(pub Option<String>);

impl FromMessage for ReplyTo {
    fn from_message(incoming: &mut Incoming) -> Result<Self, ExtractError> {
        Ok(ReplyTo(
            incoming.message.reply.as_ref().map(|s| s.to_string()),
        ))
    }
}

impl FromMessage for Service {
    fn from_message(incoming: &mut Incoming) -> Result<Self, ExtractError> {
        Ok(incoming.service.clone())
    }
}

/// Shared state provided in start-up code with
/// [`Service::provide`](crate::Service::provide).
#[derive(Debug)]
pub struct State<T>(pub Arc<T>);

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State(self.0.clone())
    }
}

impl<T> Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Send + Sync + 'static> FromMessage for State<T> {
    fn from_message(incoming: &mut Incoming) -> Result<Self, ExtractError> {
        incoming
            .service
            .state::<T>()
            .map(State)
            .ok_or_else(|| ExtractError::Other(format!("no state of type `{}`", type_name::<T>())))
    }

    fn check(service: &Service) -> Result<(), String> {
        match service.state::<T>() {
            Some(_) => Ok(()),
            None => Err(format!(
                "it takes `State<{0}>` but no `{0}` was provided; call \
                 `service.provide(value)` in the start-up code (the body of main)",
                type_name::<T>()
            )),
        }
    }
}

/// The merged configuration decoded into `T` (see
/// [`Config::typed`](crate::Config::typed)), decoded and validated once when
/// the handler is subscribed: invalid config fails the start.
#[derive(Debug)]
pub struct TypedConfig<T>(pub Arc<T>);

impl<T> Clone for TypedConfig<T> {
    fn clone(&self) -> Self {
        TypedConfig(self.0.clone())
    }
}

impl<T> Deref for TypedConfig<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> FromMessage for TypedConfig<T> {
    fn from_message(incoming: &mut Incoming) -> Result<Self, ExtractError> {
        incoming
            .service
            .typed_config::<T>()
            .map(TypedConfig)
            .map_err(|e| ExtractError::Other(e.to_string()))
    }

    fn check(service: &Service) -> Result<(), String> {
        service
            .typed_config::<T>()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
