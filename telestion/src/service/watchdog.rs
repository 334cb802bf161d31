//! The connection watchdog: notices within seconds when the NATS
//! connection is gone for good (the client's connection task ended, or the
//! server keeps rejecting the credentials), logs the cause, counts it, and
//! stops the service, which then exits with
//! [`exit_code::CONNECTION_LOST`](crate::exit_code::CONNECTION_LOST): no
//! service runs on deaf while its health and metrics say all is well.

use std::sync::Arc;

use async_nats::connection::State as ConnectionState;

use super::Service;
use crate::error::error_chain;
use crate::observe::connection::{ConnectionWatch, REJECTED_GRACE, WATCH_INTERVAL};

/// Starts the watchdog of `service`; it ends with the service (it is one of
/// the tasks a drain stops last).
pub(super) fn start(service: &Service) {
    let Some(client) = service.inner.client.clone() else {
        return;
    };
    let watch = service.inner.instance.connection.clone();
    let weak = Arc::downgrade(&service.inner);
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            if watch.lost().is_none()
                && let Some(cause) = probe(&client, &watch).await
            {
                watch.mark_lost(cause);
            }
            let Some(cause) = watch.lost() else { continue };
            let Some(inner) = weak.upgrade() else { return };
            inner.instance.errors.record();
            tracing::error!(
                %cause,
                "the NATS connection is gone for good; stopping the service (exit code {}) so \
                 that its restart policy starts it again",
                crate::exit_code::CONNECTION_LOST
            );
            Service { inner }.shutdown();
            return;
        }
    });
    service.inner.lifecycle.add_health_tasks(vec![task]);
}

/// Why the connection is gone for good, if it is: the client's connection
/// task no longer takes commands (it ended: closed, or failed), or the
/// server rejected the credentials and has not accepted them again within
/// [`REJECTED_GRACE`].
async fn probe(client: &async_nats::Client, watch: &ConnectionWatch) -> Option<String> {
    // A flush goes through the connection task's command channel: it fails
    // at once when the task is gone. While disconnected, or very busy, it
    // merely waits (a timeout here means nothing).
    if let Ok(Err(error)) = tokio::time::timeout(WATCH_INTERVAL * 2, client.flush()).await {
        return Some(format!(
            "the NATS client's connection task has ended: {}",
            error_chain(&error)
        ));
    }
    match watch.rejected_for() {
        Some(rejected) if rejected >= REJECTED_GRACE => {
            (client.connection_state() != ConnectionState::Connected).then(|| {
                format!(
                    "the NATS server rejected this service's credentials (authorization \
                     violation) and has not accepted them again for {} s",
                    REJECTED_GRACE.as_secs()
                )
            })
        }
        _ => None,
    }
}
