//! The [`Service`] handle: identity, config, the NATS client, the data
//! directory, publish/request helpers, shared state, and the lifecycle
//! (start, subscribe, serve, drain).

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_nats::connection::State as ConnectionState;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::connect;
use crate::dispatch::{QueueGroup, Route, RouteInfo, SubjectSource, validate_subject};
use crate::error::{ConfigError, ServiceError, StartError};
use crate::health::{self, DEFAULT_ERROR_WINDOW_SECS, ErrorCounter};

/// How to start a service.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Connect to NATS (default `true`). `false` is the no-NATS mode: config
    /// and identity only, no client, no health replies, no handlers.
    pub nats: bool,
    /// Use this configuration instead of loading it from the process's CLI
    /// arguments, environment and config file.
    pub config: Option<Config>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nats: true,
            config: None,
        }
    }
}

impl Options {
    /// The defaults: load config from the process, connect to NATS.
    pub fn new() -> Options {
        Options::default()
    }

    /// Enables or disables NATS (the no-NATS mode).
    pub fn nats(mut self, enabled: bool) -> Options {
        self.nats = enabled;
        self
    }

    /// Uses `config` instead of loading the process's configuration
    /// (required keys are still checked).
    pub fn config(mut self, config: Config) -> Options {
        self.config = Some(config);
        self
    }
}

