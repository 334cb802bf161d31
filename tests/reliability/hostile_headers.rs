//! Hostile header blocks are ordinary bad input (issue 23, point 2): a raw
//! publisher sends every block of `hostile_header_blocks()` (a CR, an LF
//! and a NUL in a value, a 64 KiB value, 1,000 headers, no version line,
//! non-UTF-8 bytes in a name and a value, header lengths that lie) to a
//! core handler, a request/reply handler, a batch handler and a durable
//! handler (through its stream). After each, the service still answers
//! health, `$SRV.PING` and a normal message on the same subject; the bad
//! message was handled or counted as an error (async-nats drops the
//! connection on a block it cannot read, and every disconnect is counted);
//! a durable one was handled or dead-lettered, and the consumer has nothing
//! left pending: never redelivered forever.
//!
//! Old behaviour (async-nats 0.51): the CR panicked the client's connection
//! task, and the service was deaf from then on. With 0.52 and the old
//! runtime, the unreadable blocks dropped the connection without a count,
//! and the durable ones were redelivered forever (each delivery dropping
//! the connection again), stalling the consumer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use telestion::{Batch, Bytes, Durable, Route, StreamSpec};
use telestion_test::{
    RawPublisher, eventually_async, health_report, hostile_header_blocks, try_request_within,
};

use crate::durable::{jetstream_server, server_binaries};
use crate::support::{NatsServer, TestService, service_config};

const CORE: &str = "hostile.core";
const REQUEST: &str = "hostile.request";
const BATCH: &str = "hostile.batch";
const DURABLE: &str = "hostile.durable";
const DEAD: &str = "hostile.dead";
const LIMIT: Duration = Duration::from_secs(60);

/// The bodies each handler saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<BTreeMap<&'static str, BTreeSet<String>>>>);

impl Seen {
    fn add(&self, kind: &'static str, body: &[u8]) {
        let mut seen = self.0.lock().unwrap();
        seen.entry(kind)
            .or_default()
            .insert(String::from_utf8_lossy(body).into_owned());
    }

    /// Whether a body that contains `marker` was seen (a header length
    /// that lies moves bytes between header block and body).
    fn has(&self, kind: &'static str, marker: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .get(kind)
            .is_some_and(|bodies| bodies.iter().any(|body| body.contains(marker)))
    }
}

fn routes(seen: &Seen) -> Vec<Route> {
    let core = seen.clone();
    let request = seen.clone();
    let batch = seen.clone();
    let durable = seen.clone();
    vec![
        Route::new(CORE, move |body: Bytes| {
            let seen = core.clone();
            async move { seen.add("core", &body) }
        }),
        Route::new(REQUEST, move |body: Bytes| {
            let seen = request.clone();
            async move {
                seen.add("request", &body);
                format!("got {}", String::from_utf8_lossy(&body))
            }
        }),
        Route::new(BATCH, move |bodies: Batch<Bytes>| {
            let seen = batch.clone();
            async move {
                for body in bodies {
                    seen.add("batch", &body);
                }
            }
        })
        .batch(10, Duration::from_millis(20))
        .name("batch"),
        Route::new(DURABLE, move |body: Bytes| {
            let seen = durable.clone();
            async move { seen.add("durable", &body) }
        })
        .durable(
            Durable::new()
                .ack_wait(Duration::from_secs(1))
                .max_deliver(2)
                .backoff([Duration::ZERO])
                .dead_letter(DEAD),
        )
        .name("durable"),
    ]
}

async fn errors_total(client: &async_nats::Client) -> u64 {
    health_report(client, telestion::health::SUBJECT)
        .await
        .errors_total
}

