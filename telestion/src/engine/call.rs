//! The call step: extract the handler's arguments from a message, call it,
//! turn its return value into a reply, catch a panic; one [`Outcome`].
//! Every kind of route calls its handler through [`call!`] (or [`call`],
//! the same as a function).
//!
//! [`Outcome`]: super::outcome::Outcome

use crate::handler::Handler;
use crate::handler::extract::Incoming;

use super::outcome::Outcome;

/// Calls handler `$handler` (of type `H: Handler<Args>`, with its extractor
/// context `$context`) for `$incoming` (an `&mut Incoming`) and evaluates to
/// its [`Outcome`](super::outcome::Outcome). With a fourth argument, a
/// closure over the extracted incoming message that says whether to call
/// the handler at all (a batch whose every message was rejected is not
/// handled): when it says no, the outcome is `Done(Reply::None)`.
///
/// A macro rather than an `async fn`: on the hot path it expands into the
/// route's own loop, where it costs less than a nested future (measured:
/// about 130 instructions per message). The arguments are extracted first
/// and the handler is called where its future is awaited, so that future is
/// built in place: a handler's future easily holds a kilobyte, and building
/// it inside a `Result` and moving it out copied all of it for every
/// message.
macro_rules! call {
    ($handler:expr, $context:expr, $incoming:expr) => {
        $crate::engine::call::call!($handler, $context, $incoming, |_| true)
    };
    ($handler:expr, $context:expr, $incoming:expr, $proceed:expr) => {
        $crate::engine::outcome::Outcome::of($crate::engine::call::call_result!(
            $handler, $context, $incoming, $proceed
        ))
    };
}

/// [`call!`] before its result becomes an [`Outcome`]: the handler's reply,
/// a rejection or a panic, as a `std::thread::Result<Result<Reply,
/// ExtractError>>`. The core route's loop checks for the common case (no
/// reply, no failure) on this and builds an `Outcome` only otherwise.
///
/// [`Outcome`]: super::outcome::Outcome
macro_rules! call_result {
    ($handler:expr, $context:expr, $incoming:expr, $proceed:expr) => {{
        use ::futures::FutureExt as _;
        use $crate::handler::reply::IntoReply as _;
        let incoming: &mut $crate::handler::extract::Incoming = $incoming;
        ::std::panic::AssertUnwindSafe(async {
            let args = H::extract(&mut *incoming, $context)?;
            if !($proceed)(&*incoming) {
                return Ok($crate::handler::reply::Reply::None);
            }
            Ok($handler.invoke(args).await.into_reply())
        })
        .catch_unwind()
        .await
    }};
}

pub(crate) use {call, call_result};

/// [`call!`] as a function, for the routes that are not on a hot path.
pub(crate) async fn call_handler<H, Args>(
    handler: &H,
    context: &H::Context,
    incoming: &mut Incoming,
) -> Outcome
where
    H: Handler<Args>,
    Args: 'static,
{
    call!(handler, context, incoming)
}