/// A running Telestion service. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    name: String,
    id: String,
    data_root: PathBuf,
    client: Option<async_nats::Client>,
    errors: Arc<ErrorCounter>,
    started: Instant,
    states: RwLock<StateMap>,
    stop: watch::Sender<bool>,
    health_tasks: Mutex<Vec<JoinHandle<()>>>,
    route_tasks: Mutex<Vec<JoinHandle<()>>>,
    subscribed: Mutex<HashMap<(String, Option<String>), String>>,
    data_dir_created: Mutex<HashSet<PathBuf>>,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.inner.name)
            .field("id", &self.inner.id)
            .field("nats", &self.inner.client.is_some())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Service {
    /// Loads the configuration (unless given in `options`), checks the
    /// required keys, connects to NATS (unless disabled) within 10 s and
    /// starts the health replies.
    pub async fn start(options: Options) -> Result<Service, StartError> {
        let config = match options.config {
            Some(config) => config,
            None => Config::load()?,
        };
        config.check_required()?;
        let name = config.get_str("SERVICE_NAME").unwrap_or_default();
        let id = config
            .get_str("SERVICE_ID")
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| nuid::next().to_string());
        let data_root = PathBuf::from(config.get_str("DATA_DIR").unwrap_or_default());
        let window = config
            .get::<u64>("HEALTH_ERROR_WINDOW")?
            .unwrap_or(DEFAULT_ERROR_WINDOW_SECS);
        if window == 0 {
            return Err(ConfigError::Invalid {
                key: Some("HEALTH_ERROR_WINDOW".into()),
                message: "key HEALTH_ERROR_WINDOW: must be at least 1 (seconds)".into(),
            }
            .into());
        }
        let errors = Arc::new(ErrorCounter::new(Duration::from_secs(window)));
        let client = if options.nats {
            Some(connect::connect(&config, &name, errors.clone()).await?)
        } else {
            None
        };
        let (stop, _) = watch::channel(false);
        let service = Service {
            inner: Arc::new(Inner {
                config,
                name,
                id,
                data_root,
                client,
                errors,
                started: Instant::now(),
                states: RwLock::new(StateMap::default()),
                stop,
                health_tasks: Mutex::new(Vec::new()),
                route_tasks: Mutex::new(Vec::new()),
                subscribed: Mutex::new(HashMap::new()),
                data_dir_created: Mutex::new(HashSet::new()),
            }),
        };
        if let Some(client) = &service.inner.client {
            let tasks =
                health::start(&service, client)
                    .await
                    .map_err(|e| StartError::Subscribe {
                        handler: "health".into(),
                        subject: health::HEALTH_SUBJECT.into(),
                        reason: e.to_string(),
                    })?;
            lock(&service.inner.health_tasks).extend(tasks);
        }
        tracing::info!(
            name = %service.inner.name,
            id = %service.inner.id,
            nats = service.inner.client.is_some(),
            "service started"
        );
        Ok(service)
    }

    /// `SERVICE_NAME`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The instance id: `SERVICE_ID` when set, else a NUID generated at
    /// start (unique across processes and containers).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The merged configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The configuration decoded into `T` (see [`Config::typed`]); decoded
    /// once per type and cached.
    pub fn typed_config<T>(&self) -> Result<Arc<T>, ConfigError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        struct Cached<T>(Arc<T>);
        if let Some(cached) = self.state::<Cached<T>>() {
            return Ok(cached.0.clone());
        }
        let value = Arc::new(self.inner.config.typed::<T>()?);
        self.provide(Cached(value.clone()));
        Ok(value)
    }

    /// The NATS client, or `None` in no-NATS mode.
    pub fn client(&self) -> Option<&async_nats::Client> {
        self.inner.client.as_ref()
    }

    /// The NATS client, or an error in no-NATS mode.
    pub fn nats(&self) -> Result<&async_nats::Client, ServiceError> {
        self.inner
            .client
            .as_ref()
            .ok_or(ServiceError::NoNats("use"))
    }

    /// Whether the client is connected right now.
    pub fn is_connected(&self) -> bool {
        self.inner
            .client
            .as_ref()
            .is_some_and(|c| c.connection_state() == ConnectionState::Connected)
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// The error counter behind the health replies.
    pub fn error_counter(&self) -> &ErrorCounter {
        &self.inner.errors
    }

    /// Counts one error (reported in health as recent errors).
    pub fn record_error(&self) {
        self.inner.errors.record();
    }

    /// The service's own data directory, `$DATA_DIR/$SERVICE_NAME`, created
    /// (owner-only permissions on Unix) on first use.
    pub fn data_dir(&self) -> Result<PathBuf, ServiceError> {
        let dir = self.inner.data_root.join(&self.inner.name);
        self.ensure_dir(&dir)?;
        Ok(dir)
    }

    /// `$DATA_DIR`, shared by all services of the application.
    pub fn shared_data_dir(&self) -> &std::path::Path {
        &self.inner.data_root
    }

    /// Creates `dir` and its parents (owner-only on Unix) once.
    pub(crate) fn ensure_dir(&self, dir: &std::path::Path) -> Result<(), ServiceError> {
        let mut created = lock(&self.inner.data_dir_created);
        if created.contains(dir) {
            return Ok(());
        }
        create_private_dir(dir).map_err(|source| ServiceError::Io {
            path: dir.to_owned(),
            source,
        })?;
        created.insert(dir.to_owned());
        Ok(())
    }

    /// Makes `value` available to handlers as [`State<T>`](crate::State)
    /// (replacing an earlier value of the same type).
    pub fn provide<T: Send + Sync + 'static>(&self, value: T) {
        self.provide_arc(Arc::new(value));
    }

    /// Like [`Service::provide`] for a value already in an `Arc`.
    pub fn provide_arc<T: Send + Sync + 'static>(&self, value: Arc<T>) {
        self.inner
            .states
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(TypeId::of::<T>(), value);
    }

    /// The state of type `T`, if provided.
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let states = self.inner.states.read().unwrap_or_else(|e| e.into_inner());
        states
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|any| any.downcast::<T>().ok())
    }

    /// Publishes `payload` to `subject`.
    ///
    /// While disconnected, messages are buffered by the client (up to
    /// `NATS_PUBLISH_BUFFER`, default 2048) and sent after reconnecting; when
    /// that buffer is full the publish fails with
    /// [`ServiceError::BufferFull`], which is also counted and logged.
    pub async fn publish(
        &self,
        subject: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Result<(), ServiceError> {
        self.publish_inner(subject.into(), None, payload.into())
            .await
    }

    /// Publishes `payload` with headers.
    pub async fn publish_with_headers(
        &self,
        subject: impl Into<String>,
        headers: async_nats::HeaderMap,
        payload: impl Into<Bytes>,
    ) -> Result<(), ServiceError> {
        self.publish_inner(subject.into(), Some(headers), payload.into())
            .await
    }

    /// Publishes `value` encoded as JSON.
    pub async fn publish_json<T: Serialize + ?Sized>(
        &self,
        subject: impl Into<String>,
        value: &T,
    ) -> Result<(), ServiceError> {
        let body = serde_json::to_vec(value)?;
        self.publish(subject, body).await
    }

    async fn publish_inner(
        &self,
        subject: String,
        headers: Option<async_nats::HeaderMap>,
        payload: Bytes,
    ) -> Result<(), ServiceError> {
        let client = self
            .inner
            .client
            .as_ref()
            .ok_or(ServiceError::NoNats("publish"))?;
        // Connected: the buffer drains quickly, so wait for room. Disconnected:
        // a full buffer stays full, so fail fast and say so.
        let wait = if client.connection_state() == ConnectionState::Connected {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(20)
        };
        let target = subject.clone();
        let send = async move {
            match headers {
                Some(headers) => client.publish_with_headers(target, headers, payload).await,
                None => client.publish(target, payload).await,
            }
        };
        tokio::pin!(send);
        // Fast path: there is room in the buffer (no timer needed).
        let outcome = match futures::FutureExt::now_or_never(&mut send) {
            Some(result) => Ok(result),
            None => tokio::time::timeout(wait, send).await,
        };
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => {
                self.record_error();
                Err(ServiceError::Publish { subject, source })
            }
            Err(_) => {
                self.record_error();
                let error = ServiceError::BufferFull { subject };
                tracing::error!(%error, "message not published");
                Err(error)
            }
        }
    }

    /// Sends a request and waits for the reply (the client's request
    /// timeout, 10 s by default).
    pub async fn request(
        &self,
        subject: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Result<async_nats::Message, ServiceError> {
        let subject = subject.into();
        let client = self
            .inner
            .client
            .as_ref()
            .ok_or(ServiceError::NoNats("request"))?;
        client
            .request(subject.clone(), payload.into())
            .await
            .map_err(|source| ServiceError::Request { subject, source })
    }

    /// Sends `value` as a JSON request and decodes the JSON reply.
    pub async fn request_json<Req, Resp>(
        &self,
        subject: impl Into<String>,
        value: &Req,
    ) -> Result<Resp, ServiceError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let reply = self.request(subject, serde_json::to_vec(value)?).await?;
        Ok(serde_json::from_slice(&reply.payload)?)
    }

    /// Subscribes `route` and starts its dispatch task. Fails when its
    /// subject is invalid or missing from config, when it conflicts with an
    /// earlier route (same subject in the same queue group), or when a
    /// handler argument cannot be provided.
    pub async fn subscribe(&self, route: Route) -> Result<(), StartError> {
        let client = self
            .inner
            .client
            .as_ref()
            .ok_or_else(|| StartError::Handler {
                handler: route.name.clone(),
                reason: "handlers need NATS, but the service runs in no-NATS mode".into(),
            })?;
        let subject = match &route.subject {
            SubjectSource::Literal(subject) => subject.clone(),
            SubjectSource::ConfigKey(key) => self
                .inner
                .config
                .get_str(key)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| StartError::Handler {
                    handler: route.name.clone(),
                    reason: format!(
                        "its subject comes from config key {key}, which is not set; set \
                         `{key}=...` in the environment or pass `--{key}=...`"
                    ),
                })?,
        };
        validate_subject(&subject).map_err(|reason| StartError::Subscribe {
            handler: route.name.clone(),
            subject: subject.clone(),
            reason,
        })?;
        let queue = match &route.queue {
            QueueGroup::ServiceName => Some(self.inner.name.clone()),
            QueueGroup::Broadcast => None,
            QueueGroup::Named(name) => Some(name.clone()),
        };
        route
            .handler
            .check(self)
            .map_err(|reason| StartError::Handler {
                handler: route.name.clone(),
                reason,
            })?;
        if let Some(group) = &queue {
            let mut subscribed = lock(&self.inner.subscribed);
            let key = (subject.clone(), Some(group.clone()));
            if let Some(other) = subscribed.get(&key) {
                return Err(StartError::Conflict(format!(
                    "`{other}` and `{}` both subscribe to `{subject}` in queue group `{group}`, \
                     so each message would reach only one of them; give one of them another \
                     subject, `queue = false` or its own queue group",
                    route.name
                )));
            }
            subscribed.insert(key, route.name.clone());
        }
        let subscriber = match &queue {
            Some(group) => client.queue_subscribe(subject.clone(), group.clone()).await,
            None => client.subscribe(subject.clone()).await,
        }
        .map_err(|e| StartError::Subscribe {
            handler: route.name.clone(),
            subject: subject.clone(),
            reason: e.to_string(),
        })?;
        tracing::debug!(handler = %route.name, %subject, queue = ?queue, "subscribed");
        let task = route.handler.spawn(
            self.clone(),
            subscriber,
            RouteInfo {
                name: route.name.clone(),
                subject,
                concurrency: route.concurrency,
            },
        );
        lock(&self.inner.route_tasks).push(task);
        Ok(())
    }

    /// Subscribes every route, serves until SIGINT/SIGTERM or
    /// [`Service::shutdown`], then drains. The usual way to run a service
    /// by hand.
    pub async fn serve(&self, routes: impl IntoIterator<Item = Route>) -> Result<(), StartError> {
        let mut count = 0;
        for route in routes {
            self.subscribe(route).await?;
            count += 1;
        }
        // Make sure every SUB above has been written to the server before
        // saying "ready" (tests and scripts wait for that word).
        if let Some(client) = &self.inner.client
            && let Err(e) = client.flush().await
        {
            tracing::warn!(error = %e, "cannot confirm the subscriptions with the server");
        }
        tracing::info!(handlers = count, "ready");
        self.wait_for_shutdown().await?;
        self.drain().await;
        Ok(())
    }

    /// Asks the service to shut down (as SIGTERM does).
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Whether shutdown has been requested.
    pub fn is_stopping(&self) -> bool {
        *self.inner.stop.borrow()
    }

    /// Completes when shutdown has been requested; use it to end background
    /// loops started in `main`.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.inner.stop.subscribe();
        async move {
            let _ = receiver.wait_for(|stopping| *stopping).await;
        }
    }

    pub(crate) fn stop_receiver(&self) -> watch::Receiver<bool> {
        self.inner.stop.subscribe()
    }

    /// Waits for SIGINT, SIGTERM or [`Service::shutdown`]. After the first
    /// signal, a second one exits the process at once with code 130.
    pub async fn wait_for_shutdown(&self) -> Result<(), StartError> {
        let signals = match crate::run::take_early_signals() {
            Some(signals) => signals,
            None => Arc::new(crate::run::Signals::new()?),
        };
        tokio::select! {
            name = signals.next() => {
                tracing::info!(signal = name, "shutting down: draining handlers");
                self.shutdown();
                tokio::spawn(async move {
                    let name = signals.next().await;
                    eprintln!("received {name} again while draining; exiting now");
                    std::process::exit(130);
                });
            }
            _ = self.stopped() => {
                tracing::info!("shutting down: draining handlers");
            }
        }
        Ok(())
    }

    /// Stops taking new messages, finishes every message the client already
    /// received, stops the health replies and flushes pending publishes.
    ///
    /// Each subscription is drained: the server is sent `UNSUB` and what the
    /// client received before its stream ends is handled. Known limit of
    /// async-nats 0.51: messages the server sent just before it processed
    /// the `UNSUB` can arrive after the client closed the subscription and
    /// are then dropped by the client (see the README's Shutdown section).
    pub async fn drain(&self) {
        self.shutdown();
        let tasks = std::mem::take(&mut *lock(&self.inner.route_tasks));
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a route task failed");
            }
        }
        for task in std::mem::take(&mut *lock(&self.inner.health_tasks)) {
            task.abort();
        }
        if let Some(client) = &self.inner.client
            && let Err(e) = client.flush().await
        {
            tracing::warn!(error = %e, "cannot flush pending publishes");
        }
        tracing::info!("drained; stopped");
    }
}

/// Provided state by type. Looked up for every message that takes a
/// `State<T>`, so keyed with a hasher that just takes the `TypeId`'s bits
/// (already a hash) instead of SipHash.
type StateMap =
    HashMap<TypeId, Arc<dyn Any + Send + Sync>, std::hash::BuildHasherDefault<TypeIdHasher>>;

/// A hasher for `TypeId` keys.
#[derive(Default)]
struct TypeIdHasher(u64);

impl std::hash::Hasher for TypeIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `TypeId` today; stays correct if that changes.
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 ^= value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Creates `dir` and missing parents; new directories are owner-only
/// (`0700`) on Unix.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}
