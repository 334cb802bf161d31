//! A route's settings after its kind: publish targets, the subject's
//! default, queue group, concurrency, batches, durability, the name; and
//! what a route says about itself.

use super::kind::{Delivery, Kind, Messages};
use super::publish_target::PublishTarget;
use super::{QueueGroup, Route, SubjectSource};
use crate::engine::batch::BatchSpec;
use crate::jetstream::settings::Durable;

impl Route {
    /// Also publishes the handler's return value (its reply body and
    /// headers) to `target`, a fixed subject or a [`PublishTarget`] from
    /// config; may be given several times. A message with a reply subject
    /// is still answered. Nothing is published for `()` or `None`, and an
    /// error is not published (it is counted, logged and answered as
    /// always). On a durable route the value is published durably, with a
    /// message id made of the stream, consumer and sequence (a stream must
    /// capture each target, checked at start), before the message is
    /// acknowledged.
    ///
    /// ```
    /// use telestion::{Json, PublishTarget, Route};
    ///
    /// async fn to_fahrenheit(Json(celsius): Json<f64>) -> Json<f64> {
    ///     Json(celsius * 9.0 / 5.0 + 32.0)
    /// }
    ///
    /// let route = Route::new("sensors.celsius", to_fahrenheit)
    ///     .publish_to("sensors.fahrenheit")
    ///     .publish_to(PublishTarget::config("MIRROR_SUBJECT").or_default("sensors.mirror"));
    /// assert_eq!(route.publish_targets().len(), 2);
    /// ```
    pub fn publish_to(mut self, target: impl Into<PublishTarget>) -> Route {
        self.publish.push(target.into());
        self
    }

    /// Where the route publishes its handler's return value.
    pub fn publish_targets(&self) -> &[PublishTarget] {
        &self.publish
    }

    /// For a route from [`Route::from_config`]: the subject to use when the
    /// config key is not set (or empty). `--help` shows it next to the key.
    /// Validated, like every subject, when the route is subscribed. No
    /// effect on a route with a fixed subject.
    ///
    /// ```
    /// use telestion::Route;
    ///
    /// async fn store(body: String) {}
    ///
    /// let route = Route::from_config("INPUT_SUBJECT", store).default_subject("sensors.raw");
    /// assert_eq!(route.default_subject_value(), Some("sensors.raw"));
    /// ```
    pub fn default_subject(mut self, subject: impl Into<String>) -> Route {
        if let Kind::Messages(messages) = &mut self.kind {
            messages.default_subject = Some(subject.into());
        }
        self
    }

    /// The route's subject: its literal, or the value of its config key in
    /// `config`, else its default; `None` when the key is unset without one.
    pub(crate) fn resolved_subject(&self, config: &crate::Config) -> Option<String> {
        match &self.subject {
            SubjectSource::Literal(subject) => Some(subject.clone()),
            SubjectSource::ConfigKey(key) => config
                .get_str(key)
                .filter(|s| !s.is_empty())
                .or_else(|| self.default_subject_value().map(str::to_owned)),
        }
    }

    /// The subject used when the route's config key is not set, if any
    /// (see [`Route::default_subject`]).
    pub fn default_subject_value(&self) -> Option<&str> {
        match &self.kind {
            Kind::Messages(messages) => messages.default_subject.as_deref(),
            _ => None,
        }
    }

    /// Subscribe outside any queue group: every instance gets every message.
    pub fn broadcast(self) -> Route {
        self.queue(QueueGroup::Broadcast)
    }

    /// Subscribe in the queue group `name` instead of `SERVICE_NAME`.
    pub fn queue_group(self, name: impl Into<String>) -> Route {
        self.queue(QueueGroup::Named(name.into()))
    }

    /// Sets the queue group choice.
    pub fn queue(mut self, queue: QueueGroup) -> Route {
        if let Some(messages) = self.messages(|shape| shape.queue = true)
            && let Delivery::Core(choice) = &mut messages.delivery
        {
            *choice = queue;
        }
        self
    }

    /// Handle up to `n` messages at once (default 1: one at a time, in
    /// arrival order). With `n > 1` order is not kept.
    pub fn concurrency(mut self, n: usize) -> Route {
        let n = n.max(1);
        if let Some(messages) = self.messages(|shape| shape.concurrency = Some(n)) {
            messages.concurrency = n;
        }
        self
    }

