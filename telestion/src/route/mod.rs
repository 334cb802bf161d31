//! Routes: a handler and how to subscribe it (subject or config key, queue
//! group, concurrency, name). Built by `#[subscribe]` or by hand; run by
//! the dispatch engine.

pub(crate) mod asyncapi;
pub(crate) mod publish_target;
pub(crate) mod registry;
pub(crate) mod rules;
pub(crate) mod schema;
mod settings;

pub(crate) mod erased;
pub(crate) mod kind;

use std::any::type_name;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use telestion_rules::shape::Shape;

use crate::handler::Handler;
use crate::handler::blocking::Blocking;
use crate::route::publish_target::PublishTarget;
use erased::{ErasedHandler, TypedHandler};
use kind::{Delivery, Kind, Messages, Period};

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
    pub(crate) name: String,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    /// What kind of route it is, with the settings of that kind.
    pub(crate) kind: Kind,
    /// The subject of a message handler, the label of a timer or task.
    pub(crate) subject: SubjectSource,
    pub(crate) publish: Vec<PublishTarget>,
    /// What the builder was given, for the shared validation of which
    /// settings go together (a setting that does not fit the kind is
    /// recorded here and reported when the route is subscribed).
    pub(crate) shape: Shape,
    pub(crate) schemas: crate::route::schema::RouteSchemas,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("subject", &self.subject)
            .field("publish", &self.publish)
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
        let kind = Kind::Messages(Messages {
            subject: subject.clone(),
            default_subject: None,
            delivery: Delivery::Core(QueueGroup::ServiceName),
            concurrency: 1,
            batch: None,
        });
        Route::of_kind(kind, subject, handler)
    }

    fn of_kind<H, Args>(kind: Kind, subject: SubjectSource, handler: H) -> Route
    where
        H: Handler<Args>,
        Args: 'static,
    {
        let shape = Shape {
            subject: matches!(kind, Kind::Messages(_)),
            timer: matches!(kind, Kind::Timer(_)),
            task: matches!(kind, Kind::Task),
            ..Shape::default()
        };
        Route {
            name: short_type_name::<H>(),
            handler: Arc::new(TypedHandler {
                handler,
                _args: PhantomData::<fn() -> Args>,
            }),
            kind,
            subject,
            publish: Vec::new(),
            shape,
            schemas: Default::default(),
        }
    }

    /// The message handler's settings, when it is one; otherwise `setting`
    /// is recorded as given to a timer or task (reported at subscription).
    fn messages(&mut self, setting: impl FnOnce(&mut Shape)) -> Option<&mut Messages> {
        setting(&mut self.shape);
        match &mut self.kind {
            Kind::Messages(messages) => Some(messages),
            Kind::Timer(_) | Kind::Task => None,
        }
    }

    /// A task: `handler` is called once, after the service's handlers are
    /// subscribed ([`Service::serve`](crate::Service::serve) starts tasks last), for long-running
    /// work such as a link to a device. It should watch
    /// [`Service::stopped`](crate::Service::stopped) and return at shutdown; the drain awaits it
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
        Route::of_kind(Kind::Task, SubjectSource::Literal("task".into()), handler)
    }

    /// Whether this route is a task ([`Route::task`]).
    pub fn is_task(&self) -> bool {
        matches!(self.kind, Kind::Task)
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
        Route::of_kind(
            Kind::Timer(Period::Fixed(period)),
            SubjectSource::Literal("timer".into()),
            handler,
        )
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
        let period = Period::Config {
            key: key.into(),
            default: None,
        };
        Route::of_kind(
            Kind::Timer(period),
            SubjectSource::Literal("timer".into()),
            handler,
        )
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
        if let Kind::Timer(Period::Config { default, .. }) = &mut self.kind {
            *default = Some(period);
        }
        self
    }

    /// Whether this route is a timer ([`Route::every`]).
    pub fn is_timer(&self) -> bool {
        matches!(self.kind, Kind::Timer(_))
    }
}

fn short_type_name<H>() -> String {
    let full = type_name::<H>();
    full.split_once("::")
        .map(|(_, rest)| rest)
        .unwrap_or(full)
        .to_owned()
}

impl Route {
    /// The default of config key `key` when this route reads it as its
    /// subject or a publish target (for `--help`).
    pub(crate) fn key_default(&self, key: &str) -> Option<String> {
        if let SubjectSource::ConfigKey(subject_key) = &self.subject
            && subject_key == key
        {
            return self.default_subject_value().map(str::to_owned);
        }
        if let Kind::Timer(Period::Config {
            key: period_key,
            default,
        }) = &self.kind
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

    /// Every setting that does not fit the route (the shared rule of
    /// `telestion_rules::shape`), with what its handler takes.
    pub(crate) fn misuses(&self) -> Vec<telestion_rules::shape::Misuse> {
        let mut shape = self.shape;
        shape.takes_batch = Some(self.handler.takes_batch());
        shape.misuses()
    }
}
