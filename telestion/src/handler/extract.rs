//! Extractors: the types a handler takes as parameters, in any order. This
//! table is the list (the compiler's hints and the README point here):
//!
//! | extractor | what it gives | body |
//! | --- | --- | --- |
//! | [`Json<T>`] | the body decoded as JSON into `T` (a body that does not decode is rejected: 400) | yes |
//! | [`Bytes`](bytes::Bytes), `Vec<u8>` | the body as it is | yes |
//! | `String` | the body as UTF-8 text (other bytes are rejected: 400) | yes |
//! | [`Message`](async_nats::Message) | the whole NATS message (subject, reply, headers, body) | yes |
//! | [`Batch<T>`](crate::Batch) | a batch handler's messages, each extracted as `T` (a body extractor) | yes |
//! | [`Subject`] | the subject the message was published to | no |
//! | [`Headers`] | the message's headers (empty when it has none) | no |
//! | [`ReplyTo`] | the reply subject, when the sender expects a reply | no |
//! | [`Service`] | the service handle (publish, request, config, ...) | no |
//! | [`State<T>`] | shared state provided with [`Service::provide`](crate::Service::provide) | no |
//! | [`TypedConfig<T>`] | the configuration decoded into `T`, checked at start | no |
//! | [`DataDir`] | the service's own data directory, created and checked at start | no |
//!
//! At most one parameter consumes the body; the others combine freely. A
//! type of your own becomes an extractor by implementing [`FromMessage`];
//! it can reject a message with its own code and message
//! ([`ExtractError::reject`](crate::ExtractError::reject)), which is
//! counted, logged and answered like a rejection by the built-in ones.
//!
//! What an extractor needs from the service (state, typed config, the data
//! directory) is resolved once, when the route is subscribed
//! ([`FromMessage::prepare`]); a failure there fails the start, and the
//! work per message is a clone of what was prepared.
//!
//! Deviation from axum's two-trait design (body vs. parts): one trait over a
//! mutable borrow of the message keeps the API small; a body extractor takes
//! the body out (no copy), the others read.

use std::any::type_name;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{BoxError, ExtractError};
use crate::service::Service;

/// A message being handled, with the service that received it.
#[derive(Debug)]
pub struct Incoming {
    /// The NATS message.
    pub message: async_nats::Message,
    /// The receiving service.
    pub service: Service,
    /// For a batch handler's call: the messages of the batch, which a
    /// [`Batch<T>`](crate::Batch) parameter takes.
    pub(crate) batch: Option<Box<BatchParts>>,
}

/// The messages of one batch call, for the [`Batch`](crate::Batch)
/// parameter, and the ones it rejected.
#[derive(Debug, Default)]
pub(crate) struct BatchParts {
    pub(crate) messages: Vec<async_nats::Message>,
    pub(crate) rejected: Vec<(usize, ExtractError)>,
}

impl Incoming {
    /// A message received by `service` (to test an extractor, say).
    ///
    /// ```no_run
    /// # fn example(service: telestion::Service, message: telestion::Message) {
    /// let incoming = telestion::Incoming::new(message, service);
    /// assert!(incoming.message.reply.is_none());
    /// # }
    /// ```
    pub fn new(message: async_nats::Message, service: Service) -> Incoming {
        Incoming {
            message,
            service,
            batch: None,
        }
    }
}

