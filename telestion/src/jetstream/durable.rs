//! Durable handlers: a route that consumes a JetStream stream through a
//! durable pull consumer shared by every instance of the service, with the
//! same extractors and return values as core handlers.
//!
//! Per message: extract and call the handler (panics caught), keep the
//! message with in-progress acks while it runs, then acknowledge it with
//! the server's confirmation (success) or negatively acknowledge it with a
//! delay from the back-off list (handler error, panic, rejected body);
//! after the maximum number of deliveries it is published with its error to
//! the dead-letter subject and terminated. On shutdown no new messages are
//! pulled; what was pulled is finished and acknowledged, and what arrives
//! for a pull that was still open is handed back (`-NAK`) at once.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer, consumer::pull};
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::Config;
use crate::engine::batch::{BatchSpec, call_batch};
use crate::error::{BoxError, ExtractError, StartError, error_chain};
use crate::handler::Handler;
use crate::handler::extract::Incoming;
use crate::handler::reply::{IntoReply, Reply};
use crate::jetstream::stream;
use crate::observe::health::DurableHealth;
use crate::observe::logging::Scoped;
use crate::observe::stats::HandlerStats;
use crate::service::Service;

/// Default of `DURABLE_ACK_WAIT`, in seconds.
pub const DEFAULT_ACK_WAIT_SECS: f64 = 30.0;
/// Default of `DURABLE_MAX_DELIVER`.
pub const DEFAULT_MAX_DELIVER: u32 = 5;
/// Default of `DURABLE_BACKOFF`, in seconds.
pub const DEFAULT_BACKOFF_SECS: [f64; 3] = [1.0, 5.0, 30.0];
/// Default of `DURABLE_DEAD_LETTER_PREFIX`: dead letters go to
/// `<prefix>.<SERVICE_NAME>.<handler>`.
pub const DEFAULT_DEAD_LETTER_PREFIX: &str = "telestion.dead";

/// The configuration keys of durable handlers, with their meaning (for
/// `--help`): service-wide defaults that a route's [`Durable`] settings
/// override.
pub const DURABLE_KEYS: [(&str, &str); 4] = [
    (
        "DURABLE_ACK_WAIT",
        "seconds a durable message may go unacknowledged before it is redelivered (default 30)",
    ),
    (
        "DURABLE_MAX_DELIVER",
        "deliveries of a failing durable message before it is dead-lettered (default 5)",
    ),
    (
        "DURABLE_BACKOFF",
        "seconds to wait before each redelivery after a failure, comma-separated (default 1,5,30)",
    ),
    (
        "DURABLE_DEAD_LETTER_PREFIX",
        "subject prefix for dead letters: <prefix>.<SERVICE_NAME>.<handler> (default telestion.dead)",
    ),
];

/// Headers of a dead letter (besides the original message's own headers).
pub mod dead_letter_headers {
    /// The last error, one line.
    pub const ERROR: &str = "Telestion-Error";
    /// The subject the message was published to.
    pub const SUBJECT: &str = "Telestion-Original-Subject";
    /// The stream it was stored in.
    pub const STREAM: &str = "Telestion-Stream";
    /// Its sequence number in that stream.
    pub const SEQUENCE: &str = "Telestion-Stream-Sequence";
    /// The durable consumer that gave up on it.
    pub const CONSUMER: &str = "Telestion-Consumer";
    /// How often it was delivered.
    pub const DELIVERIES: &str = "Telestion-Deliveries";
    /// The handler that failed.
    pub const HANDLER: &str = "Telestion-Handler";
}

/// How a durable route consumes its stream. Every setting left unset
/// comes from the service's configuration (the `DURABLE_*` keys) or from
/// the route.
///
/// ```
/// use std::time::Duration;
/// use telestion::{Durable, Route};
///
/// async fn execute(command: String) -> Result<(), String> {
///     Ok(())
/// }
///
/// let route = Route::new("cmd.>", execute).durable(
///     Durable::new()
///         .stream("COMMANDS")
///         .consumer("executor")
///         .max_deliver(3)
///         .backoff([Duration::from_secs(1), Duration::from_secs(10)])
///         .ack_wait(Duration::from_secs(60)),
/// );
/// # let _ = route;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Durable {
    pub(crate) stream: Option<String>,
    pub(crate) consumer: Option<String>,
    pub(crate) ack_wait: Option<Duration>,
    pub(crate) max_deliver: Option<u32>,
    pub(crate) backoff: Option<Vec<Duration>>,
    pub(crate) dead_letter: Option<String>,
}