    /// Makes this a batch route: its handler, which takes a
    /// [`Batch<T>`](crate::Batch), is called once for up to `max` messages
    /// (at most [`MAX_BATCH`](crate::MAX_BATCH)), in arrival order; one
    /// batch at a time. A batch closes, and the handler is called, as soon
    /// as one of these holds:
    ///
    /// - it holds `max` messages;
    /// - `window` has passed since its first message arrived;
    /// - no further message arrived for 1 ms (the quiet gap).
    ///
    /// So a batch is as large as the load makes it: messages published back
    /// to back (one flush, a burst, a backlog) form one batch, while a lone
    /// message is handled about a millisecond after it arrived instead of
    /// waiting out the window. `window` bounds how long the first message
    /// of a batch can wait while more keep coming. Every request of the batch gets the return value (or the
    /// error) as its reply, and the return value is published once to the
    /// [publish targets](Route::publish_to). On a durable route every message of the
    /// batch is acknowledged when the call succeeds and redelivered when it
    /// fails. A handler without a `Batch<T>` parameter cannot be a batch
    /// route, and one with it must be (the start fails, saying so).
    ///
    /// ```
    /// use std::time::Duration;
    /// use telestion::{Batch, Bytes, Route};
    ///
    /// async fn archive(frames: Batch<Bytes>) {
    ///     let total: usize = frames.iter().map(|frame| frame.len()).sum();
    ///     println!("{} frames, {total} bytes", frames.len());
    /// }
    ///
    /// let route = Route::new("frames.raw", archive).batch(500, Duration::from_millis(20));
    /// assert_eq!(route.batch_size(), Some((500, Duration::from_millis(20))));
    /// ```
    pub fn batch(mut self, max: usize, window: std::time::Duration) -> Route {
        if let Some(messages) = self.messages(|shape| shape.batch = true) {
            messages.batch = Some(BatchSpec {
                max: max.clamp(1, telestion_rules::limits::MAX_BATCH),
                window,
            });
        }
        self
    }

    /// The batch size and window of a batch route ([`Route::batch`]).
    pub fn batch_size(&self) -> Option<(usize, std::time::Duration)> {
        match &self.kind {
            Kind::Messages(Messages {
                batch: Some(spec), ..
            }) => Some((spec.max, spec.window)),
            _ => None,
        }
    }

    /// Makes this a durable handler: it consumes a JetStream stream through
    /// a durable pull consumer that every instance of the service shares
    /// (the queue group choice does not apply), with acknowledgements,
    /// retries with back-off and a dead-letter subject. See [`Durable`] for
    /// the settings; `concurrency(n)` allows `n` unacknowledged messages
    /// at once (default 1: one at a time, in stream order).
    ///
    /// ```
    /// use telestion::{Durable, Route};
    ///
    /// async fn execute(command: String) -> Result<(), String> {
    ///     Ok(())
    /// }
    ///
    /// let route = Route::new("cmd.>", execute).durable(Durable::new());
    /// # let _ = route;
    /// ```
    pub fn durable(mut self, durable: Durable) -> Route {
        let stream = durable.stream.is_some();
        if let Some(messages) = self.messages(|shape| {
            shape.durable = true;
            shape.stream = stream;
        }) {
            messages.delivery = Delivery::Durable(durable);
        }
        self
    }

    /// The durable settings, when the route is durable.
    pub fn durable_settings(&self) -> Option<&Durable> {
        match &self.kind {
            Kind::Messages(Messages {
                delivery: Delivery::Durable(durable),
                ..
            }) => Some(durable),
            _ => None,
        }
    }

    /// The handler's name in logs and errors (default: the function's path).
    pub fn name(mut self, name: impl Into<String>) -> Route {
        self.name = name.into();
        self
    }

    /// The handler's name.
    pub fn handler_name(&self) -> &str {
        &self.name
    }

    /// Where the subject comes from.
    pub fn subject_source(&self) -> &SubjectSource {
        &self.subject
    }

    /// The queue group choice.
    pub fn queue_choice(&self) -> &QueueGroup {
        match &self.kind {
            Kind::Messages(Messages {
                delivery: Delivery::Core(queue),
                ..
            }) => queue,
            _ => &QueueGroup::ServiceName,
        }
    }

    /// The concurrency limit.
    pub fn concurrency_limit(&self) -> usize {
        match &self.kind {
            Kind::Messages(messages) => messages.concurrency,
            _ => 1,
        }
    }

    /// The configuration keys this route reads: its subject key and the
    /// keys of its handler's `TypedConfig<T>` parameters (for `--help`).
    pub fn config_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        if let SubjectSource::ConfigKey(key) = &self.subject {
            keys.push(key.clone());
        }
        if let Kind::Timer(period) = &self.kind
            && let Some(key) = period.config_key()
        {
            keys.push(key.to_owned());
        }
        keys.extend(
            self.publish
                .iter()
                .filter_map(|target| target.config_key().map(str::to_owned)),
        );
        keys.extend(self.handler.config_keys());
        if self.durable_settings().is_some() {
            keys.extend(
                crate::jetstream::settings::DURABLE_KEYS
                    .iter()
                    .map(|(key, _)| (*key).to_owned()),
            );
        }
        keys
    }
}
