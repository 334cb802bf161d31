//! The Prometheus endpoint: `GET /metrics` on `METRICS_ADDR` (off unless
//! that key is set), in the Prometheus text format, with every handler's
//! message and error counters and handling-time histogram, the health
//! reply's error counts, each durable handler's consumer numbers and the
//! uptime.
//!
//! The registry and the encoding are the official Prometheus client
//! (`prometheus-client`); the HTTP side is hyper's HTTP/1 server. Both are
//! bounded: at most [`MAX_CONNECTIONS`] connections at once (more are
//! closed at once), no keep-alive, [`CONNECTION_TIME_LIMIT`] per
//! connection, request heads of at most 8 KiB, request bodies never read.

use std::convert::Infallible;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::instance::Instance;
use crate::config::Config;
use crate::error::{ConfigError, StartError};
use crate::observe::stats::{HandlerStats, Observer};

/// The configuration key naming the endpoint's address (`host:port`).
pub(crate) const KEY: &str = "METRICS_ADDR";

/// Connections served at once; more are closed without an answer.
pub(crate) const MAX_CONNECTIONS: usize = 16;

/// How long one connection may take, request and answer together.
pub(crate) const CONNECTION_TIME_LIMIT: Duration = Duration::from_secs(10);

/// The bucket bounds of `telestion_handler_duration_seconds`, seconds.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The labels of a handler's metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    handler: String,
    subject: String,
    kind: String,
}

impl HandlerLabels {
    fn of(stats: &HandlerStats) -> HandlerLabels {
        HandlerLabels {
            handler: stats.name.to_string(),
            subject: stats.subject.clone(),
            kind: stats.kind.as_str().to_owned(),
        }
    }
}

/// The labels of a durable handler's consumer metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurableLabels {
    handler: String,
    stream: String,
    consumer: String,
}

type Histograms = Family<HandlerLabels, Histogram, fn() -> Histogram>;

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The handling-time histograms, fed by the service's observer; each
/// handler's histogram is looked up once and kept by the address of its
/// counters (which live as long as the service).
struct Timings {
    family: Histograms,
    by_handler: RwLock<Vec<(usize, Histogram)>>,
}

impl Timings {
    fn observe(&self, stats: &HandlerStats, elapsed: Duration) {
        let key = stats as *const HandlerStats as usize;
        let seconds = elapsed.as_secs_f64();
        {
            let known = self.by_handler.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, histogram)) = known.iter().find(|(k, _)| *k == key) {
                histogram.observe(seconds);
                return;
            }
        }
        let histogram = self.family.get_or_create_owned(&HandlerLabels::of(stats));
        histogram.observe(seconds);
        self.by_handler
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((key, histogram));
    }
}

