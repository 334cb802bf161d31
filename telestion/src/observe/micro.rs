//! Discovery: the NATS micro protocol (ADR-32 of nats-io's architecture
//! decisions), so that tools made for NATS services (`nats micro ls`,
//! nats-py's and `@nats-io/services`' types, Telestion's `health` tool) see
//! every Telestion service.
//!
//! Every instance answers, outside any queue group like health, on
//!
//! - `$SRV.PING`, `$SRV.PING.<name>`, `$SRV.PING.<name>.<id>`
//! - `$SRV.INFO`, `$SRV.INFO.<name>`, `$SRV.INFO.<name>.<id>`
//! - `$SRV.STATS`, `$SRV.STATS.<name>`, `$SRV.STATS.<name>.<id>`
//!
//! where `<name>` is `SERVICE_NAME` and `<id>` the instance id. Replies are
//! the protocol's JSON (`io.nats.micro.v1.ping_response`, `info_response`,
//! `stats_response`).
//!
//! Endpoints are the handlers that have a subject: core subscriptions and
//! durable consumers, in subscription order. Timers and tasks listen on no
//! subject, so they are not endpoints; the service metadata names them
//! (`telestion.timers`, `telestion.tasks`) and their failures count in
//! health. An endpoint's `num_requests` counts every message its handler
//! took, request or not; a durable endpoint's `data` carries its consumer's
//! `pending`, `ack_pending` and `redelivered` counts and what this
//! instance dead-lettered.
//!
//! Endpoint names must match `^[a-zA-Z0-9_-]+$` in the protocol's schema:
//! any other character of a handler's name becomes `_` there, and the
//! endpoint's metadata keeps the name as written (`telestion.handler`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use super::instance::Instance;
use crate::observe::health::DurableHealth;
use crate::observe::stats::{HandlerStats, RouteKind};

/// The subject prefix of the protocol.
pub const PREFIX: &str = "$SRV";

/// The version a service reports when neither `#[telestion::service]` (the
/// crate's version) nor `SERVICE_VERSION` nor [`Options::version`] gives
/// one.
///
/// [`Options::version`]: crate::Options::version
pub const DEFAULT_VERSION: &str = "0.0.0";

/// The three verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Ping,
    Info,
    Stats,
}

impl Verb {
    const ALL: [Verb; 3] = [Verb::Ping, Verb::Info, Verb::Stats];

    fn as_str(self) -> &'static str {
        match self {
            Verb::Ping => "PING",
            Verb::Info => "INFO",
            Verb::Stats => "STATS",
        }
    }
}

/// The subjects an instance answers on for `verb`: all services, this
/// name, this instance. The last two only when name and id make a literal
/// subject (no wildcard, no whitespace, no empty token).
fn subjects(verb: Verb, name: &str, id: &str) -> Vec<String> {
    let all = format!("{PREFIX}.{}", verb.as_str());
    let mut subjects = vec![all.clone()];
    let literal = |s: &str| {
        telestion_rules::subject::validate(s).is_ok()
            && !s.split('.').any(|token| token == "*" || token == ">")
    };
    if literal(name) {
        subjects.push(format!("{all}.{name}"));
        if literal(id) {
            subjects.push(format!("{all}.{name}.{id}"));
        }
    }
    subjects
}

/// Checks a version against semantic versioning 2.0
/// (`MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`), as the protocol asks.
///
/// ```
/// assert!(telestion::micro::check_version("1.2.3-rc.1+build.5").is_ok());
/// assert!(telestion::micro::check_version("1.2").is_err());
/// ```
pub fn check_version(version: &str) -> Result<(), String> {
    let problem = |what: &str| {
        Err(format!(
            "{:?} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.4.0): {what}",
            version.chars().take(64).collect::<String>()
        ))
    };
    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    if numbers.len() != 3 {
        return problem("it needs three numbers separated by `.`");
    }
    let numeric = |n: &str| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'))
    };
    if !numbers.iter().all(|n| numeric(n)) {
        return problem("MAJOR, MINOR and PATCH are numbers without leading zeros");
    }
    let identifiers_ok = |part: &str, numeric_rule: bool| {
        part.split('.').all(|id| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && (!numeric_rule || !id.bytes().all(|b| b.is_ascii_digit()) || numeric(id))
        })
    };
    if let Some(pre) = pre
        && !identifiers_ok(pre, true)
    {
        return problem("the pre-release part has an empty or invalid identifier");
    }
    if let Some(build) = build
        && !identifiers_ok(build, false)
    {
        return problem("the build part has an empty or invalid identifier");
    }
    Ok(())
}