impl Durable {
    /// The defaults: the stream that captures the route's subject, the
    /// consumer `<SERVICE_NAME>_<handler>`, the `DURABLE_*` keys.
    pub fn new() -> Durable {
        Durable::default()
    }

    /// Consume stream `name` (default: the stream that captures the
    /// route's subject). A missing stream, or one that does not capture
    /// the subject, fails the start.
    pub fn stream(mut self, name: impl Into<String>) -> Durable {
        self.stream = Some(name.into());
        self
    }

    /// The durable consumer's name (default `<SERVICE_NAME>_<handler>`,
    /// with characters a consumer name cannot hold replaced by `_`). Every
    /// instance of the service shares it: each message goes to one of them.
    pub fn consumer(mut self, name: impl Into<String>) -> Durable {
        self.consumer = Some(name.into());
        self
    }

    /// How long a delivered message may go unacknowledged before the
    /// server delivers it again (`DURABLE_ACK_WAIT`). A running handler
    /// keeps its message with in-progress acks every third of this.
    pub fn ack_wait(mut self, wait: Duration) -> Durable {
        self.ack_wait = Some(wait);
        self
    }

    /// Deliveries of a failing message before it is dead-lettered
    /// (`DURABLE_MAX_DELIVER`, at least 1).
    pub fn max_deliver(mut self, n: u32) -> Durable {
        self.max_deliver = Some(n.max(1));
        self
    }

    /// The delays before the redeliveries after failures: the first
    /// failure waits `delays[0]`, the second `delays[1]`, ..., later ones
    /// the last (`DURABLE_BACKOFF`).
    pub fn backoff(mut self, delays: impl IntoIterator<Item = Duration>) -> Durable {
        self.backoff = Some(delays.into_iter().collect());
        self
    }

    /// The dead-letter subject (default
    /// `<DURABLE_DEAD_LETTER_PREFIX>.<SERVICE_NAME>.<handler>`).
    pub fn dead_letter(mut self, subject: impl Into<String>) -> Durable {
        self.dead_letter = Some(subject.into());
        self
    }
}

/// `text` as one token of a subject or a consumer name: characters other
/// than letters, digits, `-` and `_` become `_`.
fn token(text: &str) -> String {
    let token: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if token.is_empty() { "_".into() } else { token }
}

/// The last part of a handler's path (`module::handler` → `handler`).
fn short_name(handler: &str) -> &str {
    handler.rsplit("::").next().unwrap_or(handler)
}

/// The default consumer name of a handler.
pub(crate) fn default_consumer(service_name: &str, handler: &str) -> String {
    format!("{}_{}", token(service_name), token(short_name(handler)))
}

/// The default dead-letter subject of a handler.
pub(crate) fn default_dead_letter(prefix: &str, service_name: &str, handler: &str) -> String {
    format!(
        "{prefix}.{}.{}",
        token(service_name),
        token(short_name(handler))
    )
}

fn seconds(config: &Config, key: &str) -> Result<Option<Duration>, StartError> {
    let Some(value) = config.get::<f64>(key)? else {
        return Ok(None);
    };
    if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
        return Err(invalid(
            key,
            "must be a number of seconds above 0 and at most 86400",
        ));
    }
    Ok(Some(Duration::from_secs_f64(value)))
}

fn invalid(key: &str, what: &str) -> StartError {
    crate::error::ConfigError::Invalid {
        key: Some(key.into()),
        message: format!("key {key}: {what}"),
    }
    .into()
}

fn backoff_from(config: &Config) -> Result<Option<Vec<Duration>>, StartError> {
    const KEY: &str = "DURABLE_BACKOFF";
    let Some(text) = config.get_str(KEY) else {
        return Ok(None);
    };
    let text = text.trim().trim_start_matches('[').trim_end_matches(']');
    let mut delays = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<f64>() {
            Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => {
                delays.push(Duration::from_secs_f64(s));
            }
            _ => {
                return Err(invalid(
                    KEY,
                    "must be seconds separated by commas, e.g. `1,5,30`",
                ));
            }
        }
    }
    Ok(Some(delays))
}

