//! The [`Handler`] trait over functions of up to 12 extractor arguments, and
//! [`IntoReply`], which turns a handler's return value into a reply.

use std::fmt::Display;
use std::future::Future;

use bytes::Bytes;
use serde::Serialize;

use crate::error::ExtractError;
use crate::extract::{FromMessage, Incoming, Json};
use crate::service::Service;

/// What a handler's return value means for a message that has a reply subject.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Reply {
    /// Send nothing (the handler may have replied itself).
    None,
    /// Reply with this body and optional headers.
    Body {
        /// The reply body.
        payload: Bytes,
        /// Headers to send with it.
        headers: Option<async_nats::HeaderMap>,
    },
    /// The handler failed: count and log the error, and send an error reply.
    Error(String),
}

/// Turns a handler's return value into a [`Reply`].
///
/// | return type | reply |
/// | --- | --- |
/// | `()` | none |
/// | `Json<T>` | `T` as JSON |
/// | `Bytes`, `Vec<u8>`, `String`, `&'static str` | the body as is |
/// | `Option<T>` | `None` → empty body, `Some(t)` → `t`'s reply |
/// | `Result<T, E: Display>` | `Ok(t)` → `t`'s reply, `Err(e)` → error |
///
/// An error is counted in health, logged with subject and handler name and,
/// when the message has a reply subject, answered with an error reply: body
/// `{"error": "<message>"}` and headers `Nats-Service-Error: <message>`,
/// `Nats-Service-Error-Code: 500` (the NATS micro-service convention).
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
            Err(e) => Reply::Error(format!("cannot encode the JSON reply: {e}")),
        }
    }
}

impl<T: IntoReply> IntoReply for Option<T> {
    fn into_reply(self) -> Reply {
        match self {
            Some(value) => value.into_reply(),
            None => body(Bytes::new()),
        }
    }
}

impl<T: IntoReply, E: Display> IntoReply for Result<T, E> {
    fn into_reply(self) -> Reply {
        match self {
            Ok(value) => value.into_reply(),
            Err(e) => Reply::Error(e.to_string()),
        }
    }
}

/// A function usable as a message handler: `async fn` (or a closure
/// returning a future) whose parameters are all [`FromMessage`] extractors
/// and whose output is [`IntoReply`]. `Args` is the tuple of parameter types
/// (it only tells the implementations apart).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a message handler",
    note = "a handler is an `async fn` whose parameters are extractors (`Json<T>`, `Bytes`, \
            `String`, `Message`, `Subject`, `Headers`, `ReplyTo`, `Service`, `State<T>`, \
            `TypedConfig<T>`) and whose return type implements `IntoReply`"
)]
pub trait Handler<Args>: Clone + Send + Sync + 'static {
    /// The handler's future.
    type Future: Future<Output = Self::Output> + Send + 'static;
    /// What the handler returns.
    type Output: IntoReply;

    /// Extracts the arguments and calls the handler.
    fn call(&self, incoming: &mut Incoming) -> Result<Self::Future, ExtractError>;

    /// Checks, at subscribe time, that every argument can be provided.
    fn check(service: &Service) -> Result<(), String>;
}

macro_rules! impl_handler {
    ($($ty:ident),*) => {
        impl<F, Fut, $($ty,)*> Handler<($($ty,)*)> for F
        where
            F: Fn($($ty),*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future + Send + 'static,
            Fut::Output: IntoReply,
            $($ty: FromMessage,)*
        {
            type Future = Fut;
            type Output = Fut::Output;

            #[allow(unused_variables)]
            fn call(&self, incoming: &mut Incoming) -> Result<Fut, ExtractError> {
                Ok((self)($($ty::from_message(incoming)?),*))
            }

            #[allow(unused_variables)]
            fn check(service: &Service) -> Result<(), String> {
                let bodies = 0usize $(+ usize::from($ty::BODY))*;
                if bodies > 1 {
                    return Err(format!(
                        "it takes {bodies} body extractors; take at most one of `Json<T>`, \
                         `Bytes`, `Vec<u8>`, `String`, `Message`"
                    ));
                }
                $($ty::check(service)?;)*
                Ok(())
            }
        }
    };
}

impl_handler!();
impl_handler!(T1);
impl_handler!(T1, T2);
impl_handler!(T1, T2, T3);
impl_handler!(T1, T2, T3, T4);
impl_handler!(T1, T2, T3, T4, T5);
impl_handler!(T1, T2, T3, T4, T5, T6);
impl_handler!(T1, T2, T3, T4, T5, T6, T7);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8, T9);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12);
