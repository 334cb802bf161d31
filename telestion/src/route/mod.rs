//! Routes: a handler and how to subscribe it (subject or config key, queue
//! group, concurrency, name). Built by `#[subscribe]` or by hand; run by
//! the dispatch engine.

pub(crate) mod asyncapi;
pub(crate) mod publish_target;
pub(crate) mod registry;
pub(crate) mod schema;
pub(crate) mod subject;

use std::any::type_name;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use async_nats::Subscriber;
use tokio::task::JoinHandle;

use crate::engine::batch::{BatchSpec, run_batch_route};
use crate::engine::core::{RouteInfo, run_route};
use crate::engine::task::run_task;
use crate::engine::timer::{Period, run_timer};
use crate::error::BoxError;
use crate::handler::Handler;
use crate::handler::blocking::Blocking;
use crate::jetstream::durable::{Durable, DurableRoute, run_durable};
use crate::route::publish_target::PublishTarget;
use crate::service::Service;

/// Where a route's subject comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectSource {
    /// A fixed subject.
    Literal(String),
    /// The value of this config key, resolved at start.
    ConfigKey(String),
}

/// Which queue group a route subscribes in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueGroup {
    /// `SERVICE_NAME`: instances of the service share the messages (default).
    ServiceName,
    /// No queue group: every instance receives every message.
    Broadcast,
    /// A queue group of this name.
    Named(String),
}

/// A handler and how to subscribe it. Built by `#[subscribe]`, or by hand:
///
/// ```no_run
/// use telestion::{Json, Route};
///
/// async fn double(Json(x): Json<i64>) -> Json<i64> {
///     Json(2 * x)
/// }
///
/// let route = Route::new("math.double", double).concurrency(4);
/// let from_config = Route::from_config("INPUT_SUBJECT", double).broadcast();
/// # let _ = (route, from_config);
/// ```
#[derive(Clone)]
pub struct Route {
    pub(crate) subject: SubjectSource,
    pub(crate) queue: QueueGroup,
    pub(crate) concurrency: usize,
    pub(crate) name: String,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) durable: Option<Durable>,
    pub(crate) default_subject: Option<String>,
    pub(crate) publish: Vec<PublishTarget>,
    pub(crate) period: Option<Period>,
    pub(crate) task: bool,
    pub(crate) batch: Option<BatchSpec>,
    pub(crate) schemas: crate::route::schema::RouteSchemas,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .field("queue", &self.queue)
            .field("concurrency", &self.concurrency)
            .field("durable", &self.durable)
            .field("default_subject", &self.default_subject)
            .field("publish", &self.publish)
            .field("period", &self.period)
            .field("task", &self.task)
            .field("batch", &self.batch)
            .finish()
    }
}

impl Route {
    /// A route for `handler` on a fixed subject (wildcards `*` and `>`
    /// allowed), in the `SERVICE_NAME` queue group, one message at a time.
    /// The subject is validated when the route is subscribed.
    pub fn new<H, Args>(subject: impl Into<String>, handler: H) -> Route
    where
        H: Handler<Args>,
        Args: 'static,
    {
        Route::with_source(SubjectSource::Literal(subject.into()), handler)
    }

    /// A route for a plain (non-async) `fn` handler on a fixed subject: it
    /// runs on the blocking thread pool (see [`Blocking`]), so it may block
    /// without stalling the service. Same extractors and return values as
    /// an `async fn` handler.
    ///
    /// ```
    /// use telestion::Route;
    ///
    /// fn compress(body: Vec<u8>) -> Vec<u8> {
    ///     body // heavy work here
    /// }
    ///
    /// let route = Route::blocking("files.compress", compress).concurrency(4);
    /// # let _ = route;
    /// ```
    pub fn blocking<F, Args>(subject: impl Into<String>, handler: F) -> Route
    where
        Blocking<F>: Handler<Args>,
        Args: 'static,
    {
        let name = short_type_name::<F>();
        Route::new(subject, Blocking(handler)).name(name)
    }

