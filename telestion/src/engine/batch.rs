//! Batch handlers: one call for up to N messages, or for what arrived
//! within a time window, in arrival order. [`Batch<T>`] is the parameter;
//! [`Route::batch`](crate::Route::batch) (or `batch = N` in `#[subscribe]`)
//! sets the size. The core route's loop is here; the durable one (ack all
//! on success, redeliver all on failure) is in `durable.rs`.

use std::ops::{Deref, DerefMut};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Message, Subscriber};
use futures::{FutureExt, StreamExt};

use crate::engine::core::{RouteInfo, respond, warn_drain_unconfirmed};
use crate::error::{BoxError, ExtractError, error_chain};
use crate::handler::Handler;
use crate::handler::extract::{BatchParts, FromMessage, Incoming};
use crate::handler::reply::{IntoReply, Reply, send_error_reply};
use crate::observe::error_log::Severity;
use crate::observe::logging::Scoped;
use crate::service::Service;

/// The window a batch waits for more messages after its first one, when
/// no other is given: 100 ms.
///
/// ```
/// assert_eq!(telestion::DEFAULT_BATCH_WINDOW_MS, 100);
/// ```
pub const DEFAULT_BATCH_WINDOW_MS: u64 = telestion_rules::limits::DEFAULT_BATCH_WINDOW_MS;

/// The largest batch size: 10,000 messages.
///
/// ```
/// assert_eq!(telestion::MAX_BATCH, 10_000);
/// ```
pub const MAX_BATCH: usize = telestion_rules::limits::MAX_BATCH;

/// Several messages handled in one call: the parameter of a batch handler,
/// each message extracted as `T` (`Json<X>`, `Bytes`, `Message`, ...), in
/// arrival order. A handler takes at most one `Batch<T>` and no other body
/// parameter; `Service`, `State<S>`, `TypedConfig<C>` and `DataDir` may be
/// taken beside it.
///
/// A message that `T` rejects (a body that is not valid JSON for `X`, say)
/// is left out of the batch and counted, logged and answered as a rejected
/// message (code 400); a durable one is redelivered and, after
/// `DURABLE_MAX_DELIVER` deliveries, dead-lettered, like any failed durable
/// message. The handler is not called when every message was rejected.
///
/// ```
/// use std::time::Duration;
/// use telestion::{Batch, Json, Route};
///
/// async fn store(readings: Batch<Json<f64>>) -> Result<(), String> {
///     let sum: f64 = readings.iter().map(|reading| reading.0).sum();
///     println!("{} readings, sum {sum}", readings.len());
///     Ok(())
/// }
///
/// // Up to 100 messages, or what arrived within 50 ms of the first one.
/// let route = Route::new("sensors.>", store).batch(100, Duration::from_millis(50));
/// # let _ = route;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<T>(pub Vec<T>);

impl<T> Batch<T> {
    /// The extracted messages, in arrival order.
    ///
    /// ```
    /// let batch = telestion::Batch(vec![1, 2]);
    /// assert_eq!(batch.into_inner(), [1, 2]);
    /// ```
    pub fn into_inner(self) -> Vec<T> {
        self.0
    }
}

impl<T> Deref for Batch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> DerefMut for Batch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<T> IntoIterator for Batch<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, T> IntoIterator for &'a Batch<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: FromMessage> FromMessage for Batch<T> {
    const BODY: bool = true;
    const BATCH: bool = true;
    type Context = T::Context;

    fn prepare(service: &Service) -> Result<T::Context, BoxError> {
        if T::BATCH {
            return Err(
                "it takes a batch of batches; take `Batch<T>` once, with T a \
                        per-message extractor such as `Json<X>`"
                    .into(),
            );
        }
        T::prepare(service)
    }

    fn from_message(incoming: &mut Incoming, context: &T::Context) -> Result<Self, ExtractError> {
        let Some(parts) = incoming.batch.as_deref_mut() else {
            // Not called by a batch route (the start refuses that): one
            // message is a batch of one.
            return Ok(Batch(vec![T::from_message(incoming, context)?]));
        };
        let messages = std::mem::take(&mut parts.messages);
        let mut items = Vec::with_capacity(messages.len());
        for (index, message) in messages.into_iter().enumerate() {
            let mut one = Incoming::new(message, incoming.service.clone());
            match T::from_message(&mut one, context) {
                Ok(item) => items.push(item),
                Err(error) => parts.rejected.push((index, error)),
            }
        }
        Ok(Batch(items))
    }

    fn config_keys() -> Vec<String> {
        T::config_keys()
    }
}

