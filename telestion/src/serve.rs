//! Serving: subscribing routes (the settings checked with the rule the
//! macro applies, subjects resolved and validated, conflicts refused, the
//! extractors' context prepared), the one path from a route's kind to the
//! engine loop that runs it, and the drain bounded by `SHUTDOWN_TIMEOUT`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::RouteInfo;
use crate::error::StartError;
use crate::jetstream::{advisory, consumer};
use crate::observe::error_log::ErrorLog;
use crate::observe::stats::{HandlerStats, RouteKind};
use crate::route::erased::Plan;
use crate::route::kind::{Delivery, Kind, Messages};
use crate::route::{QueueGroup, Route, SubjectSource};
use crate::service::Service;

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn handler_error(route: &Route, source: impl Into<crate::error::BoxError>) -> StartError {
    StartError::Handler {
        handler: route.name.clone(),
        source: source.into(),
    }
}

impl Service {
    /// Subscribes `route` and starts its loop. Fails when its settings do
    /// not go together, when its subject is invalid or missing from config,
    /// when it conflicts with an earlier route (same subject in the same
    /// queue group, or the same durable consumer), or when a handler
    /// argument cannot be provided.
    pub async fn subscribe(&self, route: Route) -> Result<(), StartError> {
        if self.client().is_none() {
            return Err(handler_error(
                &route,
                "handlers need NATS, but the service runs in no-NATS mode",
            ));
        }
        if let Some(misuse) = route.misuses().first() {
            return Err(handler_error(&route, misuse.to_string()));
        }
        let publish = route
            .publish
            .iter()
            .map(|target| target.resolve(self.config()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| handler_error(&route, reason))?;
        let prepared = route
            .handler
            .prepare(self)
            .map_err(|source| handler_error(&route, source))?;
        let plan = match &route.kind {
            Kind::Task => {
                tracing::debug!(handler = %route.name, "task started");
                Plan::Task(self.route_info(
                    &route,
                    "task".into(),
                    None,
                    RouteKind::Task,
                    1,
                    publish,
                ))
            }
            Kind::Timer(period) => {
                let period = period
                    .resolve(self.config())
                    .map_err(|reason| handler_error(&route, reason))?;
                tracing::debug!(handler = %route.name, ?period, "timer started");
                let info =
                    self.route_info(&route, "timer".into(), None, RouteKind::Timer, 1, publish);
                Plan::Timer(period, info)
            }
            Kind::Messages(messages) => self.messages_plan(&route, messages, publish).await?,
        };
        let task = prepared.spawn(self.clone(), plan);
        lock(&self.inner.lifecycle.route_tasks).push(task);
        Ok(())
    }

    /// A message handler's subject (literal or from config, validated), and
    /// its subscription or durable consumer.
    async fn messages_plan(
        &self,
        route: &Route,
        messages: &Messages,
        publish: Vec<String>,
    ) -> Result<Plan, StartError> {
        let subject = match &messages.subject {
            SubjectSource::Literal(subject) => subject.clone(),
            SubjectSource::ConfigKey(key) => self
                .config()
                .get_str(key)
                .filter(|s| !s.is_empty())
                .or_else(|| messages.default_subject.clone())
                .ok_or_else(|| {
                    handler_error(
                        route,
                        format!(
                            "its subject comes from config key {key}, which is not set; set \
                             `{key}=...` in the environment or pass `--{key}=...`"
                        ),
                    )
                })?,
        };
        telestion_rules::subject::validate(&subject).map_err(|reason| {
            StartError::InvalidSubject {
                handler: route.name.clone(),
                subject: subject.clone(),
                reason: reason.to_string(),
            }
        })?;
        let queue = match &messages.delivery {
            Delivery::Durable(settings) => {
                return self
                    .durable_plan(route, messages, settings, subject, publish)
                    .await;
            }
            Delivery::Core(QueueGroup::ServiceName) => Some(self.name().to_owned()),
            Delivery::Core(QueueGroup::Broadcast) => None,
            Delivery::Core(QueueGroup::Named(name)) => Some(name.clone()),
        };
        if let Some(group) = &queue {
            self.claim(
                (subject.clone(), group.clone()),
                route,
                format!(
                    "both subscribe to `{subject}` in queue group `{group}`, so each message \
                     would reach only one of them; give one of them another subject, `queue = \
                     false` or its own queue group"
                ),
            )?;
        }
        let client = self.client().expect("checked by subscribe");
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
        let info = self.route_info(
            route,
            subject,
            queue,
            RouteKind::Subscription,
            messages.concurrency,
            publish,
        );
        Ok(match messages.batch {
            Some(spec) => Plan::Batch(subscriber, info, spec),
            None => Plan::Core(subscriber, info),
        })
    }

    /// Refuses a second route with the same `key` (subject and queue group,
    /// or durable consumer).
    fn claim(&self, key: (String, String), route: &Route, why: String) -> Result<(), StartError> {
        let mut subscribed = lock(&self.inner.lifecycle.subscribed);
        if let Some(other) = subscribed.get(&key) {
            return Err(StartError::Conflict(format!(
                "`{other}` and `{}` {why}",
                route.name
            )));
        }
        subscribed.insert(key, route.name.clone());
        Ok(())
    }

    /// What the engine keeps for a route; its counters are listed for
    /// discovery and metrics.
    fn route_info(
        &self,
        route: &Route,
        subject: String,
        queue: Option<String>,
        kind: RouteKind,
        concurrency: usize,
        publish: Vec<String>,
    ) -> Arc<RouteInfo> {
        let instance = &self.inner.instance;
        let name: Arc<str> = route.name.as_str().into();
        let stats = Arc::new(HandlerStats::new(
            name.clone(),
            subject.clone(),
            queue,
            kind,
            publish.clone(),
            instance.observer.get().cloned(),
        ));
        instance.add_handler(stats.clone());
        Arc::new(RouteInfo {
            name,
            service: self.name().into(),
            subject,
            concurrency,
            publish,
            stats,
            log: ErrorLog::default(),
            errors: instance.errors.clone(),
        })
    }

    /// The durable part of [`Service::subscribe`]: refuses a second route
    /// with the same consumer, resolves the stream and creates the consumer,
    /// and starts its health refresh and the handling of what the server
    /// gives up on.
    async fn durable_plan(
        &self,
        route: &Route,
        messages: &Messages,
        settings: &crate::jetstream::settings::Durable,
        subject: String,
        publish: Vec<String>,
    ) -> Result<Plan, StartError> {
        let consumer = settings.consumer.clone().unwrap_or_else(|| {
            crate::jetstream::settings::default_consumer(self.name(), &route.name)
        });
        self.claim(
            ("$durable consumer".to_owned(), consumer.clone()),
            route,
            format!(
                "both consume through durable consumer `{consumer}`, so each message would \
                 reach only one of them; give one of them another consumer name (`durable = \
                 \"name\"`, `Durable::consumer`) or handler name"
            ),
        )?;
        let info = self.route_info(
            route,
            subject.clone(),
            Some(consumer),
            RouteKind::Durable,
            messages.concurrency,
            publish,
        );
        let resolved =
            consumer::prepare(self, info, (settings, messages.concurrency, messages.batch))
                .await
                .map(Arc::new)?;
        let refresh = crate::jetstream::watch::spawn(self, &resolved);
        let given_up = advisory::spawn(self, &resolved).await?;
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
        Ok(Plan::Durable(resolved))
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
            routes.into_iter().partition(Route::is_task);
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
    /// received, stops the health replies and confirms pending publishes
    /// with the server. Every wait is bounded by `SHUTDOWN_TIMEOUT` (10 s by
    /// default): at most that long for the server to confirm the drain
    /// (while it is unreachable it cannot, so what has arrived is handled
    /// and a warning names the route), handlers still running one more
    /// `SHUTDOWN_TIMEOUT` later are stopped, and the final round trip takes
    /// what time is left; so this returns at the latest about 2 ×
    /// `SHUTDOWN_TIMEOUT` after it began.
    ///
    /// Each subscription is drained: the server is sent `UNSUB` and what the
    /// client received before its stream ends is handled. Durable routes
    /// stop pulling, finish and acknowledge what they pulled, and hand back
    /// what has arrived for their last pull, for redelivery to another
    /// instance; they are awaited like the others. Known limit of
    /// async-nats (0.46 to 0.52): the client forgets a drained subscription
    /// at the next poll of its connection task after writing the `UNSUB`,
    /// not on the server's `PONG`, so a message the server routed here
    /// before it processed the `UNSUB` and that arrives after that poll is
    /// dropped by the client (see the guide's [shutdown](crate::guide::shutdown) chapter). What was
    /// not confirmed is reported in [`Service::exit_code`].
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