    /// A route whose subject is the value of config key `key`, resolved at
    /// start (a missing key fails the start, naming it, unless the route
    /// has a [`default_subject`](Route::default_subject)).
    pub fn from_config<H, Args>(key: impl Into<String>, handler: H) -> Route
    where
        H: Handler<Args>,
        Args: 'static,
    {
        Route::with_source(SubjectSource::ConfigKey(key.into()), handler)
    }

    fn with_source<H, Args>(subject: SubjectSource, handler: H) -> Route
    where
        H: Handler<Args>,
        Args: 'static,
    {
        Route {
            subject,
            queue: QueueGroup::ServiceName,
            concurrency: 1,
            name: short_type_name::<H>(),
            handler: Arc::new(TypedHandler {
                handler,
                _args: PhantomData::<fn() -> Args>,
            }),
            durable: None,
            default_subject: None,
            publish: Vec::new(),
            period: None,
            task: false,
            batch: None,
            schemas: Default::default(),
        }
    }

    /// A task: `handler` is called once, after the service's handlers are
    /// subscribed ([`Service::serve`] starts tasks last), for long-running
    /// work such as a link to a device. It should watch
    /// [`Service::stopped`] and return at shutdown; the drain awaits it
    /// within the shutdown limit (and stops it after twice the limit). An
    /// error or panic is counted in health and logged, and the task is
    /// restarted after a back-off ([`TASK_FIRST_BACKOFF_MS`](crate::TASK_FIRST_BACKOFF_MS),
    /// doubling up to [`TASK_MAX_BACKOFF_SECS`](crate::TASK_MAX_BACKOFF_SECS));
    /// returning `Ok` ends it for good. Its extractors see an empty message
    /// on subject `task`: take `Service`, `State<T>`, `TypedConfig<T>` or
    /// `DataDir`.
    ///
    /// ```
    /// use telestion::{Route, Service, ServiceError};
    ///
    /// async fn link(service: Service) -> Result<(), ServiceError> {
    ///     service.publish("link.status", "up").await?;
    ///     service.stopped().await;
    ///     Ok(())
    /// }
    ///
    /// let route = Route::task(link);
    /// assert!(route.is_task());
    /// ```
    pub fn task<H, Args>(handler: H) -> Route
    where
        H: Handler<Args>,
        Args: 'static,
    {
        let mut route = Route::new("task", handler);
        route.task = true;
        route
    }

    /// Whether this route is a task ([`Route::task`]).
    pub fn is_task(&self) -> bool {
        self.task
    }

    /// A timer: `handler` is called every `period` (first one period after
    /// the start; calls never overlap) until shutdown, instead of per
    /// message. Its return value is published to the route's
    /// [`publish_to`](Route::publish_to) targets (there is no request to
    /// answer); errors and panics are counted in health and logged. Its
    /// extractors see an empty message on subject `timer`, so take
    /// `Service`, `State<T>`, `TypedConfig<T>` or `DataDir`. The timer
    /// stops at shutdown; a running call is awaited by the drain.
    ///
    /// ```
    /// use std::time::Duration;
    /// use telestion::{Json, Route};
    ///
    /// async fn beat() -> Json<&'static str> {
    ///     Json("alive")
    /// }
    ///
    /// let route = Route::every(Duration::from_secs(1), beat).publish_to("status.beat");
    /// # let _ = route;
    /// ```
    pub fn every<H, Args>(period: std::time::Duration, handler: H) -> Route
    where
        H: Handler<Args>,
        Args: 'static,
    {
        let mut route = Route::new("timer", handler);
        route.period = Some(Period::Fixed(period));
        route
    }

    /// A timer (see [`Route::every`]) whose period is the value of config
    /// key `key` (`100ms`, `2s`, `5m`, `1h`; see [`parse_period`](crate::parse_period)),
    /// resolved at start: a missing key fails the start unless
    /// [`default_period`](Route::default_period) gives one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use telestion::Route;
    ///
    /// async fn poll() {}
    ///
    /// let route = Route::every_config("POLL_PERIOD", poll).default_period(Duration::from_secs(5));
    /// # let _ = route;
    /// ```
    pub fn every_config<H, Args>(key: impl Into<String>, handler: H) -> Route
    where
        H: Handler<Args>,
        Args: 'static,
    {
        let mut route = Route::new("timer", handler);
        route.period = Some(Period::Config {
            key: key.into(),
            default: None,
        });
        route
    }

