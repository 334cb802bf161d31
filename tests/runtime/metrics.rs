//! The Prometheus endpoint (`METRICS_ADDR`): scraped with a plain HTTP GET,
//! its exposition text parsed; handler counters and histograms, health's
//! error counts, a durable handler's consumer numbers; off by default; a
//! bad address fails the start naming the key.

use std::collections::BTreeMap;
use std::time::Duration;

use telestion::{Durable, Json, Route, StreamSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{self, NatsServer};
use crate::{request, start_service, tmp_dir};

/// `GET path` on `addr` over a fresh connection: (status, body).
async fn get(addr: &str, path: &str) -> (u16, String) {
    try_get(addr, path)
        .await
        .expect("the metrics endpoint answers within 5 s")
}

/// `GET path` on `addr`: (status, body), or `None` when the connection is
/// closed without an HTTP answer or none comes within 5 s.
async fn try_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        String::from_utf8(response).ok()
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()??;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// One sample of the exposition text: metric name, labels, value.
pub(crate) type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the Prometheus text format (the subset the endpoint writes).
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            value => value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect("labels end with }");
                let labels = rest
                    .split("\",")
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair.split_once("=\"").expect("key=\"value\"");
                        (key.to_owned(), value.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name, labels)
            }
        };
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

/// The value of the sample `name` whose labels include `labels`.
pub(crate) fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, value)| *value)
}

pub(crate) async fn scrape(addr: &str) -> Vec<Sample> {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

pub(crate) fn metrics_addr() -> String {
    format!("127.0.0.1:{}", support::free_port())
}

async fn ok(Json(x): Json<i64>) -> Json<i64> {
    Json(x + 1)
}

async fn fail(Json(x): Json<i64>) -> Result<(), String> {
    Err(format!("{x} is not welcome"))
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_messages_errors_and_handling_times() {
    let server = NatsServer::start();
    let addr = metrics_addr();
    let service = start_service(&server.url(), "metered", &[("METRICS_ADDR", &addr)]).await;
    let serving = service.clone();
    tokio::spawn(async move {
        serving
            .serve([
                Route::new("metered.ok", ok).name("ok"),
                Route::new("metered.fail", fail).name("fail"),
            ])
            .await
    });
    let client = server.client().await;
    // The routes are subscribed once `ok` answers.
    support::eventually_async(Duration::from_secs(10), "metered.ok answers", || {
        let client = client.clone();
        async move {
            tokio::time::timeout(
                Duration::from_millis(500),
                client.request("metered.ok", "0".into()),
            )
            .await
            .is_ok_and(|reply| reply.is_ok())
        }
    })
    .await;
    let before = scrape(&addr).await;
    let ok_before = value(
        &before,
        "telestion_handler_messages_total",
        &[("handler", "ok")],
    )
    .expect("the ok handler has a message counter");
    for i in 0..5 {
        let reply = request(&client, "metered.ok", i.to_string()).await;
        assert_eq!(&reply.payload[..], (i + 1).to_string().as_bytes());
    }
    for i in 0..3 {
        let reply = request(&client, "metered.fail", i.to_string()).await;
        assert!(support::error_header(&reply).is_some());
    }
    let samples = scrape(&addr).await;
    let ok_labels = [
        ("service", "metered"),
        ("handler", "ok"),
        ("subject", "metered.ok"),
        ("kind", "subscription"),
    ];
    let fail_labels = [("handler", "fail"), ("subject", "metered.fail")];
    assert_eq!(
        value(&samples, "telestion_handler_messages_total", &ok_labels),
        Some(ok_before + 5.0)
    );
    assert_eq!(
        value(&samples, "telestion_handler_errors_total", &ok_labels),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "telestion_handler_messages_total", &fail_labels),
        Some(3.0)
    );
    assert_eq!(
        value(&samples, "telestion_handler_errors_total", &fail_labels),
        Some(3.0)
    );
    // Every handled message is in its handler's histogram.
    assert_eq!(
        value(
            &samples,
            "telestion_handler_duration_seconds_count",
            &ok_labels
        ),
        Some(ok_before + 5.0)
    );
    assert_eq!(
        value(
            &samples,
            "telestion_handler_duration_seconds_count",
            &fail_labels
        ),
        Some(3.0)
    );
    let mut inf = fail_labels.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        value(&samples, "telestion_handler_duration_seconds_bucket", &inf),
        Some(3.0)
    );
    let sum = value(
        &samples,
        "telestion_handler_duration_seconds_sum",
        &fail_labels,
    )
    .unwrap();
    assert!(sum > 0.0 && sum < 5.0, "{sum}");
    // Health's error counts.
    let service_label = [("service", "metered")];
    assert_eq!(
        value(&samples, "telestion_errors_total", &service_label),
        Some(3.0)
    );
    assert_eq!(
        value(&samples, "telestion_errors_recent", &service_label),
        Some(3.0)
    );
    assert_eq!(
        value(&samples, "telestion_connected", &service_label),
        Some(1.0)
    );
    let uptime = value(&samples, "telestion_uptime_seconds", &service_label).unwrap();
    assert!(uptime > 0.0 && uptime < 60.0, "{uptime}");
    // Only GET /metrics.
    assert_eq!(get(&addr, "/").await.0, 404);
    service.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_what_is_not_a_scrape() {
    let server = NatsServer::start();
    let addr = metrics_addr();
    let service = start_service(&server.url(), "guarded", &[("METRICS_ADDR", &addr)]).await;
    // Oversized request head: refused, and the endpoint still answers.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = stream.write_all(huge.as_bytes()).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "an oversized request is answered or closed at once"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    // Silent connections beyond the limit are closed at once, and those
    // within it keep their slot for at most 10 s: a scrape gets through
    // while they are still open.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    support::eventually_async(
        Duration::from_secs(20),
        "a scrape beside idle connections",
        || {
            let addr = addr.clone();
            async move {
                try_get(&addr, "/metrics")
                    .await
                    .is_some_and(|(status, _)| status == 200)
            }
        },
    )
    .await;
    drop(idle);
    let (status, _) = {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
            .await
            .unwrap()
            .unwrap();
        let response = String::from_utf8_lossy(&response).into_owned();
        (response.lines().next().unwrap_or("").to_owned(), response)
    };
    assert!(status.contains("405"), "{status}");
    service.shutdown();
}

