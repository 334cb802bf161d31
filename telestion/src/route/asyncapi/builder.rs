//! The builder of an AsyncAPI document: channels and operations route by
//! route, payload schemas collected once, ids kept unique.

use serde_json::{Map, Value, json};

use super::fixed::ERROR_MESSAGE;
use crate::config::Config;
use crate::route::kind::{Kind, Period};
use crate::route::schema::PayloadSchema;
use crate::route::{QueueGroup, Route, SubjectSource};

/// Makes payload schemas, collecting named types in `components/schemas`.
pub(super) struct Schemas {
    #[cfg(feature = "schemas")]
    generator: schemars::SchemaGenerator,
}

impl Schemas {
    pub(super) fn new() -> Schemas {
        Schemas {
            #[cfg(feature = "schemas")]
            generator: schemars::generate::SchemaSettings::draft07()
                .with(|settings| settings.definitions_path = "/components/schemas/".into())
                .into_generator(),
        }
    }

    #[cfg_attr(not(feature = "schemas"), allow(clippy::unused_self))]
    fn payload(&mut self, schema: Option<PayloadSchema>) -> Option<Value> {
        #[cfg(feature = "schemas")]
        {
            schema.map(|schema| (schema.generate)(&mut self.generator).to_value())
        }
        #[cfg(not(feature = "schemas"))]
        {
            schema.map(|schema| match schema._never {})
        }
    }

    pub(super) fn definitions(&mut self) -> Map<String, Value> {
        #[cfg(feature = "schemas")]
        {
            self.generator.take_definitions(true)
        }
        #[cfg(not(feature = "schemas"))]
        {
            Map::new()
        }
    }
}

/// An id usable as a key in the document (`[A-Za-z0-9_-]+`), unique among
/// `taken`.
pub(super) fn unique_id(wanted: &str, taken: &Map<String, Value>) -> String {
    let mut id: String = wanted
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        id.push('_');
    }
    if !taken.contains_key(&id) {
        return id;
    }
    (2..)
        .map(|n| format!("{id}_{n}"))
        .find(|candidate| !taken.contains_key(candidate))
        .unwrap_or(id)
}

/// The channel address of a NATS subject and its parameters: `*` tokens
/// become `{token1}`, `{token2}`, ..., a final `>` becomes `{rest}`.
pub(super) fn address(subject: &str) -> (String, Map<String, Value>) {
    let mut parameters = Map::new();
    let mut stars = 0;
    let tokens: Vec<String> = subject
        .split('.')
        .map(|token| match token {
            "*" => {
                stars += 1;
                let name = format!("token{stars}");
                parameters.insert(
                    name.clone(),
                    json!({"description": "any one token (the NATS wildcard `*`)"}),
                );
                format!("{{{name}}}")
            }
            ">" => {
                parameters.insert(
                    "rest".into(),
                    json!({"description": "one or more tokens (the NATS wildcard `>`)"}),
                );
                "{rest}".into()
            }
            token => token.to_owned(),
        })
        .collect();
    (tokens.join("."), parameters)
}

/// What a document is made of, filled route by route.
pub(super) struct Builder<'a> {
    pub(super) config: &'a Config,
    pub(super) service: &'a str,
    pub(super) channels: Map<String, Value>,
    pub(super) operations: Map<String, Value>,
    pub(super) schemas: Schemas,
}

/// The subject of a channel: fixed, from config (resolved when set), or
/// unknown (`None`, with where it comes from).
enum Address {
    Known(String),
    Unknown(String),
}

