//! The stop signal and what reacts to it: `shutdown`, `stopped`, the signal
//! watcher (first signal drains, a second exits with 130), SIGHUP for
//! services that ask for it, and the tasks a drain waits for.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Inner, Service};
use crate::service::signals::{Signal, Signals};

/// The shared state of a service's life.
pub(crate) struct Lifecycle {
    stop: watch::Sender<bool>,
    hangup: watch::Sender<u64>,
    hangup_wanted: AtomicBool,
    health_tasks: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) route_tasks: Mutex<Vec<JoinHandle<()>>>,
    /// (subject, queue group) -> handler, to refuse conflicting routes.
    pub(crate) subscribed: Mutex<HashMap<(String, String), String>>,
    /// Something was not confirmed by the server while stopping (messages
    /// may be lost): the exit code says so.
    unconfirmed: AtomicBool,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Lifecycle {
    pub(crate) fn new() -> Lifecycle {
        Lifecycle {
            stop: watch::channel(false).0,
            hangup: watch::channel(0).0,
            hangup_wanted: AtomicBool::new(false),
            health_tasks: Mutex::new(Vec::new()),
            route_tasks: Mutex::new(Vec::new()),
            subscribed: Mutex::new(HashMap::new()),
            unconfirmed: AtomicBool::new(false),
        }
    }

    pub(crate) fn add_health_tasks(&self, tasks: Vec<JoinHandle<()>>) {
        lock(&self.health_tasks).extend(tasks);
    }

    pub(crate) fn take_health_tasks(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *lock(&self.health_tasks))
    }
}

/// SIGHUPs, for a service that reopens files or reloads on them (see
/// [`Service::hangups`]).
#[derive(Debug)]
pub struct Hangups {
    receiver: watch::Receiver<u64>,
}

impl Hangups {
    /// Waits for the next SIGHUP; `false` when the service is gone.
    pub async fn next(&mut self) -> bool {
        self.receiver.changed().await.is_ok()
    }

    /// How many SIGHUPs arrived since start.
    pub fn count(&self) -> u64 {
        *self.receiver.borrow()
    }
}

impl Service {
    /// Asks the service to shut down (as SIGTERM does).
    pub fn shutdown(&self) {
        self.inner.lifecycle.stop.send_replace(true);
    }

    /// Records that the server did not confirm something while the service
    /// stopped (a drain, a publish, an acknowledgement): messages may be
    /// lost, and [`Service::exit_code`] is
    /// [`exit_code::UNCONFIRMED`](crate::exit_code::UNCONFIRMED). The caller
    /// logs what it was.
    pub(crate) fn note_unconfirmed(&self) {
        self.inner
            .lifecycle
            .unconfirmed
            .store(true, Ordering::Relaxed);
    }

    /// The exit code for the way this service ended (see
    /// [`exit_code`](crate::exit_code)): [`CONNECTION_LOST`](crate::exit_code::CONNECTION_LOST)
    /// when the NATS connection was gone for good,
    /// [`UNCONFIRMED`](crate::exit_code::UNCONFIRMED) when the server did not
    /// confirm everything while it stopped, else
    /// [`SUCCESS`](crate::exit_code::SUCCESS). What the generated `main`
    /// returns; a hand-written one returns it too:
    ///
    /// ```no_run
    /// # async fn example(service: telestion::Service, routes: Vec<telestion::Route>)
    /// # -> Result<std::process::ExitCode, telestion::StartError> {
    /// service.serve(routes).await?;
    /// Ok(std::process::ExitCode::from(service.exit_code()))
    /// # }
    /// ```
    pub fn exit_code(&self) -> u8 {
        use crate::exit_code::{CONNECTION_LOST, SUCCESS, UNCONFIRMED};
        if self.connection_lost().is_some() {
            CONNECTION_LOST
        } else if self.inner.lifecycle.unconfirmed.load(Ordering::Relaxed) {
            UNCONFIRMED
        } else {
            SUCCESS
        }
    }

    /// Whether shutdown has been requested.
    pub fn is_stopping(&self) -> bool {
        *self.inner.lifecycle.stop.borrow()
    }

    /// Completes when shutdown has been requested; use it to end background
    /// loops started in `main`.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.inner.lifecycle.stop.subscribe();
        async move {
            let _ = receiver.wait_for(|stopping| *stopping).await;
        }
    }

    pub(crate) fn stop_receiver(&self) -> watch::Receiver<bool> {
        self.inner.lifecycle.stop.subscribe()
    }

    /// Takes over SIGHUP: from this call on, SIGHUP no longer drains the
    /// service (its default, like SIGTERM) but is reported here, for
    /// example to reopen log files after rotation. Call it in start-up
    /// code.
    ///
    /// ```no_run
    /// # async fn example(service: telestion::Service) {
    /// let mut hangups = service.hangups();
    /// tokio::spawn(async move {
    ///     while hangups.next().await {
    ///         println!("reopening files");
    ///     }
    /// });
    /// # }
    /// ```
    pub fn hangups(&self) -> Hangups {
        let lifecycle = &self.inner.lifecycle;
        lifecycle.hangup_wanted.store(true, Ordering::SeqCst);
        Hangups {
            receiver: lifecycle.hangup.subscribe(),
        }
    }

    /// Runs the signal watcher for the rest of the process: the first
    /// SIGINT/SIGTERM (or SIGHUP, unless taken over) starts the drain; a
    /// second one while stopping exits at once with code 130.
    pub(crate) fn watch_signals(&self, mut signals: Signals) {
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let signal = signals.next().await;
                let Some(inner) = inner.upgrade() else { return };
                let lifecycle = &inner.lifecycle;
                if signal == Signal::Hangup && lifecycle.hangup_wanted.load(Ordering::SeqCst) {
                    tracing::info!("SIGHUP received");
                    lifecycle.hangup.send_modify(|count| *count += 1);
                    continue;
                }
                if *lifecycle.stop.borrow() {
                    crate::observe::logging::write_stderr(&format!(
                        "received {} again while draining; exiting now\n",
                        signal.name()
                    ));
                    std::process::exit(crate::exit_code::SECOND_SIGNAL.into());
                }
                tracing::info!(signal = signal.name(), "received a stop signal");
                lifecycle.stop.send_replace(true);
            }
        });
    }
}