static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

async fn gated(Json(_job): Json<u64>) -> Result<(), String> {
    GATE.acquire().await.map_err(|e| e.to_string())?.forget();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn shows_a_durable_handlers_pending_messages() {
    let server = NatsServer::start_jetstream();
    let addr = metrics_addr();
    let service = start_service(&server.url(), "metered-jobs", &[("METRICS_ADDR", &addr)]).await;
    service
        .declare_stream(StreamSpec::new("MJOBS").subjects(["mjobs.>"]))
        .await
        .unwrap();
    let serving = service.clone();
    tokio::spawn(async move {
        serving
            .serve([Route::new("mjobs.>", gated)
                .name("gated")
                .durable(Durable::new().stream("MJOBS"))])
            .await
    });
    let client = server.client().await;
    let jetstream = async_nats::jetstream::new(client.clone());
    const JOBS: u64 = 150;
    for i in 0..JOBS {
        jetstream
            .publish("mjobs.work", i.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let labels = [("handler", "gated"), ("stream", "MJOBS")];
    // While the handler is stuck on its first message, everything is
    // either not yet delivered or delivered and unacknowledged.
    support::eventually_async(Duration::from_secs(15), "pending + ack_pending = all", || {
        let addr = addr.clone();
        async move {
            let samples = scrape(&addr).await;
            let pending = value(&samples, "telestion_durable_pending", &labels);
            let ack_pending = value(&samples, "telestion_durable_ack_pending", &labels);
            matches!((pending, ack_pending), (Some(p), Some(a)) if p + a == JOBS as f64 && a >= 1.0)
        }
    })
    .await;
    GATE.add_permits(JOBS as usize);
    support::eventually_async(Duration::from_secs(20), "every job handled", || {
        let addr = addr.clone();
        async move {
            let samples = scrape(&addr).await;
            value(
                &samples,
                "telestion_handler_messages_total",
                &[("handler", "gated"), ("kind", "durable")],
            ) == Some(JOBS as f64)
                && value(&samples, "telestion_durable_pending", &labels) == Some(0.0)
                && value(&samples, "telestion_durable_ack_pending", &labels) == Some(0.0)
        }
    })
    .await;
    let samples = scrape(&addr).await;
    assert_eq!(
        value(&samples, "telestion_durable_dead_lettered_total", &labels),
        Some(0.0)
    );
    service.shutdown();
}

/// The TCP ports process `pid` listens on (its sockets in LISTEN state).
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A = LISTEN, inode.
            if fields.len() > 9 && fields[3] == "0A" && inodes.iter().any(|i| i == fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

#[tokio::test(flavor = "multi_thread")]
async fn off_by_default() {
    let server = NatsServer::start();
    let client = server.client().await;
    let plain = crate::start_by_hand(&server.url(), "unmetered", &[], &client).await;
    assert_eq!(listening_ports(plain.pid()), Vec::<u16>::new());
    drop(plain);
    // The check itself sees the endpoint when there is one.
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let metered = crate::start_by_hand(
        &server.url(),
        "metered-proc",
        &[("METRICS_ADDR", &addr)],
        &client,
    )
    .await;
    assert_eq!(listening_ports(metered.pid()), vec![port]);
    let samples = scrape(&addr).await;
    assert!(
        value(
            &samples,
            "telestion_handler_messages_total",
            &[("handler", "echo")]
        )
        .is_some(),
        "{samples:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_address_fails_the_start_naming_it() {
    let server = NatsServer::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = listener.local_addr().unwrap().to_string();
    for bad in ["nonsense", "256.1.1.1:80", taken.as_str()] {
        let mut pairs = crate::base_pairs(&server.url(), "badly-metered");
        pairs.push(("METRICS_ADDR".into(), bad.into()));
        let error = telestion::Service::start(
            telestion::Options::new()
                .config(telestion::Config::from_pairs(pairs))
                .signals(false),
        )
        .await
        .expect_err(bad);
        let message = telestion::error_chain(&error);
        assert!(message.contains("METRICS_ADDR"), "{bad}: {message}");
        assert!(message.contains(bad), "{bad}: {message}");
    }
    // And from the command line of a whole service: exit 1, one line.
    let mut cmd =
        support::clean_command(support::workspace_example("telestion-examples", "by_hand"));
    cmd.env("NATS_URL", server.url())
        .env("SERVICE_NAME", "badly-metered")
        .env("DATA_DIR", tmp_dir())
        .env("METRICS_ADDR", &taken);
    let stderr = support::assert_start_fails_naming(cmd, "METRICS_ADDR");
    assert!(stderr.contains("cannot listen"), "{stderr}");
}
