//! A durable route's consumer: its stream (named, or the one that captures
//! the route's subject), its settings resolved from the route and the
//! service's configuration, the durable consumer created or updated on the
//! server, and the health numbers read back from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, consumer::pull};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::engine::RouteInfo;
use crate::engine::batch::BatchSpec;
use crate::error::{BoxError, StartError, error_chain};
use crate::jetstream::condition::Condition;
use crate::jetstream::declare as stream;
use crate::jetstream::settings::{
    DEFAULT_ACK_WAIT_SECS, DEFAULT_BACKOFF_SECS, DEFAULT_MAX_DELIVER, DEFAULT_RETRY_FOR_SECS,
    Durable, backoff_from, dead_letter_prefix, default_consumer, default_dead_letter, invalid,
    seconds,
};
use crate::jetstream::stream::StreamSpec;
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
    pub(crate) backoff: Vec<Duration>,
    /// How long a transient failure is retried.
    pub(crate) retry_for: Duration,
    pub(crate) dead_letter: String,
    /// The consumer's configuration, to create it again when it is gone.
    pub(crate) consumer_config: pull::Config,
    /// The stream, when this service declares it (then it is declared
    /// again when it is gone).
    pub(crate) owned_stream: Option<StreamSpec>,
    /// What the route knows about itself (held deliveries, failures).
    pub(crate) condition: Condition,
    /// The consumer's acknowledgement floor (stream sequence) as last read
    /// from the server: where a consumer created again starts.
    pub(crate) ack_floor: AtomicU64,
    /// When the stream was created (Unix nanoseconds), to tell a stream
    /// made again from the one the floor belongs to.
    pub(crate) stream_created: AtomicI64,
    /// Wakes the route's loop to pull again at once (its consumer was
    /// created again).
    pub(crate) repull: Notify,
    pub(crate) pull_expires: Duration,
    pub(crate) dead_lettered: AtomicU64,
    /// The route's entry in the health reports.
    pub(crate) health: usize,
    /// The batch size and window of a batch route.
    pub(crate) batch: Option<BatchSpec>,
}

impl DurableRoute {
    /// The wait before the next try after `failures` failures: the
    /// back-off list's entry, its last one after that.
    pub(crate) fn delay_after(&self, failures: u64) -> Duration {
        let index = usize::try_from(failures.saturating_sub(1)).unwrap_or(usize::MAX);
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
    let stream_created = created_nanos(stream_info);
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
    let retry_for = match durable.retry_for {
        Some(duration) => duration,
        None => seconds(config, "DURABLE_RETRY_FOR")?
            .unwrap_or(Duration::from_secs_f64(DEFAULT_RETRY_FOR_SECS)),
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
        None => default_dead_letter(&dead_letter_prefix(config), service.name(), handler),
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
    ensure_dead_letter_stream(service, &js, handler, &dead_letter).await?;
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
    let mut consumer_config = pull::Config {
        durable_name: Some(consumer_name.clone()),
        description: Some(format!(
            "telestion durable handler {handler} of service {}",
            service.name()
        )),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait,
        // A handler's failure is retried in place, so deliveries count only
        // what no instance settled: a message the client cannot read, or
        // one an instance died on or handed back at its stop. After as many
        // the server gives up on it and the service dead-letters its stored
        // copy (`advisory`): never redelivered forever.
        max_deliver: i64::from(max_deliver),
        // A batch route needs its whole batch unacknowledged at once.
        max_ack_pending: i64::try_from(batch.map_or(concurrency, |batch| batch.max))
            .unwrap_or(i64::MAX),
        filter_subject,
        ..Default::default()
    };
    // A consumer created again after it was lost (see `watch`) starts
    // where the old one stood; the start policy cannot change, so it is
    // kept when the consumer is updated.
    if let Ok(existing) = stream.consumer_info(&consumer_name).await {
        consumer_config.deliver_policy = existing.config.deliver_policy;
    }
    let consumer = create_consumer(
        &stream,
        &stream_name,
        &consumer_name,
        consumer_config.clone(),
    )
    .await?;
    let owned_stream = service.declared_stream(&stream_name);
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
        backoff,
        retry_for,
        dead_letter,
        consumer_config,
        owned_stream,
        condition: Condition::default(),
        ack_floor: AtomicU64::new(0),
        stream_created: AtomicI64::new(stream_created),
        repull: Notify::new(),
        pull_expires,
        dead_lettered: AtomicU64::new(0),
        health,
        batch,
    })
}

/// When `stream` was created, in Unix nanoseconds.
pub(crate) fn created_nanos(stream: &jetstream::stream::Info) -> i64 {
    i64::try_from(stream.created.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// Makes sure a stream captures the dead-letter subject, so that no dead
/// letter vanishes: an existing one, or `TELESTION_DEAD_LETTERS` (capturing
/// `<prefix>.>`, 30 days, at most 1 GiB) declared now when the subject has
/// the dead-letter prefix. A subject of its own that no stream captures
/// fails the start, naming it.
async fn ensure_dead_letter_stream(
    service: &Service,
    js: &jetstream::Context,
    handler: &str,
    dead_letter: &str,
) -> Result<(), StartError> {
    if js.stream_by_subject(dead_letter).await.is_ok() {
        return Ok(());
    }
    let prefix = dead_letter_prefix(service.config());
    if !dead_letter.starts_with(&format!("{prefix}.")) {
        return Err(handler_error(
            handler,
            format!(
                "no JetStream stream captures its dead-letter subject `{dead_letter}`, so a dead \
                 letter would be lost; declare one in start-up code with \
                 `service.declare_stream(StreamSpec::new(\"NAME\").subjects([\"{dead_letter}\"]))`"
            ),
        ));
    }
    let name = crate::jetstream::settings::dead_letter_stream(&prefix);
    service
        .declare_stream(
            StreamSpec::new(name)
                .subjects([format!("{prefix}.>")])
                .max_age(Duration::from_secs(30 * 86_400))
                .max_bytes(1 << 30),
        )
        .await
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

pub(crate) async fn create_consumer(
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
