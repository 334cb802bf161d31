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

mod builder;
mod fixed;

use builder::{Builder, Schemas};
use fixed::{ERROR_MESSAGE, error_message, error_schema, health_report_schema};

use crate::config::Config;
use crate::route::Route;
use crate::route::schema::PayloadSchema;

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
        .filter(|arg| arg != "--asyncapi" && arg != "--nats-permissions")
        .collect();
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .collect();
    Config::merge(args, env).unwrap_or_else(|_| Config::from_pairs(Vec::<(String, String)>::new()))
}

#[cfg(test)]
mod tests {
    use super::builder::{address, unique_id};
    use super::*;

    #[test]
    fn wildcards_become_parameters() {
        let (address, parameters) = address("sensors.*.temp.*.>");
        assert_eq!(address, "sensors.{token1}.temp.{token2}.{rest}");
        assert_eq!(
            parameters.keys().collect::<Vec<_>>(),
            ["rest", "token1", "token2"]
        );
        assert_eq!(super::builder::address("a.b").0, "a.b");
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
            json!({"stream": "COMMANDS", "consumer": crate::jetstream::settings::default_consumer("svc", "svc::execute")})
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
