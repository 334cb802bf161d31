//! Serving: subscribing routes (subject resolution, validation, conflict
//! checks, the extractors' per-route context), waiting for the stop signal,
//! and the drain bounded by `SHUTDOWN_TIMEOUT`.

use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::engine::core::RouteInfo;
use crate::error::StartError;
use crate::jetstream::durable::{self, Durable};
use crate::observe::stats::{HandlerStats, RouteKind};
use crate::route::subject::validate_subject;
use crate::route::{PreparedHandler, QueueGroup, Route, SubjectSource};
use crate::service::Service;

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Service {
    /// Subscribes `route` and starts its dispatch task. Fails when its
    /// subject is invalid or missing from config, when it conflicts with an
    /// earlier route (same subject in the same queue group), or when a
    /// handler argument cannot be provided.
    pub async fn subscribe(&self, route: Route) -> Result<(), StartError> {
        let client = self.client().ok_or_else(|| StartError::Handler {
            handler: route.name.clone(),
            source: "handlers need NATS, but the service runs in no-NATS mode".into(),
        })?;
        let subject = match &route.subject {
            SubjectSource::Literal(subject) => subject.clone(),
            SubjectSource::ConfigKey(key) => self
                .config()
                .get_str(key)
                .filter(|s| !s.is_empty())
                .or_else(|| route.default_subject.clone())
                .ok_or_else(|| StartError::Handler {
                    handler: route.name.clone(),
                    source: format!(
                        "its subject comes from config key {key}, which is not set; set \
                         `{key}=...` in the environment or pass `--{key}=...`"
                    )
                    .into(),
                })?,
        };
        validate_subject(&subject).map_err(|reason| StartError::InvalidSubject {
            handler: route.name.clone(),
            subject: subject.clone(),
            reason,
        })?;
        let publish = route
            .publish
            .iter()
            .map(|target| target.resolve(self.config()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| StartError::Handler {
                handler: route.name.clone(),
                source: reason.into(),
            })?;
        if let Some(reason) = batch_mismatch(&route) {
            return Err(StartError::Handler {
                handler: route.name.clone(),
                source: reason.into(),
            });
        }
        if route.task {
            let prepared = route
                .handler
                .prepare(self)
                .map_err(|source| StartError::Handler {
                    handler: route.name.clone(),
                    source,
                })?;
            tracing::debug!(handler = %route.name, "task started");
            let info = self.route_info(&route, subject, None, RouteKind::Task, publish);
            let task = prepared.spawn_task(self.clone(), info);
            lock(&self.inner.lifecycle.route_tasks).push(task);
            return Ok(());
        }
        if let Some(period) = &route.period {
            let period = period
                .resolve(self.config())
                .map_err(|reason| StartError::Handler {
                    handler: route.name.clone(),
                    source: reason.into(),
                })?;
            let prepared = route
                .handler
                .prepare(self)
                .map_err(|source| StartError::Handler {
                    handler: route.name.clone(),
                    source,
                })?;
            tracing::debug!(handler = %route.name, ?period, "timer started");
            let info = self.route_info(&route, subject, None, RouteKind::Timer, publish);
            let task = prepared.spawn_timer(self.clone(), period, info);
            lock(&self.inner.lifecycle.route_tasks).push(task);
            return Ok(());
        }
        let queue = match &route.queue {
            QueueGroup::ServiceName => Some(self.name().to_owned()),
            QueueGroup::Broadcast => None,
            QueueGroup::Named(name) => Some(name.clone()),
        };
        let prepared = route
            .handler
            .prepare(self)
            .map_err(|source| StartError::Handler {
                handler: route.name.clone(),
                source,
            })?;
        if let Some(durable) = &route.durable {
            return self
                .subscribe_durable(&route, durable, subject, publish, prepared)
                .await;
        }
        if let Some(group) = &queue {
            let mut subscribed = lock(&self.inner.lifecycle.subscribed);
            let key = (subject.clone(), group.clone());
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
        .map_err(|source| StartError::Subscribe {
            handler: route.name.clone(),
            subject: subject.clone(),
            source,
        })?;
        tracing::debug!(handler = %route.name, %subject, queue = ?queue, "subscribed");
        let info = self.route_info(&route, subject, queue, RouteKind::Subscription, publish);
        let task = match route.batch {
            Some(spec) => prepared.spawn_batch(self.clone(), subscriber, info, spec),
            None => prepared.spawn(self.clone(), subscriber, info),
        };
        lock(&self.inner.lifecycle.route_tasks).push(task);
        Ok(())
    }

    /// What the dispatch engine keeps for a route; its counters are listed
    /// for discovery and metrics.
    fn route_info(
        &self,
        route: &Route,
        subject: String,
        queue: Option<String>,
        kind: RouteKind,
        publish: Vec<String>,
    ) -> RouteInfo {
        let name: Arc<str> = route.name.as_str().into();
        let stats = Arc::new(HandlerStats::new(
            name.clone(),
            subject.clone(),
            queue,
            kind,
            publish.clone(),
            self.inner.instance.observer.get().cloned(),
        ));
        self.inner.instance.add_handler(stats.clone());
        RouteInfo {
            name,
            subject,
            concurrency: if kind == RouteKind::Subscription {
                route.concurrency
            } else {
                1
            },
            errors: Default::default(),
            publish,
            stats,
        }
    }

    /// The durable part of [`Service::subscribe`]: refuses a second route
    /// with the same consumer, resolves the stream and creates the consumer,
    /// then starts the route's loop (awaited by the drain like every route)
    /// and its health refresh.
    async fn subscribe_durable(
        &self,
        route: &Route,
        settings: &Durable,
        subject: String,
        publish: Vec<String>,
        prepared: Box<dyn PreparedHandler>,
    ) -> Result<(), StartError> {
        let consumer = settings
            .consumer
            .clone()
            .unwrap_or_else(|| durable::default_consumer(self.name(), &route.name));
        {
            let mut subscribed = lock(&self.inner.lifecycle.subscribed);
            let key = ("$durable consumer".to_owned(), consumer.clone());
            if let Some(other) = subscribed.get(&key) {
                return Err(StartError::Conflict(format!(
                    "`{other}` and `{}` both consume through durable consumer `{consumer}`, so \
                     each message would reach only one of them; give one of them another \
                     consumer name (`durable = \"name\"`, `Durable::consumer`) or handler name",
                    route.name
                )));
            }
            subscribed.insert(key, route.name.clone());
        }
        let info = self.route_info(
            route,
            subject.clone(),
            Some(consumer.clone()),
            RouteKind::Durable,
            publish.clone(),
        );
        let resolved = durable::prepare(
            self,
            &route.name,
            &subject,
            (settings, route.concurrency, route.batch),
            publish,
            info.stats,
        )
        .await
        .map(Arc::new)?;
        let refresh = durable::spawn_health_refresh(self, &resolved);
        let given_up = crate::jetstream::advisory::spawn(self, &resolved).await?;
        self.inner
            .lifecycle
            .add_health_tasks(vec![refresh, given_up]);
        tracing::debug!(
            handler = %route.name,
            %subject,
            stream = %resolved.stream,
            consumer = %resolved.consumer_name,
            "consuming durably"
        );
        let task = prepared.spawn_durable(self.clone(), resolved);
        lock(&self.inner.lifecycle.route_tasks).push(task);
        Ok(())
    }

    /// Subscribes every route, serves until SIGINT/SIGTERM (when the service
    /// handles signals) or [`Service::shutdown`], then drains. The usual way
    /// to run a service by hand. When shutdown was requested before (a
    /// signal during start-up code), nothing is subscribed.
    pub async fn serve(&self, routes: impl IntoIterator<Item = Route>) -> Result<(), StartError> {
        if self.is_stopping() {
            tracing::info!("stopped before serving");
            self.drain().await;
            return Ok(());
        }
        let mut count = 0;
        // Tasks start after every handler is subscribed.
        let (tasks, handlers): (Vec<Route>, Vec<Route>) =
            routes.into_iter().partition(|route| route.task);
        for route in handlers.into_iter().chain(tasks) {
            self.subscribe(route).await?;
            count += 1;
        }
        // Make sure the server has processed every SUB above before saying
        // "ready" (tests and scripts wait for that word).
        if self.client().is_some()
            && let Err(e) =
                tokio::time::timeout(self.shutdown_timeout(), self.confirm_with_server())
                    .await
                    .unwrap_or(Ok(()))
        {
            tracing::warn!(error = %e, "cannot confirm the subscriptions with the server");
        }
        tracing::info!(handlers = count, "ready");
        self.stopped().await;
        tracing::info!("shutting down: draining handlers");
        self.drain().await;
        Ok(())
    }

    /// Stops taking new messages, finishes every message the client already
    /// received, stops the health replies and flushes pending publishes.
    /// Every wait is bounded by `SHUTDOWN_TIMEOUT` (10 s by default): at
    /// most that long for the server to confirm the drain (while it is
    /// unreachable it cannot, so what has arrived is handled and a warning
    /// names the route), handlers still running one more `SHUTDOWN_TIMEOUT`
    /// later are stopped, and the final flush takes what time is left; so
    /// this returns at the latest about 2 × `SHUTDOWN_TIMEOUT` after it began.
    ///
    /// Each subscription is drained: the server is sent `UNSUB` and what the
    /// client received before its stream ends is handled. Durable routes
    /// stop pulling, finish and acknowledge what they pulled, and hand back
    /// (`-NAK`) what still arrives for their last pull, for immediate
    /// redelivery to another instance; they are awaited like the others.
    /// Known limit of async-nats (0.46 to 0.52): the client forgets a drained
    /// subscription at the next poll of its connection task after writing
    /// the `UNSUB`, not on the server's `PONG`, so a message the server
    /// routed here before it processed the `UNSUB` and that arrives after
    /// that poll is dropped by the client (see the README's Shutdown
    /// section). What was not confirmed is reported in
    /// [`Service::exit_code`].
    pub async fn drain(&self) {
        self.shutdown();
        let limit = self.shutdown_timeout();
        // Routes stop waiting for the server at the limit, then handle what
        // they hold; handlers still running after twice the limit are cut.
        let deadline = Instant::now() + limit * 2;
        let tasks = std::mem::take(&mut *lock(&self.inner.lifecycle.route_tasks));
        for mut task in tasks {
            match tokio::time::timeout_at(deadline.into(), &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "a route task failed"),
                Err(_) => {
                    task.abort();
                    // What the handler held may not be finished.
                    self.note_unconfirmed();
                    tracing::warn!(
                        "a handler was still running {} s after shutdown began; stopped it",
                        (limit * 2).as_secs_f64()
                    );
                }
            }
        }
        for task in self.inner.lifecycle.take_health_tasks() {
            task.abort();
        }
        if self.client().is_some() {
            // A round trip, not just a flush of the socket: everything sent
            // before it (publishes, replies, acknowledgements) reached the
            // server.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100))
                .min(self.server_wait().max(Duration::from_millis(100)));
            let confirmed = match tokio::time::timeout(left, self.confirm_with_server()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("no answer within SHUTDOWN_TIMEOUT".to_owned()),
            };
            if let Some(reason) = confirmed {
                self.note_unconfirmed();
                tracing::warn!(
                    %reason,
                    "the NATS server did not confirm the pending publishes and replies; they may \
                     be lost"
                );
            }
        }
        tracing::info!("drained; stopped");
    }
}

/// Why a route's batch setting does not fit its handler, if it does not.
fn batch_mismatch(route: &Route) -> Option<&'static str> {
    let takes_batch = route.handler.takes_batch();
    match &route.batch {
        None if takes_batch => Some(
            "it takes `Batch<T>`, but its route has no batch size; add `batch = N` to \
             `#[subscribe]` (by hand: `Route::batch(n, window)`)",
        ),
        None => None,
        Some(_) if !takes_batch => Some(
            "its route is a batch route (`batch = N`), but it takes no `Batch<T>` parameter; \
             take the messages as `Batch<Json<T>>` (or `Batch<Bytes>`, ...)",
        ),
        Some(_) if route.task || route.period.is_some() => {
            Some("timers and tasks are not called per message, so they take no batch")
        }
        Some(_) if route.concurrency > 1 => Some(
            "a batch route handles one batch at a time; remove `concurrency` (a larger batch \
             handles more at once)",
        ),
        Some(_) => None,
    }
}