/// A durable route's settings, resolved at subscription.
#[derive(Debug)]
pub(crate) struct DurableRoute {
    pub(crate) name: Arc<str>,
    pub(crate) subject: String,
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
    /// The route's counters (discovery, metrics).
    pub(crate) stats: Arc<HandlerStats>,
    /// Where the return value is published (durably).
    pub(crate) publish: Vec<String>,
    /// The batch size and window of a batch route.
    pub(crate) batch: Option<BatchSpec>,
}

impl DurableRoute {
    fn delay_after(&self, delivered: u64) -> Duration {
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
    handler: &str,
    subject: &str,
    settings: (&Durable, usize, Option<BatchSpec>),
    publish: Vec<String>,
    stats: Arc<HandlerStats>,
) -> Result<DurableRoute, StartError> {
    let (durable, concurrency, batch) = settings;
    let js = stream::context(service).ok_or_else(|| {
        handler_error(
            handler,
            "durable handlers need NATS, but the service runs in no-NATS mode",
        )
    })?;
    for target in &publish {
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
    let info = stream.info().await.map_err(|e| StartError::Stream {
        stream: stream_name.clone(),
        reason: "cannot read its configuration".into(),
        source: Some(Box::new(e)),
    })?;
    let subjects = info.config.subjects.clone();
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
        name: handler.into(),
        subject: subject.to_owned(),
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
        stats,
        publish,
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
                    tracing::debug!(handler = %route.name, error = %e, "cannot read consumer info");
                }
                Err(_) => {}
            }
            tokio::time::sleep(HEALTH_REFRESH).await;
        }
    })
}

/// Messages asked for per pull and handling slot (see [`run_durable`]).
const PULL_BATCH_PER_SLOT: usize = 100;

