//! Durable pipelines that heal and never lose data (issue 25, points 1-5),
//! against Debian's nats-server and the current release. Each test is a
//! fault found by testing the example backend as an operator would; each
//! doc comment names the old behaviour it fails on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use telestion::health::DurableHealth;
use telestion::{Durable, HandlerError, Route, Service, StreamSpec};

use crate::durable::{jetstream_server, server_binaries};
use crate::support::{self, NatsServer, TestService, WAIT, start_service};

/// The body of every message handled, in order.
#[derive(Clone, Default)]
struct Handled(Arc<std::sync::Mutex<Vec<String>>>);

impl Handled {
    fn push(&self, body: String) {
        self.0.lock().unwrap().push(body);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A helper service that declares stream `FAULTS` (`faults.>`) and
/// publishes durably.
async fn publisher(server: &NatsServer, dir: &std::path::Path) -> Service {
    let publisher = start_service(&server.url(), "publisher", dir, &[]).await;
    publisher
        .declare_stream(StreamSpec::new("FAULTS").subjects(["faults.>"]))
        .await
        .unwrap();
    publisher
}

/// The durable entry of `service`'s health report.
fn entry(service: &TestService) -> DurableHealth {
    service
        .service()
        .health()
        .durable
        .first()
        .cloned()
        .expect("a durable entry")
}

async fn wait_for(what: &str, limit: Duration, check: impl FnMut() -> bool) {
    support::eventually(limit, what, check).await;
}

/// Point 2: a transient failure (a full disk, say: 503) is retried in place,
/// for longer than the old five deliveries, while health shows the route
/// failing; once the cause is gone the message is handled once, in order,
/// and nothing is dead-lettered.
///
/// Old behaviour: retried five times (1, 5, 30 s back-off), then
/// dead-lettered; health showed nothing but the error count.
#[tokio::test(flavor = "multi_thread")]
async fn a_transient_failure_is_retried_until_it_passes() {
    for (label, bin) in server_binaries() {
        let server = jetstream_server(&bin);
        let data = tempfile::tempdir().unwrap();
        let publisher = publisher(&server, data.path()).await;
        let disk_full = Arc::new(AtomicBool::new(true));
        let tries = Arc::new(AtomicUsize::new(0));
        let handled = Handled::default();
        let route = {
            let (disk_full, tries, handled) = (disk_full.clone(), tries.clone(), handled.clone());
            Route::new("faults.store", move |body: String| {
                let (disk_full, tries, handled) =
                    (disk_full.clone(), tries.clone(), handled.clone());
                async move {
                    tries.fetch_add(1, Ordering::SeqCst);
                    if disk_full.load(Ordering::SeqCst) {
                        return Err(HandlerError::server("disk full").with_code(503));
                    }
                    handled.push(body);
                    Ok(())
                }
            })
            .name("store")
            .durable(Durable::new().backoff([Duration::from_millis(200)]))
        };
        let service = TestService::start(&server, "faults", vec![route]).await;
        publisher
            .publish_durable("faults.store", "first")
            .await
            .unwrap();
        publisher
            .publish_durable("faults.store", "second")
            .await
            .unwrap();
        wait_for("eight tries", WAIT, || tries.load(Ordering::SeqCst) >= 8).await;
        support::eventually(WAIT, "health says failing", || {
            let entry = entry(&service);
            entry.state == "failing" && entry.reason.contains("disk full")
        })
        .await;
        assert!(handled.all().is_empty(), "[{label}]");
        disk_full.store(false, Ordering::SeqCst);
        wait_for("both handled", WAIT, || handled.all().len() == 2).await;
        assert_eq!(
            handled.all(),
            ["first", "second"],
            "[{label}] in order, once"
        );
        support::eventually(WAIT, "health says consuming", || {
            entry(&service).state == "consuming"
        })
        .await;
        assert_eq!(entry(&service).dead_lettered, 0, "[{label}]");
        service.stop().await.unwrap();
    }
}

/// Point 2: a permanent failure (a 4xx code; a body an extractor rejects)
/// is dead-lettered at its first delivery, and the message behind it is
/// handled at once.
///
/// Old behaviour: the bad message was delivered five times with 1, 5 and
/// 30 s between, and at `concurrency = 1` every message behind it waited
/// about a minute.
#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_failure_is_dead_lettered_at_once() {
    for (label, bin) in server_binaries() {
        let server = jetstream_server(&bin);
        let data = tempfile::tempdir().unwrap();
        let publisher = publisher(&server, data.path()).await;
        let handled = Handled::default();
        let route = {
            let handled = handled.clone();
            Route::new("faults.parse", move |body: String| {
                let handled = handled.clone();
                async move {
                    if body == "garbage" {
                        return Err(HandlerError::client("not a frame").with_code(422));
                    }
                    handled.push(body);
                    Ok(())
                }
            })
            .name("parse")
            .durable(Durable::new())
        };
        let service = TestService::start(&server, "faults", vec![route]).await;
        let started = Instant::now();
        publisher
            .publish_durable("faults.parse", "garbage")
            .await
            .unwrap();
        publisher
            .publish_durable("faults.parse", "frame")
            .await
            .unwrap();
        wait_for("the frame handled", WAIT, || handled.all() == ["frame"]).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "[{label}] the frame waited {:?} behind the bad message",
            started.elapsed()
        );
        support::eventually(WAIT, "one dead letter", || {
            entry(&service).dead_lettered == 1
        })
        .await;
        let js = async_nats::jetstream::new(server.client().await);
        let dead = js
            .get_stream(telestion::durable::DEAD_LETTER_STREAM)
            .await
            .unwrap();
        let letter = dead.get_raw_message(1).await.unwrap();
        assert_eq!(&letter.payload[..], b"garbage", "[{label}]");
        let deliveries = letter
            .headers
            .get(telestion::dead_letter_headers::DELIVERIES)
            .map(|v| v.to_string());
        assert_eq!(deliveries.as_deref(), Some("1"), "[{label}]");
        service.stop().await.unwrap();
    }
}

