//! Blocking handlers: a plain (non-async) `fn` run on tokio's blocking
//! thread pool, with the same extractors and return values as an
//! `async fn` handler.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

use crate::error::{BoxError, ExtractError};
use crate::handler::Handler;
use crate::handler::extract::{FromMessage, Incoming};
use crate::handler::reply::IntoReply;
use crate::service::Service;

/// A plain `fn` handler that runs on the blocking thread pool
/// (`tokio::task::spawn_blocking`): it may block (file I/O, a serial port,
/// heavy computation) without stalling the service's other handlers or its
/// health answers. Parameters and return value are those of an `async fn`
/// handler; a panic is caught and answered like any handler's.
/// `#[subscribe]` on a non-async `fn` wraps it in `Blocking`;
/// [`Route::blocking`](crate::Route::blocking) does it by hand.
///
/// ```
/// use telestion::{Blocking, Json, Route};
///
/// fn checksum(body: Vec<u8>) -> Json<u32> {
///     Json(body.iter().map(|b| u32::from(*b)).sum())
/// }
///
/// let route = Route::new("files.checksum", Blocking(checksum)).concurrency(4);
/// # let _ = route;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Blocking<F>(pub F);

/// The future of a [`Blocking`] handler's call: its result from the
/// blocking pool (a panic there is resumed here, where the dispatch engine
/// catches it).
#[derive(Debug)]
pub struct BlockingCall<R>(JoinHandle<R>);

impl<R> Future for BlockingCall<R> {
    type Output = R;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(value)) => Poll::Ready(value),
            Poll::Ready(Err(error)) if error.is_panic() => {
                std::panic::resume_unwind(error.into_panic())
            }
            Poll::Ready(Err(error)) => panic!("the blocking handler was cancelled: {error}"),
        }
    }
}

macro_rules! impl_blocking {
    ($($ty:ident $idx:tt),*) => {
        #[diagnostic::do_not_recommend]
        impl<F, R, $($ty,)*> Handler<($($ty,)*)> for Blocking<F>
        where
            F: Fn($($ty),*) -> R + Clone + Send + Sync + 'static,
            R: IntoReply + Send + 'static,
            $($ty: FromMessage,)*
        {
            type Future = BlockingCall<R>;
            type Output = R;
            type Context = ($($ty::Context,)*);
            type Extracted = ($($ty,)*);

            fn prepare(service: &Service) -> Result<Self::Context, BoxError> {
                <fn($($ty),*) -> std::future::Ready<()> as Handler<($($ty,)*)>>::prepare(service)
            }

            #[allow(unused_variables)]
            fn extract(
                incoming: &mut Incoming,
                context: &Self::Context,
            ) -> Result<Self::Extracted, ExtractError> {
                Ok(($($ty::from_message(incoming, &context.$idx)?,)*))
            }

            #[allow(unused_variables, clippy::unused_unit)]
            fn invoke(&self, args: Self::Extracted) -> BlockingCall<R> {
                let function = self.0.clone();
                // The call's context goes along, for the lines it logs.
                let context = crate::observe::call_context::detach_current();
                BlockingCall(tokio::task::spawn_blocking(move || match context {
                    Some(context) => context.run(|| function($(args.$idx),*)),
                    None => function($(args.$idx),*),
                }))
            }

            fn config_keys() -> Vec<String> {
                <fn($($ty),*) -> std::future::Ready<()> as Handler<($($ty,)*)>>::config_keys()
            }

            fn takes_batch() -> bool {
                <fn($($ty),*) -> std::future::Ready<()> as Handler<($($ty,)*)>>::takes_batch()
            }
        }
    };
}

impl_blocking!();
impl_blocking!(T1 0);
impl_blocking!(T1 0, T2 1);
impl_blocking!(T1 0, T2 1, T3 2);
impl_blocking!(T1 0, T2 1, T3 2, T4 3);
impl_blocking!(T1 0, T2 1, T3 2, T4 3, T5 4);
impl_blocking!(T1 0, T2 1, T3 2, T4 3, T5 4, T6 5);
impl_blocking!(T1 0, T2 1, T3 2, T4 3, T5 4, T6 5, T7 6);
impl_blocking!(T1 0, T2 1, T3 2, T4 3, T5 4, T6 5, T7 6, T8 7);
impl_blocking!(T1 0, T2 1, T3 2, T4 3, T5 4, T6 5, T7 6, T8 7, T9 8);
impl_blocking!(T1 0, T2 1, T3 2, T4 3, T5 4, T6 5, T7 6, T8 7, T9 8, T10 9);
impl_blocking!(T1 0, T2 1, T3 2, T4 3, T5 4, T6 5, T7 6, T8 7, T9 8, T10 9, T11 10);
impl_blocking!(T1 0, T2 1, T3 2, T4 3, T5 4, T6 5, T7 6, T8 7, T9 8, T10 9, T11 10, T12 11);
