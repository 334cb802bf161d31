//! The HTTP server: accepts connections, bounds them, serves each with
//! hyper.
//!
//! - At most `WEB_MAX_CONNECTIONS` (default 256) connections are served at
//!   once; a connection beyond that is accepted and closed at once (rather
//!   than left in the kernel's queue, where it would hold a descriptor and
//!   wait with no bound), and counted.
//! - A client must send a request's head within `WEB_HEADER_TIMEOUT`
//!   (default 10 s; also between requests on a kept-alive connection), or
//!   its connection is closed: half-sent requests cannot hold descriptors
//!   for longer than that. The body has the same time (see
//!   [`crate::guard::JsonBody`]).
//! - A live stream that falls behind closes its own connection
//!   ([`Kill`]).
//! - At shutdown no new connection is accepted, and open ones get up to
//!   5 s to finish their current request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use telestion::tokio;
use telestion::tokio::sync::{Notify, Semaphore};
use tower_service::Service as _;

/// How long a killed connection may take to send what it has.
const KILL_GRACE: Duration = Duration::from_secs(1);
/// How long open connections get at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Closes the connection a request came on (a request extension).
#[derive(Clone)]
pub struct Kill(Arc<Notify>);

impl Kill {
    /// Closes the connection within a second.
    pub fn close_soon(&self) {
        self.0.notify_one();
    }
}

/// Connection counts.
#[derive(Default)]
pub struct Counts {
    /// Connections closed at once because `WEB_MAX_CONNECTIONS` were open.
    pub refused: AtomicU64,
}

/// Serves `router` on `listener` until `stopped` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    max_connections: usize,
    header_timeout: Duration,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(max_connections));
    let counts = Counts::default();
    let (stop, _) = tokio::sync::watch::channel(false);
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: wait a little rather than spin.
                telestion::tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let refused = counts.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if refused.is_power_of_two() {
                telestion::tracing::warn!(
                    refused,
                    max_connections,
                    "connection closed at once: WEB_MAX_CONNECTIONS are open"
                );
            }
            drop(stream);
            continue;
        };
        let kill = Kill(Arc::new(Notify::new()));
        let router = router.clone();
        let conn_kill = kill.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(kill.clone());
            router.clone().call(request.map(axum::body::Body::new))
        });
        let mut stop = stop.subscribe();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = conn_kill.0.notified() => {
                    let _ = tokio::time::timeout(KILL_GRACE, connection.as_mut()).await;
                }
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection.as_mut()).await;
                }
            }
        });
    }
    stop.send_replace(true);
    // Wait for the open connections (each bounded by SHUTDOWN_GRACE).
    let _ = tokio::time::timeout(
        SHUTDOWN_GRACE + Duration::from_secs(1),
        permits.acquire_many(u32::try_from(max_connections).unwrap_or(u32::MAX)),
    )
    .await;
    Ok(())
}
