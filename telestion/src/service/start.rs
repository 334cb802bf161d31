//! Starting a service: signals first, then the configuration (off the
//! async workers), identity, the connection and the health replies; a
//! signal at any point of this ends the start promptly.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::{Inner, Lifecycle, Service, data_dir, state};
use crate::config::Config;
use crate::error::{ConfigError, StartError};
use crate::observe::connection::ConnectionWatch;
use crate::observe::error_counter::{DEFAULT_ERROR_WINDOW_SECS, ErrorCounter};
use crate::observe::health;
use crate::observe::instance::Instance;
use crate::service::connect;
use crate::service::signals::Signals;

/// Default of `SHUTDOWN_TIMEOUT`, in seconds.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// The keys every service reads (besides those of the connection), for
/// `--help`.
pub(crate) const STANDARD_KEYS: [(&str, &str); 10] = [
    (
        "SERVICE_NAME",
        "the service's name and default queue group (required)",
    ),
    ("DATA_DIR", "shared data directory (required)"),
    ("SERVICE_ID", "the instance id (default: a new NUID)"),
    (
        "SERVICE_VERSION",
        "the semantic version in discovery replies (default: the crate's version)",
    ),
    (
        "HEALTH_ERROR_WINDOW",
        "seconds counted as recent errors in health (default 60)",
    ),
    ("SHUTDOWN_TIMEOUT", "seconds a drain may take (default 10)"),
    (
        "NATS_SUBSCRIPTION_CAPACITY",
        "messages buffered per subscription (default 65536, or the service's own)",
    ),
    (
        "METRICS_ADDR",
        "host:port of the Prometheus endpoint GET /metrics, e.g. 0.0.0.0:9090 (default: off)",
    ),
    ("CONFIG_FILE", "JSON config file"),
    ("CONFIG_KEY", "the object in CONFIG_FILE to use"),
];

/// How to start a service.
///
/// ```
/// let options = telestion::Options::new()
///     .config(telestion::Config::from_pairs([
///         ("NATS_URL", "localhost:4222"),
///         ("SERVICE_NAME", "example"),
///         ("DATA_DIR", "/tmp"),
///     ]))
///     .signals(false);
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Connect to NATS (default `true`). `false` is the no-NATS mode: config
    /// and identity only, no client, no health replies, no handlers.
    pub nats: bool,
    /// Use this configuration instead of loading it from the process's CLI
    /// arguments, environment and config file.
    pub config: Option<Config>,
    /// Handle SIGINT, SIGTERM and SIGHUP (default `true`): the first drains
    /// the service, a second exits the process with code 130. `false` for a
    /// service embedded in a larger program or a test, which stops it with
    /// [`Service::shutdown`].
    pub signals: bool,
    /// The service's semantic version in discovery replies (`$SRV.INFO`
    /// and the others, see [`crate::micro`]); `SERVICE_VERSION` in the
    /// configuration overrides it. `#[telestion::service]` sets it to the
    /// version of the crate it is used in; `None` (the default of a
    /// hand-written `main`) reports [`crate::micro::DEFAULT_VERSION`].
    pub version: Option<String>,
    /// What the service's own code does on the bus besides its routes
    /// (publishes, requests, streams, ...), for its NATS permissions (see
    /// [`crate::permissions`]). `#[telestion::service(publishes = [...],
    /// ...)]` sets it.
    pub uses: crate::service::uses::Uses,
    /// The service's own default for `NATS_SUBSCRIPTION_CAPACITY` (see
    /// [`Options::subscription_capacity`]); `None`: 65,536 messages.
    pub subscription_capacity: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nats: true,
            config: None,
            signals: true,
            uses: crate::service::uses::Uses::new(),
            version: None,
            subscription_capacity: None,
        }
    }
}

impl Options {
    /// The defaults: load config from the process, connect to NATS, handle
    /// signals.
    pub fn new() -> Options {
        Options::default()
    }

    /// Enables or disables NATS (the no-NATS mode).
    pub fn nats(mut self, enabled: bool) -> Options {
        self.nats = enabled;
        self
    }

    /// Uses `config` instead of loading the process's configuration
    /// (required keys are still checked).
    pub fn config(mut self, config: Config) -> Options {
        self.config = Some(config);
        self
    }

    /// Whether the service handles SIGINT, SIGTERM and SIGHUP.
    pub fn signals(mut self, enabled: bool) -> Options {
        self.signals = enabled;
        self
    }

