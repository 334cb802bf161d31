//! Handlers: the [`Handler`] trait over functions of up to 12 extractor
//! arguments, the extractors (`extract`), return values and replies
//! (`reply`), handler errors (`error`) and blocking handlers (`blocking`).

pub(crate) mod batch;
pub(crate) mod blocking;
pub(crate) mod error;
pub mod extract;
pub(crate) mod reply;

use std::future::Future;

use crate::error::{BoxError, ExtractError};
use crate::handler::extract::{FromMessage, Incoming};
use crate::handler::reply::IntoReply;
use crate::service::Service;

/// A function usable as a message handler: `async fn` (or a closure
/// returning a future) whose parameters are all [`FromMessage`] extractors
/// and whose output is [`IntoReply`]. `Args` is the tuple of parameter types
/// (it only tells the implementations apart).
///
/// ```
/// use telestion::{Handler, Json};
///
/// async fn double(Json(x): Json<i64>) -> Json<i64> {
///     Json(2 * x)
/// }
///
/// fn assert_handler<Args, H: Handler<Args>>(_: H) {}
/// assert_handler(double);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a message handler",
    note = "a handler is an `async fn` (or a plain `fn`, run on the blocking pool) whose \
            parameters are extractors (see the list in the docs of `telestion::extract`) and \
            whose return type implements `IntoReply`"
)]
pub trait Handler<Args>: Clone + Send + Sync + 'static {
    /// The handler's future.
    type Future: Future<Output = Self::Output> + Send + 'static;
    /// What the handler returns.
    type Output: IntoReply;
    /// What its extractors resolve once per route.
    type Context: Send + Sync + 'static;
    /// Its arguments, extracted from a message (a tuple).
    type Extracted;

    /// Resolves the extractors' context when the route is subscribed; the
    /// error says which argument cannot be provided.
    fn prepare(service: &Service) -> Result<Self::Context, BoxError>;

    /// Extracts the arguments from a message.
    fn extract(
        incoming: &mut Incoming,
        context: &Self::Context,
    ) -> Result<Self::Extracted, ExtractError>;

    /// Calls the handler with extracted arguments. Calling it where its
    /// future is awaited (`handler.invoke(args).await`) builds the future
    /// in place; a handler's future easily holds a kilobyte, which moving it
    /// (out of a `Result`, say) copies.
    fn invoke(&self, args: Self::Extracted) -> Self::Future;

    /// Extracts the arguments and calls the handler.
    fn call(
        &self,
        incoming: &mut Incoming,
        context: &Self::Context,
    ) -> Result<Self::Future, ExtractError> {
        Ok(self.invoke(Self::extract(incoming, context)?))
    }

    /// The configuration keys its extractors read, for `--help`.
    fn config_keys() -> Vec<String>;

    /// Whether it takes a [`Batch<T>`](crate::Batch) (then its route needs
    /// a batch size).
    fn takes_batch() -> bool {
        false
    }
}

macro_rules! impl_handler {
    ($($ty:ident $idx:tt),*) => {
        impl<F, Fut, $($ty,)*> Handler<($($ty,)*)> for F
        where
            F: Fn($($ty),*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future + Send + 'static,
            Fut::Output: IntoReply,
            $($ty: FromMessage,)*
        {
            type Future = Fut;
            type Output = Fut::Output;
            type Context = ($($ty::Context,)*);
            type Extracted = ($($ty,)*);

            #[allow(unused_variables)]
            fn prepare(service: &Service) -> Result<Self::Context, BoxError> {
                let bodies = 0usize $(+ usize::from($ty::BODY))*;
                if bodies > 1 {
                    return Err(format!(
                        "it takes {bodies} body extractors; take at most one (the docs of \
                         `telestion::extract` list them)"
                    )
                    .into());
                }
                Ok(($($ty::prepare(service)?,)*))
            }

            #[allow(unused_variables)]
            #[inline]
            fn extract(
                incoming: &mut Incoming,
                context: &Self::Context,
            ) -> Result<Self::Extracted, ExtractError> {
                Ok(($($ty::from_message(incoming, &context.$idx)?,)*))
            }

            #[allow(unused_variables, clippy::unused_unit)]
            #[inline]
            fn invoke(&self, args: Self::Extracted) -> Fut {
                (self)($(args.$idx),*)
            }

            fn config_keys() -> Vec<String> {
                #[allow(unused_mut)]
                let mut keys = Vec::new();
                $(keys.extend($ty::config_keys());)*
                keys
            }

            fn takes_batch() -> bool {
                false $(|| $ty::BATCH)*
            }
        }
    };
}

impl_handler!();
impl_handler!(T1 0);
impl_handler!(T1 0, T2 1);
impl_handler!(T1 0, T2 1, T3 2);
impl_handler!(T1 0, T2 1, T3 2, T4 3);
impl_handler!(T1 0, T2 1, T3 2, T4 3, T5 4);
impl_handler!(T1 0, T2 1, T3 2, T4 3, T5 4, T6 5);
impl_handler!(T1 0, T2 1, T3 2, T4 3, T5 4, T6 5, T7 6);
impl_handler!(T1 0, T2 1, T3 2, T4 3, T5 4, T6 5, T7 6, T8 7);
impl_handler!(T1 0, T2 1, T3 2, T4 3, T5 4, T6 5, T7 6, T8 7, T9 8);
impl_handler!(T1 0, T2 1, T3 2, T4 3, T5 4, T6 5, T7 6, T8 7, T9 8, T10 9);
impl_handler!(T1 0, T2 1, T3 2, T4 3, T5 4, T6 5, T7 6, T8 7, T9 8, T10 9, T11 10);
impl_handler!(T1 0, T2 1, T3 2, T4 3, T5 4, T6 5, T7 6, T8 7, T9 8, T10 9, T11 10, T12 11);
