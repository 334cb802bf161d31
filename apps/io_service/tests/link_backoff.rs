//! The IO link backs off instead of spinning (issue 25, point 4): a link
//! that fails as soon as it is up is retried less and less often, up to
//! `LINK_BACKOFF_MAX`, whether the device closes every connection at once
//! or the telemetry it sends cannot be stored (the `TELEMETRY_RAW` stream
//! deleted; against Debian's `nats-server` and the current release). Once
//! storing works again, the flow resumes.
//!
//! Old behaviour: every successful connection reset the back-off to 100
//! ms, so a link that failed right after connecting was retried about ten
//! times a second (576 connections while no stream captured
//! `telemetry.raw`).

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use backend_tests::Backend;
use telestion_test::{WAIT, eventually_async};

/// How long the connections are counted.
const OBSERVE: Duration = Duration::from_secs(7);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_drops_every_connection_is_retried_less_and_less_often() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut backend = Backend::start_with(10, &[], Vec::new());
    backend.device_addr = listener.local_addr().unwrap().to_string();
    // Accepts and closes every connection; notes when each came.
    let counter = std::thread::spawn(move || {
        let started = Instant::now();
        let mut times: Vec<Instant> = Vec::new();
        while started.elapsed() < WAIT && times.first().is_none_or(|t| t.elapsed() < OBSERVE) {
            match listener.accept() {
                Ok((stream, _)) => {
                    times.push(Instant::now());
                    drop(stream);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("accept failed: {e}"),
            }
        }
        times
    });
    backend.start_service("io_service");
    let times = tokio::task::spawn_blocking(move || counter.join().unwrap())
        .await
        .unwrap();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 3, "the IO service stopped trying: {gaps:?}");
    assert!(
        times.len() <= 10,
        "{} connections in {OBSERVE:?} (gaps {gaps:?}): the link spins",
        times.len()
    );
    assert!(
        gaps.last()
            .is_some_and(|gap| *gap >= Duration::from_secs(1)),
        "the back-off does not grow: {gaps:?}"
    );
    for pair in gaps.windows(2) {
        assert!(pair[1] * 10 >= pair[0] * 8, "the back-off shrank: {gaps:?}");
    }
    assert!(backend.service("io_service").is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstorable_telemetry_does_not_make_the_link_spin_on_debians_nats_server() {
    let (_, binary) = backend_tests::server_binaries().swap_remove(0);
    unstorable_telemetry_does_not_make_the_link_spin(&binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstorable_telemetry_does_not_make_the_link_spin_on_the_current_nats_server() {
    let (_, binary) = backend_tests::server_binaries().swap_remove(1);
    unstorable_telemetry_does_not_make_the_link_spin(&binary).await;
}

async fn stored(js: &jetstream::Context) -> u64 {
    match js.get_stream("TELEMETRY_RAW").await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

async fn unstorable_telemetry_does_not_make_the_link_spin(server: &Path) {
    let backend = Backend::start_on(
        telestion_test::ServerOptions::new().binary(server),
        50,
        &["io_service"],
        Vec::new(),
    );
    let client = backend.server.client().await;
    let js = jetstream::new(client.clone());
    eventually_async(WAIT, "telemetry stored", || async {
        stored(&js).await >= 20
    })
    .await;

    // Telemetry cannot be stored any more: a stream that refuses every
    // frame (too small, new messages discarded) takes TELEMETRY_RAW's
    // place (a deleted stream alone the service would declare again), so
    // every connection fails at its first frame.
    js.delete_stream("TELEMETRY_RAW").await.unwrap();
    js.create_stream(jetstream::stream::Config {
        name: "REFUSES_TELEMETRY".into(),
        subjects: vec!["telemetry.raw".into()],
        max_bytes: 16,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .unwrap();
    // A durable publish keeps trying for a while (the stream may get room
    // again) before the frame counts as unstorable and the link goes down.
    let deadline = std::time::Instant::now() + 2 * WAIT;
    while !backend.services["io_service"]
        .stderr()
        .contains("device link down")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the link never went down:\n{}",
            backend.services["io_service"].stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = backend.device_stat("connections");
    tokio::time::sleep(OBSERVE).await;
    let during = backend.device_stat("connections") - before;
    assert!(
        during <= 10,
        "{during} connections in {OBSERVE:?} while telemetry could not be stored: the link spins"
    );

    // Storable again: the flow resumes (within the back-off).
    js.delete_stream("REFUSES_TELEMETRY").await.unwrap();
    js.get_or_create_stream(jetstream::stream::Config {
        name: "TELEMETRY_RAW".into(),
        subjects: vec!["telemetry.raw".into()],
        max_age: Duration::from_secs(3600),
        max_bytes: 1 << 30,
        ..Default::default()
    })
    .await
    .unwrap();
    eventually_async(WAIT, "telemetry stored again", || async {
        stored(&js).await >= 20
    })
    .await;
}
