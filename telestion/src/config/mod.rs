//! Configuration: environment variables, CLI arguments and an optional JSON
//! file, merged with the precedence CLI > env > file > `--dev` defaults.
//!
//! Keys are case-insensitive on the command line (`--data-dir`,
//! `--DATA_DIR` and `--data_dir` all name `DATA_DIR`); environment variables
//! and file keys are taken as they are. Values from the environment and the
//! command line are strings; values from the file keep their JSON type.
//! Typed access ([`Config::typed`], [`Config::get`]) is in `typed.rs`.

mod cli;
mod fields;
mod file;
pub(crate) mod nats_url;
mod secret;
mod typed;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

use crate::error::ConfigError;

pub(crate) use fields::field_names;
pub use file::MAX_FILE_BYTES;
pub use secret::{REDACTED, is_secret_key};

/// The key naming the JSON config file.
pub const CONFIG_FILE: &str = "CONFIG_FILE";
/// The key selecting an object inside the config file.
pub const CONFIG_KEY: &str = "CONFIG_KEY";
/// The keys every Telestion service requires.
pub const REQUIRED_KEYS: [&str; 3] = ["NATS_URL", "SERVICE_NAME", "DATA_DIR"];

/// The merged configuration of a service.
///
/// `Debug` output and [`Config::to_redacted_json`] hide secrets
/// (`NATS_PASSWORD` and every key containing `PASSWORD`, `SECRET`, `TOKEN`,
/// `SEED` or `NKEY`, see [`is_secret_key`]).
///
/// ```
/// let config = telestion::Config::from_pairs([("MY_NUMBER", "42")]);
/// assert_eq!(config.get::<u32>("MY_NUMBER").unwrap(), Some(42));
/// assert_eq!(config.get_str("MY_NUMBER").as_deref(), Some("42"));
/// ```
#[derive(Clone, Default)]
pub struct Config {
    values: BTreeMap<String, Value>,
    /// Keys whose environment value is not valid UTF-8 (left out of
    /// `values`; asking for them is an error naming the key).
    not_utf8: BTreeSet<String>,
    dev: bool,
    help: bool,
}

/// The string form of a config value: strings as they are, everything else
/// as compact JSON.
pub(crate) fn value_to_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The `SERVICE_NAME` of `--dev`: the executable's name, so that every dev
/// run of a service finds the data of the previous one.
fn dev_service_name() -> String {
    let name = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    if name.is_empty() {
        "telestion-dev".into()
    } else {
        name
    }
}

/// Whether this process's command line asks for `--help` (or `-h`).
pub(crate) fn help_in_args() -> bool {
    let args = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    cli::parse_args(args).is_ok_and(|cli| cli.help)
}

impl Config {
    /// Loads the configuration of this process: its CLI arguments (without
    /// the program name), all its environment variables and the file named
    /// by `CONFIG_FILE`. Fails when a required key is missing and `--dev`
    /// was not given, or when an argument is not valid UTF-8.
    ///
    /// It reads a file, so call it off the async workers (as
    /// [`Service::start`](crate::Service::start) does).
    pub fn load() -> Result<Config, ConfigError> {
        let mut args = Vec::new();
        for arg in std::env::args_os().skip(1) {
            match arg.into_string() {
                Ok(arg) => args.push(arg),
                Err(raw) => {
                    return Err(ConfigError::InvalidArgument {
                        arg: cli::shorten(&raw.to_string_lossy()),
                        reason: "it is not valid UTF-8".into(),
                    });
                }
            }
        }
        let mut env = Vec::new();
        let mut not_utf8 = BTreeSet::new();
        for (key, value) in std::env::vars_os() {
            match (key.into_string(), value.into_string()) {
                (Ok(key), Ok(value)) => env.push((key, value)),
                (Ok(key), Err(_)) => {
                    not_utf8.insert(key);
                }
                // A key that is not UTF-8 cannot be asked for.
                (Err(_), _) => {}
            }
        }
        let mut config = Config::merge(args, env)?;
        config.not_utf8 = not_utf8
            .into_iter()
            .filter(|key| !config.values.contains_key(key))
            .collect();
        config.check_required()?;
        Ok(config)
    }

