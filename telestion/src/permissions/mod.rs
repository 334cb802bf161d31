//! The NATS permissions a service needs, derived from what it declares:
//! its routes (subscriptions with their queue groups, publish targets,
//! replies, durable consumers and their dead letters), what its own code
//! does ([`Uses`]), and what every service does (health, the `$SRV`
//! discovery subjects, its own reply inbox). `--nats-permissions` prints
//! them as a nats-server permissions object; `apps/nats_config` builds the
//! server's users from them.
//!
//! Each service's replies come to its own inbox prefix, `_INBOX.<SERVICE_NAME>`
//! (the runtime connects with it), so one service cannot read another's
//! replies. Nothing that deletes or purges a stream, a consumer or a
//! message is ever allowed.
//!
//! ```
//! use telestion::permissions::{Uses, nats_permissions};
//! use telestion::{Config, Route};
//!
//! async fn store(_body: String) {}
//!
//! let routes = [Route::new("telemetry.parsed", store).name("store")];
//! let config = Config::from_pairs([("SERVICE_NAME", "writer")]);
//! let permissions = nats_permissions(&routes, &Uses::new().publishes("device.link"), &config, "writer");
//! assert!(permissions.publish.allow.contains(&"device.link".to_owned()));
//! assert!(permissions.subscribe.allow.contains(&"telemetry.parsed writer".to_owned()));
//! assert!(permissions.subscribe.allow.contains(&"_INBOX.writer.>".to_owned()));
//! assert!(permissions.publish.deny.contains(&"$JS.API.STREAM.DELETE.>".to_owned()));
//! ```

mod jetstream;

use serde::Serialize;

pub use crate::service::uses::{Uses, inbox_prefix};

use crate::service::uses;

use crate::config::Config;
use crate::route::kind::Kind;
use crate::route::{QueueGroup, Route};

/// Allowed and denied subjects of one direction (publish or subscribe).
/// A subscribe entry may name a queue group after a space
/// (`subject group`): only subscriptions in that group are allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SubjectPermissions {
    /// Subjects allowed (wildcards as in NATS).
    pub allow: Vec<String>,
    /// Subjects denied, whatever `allow` says.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl SubjectPermissions {
    fn add(&mut self, subject: impl Into<String>) {
        let subject = subject.into();
        if !self.allow.contains(&subject) {
            self.allow.push(subject);
        }
    }
}

/// The replies a user may send to requests it received (nats-server's
/// `allow_responses`): up to `max` to one reply subject, within `expires`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Responses {
    /// Replies per request's reply subject.
    pub max: u32,
    /// How long after the request (a duration such as `2m`).
    pub expires: String,
}

/// How many replies a service may send to one reply subject: one per
/// request (a client that asks several requests with one reply subject,
/// as the health tool once did, gets only the first answer).
const RESPONSES_PER_REPLY_SUBJECT: u32 = 1;

/// A nats-server permissions object (the `permissions` of a user), as
/// `--nats-permissions` prints it in JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NatsPermissions {
    /// What the user may publish.
    pub publish: SubjectPermissions,
    /// What the user may subscribe to.
    pub subscribe: SubjectPermissions,
    /// Whether the user may answer requests it received (publish to their
    /// reply subjects), which every service needs; `None`: it may not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_responses: Option<Responses>,
}

