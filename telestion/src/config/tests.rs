//! Unit and property tests of the config loader.

use super::*;
use crate::config::cli::parse_args;
use crate::config::cli::tests::{arg, runner};
use crate::config::file::{FileError, parse_file};
use proptest::prelude::*;
use telestion_test::json_value;

#[test]
fn precedence_cli_env_file_dev() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.json");
    std::fs::write(
        &file,
        r#"{"svc": {"A": "file", "B": "file", "C": "file", "N": 5}}"#,
    )
    .unwrap();
    let cfg = Config::from_sources(
        ["--A=cli", "--dev"],
        [
            ("A", "env"),
            ("B", "env"),
            ("CONFIG_FILE", file.to_str().unwrap()),
            ("CONFIG_KEY", "svc"),
            ("DATA_DIR", "/d"),
        ],
    )
    .unwrap();
    assert_eq!(cfg.get_str("A").unwrap(), "cli");
    assert_eq!(cfg.get_str("B").unwrap(), "env");
    assert_eq!(cfg.get_str("C").unwrap(), "file");
    assert_eq!(cfg.get::<u32>("N").unwrap(), Some(5));
    assert_eq!(cfg.get_str("DATA_DIR").unwrap(), "/d");
    assert_eq!(cfg.get_str("NATS_URL").unwrap(), "localhost:4222");
    assert_eq!(cfg.get_str("SERVICE_NAME").unwrap(), dev_service_name());
    assert!(cfg.get_value("NATS_USER").is_none());
}

#[test]
fn missing_names_every_key() {
    let err = Config::from_sources(Vec::<String>::new(), [("NATS_URL", "x")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("SERVICE_NAME, DATA_DIR"), "{err}");
    assert!(err.contains("--dev"), "{err}");
}

#[test]
fn typed_coerces_and_names_keys() {
    #[derive(serde::Deserialize, Debug)]
    struct Typed {
        my_number: u32,
        my_flag: bool,
    }
    let cfg = Config::from_pairs([("MY_NUMBER", "42"), ("MY_FLAG", "true")]);
    let t: Typed = cfg.typed().unwrap();
    assert_eq!((t.my_number, t.my_flag), (42, true));
    let cfg = Config::from_pairs([("MY_NUMBER", "x"), ("MY_FLAG", "true")]);
    let err = cfg.typed::<Typed>().unwrap_err().to_string();
    assert!(err.contains("MY_NUMBER"), "{err}");
    let cfg = Config::from_pairs([("MY_FLAG", "true")]);
    let err = cfg.typed::<Typed>().unwrap_err().to_string();
    assert!(err.contains("missing key MY_NUMBER"), "{err}");
}

#[test]
fn password_is_redacted() {
    let cfg = Config::from_pairs([("NATS_PASSWORD", "hunter2"), ("PORT", "hunter2x")]);
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("hunter2\""), "{debug}");
    assert!(debug.contains(REDACTED));
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct T {
        nats_password: u32,
    }
    let err = cfg.typed::<T>().unwrap_err().to_string();
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn file_shape_errors() {
    let shape = |result: Result<_, FileError>| match result {
        Err(FileError::Shape(reason)) => reason,
        other => panic!("expected a shape error, got {other:?}"),
    };
    assert!(shape(parse_file(b"[1]", None)).contains("JSON object"));
    assert!(shape(parse_file(b"{}", Some("k"))).contains("CONFIG_KEY"));
    assert!(shape(parse_file(br#"{"k": 1}"#, Some("k"))).contains("number"));
    assert!(matches!(parse_file(b"{", None), Err(FileError::Json(_))));
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
                if let Err(FileError::Shape(reason)) = parse_file(&bytes, key.as_deref()) {
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
        assert!(matches!(err, ConfigError::FileShape { .. }), "{err:?}");
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

fn load_file(path: &std::path::Path) -> Result<Config, ConfigError> {
    Config::merge(
        Vec::<String>::new(),
        [(CONFIG_FILE.to_owned(), path.to_string_lossy().into_owned())],
    )
}

#[test]
fn config_file_must_be_a_regular_file_within_the_limit() {
    // A device that never ends: refused before anything is read.
    let err = load_file(std::path::Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("a device, not a regular file"), "{err}");
    assert!(err.contains("CONFIG_FILE"), "{err}");
    // A FIFO without a writer: refused at once instead of blocking.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("config.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let started = std::time::Instant::now();
    let err = load_file(&fifo).unwrap_err().to_string();
    assert!(err.contains("a FIFO, not a regular file"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // A directory.
    let err = load_file(dir.path()).unwrap_err().to_string();
    assert!(err.contains("a directory"), "{err}");
    // Larger than the limit (a sparse file: nothing is written).
    let big = dir.path().join("big.json");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(MAX_FILE_BYTES + 1).unwrap();
    let err = load_file(&big).unwrap_err().to_string();
    assert!(
        err.contains("larger than the limit of 16 MiB for CONFIG_FILE"),
        "{err}"
    );
    // Exactly at the limit is read (and then fails as JSON, not as size).
    file.set_len(MAX_FILE_BYTES).unwrap();
    assert!(matches!(load_file(&big), Err(ConfigError::FileJson { .. })));
}

#[test]
fn non_utf8_values_are_named_not_rewritten() {
    let mut config = Config::from_pairs([("NATS_URL", "x"), ("SERVICE_NAME", "s")]);
    config.not_utf8.insert("DATA_DIR".into());
    config.not_utf8.insert("MY_PATH".into());
    let err = config.check_required().unwrap_err().to_string();
    assert!(
        err.contains("DATA_DIR") && err.contains("not valid UTF-8"),
        "{err}"
    );
    let err = config.get::<String>("MY_PATH").unwrap_err().to_string();
    assert!(
        err.contains("MY_PATH") && err.contains("not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn secrets_never_appear_in_decode_errors() {
    // A password that is also a word of the error text: the message is
    // built without it, not by replacing it (which would reveal it).
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct T {
        nats_password: u32,
    }
    for password in ["server", "hunter2", "provided"] {
        let cfg = Config::from_pairs([("NATS_PASSWORD", password)]);
        let err = cfg.typed::<T>().unwrap_err().to_string();
        assert!(!err.contains("[redacted] "), "{err}");
        assert!(err.contains("NATS_PASSWORD"), "{err}");
        assert!(
            !err.to_ascii_lowercase()
                .replace("nats_password", "")
                .contains(password),
            "{err}"
        );
    }
}