/// Point 1: a dead letter that cannot be stored (its stream is gone) does
/// not lose the message: it is handed back and given up again later, and
/// once the dead-letter stream is back the dead letter is stored.
///
/// Old behaviour: the dead letter was published to a subject no stream
/// captured and the message terminated: gone for good.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_that_cannot_be_stored_keeps_the_message() {
    for (label, bin) in server_binaries() {
        let server = jetstream_server(&bin);
        let data = tempfile::tempdir().unwrap();
        let publisher = publisher(&server, data.path()).await;
        let route = Route::new("faults.reject", |_: String| async {
            Err::<(), _>(HandlerError::client("never"))
        })
        .name("reject")
        .durable(Durable::new().backoff([Duration::from_millis(300)]));
        let service = TestService::start(&server, "faults", vec![route]).await;
        let js = async_nats::jetstream::new(server.client().await);
        js.delete_stream(telestion::durable::DEAD_LETTER_STREAM)
            .await
            .unwrap();
        // A stream that refuses every dead letter (too small, new messages
        // discarded) takes its place: the dead letter cannot be stored,
        // and (unlike a missing stream) the service cannot heal it by
        // declaring its own dead-letter stream again.
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "REFUSES_DEAD_LETTERS".into(),
            subjects: vec!["telestion.dead.>".into()],
            max_bytes: 16,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .unwrap();
        publisher
            .publish_durable("faults.reject", "keep me")
            .await
            .unwrap();
        // Given up (twice or more), but never terminated.
        wait_for("given up at least twice", WAIT, || {
            service.service().error_counter().total() >= 2
        })
        .await;
        assert_eq!(entry(&service).dead_lettered, 0, "[{label}]");
        // The dead-letter stream comes back (as the service declared it).
        js.delete_stream("REFUSES_DEAD_LETTERS").await.unwrap();
        publisher
            .declare_stream(
                StreamSpec::new(telestion::durable::DEAD_LETTER_STREAM)
                    .subjects(["telestion.dead.>"]),
            )
            .await
            .unwrap();
        support::eventually(WAIT, "the dead letter stored", || {
            entry(&service).dead_lettered == 1
        })
        .await;
        let dead = js
            .get_stream(telestion::durable::DEAD_LETTER_STREAM)
            .await
            .unwrap();
        let letter = dead.get_raw_message(1).await.unwrap();
        assert_eq!(&letter.payload[..], b"keep me", "[{label}]");
        service.stop().await.unwrap();
    }
}