/// A route's batch size and window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchSpec {
    pub(crate) max: usize,
    pub(crate) window: Duration,
}

/// What one call of a batch handler came to.
pub(crate) struct BatchCall {
    /// The handler's outcome; `None` when it was not called (every message
    /// was rejected).
    pub(crate) outcome: Option<std::thread::Result<Result<Reply, ExtractError>>>,
    /// The messages the `Batch<T>` parameter rejected, by index.
    pub(crate) rejected: Vec<(usize, ExtractError)>,
    /// How long the call took.
    pub(crate) elapsed: Duration,
}

impl BatchCall {
    /// The failure of the call as a whole, with its reply code.
    pub(crate) fn failure(&self) -> Option<(String, u16)> {
        match self.outcome.as_ref()? {
            Ok(Ok(Reply::Error { code, message })) => Some((message.clone(), *code)),
            Ok(Ok(_)) => None,
            Ok(Err(error)) => Some((
                format!("cannot handle the batch: {}", error_chain(error)),
                400,
            )),
            Err(panic) => Some((
                format!(
                    "handler panicked: {}",
                    crate::observe::logging::panic_message(&**panic)
                ),
                500,
            )),
        }
    }
}

/// Calls a batch handler once for `messages` (their clones go into the
/// [`Batch`] parameter; the caller keeps the originals for replies, acks
/// and dead letters), with panics caught and the handler's name recorded
/// for the panic hook.
pub(crate) async fn call_batch<H, Args>(
    handler: &H,
    context: &H::Context,
    service: &Service,
    messages: &[Message],
    name: &Arc<str>,
) -> BatchCall
where
    H: Handler<Args>,
    Args: 'static,
{
    let started = Instant::now();
    let total = messages.len();
    // What the other parameters see: the first message's subject, no body,
    // no headers, no reply subject.
    let mut first = crate::engine::timer::tick_message("");
    if let Some(message) = messages.first() {
        first.subject = message.subject.clone();
    }
    let mut incoming = Incoming::new(first, service.clone());
    incoming.batch = Some(Box::new(BatchParts {
        messages: messages.to_vec(),
        rejected: Vec::new(),
    }));
    let call = AssertUnwindSafe(async {
        let args = H::extract(&mut incoming, context)?;
        let rejected = incoming
            .batch
            .as_ref()
            .map_or(0, |parts| parts.rejected.len());
        if rejected == total {
            return Ok(None);
        }
        Ok(Some(handler.invoke(args).await.into_reply()))
    })
    .catch_unwind();
    let outcome = Scoped {
        future: std::pin::pin!(call),
        name,
    }
    .await;
    let rejected = incoming
        .batch
        .take()
        .map(|parts| parts.rejected)
        .unwrap_or_default();
    let outcome = match outcome {
        Ok(Ok(None)) => None,
        Ok(Ok(Some(reply))) => Some(Ok(Ok(reply))),
        Ok(Err(error)) => Some(Ok(Err(error))),
        Err(panic) => Some(Err(panic)),
    };
    BatchCall {
        outcome,
        rejected,
        elapsed: started.elapsed(),
    }
}