impl Builder<'_> {
    fn message(&mut self, name: &str, description: &str, schema: Option<PayloadSchema>) -> Value {
        let mut message = Map::new();
        message.insert("name".into(), name.into());
        message.insert("description".into(), description.into());
        if let Some(payload) = self.schemas.payload(schema) {
            message.insert("contentType".into(), "application/json".into());
            message.insert("payload".into(), payload);
        }
        Value::Object(message)
    }

    /// Adds a channel with one message; returns (channel id, message id).
    fn channel(
        &mut self,
        id: &str,
        address: Address,
        description: String,
        message_id: &str,
        message: Value,
    ) -> (String, String) {
        let id = unique_id(id, &self.channels);
        let mut channel = Map::new();
        match address {
            Address::Known(subject) => {
                let (address, parameters) = self::address(&subject);
                channel.insert("address".into(), address.into());
                if !parameters.is_empty() {
                    channel.insert("parameters".into(), Value::Object(parameters));
                }
            }
            Address::Unknown(_) => {
                channel.insert("address".into(), Value::Null);
            }
        }
        channel.insert("description".into(), description.into());
        channel.insert("messages".into(), json!({ message_id: message }));
        self.channels.insert(id.clone(), Value::Object(channel));
        (id, message_id.to_owned())
    }

    fn subject(&self, route: &Route) -> Address {
        match (route.resolved_subject(self.config), &route.subject) {
            (Some(subject), _) => Address::Known(subject),
            (None, SubjectSource::ConfigKey(key)) => Address::Unknown(key.clone()),
            (None, SubjectSource::Literal(subject)) => Address::Known(subject.clone()),
        }
    }

    pub(super) fn add(&mut self, route: &Route) {
        let handler = route.name.as_str();
        let short = handler.rsplit("::").next().unwrap_or(handler);
        let replies = route.schemas.replies.unwrap_or(true);
        let reply_description = format!(
            "the return value of `{handler}`; when it fails, the reply is the message \
             TelestionError instead (headers Nats-Service-Error and Nats-Service-Error-Code, \
             body {{\"error\": \"...\"}})"
        );
        let publish_description =
            format!("the return value of `{handler}` (a failure is not published)");
        let mut kind = "subscription";
        let mut extra = Map::new();
        if route.is_task() {
            kind = "task";
        } else if let Kind::Timer(period) = &route.kind {
            kind = "timer";
            match period {
                Period::Fixed(period) => {
                    extra.insert("x-telestion-period".into(), format!("{period:?}").into());
                }
                Period::Config { key, default } => {
                    let mut text = format!("from config key {key}");
                    if let Some(default) = default {
                        text.push_str(&format!(" (default {default:?})"));
                    }
                    extra.insert("x-telestion-period".into(), text.into());
                }
            }
        } else {
            if let Some(durable) = route.durable_settings() {
                kind = "durable";
                let mut info = Map::new();
                if let Some(stream) = &durable.stream {
                    info.insert("stream".into(), stream.clone().into());
                }
                info.insert(
                    "consumer".into(),
                    durable
                        .consumer
                        .clone()
                        .unwrap_or_else(|| {
                            crate::jetstream::settings::default_consumer(self.service, handler)
                        })
                        .into(),
                );
                extra.insert("x-telestion-durable".into(), Value::Object(info));
            } else {
                let queue = match route.queue_choice() {
                    QueueGroup::ServiceName => Value::from(self.service),
                    QueueGroup::Broadcast => Value::Null,
                    QueueGroup::Named(name) => Value::from(name.as_str()),
                };
                extra.insert("x-telestion-queue-group".into(), queue);
            }
            let address = self.subject(route);
            let mut description = format!("received by `{handler}`");
            if let Address::Unknown(key) = &address {
                description.push_str(&format!(" on the subject in config key {key}"));
            }
            if kind == "durable" {
                description.push_str(
                    " through a JetStream durable consumer (acknowledged after handling, \
                     retried with back-off, dead-lettered at last)",
                );
            }
            let message = self.message(
                &format!("{short}_message"),
                &format!("a message for `{handler}`"),
                route.schemas.message,
            );
            let (channel, message_id) = self.channel(
                short,
                address,
                description.clone(),
                &format!("{short}_message"),
                message,
            );
            let mut operation = Map::new();
            operation.insert("action".into(), "receive".into());
            operation.insert(
                "channel".into(),
                json!({"$ref": format!("#/channels/{channel}")}),
            );
            operation.insert("summary".into(), description.into());
            operation.insert(
                "messages".into(),
                json!([{"$ref": format!("#/channels/{channel}/messages/{message_id}")}]),
            );
            if replies && kind == "subscription" {
                let reply = self.message(
                    &format!("{short}_reply"),
                    &reply_description,
                    route.schemas.reply,
                );
                let (reply_channel, reply_id) = self.channel(
                    &format!("{short}_reply"),
                    Address::Unknown("reply".into()),
                    format!(
                        "the reply subject (an inbox) of a request to `{handler}`; a message \
                         without one is not answered"
                    ),
                    &format!("{short}_reply"),
                    reply,
                );
                // A failure is answered with the error message instead.
                if let Some(messages) = self
                    .channels
                    .get_mut(&reply_channel)
                    .and_then(|channel| channel.get_mut("messages"))
                    .and_then(Value::as_object_mut)
                {
                    messages.insert(
                        "error".into(),
                        json!({"$ref": format!("#/components/messages/{ERROR_MESSAGE}")}),
                    );
                }
                operation.insert(
                    "reply".into(),
                    json!({
                        "channel": {"$ref": format!("#/channels/{reply_channel}")},
                        "messages": [
                            {"$ref": format!("#/channels/{reply_channel}/messages/{reply_id}")},
                            {"$ref": format!("#/channels/{reply_channel}/messages/error")},
                        ],
                    }),
                );
            }
            operation.insert("x-telestion-handler".into(), handler.into());
            operation.insert("x-telestion-kind".into(), kind.into());
            operation.extend(extra.clone());
            let id = unique_id(short, &self.operations);
            self.operations.insert(id, Value::Object(operation));
        }
        for (index, target) in route.publish.iter().enumerate() {
            let address = match target.resolve(self.config) {
                Ok(subject) => Address::Known(subject),
                Err(_) => {
                    Address::Unknown(target.config_key().unwrap_or("a config key").to_owned())
                }
            };
            let mut description = format!("what `{handler}` returns");
            if kind == "timer" {
                description = format!("what the timer `{handler}` returns, at every tick");
            }
            if let Address::Unknown(key) = &address {
                description.push_str(&format!(", published to the subject in config key {key}"));
            }
            let wanted = if index == 0 {
                format!("{short}_publish")
            } else {
                format!("{short}_publish_{}", index + 1)
            };
            let message = self.message(&wanted, &publish_description, route.schemas.reply);
            let (channel, message_id) =
                self.channel(&wanted, address, description.clone(), &wanted, message);
            let mut operation = Map::new();
            operation.insert("action".into(), "send".into());
            operation.insert(
                "channel".into(),
                json!({"$ref": format!("#/channels/{channel}")}),
            );
            operation.insert("summary".into(), description.into());
            operation.insert(
                "messages".into(),
                json!([{"$ref": format!("#/channels/{channel}/messages/{message_id}")}]),
            );
            operation.insert("x-telestion-handler".into(), handler.into());
            operation.insert("x-telestion-kind".into(), kind.into());
            operation.extend(extra.clone());
            let id = unique_id(&wanted, &self.operations);
            self.operations.insert(id, Value::Object(operation));
        }
    }

    /// The health requests every instance answers (the report's schema
    /// is `components/schemas/TelestionHealthReport`).
    pub(super) fn health(&mut self) {
        let reply = json!({
            "name": "health_report",
            "contentType": "application/json",
            "payload": {"$ref": "#/components/schemas/TelestionHealthReport"},
        });
        let (reply_channel, reply_id) = self.channel(
            "health_reply",
            Address::Unknown("reply".into()),
            "the reply subject of a health request".into(),
            "health_report",
            reply,
        );
        for (id, subject) in [
            ("health", crate::observe::health::SUBJECT_DOTTED),
            ("health_spec", crate::observe::health::SUBJECT),
        ] {
            let request = json!({
                "name": "health_request",
                "description": "any message with a reply subject",
            });
            let (channel, message_id) = self.channel(
                id,
                Address::Known(subject.into()),
                "health requests; every instance answers (outside any queue group)".into(),
                "health_request",
                request,
            );
            let id = unique_id(id, &self.operations);
            self.operations.insert(
                id,
                json!({
                    "action": "receive",
                    "channel": {"$ref": format!("#/channels/{channel}")},
                    "summary": format!("answers health requests on `{subject}`"),
                    "messages": [{"$ref": format!("#/channels/{channel}/messages/{message_id}")}],
                    "reply": {
                        "channel": {"$ref": format!("#/channels/{reply_channel}")},
                        "messages": [
                            {"$ref": format!("#/channels/{reply_channel}/messages/{reply_id}")}
                        ],
                    },
                }),
            );
        }
    }
}
