//! Config: CLI forms, `CONFIG_FILE` + `CONFIG_KEY`, precedence,
//! typed decoding with errors naming the key, and the password never
//! appearing in `Debug` or log output.

use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use telestion::{Config, Options, Service};

use crate::support::{self, NatsServer};
use crate::{request, run_testbed, start_by_hand};

/// The testbed in no-NATS mode with `env` and `args`.
fn testbed(env: &[(&str, &str)], args: &[&str]) -> Value {
    let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_testbed"));
    cmd.env("X_DISABLE_NATS", "1")
        .envs(env.iter().copied())
        .args(args);
    let (result, _) = run_testbed(cmd);
    assert_eq!(result["started"], true, "{result}");
    result["config"].clone()
}

fn required() -> Vec<(&'static str, &'static str)> {
    vec![
        ("NATS_URL", "nats://127.0.0.1:1"),
        ("SERVICE_NAME", "cfg"),
        ("DATA_DIR", "/tmp"),
    ]
}

#[test]
fn cli_forms() {
    let config = testbed(
        &required(),
        &[
            "--EQ=1",
            "--SPACED",
            "two words",
            "--FLAG",
            "--data-dir",
            "/tmp/dd",
            "--LAST",
        ],
    );
    assert_eq!(config["EQ"], "1", "{config}");
    assert_eq!(config["SPACED"], "two words", "{config}");
    assert_eq!(config["FLAG"], "true", "{config}");
    assert_eq!(config["LAST"], "true", "{config}");
    assert_eq!(config["DATA_DIR"], "/tmp/dd", "{config}");
    assert!(config.get("data-dir").is_none(), "{config}");
    assert!(config.get("DATA-DIR").is_none(), "{config}");
}

#[test]
fn dashed_and_upper_case_keys_are_the_same_key() {
    for args in [
        ["--data-dir=/tmp/a", "--DATA_DIR=/tmp/b"],
        ["--DATA_DIR=/tmp/a", "--data-dir=/tmp/b"],
    ] {
        let config = testbed(&required(), &args);
        assert_eq!(config["DATA_DIR"], "/tmp/b", "{args:?}: {config}");
    }
}

#[test]
fn an_invalid_argument_fails_the_start() {
    let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_testbed"));
    cmd.envs(required()).env("X_DISABLE_NATS", "1").arg("stray");
    let (result, _) = run_testbed(cmd);
    assert_eq!(result["started"], false, "{result}");
    assert!(
        result["error"].as_str().unwrap().contains("stray"),
        "{result}"
    );
}

fn write_file(dir: &tempfile::TempDir, content: &Value) -> String {
    let path = dir.path().join("config.json");
    std::fs::write(&path, content.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn config_file_narrowed_by_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        &dir,
        &json!({
            "svc": {"FROM_FILE": "yes", "NUMBER": 5, "SERVICE_NAME": "from-file"},
            "other": {"OTHER": "no"}
        }),
    );
    let config = testbed(
        &[
            ("CONFIG_FILE", &file),
            ("CONFIG_KEY", "svc"),
            ("NATS_URL", "nats://127.0.0.1:1"),
            ("DATA_DIR", "/tmp"),
        ],
        &[],
    );
    assert_eq!(config["FROM_FILE"], "yes", "{config}");
    assert_eq!(config["NUMBER"].to_string(), "5", "{config}");
    assert_eq!(config["SERVICE_NAME"], "from-file", "{config}");
    assert!(config.get("OTHER").is_none(), "{config}");
    assert!(config.get("svc").is_none(), "{config}");

    // Without CONFIG_KEY the whole top-level object is the config; the file
    // may also be named on the command line.
    let config = testbed(&required(), &["--CONFIG_FILE", &file]);
    assert_eq!(config["svc"]["FROM_FILE"], "yes", "{config}");
}

#[test]
fn a_broken_config_file_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, "{ not json").unwrap();
    let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_testbed"));
    cmd.envs(required())
        .env("X_DISABLE_NATS", "1")
        .env("CONFIG_FILE", &path);
    let (result, _) = run_testbed(cmd);
    assert_eq!(result["started"], false, "{result}");
    assert!(
        result["error"].as_str().unwrap().contains("CONFIG_FILE"),
        "{result}"
    );
}

#[test]
fn precedence_cli_env_file_dev() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        &dir,
        &json!({
            "ALL": "file", "ENV_FILE": "file", "FILE_ONLY": "file",
            "NATS_URL": "nats://file:4222"
        }),
    );
    let config = testbed(
        &[
            ("CONFIG_FILE", &file),
            ("ALL", "env"),
            ("ENV_FILE", "env"),
            ("SERVICE_NAME", "env-name"),
        ],
        &["--ALL=cli", "--dev"],
    );
    assert_eq!(config["ALL"], "cli", "{config}");
    assert_eq!(config["ENV_FILE"], "env", "{config}");
    assert_eq!(config["FILE_ONLY"], "file", "{config}");
    // file beats dev defaults; env beats dev defaults; dev fills the rest
    assert_eq!(config["NATS_URL"], "nats://file:4222", "{config}");
    assert_eq!(config["SERVICE_NAME"], "env-name", "{config}");
    assert_eq!(config["DATA_DIR"], "./data", "{config}");
}