/// What is read from the service at every scrape: the handlers' counters,
/// the error counter, the durable consumers, the uptime and the connection.
#[derive(Debug)]
struct ServiceCollector {
    service: Weak<Instance>,
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge<V>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<V>: EncodeMetric,
{
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One labelled series per item, each value made a metric by `metric`
/// (`ConstCounter::new` or `ConstGauge::new`); nothing when there is none.
fn family<L, M>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(L, u64)],
    metric: fn(u64) -> M,
) -> Result<(), std::fmt::Error>
where
    L: EncodeLabelSet,
    M: EncodeMetric,
{
    if series.is_empty() {
        return Ok(());
    }
    let kind = metric(0).metric_type();
    let mut encoded = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        metric(*value).encode(encoded.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for ServiceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(inner) = self.service.upgrade() else {
            return Ok(());
        };
        let handlers: Vec<(HandlerLabels, crate::observe::stats::StatsSnapshot)> = inner
            .handlers()
            .iter()
            .map(|stats| (HandlerLabels::of(stats), stats.snapshot()))
            .collect();
        let messages: Vec<_> = handlers
            .iter()
            .map(|(labels, snapshot)| (labels.clone(), snapshot.messages))
            .collect();
        family(
            &mut encoder,
            "telestion_handler_messages",
            "Messages a handler took (timer ticks and task runs for those).",
            &messages,
            ConstCounter::new,
        )?;
        let errors: Vec<_> = handlers
            .into_iter()
            .map(|(labels, snapshot)| (labels, snapshot.errors))
            .collect();
        family(
            &mut encoder,
            "telestion_handler_errors",
            "Messages whose handling failed.",
            &errors,
            ConstCounter::new,
        )?;
        counter(
            &mut encoder,
            "telestion_errors",
            "Errors since start (what health replies call errors_total).",
            inner.errors.total(),
        )?;
        gauge(
            &mut encoder,
            "telestion_errors_recent",
            "Errors within the health error window (what health replies call errors).",
            inner.errors.recent(),
        )?;
        gauge(
            &mut encoder,
            "telestion_uptime_seconds",
            "Seconds since the service started.",
            inner.started.elapsed().as_secs_f64(),
        )?;
        gauge(
            &mut encoder,
            "telestion_connected",
            "1 while the NATS connection is up, else 0.",
            u64::from(inner.is_connected()),
        )?;
        let durable = inner.report().durable;
        let labelled = |value: fn(&crate::observe::health::DurableHealth) -> u64| -> Vec<_> {
            durable
                .iter()
                .map(|entry| {
                    (
                        DurableLabels {
                            handler: entry.handler.clone(),
                            stream: entry.stream.clone(),
                            consumer: entry.consumer.clone(),
                        },
                        value(entry),
                    )
                })
                .collect()
        };
        family(
            &mut encoder,
            "telestion_durable_pending",
            "Messages in a durable handler's stream not yet delivered to any instance.",
            &labelled(|e| e.pending),
            ConstGauge::new,
        )?;
        family(
            &mut encoder,
            "telestion_durable_ack_pending",
            "Messages delivered to a durable handler and not yet acknowledged.",
            &labelled(|e| e.ack_pending),
            ConstGauge::new,
        )?;
        family(
            &mut encoder,
            "telestion_durable_redelivered",
            "Messages delivered more than once and not yet acknowledged.",
            &labelled(|e| e.redelivered),
            ConstGauge::new,
        )?;
        family(
            &mut encoder,
            "telestion_durable_dead_lettered",
            "Messages this instance published to the dead-letter subject since start.",
            &labelled(|e| e.dead_lettered),
            ConstCounter::new,
        )?;
        Ok(())
    }
}

/// The registry of one service.
struct Metrics {
    registry: Registry,
}