/// Runs a durable route until shutdown: keep a standing pull open, handle
/// what it delivers (in place at concurrency 1, in stream order; on their
/// own tasks otherwise; the consumer's max_ack_pending limits how many are
/// unacknowledged), and after the stop signal finish what was pulled and
/// hand back what still arrives.
pub(crate) async fn run_durable<H, Args>(
    handler: H,
    context: Arc<H::Context>,
    service: Service,
    route: Arc<DurableRoute>,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let stop = service.stopped();
    tokio::pin!(stop);
    let permits = Arc::new(Semaphore::new(route.concurrency));
    let mut stopping = false;
    let mut failures: u32 = 0;
    while !stopping {
        // A free slot: at concurrency 1, the previous message is done.
        let first = tokio::select! {
            biased;
            () = &mut stop => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        // A standing pull for many messages: the server's max_ack_pending
        // (= concurrency) still lets only that many be unacknowledged, and
        // it sends the next one as soon as it has processed an ack, without
        // waiting for a new pull request (one round trip per message, not
        // two). The permits keep the local limit.
        let wanted = match route.batch {
            Some(batch) => batch.max.saturating_mul(2).max(PULL_BATCH_PER_SLOT),
            None => route.concurrency.saturating_mul(PULL_BATCH_PER_SLOT),
        };
        let pull = route
            .consumer
            .batch()
            .max_messages(wanted)
            .expires(route.pull_expires)
            .messages();
        let batch = tokio::select! {
            biased;
            () = &mut stop => break,
            batch = pull => batch,
        };
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(handler = %route.name, stream = %route.stream, %error, "cannot pull messages; retrying");
                }
                tokio::select! {
                    biased;
                    () = &mut stop => break,
                    () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        let mut first = Some(first);
        // A batch route's messages waiting for their call, and when the
        // window of the first of them closes.
        let mut pending: Vec<async_nats::Message> = Vec::new();
        let mut window_end = Instant::now();
        loop {
            let item = tokio::select! {
                biased;
                () = tokio::time::sleep_until(window_end), if !pending.is_empty() => {
                    let messages = std::mem::take(&mut pending);
                    handle_batch(&handler, &context, &service, messages, &route).await;
                    continue;
                }
                item = batch.next() => item,
                () = &mut stop => {
                    stopping = true;
                    // What was pulled for the batch is handled first.
                    if !pending.is_empty() {
                        let messages = std::mem::take(&mut pending);
                        handle_batch(&handler, &context, &service, messages, &route).await;
                    }
                    // What has arrived for the open pull goes back; then the
                    // pull is closed (its inbox unsubscribed, when `batch`
                    // is dropped below), so the server sends no more here
                    // while the handlers still running finish.
                    while let Some(Some(Ok(message))) = batch.next().now_or_never() {
                        hand_back(&service, &route, message.message).await;
                    }
                    break;
                }
            };
            let Some(item) = item else { break };
            let message = match item {
                Ok(message) => message,
                Err(error) => {
                    // A status such as a leadership change or a deleted
                    // consumer ends this pull; the next one tries again.
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::warn!(handler = %route.name, stream = %route.stream, %error, "pull ended with an error; retrying");
                    }
                    if !stopping {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    break;
                }
            };
            failures = 0;
            if let Some(spec) = route.batch {
                if pending.is_empty() {
                    window_end = Instant::now() + spec.window;
                }
                pending.push(message.message);
                if pending.len() >= spec.max {
                    let messages = std::mem::take(&mut pending);
                    handle_batch(&handler, &context, &service, messages, &route).await;
                }
                continue;
            }
            let permit = match first.take() {
                Some(permit) => permit,
                None => match permits.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            if route.concurrency == 1 {
                handle(&handler, &context, service.clone(), message.message, &route).await;
                drop(permit);
            } else {
                let handler = handler.clone();
                let context = context.clone();
                let service = service.clone();
                let route = route.clone();
                tokio::spawn(async move {
                    handle(&handler, &context, service, message.message, &route).await;
                    drop(permit);
                });
            }
        }
        // The pull ended (its expiry, or an error): what it delivered for
        // a batch is handled now.
        if !pending.is_empty() {
            handle_batch(&handler, &context, &service, pending, &route).await;
        }
    }
    // Wait for every message still being handled.
    let _ = permits.acquire_many(route.concurrency as u32).await;
    tracing::debug!(handler = %route.name, subject = %route.subject, stream = %route.stream, "durable route stopped");
}

/// Gives a message back to the stream for redelivery (to another instance,
/// or to this one after a restart) once this instance's last pull has
/// expired: a negative acknowledgement without a delay would be
/// redelivered at once into that still open pull, handed back again, and
/// so on, each time counting as a delivery until the server gives up on the
/// message.
async fn hand_back(service: &Service, route: &DurableRoute, mut message: async_nats::Message) {
    let delay = route.pull_expires + Duration::from_millis(500);
    if let Some(ack) = message.reply.take()
        && let Some(client) = service.client()
        && let Err(e) = client.publish(ack, AckKind::Nak(Some(delay)).into()).await
    {
        tracing::debug!(error = %e, "cannot hand a message back; it is redelivered after DURABLE_ACK_WAIT");
    }
}

/// One delivery being handled: its ack subject, delivery count and stream
/// sequence, and what a dead letter needs (kept before the extractors take
/// the body).
struct Delivery {
    ack: Subject,
    delivered: u64,
    sequence: u64,
    subject: Subject,
    headers: Option<HeaderMap>,
    payload: Bytes,
}

impl Delivery {
    /// Takes the ack subject out of `message`; `None` (logged) when it has
    /// none.
    fn of(message: &mut async_nats::Message, route: &DurableRoute) -> Option<Delivery> {
        let Some(ack) = message.reply.take() else {
            tracing::warn!(handler = %route.name, "a durable message without an ack subject; ignored");
            return None;
        };
        let (delivered, sequence) = parse_ack_subject(ack.as_str()).unwrap_or((1, 0));
        Some(Delivery {
            ack,
            delivered,
            sequence,
            subject: message.subject.clone(),
            headers: message.headers.clone(),
            payload: message.payload.clone(),
        })
    }
}

/// Runs `call` while telling the server every third of the ack wait that
/// the deliveries in `acks` are still being worked on.
async fn with_progress<F: std::future::Future>(
    service: &Service,
    route: &DurableRoute,
    acks: &[&Subject],
    call: F,
) -> F::Output {
    let client = service.client().cloned();
    let mut call = std::pin::pin!(call);
    let interval = (route.ack_wait / 3).max(Duration::from_millis(50));
    let mut progress = tokio::time::interval_at(Instant::now() + interval, interval);
    loop {
        tokio::select! {
            biased;
            outcome = &mut call => break outcome,
            _ = progress.tick() => {
                if let Some(client) = &client {
                    for ack in acks {
                        let _ = client.publish((*ack).clone(), AckKind::Progress.into()).await;
                    }
                }
            }
        }
    }
}

/// Handles one delivery: call with progress acks, then publish the return
/// value durably and ack, or nak with back-off, or dead-letter and
/// terminate.
async fn handle<H, Args>(
    handler: &H,
    context: &H::Context,
    service: Service,
    mut message: async_nats::Message,
    route: &DurableRoute,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let Some(delivery) = Delivery::of(&mut message, route) else {
        return;
    };
    let mut incoming = Incoming::new(message, service.clone());
    let started = Instant::now();
    let call = AssertUnwindSafe(async {
        match handler.call(&mut incoming, context) {
            Ok(future) => Ok(future.await.into_reply()),
            Err(e) => Err(e),
        }
    })
    .catch_unwind();
    let call = Scoped {
        future: std::pin::pin!(call),
        name: &route.name,
    };
    let outcome = with_progress(&service, route, &[&delivery.ack], call).await;
    let result = match outcome {
        Ok(Ok(Reply::Error { message, .. })) => Err(message),
        Ok(Ok(reply)) => {
            publish_result(&service, route, reply, delivery.sequence, delivery.sequence).await
        }
        Ok(Err(error)) => Err(format!(
            "cannot handle the message: {}",
            error_chain(&error as &ExtractError)
        )),
        Err(panic) => Err(format!(
            "handler panicked: {}",
            crate::observe::logging::panic_message(&*panic)
        )),
    };
    route.stats.record(1, started.elapsed(), result.is_err());
    match result {
        Ok(()) => settle_done(&service, route, &delivery).await,
        Err(error) => settle_failed(&service, route, delivery, &error).await,
    }
}

/// Handles one batch of deliveries in one call: messages the `Batch<T>`
/// parameter rejects fail on their own; when the call succeeds, its return
/// value is published durably and every other message is acknowledged;
/// when it fails, every other message is redelivered (or dead-lettered
/// after its last delivery).
async fn handle_batch<H, Args>(
    handler: &H,
    context: &H::Context,
    service: &Service,
    mut messages: Vec<async_nats::Message>,
    route: &DurableRoute,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let mut deliveries = Vec::with_capacity(messages.len());
    messages.retain_mut(|message| match Delivery::of(message, route) {
        Some(delivery) => {
            deliveries.push(delivery);
            true
        }
        None => false,
    });
    if messages.is_empty() {
        return;
    }
    let acks: Vec<&Subject> = deliveries.iter().map(|delivery| &delivery.ack).collect();
    let call = with_progress(
        service,
        route,
        &acks,
        call_batch(handler, context, service, &messages, &route.name),
    )
    .await;
    let failure = call.failure().map(|(error, _)| error);
    let mut rejected: Vec<Option<ExtractError>> = messages.iter().map(|_| None).collect();
    for (index, error) in call.rejected {
        if let Some(slot) = rejected.get_mut(index) {
            *slot = Some(error);
        }
    }
    let result = match (call.outcome, failure) {
        (None, _) => Ok(()),
        (Some(_), Some(error)) => Err(error),
        (Some(Ok(Ok(reply))), None) => {
            let first = deliveries.first().map_or(0, |d| d.sequence);
            let last = deliveries.last().map_or(0, |d| d.sequence);
            publish_result(service, route, reply, first, last).await
        }
        (Some(_), None) => Ok(()),
    };
    route
        .stats
        .record(deliveries.len() as u64, call.elapsed, result.is_err());
    let mut done = Vec::new();
    for (delivery, rejected) in deliveries.into_iter().zip(rejected) {
        match (rejected, &result) {
            (Some(error), _) => {
                let error = format!("cannot handle the message: {}", error_chain(&error));
                settle_failed(service, route, delivery, &error).await;
            }
            (None, Ok(())) => done.push(delivery),
            (None, Err(error)) => settle_failed(service, route, delivery, error).await,
        }
    }
    futures::future::join_all(
        done.iter()
            .map(|delivery| settle_done(service, route, delivery)),
    )
    .await;
}

/// Publishes a successful call's return value to the route's publish
/// targets, durably, with a message id made of the stream, consumer and the
/// stream sequences handled (so a redelivered message, handled again, is
/// stored once). An error when a target did not store it.
async fn publish_result(
    service: &Service,
    route: &DurableRoute,
    reply: Reply,
    first: u64,
    last: u64,
) -> Result<(), String> {
    let Reply::Body { payload, headers } = reply else {
        return Ok(());
    };
    for (index, target) in route.publish.iter().enumerate() {
        let id = if first == last {
            format!("{}-{}-{first}-{index}", route.stream, route.consumer_name)
        } else {
            format!(
                "{}-{}-{first}-{last}-{index}",
                route.stream, route.consumer_name
            )
        };
        service
            .publish_durable_inner(target.clone(), id, headers.clone(), payload.clone())
            .await
            .map_err(|e| format!("cannot publish the return value to `{target}`: {e}"))?;
    }
    Ok(())
}

/// Acknowledges a handled delivery and waits for the server to confirm.
async fn settle_done(service: &Service, route: &DurableRoute, delivery: &Delivery) {
    if let Err(e) = acknowledge(service, &delivery.ack, AckKind::Ack, route.ack_wait).await {
        if service.is_stopping() {
            service.note_unconfirmed();
        }
        tracing::warn!(
            handler = %route.name, subject = %delivery.subject, stream_sequence = delivery.sequence, error = %e,
            "handled, but the acknowledgement was not confirmed; the message may be \
             handled again"
        );
    }
}

/// Counts and logs a failed delivery, then hands it back with a delay
/// from the back-off list, or, after its last delivery, dead-letters and
/// terminates it.
async fn settle_failed(service: &Service, route: &DurableRoute, delivery: Delivery, error: &str) {
    let error = &*crate::text::bounded(error);
    service.record_error();
    route.stats.record_error(1, error);
    let Delivery {
        ack,
        delivered,
        sequence,
        subject,
        headers,
        payload,
    } = delivery;
    if delivered >= u64::from(route.max_deliver) {
        tracing::error!(
            handler = %route.name, %subject, stream_sequence = sequence, delivery = delivered,
            %error, dead_letter = %route.dead_letter,
            "durable handler failed for the last time; dead-lettering the message"
        );
        let headers = dead_letter_headers(headers, &subject, error, route, sequence, delivered);
        dead_letter(service, route, headers, payload).await;
        if let Err(e) = acknowledge(service, &ack, AckKind::Term, route.ack_wait).await {
            tracing::warn!(handler = %route.name, stream_sequence = sequence, error = %e, "cannot terminate a dead-lettered message; it may be delivered again");
        }
        return;
    }
    let delay = route.delay_after(delivered);
    tracing::error!(
        handler = %route.name, %subject, stream_sequence = sequence, delivery = delivered,
        max_deliver = route.max_deliver, retry_in_s = delay.as_secs_f64(), %error,
        "durable handler failed; the message is redelivered"
    );
    let kind = AckKind::Nak((!delay.is_zero()).then_some(delay));
    if let Some(client) = service.client()
        && let Err(e) = client.publish(ack, kind.into()).await
    {
        tracing::warn!(handler = %route.name, error = %e, "cannot send the negative acknowledgement; redelivered after DURABLE_ACK_WAIT");
    }
}

/// The delivery count and stream sequence from a `$JS.ACK.` subject (the
/// 7-token form after the prefix, or the 9-or-more-token form with domain
/// and account hash).
fn parse_ack_subject(ack: &str) -> Option<(u64, u64)> {
    let tokens: Vec<&str> = ack.strip_prefix("$JS.ACK.")?.split('.').collect();
    let first = match tokens.len() {
        7 | 8 => 2,
        n if n >= 9 => 4,
        _ => return None,
    };
    Some((tokens[first].parse().ok()?, tokens[first + 1].parse().ok()?))
}

/// Sends an acknowledgement and waits for the server to confirm it,
/// trying up to three times within `ack_wait`.
async fn acknowledge(
    service: &Service,
    ack: &Subject,
    kind: AckKind,
    ack_wait: Duration,
) -> Result<(), BoxError> {
    let client = service.client().ok_or("no NATS client")?;
    let body: Bytes = kind.into();
    let per_try = (ack_wait / 3).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut last: BoxError = "not sent".into();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match tokio::time::timeout(per_try, client.request(ack.clone(), body.clone())).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = Box::new(e),
            Err(_) => last = "no confirmation from the server in time".into(),
        }
    }
    Err(last)
}

