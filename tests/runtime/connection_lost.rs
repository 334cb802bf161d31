//! No zombie services (issue 23, point 3): when the NATS connection is
//! gone for good, the service notices within seconds, logs the cause,
//! stops claiming it is connected (health, metrics, `is_connected`), and
//! exits with `exit_code::CONNECTION_LOST` (4) so a restart policy brings
//! it back.
//!
//! Old behaviour: the process kept running deaf (async-nats 0.51's
//! connection task had panicked on a hostile header; `telestion_connected`
//! still said 1), or, with its credentials revoked, kept reconnecting in
//! vain forever, exit code 0 only when an operator noticed and stopped it.

use std::time::{Duration, Instant};

use crate::faults::fixture;
use crate::metrics::{metrics_addr, scrape, value};
use crate::start_service;
use crate::support::{self, NatsServer, ServerOptions};

/// The operator rotates the service's password on the server (a config
/// reload): the server drops the connection and refuses every reconnect.
/// The service says why and exits 4 within seconds.
#[test]
fn credentials_revoked_for_good_exit_4() {
    let mut server = NatsServer::start_with(ServerOptions::new().auth("svc", "before"));
    let data = tempfile::tempdir().unwrap();
    let mut cmd = fixture(&server.url(), "revoked", data.path());
    cmd.env("NATS_USER", "svc").env("NATS_PASSWORD", "before");
    let mut process = support::spawn_ready(cmd);
    server.reload_with(ServerOptions::new().auth("svc", "rotated"));
    let started = Instant::now();
    let code = process.wait_exit(Duration::from_secs(30));
    let stderr = process.stderr();
    assert_eq!(
        code,
        Some(telestion::exit_code::CONNECTION_LOST.into()),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("rejected this service's credentials") && stderr.contains("gone for good"),
        "the cause is not logged; stderr:\n{stderr}"
    );
    // The grace for a server that changes its mind (5 s) plus the drain,
    // which does not wait for a server that will not answer.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}; stderr:\n{stderr}",
        started.elapsed()
    );
}

/// Something closes the client under the service (here: a library in the
/// service drains it): the client's connection task ends, and the service
/// notices: `is_connected` and the metrics say 0, it stops, and its exit
/// code is 4.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_client_stops_the_service() {
    let server = NatsServer::start();
    let addr = metrics_addr();
    let service = start_service(&server.url(), "closed", &[("METRICS_ADDR", &addr)]).await;
    let connected = value(&scrape(&addr).await, "telestion_connected", &[]);
    assert_eq!(connected, Some(1.0));

    service.nats().unwrap().drain().await.unwrap();
    support::eventually(Duration::from_secs(10), "the service notices", || {
        service.connection_lost().is_some() && service.is_stopping()
    })
    .await;
    assert!(!service.is_connected());
    let connected = value(&scrape(&addr).await, "telestion_connected", &[]);
    assert_eq!(connected, Some(0.0), "metrics still claim a connection");
    let started = Instant::now();
    service.drain().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the drain waited {:?} for a server that cannot answer",
        started.elapsed()
    );
    assert_eq!(service.exit_code(), telestion::exit_code::CONNECTION_LOST);
}
