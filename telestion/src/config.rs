//! Configuration: environment variables, CLI arguments and an optional JSON
//! file, merged with the precedence CLI > env > file > `--dev` defaults.
//!
//! Keys are case-insensitive on the command line (`--data-dir`,
//! `--DATA_DIR` and `--data_dir` all name `DATA_DIR`); environment variables
//! and file keys are taken as they are. Values from the environment and the
//! command line are strings; values from the file keep their JSON type.
//!
//! Typed access ([`Config::typed`]) decodes the merged map into a serde
//! struct through [`envy`]: a field `my_number: u32` reads the key
//! `MY_NUMBER`, and strings are coerced to numbers and booleans, with errors
//! naming the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ConfigError;

/// The key naming the JSON config file.
pub const CONFIG_FILE: &str = "CONFIG_FILE";
/// The key selecting an object inside the config file.
pub const CONFIG_KEY: &str = "CONFIG_KEY";
/// The keys every Telestion service requires.
pub const REQUIRED_KEYS: [&str; 3] = ["NATS_URL", "SERVICE_NAME", "DATA_DIR"];

/// What a secret value is shown as in `Debug` output, logs and echoes.
pub const REDACTED: &str = "[redacted]";

/// The merged configuration of a service.
///
/// `Debug` output and [`Config::to_redacted_json`] hide secrets
/// (`NATS_PASSWORD` and every key containing `PASSWORD`, `SECRET`, `TOKEN`,
/// `SEED` or `NKEY`).
#[derive(Clone, Default)]
pub struct Config {
    values: BTreeMap<String, Value>,
    dev: bool,
}

/// Whether a key holds a secret that must never be printed.
pub fn is_secret_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "SEED", "NKEY"]
        .iter()
        .any(|needle| upper.contains(needle))
}

fn shorten(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head}... ({} bytes)", text.len())
    }
}

/// Normalizes a CLI key: upper case, `-` becomes `_`.
fn normalize_cli_key(raw: &str, arg: &str) -> Result<String, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::InvalidArgument {
            arg: shorten(arg),
            reason: "the key is empty; write `--KEY=VALUE`".into(),
        });
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(ConfigError::InvalidArgument {
            arg: shorten(arg),
            reason: format!(
                "the key contains {bad:?}; keys may contain only letters, digits, `_`, `-` and `.`"
            ),
        });
    }
    Ok(raw.to_ascii_uppercase().replace('-', "_"))
}

/// The parsed command line: key/value pairs and whether `--dev` was given.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CliArgs {
    /// Keys (normalized) and values, in order; later ones win.
    pub values: Vec<(String, String)>,
    /// Whether `--dev` was given.
    pub dev: bool,
}

/// Parses CLI arguments (without the program name).
///
/// `--KEY=VALUE`, `--KEY VALUE` (when the next argument does not start with
/// `--`), a bare `--flag` means `"true"`, `--dev` is always a flag. Anything
/// else (a stray positional argument, an empty key) is an error.
pub fn parse_args<I, S>(args: I) -> Result<CliArgs, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut out = CliArgs::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(body) = arg.strip_prefix("--") else {
            return Err(ConfigError::InvalidArgument {
                arg: shorten(arg),
                reason: "expected `--KEY=VALUE`, `--KEY VALUE` or `--flag`".into(),
            });
        };
        if let Some((key, value)) = body.split_once('=') {
            let key = normalize_cli_key(key, arg)?;
            if key == "DEV" {
                out.dev = parse_bool(value).ok_or_else(|| ConfigError::InvalidArgument {
                    arg: shorten(arg),
                    reason: "`--dev` takes no value other than true or false".into(),
                })?;
                continue;
            }
            out.values.push((key, value.to_owned()));
            continue;
        }
        let key = normalize_cli_key(body, arg)?;
        if key == "DEV" {
            out.dev = true;
            continue;
        }
        match args.get(i) {
            Some(next) if !next.starts_with("--") => {
                out.values.push((key, next.clone()));
                i += 1;
            }
            _ => out.values.push((key, "true".to_owned())),
        }
    }
    Ok(out)
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// Reads the JSON config file and narrows it to `config_key` when given.
pub fn read_file(
    path: &str,
    config_key: Option<&str>,
) -> Result<BTreeMap<String, Value>, ConfigError> {
    let path_buf = PathBuf::from(path);
    let text = std::fs::read(&path_buf).map_err(|source| ConfigError::FileRead {
        path: path_buf.clone(),
        source,
    })?;
    parse_file(&text, config_key).map_err(|reason| ConfigError::FileFormat {
        path: path_buf,
        reason,
    })
}

