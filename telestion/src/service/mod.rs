//! The [`Service`] handle: identity, config, the NATS client, shared state,
//! publish/request, the data directory and the stop signal. Subscribing and
//! serving routes is in `serve.rs`, one layer up.

pub(crate) mod connect;
mod data_dir;
mod lifecycle;
mod publish;
pub(crate) mod signals;
mod start;
mod state;
pub(crate) mod uses;
mod watchdog;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::Config;
use crate::error::ServiceError;
use crate::observe::error_counter::ErrorCounter;
use crate::observe::instance::Instance;

pub use lifecycle::Hangups;
pub(crate) use lifecycle::Lifecycle;
pub use start::Options;
pub(crate) use start::STANDARD_KEYS;

/// A running Telestion service. Cheap to clone (an `Arc`).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let service = telestion::Service::start(telestion::Options::new()).await?;
/// println!("{} ({}) is up", service.name(), service.id());
/// service.publish("greetings", "hello").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Service {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    /// Identity, counters and statistics, shared with the observers.
    pub(crate) instance: Arc<Instance>,
    pub(crate) data_root: PathBuf,
    pub(crate) client: Option<async_nats::Client>,
    pub(crate) states: RwLock<state::StateMap>,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) data_dirs: data_dir::Created,
    pub(crate) shutdown_timeout: Duration,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.inner.instance.name)
            .field("id", &self.inner.instance.id)
            .field("nats", &self.inner.client.is_some())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Service {
    /// `SERVICE_NAME`.
    pub fn name(&self) -> &str {
        &self.inner.instance.name
    }

    /// The instance id: `SERVICE_ID` when set, else a NUID generated at
    /// start (unique across processes and containers).
    pub fn id(&self) -> &str {
        &self.inner.instance.id
    }

    /// The semantic version reported in discovery replies
    /// (`SERVICE_VERSION`, else [`Options::version`], else
    /// [`crate::micro::DEFAULT_VERSION`]).
    pub fn version(&self) -> &str {
        &self.inner.instance.version
    }

    /// The merged configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The NATS client, or `None` in no-NATS mode.
    pub fn client(&self) -> Option<&async_nats::Client> {
        self.inner.client.as_ref()
    }

    /// The NATS client, or an error in no-NATS mode.
    pub fn nats(&self) -> Result<&async_nats::Client, ServiceError> {
        self.inner
            .client
            .as_ref()
            .ok_or(ServiceError::NoNats("use"))
    }

    /// Whether the client is connected right now (never again once the
    /// connection is gone for good, see [`Service::connection_lost`]).
    pub fn is_connected(&self) -> bool {
        self.inner.instance.is_connected()
    }

    /// Why the NATS connection is gone for good, once it is: the client's
    /// connection task ended (it was closed, or failed), or the server
    /// rejected the service's credentials and did not accept them again
    /// within 5 s. The service then stops, and exits with
    /// [`exit_code::CONNECTION_LOST`](crate::exit_code::CONNECTION_LOST).
    pub fn connection_lost(&self) -> Option<&str> {
        self.inner.instance.connection.lost()
    }

    /// How often the NATS connection dropped since start (each drop is also
    /// counted as an error in health).
    pub fn disconnects(&self) -> u64 {
        self.inner.instance.connection.disconnects()
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.inner.instance.started.elapsed()
    }

    /// The error counter behind the health replies.
    pub fn error_counter(&self) -> &ErrorCounter {
        &self.inner.instance.errors
    }

    /// Counts one error (reported in health as recent errors).
    pub fn record_error(&self) {
        self.inner.instance.errors.record();
    }

    /// What this instance would answer on the health subjects right now.
    pub fn health(&self) -> crate::observe::health::HealthReport {
        self.inner.instance.report()
    }

    /// How long a drain may take before the service stops waiting
    /// (`SHUTDOWN_TIMEOUT`, seconds, default 10).
    pub fn shutdown_timeout(&self) -> Duration {
        self.inner.shutdown_timeout
    }

    /// How long a drain waits for the server to confirm something:
    /// `SHUTDOWN_TIMEOUT`, or nothing once the connection is gone for good
    /// (no server will answer).
    pub(crate) fn server_wait(&self) -> Duration {
        if self.inner.instance.connection.lost().is_some() {
            Duration::ZERO
        } else {
            self.inner.shutdown_timeout
        }
    }
}