    /// For a timer from [`Route::every_config`]: the period when the key is
    /// not set. No effect on other routes.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// async fn poll() {}
    ///
    /// let route = telestion::Route::every_config("POLL_PERIOD", poll)
    ///     .default_period(Duration::from_millis(500));
    /// assert!(route.is_timer());
    /// ```
    pub fn default_period(mut self, period: std::time::Duration) -> Route {
        if let Some(Period::Config { default, .. }) = &mut self.period {
            *default = Some(period);
        }
        self
    }

    /// Whether this route is a timer ([`Route::every`]).
    pub fn is_timer(&self) -> bool {
        self.period.is_some()
    }

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
        self.default_subject = Some(subject.into());
        self
    }

    /// The subject used when the route's config key is not set, if any
    /// (see [`Route::default_subject`]).
    pub fn default_subject_value(&self) -> Option<&str> {
        self.default_subject.as_deref()
    }

    /// Subscribe outside any queue group: every instance gets every message.
    pub fn broadcast(mut self) -> Route {
        self.queue = QueueGroup::Broadcast;
        self
    }

    /// Subscribe in the queue group `name` instead of `SERVICE_NAME`.
    pub fn queue_group(mut self, name: impl Into<String>) -> Route {
        self.queue = QueueGroup::Named(name.into());
        self
    }

    /// Sets the queue group choice.
    pub fn queue(mut self, queue: QueueGroup) -> Route {
        self.queue = queue;
        self
    }

    /// Handle up to `n` messages at once (default 1: one at a time, in
    /// arrival order). With `n > 1` order is not kept.
    pub fn concurrency(mut self, n: usize) -> Route {
        self.concurrency = n.max(1);
        self
    }

    /// Makes this a batch route: its handler, which takes a
    /// [`Batch<T>`](crate::Batch), is called once for up to `max` messages
    /// (at most [`MAX_BATCH`](crate::MAX_BATCH)), or for what arrived
    /// within `window` after the first of them, in arrival order; one batch
    /// at a time. Every request of the batch gets the return value (or the
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
        self.batch = Some(BatchSpec {
            max: max.clamp(1, crate::engine::batch::MAX_BATCH),
            window,
        });
        self
    }

    /// The batch size and window of a batch route ([`Route::batch`]).
    pub fn batch_size(&self) -> Option<(usize, std::time::Duration)> {
        self.batch.map(|spec| (spec.max, spec.window))
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
        self.durable = Some(durable);
        self
    }

    /// The durable settings, when the route is durable.
    pub fn durable_settings(&self) -> Option<&Durable> {
        self.durable.as_ref()
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
        &self.queue
    }

    /// The concurrency limit.
    pub fn concurrency_limit(&self) -> usize {
        self.concurrency
    }

    /// The configuration keys this route reads: its subject key and the
    /// keys of its handler's `TypedConfig<T>` parameters (for `--help`).
    pub fn config_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        if let SubjectSource::ConfigKey(key) = &self.subject {
            keys.push(key.clone());
        }
        if let Some(key) = self.period.as_ref().and_then(Period::config_key) {
            keys.push(key.to_owned());
        }
        keys.extend(
            self.publish
                .iter()
                .filter_map(|target| target.config_key().map(str::to_owned)),
        );
        keys.extend(self.handler.config_keys());
        if self.durable.is_some() {
            keys.extend(
                crate::jetstream::durable::DURABLE_KEYS
                    .iter()
                    .map(|(key, _)| (*key).to_owned()),
            );
        }
        keys
    }
}

fn short_type_name<H>() -> String {
    let full = type_name::<H>();
    full.split_once("::")
        .map(|(_, rest)| rest)
        .unwrap_or(full)
        .to_owned()
}

/// A handler whose extractors are resolved for one service.
pub(crate) trait PreparedHandler: Send {
    fn spawn(
        self: Box<Self>,
        service: Service,
        subscriber: Subscriber,
        info: RouteInfo,
    ) -> JoinHandle<()>;