impl Metrics {
    fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(4096);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

fn invalid(message: String) -> StartError {
    ConfigError::Invalid {
        key: Some(KEY.into()),
        message,
    }
    .into()
}

/// Starts the endpoint when `METRICS_ADDR` is set: binds it (a failure
/// fails the start, naming the key), installs the handling-time observer
/// (before any route is subscribed) and serves until the drain ends.
pub(crate) async fn start(
    config: &Config,
    instance: &Arc<Instance>,
) -> Result<Option<tokio::task::JoinHandle<()>>, StartError> {
    let Some(addr) = config.get_str(KEY).filter(|a| !a.trim().is_empty()) else {
        return Ok(None);
    };
    let addr = addr.trim().to_owned();
    if !addr.contains(':') {
        return Err(invalid(format!(
            "key {KEY}: `{addr}` is not an address to listen on; give host:port, e.g. \
             0.0.0.0:9090 or 127.0.0.1:9090"
        )));
    }
    let listener = tokio::net::TcpListener::bind(addr.as_str())
        .await
        .map_err(|e| invalid(format!("key {KEY}: cannot listen on `{addr}`: {e}")))?;
    let local = listener.local_addr().ok();
    let timings = Arc::new(Timings {
        family: Family::new_with_constructor(new_histogram as fn() -> Histogram),
        by_handler: RwLock::new(Vec::new()),
    });
    let mut registry = Registry::with_labels(
        [(
            std::borrow::Cow::Borrowed("service"),
            std::borrow::Cow::Owned(instance.name.clone()),
        )]
        .into_iter(),
    );
    registry.register(
        "telestion_handler_duration_seconds",
        "How long a handler took per message (per batch for a batch handler), seconds",
        timings.family.clone(),
    );
    registry.register_collector(Box::new(ServiceCollector {
        service: Arc::downgrade(instance),
    }));
    let observer_timings = timings.clone();
    let observer: Observer = Arc::new(move |stats: &HandlerStats, elapsed, _failed| {
        observer_timings.observe(stats, elapsed);
    });
    if instance.observer.set(observer).is_err() {
        tracing::warn!("a handler observer was already set; handling times are not measured");
    }
    let metrics = Arc::new(Metrics { registry });
    let task = tokio::spawn(serve(listener, metrics));
    tracing::info!(addr = ?local, "metrics at http://{}/metrics", local.map_or(addr, |a| a.to_string()));
    Ok(Some(task))
}

/// Accepts connections until aborted (after the drain).
async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                tracing::warn!(error = %e, "metrics endpoint: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper::service::service_fn(move |request| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(answer(&request, &metrics)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .max_buf_size(8192)
                .serve_connection(io, service);
            let _ = tokio::time::timeout(CONNECTION_TIME_LIMIT, connection).await;
        });
    }
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn answer<B>(request: &Request<B>, metrics: &Metrics) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if request.uri().path() != "/metrics" {
        return respond(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found; try GET /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = respond(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "use GET\n");
        response.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return response;
    }
    match metrics.render() {
        Ok(text) => respond(
            StatusCode::OK,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            text,
        ),
        Err(_) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            PLAIN,
            "cannot encode the metrics\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::stats::RouteKind;

    fn timings() -> Timings {
        Timings {
            family: Family::new_with_constructor(new_histogram as fn() -> Histogram),
            by_handler: RwLock::new(Vec::new()),
        }
    }

    fn stats(name: &str) -> HandlerStats {
        HandlerStats::new(
            name.into(),
            format!("{name}.subject"),
            None,
            RouteKind::Subscription,
            Vec::new(),
            None,
        )
    }

    #[test]
    fn one_histogram_per_handler() {
        let timings = timings();
        let (a, b) = (stats("a"), stats("b"));
        timings.observe(&a, Duration::from_micros(50));
        timings.observe(&a, Duration::from_millis(3));
        timings.observe(&b, Duration::from_secs(20));
        let mut registry = Registry::default();
        registry.register("d", "h", timings.family.clone());
        let text = Metrics { registry }.render().unwrap();
        let labels = |name: &str| {
            format!("handler=\"{name}\",subject=\"{name}.subject\",kind=\"subscription\"")
        };
        assert!(
            text.contains(&format!("d_count{{{}}} 2\n", labels("a"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("d_sum{{{}}} 0.00305\n", labels("a"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("d_bucket{{{},le=\"0.0001\"}} 1\n", labels("a"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("d_bucket{{{},le=\"10\"}} 0\n", labels("b"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("d_count{{{}}} 1\n", labels("b"))),
            "{text}"
        );
        assert_eq!(timings.by_handler.read().unwrap().len(), 2);
    }

    /// What an observation costs (the only per-message cost of metrics):
    /// `cargo test --release -p telestion --lib -- --ignored observation_cost --nocapture`.
    #[test]
    #[ignore]
    fn observation_cost() {
        let timings = timings();
        let handlers: Vec<HandlerStats> = (0..20).map(|i| stats(&format!("h{i}"))).collect();
        let rounds = 2_000_000;
        let started = std::time::Instant::now();
        for i in 0..rounds {
            timings.observe(&handlers[i % 20], Duration::from_micros((i % 1000) as u64));
        }
        let per = started.elapsed().as_nanos() as f64 / rounds as f64;
        println!("{per:.1} ns per observation (20 handlers, one thread)");
    }
}