/// The permissions service `name` needs for `routes` and `uses`, subjects
/// from config keys resolved with `config` (a key that is not set and has
/// no default is left out: set it when generating permissions).
///
/// ```
/// use telestion::permissions::{Uses, nats_permissions};
/// use telestion::{Config, Durable, Route};
///
/// async fn parse(_frame: String) {}
///
/// let routes = [Route::new("telemetry.raw", parse)
///     .name("parse")
///     .durable(Durable::new().stream("TELEMETRY_RAW"))];
/// let uses = Uses::new().publishes("telemetry.parsed").streams("TELEMETRY");
/// let p = nats_permissions(&routes, &uses, &Config::from_pairs([("A", "b")]), "parser");
/// let publish = &p.publish.allow;
/// assert!(publish.contains(&"telemetry.parsed".to_owned()));
/// assert!(publish.contains(&"$JS.API.STREAM.CREATE.TELEMETRY".to_owned()));
/// assert!(publish.iter().any(|s| s.starts_with("$JS.API.CONSUMER.MSG.NEXT.TELEMETRY_RAW.")));
/// assert!(publish.contains(&"telestion.dead.parser.parse".to_owned()));
/// // Never allowed: deleting, purging.
/// assert!(!publish.iter().any(|s| s.contains("DELETE") || s.contains("PURGE")));
/// ```
pub fn nats_permissions(
    routes: &[Route],
    uses: &Uses,
    config: &Config,
    name: &str,
) -> NatsPermissions {
    let mut p = NatsPermissions {
        allow_responses: Some(Responses {
            max: RESPONSES_PER_REPLY_SUBJECT,
            expires: "2m".into(),
        }),
        ..NatsPermissions::default()
    };
    // Its own inbox: replies come there, and the runtime checks its
    // connection with a round trip through it.
    p.subscribe.add(format!("{}.>", inbox_prefix(name)));
    p.publish.add(format!("{}.>", inbox_prefix(name)));
    for subject in [
        crate::observe::health::SUBJECT,
        crate::observe::health::SUBJECT_DOTTED,
    ] {
        p.subscribe.add(subject);
    }
    let srv = crate::observe::micro::PREFIX;
    for subject in [
        format!("{srv}.*"),
        format!("{srv}.*.{name}"),
        format!("{srv}.*.{name}.*"),
    ] {
        p.subscribe.add(subject);
    }
    let mut jetstream_used = false;
    for route in routes {
        for target in &route.publish {
            if let Ok(subject) = target.resolve(config) {
                p.publish.add(subject);
            }
        }
        let Kind::Messages(_) = &route.kind else {
            continue;
        };
        let subject = route.resolved_subject(config);
        match route.durable_settings() {
            None => {
                let Some(subject) = subject else { continue };
                match route.queue_choice() {
                    QueueGroup::ServiceName => p.subscribe.add(format!("{subject} {name}")),
                    QueueGroup::Named(group) => p.subscribe.add(format!("{subject} {group}")),
                    QueueGroup::Broadcast => p.subscribe.add(subject),
                    #[allow(unreachable_patterns)]
                    _ => p.subscribe.add(subject),
                }
            }
            Some(durable) => {
                jetstream_used = true;
                let stream = durable.stream.clone().unwrap_or_else(|| "*".into());
                let consumer = durable.consumer.clone().unwrap_or_else(|| {
                    crate::jetstream::settings::default_consumer(name, &route.name)
                });
                for subject in jetstream::stream(&stream)
                    .into_iter()
                    .chain(jetstream::consumer(&stream, &consumer))
                {
                    p.publish.add(subject);
                }
                p.subscribe.add(jetstream::advisory(&stream, &consumer));
                let prefix = crate::jetstream::settings::dead_letter_prefix(config);
                let dead_letter = durable.dead_letter.clone().unwrap_or_else(|| {
                    crate::jetstream::settings::default_dead_letter(&prefix, name, &route.name)
                });
                p.publish.add(dead_letter);
                let dead_letter_stream = crate::jetstream::settings::dead_letter_stream(&prefix);
                for subject in jetstream::stream(&dead_letter_stream) {
                    p.publish.add(subject);
                }
            }
        }
    }
    for subject in &uses.publishes {
        if let Some(subject) = uses::resolve(subject, config) {
            p.publish.add(subject);
        }
    }
    for subject in &uses.requests {
        if let Some(subject) = uses::resolve(subject, config) {
            p.publish.add(subject);
        }
    }
    for subject in &uses.subscribes {
        if let Some(subject) = uses::resolve(subject, config) {
            p.subscribe.add(subject);
        }
    }
    for stream in &uses.streams {
        jetstream_used = true;
        for subject in jetstream::stream(stream) {
            p.publish.add(subject);
        }
    }
    for bucket in &uses.key_values {
        jetstream_used = true;
        for subject in jetstream::key_value(bucket) {
            p.publish.add(subject);
        }
    }
    if jetstream_used {
        for subject in jetstream::lookup() {
            p.publish.add(subject);
        }
    }
    p.publish.deny = jetstream::denied();
    p
}

/// Whether this process's command line asks for the permissions.
pub(crate) fn permissions_in_args() -> bool {
    std::env::args_os()
        .skip(1)
        .any(|arg| arg == "--nats-permissions")
}