/// A type a handler can take as a parameter.
///
/// ```
/// use telestion::{BoxError, ExtractError, FromMessage, Incoming, Service};
///
/// /// The number of bytes of the body, without taking it.
/// struct BodyLen(usize);
///
/// impl FromMessage for BodyLen {
///     type Context = ();
///     fn prepare(_: &Service) -> Result<(), BoxError> {
///         Ok(())
///     }
///     fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
///         Ok(BodyLen(incoming.message.payload.len()))
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler parameter",
    note = "handler parameters must be extractors: see the list in the docs of `telestion::extract` \
            (a type of your own becomes one by implementing `FromMessage`)"
)]
pub trait FromMessage: Sized + Send + 'static {
    /// Whether this extractor consumes the message body (at most one may).
    const BODY: bool = false;

    /// Whether this extractor takes a whole batch of messages
    /// ([`Batch<T>`](crate::Batch)); a handler that takes one must be
    /// subscribed with a batch size, and only such a handler may be.
    const BATCH: bool = false;

    /// What the extractor resolves once per route (use `()` for nothing).
    type Context: Send + Sync + 'static;

    /// Called once when the handler is subscribed: resolves what the
    /// extractor needs from the service, or fails the start with an error
    /// that says what to do (missing state, invalid typed config); a
    /// `String` or `&str` converts into it with `.into()`.
    fn prepare(service: &Service) -> Result<Self::Context, BoxError>;

    /// Extracts the value from a message. A body extractor
    /// ([`FromMessage::BODY`]) may take the body out of the message (a
    /// handler has at most one); every other extractor leaves it alone.
    fn from_message(incoming: &mut Incoming, context: &Self::Context)
    -> Result<Self, ExtractError>;

    /// The configuration keys this extractor reads, for `--help`.
    fn config_keys() -> Vec<String> {
        Vec::new()
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
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        serde_json::from_slice(&incoming.message.payload)
            .map(Json)
            .map_err(ExtractError::Json)
    }
}

impl FromMessage for Bytes {
    const BODY: bool = true;
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        // The only body extractor of the handler: take the body, no copy
        // and no reference-count traffic.
        Ok(std::mem::take(&mut incoming.message.payload))
    }
}

impl FromMessage for Vec<u8> {
    const BODY: bool = true;
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        // Reuses the allocation when the body is not shared.
        Ok(Vec::from(std::mem::take(&mut incoming.message.payload)))
    }
}

/// The body as UTF-8 text; a body that is not UTF-8 is a handler error.
impl FromMessage for String {
    const BODY: bool = true;
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        let body = Vec::from(std::mem::take(&mut incoming.message.payload));
        String::from_utf8(body).map_err(|e| ExtractError::Utf8(e.utf8_error()))
    }
}

/// The whole NATS message (subject, reply, headers, body).
impl FromMessage for async_nats::Message {
    const BODY: bool = true;
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
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
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
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
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        Ok(Headers(
            incoming.message.headers.clone().unwrap_or_default(),
        ))
    }
}

/// The reply subject, when the sender expects a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo(pub Option<String>);

impl FromMessage for ReplyTo {
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        Ok(ReplyTo(
            incoming.message.reply.as_ref().map(|s| s.to_string()),
        ))
    }
}

impl FromMessage for Service {
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        Ok(incoming.service.clone())
    }
}

/// Shared state provided in start-up code with
/// [`Service::provide`](crate::Service::provide), resolved once when the
/// route is subscribed (a missing state fails the start).
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
    type Context = Arc<T>;

    fn prepare(service: &Service) -> Result<Arc<T>, BoxError> {
        service.state::<T>().ok_or_else(|| {
            format!(
                "it takes `State<{0}>` but no `{0}` was provided; call \
                 `service.provide(value)` in the start-up code (the body of main)",
                type_name::<T>()
            )
            .into()
        })
    }

    fn from_message(_: &mut Incoming, state: &Arc<T>) -> Result<Self, ExtractError> {
        Ok(State(state.clone()))
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
    type Context = Arc<T>;

    fn prepare(service: &Service) -> Result<Arc<T>, BoxError> {
        Ok(service.typed_config::<T>()?)
    }

    fn from_message(_: &mut Incoming, config: &Arc<T>) -> Result<Self, ExtractError> {
        Ok(TypedConfig(config.clone()))
    }

    fn config_keys() -> Vec<String> {
        crate::config::field_names::<T>()
            .into_iter()
            .map(|field| field.to_ascii_uppercase())
            .collect()
    }
}

/// The service's own data directory (`$DATA_DIR/$SERVICE_NAME`), created
/// and checked to be writable when the route is subscribed: an unusable
/// `DATA_DIR` fails the start instead of every message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir(pub PathBuf);

impl Deref for DataDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl FromMessage for DataDir {
    type Context = PathBuf;

    fn prepare(service: &Service) -> Result<PathBuf, BoxError> {
        Ok(service.data_dir()?)
    }

    fn from_message(_: &mut Incoming, dir: &PathBuf) -> Result<Self, ExtractError> {
        Ok(DataDir(dir.clone()))
    }
}