    /// The service's semantic version for discovery replies, usually
    /// `env!("CARGO_PKG_VERSION")` (what `#[telestion::service]` passes);
    /// `SERVICE_VERSION` in the configuration overrides it. A version that
    /// is not `MAJOR.MINOR.PATCH[-PRE][+BUILD]` fails the start.
    ///
    /// ```
    /// let options = telestion::Options::new().version(env!("CARGO_PKG_VERSION"));
    /// # let _ = options;
    /// ```
    pub fn version(mut self, version: impl Into<String>) -> Options {
        self.version = Some(version.into());
        self
    }

    /// The service's own default for `NATS_SUBSCRIPTION_CAPACITY`: how many
    /// messages each subscription buffers before the client drops further
    /// ones as a slow consumer (at least 1). The configuration key, when
    /// set, overrides it; without either it is 65,536.
    ///
    /// The buffer is counted in messages, so what it can hold is at most
    /// `capacity` times the largest message the server accepts
    /// (`max_payload`, 1 MiB by default) plus about 300 bytes per message
    /// for the client's bookkeeping. Raise it for a service whose messages
    /// are small and come in bursts faster than it handles them (the
    /// Standard Operations service takes 262,144 for log lines), and lower
    /// it for one whose messages may be large and may be skipped.
    /// `#[telestion::service(subscription_capacity = 262_144)]` sets it.
    ///
    /// ```
    /// let options = telestion::Options::new().subscription_capacity(262_144);
    /// assert_eq!(options.subscription_capacity, Some(262_144));
    /// ```
    pub fn subscription_capacity(mut self, messages: usize) -> Options {
        self.subscription_capacity = Some(messages.max(1));
        self
    }

    /// Declares a subject this service's own code publishes to (see
    /// [`Uses::publishes`](crate::service::uses::Uses::publishes)), for its
    /// NATS permissions (`--nats-permissions`).
    ///
    /// ```
    /// use telestion::Options;
    ///
    /// let options = Options::new()
    ///     .publishes("device.link")
    ///     .requests("telemetry.query.*")
    ///     .subscribes("telecommand.ack.*")
    ///     .streams("TELEMETRY_RAW")
    ///     .key_value("TELECOMMAND_IDS");
    /// # let _ = options;
    /// ```
    pub fn publishes(mut self, subject: impl Into<String>) -> Options {
        self.uses = self.uses.publishes(subject);
        self
    }

    /// Declares a subject this service's own code sends requests on.
    pub fn requests(mut self, subject: impl Into<String>) -> Options {
        self.uses = self.uses.requests(subject);
        self
    }

    /// Declares a subject this service's own code subscribes to by hand.
    pub fn subscribes(mut self, subject: impl Into<String>) -> Options {
        self.uses = self.uses.subscribes(subject);
        self
    }

    /// Declares a JetStream stream this service declares.
    pub fn streams(mut self, name: impl Into<String>) -> Options {
        self.uses = self.uses.streams(name);
        self
    }

    /// Declares a JetStream key-value bucket this service uses.
    pub fn key_value(mut self, bucket: impl Into<String>) -> Options {
        self.uses = self.uses.key_value(bucket);
        self
    }
}

fn invalid(key: &str, message: String) -> StartError {
    ConfigError::Invalid {
        key: Some(key.into()),
        message,
    }
    .into()
}

/// `SERVICE_NAME` names a queue group and a directory under `DATA_DIR`.
fn check_service_name(name: &str) -> Result<(), StartError> {
    const MAX: usize = 255;
    let problem = if name.len() > MAX {
        Some(format!(
            "it is {} bytes long; at most {MAX} are allowed",
            name.len()
        ))
    } else if name == "." || name == ".." {
        Some("`.` and `..` are not names".to_owned())
    } else {
        name.chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == '/' || *c == '\\')
            .map(|c| {
                format!(
                    "it contains {c:?}; a service name is a NATS queue group and a directory \
                     name, so it may not contain whitespace, control characters or path \
                     separators"
                )
            })
    };
    match problem {
        Some(problem) => Err(invalid(
            "SERVICE_NAME",
            format!("key SERVICE_NAME: {problem}"),
        )),
        None => Ok(()),
    }
}

/// Loads the configuration unless given; reading the file is blocking work.
async fn load_config(config: Option<Config>) -> Result<Config, StartError> {
    let config = match config {
        Some(config) => config,
        None => tokio::task::spawn_blocking(Config::load)
            .await
            .unwrap_or_else(|_| {
                Err(ConfigError::Invalid {
                    key: None,
                    message: "loading the configuration panicked".into(),
                })
            })?,
    };
    config.check_required()?;
    Ok(config)
}

