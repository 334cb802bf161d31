//! The web service's HTTP side without a browser: the page, the live
//! stream, forwarded requests and their errors, the limits, and a clean
//! stop with a live stream open.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use telestion_test::{NatsServer, WAIT, service_command, spawn_ready};

/// One HTTP/1.1 request (`Connection: close`); the status and the body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("cannot connect to the web service");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Opens `/api/live`; returns the reader after the response head, and the
/// status.
fn live(addr: &str) -> (u16, BufReader<TcpStream>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET /api/live HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    (status, reader)
}

/// Reads the live stream until a `data:` line of event `event`.
fn next_event(reader: &mut BufReader<TcpStream>, event: &str) -> String {
    let deadline = Instant::now() + WAIT;
    let mut current = String::new();
    loop {
        assert!(Instant::now() < deadline, "no {event} event");
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended");
        let line = line.trim();
        if let Some(name) = line.strip_prefix("event:") {
            current = name.trim().to_owned();
        } else if let Some(data) = line.strip_prefix("data:")
            && current == event
        {
            return data.trim().to_owned();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_live_stream_forwarding_limits_and_stop() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", telestion_test::free_port());
    let mut cmd = service_command(backend_tests::binary("web"), &server, "web", data.path());
    cmd.env("WEB_ADDR", &addr)
        .env("WEB_MAX_LIVE", "2")
        .env("WEB_REQUEST_TIMEOUT_MS", "1500");
    let mut web = spawn_ready(cmd);
    assert!(
        web.stderr()
            .contains(&format!("web page at http://{addr}/"))
    );

    let (status, page) = http(&addr, "GET", "/", "");
    assert_eq!(status, 200);
    assert!(page.contains("<title>Telestion example backend</title>"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "an external resource"
    );
    let (status, script) = http(&addr, "GET", "/app.js", "");
    assert_eq!(status, 200);
    assert!(script.contains("new EventSource(\"/api/live\")"));

    // Nobody answers the queries yet: 503 with the reason.
    let (status, body) = http(&addr, "POST", "/api/query/count", "{}");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no responders"), "{body}");
    let (status, body) = http(&addr, "POST", "/api/query/drop_table", "{}");
    assert_eq!(status, 404, "{body}");
    let (status, _) = http(&addr, "POST", "/api/query/latest", &"x".repeat(20_000));
    assert_eq!(status, 413, "a body over 16 KiB");

    // A responder that never answers: 504 after WEB_REQUEST_TIMEOUT_MS.
    let client = server.client().await;
    let _silent = client.subscribe("telecommand.send").await.unwrap();
    client.flush().await.unwrap();
    let web_addr = addr.clone();
    let started = Instant::now();
    let (status, body) =
        tokio::task::spawn_blocking(move || http(&web_addr, "POST", "/api/telecommand", "{}"))
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
    let (status, body) = tokio::task::spawn_blocking(move || {
        http(&web_addr, "POST", "/api/query/latest", r#"{"n":0}"#)
    })
    .await
    .unwrap();
    responder.await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("n must be 1..=1000"), "{body}");

    // The live stream: telemetry as it is published; not-JSON is dropped.
    let web_addr = addr.clone();
    let (mut first, second, third) = tokio::task::spawn_blocking(move || {
        let first = live(&web_addr);
        let second = live(&web_addr);
        let third = live(&web_addr);
        (first, second, third)
    })
    .await
    .unwrap();
    assert_eq!(first.0, 200);
    assert_eq!(second.0, 200);
    assert_eq!(third.0, 503, "WEB_MAX_LIVE is 2");
    drop(second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .publish("telemetry.parsed", "not json".into())
        .await
        .unwrap();
    client
        .publish("telemetry.parsed", r#"{"session":1,"counter":7}"#.into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let event = tokio::task::spawn_blocking(move || {
        let event = next_event(&mut first.1, "telemetry");
        (event, first)
    })
    .await
    .unwrap();
    assert_eq!(event.0, r#"{"counter":7,"session":1}"#);
    let mut first = event.1;
    // A closed stream frees its slot.
    let web_addr = addr.clone();
    let again = tokio::task::spawn_blocking(move || live(&web_addr).0)
        .await
        .unwrap();
    assert_eq!(again, 200);

    // SIGTERM with a live stream open: the stream ends, the service exits 0.
    web.signal(libc::SIGTERM);
    let code = web.wait_exit(WAIT);
    assert_eq!(code, Some(0), "{}", web.stderr());
    let mut rest = String::new();
    let _ = first.1.read_to_string(&mut rest);
}
