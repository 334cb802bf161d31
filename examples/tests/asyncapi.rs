//! `--asyncapi`: the thermal_api sample prints its AsyncAPI 3.0 document
//! without connecting; the document is valid against the AsyncAPI 3.0.0
//! JSON schema (`asyncapi-3.0.0.json`, the specification's
//! `3.0.0-without-$id.json`, Apache-2.0), every reference in it resolves,
//! and it shows each subject with its payload schema.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use telestion_test::{self as support, clean_command};

/// Runs the sample with `args` and `env` (no NATS anywhere), expects exit
/// 0 and returns stdout as JSON.
fn document(args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut cmd = clean_command(support::workspace_example(
        "telestion-examples",
        "thermal_api",
    ));
    cmd.args(args);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = support::run_with_timeout(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The value `reference` (`#/a/b`) points to in `document`.
fn resolve<'a>(document: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("not a local reference: {reference}"));
    document
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{reference} does not resolve"))
}

/// Every `$ref` below `value`.
fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => out.push(reference.clone()),
                    _ => references(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, out)),
        _ => {}
    }
}

#[test]
fn the_document_is_valid_asyncapi_3() {
    let document = document(&["--asyncapi"], &[]);
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/asyncapi-3.0.0.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the AsyncAPI schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{document:#}");
    // The check is not vacuous: a broken document fails it.
    let mut broken = document.clone();
    broken["operations"]["set_heater"]["action"] = "listen".into();
    assert!(!validator.is_valid(&broken));
    let mut refs = Vec::new();
    references(&document, &mut refs);
    assert!(refs.len() > 10, "{refs:?}");
    for reference in &refs {
        resolve(&document, reference);
    }
}

#[test]
fn the_document_shows_every_subject_and_payload() {
    let document = document(
        &["--asyncapi"],
        &[("SERVICE_NAME", "thermal"), ("SERVICE_VERSION", "1.2.3")],
    );
    assert_eq!(document["asyncapi"], "3.0.0");
    assert_eq!(document["info"]["title"], "thermal");
    assert_eq!(document["info"]["version"], "1.2.3");
    let channels = &document["channels"];
    let operations = &document["operations"];

    // A wildcard subject: a parameter in the address.
    assert_eq!(
        channels["record"]["address"],
        "sensors.{token1}.temperature"
    );
    assert!(channels["record"]["parameters"]["token1"].is_object());
    let record = &operations["record"];
    assert_eq!(record["action"], "receive");
    assert!(record.get("reply").is_none(), "record returns nothing");
    assert_eq!(record["x-telestion-queue-group"], Value::Null);
    let message = resolve(&document, record["messages"][0]["$ref"].as_str().unwrap());
    let payload = resolve(&document, message["payload"]["$ref"].as_str().unwrap());
    assert_eq!(payload["properties"]["celsius"]["type"], "number");
    assert_eq!(payload["required"], serde_json::json!(["celsius"]));

    // A batch handler: each message's schema is the batch element's.
    assert_eq!(
        channels["pressures"]["address"],
        "sensors.{token1}.pressure"
    );
    let pressures = &operations["pressures"];
    assert_eq!(pressures["action"], "receive");
    let message = resolve(
        &document,
        pressures["messages"][0]["$ref"].as_str().unwrap(),
    );
    let payload = resolve(&document, message["payload"]["$ref"].as_str().unwrap());
    assert_eq!(payload["properties"]["hpa"]["type"], "number");

    // Request/reply: the reply's payload is the return type's schema.
    let set_heater = &operations["set_heater"];
    assert_eq!(channels["set_heater"]["address"], "thermal.heater.set");
    assert_eq!(set_heater["x-telestion-queue-group"], "thermal");
    let reply = resolve(
        &document,
        set_heater["reply"]["messages"][0]["$ref"].as_str().unwrap(),
    );
    let ack = resolve(&document, reply["payload"]["$ref"].as_str().unwrap());
    assert_eq!(ack["properties"]["accepted"]["type"], "boolean");
    let reply_channel = resolve(
        &document,
        set_heater["reply"]["channel"]["$ref"].as_str().unwrap(),
    );
    assert_eq!(reply_channel["address"], Value::Null, "an inbox");
    let request = resolve(
        &document,
        set_heater["messages"][0]["$ref"].as_str().unwrap(),
    );
    let command = resolve(&document, request["payload"]["$ref"].as_str().unwrap());
    assert!(command["properties"]["power_percent"].is_object());

    // The timer's publish target: a send operation with the summary.
    let summary = &operations["summary_publish"];
    assert_eq!(summary["action"], "send");
    assert_eq!(summary["x-telestion-kind"], "timer");
    assert_eq!(summary["x-telestion-period"], "5s");
    let channel = resolve(&document, summary["channel"]["$ref"].as_str().unwrap());
    assert_eq!(channel["address"], "thermal.summary");
    let message = resolve(&document, summary["messages"][0]["$ref"].as_str().unwrap());
    let payload = resolve(&document, message["payload"]["$ref"].as_str().unwrap());
    assert!(payload["properties"]["readings"].is_object());

    // Health, on both subjects.
    assert_eq!(channels["health"]["address"], "__telestion__.health");
    assert_eq!(channels["health_spec"]["address"], "__telestion__/health");
    assert_eq!(operations["health"]["action"], "receive");
}

#[test]
fn help_names_the_flag() {
    let mut cmd = clean_command(support::workspace_example(
        "telestion-examples",
        "thermal_api",
    ));
    cmd.arg("--help");
    let output = support::run_with_timeout(cmd, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("--asyncapi"), "{stdout}");
    assert!(stdout.contains("METRICS_ADDR"), "{stdout}");
}

#[test]
fn the_guide_excerpt_is_what_the_sample_prints() {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../telestion/src/docs/asyncapi.md"
    ))
    .unwrap();
    let start = readme
        .find("thermal_api --asyncapi`):")
        .expect("the guide's AsyncAPI excerpt");
    let rest = &readme[start..];
    let open = rest.find("```json\n").expect("a json block") + "```json\n".len();
    let close = open + rest[open..].find("\n```").expect("the block's end");
    let excerpt: Value = serde_json::from_str(&rest[open..close]).expect("the excerpt is JSON");
    let document = document(&["--asyncapi"], &[("SERVICE_NAME", "thermal")]);
    let mut compared = 0;
    for (section, entries) in excerpt.as_object().unwrap() {
        for (key, value) in entries.as_object().unwrap() {
            if section == "components" {
                for (name, schema) in value.as_object().unwrap() {
                    assert_eq!(
                        &document[section][key][name], schema,
                        "{section}/{key}/{name}"
                    );
                    compared += 1;
                }
            } else {
                assert_eq!(&document[section][key], value, "{section}/{key}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 7);
}

/// The error reply is described as it is (issue 23, point 5): a request
/// handler's reply lists the message `TelestionError`, and a real error
/// reply of the running sample (a body it cannot decode) matches its
/// header and body schemas, while a real reply does not: a typed client
/// tells them apart.
///
/// Old behaviour: the reply's description said a failure is "an empty
/// message with the headers Nats-Service-Error...", but the body is
/// `{"error": "..."}`, and no schema described it.
#[tokio::test(flavor = "multi_thread")]
async fn an_error_reply_matches_the_documented_error_message() {
    let document = document(&["--asyncapi"], &[("SERVICE_NAME", "thermal")]);
    let set_heater = &document["operations"]["set_heater"];
    let reply_refs: Vec<&str> = set_heater["reply"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|reference| reference["$ref"].as_str().unwrap())
        .collect();
    let error_message = reply_refs
        .iter()
        .map(|reference| resolve(&document, reference))
        .find_map(|message| {
            let reference = message.get("$ref")?.as_str()?;
            Some(resolve(&document, reference))
        })
        .expect("the reply lists the error message");
    assert_eq!(error_message["name"], "TelestionError");
    let body_schema = resolve(
        &document,
        error_message["payload"]["$ref"].as_str().unwrap(),
    );
    let body_validator = jsonschema::validator_for(body_schema).unwrap();
    let header_validator = jsonschema::validator_for(&error_message["headers"]).unwrap();

    let server = support::NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let cmd = support::service_command(
        support::workspace_example("telestion-examples", "thermal_api"),
        &server,
        "thermal",
        data.path(),
    );
    let _sample = tokio::task::block_in_place(|| support::spawn_ready(cmd));
    let client = server.client().await;
    let headers_of = |message: &async_nats::Message| -> Value {
        let mut object = serde_json::Map::new();
        for (name, values) in message.headers.iter().flat_map(|headers| headers.iter()) {
            if let Some(value) = values.first() {
                object.insert(name.to_string(), value.as_str().into());
            }
        }
        Value::Object(object)
    };

    let failed = support::request(&client, "thermal.heater.set", "not json").await;
    let body: Value = serde_json::from_slice(&failed.payload).expect("an error body is JSON");
    assert!(body_validator.is_valid(&body), "{body}");
    let headers = headers_of(&failed);
    assert!(header_validator.is_valid(&headers), "{headers}");
    assert_eq!(headers["Nats-Service-Error-Code"], "400");

    let replied = support::request(&client, "thermal.heater.set", r#"{"power_percent": 10}"#).await;
    let body: Value = serde_json::from_slice(&replied.payload).expect("a reply is JSON");
    assert!(
        !body_validator.is_valid(&body),
        "a reply passes as an error: {body}"
    );
    assert!(!header_validator.is_valid(&headers_of(&replied)));
}