/// Point 4: a durable consumer deleted by hand is created again within
/// seconds, the route resumes, and the event is counted as an error.
///
/// Old behaviour: one "Consumer Deleted; retrying" line, then the route
/// never consumed again while health showed 0 errors and 0 pending.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_consumer_is_created_again() {
    for (label, bin) in server_binaries() {
        let server = jetstream_server(&bin);
        let data = tempfile::tempdir().unwrap();
        let publisher = publisher(&server, data.path()).await;
        let handled = Handled::default();
        let route = {
            let handled = handled.clone();
            Route::new("faults.raw", move |body: String| {
                let handled = handled.clone();
                async move { handled.push(body) }
            })
            .name("raw")
            .durable(Durable::new())
        };
        let service = TestService::start(&server, "faults", vec![route]).await;
        publisher
            .publish_durable("faults.raw", "before")
            .await
            .unwrap();
        wait_for("the first handled", WAIT, || handled.all().len() == 1).await;
        let client = server.client().await;
        let deleted = client
            .request("$JS.API.CONSUMER.DELETE.FAULTS.faults_raw", "".into())
            .await
            .unwrap();
        assert!(
            String::from_utf8_lossy(&deleted.payload).contains("\"success\":true"),
            "[{label}] {:?}",
            deleted.payload
        );
        for n in 0..5 {
            publisher
                .publish_durable("faults.raw", format!("after-{n}"))
                .await
                .unwrap();
        }
        let started = Instant::now();
        let after = |all: &[String]| -> Vec<String> {
            all.iter()
                .filter(|b| b.starts_with("after"))
                .cloned()
                .collect()
        };
        wait_for("the rest handled", WAIT, || {
            after(&handled.all()).len() >= 5
        })
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "[{label}] resumed after {:?}",
            started.elapsed()
        );
        // The new consumer starts after what was acknowledged: each message
        // published since is handled once, in order (the last one or two
        // acknowledged before the deletion may come again: at least once).
        let expected: Vec<String> = (0..5).map(|n| format!("after-{n}")).collect();
        assert_eq!(after(&handled.all()), expected, "[{label}]");
        assert!(service.service().error_counter().total() >= 1, "[{label}]");
        service.stop().await.unwrap();
    }
}