/// Runs a core batch route until its subscription ends: collect up to
/// `max` messages or what arrives within `window` of the first, call the
/// handler once, answer every request. At shutdown the subscription is
/// drained like any route's (bounded by `SHUTDOWN_TIMEOUT`), and what
/// arrives is still handled in batches.
pub(crate) async fn run_batch_route<H, Args>(
    handler: H,
    context: Arc<H::Context>,
    service: Service,
    mut subscriber: Subscriber,
    info: Arc<RouteInfo>,
    spec: BatchSpec,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let stop = service.stopped();
    tokio::pin!(stop);
    let mut deadline: Option<Instant> = None;
    let mut pending: Vec<Message> = Vec::with_capacity(spec.max.min(1024));
    loop {
        // The first message of the next batch.
        let first = match deadline {
            Some(limit) => match tokio::time::timeout_at(limit.into(), subscriber.next()).await {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(_) => {
                    // The server did not confirm the drain: handle what the
                    // client holds, then stop.
                    let mut left = 0;
                    while let Some(Some(message)) = subscriber.next().now_or_never() {
                        pending.push(message);
                        left += 1;
                        if pending.len() >= spec.max {
                            handle_core_batch(&handler, &context, &service, &info, &pending).await;
                            pending.clear();
                        }
                    }
                    if !pending.is_empty() {
                        handle_core_batch(&handler, &context, &service, &info, &pending).await;
                        pending.clear();
                    }
                    warn_drain_unconfirmed(&service, &info, left);
                    break;
                }
            },
            None => tokio::select! {
                biased;
                message = subscriber.next() => match message {
                    Some(message) => message,
                    None => break,
                },
                () = &mut stop => {
                    let limit = Instant::now() + service.server_wait();
                    deadline = Some(limit);
                    if let Ok(Err(e)) = tokio::time::timeout_at(limit.into(), subscriber.drain()).await {
                        tracing::warn!(handler = %info.name, error = %e, "cannot drain subscription");
                    }
                    continue;
                }
            },
        };
        pending.push(first);
        // The rest of the batch: up to `max`, within the window (and the
        // drain's limit).
        let mut window_end = Instant::now() + spec.window;
        if let Some(limit) = deadline {
            window_end = window_end.min(limit);
        }
        let mut ended = false;
        while pending.len() < spec.max {
            match tokio::time::timeout_at(window_end.into(), subscriber.next()).await {
                Ok(Some(message)) => pending.push(message),
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(_) => break,
            }
        }
        handle_core_batch(&handler, &context, &service, &info, &pending).await;
        pending.clear();
        if ended {
            break;
        }
    }
    tracing::debug!(handler = %info.name, subject = %info.subject, "route stopped");
}

/// Calls the handler for one batch of core messages and settles it:
/// rejected messages are answered one by one; the return value is
/// published once to the publish targets and sent to every request of the
/// batch; a failure is counted per message, logged once and answered to
/// every request.
async fn handle_core_batch<H, Args>(
    handler: &H,
    context: &H::Context,
    service: &Service,
    info: &RouteInfo,
    messages: &[Message],
) where
    H: Handler<Args>,
    Args: 'static,
{
    let call = call_batch(handler, context, service, messages, &info.name).await;
    let failure = call.failure();
    let mut rejected = vec![false; messages.len()];
    let elapsed = call.elapsed;
    for (index, error) in call.rejected {
        if let Some(message) = messages.get(index) {
            rejected[index] = true;
            respond(service, Ok(Err(error)), message, info).await;
        }
    }
    let accepted = || {
        messages
            .iter()
            .zip(&rejected)
            .filter(|(_, rejected)| !**rejected)
            .map(|(message, _)| message)
    };
    let failed = failure.is_some();
    match (call.outcome, failure) {
        (None, _) => {}
        (Some(_), Some((error, code))) => {
            let error = crate::text::bounded(&error);
            let count = accepted().count() as u64;
            for _ in 0..count {
                service.record_error();
            }
            info.stats.record_error(count, &error);
            let subject = messages.first().map_or("", |m| m.subject.as_str());
            info.errors.log(
                &info.name,
                subject,
                &format!("{error} (a batch of {count} messages)"),
                Severity::of_code(code),
            );
            for message in accepted() {
                if let Some(reply_to) = &message.reply {
                    send_error_reply(service, reply_to.to_string(), &error, code).await;
                }
            }
        }
        (Some(Ok(Ok(reply))), None) => {
            let (headers, payload) = match reply {
                Reply::Body { payload, headers } => {
                    for target in &info.publish {
                        if let Err(e) = service
                            .publish_inner(target.clone(), headers.clone(), payload.clone())
                            .await
                        {
                            tracing::error!(handler = %info.name, target = %target, error = %e, "cannot publish the return value");
                        }
                    }
                    (headers, payload)
                }
                Reply::Empty => (None, bytes::Bytes::new()),
                // `()`: nothing to send.
                _ => {
                    info.stats.record(messages.len() as u64, elapsed, false);
                    return;
                }
            };
            for message in accepted() {
                if let Some(reply_to) = &message.reply
                    && let Err(e) = service
                        .publish_inner(reply_to.to_string(), headers.clone(), payload.clone())
                        .await
                {
                    tracing::error!(handler = %info.name, subject = %message.subject, error = %e, "cannot send reply");
                }
            }
        }
        (Some(_), None) => {}
    }
    info.stats.record(messages.len() as u64, elapsed, failed);
}
