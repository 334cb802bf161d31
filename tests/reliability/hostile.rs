//! Hostile input: property tests of the config loader (CLI arguments,
//! environment, config file) and of the body extractors through a running
//! service, plus the named edge cases (max payload, invalid UTF-8, deeply
//! nested JSON, odd and huge arguments, malformed config files).

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use telestion::config::{parse_args, parse_file};
use telestion::{Config, ConfigError, Json, Message, Route, Service};

use crate::common::start;
use crate::support::NatsServer;

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// CLI-like arguments: mostly `--`-prefixed, with odd characters.
fn arg() -> impl Strategy<Value = String> {
    prop_oneof![
        "--[a-zA-Z0-9_.-]{0,12}(=.{0,12})?",
        "--.{0,16}",
        "-{0,4}[=\\-a-z]{0,4}",
        ".{0,24}",
        Just("--".to_owned()),
        Just("--=".to_owned()),
        Just("--dev".to_owned()),
    ]
}

fn env_pair() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            "[A-Z_]{1,12}",
            ".{0,12}",
            Just("NATS_URL".to_owned()),
            Just("CONFIG_KEY".to_owned())
        ],
        ".{0,24}",
    )
}

#[test]
fn cli_arguments_never_panic_and_errors_are_clear() {
    runner(256)
        .run(&prop::collection::vec(arg(), 0..8), |args| {
            match parse_args(args.clone()) {
                Ok(cli) => {
                    for (key, _) in &cli.values {
                        prop_assert!(!key.is_empty());
                        prop_assert!(!key.contains('-'), "key {key:?} not normalized");
                        prop_assert_eq!(key.to_ascii_uppercase(), key.clone());
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    prop_assert!(text.starts_with("invalid command-line argument"), "{text}");
                    prop_assert!(text.len() < 400, "error too long: {text}");
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn merged_sources_never_panic() {
    runner(256)
        .run(
            &(
                prop::collection::vec(arg(), 0..6),
                prop::collection::vec(env_pair(), 0..8),
            ),
            |(args, env)| {
                if let Ok(config) = Config::merge(args.clone(), env.clone()) {
                    let cli = parse_args(args).unwrap();
                    // An env value is in the result unless the CLI overrides it.
                    for (key, value) in &env {
                        if !cli.values.iter().any(|(k, _)| k == key)
                            && env.iter().rev().find(|(k, _)| k == key).unwrap().1 == *value
                        {
                            prop_assert_eq!(config.get_str(key), Some(value.clone()));
                        }
                    }
                    let _ = format!("{config:?}");
                    let _ = config.check_required();
                }
                Ok(())
            },
        )
        .unwrap();
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{0,3}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn config_files_never_panic() {
    // Arbitrary bytes.
    runner(256)
        .run(
            &(
                prop::collection::vec(any::<u8>(), 0..256),
                prop::option::of(".{0,6}"),
            ),
            |(bytes, key)| {
                if let Err(reason) = parse_file(&bytes, key.as_deref()) {
                    prop_assert!(!reason.is_empty());
                }
                Ok(())
            },
        )
        .unwrap();
    // Arbitrary JSON: accepted exactly when the selected part is an object.
    runner(256)
        .run(
            &(json_value(), prop::option::of("[a-z]{0,3}")),
            |(value, key)| {
                let bytes = serde_json::to_vec(&value).unwrap();
                let selected = match &key {
                    None => Some(&value),
                    Some(key) => value.as_object().and_then(|o| o.get(key)),
                };
                let expect_ok = value.is_object() && selected.is_some_and(|s| s.is_object());
                let result = parse_file(&bytes, key.as_deref());
                prop_assert_eq!(result.is_ok(), expect_ok, "{:?}", result);
                if let Ok(map) = result {
                    prop_assert_eq!(
                        serde_json::Value::Object(map.into_iter().collect()),
                        selected.unwrap().clone()
                    );
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn config_file_shapes_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let load = |contents: &str, key: Option<&str>| {
        let path = dir.path().join("config.json");
        std::fs::write(&path, contents).unwrap();
        let mut env = vec![
            (
                "CONFIG_FILE".to_owned(),
                path.to_string_lossy().into_owned(),
            ),
            ("NATS_URL".to_owned(), "x".to_owned()),
        ];
        if let Some(key) = key {
            env.push(("CONFIG_KEY".to_owned(), key.to_owned()));
        }
        Config::merge(Vec::<String>::new(), env)
    };
    for (contents, kind) in [
        ("[1, 2]", "array"),
        ("\"text\"", "string"),
        ("null", "null"),
        ("42", "number"),
        ("true", "boolean"),
    ] {
        let err = load(contents, None).unwrap_err();
        assert!(matches!(err, ConfigError::FileFormat { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("must be a JSON object") && text.contains(kind),
            "{text}"
        );
    }
    let err = load("{\"a\": 1", None).unwrap_err().to_string();
    assert!(err.contains("not valid JSON"), "{err}");
    let err = load(r#"{"svc": {"A": 1}}"#, Some("other"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("CONFIG_KEY `other` is not a key"),
        "missing CONFIG_KEY: {err}"
    );
    for (contents, kind) in [
        (r#"{"svc": [1]}"#, "array"),
        (r#"{"svc": "x"}"#, "string"),
        (r#"{"svc": null}"#, "null"),
    ] {
        let err = load(contents, Some("svc")).unwrap_err().to_string();
        assert!(
            err.contains("CONFIG_KEY `svc` names a") && err.contains(kind),
            "{err}"
        );
    }
    let config = load(r#"{"svc": {"A": 1}}"#, Some("svc")).unwrap();
    assert_eq!(config.get::<u32>("A").unwrap(), Some(1));
    // A directory or a missing file: clear read errors.
    let err = Config::merge(
        Vec::<String>::new(),
        [("CONFIG_FILE".to_owned(), "/nonexistent/c.json".to_owned())],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot read config file"), "{err}");
}

#[test]
fn huge_and_odd_cli_arguments() {
    let huge = "x".repeat(1 << 20);
    // A 1 MB value is accepted intact.
    let cli = parse_args([format!("--BIG={huge}")]).unwrap();
    assert_eq!(cli.values, vec![("BIG".to_owned(), huge.clone())]);
    let cli = parse_args(["--big".to_owned(), huge.clone()]).unwrap();
    assert_eq!(cli.values[0].1.len(), huge.len());
    // A 1 MB key is accepted; a 1 MB bad argument gives a short error.
    let cli = parse_args([format!("--{huge}")]).unwrap();
    assert_eq!(cli.values[0].0.len(), huge.len());
    for bad in [
        format!("--{}=1", "ä".repeat(1 << 19)),
        "ä".repeat(1 << 19),
        format!("{huge}=1"),
    ] {
        let err = parse_args([bad]).unwrap_err().to_string();
        assert!(err.len() < 400, "error not shortened: {} bytes", err.len());
        assert!(err.contains("invalid command-line argument"), "{err}");
    }
    // Odd forms.
    let ok = |args: &[&str]| parse_args(args.iter().copied()).unwrap().values;
    let err = |args: &[&str]| parse_args(args.iter().copied()).unwrap_err().to_string();
    assert!(err(&["--"]).contains("the key is empty"));
    assert!(err(&["--="]).contains("the key is empty"));
    assert!(err(&["--=value"]).contains("the key is empty"));
    assert!(err(&["--ключ=1"]).contains("'к'"));
    assert!(err(&["--a b=1"]).contains("' '"));
    assert!(err(&["--a\0b=1"]).contains("'\\0'"));
    assert!(err(&["-x"]).contains("expected `--KEY=VALUE`"));
    assert!(err(&["--dev=maybe"]).contains("--dev"));
    assert_eq!(ok(&["---x"]), vec![("_X".to_owned(), "true".to_owned())]);
    assert_eq!(ok(&["--a=b=c"]), vec![("A".to_owned(), "b=c".to_owned())]);
    assert_eq!(
        ok(&["--a=ünï😀"]),
        vec![("A".to_owned(), "ünï😀".to_owned())]
    );
    assert_eq!(
        ok(&["--a", "--b"]),
        vec![
            ("A".to_owned(), "true".to_owned()),
            ("B".to_owned(), "true".to_owned())
        ]
    );
    assert_eq!(ok(&["--a", "-1"]), vec![("A".to_owned(), "-1".to_owned())]);
}

#[derive(serde::Deserialize)]
struct Point {
    x: i64,
    y: i64,
}

async fn bytes_len(body: Bytes) -> String {
    body.len().to_string()
}
async fn vec_len(body: Vec<u8>) -> String {
    body.len().to_string()
}
async fn message_len(message: Message) -> String {
    message.payload.len().to_string()
}
async fn text_len(body: String) -> String {
    body.len().to_string()
}
async fn json_ok(Json(_value): Json<serde_json::Value>) -> &'static str {
    "ok"
}
async fn point_sum(Json(point): Json<Point>) -> String {
    (point.x.wrapping_add(point.y)).to_string()
}
async fn echo(body: Bytes) -> Bytes {
    body
}

const HANDLERS: [&str; 6] = [
    "hostile.bytes",
    "hostile.vec",
    "hostile.message",
    "hostile.string",
    "hostile.json",
    "hostile.point",
];

async fn extractor_service(server: &NatsServer, dir: &std::path::Path) -> Service {
    let service = start(&server.url(), "hostile", dir, &[]).await;
    let routes = [
        Route::new(HANDLERS[0], bytes_len),
        Route::new(HANDLERS[1], vec_len),
        Route::new(HANDLERS[2], message_len),
        Route::new(HANDLERS[3], text_len),
        Route::new(HANDLERS[4], json_ok),
        Route::new(HANDLERS[5], point_sum),
        Route::new("hostile.echo", echo),
    ];
    for route in routes {
        service.subscribe(route).await.unwrap();
    }
    service
}

/// `Ok(body)` for a normal reply, `Err(error)` for an error reply.
async fn ask(client: &async_nats::Client, subject: &str, body: Bytes) -> Result<String, String> {
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(subject.to_owned(), body),
    )
    .await
    .unwrap_or_else(|_| panic!("no reply from {subject} within 5 s"))
    .unwrap_or_else(|e| panic!("request to {subject} failed: {e}"));
    let text = String::from_utf8_lossy(&reply.payload).into_owned();
    match reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error"))
    {
        Some(code) => {
            assert!(!code.as_str().is_empty());
            let json: serde_json::Value = serde_json::from_str(&text).expect("error body is JSON");
            Err(json["error"]
                .as_str()
                .expect("error body names the error")
                .to_owned())
        }
        None => Ok(text),
    }
}

/// What each handler must answer for `body`.
fn expected(subject: &str, body: &[u8]) -> Result<String, ()> {
    let len = body.len().to_string();
    match subject {
        "hostile.bytes" | "hostile.vec" | "hostile.message" => Ok(len),
        "hostile.string" => std::str::from_utf8(body).map(|_| len).map_err(|_| ()),
        "hostile.json" => serde_json::from_slice::<serde_json::Value>(body)
            .map(|_| "ok".to_owned())
            .map_err(|_| ()),
        "hostile.point" => serde_json::from_slice::<Point>(body)
            .map(|p| p.x.wrapping_add(p.y).to_string())
            .map_err(|_| ()),
        _ => unreachable!(),
    }
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        ".{0,64}".prop_map(String::into_bytes),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (any::<i64>(), any::<i64>())
            .prop_map(|(x, y)| format!(r#"{{"x": {x}, "y": {y}}}"#).into_bytes()),
    ]
}

#[test]
fn arbitrary_bodies_always_get_an_answer() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (service, client) = runtime.block_on(async {
        (
            extractor_service(&server, dir.path()).await,
            server.client().await,
        )
    });
    let failures_ref = std::cell::Cell::new(0u64);
    runner(128)
        .run(&body(), |body| {
            runtime.block_on(async {
                for subject in HANDLERS {
                    let answer = ask(&client, subject, Bytes::from(body.clone())).await;
                    match (expected(subject, &body), &answer) {
                        (Ok(want), Ok(got)) => prop_assert_eq!(&want, got, "{}", subject),
                        (Err(()), Err(error)) => {
                            failures_ref.set(failures_ref.get() + 1);
                            prop_assert!(error.starts_with("cannot handle the message"), "{error}");
                        }
                        (want, got) => {
                            return Err(TestCaseError::fail(format!(
                                "{subject}: expected {want:?}, got {got:?}"
                            )));
                        }
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    let failures = failures_ref.get();
    runtime.block_on(async {
        assert!(service.is_connected());
        // Every failure was counted; the service is still healthy otherwise.
        assert_eq!(service.error_counter().total(), failures);
        let health = crate::support::health(&client, "__telestion__/health").await;
        assert_eq!(health["errors_total"], failures);
        service.shutdown();
        service.drain().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_payload_invalid_utf8_and_deep_json() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let service = extractor_service(&server, dir.path()).await;
    let client = server.client().await;
    let max = client.server_info().max_payload;
    assert_eq!(max, 1 << 20, "nats-server's default max payload");

    // Bodies of exactly the maximum size reach every kind of handler.
    let binary: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
    for subject in ["hostile.bytes", "hostile.vec", "hostile.message"] {
        assert_eq!(
            ask(&client, subject, binary.clone().into()).await,
            Ok(max.to_string()),
            "{subject}"
        );
    }
    let text = "é".repeat(max / 2);
    assert_eq!(
        ask(&client, "hostile.string", text.into()).await,
        Ok(max.to_string())
    );
    let json_string = format!("\"{}\"", "a".repeat(max - 2));
    assert_eq!(
        ask(&client, "hostile.json", json_string.into()).await,
        Ok("ok".into())
    );
    // A reply of the maximum size goes back.
    let reply = client
        .request("hostile.echo", binary.clone().into())
        .await
        .unwrap();
    assert_eq!(reply.payload.len(), max);
    // One byte more cannot even be sent: the client refuses it.
    let too_big = vec![0u8; max + 1];
    assert!(
        client
            .publish("hostile.bytes", too_big.into())
            .await
            .is_err()
    );

    // Invalid UTF-8: an error reply for text and JSON, fine for bytes.
    let invalid = Bytes::from_static(&[b'{', 0xff, 0xfe, b'}']);
    let err = ask(&client, "hostile.string", invalid.clone())
        .await
        .unwrap_err();
    assert!(err.contains("not valid UTF-8"), "{err}");
    let err = ask(&client, "hostile.json", invalid.clone())
        .await
        .unwrap_err();
    assert!(err.contains("invalid JSON"), "{err}");
    assert_eq!(ask(&client, "hostile.bytes", invalid).await, Ok("4".into()));

    // 100,000 nested arrays: serde_json's recursion limit, no stack overflow.
    let deep = "[".repeat(100_000);
    let err = ask(&client, "hostile.json", deep.clone().into())
        .await
        .unwrap_err();
    assert!(err.contains("recursion limit"), "{err}");
    let err = ask(&client, "hostile.point", deep.clone().into())
        .await
        .unwrap_err();
    assert!(err.contains("invalid JSON"), "{err}");
    let balanced = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = ask(&client, "hostile.json", balanced.clone().into())
        .await
        .unwrap_err();
    assert!(err.contains("recursion limit"), "{err}");
    // The data-log line builder copes too (it falls back to text).
    let line = telestion::datalog::log_line("s", balanced.as_bytes(), std::time::SystemTime::now());
    let parsed: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
    assert_eq!(parsed["text"].as_str().map(str::len), Some(balanced.len()));

    // Still serving.
    assert_eq!(
        ask(&client, "hostile.bytes", "ok".into()).await,
        Ok("2".into())
    );
    assert!(service.is_connected());
    service.shutdown();
    service.drain().await;
}

#[test]
fn data_log_lines_stay_parseable_at_any_depth() {
    let now = std::time::SystemTime::now();
    for depth in [1usize, 126, 127, 128, 129, 1000] {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let line = telestion::datalog::log_line("s", body.as_bytes(), now);
        let parsed: serde_json::Value =
            serde_json::from_str(line.trim_end()).unwrap_or_else(|e| panic!("depth {depth}: {e}"));
        let kept = if parsed.get("json").is_some() {
            parsed["json"].to_string()
        } else {
            parsed["text"].as_str().unwrap().to_owned()
        };
        assert_eq!(kept, body, "depth {depth}");
        assert_eq!(parsed.get("json").is_some(), depth <= 126, "depth {depth}");
    }
    // Brackets inside strings do not count.
    let body = format!("[\"{}\"]", "[".repeat(500));
    let line = telestion::datalog::log_line("s", body.as_bytes(), now);
    assert!(serde_json::from_str::<serde_json::Value>(line.trim_end()).unwrap()["json"].is_array());
}
