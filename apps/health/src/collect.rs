//! One round of asking the bus: a health request on both health subjects
//! and a `$SRV.STATS` request (the NATS micro protocol), all with one reply
//! inbox, replies collected for the wait time. The result is one
//! [`Instance`] per instance id, with its health report, its handlers'
//! counts, or both.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use telestion::health::{HealthReport, SUBJECT, SUBJECT_DOTTED};

/// The micro protocol's STATS reply, the parts the tool shows.
#[derive(Debug, Deserialize)]
struct StatsReply {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    id: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    endpoints: Vec<EndpointStats>,
}

#[derive(Debug, Deserialize)]
struct EndpointStats {
    #[serde(default)]
    name: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    queue_group: Option<String>,
    #[serde(default)]
    num_requests: u64,
    #[serde(default)]
    num_errors: u64,
    #[serde(default)]
    last_error: Option<String>,
    #[serde(default)]
    processing_time: u64,
    #[serde(default)]
    average_processing_time: u64,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

/// A handler of an instance, as its `$SRV.STATS` reply tells.
#[derive(Debug, Clone, Serialize)]
pub struct Handler {
    /// The endpoint name.
    pub name: String,
    /// Its subject.
    pub subject: String,
    /// Its queue group ("" when none).
    pub queue_group: String,
    /// Messages taken.
    pub messages: u64,
    /// Messages whose handling failed.
    pub errors: u64,
    /// The latest failure ("" when none).
    pub last_error: String,
    /// Total handling time, nanoseconds.
    pub processing_ns: u64,
    /// Average handling time, nanoseconds.
    pub average_ns: u64,
    /// A durable handler's consumer: messages not yet delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
    /// A durable handler's consumer: delivered more than once and not yet
    /// acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redelivered: Option<u64>,
}

/// One instance on the bus.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    /// `SERVICE_NAME`.
    pub name: String,
    /// The instance id.
    pub id: String,
    /// Its version (from `$SRV.STATS`; "" when it did not answer that).
    pub version: String,
    /// Recent errors (`None`: it did not answer health).
    pub errors: Option<u64>,
    /// Errors since start.
    pub errors_total: Option<u64>,
    /// Seconds since start.
    pub uptime_s: Option<f64>,
    /// Time to its first reply, milliseconds.
    pub latency_ms: f64,
    /// Its handlers (empty when it did not answer `$SRV.STATS`).
    pub handlers: Vec<Handler>,
    /// Its durable handlers that are failing or stalled, as
    /// `<handler>: <state>: <reason>` (from its health reply).
    pub troubled: Vec<String>,
}

/// Asks the bus once and collects replies for `wait`; leaves out the
/// instance `own_id` (the tool itself).
pub async fn round(
    client: &async_nats::Client,
    wait: Duration,
    own_id: &str,
) -> Result<Vec<Instance>, String> {
    let inbox = client.new_inbox();
    // One reply subject per request (`<inbox>.0`, `.1`, `.2`): a service
    // may answer each request it received once (its NATS permissions allow
    // one response per reply subject).
    let mut replies = client
        .subscribe(format!("{inbox}.*"))
        .await
        .map_err(|e| format!("cannot subscribe to the reply inbox: {e}"))?;
    let sent = Instant::now();
    for (index, subject) in [SUBJECT, SUBJECT_DOTTED, "$SRV.STATS"].iter().enumerate() {
        client
            .publish_with_reply(*subject, format!("{inbox}.{index}"), "".into())
            .await
            .map_err(|e| format!("cannot send the request on {subject}: {e}"))?;
    }
    client
        .flush()
        .await
        .map_err(|e| format!("cannot send the requests: {e}"))?;

    let mut instances: BTreeMap<String, Instance> = BTreeMap::new();
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        let message = tokio::select! {
            _ = &mut deadline => break,
            message = replies.next() => match message {
                Some(message) => message,
                None => break,
            },
        };
        let latency_ms = sent.elapsed().as_secs_f64() * 1000.0;
        let entry = |instances: &mut BTreeMap<String, Instance>, id: &str, name: &str| {
            instances
                .entry(id.to_owned())
                .or_insert_with(|| Instance {
                    name: name.to_owned(),
                    id: id.to_owned(),
                    version: String::new(),
                    errors: None,
                    errors_total: None,
                    uptime_s: None,
                    latency_ms,
                    handlers: Vec::new(),
                    troubled: Vec::new(),
                })
                .id
                .clone()
        };
        if let Ok(stats) = serde_json::from_slice::<StatsReply>(&message.payload)
            && stats.kind == "io.nats.micro.v1.stats_response"
        {
            if stats.id == own_id {
                continue;
            }
            let id = entry(&mut instances, &stats.id, &stats.name);
            let instance = instances.get_mut(&id).expect("just inserted");
            instance.version = stats.version;
            instance.handlers = stats.endpoints.into_iter().map(handler).collect();
            continue;
        }
        // The runtime's own report type: services of other libraries
        // send only the spec's fields, the rest default to zero.
        match serde_json::from_slice::<HealthReport>(&message.payload) {
            Ok(report) => {
                if report.service == own_id {
                    continue;
                }
                let id = entry(&mut instances, &report.service, &report.name);
                let instance = instances.get_mut(&id).expect("just inserted");
                // Both health subjects answer: the first reply counts.
                if instance.errors.is_none() {
                    if instance.name.is_empty() {
                        instance.name = report.name;
                    }
                    instance.errors = Some(report.errors);
                    instance.errors_total = Some(report.errors_total);
                    instance.uptime_s = Some(report.uptime_s);
                    instance.troubled = report
                        .durable
                        .iter()
                        .filter(|entry| entry.is_troubled())
                        .map(|entry| {
                            format!("{}: {}: {}", entry.handler, entry.state, entry.reason)
                        })
                        .collect();
                }
            }
            Err(error) => {
                tracing::warn!(%error, "a reply is neither a health report nor micro stats; skipped");
            }
        }
    }
    let mut instances: Vec<Instance> = instances.into_values().collect();
    instances.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(instances)
}

fn handler(endpoint: EndpointStats) -> Handler {
    let data_u64 = |key: &str| {
        endpoint
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .and_then(serde_json::Value::as_u64)
    };
    Handler {
        pending: data_u64("pending"),
        redelivered: data_u64("redelivered"),
        name: endpoint.name,
        subject: endpoint.subject,
        queue_group: endpoint.queue_group.unwrap_or_default(),
        messages: endpoint.num_requests,
        errors: endpoint.num_errors,
        last_error: endpoint.last_error.unwrap_or_default(),
        processing_ns: endpoint.processing_time,
        average_ns: endpoint.average_processing_time,
    }
}