/// Parses config file contents; the error is a human-readable reason.
pub fn parse_file(
    contents: &[u8],
    config_key: Option<&str>,
) -> Result<BTreeMap<String, Value>, String> {
    let root: Value =
        serde_json::from_slice(contents).map_err(|e| format!("not valid JSON: {e}"))?;
    let root = match root {
        Value::Object(map) => map,
        other => {
            return Err(format!(
                "the top level must be a JSON object, found {}",
                kind(&other)
            ));
        }
    };
    let object = match config_key {
        None => root,
        Some(key) => match root.get(key) {
            Some(Value::Object(inner)) => inner.clone(),
            Some(other) => {
                return Err(format!(
                    "CONFIG_KEY `{}` names a {}, but it must name a JSON object",
                    shorten(key),
                    kind(other)
                ));
            }
            None => {
                return Err(format!(
                    "CONFIG_KEY `{}` is not a key of the file's top-level object",
                    shorten(key)
                ));
            }
        },
    };
    Ok(object.into_iter().collect())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The string form of a config value: strings as they are, everything else
/// as compact JSON.
pub fn value_to_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Config {
    /// Loads the configuration of this process: its CLI arguments (without
    /// the program name), all its environment variables and the file named
    /// by `CONFIG_FILE`. Fails when a required key is missing and `--dev`
    /// was not given.
    pub fn load() -> Result<Config, ConfigError> {
        let args = std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned());
        let env = std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        });
        Config::from_sources(args, env)
    }

    /// Builds the configuration from explicit CLI arguments and environment
    /// variables (plus the file named by `CONFIG_FILE` in either), then
    /// checks the required keys.
    pub fn from_sources<A, S, E>(args: A, env: E) -> Result<Config, ConfigError>
    where
        A: IntoIterator<Item = S>,
        S: Into<String>,
        E: IntoIterator<Item = (String, String)>,
    {
        let config = Config::merge(args, env)?;
        config.check_required()?;
        Ok(config)
    }

    /// Like [`Config::from_sources`] but without checking required keys.
    pub fn merge<A, S, E>(args: A, env: E) -> Result<Config, ConfigError>
    where
        A: IntoIterator<Item = S>,
        S: Into<String>,
        E: IntoIterator<Item = (String, String)>,
    {
        let cli = parse_args(args)?;
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let cli_map: BTreeMap<String, String> = cli.values.iter().cloned().collect();

        let pick = |key: &str| {
            cli_map
                .get(key)
                .or_else(|| env.get(key))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let mut values = match pick(CONFIG_FILE) {
            Some(path) => read_file(&path, pick(CONFIG_KEY).as_deref())?,
            None => BTreeMap::new(),
        };
        for (key, value) in env {
            values.insert(key, Value::String(value));
        }
        for (key, value) in cli_map {
            values.insert(key, Value::String(value));
        }
        if cli.dev {
            let defaults = [
                ("NATS_URL", "localhost:4222".to_owned()),
                ("SERVICE_NAME", format!("dev-{}", std::process::id())),
                ("DATA_DIR", "./data".to_owned()),
            ];
            for (key, value) in defaults {
                values.entry(key.to_owned()).or_insert(Value::String(value));
            }
        }
        Ok(Config {
            values,
            dev: cli.dev,
        })
    }

    /// Builds a configuration from key/value pairs (no files, no checks).
    /// Handy in tests and for services configured by hand.
    pub fn from_pairs<I, K, V>(pairs: I) -> Config
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Value>,
    {
        Config {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            dev: false,
        }
    }

    /// Fails with one error naming every missing required key, unless in
    /// dev mode (where defaults fill them).
    pub fn check_required(&self) -> Result<(), ConfigError> {
        let missing: Vec<String> = REQUIRED_KEYS
            .iter()
            .filter(|key| self.get_str(key).is_none_or(|v| v.is_empty()))
            .map(|key| key.to_string())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Missing { keys: missing })
        }
    }

    /// Whether `--dev` was given.
    pub fn is_dev(&self) -> bool {
        self.dev
    }

    /// The raw merged map.
    pub fn raw(&self) -> &BTreeMap<String, Value> {
        &self.values
    }

    /// The raw value of a key.
    pub fn get_value(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// The string form of a key's value (see [`value_to_string`]).
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.values.get(key).map(value_to_string)
    }

    /// Sets a key (for example in start-up code or tests).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.values.insert(key.into(), value.into());
    }

    /// Decodes one key into `T`: the JSON value itself, or, for strings, the
    /// string parsed as JSON (so `"5"` gives `5u32`) or taken as a string.
    /// `Ok(None)` when the key is missing.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        let Some(value) = self.values.get(key) else {
            return Ok(None);
        };
        let first = serde_json::from_value::<T>(value.clone());
        let result = match (first, value) {
            (Ok(v), _) => Ok(v),
            (Err(e), Value::String(s)) => serde_json::from_str::<T>(s).map_err(|_| e),
            (Err(e), _) => Err(e),
        };
        result.map(Some).map_err(|e| ConfigError::Invalid {
            key: Some(key.to_owned()),
            message: if is_secret_key(key) {
                format!("key {key}: cannot decode the value ({REDACTED})")
            } else {
                format!("key {key}: {e}")
            },
        })
    }

    /// Decodes the whole merged configuration into a serde struct whose
    /// fields are the lower-case keys (`my_number` reads `MY_NUMBER`).
    /// Strings are coerced to numbers and booleans; other file values are
    /// passed as their JSON text. Errors name the key.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let pairs = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), value_to_string(v)));
        envy::from_iter::<_, T>(pairs).map_err(|e| self.envy_error(e))
    }

    fn envy_error(&self, error: envy::Error) -> ConfigError {
        match error {
            envy::Error::MissingValue(field) => {
                let key = field.to_ascii_uppercase();
                ConfigError::Invalid {
                    message: format!(
                        "missing key {key}; set it as environment variable `{key}=...` or \
                         pass `--{key}=...`"
                    ),
                    key: Some(key),
                }
            }
            envy::Error::Custom(mut message) => {
                let mut key = None;
                if let Some(pos) = message.rfind(" provided by ") {
                    let start = pos + " provided by ".len();
                    let name = message[start..].to_ascii_uppercase();
                    message.replace_range(start.., &name);
                    key = Some(name);
                }
                ConfigError::Invalid {
                    key,
                    message: self.redact(message),
                }
            }
        }
    }

    /// `text` with the value of every secret key replaced by [`REDACTED`]
    /// (for messages that may quote config values).
    pub fn redact(&self, mut text: String) -> String {
        for (key, value) in &self.values {
            let value = value_to_string(value);
            if is_secret_key(key) && !value.is_empty() {
                text = text.replace(&value, REDACTED);
            }
        }
        text
    }

    /// The merged map as a JSON object with secrets replaced by
    /// [`REDACTED`]; what logs and echoes may show.
    pub fn to_redacted_json(&self) -> Value {
        Value::Object(
            self.values
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        _ if is_secret_key(k) => Value::String(REDACTED.into()),
                        // `user:password@` in the server URLs.
                        Value::String(url) if k == "NATS_URL" && url.contains('@') => {
                            Value::String(crate::connect::display_url(url))
                        }
                        _ => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect(),
        )
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("dev", &self.dev)
            .field("values", &self.to_redacted_json())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cli_forms() {
        let cli = parse_args([
            "--a=1",
            "--data-dir",
            "/tmp",
            "--flag",
            "--dev",
            "--x.y=",
            "--last",
        ])
        .unwrap();
        assert!(cli.dev);
        assert_eq!(
            cli.values,
            vec![
                ("A".into(), "1".into()),
                ("DATA_DIR".into(), "/tmp".into()),
                ("FLAG".into(), "true".into()),
                ("X.Y".into(), "".into()),
                ("LAST".into(), "true".into()),
            ]
        );
    }

    #[test]
    fn cli_errors() {
        for bad in [
            &["positional"][..],
            &["--"],
            &["--=x"],
            &["--a b=1"],
            &["-x"],
        ] {
            let err = parse_args(bad.iter().copied()).unwrap_err();
            assert!(
                err.to_string().contains("invalid command-line argument"),
                "{err}"
            );
        }
    }

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
            env(&[
                ("A", "env"),
                ("B", "env"),
                ("CONFIG_FILE", file.to_str().unwrap()),
                ("CONFIG_KEY", "svc"),
                ("DATA_DIR", "/d"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.get_str("A").unwrap(), "cli");
        assert_eq!(cfg.get_str("B").unwrap(), "env");
        assert_eq!(cfg.get_str("C").unwrap(), "file");
        assert_eq!(cfg.get::<u32>("N").unwrap(), Some(5));
        assert_eq!(cfg.get_str("DATA_DIR").unwrap(), "/d");
        assert_eq!(cfg.get_str("NATS_URL").unwrap(), "localhost:4222");
        assert!(cfg.get_str("SERVICE_NAME").unwrap().starts_with("dev-"));
        assert!(cfg.get_value("NATS_USER").is_none());
    }

    #[test]
    fn missing_names_every_key() {
        let err = Config::from_sources(Vec::<String>::new(), env(&[("NATS_URL", "x")]))
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
        assert!(
            parse_file(b"[1]", None)
                .unwrap_err()
                .contains("JSON object")
        );
        assert!(
            parse_file(b"{}", Some("k"))
                .unwrap_err()
                .contains("CONFIG_KEY")
        );
        assert!(
            parse_file(br#"{"k": 1}"#, Some("k"))
                .unwrap_err()
                .contains("number")
        );
        assert!(
            parse_file(b"{", None)
                .unwrap_err()
                .contains("not valid JSON")
        );
    }
}