/// A handler's name as an endpoint name (`^[a-zA-Z0-9_-]+$`).
fn endpoint_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "handler".to_owned()
    } else {
        cleaned
    }
}

/// The fields every reply starts with.
#[derive(Serialize)]
struct Common<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id: &'a str,
    version: &'a str,
    metadata: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct InfoReply<'a> {
    #[serde(flatten)]
    common: Common<'a>,
    description: String,
    endpoints: Vec<EndpointInfo>,
}

#[derive(Serialize)]
struct EndpointInfo {
    name: String,
    subject: String,
    queue_group: String,
    metadata: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct StatsReply<'a> {
    #[serde(flatten)]
    common: Common<'a>,
    started: &'a str,
    endpoints: Vec<EndpointStats>,
}

#[derive(Serialize)]
struct EndpointStats {
    name: String,
    subject: String,
    queue_group: String,
    num_requests: u64,
    num_errors: u64,
    last_error: String,
    processing_time: u64,
    average_processing_time: u64,
    data: Value,
}

/// What the replies are made from, fixed at start.
struct Identity {
    name: String,
    id: String,
    version: String,
    /// RFC 3339, UTC, microseconds.
    started: String,
}

impl Identity {
    fn common(&self, kind: &'static str, handlers: &[std::sync::Arc<HandlerStats>]) -> Common<'_> {
        let mut metadata = BTreeMap::new();
        metadata.insert("telestion.version", env!("CARGO_PKG_VERSION").to_owned());
        for (key, kind) in [
            ("telestion.timers", RouteKind::Timer),
            ("telestion.tasks", RouteKind::Task),
        ] {
            let names: Vec<&str> = handlers
                .iter()
                .filter(|h| h.kind == kind)
                .map(|h| &*h.name)
                .collect();
            if !names.is_empty() {
                metadata.insert(key, names.join(","));
            }
        }
        Common {
            kind,
            name: &self.name,
            id: &self.id,
            version: &self.version,
            metadata,
        }
    }

    fn reply(&self, verb: Verb, inner: &Instance) -> serde_json::Result<Vec<u8>> {
        let handlers = inner.handlers();
        let endpoints = handlers
            .iter()
            .filter(|h| matches!(h.kind, RouteKind::Subscription | RouteKind::Durable));
        match verb {
            Verb::Ping => {
                serde_json::to_vec(&self.common("io.nats.micro.v1.ping_response", &handlers))
            }
            Verb::Info => {
                let durable = inner.report().durable;
                serde_json::to_vec(&InfoReply {
                    common: self.common("io.nats.micro.v1.info_response", &handlers),
                    description: format!("Telestion service {}", self.name),
                    endpoints: endpoints
                        .map(|h| EndpointInfo {
                            name: endpoint_name(&h.name),
                            subject: h.subject.clone(),
                            queue_group: h.queue_group.clone().unwrap_or_default(),
                            metadata: endpoint_metadata(h, find_durable(&durable, h)),
                        })
                        .collect(),
                })
            }
            Verb::Stats => {
                let durable = inner.report().durable;
                serde_json::to_vec(&StatsReply {
                    common: self.common("io.nats.micro.v1.stats_response", &handlers),
                    started: &self.started,
                    endpoints: endpoints
                        .map(|h| {
                            let snapshot = h.snapshot();
                            EndpointStats {
                                name: endpoint_name(&h.name),
                                subject: h.subject.clone(),
                                queue_group: h.queue_group.clone().unwrap_or_default(),
                                num_requests: snapshot.messages,
                                num_errors: snapshot.errors,
                                average_processing_time: snapshot.average_ns(),
                                processing_time: snapshot.processing_ns,
                                last_error: snapshot.last_error,
                                data: durable_data(find_durable(&durable, h)),
                            }
                        })
                        .collect(),
                })
            }
        }
    }
}

fn find_durable<'a>(durable: &'a [DurableHealth], h: &HandlerStats) -> Option<&'a DurableHealth> {
    if h.kind != RouteKind::Durable {
        return None;
    }
    durable.iter().find(|d| d.handler == *h.name)
}