/// Publishes `body` on `subject` until `handled` says it was handled
/// (a core message published while the service reconnects is lost: that
/// is what a core subject promises).
async fn until_handled(
    client: &async_nats::Client,
    subject: &str,
    body: &str,
    handled: impl Fn() -> bool,
) {
    eventually_async(LIMIT, &format!("{body} handled on {subject}"), || async {
        if handled() {
            return true;
        }
        client
            .publish(subject.to_owned(), body.to_owned().into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        handled()
    })
    .await;
}

async fn hostile_headers_against(bin: &Path) {
    telestion::init_logging();
    let server: NatsServer = jetstream_server(bin);
    let data = tempfile::tempdir().unwrap();
    let config = service_config(&server.url(), "hostile", data.path(), &[]);
    let seen = Seen::default();
    // The stream first: a durable route binds it when subscribed.
    let declare = telestion_test::start_service(&server.url(), "declare", data.path(), &[]).await;
    declare
        .declare_stream(StreamSpec::new("HOSTILE").subjects([DURABLE]))
        .await
        .unwrap();
    // Only the service under test answers health from here on.
    declare.drain().await;
    let service = TestService::start_with(config, routes(&seen))
        .await
        .unwrap_or_else(|e| panic!("{}", telestion::error_chain(&e)));
    let client = server.client().await;
    // Dead letters, as they come.
    let dead_letters = Seen::default();
    let mut dead = client.subscribe(DEAD).await.unwrap();
    let collector = dead_letters.clone();
    tokio::spawn(async move {
        while let Some(letter) = dead.next().await {
            collector.add("dead", &letter.payload);
        }
    });
    // The stream's answers to the raw durable publishes: refused ones never
    // reach the durable handler (JetStream takes header blocks up to 64 KiB).
    let refused = Seen::default();
    let mut stored = client.subscribe("hostile.stored.>").await.unwrap();
    let collector = refused.clone();
    tokio::spawn(async move {
        while let Some(answer) = stored.next().await {
            let body: serde_json::Value =
                serde_json::from_slice(&answer.payload).unwrap_or_default();
            if body.get("error").is_some() {
                let case = answer.subject.rsplit('.').next().unwrap_or_default();
                collector.add("refused", case.as_bytes());
            }
        }
    });
    client.flush().await.unwrap();
    let mut raw = RawPublisher::connect(&server);
    let mut outcomes = Vec::new();

    for case in hostile_header_blocks() {
        eprintln!("case {}", case.name);
        let before = errors_total(&client).await;
        let bad = |kind: &str| format!("bad-{}-{kind}", case.name);
        for (subject, kind) in [
            (CORE, "core"),
            (REQUEST, "request"),
            (BATCH, "batch"),
            (DURABLE, "durable"),
        ] {
            // The durable one asks for the stream's answer (stored or refused).
            let reply = match kind {
                "request" => Some(format!("hostile.replies.{}", case.name)),
                "durable" => Some(format!("hostile.stored.{}", case.name)),
                _ => None,
            };
            // A filler first: a header length that claims too much takes
            // body bytes into the header block, and only filler is taken.
            let body = format!("filler-filler-{}", bad(kind));
            raw.hpub(
                subject,
                reply.as_deref(),
                &case.block,
                body.as_bytes(),
                case.header_len,
            );
            raw.confirm();
        }

        // The service answers health and discovery again.
        eventually_async(LIMIT, "health and $SRV.PING answer", || async {
            let ping = try_request_within(&client, "$SRV.PING.hostile", "", Duration::from_secs(2))
                .await
                .is_ok();
            let health = try_request_within(
                &client,
                telestion::health::SUBJECT,
                "",
                Duration::from_secs(2),
            )
            .await
            .is_ok();
            ping && health
        })
        .await;
        // A normal message on each subject is handled.
        let good = |kind: &str| format!("good-{}-{kind}", case.name);
        until_handled(&client, CORE, &good("core"), || {
            seen.has("core", &good("core"))
        })
        .await;
        until_handled(&client, BATCH, &good("batch"), || {
            seen.has("batch", &good("batch"))
        })
        .await;
        let answer = eventually_request(&client, &good("request")).await;
        assert_eq!(answer, format!("got {}", good("request")));
        client
            .publish(DURABLE, good("durable").into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        eventually_async(LIMIT, "the durable good message handled", || async {
            seen.has("durable", &good("durable"))
        })
        .await;

        // The bad messages: handled, or counted as errors.
        let counted = errors_total(&client).await > before;
        for kind in ["core", "request", "batch"] {
            assert!(
                seen.has(kind, &bad(kind)) || counted,
                "{}: the bad {kind} message was neither handled nor counted",
                case.name
            );
        }
        // The durable one: handled or dead-lettered (from its stored copy).
        let durable_bad = bad("durable");
        eventually_async(
            LIMIT,
            "the bad durable message handled, dead-lettered or refused by the stream",
            || async {
                seen.has("durable", &durable_bad)
                    || dead_letters.has("dead", &durable_bad)
                    || refused.has("refused", case.name)
            },
        )
        .await;
        outcomes.push(format!(
            "{}: handled core {}, request {}, batch {}, durable {}; dead-lettered {}; refused by \
             the stream {}; counted {counted}",
            case.name,
            seen.has("core", &bad("core")),
            seen.has("request", &bad("request")),
            seen.has("batch", &bad("batch")),
            seen.has("durable", &durable_bad),
            dead_letters.has("dead", &durable_bad),
            refused.has("refused", case.name),
        ));
    }
    println!("{}", outcomes.join("\n"));

    // Nothing left for the durable consumer: no message redelivered forever.
    let js = async_nats::jetstream::new(client.clone());
    eventually_async(
        LIMIT,
        "the durable consumer has nothing pending",
        || async {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
                .get_consumer_from_stream("hostile_durable", "HOSTILE")
                .await
                .unwrap();
            let info = consumer.info().await.unwrap();
            info.num_ack_pending == 0 && info.num_pending == 0
        },
    )
    .await;
    service.stop().await.unwrap();
}

/// Requests `body` on the request subject until a reply comes.
async fn eventually_request(client: &async_nats::Client, body: &str) -> String {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Ok(reply) =
            try_request_within(client, REQUEST, body.to_owned(), Duration::from_secs(2)).await
        {
            return String::from_utf8_lossy(&reply.payload).into_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reply to {body} within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_headers_debian_server() {
    let (_, bin) = &server_binaries()[0];
    hostile_headers_against(bin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_headers_current_server() {
    let (_, bin) = &server_binaries()[1];
    hostile_headers_against(bin).await;
}