    /// Builds the configuration from explicit CLI arguments and environment
    /// variables (plus the file named by `CONFIG_FILE` in either), then
    /// checks the required keys.
    ///
    /// ```
    /// let config = telestion::Config::from_sources(
    ///     ["--service-name=probe"],
    ///     [("NATS_URL", "nats://127.0.0.1:4333"), ("DATA_DIR", "/tmp")],
    /// )
    /// .unwrap();
    /// assert_eq!(config.get_str("SERVICE_NAME").as_deref(), Some("probe"));
    /// ```
    pub fn from_sources<A, S, E, K, V>(args: A, env: E) -> Result<Config, ConfigError>
    where
        A: IntoIterator<Item = S>,
        S: Into<String>,
        E: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let config = Config::merge(args, env)?;
        config.check_required()?;
        Ok(config)
    }

    /// Like [`Config::from_sources`] but without checking required keys.
    pub fn merge<A, S, E, K, V>(args: A, env: E) -> Result<Config, ConfigError>
    where
        A: IntoIterator<Item = S>,
        S: Into<String>,
        E: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let cli = cli::parse_args(args)?;
        let env: BTreeMap<String, String> = env
            .into_iter()
            .map(|(key, value)| (key.into(), value.into()))
            .collect();
        let cli_map: BTreeMap<String, String> = cli.values.iter().cloned().collect();

        let pick = |key: &str| {
            cli_map
                .get(key)
                .or_else(|| env.get(key))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let mut values = match pick(CONFIG_FILE) {
            Some(path) => file::read_file(&PathBuf::from(path), pick(CONFIG_KEY).as_deref())?,
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
                ("SERVICE_NAME", dev_service_name()),
                ("DATA_DIR", "./data".to_owned()),
            ];
            for (key, value) in defaults {
                values.entry(key.to_owned()).or_insert(Value::String(value));
            }
        }
        Ok(Config {
            values,
            not_utf8: BTreeSet::new(),
            dev: cli.dev,
            help: cli.help,
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
            ..Config::default()
        }
    }

    /// Fails with one error naming every missing required key (a value that
    /// is not valid UTF-8 counts as wrong, not missing).
    pub fn check_required(&self) -> Result<(), ConfigError> {
        if let Some(key) = REQUIRED_KEYS.iter().find(|k| self.not_utf8.contains(**k)) {
            return Err(self.not_utf8_error(key));
        }
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

    pub(crate) fn not_utf8_error(&self, key: &str) -> ConfigError {
        ConfigError::Invalid {
            key: Some(key.to_owned()),
            message: format!(
                "key {key}: the value is not valid UTF-8; give it as UTF-8 text (paths too)"
            ),
        }
    }

    /// Fails, naming the key, when one of `keys` has a value that is not
    /// valid UTF-8.
    pub(crate) fn check_utf8(&self, keys: &[&str]) -> Result<(), ConfigError> {
        match keys.iter().find(|k| self.not_utf8.contains(**k)) {
            Some(key) => Err(self.not_utf8_error(key)),
            None => Ok(()),
        }
    }

    /// Whether `--dev` was given.
    pub fn is_dev(&self) -> bool {
        self.dev
    }

    /// Whether `--help` (or `-h`) was given: the service prints the keys it
    /// reads and exits instead of starting.
    pub fn help_requested(&self) -> bool {
        self.help
    }

    /// The raw merged map.
    pub fn raw(&self) -> &BTreeMap<String, Value> {
        &self.values
    }

    /// The raw value of a key.
    pub fn get_value(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// The string form of a key's value: strings as they are, other JSON
    /// values (from the config file) as compact JSON.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.values.get(key).map(value_to_string)
    }

    /// Sets a key (for example in start-up code or tests).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        self.not_utf8.remove(&key);
        self.values.insert(key, value.into());
    }

    /// The merged map as a JSON object with secrets replaced by
    /// `[redacted]` (and the user info of the servers in `NATS_URL`); what
    /// logs and echoes may show.
    pub fn to_redacted_json(&self) -> Value {
        Value::Object(
            self.values
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        _ if is_secret_key(k) => Value::String(REDACTED.into()),
                        Value::String(url) if k == "NATS_URL" => {
                            Value::String(crate::config::nats_url::display(url))
                        }
                        _ => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect(),
        )
    }

    /// The value of `key` as a path (for keys such as `DATA_DIR`).
    pub(crate) fn get_path(&self, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        self.check_utf8(&[key])?;
        Ok(self
            .get_str(key)
            .filter(|v| !v.is_empty())
            .map(|v| PathBuf::from(OsString::from(v))))
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
mod tests;