fn endpoint_metadata(
    h: &HandlerStats,
    durable: Option<&DurableHealth>,
) -> BTreeMap<&'static str, String> {
    let mut metadata = BTreeMap::new();
    metadata.insert("telestion.kind", h.kind.as_str().to_owned());
    metadata.insert("telestion.handler", h.name.to_string());
    if !h.publish.is_empty() {
        metadata.insert("telestion.publish", h.publish.join(","));
    }
    if let Some(d) = durable {
        metadata.insert("telestion.stream", d.stream.clone());
        metadata.insert("telestion.consumer", d.consumer.clone());
    }
    metadata
}

fn durable_data(durable: Option<&DurableHealth>) -> Value {
    match durable {
        Some(d) => serde_json::json!({
            "pending": d.pending,
            "ack_pending": d.ack_pending,
            "redelivered": d.redelivered,
            "dead_lettered": d.dead_lettered,
        }),
        None => Value::Null,
    }
}

/// Subscribes the nine discovery subjects; the returned task answers until
/// it is aborted, after every handler has drained at shutdown (like the
/// health replies). A request without a reply subject is ignored.
pub(crate) async fn start(
    client: &async_nats::Client,
    instance: &Arc<Instance>,
) -> Result<tokio::task::JoinHandle<()>, (String, async_nats::SubscribeError)> {
    let inner = Arc::downgrade(instance);
    let (name, id) = (instance.name.as_str(), instance.id.as_str());
    let identity = Identity {
        name: name.to_owned(),
        id: id.to_owned(),
        version: instance.version.clone(),
        started: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
    };
    let mut subscribers = Vec::new();
    for verb in Verb::ALL {
        for subject in subjects(verb, name, id) {
            let subscriber = client
                .subscribe(subject.clone())
                .await
                .map_err(|e| (subject, e))?;
            subscribers.push(subscriber.map(move |message| (verb, message)).boxed());
        }
    }
    let client = client.clone();
    Ok(tokio::spawn(async move {
        let mut requests = futures::stream::select_all(subscribers);
        while let Some((verb, message)) = requests.next().await {
            let Some(reply) = message.reply else { continue };
            let Some(inner) = inner.upgrade() else { return };
            let body = match identity.reply(verb, &inner) {
                Ok(body) => body,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot encode a discovery reply");
                    continue;
                }
            };
            drop(inner);
            if let Err(e) = client.publish(reply, body.into()).await {
                tracing::warn!(error = %e, "cannot send a discovery reply");
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in [
            "0.0.0",
            "1.2.3",
            "10.20.30",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-0.3.7",
            "1.0.0-x-y-z.--",
            "1.0.0+20130313144700",
            "1.0.0-beta+exp.sha.5114f85",
        ] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.02.3",
            "v1.2.3",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-01",
            "1.2.3-a..b",
            "1.2.3-é",
            " 1.2.3",
            "1.2.x",
        ] {
            let err = check_version(bad).unwrap_err();
            assert!(err.contains("semantic version"), "{bad}: {err}");
        }
    }

    #[test]
    fn subjects_of_a_verb() {
        assert_eq!(
            subjects(Verb::Stats, "parser", "abc"),
            ["$SRV.STATS", "$SRV.STATS.parser", "$SRV.STATS.parser.abc"]
        );
        assert_eq!(subjects(Verb::Ping, "*", "x"), ["$SRV.PING"]);
        assert_eq!(subjects(Verb::Ping, "a.>", "x"), ["$SRV.PING"]);
        assert_eq!(
            subjects(Verb::Ping, "p", "x y"),
            ["$SRV.PING", "$SRV.PING.p"]
        );
    }

    #[test]
    fn endpoint_names() {
        assert_eq!(endpoint_name("to_fahrenheit"), "to_fahrenheit");
        assert_eq!(endpoint_name("a::b.c"), "a__b_c");
        assert_eq!(endpoint_name(""), "handler");
    }
}