impl Service {
    /// Installs the signal handlers (unless disabled), loads the
    /// configuration (unless given in `options`), checks the required keys,
    /// connects to NATS (unless disabled) within 10 s and starts the health
    /// replies. A signal during any of this ends the start with
    /// [`StartError::Interrupted`].
    pub async fn start(options: Options) -> Result<Service, StartError> {
        let mut signals = if options.signals {
            Some(Signals::install()?)
        } else {
            None
        };
        let early_signal = async {
            match &mut signals {
                Some(signals) => signals.next().await,
                None => std::future::pending().await,
            }
        };
        let prepared = tokio::select! {
            prepared = prepare(options) => prepared?,
            signal = early_signal => {
                return Err(StartError::Interrupted { signal: signal.name() });
            }
        };
        let service = Service {
            inner: Arc::new(prepared),
        };
        let instance = &service.inner.instance;
        if let Some(client) = &service.inner.client {
            let tasks =
                health::start(client, instance.clone())
                    .await
                    .map_err(|(subject, source)| StartError::Subscribe {
                        handler: "health".into(),
                        subject: subject.into(),
                        source,
                    })?;
            service.inner.lifecycle.add_health_tasks(tasks);
            let task = crate::observe::micro::start(client, instance)
                .await
                .map_err(|(subject, source)| StartError::Subscribe {
                    handler: "discovery".into(),
                    subject,
                    source,
                })?;
            service.inner.lifecycle.add_health_tasks(vec![task]);
            super::watchdog::start(&service);
        }
        if let Some(task) = crate::observe::metrics::start(service.config(), instance).await? {
            service.inner.lifecycle.add_health_tasks(vec![task]);
        }
        if let Some(signals) = signals {
            service.watch_signals(signals);
        }
        tracing::info!(
            name = %service.name(),
            id = %service.id(),
            nats = service.inner.client.is_some(),
            "service started"
        );
        Ok(service)
    }
}

async fn prepare(options: Options) -> Result<Inner, StartError> {
    let config = load_config(options.config).await?;
    config.check_utf8(&STANDARD_KEYS.map(|(key, _)| key))?;
    let name = config.get_str("SERVICE_NAME").unwrap_or_default();
    check_service_name(&name)?;
    let id = config
        .get_str("SERVICE_ID")
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| nuid::next().to_string());
    let version = match config.get_str("SERVICE_VERSION").filter(|v| !v.is_empty()) {
        Some(version) => version,
        None => options
            .version
            .unwrap_or_else(|| crate::observe::micro::DEFAULT_VERSION.to_owned()),
    };
    crate::observe::micro::check_version(&version)
        .map_err(|e| invalid("SERVICE_VERSION", format!("key SERVICE_VERSION: {e}")))?;
    let data_root = config.get_path("DATA_DIR")?.unwrap_or_else(PathBuf::new);
    let window = config
        .get::<u64>("HEALTH_ERROR_WINDOW")?
        .unwrap_or(DEFAULT_ERROR_WINDOW_SECS);
    if window == 0 {
        return Err(invalid(
            "HEALTH_ERROR_WINDOW",
            "key HEALTH_ERROR_WINDOW: must be at least 1 (seconds)".into(),
        ));
    }
    let shutdown_timeout = config
        .get::<f64>("SHUTDOWN_TIMEOUT")?
        .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_SECS as f64);
    if !(shutdown_timeout.is_finite() && shutdown_timeout > 0.0 && shutdown_timeout <= 86_400.0) {
        return Err(invalid(
            "SHUTDOWN_TIMEOUT",
            "key SHUTDOWN_TIMEOUT: must be a number of seconds above 0 and at most 86400".into(),
        ));
    }
    let errors = Arc::new(ErrorCounter::new(Duration::from_secs(window)));
    let connection = Arc::new(ConnectionWatch::default());
    let client = if options.nats {
        let capacity = options
            .subscription_capacity
            .unwrap_or(connect::DEFAULT_SUBSCRIPTION_CAPACITY);
        Some(connect::connect(&config, &name, capacity, errors.clone(), connection.clone()).await?)
    } else {
        None
    };
    let instance = Arc::new(Instance::new(name, id, version, errors, connection));
    if let Some(client) = &client {
        let _ = instance.client.set(client.clone());
    }
    Ok(Inner {
        config,
        instance,
        data_root,
        client,
        states: RwLock::new(state::StateMap::default()),
        lifecycle: Lifecycle::new(),
        data_dirs: data_dir::Created::default(),
        shutdown_timeout: Duration::from_secs_f64(shutdown_timeout),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        for ok in ["a", "standard_ops", "db-writer.1", "Ünïcode"] {
            assert!(check_service_name(ok).is_ok(), "{ok}");
        }
        for bad in ["..", ".", "a b", "a/b", "a\\b", "a\nb", &"x".repeat(256)] {
            let err = check_service_name(bad).unwrap_err().to_string();
            assert!(err.contains("SERVICE_NAME"), "{err}");
        }
    }
}
