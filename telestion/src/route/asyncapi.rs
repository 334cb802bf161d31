//! The AsyncAPI document of a service (`--asyncapi`): an AsyncAPI 3.0
//! description of every subject it uses, built from its routes without
//! connecting: the subjects its handlers receive on (with a reply for
//! request/reply), the subjects it publishes return values to, durable
//! handlers and timers. With the crate feature `schemas`, the payloads of
//! `Json<T>` parameters and return values carry the JSON schema of `T`
//! when `T` derives `schemars::JsonSchema`.
//!
//! NATS wildcards become channel parameters: `sensors.*.temperature` is
//! the address `sensors.{token1}.temperature`, and `>` (one or more
//! tokens) the parameter `{rest}`.

use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::engine::timer::Period;
use crate::route::schema::PayloadSchema;
use crate::route::{QueueGroup, Route, SubjectSource};

#[cfg(feature = "schemas")]
impl Route {
    /// The JSON schema of the messages this route takes, for the AsyncAPI
    /// document (`#[subscribe]` sets it for a `Json<T>` parameter).
    /// Needs the crate feature `schemas`.
    ///
    /// ```
    /// use telestion::{Json, Route};
    ///
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct Reading { celsius: f64 }
    ///
    /// async fn store(Json(reading): Json<Reading>) {}
    ///
    /// let route = Route::new("sensors.temperature", store).message_schema::<Reading>();
    /// # let _ = route;
    /// ```
    pub fn message_schema<T: schemars::JsonSchema>(mut self) -> Route {
        self.schemas.message = Some(PayloadSchema::of::<T>());
        self
    }

    /// The JSON schema of what this route's handler returns (its reply and
    /// what it publishes), for the AsyncAPI document. Needs the crate
    /// feature `schemas`.
    pub fn reply_schema<T: schemars::JsonSchema>(mut self) -> Route {
        self.schemas.reply = Some(PayloadSchema::of::<T>());
        self.schemas.replies = Some(true);
        self
    }
}

/// Used by `#[subscribe]`: the payload schemas found by
/// [`SchemaProbe`](crate::__private::SchemaProbe) (the first parameter
/// with one, the return type) and whether the handler returns a value.
pub(crate) fn with_schemas(
    mut route: Route,
    params: &[Option<PayloadSchema>],
    reply: Option<PayloadSchema>,
    replies: bool,
) -> Route {
    route.schemas.message = params.iter().flatten().next().copied();
    route.schemas.reply = reply;
    route.schemas.replies = Some(replies);
    route
}

/// Makes payload schemas, collecting named types in `components/schemas`.
struct Schemas {
    #[cfg(feature = "schemas")]
    generator: schemars::SchemaGenerator,
}