#[derive(Debug, Deserialize)]
struct Settings {
    port: u16,
    verbose: bool,
    ratio: f64,
    label: String,
    optional: Option<u32>,
}

#[test]
fn typed_access_coerces_strings() {
    let mut pairs = required();
    pairs.extend([("PORT", "8080"), ("VERBOSE", "true"), ("LABEL", "x")]);
    let config = Config::from_sources(["--RATIO=0.5"], pairs.clone()).unwrap();
    let settings: Settings = config.typed().unwrap();
    assert_eq!(settings.port, 8080);
    assert!(settings.verbose);
    assert_eq!(settings.ratio, 0.5);
    assert_eq!(settings.label, "x");
    assert_eq!(settings.optional, None);
    // Raw access to the merged map.
    assert_eq!(config.raw()["RATIO"], "0.5");
    assert_eq!(config.get::<u16>("PORT").unwrap(), Some(8080));
}

#[test]
fn typed_errors_name_the_key() {
    let mut pairs = required();
    pairs.extend([
        ("PORT", "eighty"),
        ("VERBOSE", "true"),
        ("RATIO", "1"),
        ("LABEL", "x"),
    ]);
    let config = Config::from_sources(Vec::<String>::new(), pairs.clone()).unwrap();
    let error = config.typed::<Settings>().unwrap_err().to_string();
    assert!(error.contains("PORT"), "{error}");

    pairs.retain(|(k, _)| *k != "PORT");
    let config = Config::from_sources(Vec::<String>::new(), pairs.clone()).unwrap();
    let error = config.typed::<Settings>().unwrap_err().to_string();
    assert!(error.contains("PORT"), "{error}");

    let error = Config::from_pairs([("PORT", "x")])
        .get::<u16>("PORT")
        .unwrap_err()
        .to_string();
    assert!(error.contains("PORT"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_runtime_key_fails_the_start_naming_it() {
    let mut pairs = required();
    pairs.push(("HEALTH_ERROR_WINDOW", "soon"));
    let error = Service::start(Options::new().nats(false).config(Config::from_pairs(pairs)))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("HEALTH_ERROR_WINDOW"), "{error}");
}

const SECRET: &str = "pw-never-shown-4f1d";

#[tokio::test(flavor = "multi_thread")]
async fn password_not_in_debug_output() {
    let mut pairs = required();
    pairs.push(("NATS_PASSWORD", SECRET));
    let config = Config::from_pairs(pairs);
    let debug = format!("{config:?} {config:#?}");
    assert!(!debug.contains(SECRET), "{debug}");
    let service = Service::start(Options::new().nats(false).config(config))
        .await
        .unwrap();
    let debug = format!("{service:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("NATS_PASSWORD"), "{debug}");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_not_in_logs_even_at_trace_level() {
    let user = "logger";
    let server = NatsServer::with_auth(user, SECRET);
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), SECRET.into())
        .connect(server.url())
        .await
        .unwrap();
    let extra = [
        ("RUST_LOG", "trace"),
        ("NATS_USER", user),
        ("NATS_PASSWORD", SECRET),
    ];
    let mut proc = start_by_hand(&server.url(), "logger", &extra, &client).await;
    // Exercise the error paths too.
    request(&client, "byhand.panic", "x").await;
    request(&client, "byhand.fail", "x").await;
    request(&client, "byhand.echo", "not json").await;
    proc.signal(libc::SIGTERM);
    assert_eq!(proc.wait_exit(Duration::from_secs(30)), Some(0));
    let output = proc.stdout() + &proc.stderr();
    assert!(
        output.contains("TRACE") || output.contains("DEBUG"),
        "trace logging is off:\n{output}"
    );
    assert!(
        !output.contains(SECRET),
        "the password was logged:\n{output}"
    );

    // A start that fails because of the password does not print it either.
    let mut cmd: Command = support::clean_command(env!("CARGO_BIN_EXE_testbed"));
    cmd.env("RUST_LOG", "trace")
        .env("NATS_URL", server.url())
        .env("SERVICE_NAME", "logger")
        .env("DATA_DIR", "/tmp")
        .env("NATS_USER", user)
        .env("NATS_PASSWORD", "pw-wrong-and-secret-99");
    let (result, output) = run_testbed(cmd);
    assert_eq!(result["started"], false, "{result}");
    assert!(!output.contains("pw-wrong-and-secret-99"), "{output}");
}