    fn spawn_durable(self: Box<Self>, service: Service, route: Arc<DurableRoute>)
    -> JoinHandle<()>;

    fn spawn_timer(
        self: Box<Self>,
        service: Service,
        period: std::time::Duration,
        info: RouteInfo,
    ) -> JoinHandle<()>;

    fn spawn_task(self: Box<Self>, service: Service, info: RouteInfo) -> JoinHandle<()>;

    fn spawn_batch(
        self: Box<Self>,
        service: Service,
        subscriber: Subscriber,
        info: RouteInfo,
        spec: BatchSpec,
    ) -> JoinHandle<()>;
}

/// A handler with its argument types erased.
pub(crate) trait ErasedHandler: Send + Sync {
    fn prepare(&self, service: &Service) -> Result<Box<dyn PreparedHandler>, BoxError>;
    fn config_keys(&self) -> Vec<String>;
    fn takes_batch(&self) -> bool;
}

struct TypedHandler<H, Args> {
    handler: H,
    _args: PhantomData<fn() -> Args>,
}

struct Prepared<H: Handler<Args>, Args> {
    handler: H,
    context: Arc<H::Context>,
    _args: PhantomData<fn() -> Args>,
}

impl<H, Args> ErasedHandler for TypedHandler<H, Args>
where
    H: Handler<Args>,
    Args: 'static,
{
    fn prepare(&self, service: &Service) -> Result<Box<dyn PreparedHandler>, BoxError> {
        Ok(Box::new(Prepared::<H, Args> {
            handler: self.handler.clone(),
            context: Arc::new(H::prepare(service)?),
            _args: PhantomData,
        }))
    }

    fn config_keys(&self) -> Vec<String> {
        H::config_keys()
    }

    fn takes_batch(&self) -> bool {
        H::takes_batch()
    }
}

impl<H, Args> PreparedHandler for Prepared<H, Args>
where
    H: Handler<Args>,
    Args: 'static,
{
    fn spawn(
        self: Box<Self>,
        service: Service,
        subscriber: Subscriber,
        info: RouteInfo,
    ) -> JoinHandle<()> {
        tokio::spawn(run_route::<H, Args>(
            self.handler,
            self.context,
            service,
            subscriber,
            Arc::new(info),
        ))
    }

    fn spawn_timer(
        self: Box<Self>,
        service: Service,
        period: std::time::Duration,
        info: RouteInfo,
    ) -> JoinHandle<()> {
        tokio::spawn(run_timer::<H, Args>(
            self.handler,
            self.context,
            service,
            period,
            Arc::new(info),
        ))
    }

    fn spawn_batch(
        self: Box<Self>,
        service: Service,
        subscriber: Subscriber,
        info: RouteInfo,
        spec: BatchSpec,
    ) -> JoinHandle<()> {
        tokio::spawn(run_batch_route::<H, Args>(
            self.handler,
            self.context,
            service,
            subscriber,
            Arc::new(info),
            spec,
        ))
    }

    fn spawn_task(self: Box<Self>, service: Service, info: RouteInfo) -> JoinHandle<()> {
        tokio::spawn(run_task::<H, Args>(
            self.handler,
            self.context,
            service,
            Arc::new(info),
        ))
    }

    fn spawn_durable(
        self: Box<Self>,
        service: Service,
        route: Arc<DurableRoute>,
    ) -> JoinHandle<()> {
        tokio::spawn(run_durable::<H, Args>(
            self.handler,
            self.context,
            service,
            route,
        ))
    }
}

impl Route {
    /// The default of config key `key` when this route reads it as its
    /// subject or a publish target (for `--help`).
    pub(crate) fn key_default(&self, key: &str) -> Option<String> {
        if let SubjectSource::ConfigKey(subject_key) = &self.subject
            && subject_key == key
        {
            return self.default_subject.clone();
        }
        if let Some(Period::Config {
            key: period_key,
            default,
        }) = &self.period
            && period_key == key
        {
            return default.map(|period| format!("{period:?}"));
        }
        self.publish
            .iter()
            .find(|target| target.config_key() == Some(key))
            .and_then(PublishTarget::default_subject)
            .map(str::to_owned)
    }
}