/// The headers of a dead letter: the original message's own (when it has
/// readable ones) and what went wrong (see [`dead_letter_headers`](crate::dead_letter_headers)).
pub(crate) fn dead_letter_headers(
    original: Option<HeaderMap>,
    subject: &Subject,
    error: &str,
    route: &DurableRoute,
    sequence: u64,
    delivered: u64,
) -> HeaderMap {
    use dead_letter_headers as h;
    let mut headers = original.unwrap_or_default();
    // A dead letter is a new message: an id meant for the original publish
    // would make a stream that captures dead letters drop it.
    headers.insert(
        "Nats-Msg-Id",
        format!("{}-{}-{sequence}", route.stream, route.consumer_name).as_str(),
    );
    headers.insert(h::ERROR, crate::text::one_line(error).as_ref());
    headers.insert(h::SUBJECT, subject.as_str());
    headers.insert(h::STREAM, route.stream.as_str());
    headers.insert(h::SEQUENCE, sequence.to_string().as_str());
    headers.insert(h::CONSUMER, route.consumer_name.as_str());
    headers.insert(h::DELIVERIES, delivered.to_string().as_str());
    headers.insert(h::HANDLER, route.name.as_ref());
    headers
}

/// Publishes a dead letter (and waits until the server has it), counts it
/// for health; a failure is logged.
pub(crate) async fn dead_letter(
    service: &Service,
    route: &DurableRoute,
    headers: HeaderMap,
    payload: Bytes,
) {
    let sent = service
        .publish_inner(route.dead_letter.clone(), Some(headers), payload)
        .await;
    let flushed = match (&sent, service.client()) {
        (Ok(()), Some(client)) => tokio::time::timeout(Duration::from_secs(5), client.flush())
            .await
            .map_err(|_| "no confirmation in time".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string())),
        (Err(e), _) => Err(e.to_string()),
        (Ok(()), None) => Ok(()),
    };
    if let Err(e) = flushed {
        if service.is_stopping() {
            service.note_unconfirmed();
        }
        tracing::error!(handler = %route.name, subject = %route.dead_letter, error = %e, "cannot publish the dead letter");
    }
    route.dead_lettered.fetch_add(1, Ordering::Relaxed);
    service
        .inner
        .instance
        .update_durable(route.health, |entry| {
            entry.dead_lettered = route.dead_lettered.load(Ordering::Relaxed);
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            default_consumer("ops.a", "svc::handle_cmd"),
            "ops_a_handle_cmd"
        );
        assert_eq!(
            default_dead_letter("telestion.dead", "ops", "svc::record"),
            "telestion.dead.ops.record"
        );
        assert_eq!(token(""), "_");
    }

    #[test]
    fn ack_subjects() {
        assert_eq!(
            parse_ack_subject("$JS.ACK.S.C.3.42.40.1700000000000000000.5"),
            Some((3, 42))
        );
        assert_eq!(
            parse_ack_subject("$JS.ACK._.ACC.S.C.2.7.6.1700000000000000000.0.tok"),
            Some((2, 7))
        );
        assert_eq!(parse_ack_subject("_INBOX.x"), None);
    }

    #[test]
    fn backoff_key() {
        let config = Config::from_pairs([("DURABLE_BACKOFF", "0.5, 2,10")]);
        assert_eq!(
            backoff_from(&config).unwrap().unwrap(),
            [0.5, 2.0, 10.0].map(Duration::from_secs_f64)
        );
        let config = Config::from_pairs([("DURABLE_BACKOFF", "soon")]);
        let error = backoff_from(&config).unwrap_err().to_string();
        assert!(error.contains("DURABLE_BACKOFF"), "{error}");
    }
}