/// Point 4: a server that comes back with an empty store: the service
/// declares its streams again and creates its consumer again; the flow
/// resumes.
///
/// Old behaviour: nothing was declared again; every route and publish
/// failed until each service was restarted by hand.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_back_with_an_empty_store_is_recovered() {
    for (label, bin) in server_binaries() {
        let mut server = jetstream_server(&bin);
        let data = tempfile::tempdir().unwrap();
        let handled = Handled::default();
        let route = {
            let handled = handled.clone();
            Route::new("faults.raw", move |body: String| {
                let handled = handled.clone();
                async move { handled.push(body) }
            })
            .name("raw")
            .durable(Durable::new())
        };
        // The service declares the stream itself (as the example backend's
        // services do), before its routes.
        let config = support::service_config(&server.url(), "faults", data.path(), &[]);
        let service = Service::start(telestion::Options::new().config(config).signals(false))
            .await
            .unwrap();
        service
            .declare_stream(StreamSpec::new("FAULTS").subjects(["faults.>"]))
            .await
            .unwrap();
        service.subscribe(route).await.unwrap();
        service
            .publish_durable("faults.raw", "before")
            .await
            .unwrap();
        wait_for("the first handled", WAIT, || handled.all().len() == 1).await;

        // A service that only publishes durably (as the IO service does)
        // and declares the stream it publishes to.
        let io_config = support::service_config(&server.url(), "io", data.path(), &[]);
        let io = Service::start(telestion::Options::new().config(io_config).signals(false))
            .await
            .unwrap();
        io.declare_stream(StreamSpec::new("RAW").subjects(["raw.>"]))
            .await
            .unwrap();

        server.stop();
        std::fs::remove_dir_all(server.dir().join("jetstream")).unwrap();
        server.restart();
        wait_for("both services connected again", WAIT, || {
            service.is_connected() && io.is_connected()
        })
        .await;
        // Its first publish declares its stream again and is stored.
        let stored = io.publish_durable("raw.frame", "frame").await;
        assert!(stored.is_ok(), "[{label}] {stored:?}");
        // The consuming service declared its stream again and created its
        // consumer again (its publishes are stored, and handled).
        support::eventually_async(WAIT, "a durable publish is stored again", || async {
            service.publish_durable("faults.raw", "after").await.is_ok()
        })
        .await;
        wait_for("the flow resumed", WAIT, || {
            handled.all().iter().any(|body| body == "after")
        })
        .await;
        assert!(service.error_counter().total() >= 1, "[{label}]");
        for service in [service, io] {
            service.shutdown();
            service.drain().await;
        }
    }
}

/// Point 4 and 5: a route bound to a stream it does not own: when the
/// stream is gone, health says the route is failing and why, and
/// `health --check` fails; the route keeps looking and resumes when the
/// stream is back.
///
/// Old behaviour: the route pulled nothing, silently, and health and
/// `--check` said all was well.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_the_service_does_not_own_is_reported_until_it_is_back() {
    for (label, bin) in server_binaries() {
        let server = jetstream_server(&bin);
        let data = tempfile::tempdir().unwrap();
        let publisher = publisher(&server, data.path()).await;
        let handled = Handled::default();
        let route = {
            let handled = handled.clone();
            Route::new("faults.raw", move |body: String| {
                let handled = handled.clone();
                async move { handled.push(body) }
            })
            .name("raw")
            .durable(Durable::new().stream("FAULTS"))
        };
        let service = TestService::start(&server, "faults", vec![route]).await;
        let js = async_nats::jetstream::new(server.client().await);
        js.delete_stream("FAULTS").await.unwrap();
        support::eventually(WAIT, "health says failing", || {
            let entry = entry(&service);
            entry.state == "failing" && entry.reason.contains("FAULTS")
        })
        .await;
        let mut check = support::clean_command(support::workspace_binary("health", "health"));
        check
            .env("NATS_URL", server.url())
            .env("SERVICE_NAME", "health-check")
            .env("DATA_DIR", data.path())
            .arg("--check");
        let output = tokio::task::block_in_place(|| support::run_with_timeout(check, WAIT));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(3), "[{label}] {stdout}");
        assert!(stdout.contains("failing"), "[{label}] {stdout}");

        // The stream's owner comes back.
        publisher
            .declare_stream(StreamSpec::new("FAULTS").subjects(["faults.>"]))
            .await
            .unwrap();
        publisher
            .publish_durable("faults.raw", "back")
            .await
            .unwrap();
        wait_for("the route resumed", Duration::from_secs(60), || {
            handled.all() == ["back"]
        })
        .await;
        support::eventually(WAIT, "health says consuming", || {
            entry(&service).state == "consuming"
        })
        .await;
        service.stop().await.unwrap();
    }
}
