//! Point 3, connection: server lists, reconnect after a server restart
//! (subscriptions kept, events logged), the no-NATS mode.

use std::time::{Duration, Instant};

use telestion::{Config, Options, Route, Service, ServiceError};

use crate::support::{self, NatsServer};
use crate::{request, run_testbed, start_by_hand, start_service, tmp_dir};

#[test]
fn several_servers_with_the_first_one_dead() {
    let server = NatsServer::start();
    let dead = support::free_port();
    let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_testbed"));
    cmd.env(
        "NATS_URL",
        format!("nats://127.0.0.1:{dead}, {}", server.addr()),
    )
    .env("SERVICE_NAME", "cluster")
    .env("DATA_DIR", tmp_dir());
    let (result, _) = run_testbed(cmd);
    assert_eq!(result["started"], true, "{result}");
    assert_eq!(result["nats_connected"], true, "{result}");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_servers_in_process_serve_requests() {
    let server = NatsServer::start();
    let dead = support::free_port();
    let url = format!("127.0.0.1:{dead},{}", server.url());
    let service = start_service(&url, "cluster", &[]).await;
    service
        .subscribe(Route::new("cluster.ping", || async { "pong" }))
        .await
        .unwrap();
    crate::settle(&service).await;
    let client = server.client().await;
    let reply = request(&client, "cluster.ping", "").await;
    assert_eq!(&reply.payload[..], b"pong");
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnects_after_a_server_restart_and_keeps_subscriptions() {
    let mut server = NatsServer::start();
    let client = server.client().await;
    let mut proc = start_by_hand(&server.url(), "phoenix", &[], &client).await;
    drop(client);

    server.restart();
    proc.wait_for_stderr("disconnected from NATS", Duration::from_secs(20));

    // A fresh client on the new server: only a resubscribed service answers.
    let client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_millis(500),
            client.request("byhand.echo", "[1,2]".into()),
        )
        .await;
        if let Ok(Ok(reply)) = attempt {
            assert_eq!(&reply.payload[..], b"[1,2]");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reply after the restart; stderr:\n{}",
            proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = support::health(&client, "__telestion__/health").await;
    assert_eq!(health["name"], "phoenix");

    // The reconnect is logged after the disconnect.
    let reconnect_logged = || {
        let stderr = proc.stderr();
        let gone = stderr.find("disconnected from NATS").unwrap();
        stderr[gone..].contains("connected to NATS")
    };
    support::eventually(
        Duration::from_secs(5),
        "a logged reconnect",
        reconnect_logged,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_nats_mode() {
    let config = Config::from_pairs([
        (
            "NATS_URL",
            format!("nats://127.0.0.1:{}", support::free_port()),
        ),
        ("SERVICE_NAME", "offline".to_string()),
        ("DATA_DIR", tmp_dir()),
    ]);
    let service = Service::start(Options::new().nats(false).config(config))
        .await
        .expect("no-NATS mode must not connect");
    assert!(service.client().is_none());
    assert!(!service.is_connected());
    assert!(matches!(
        service.publish("x", "y").await,
        Err(ServiceError::NoNats(_))
    ));
    let error = service
        .subscribe(Route::new("x", || async {}))
        .await
        .unwrap_err();
    let error = telestion::error_chain(&error);
    assert!(error.contains("no-NATS"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_failure_is_an_error_not_a_hang() {
    let config = Config::from_pairs([
        (
            "NATS_URL",
            format!("nats://127.0.0.1:{}", support::free_port()),
        ),
        ("SERVICE_NAME", "unreachable".to_string()),
        ("DATA_DIR", tmp_dir()),
    ]);
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        Service::start(Options::new().config(config)),
    )
    .await
    .expect("Service::start hung");
    let error = result.unwrap_err().to_string();
    assert!(error.contains("cannot connect to NATS"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(11));
}

/// `NATS_URL` lists 20 loopback ports where nothing listens, then one live
/// server: `Service::start` gets through the refused ones and connects, 5
/// times in a row, each well within the 10 s start limit (bound: 8 s).
///
/// Old behaviour: the reconnect back-off (100 ms doubling up to 2 s) began
/// after the first refused server, so a pass through the list took longer
/// than the start limit and the start failed at 10 s (the client tries the
/// servers in random order, hence several starts).
#[tokio::test(flavor = "multi_thread")]
async fn twenty_refused_servers_before_a_live_one_start_well_within_the_limit() {
    let server = NatsServer::start();
    let mut servers: Vec<String> = (0..20)
        .map(|_| format!("nats://127.0.0.1:{}", support::free_port()))
        .collect();
    servers.push(server.url());
    let url = servers.join(",");
    let data = tempfile::tempdir().unwrap();
    for round in 1..=5 {
        let config = support::service_config(&url, "patient", data.path(), &[]);
        let started = Instant::now();
        let service = tokio::time::timeout(
            Duration::from_secs(15),
            Service::start(Options::new().signals(false).config(config)),
        )
        .await
        .unwrap_or_else(|_| panic!("start {round}: Service::start hung"))
        .unwrap_or_else(|e| panic!("start {round} failed: {}", telestion::error_chain(&e)));
        let took = started.elapsed();
        assert!(took < Duration::from_secs(8), "start {round} took {took:?}");
        assert!(service.is_connected(), "start {round}");
        service.shutdown();
        service.drain().await;
    }
}
