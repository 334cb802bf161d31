//! [`Batch<T>`]: the parameter of a batch handler, several messages in one
//! call. [`Route::batch`](crate::Route::batch) (or `batch = N` in
//! `#[subscribe]`) sets the size; the engine's `batch` module collects the
//! messages.

use std::ops::{Deref, DerefMut};

use crate::error::{BoxError, ExtractError};
use crate::handler::extract::{BatchParts, FromMessage, Incoming};
use crate::service::Service;

/// The window a batch waits for more messages after its first one, when
/// no other is given: 100 ms.
///
/// ```
/// assert_eq!(telestion::batch::DEFAULT_BATCH_WINDOW_MS, 100);
/// ```
pub const DEFAULT_BATCH_WINDOW_MS: u64 = telestion_rules::limits::DEFAULT_BATCH_WINDOW_MS;

/// The largest batch size: 10,000 messages.
///
/// ```
/// assert_eq!(telestion::batch::MAX_BATCH, 10_000);
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
        let Some(parts): Option<&mut BatchParts> = incoming.batch.as_deref_mut() else {
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
