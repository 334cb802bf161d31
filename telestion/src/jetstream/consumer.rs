//! A durable route's consumer: its stream (named, or the one that captures
//! the route's subject), its settings resolved from the route and the
//! service's configuration, the durable consumer created or updated on the
//! server, and the health numbers read back from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, consumer::pull};
use tokio::time::Instant;

use crate::engine::RouteInfo;
use crate::engine::batch::BatchSpec;
use crate::error::{BoxError, StartError, error_chain};
use crate::jetstream::declare as stream;
use crate::jetstream::settings::{
    DEFAULT_ACK_WAIT_SECS, DEFAULT_BACKOFF_SECS, DEFAULT_DEAD_LETTER_PREFIX, DEFAULT_MAX_DELIVER,
    Durable, backoff_from, default_consumer, default_dead_letter, invalid, seconds,
};
use crate::observe::health::DurableHealth;
use crate::service::Service;

/// A durable route's settings, resolved at subscription.
#[derive(Debug)]
pub(crate) struct DurableRoute {
    /// What the engine knows of the route (name, subject, publish targets,
    /// counters).
    pub(crate) info: Arc<RouteInfo>,
    pub(crate) stream: String,
    pub(crate) consumer_name: String,
    pub(crate) consumer: PullConsumer,
    pub(crate) concurrency: usize,
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: u32,
    pub(crate) backoff: Vec<Duration>,
    pub(crate) dead_letter: String,
    pub(crate) pull_expires: Duration,
    pub(crate) dead_lettered: AtomicU64,
    /// The route's entry in the health reports.
    pub(crate) health: usize,
    /// The batch size and window of a batch route.
    pub(crate) batch: Option<BatchSpec>,
}

impl DurableRoute {
    pub(crate) fn delay_after(&self, delivered: u64) -> Duration {
        let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(usize::MAX);
        self.backoff
            .get(index)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::ZERO)
    }
}

fn handler_error(handler: &str, source: impl Into<BoxError>) -> StartError {
    StartError::Handler {
        handler: handler.to_owned(),
        source: source.into(),
    }
}

/// Resolves a durable route: its stream (named, or the one that captures
/// `subject`), its settings, and its durable consumer (created, or updated
/// to these settings). Fails the start naming the stream or consumer.
pub(crate) async fn prepare(
    service: &Service,
    info: Arc<RouteInfo>,
    settings: (&Durable, usize, Option<BatchSpec>),
) -> Result<DurableRoute, StartError> {
    let (handler, subject, publish) = (&*info.name, info.subject.as_str(), &info.publish);
    let (durable, concurrency, batch) = settings;
    let js = stream::context(service).ok_or_else(|| {
        handler_error(
            handler,
            "durable handlers need NATS, but the service runs in no-NATS mode",
        )
    })?;
    for target in publish {
        if let Err(error) = js.stream_by_subject(target.as_str()).await {
            return Err(handler_error(
                handler,
                format!(
                    "it is durable, so it publishes its return value durably, but no JetStream \
                     stream captures its publish target `{target}`; declare one in start-up \
                     code with `service.declare_stream(StreamSpec::new(\"NAME\").subjects([\"{target}\"]))`: {}",
                    error_chain(&error)
                ),
            ));
        }
    }
    let stream_name = match &durable.stream {
        Some(name) => name.clone(),
        None => find_stream(&js, handler, subject).await?,
    };
    let Some(mut stream) = stream::lookup(&js, &stream_name).await? else {
        return Err(StartError::Stream {
            stream: stream_name,
            reason: format!(
                "it does not exist, and durable handler `{handler}` consumes it; create it \
                 (`nats stream add`) or declare it in start-up code with \
                 `service.declare_stream(StreamSpec::new(..).subjects([\"{subject}\"]))`"
            ),
            source: None,
        });
    };
    let stream_info = stream.info().await.map_err(|e| StartError::Stream {
        stream: stream_name.clone(),
        reason: "cannot read its configuration".into(),
        source: Some(Box::new(e)),
    })?;
    let subjects = stream_info.config.subjects.clone();
    if !subjects.iter().any(|s| stream::covers(s, subject)) {
        return Err(StartError::Stream {
            stream: stream_name,
            reason: format!(
                "it captures {subjects:?}, not `{subject}` of durable handler `{handler}`; add \
                 the subject to the stream or consume another stream"
            ),
            source: None,
        });
    }
    let config = service.config();
    let ack_wait = match durable.ack_wait {
        Some(wait) => wait,
        None => seconds(config, "DURABLE_ACK_WAIT")?
            .unwrap_or(Duration::from_secs_f64(DEFAULT_ACK_WAIT_SECS)),
    };
    let max_deliver = match durable.max_deliver {
        Some(n) => n,
        None => match config.get::<u32>("DURABLE_MAX_DELIVER")? {
            Some(0) => return Err(invalid("DURABLE_MAX_DELIVER", "must be at least 1")),
            Some(n) => n,
            None => DEFAULT_MAX_DELIVER,
        },
    };
    let backoff = match &durable.backoff {
        Some(delays) => delays.clone(),
        None => backoff_from(config)?.unwrap_or_else(|| {
            DEFAULT_BACKOFF_SECS
                .iter()
                .map(|s| Duration::from_secs_f64(*s))
                .collect()
        }),
    };
    let dead_letter = match &durable.dead_letter {
        Some(subject) => subject.clone(),
        None => {
            let prefix = config
                .get_str("DURABLE_DEAD_LETTER_PREFIX")
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| DEFAULT_DEAD_LETTER_PREFIX.to_owned());
            default_dead_letter(&prefix, service.name(), handler)
        }
    };
    telestion_rules::subject::validate(&dead_letter).map_err(|reason| {
        handler_error(
            handler,
            format!("invalid dead-letter subject `{dead_letter}`: {reason}"),
        )
    })?;
    if dead_letter.contains(['*', '>']) {
        return Err(handler_error(
            handler,
            format!("the dead-letter subject `{dead_letter}` cannot contain wildcards"),
        ));
    }
    let consumer_name = durable
        .consumer
        .clone()
        .unwrap_or_else(|| default_consumer(service.name(), handler));
    if !telestion_rules::names::is_stream_or_consumer_name(&consumer_name) {
        return Err(handler_error(
            handler,
            format!(
                "invalid consumer name `{consumer_name}`: it may not contain `.`, `*`, `>`, \
                 `/`, `\\` or whitespace"
            ),
        ));
    }
    let filter_subject = if subjects.len() == 1 && subjects[0] == subject {
        String::new()
    } else {
        subject.to_owned()
    };
    let consumer_config = pull::Config {
        durable_name: Some(consumer_name.clone()),
        description: Some(format!(
            "telestion durable handler {handler} of service {}",
            service.name()
        )),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait,
        // The last failed delivery is dead-lettered and terminated here. A
        // message the service never gets to settle (the client cannot read
        // it, or the process dies on it) is given up by the server after as
        // many deliveries, and dead-lettered from its stored copy when the
        // server says so (`durable_advisory`): never redelivered forever.
        max_deliver: i64::from(max_deliver),
        // A batch route needs its whole batch unacknowledged at once.
        max_ack_pending: i64::try_from(batch.map_or(concurrency, |batch| batch.max))
            .unwrap_or(i64::MAX),
        filter_subject,
        ..Default::default()
    };
    let consumer = create_consumer(&stream, &stream_name, &consumer_name, consumer_config).await?;
    let pull_expires = (service.shutdown_timeout() / 2)
        .min(Duration::from_secs(2))
        .max(Duration::from_millis(100));
    let health = service.inner.instance.add_durable(DurableHealth {
        handler: handler.to_owned(),
        stream: stream_name.clone(),
        consumer: consumer_name.clone(),
        ..DurableHealth::default()
    });
    Ok(DurableRoute {
        info,
        stream: stream_name,
        consumer_name,
        consumer,
        concurrency,
        ack_wait,
        max_deliver,
        backoff,
        dead_letter,
        pull_expires,
        dead_lettered: AtomicU64::new(0),
        health,
        batch,
    })
}

