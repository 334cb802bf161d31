//! The web service's HTTP side without a browser: the page, the live
//! stream, forwarded requests and their errors, the limits, and a clean
//! stop with a live stream open, for a signed-in operator (the NATS server
//! requires users, see `backend_tests::auth`).

use std::io::Read;
use std::time::{Duration, Instant};

use backend_tests::auth;
use backend_tests::http::{headers, live, login, request};
use telestion_test::{NatsServer, WAIT, service_command, spawn_ready};

/// A request as the signed-in operator's page sends it.
fn http(addr: &str, method: &str, path: &str, body: &str, cookie: &str) -> (u16, String) {
    let response = request(addr, method, path, &headers(addr, Some(cookie)), body);
    (response.status, response.body)
}

/// A frame as `telemetry_parser` publishes it.
const FRAME: &str = r#"{"session":1,"counter":7,"time_ms":5,"temperature_c":20.5,"voltage_v":3.3,"current_a":0.1,"status":1}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_live_stream_forwarding_limits_and_stop() {
    let server = NatsServer::start_with(auth::server_options());
    let data = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", telestion_test::free_port());
    let mut cmd = service_command(backend_tests::binary("web"), &server, "web", data.path());
    cmd.env("WEB_ADDR", &addr)
        .env("NATS_USER", auth::WEB.0)
        .env("NATS_PASSWORD", auth::WEB.1)
        .env("WEB_MAX_LIVE", "2")
        .env("WEB_REQUEST_TIMEOUT_MS", "1500");
    let mut web = spawn_ready(cmd);
    assert!(
        web.stderr()
            .contains(&format!("web page at http://{addr}/"))
    );

    let web_addr = addr.clone();
    let cookie =
        tokio::task::spawn_blocking(move || login(&web_addr, auth::OPERATOR.0, auth::OPERATOR.1))
            .await
            .unwrap();
    let (status, page) = http(&addr, "GET", "/", "", &cookie);
    assert_eq!(status, 200);
    assert!(page.contains("<title>Telestion example backend</title>"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "an external resource"
    );
    let (status, script) = http(&addr, "GET", "/app.js", "", &cookie);
    assert_eq!(status, 200);
    assert!(script.contains("new EventSource(\"/api/live\")"));

    // Nobody answers the queries yet: 503 with the reason.
    let (status, body) = http(&addr, "POST", "/api/query/count", "{}", &cookie);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no responders"), "{body}");
    let (status, body) = http(&addr, "POST", "/api/query/drop_table", "{}", &cookie);
    assert_eq!(status, 404, "{body}");
    let (status, _) = http(
        &addr,
        "POST",
        "/api/query/latest",
        &"x".repeat(20_000),
        &cookie,
    );
    assert_eq!(status, 413, "a body over 16 KiB");

    // A responder that never answers: 504 after WEB_REQUEST_TIMEOUT_MS.
    let client = auth::client(&server).await;
    let _silent = client.subscribe("telecommand.send").await.unwrap();
    client.flush().await.unwrap();
    let web_addr = addr.clone();
    let session = cookie.clone();
    let started = Instant::now();
    let (status, body) = tokio::task::spawn_blocking(move || {
        http(&web_addr, "POST", "/api/telecommand", "{}", &session)
    })
    .await
    .unwrap();
    assert_eq!(status, 504, "{body}");
    // A telecommand without an answer may still have been queued.
    assert!(body.contains("not confirmed, may still run"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // An error reply keeps its code.
    let mut queries = client.subscribe("telemetry.query.latest").await.unwrap();
    client.flush().await.unwrap();
    let responder = {
        let client = client.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            let request = queries.next().await.unwrap();
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Service-Error", "n must be 1..=1000, not 0");
            headers.insert("Nats-Service-Error-Code", "400");
            client
                .publish_with_headers(request.reply.unwrap(), headers, "".into())
                .await
                .unwrap();
            client.flush().await.unwrap();
        })
    };
    let web_addr = addr.clone();
    let session = cookie.clone();
    let (status, body) = tokio::task::spawn_blocking(move || {
        http(
            &web_addr,
            "POST",
            "/api/query/latest",
            r#"{"n":0}"#,
            &session,
        )
    })
    .await
    .unwrap();
    responder.await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("n must be 1..=1000"), "{body}");

    // The live stream: telemetry as it is published; not-JSON is dropped.
    let web_addr = addr.clone();
    let session = cookie.clone();
    let (mut first, second, third) = tokio::task::spawn_blocking(move || {
        let first = live(&web_addr, Some(&session));
        let second = live(&web_addr, Some(&session));
        let third = live(&web_addr, Some(&session));
        (first, second, third)
    })
    .await
    .unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 200);
    assert_eq!(third.status, 503, "WEB_MAX_LIVE is 2");
    drop(second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .publish("telemetry.parsed", "not json".into())
        .await
        .unwrap();
    client
        .publish("telemetry.parsed", FRAME.into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let event = tokio::task::spawn_blocking(move || {
        let event = first.next_event("telemetry");
        (event, first)
    })
    .await
    .unwrap();
    assert_eq!(event.0, FRAME);
    let mut first = event.1;
    // A closed stream frees its slot.
    let web_addr = addr.clone();
    let session = cookie.clone();
    let again = tokio::task::spawn_blocking(move || live(&web_addr, Some(&session)).status)
        .await
        .unwrap();
    assert_eq!(again, 200);

    // SIGTERM with a live stream open: the stream ends, the service exits 0.
    web.signal(libc::SIGTERM);
    let code = web.wait_exit(WAIT);
    assert_eq!(code, Some(0), "{}", web.stderr());
    let mut rest = String::new();
    let _ = first.reader.read_to_string(&mut rest);
}
