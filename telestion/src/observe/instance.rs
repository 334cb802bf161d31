//! What the observers of a running instance read: its identity, its error
//! counter, the connection's condition, every route's statistics and every
//! durable route's consumer numbers. Owned by the service, shared with the
//! health responder, discovery and the metrics endpoint.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_nats::connection::State as ConnectionState;

use super::connection::ConnectionWatch;
use super::error_counter::ErrorCounter;
use super::health::{DurableHealth, HealthReport};
use super::stats::{HandlerStats, Observer};

/// One running instance, as its observers see it.
pub(crate) struct Instance {
    /// `SERVICE_NAME`.
    pub(crate) name: String,
    /// The instance id.
    pub(crate) id: String,
    /// The semantic version in discovery replies.
    pub(crate) version: String,
    /// When it started.
    pub(crate) started: Instant,
    /// Every error, in total and recently.
    pub(crate) errors: Arc<ErrorCounter>,
    /// The connection's condition.
    pub(crate) connection: Arc<ConnectionWatch>,
    /// The NATS client, once connected (none in no-NATS mode).
    pub(crate) client: OnceLock<async_nats::Client>,
    /// Told of every handled message (metrics), when set before serving.
    pub(crate) observer: OnceLock<Observer>,
    durable: Mutex<Vec<DurableHealth>>,
    handlers: Mutex<Vec<Arc<HandlerStats>>>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Instance {
    /// An instance with no routes yet.
    pub(crate) fn new(
        name: String,
        id: String,
        version: String,
        errors: Arc<ErrorCounter>,
        connection: Arc<ConnectionWatch>,
    ) -> Instance {
        Instance {
            name,
            id,
            version,
            started: Instant::now(),
            errors,
            connection,
            client: OnceLock::new(),
            observer: OnceLock::new(),
            durable: Mutex::new(Vec::new()),
            handlers: Mutex::new(Vec::new()),
        }
    }

    /// Connected right now, and the connection is not gone for good.
    pub(crate) fn is_connected(&self) -> bool {
        self.connection.lost().is_none()
            && self
                .client
                .get()
                .is_some_and(|c| c.connection_state() == ConnectionState::Connected)
    }

    /// The health report as of now.
    pub(crate) fn report(&self) -> HealthReport {
        HealthReport {
            errors: self.errors.recent(),
            service: self.id.clone(),
            name: self.name.clone(),
            errors_total: self.errors.total(),
            error_window_s: self.errors.window().as_secs(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            durable: lock(&self.durable).clone(),
        }
    }

    /// Adds a durable route's entry; returns its index.
    pub(crate) fn add_durable(&self, entry: DurableHealth) -> usize {
        let mut entries = lock(&self.durable);
        entries.push(entry);
        entries.len() - 1
    }

    /// Changes a durable route's entry.
    pub(crate) fn update_durable(&self, index: usize, change: impl FnOnce(&mut DurableHealth)) {
        if let Some(entry) = lock(&self.durable).get_mut(index) {
            change(entry);
        }
    }

    /// Adds a route's statistics (in subscription order).
    pub(crate) fn add_handler(&self, stats: Arc<HandlerStats>) {
        lock(&self.handlers).push(stats);
    }

    /// Every subscribed route's statistics, in subscription order.
    pub(crate) fn handlers(&self) -> Vec<Arc<HandlerStats>> {
        lock(&self.handlers).clone()
    }
}