impl Schemas {
    fn new() -> Schemas {
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

    fn definitions(&mut self) -> Map<String, Value> {
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
fn unique_id(wanted: &str, taken: &Map<String, Value>) -> String {
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
fn address(subject: &str) -> (String, Map<String, Value>) {
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
struct Builder<'a> {
    config: &'a Config,
    service: &'a str,
    channels: Map<String, Value>,
    operations: Map<String, Value>,
    schemas: Schemas,
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
        match &route.subject {
            SubjectSource::Literal(subject) => Address::Known(subject.clone()),
            SubjectSource::ConfigKey(key) => match self
                .config
                .get_str(key)
                .filter(|s| !s.is_empty())
                .or_else(|| route.default_subject.clone())
            {
                Some(subject) => Address::Known(subject),
                None => Address::Unknown(key.clone()),
            },
        }
    }

    fn add(&mut self, route: &Route) {
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
        if route.task {
            kind = "task";
        } else if let Some(period) = &route.period {
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
            if let Some(durable) = &route.durable {
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
                            crate::jetstream::durable::default_consumer(self.service, handler)
                        })
                        .into(),
                );
                extra.insert("x-telestion-durable".into(), Value::Object(info));
            } else {
                let queue = match &route.queue {
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
    fn health(&mut self) {
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

/// The name of the error reply in `components/messages` (and of its body's
/// schema in `components/schemas`).
const ERROR_MESSAGE: &str = "TelestionError";

/// The error reply of every request/reply handler: what a typed client
/// (generated models, FastStream with pydantic) tells apart from a reply.
fn error_message() -> Value {
    json!({
        "name": ERROR_MESSAGE,
        "title": "Error reply",
        "summary": "the handler failed or rejected the request",
        "description": "Sent instead of the reply when the handler fails (its error), \
            rejects the request (a body it cannot decode: code 400) or panics (500). Tell it \
            apart from a reply by the header Nats-Service-Error-Code (always present in an \
            error reply, never in a reply), or by the body's only member `error`. The \
            message is one line, at most about 1 KB (a longer one keeps its first and last \
            256 bytes around `… [N bytes cut] …`).",
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "required": ["Nats-Service-Error", "Nats-Service-Error-Code"],
            "properties": {
                "Nats-Service-Error": {
                    "type": "string",
                    "description": "the error message, on one line",
                },
                "Nats-Service-Error-Code": {
                    "type": "string",
                    "pattern": "^[0-9]{3}$",
                    "description": "4xx: the request was at fault; 5xx: the handler was",
                },
            },
        },
        "payload": {"$ref": format!("#/components/schemas/{ERROR_MESSAGE}")},
    })
}

/// The JSON schema of an error reply's body.
fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "the body of an error reply",
        "required": ["error"],
        "additionalProperties": false,
        "properties": {
            "error": {"type": "string", "description": "the error message"},
        },
    })
}

/// The JSON schema of a health reply.
fn health_report_schema() -> Value {
    json!({
        "type": "object",
        "description": "what every instance answers on the health subjects",
        "required": ["service"],
        "properties": {
            "errors": {"type": "integer", "minimum": 0,
                       "description": "errors within the last error_window_s seconds"},
            "service": {"type": "string", "description": "the instance id (SERVICE_ID)"},
            "name": {"type": "string", "description": "SERVICE_NAME"},
            "errors_total": {"type": "integer", "minimum": 0,
                             "description": "errors since start"},
            "error_window_s": {"type": "integer", "minimum": 0},
            "uptime_s": {"type": "number", "minimum": 0},
            "durable": {
                "type": "array",
                "description": "each durable handler's consumer",
                "items": {
                    "type": "object",
                    "properties": {
                        "handler": {"type": "string"},
                        "stream": {"type": "string"},
                        "consumer": {"type": "string"},
                        "pending": {"type": "integer", "minimum": 0},
                        "ack_pending": {"type": "integer", "minimum": 0},
                        "redelivered": {"type": "integer", "minimum": 0},
                        "dead_lettered": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    })
}

/// The AsyncAPI 3.0 document of a service named `name` (version
/// `version`) with `routes`, subjects from config keys resolved with
/// `config` (or their defaults). It lists every handler's subject (a
/// `receive` operation, with a `reply` for request/reply handlers), every
/// publish target (a `send` operation) and the health subjects; with the
/// crate feature `schemas`, payload schemas of `Json<T>` types that derive
/// `schemars::JsonSchema`.
///
/// ```
/// use telestion::{Config, Json, Route};
///
/// async fn double(Json(x): Json<i64>) -> Json<i64> {
///     Json(2 * x)
/// }
///
/// let routes = [Route::new("math.double", double).name("double")];
/// let document = telestion::asyncapi_document(&routes, &Config::from_pairs([("A", "b")]), "math", "1.0.0");
/// assert_eq!(document["asyncapi"], "3.0.0");
/// assert_eq!(document["channels"]["double"]["address"], "math.double");
/// assert_eq!(document["operations"]["double"]["action"], "receive");
/// ```
pub fn asyncapi_document(routes: &[Route], config: &Config, name: &str, version: &str) -> Value {
    let mut builder = Builder {
        config,
        service: name,
        channels: Map::new(),
        operations: Map::new(),
        schemas: Schemas::new(),
    };
    for route in routes {
        builder.add(route);
    }
    builder.health();
    let mut definitions = builder.schemas.definitions();
    definitions
        .entry("TelestionHealthReport")
        .or_insert_with(health_report_schema);
    definitions
        .entry(ERROR_MESSAGE)
        .or_insert_with(error_schema);
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": name,
            "version": version,
            "description": format!(
                "The NATS subjects of the Telestion service `{name}`: what its handlers \
                 receive (a request's reply goes to the request's reply subject), what it \
                 publishes, and its health requests."
            ),
        },
        "defaultContentType": "application/json",
        "channels": Value::Object(builder.channels),
        "operations": Value::Object(builder.operations),
        "components": {
            "schemas": Value::Object(definitions),
            "messages": {ERROR_MESSAGE: error_message()},
        },
    })
}

/// Whether this process's command line asks for the AsyncAPI document.
pub(crate) fn asyncapi_in_args() -> bool {
    std::env::args_os().skip(1).any(|arg| arg == "--asyncapi")
}

/// The configuration for the document: the process's, without the check
/// for required keys (nothing is started); empty when it cannot be read.
pub(crate) fn lenient_config() -> Config {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|arg| arg.to_string_lossy().into_owned())
        .filter(|arg| arg != "--asyncapi")
        .collect();
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .collect();
    Config::merge(args, env).unwrap_or_else(|_| Config::from_pairs(Vec::<(String, String)>::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_parameters() {
        let (address, parameters) = address("sensors.*.temp.*.>");
        assert_eq!(address, "sensors.{token1}.temp.{token2}.{rest}");
        assert_eq!(
            parameters.keys().collect::<Vec<_>>(),
            ["rest", "token1", "token2"]
        );
        assert_eq!(super::address("a.b").0, "a.b");
    }

    #[test]
    fn ids_are_unique_and_plain() {
        let mut taken = Map::new();
        assert_eq!(unique_id("a::b c", &taken), "a__b_c");
        taken.insert("x".into(), Value::Null);
        assert_eq!(unique_id("x", &taken), "x_2");
        assert_eq!(unique_id("", &taken), "_");
    }

    async fn take(_body: String) {}

    async fn answer(body: String) -> String {
        body
    }

    /// Durable, broadcast, named-queue, config-key and timer routes: every
    /// reference resolves and the document is valid AsyncAPI 3.0.0.
    #[test]
    fn every_kind_of_route() {
        let routes = [
            Route::new("cmd.>", take)
                .name("svc::execute")
                .durable(crate::Durable::new().stream("COMMANDS")),
            Route::new("events.*.*", take)
                .name("svc::watch")
                .broadcast(),
            Route::new("work.do", answer)
                .name("svc::work")
                .queue_group("workers")
                .publish_to("work.done")
                .publish_to(crate::PublishTarget::config("MIRROR")),
            Route::from_config("INPUT_SUBJECT", take).name("svc::input"),
            Route::from_config("OTHER_SUBJECT", take)
                .name("svc::other")
                .default_subject("other.default"),
            Route::every(std::time::Duration::from_millis(250), answer)
                .name("svc::beat")
                .publish_to("status.beat"),
            Route::task(take).name("svc::link"),
        ];
        let config = Config::from_pairs([("MIRROR", "work.mirror")]);
        let document = asyncapi_document(&routes, &config, "svc", "1.0.0");
        let channels = &document["channels"];
        let operations = &document["operations"];
        assert_eq!(channels["execute"]["address"], "cmd.{rest}");
        assert_eq!(
            operations["execute"]["x-telestion-durable"],
            json!({"stream": "COMMANDS", "consumer": crate::jetstream::durable::default_consumer("svc", "svc::execute")})
        );
        assert!(operations["execute"].get("reply").is_none());
        assert_eq!(channels["watch"]["address"], "events.{token1}.{token2}");
        assert_eq!(operations["watch"]["x-telestion-queue-group"], Value::Null);
        assert_eq!(operations["work"]["x-telestion-queue-group"], "workers");
        assert!(operations["work"]["reply"].is_object());
        assert_eq!(channels["work_publish"]["address"], "work.done");
        assert_eq!(channels["work_publish_2"]["address"], "work.mirror");
        assert_eq!(channels["input"]["address"], Value::Null);
        assert!(
            channels["input"]["description"]
                .as_str()
                .unwrap()
                .contains("INPUT_SUBJECT")
        );
        assert_eq!(channels["other"]["address"], "other.default");
        assert_eq!(operations["beat_publish"]["action"], "send");
        assert_eq!(operations["beat_publish"]["x-telestion-period"], "250ms");
        assert!(operations.get("beat").is_none() && operations.get("link").is_none());

        let mut pointers = Vec::new();
        collect_refs(&document, &mut pointers);
        for pointer in &pointers {
            let path = pointer.strip_prefix('#').unwrap();
            assert!(
                document.pointer(path).is_some(),
                "{pointer} does not resolve"
            );
        }
        let schema_path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/tests/asyncapi-3.0.0.json"
        );
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&document)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", Value::String(pointer)) => out.push(pointer.clone()),
                        _ => collect_refs(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
            _ => {}
        }
    }
}