/// The stream that captures `subject`.
async fn find_stream(
    js: &jetstream::Context,
    handler: &str,
    subject: &str,
) -> Result<String, StartError> {
    let give_up = Instant::now() + Duration::from_secs(15);
    loop {
        match js.stream_by_subject(subject).await {
            Ok(name) => return Ok(name),
            Err(error) => {
                let final_answer = matches!(
                    error.kind(),
                    jetstream::context::GetStreamByNameErrorKind::NotFound
                ) || stream::no_responders(&error);
                if final_answer || Instant::now() >= give_up {
                    return Err(handler_error(
                        handler,
                        format!(
                            "it is durable, but no JetStream stream captures `{subject}`; \
                             declare one in start-up code with \
                             `service.declare_stream(StreamSpec::new(\"NAME\").subjects([\"{subject}\"]))`, \
                             or name one with `stream = \"NAME\"` (is JetStream enabled on the \
                             server?): {}",
                            error_chain(&error)
                        ),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

async fn create_consumer(
    stream: &jetstream::stream::Stream,
    stream_name: &str,
    consumer_name: &str,
    config: pull::Config,
) -> Result<PullConsumer, StartError> {
    let give_up = Instant::now() + Duration::from_secs(15);
    loop {
        match stream.create_consumer(config.clone()).await {
            Ok(consumer) => return Ok(consumer),
            Err(error) => {
                let transient = match error.kind() {
                    jetstream::stream::ConsumerErrorKind::JetStream(e) => stream::transient(&e),
                    jetstream::stream::ConsumerErrorKind::TimedOut
                    | jetstream::stream::ConsumerErrorKind::Request => true,
                    _ => false,
                };
                if !transient || Instant::now() >= give_up {
                    return Err(StartError::Stream {
                        stream: stream_name.to_owned(),
                        reason: format!(
                            "cannot create or update durable consumer `{consumer_name}`"
                        ),
                        source: Some(Box::new(error)),
                    });
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// How often the health numbers of a durable route are read from the
/// server.
pub(crate) const HEALTH_REFRESH: Duration = Duration::from_secs(2);

/// Keeps the route's health entry current until aborted.
pub(crate) fn spawn_health_refresh(
    service: &Service,
    route: &Arc<DurableRoute>,
) -> tokio::task::JoinHandle<()> {
    let reporter = service.inner.instance.clone();
    let route = route.clone();
    tokio::spawn(async move {
        loop {
            match tokio::time::timeout(HEALTH_REFRESH * 2, route.consumer.get_info()).await {
                Ok(Ok(info)) => reporter.update_durable(route.health, |entry| {
                    entry.pending = info.num_pending;
                    entry.ack_pending = info.num_ack_pending as u64;
                    entry.redelivered = info.num_redelivered as u64;
                    entry.dead_lettered = route.dead_lettered.load(Ordering::Relaxed);
                }),
                Ok(Err(e)) => {
                    tracing::debug!(handler = %route.info.name, error = %e, "cannot read consumer info");
                }
                Err(_) => {}
            }
            tokio::time::sleep(HEALTH_REFRESH).await;
        }
    })
}
