//! The web app's login and hardening (issue 26 point 4, web parts of
//! points 3 and 6), against a real nats-server with users
//! (`backend_tests::auth`) and the real `web` binary.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use backend_tests::auth;
use backend_tests::browser::Browser;
use backend_tests::http::{Live, headers, live, login, request};
use futures::StreamExt;
use telestion_test::{NatsServer, Process, WAIT, service_command, spawn_ready};

/// A frame as `telemetry_parser` publishes it, with `counter`.
fn frame(counter: u32) -> String {
    format!(
        r#"{{"session":1,"counter":{counter},"time_ms":5,"temperature_c":20.5,"voltage_v":3.3,"current_a":0.1,"status":1}}"#
    )
}

/// Starts `web` on a free port as the web user, with extra `env`.
fn start_web(
    server: &NatsServer,
    data: &std::path::Path,
    env: &[(&str, &str)],
) -> (Process, String) {
    let addr = format!("127.0.0.1:{}", telestion_test::free_port());
    let mut cmd = service_command(backend_tests::binary("web"), server, "web", data);
    cmd.env("WEB_ADDR", &addr)
        .env("NATS_USER", auth::WEB.0)
        .env("NATS_PASSWORD", auth::WEB.1);
    for (key, value) in env {
        cmd.env(key, value);
    }
    (spawn_ready(cmd), addr)
}

/// A value (kB) of `/proc/<pid>/status`.
fn status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Serves `page` to every GET on a free loopback port (another origin than
/// the web service); returns its address.
fn serve_page(page: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    addr
}

/// A page of another origin that posts a telecommand to the web service
/// with a `no-cors` text/plain fetch (cookies included), then with an
/// `enctype=text/plain` form whose field name hides the `=` in a JSON
/// string.
fn attack_page(web: &str) -> String {
    format!(
        r#"<!doctype html><html><body>
<form id="f" method="POST" enctype="text/plain" action="http://{web}/api/telecommand">
<input name='{{"id":"attack-form","command":"set_heater","args":{{"on":true}},"x":"' value='"}}'>
</form>
<script>
fetch("http://{web}/api/telecommand", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}},
  body: '{{"id":"attack-fetch","command":"set_heater","args":{{"on":true}}}}'}})
  .then(() => {{ document.title = "fetched"; }}, () => {{ document.title = "fetch failed"; }})
  .then(() => document.getElementById("f").submit());
</script></body></html>"#
    )
}

/// Opens the attack page in `browser` and waits until its form was
/// submitted (the browser shows the web service's answer).
fn run_attack(browser: &mut Browser, attacker: &str, web: &str) -> String {
    browser.navigate(&format!("http://{attacker}/"));
    browser.wait_for(
        &format!("location.host === {web:?} && document.body && document.body.innerText"),
        "the form's answer from the web service",
        Duration::from_secs(20),
    );
    browser
        .eval("document.body.innerText")
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A cross-origin page's `no-cors` fetch and `text/plain` form do not
/// reach `telecommand.send`, neither before nor after the operator signed
/// in (Chromium sends the `SameSite=Strict` cookie along: another port on
/// 127.0.0.1 is the same site); the operator's own page does.
///
/// Old behaviour: both requests were forwarded to `telecommand.send` (no
/// login, no Origin or content-type check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_origin_page_cannot_send_telecommands() {
    backend_tests::browser::chromium_bin();
    let server = NatsServer::start_with(auth::server_options());
    let data = tempfile::tempdir().unwrap();
    let (_web, addr) = tokio::task::block_in_place(|| start_web(&server, data.path(), &[]));
    let client = auth::client(&server).await;
    let mut commands = client.subscribe("telecommand.send").await.unwrap();
    client.flush().await.unwrap();
    let attacker = serve_page(attack_page(&addr));

    let web = addr.clone();
    let (mut browser, answers) = tokio::task::spawn_blocking(move || {
        let mut browser = Browser::open(&format!("http://{web}/"));
        let before = run_attack(&mut browser, &attacker, &web);
        browser.navigate(&format!("http://{web}/"));
        sign_in(&mut browser);
        let after = run_attack(&mut browser, &attacker, &web);
        // The fetch ran before the form in both runs.
        (browser, [before, after])
    })
    .await
    .unwrap();
    for answer in &answers {
        assert!(
            answer.contains("Origin"),
            "the form was not refused: {answer}"
        );
    }
    let arrived = tokio::time::timeout(Duration::from_secs(3), commands.next()).await;
    assert!(
        arrived.is_err(),
        "a cross-origin telecommand arrived: {arrived:?}"
    );

    // The signed-in operator's own page does reach it (the subscription
    // above would have seen the attacks).
    let web = addr.clone();
    let sent = tokio::task::spawn_blocking(move || {
        browser.navigate(&format!("http://{web}/"));
        browser.wait_for(
            "document.getElementById('user').textContent === 'operator'",
            "still signed in",
            Duration::from_secs(20),
        );
        browser.eval(
            "fetch('/api/telecommand', {method: 'POST', headers: {'Content-Type': 'application/json'}, \
             body: JSON.stringify({id: 'own-page', command: 'ping', args: {}})}); true",
        );
        browser
    });
    let command = tokio::time::timeout(WAIT, commands.next())
        .await
        .expect("the operator's telecommand did not arrive")
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&command.payload).unwrap();
    assert_eq!(body["id"], "own-page");
    drop(sent.await.unwrap());
}

fn sign_in(browser: &mut Browser) {
    browser.wait_for(
        "!document.getElementById('login-section').classList.contains('hidden')",
        "the sign-in form",
        Duration::from_secs(20),
    );
    browser.eval(&format!(
        "document.getElementById('login-user').value = {:?}; \
         document.getElementById('login-password').value = {:?}; \
         document.getElementById('login-send').click(); true",
        auth::OPERATOR.0,
        auth::OPERATOR.1
    ));
    browser.wait_for(
        "document.getElementById('user').textContent === 'operator'",
        "signed in",
        Duration::from_secs(20),
    );
}

/// Logins, sessions and what NATS permissions allow; Host, Origin,
/// content type, duplicate keys; the security headers.
///
/// Old behaviour: no login (every request 200 or forwarded, as the web
/// service's own identity), any Host and Origin, text/plain and duplicate
/// keys forwarded, no CSP or frame protection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_permissions_and_request_checks() {
    let server = NatsServer::start_with(auth::server_options());
    let data = tempfile::tempdir().unwrap();
    let (_web, addr) = tokio::task::block_in_place(|| {
        start_web(&server, data.path(), &[("WEB_REQUEST_TIMEOUT_MS", "20000")])
    });
    let client = auth::client(&server).await;
    // A responder for queries and telecommands.
    let mut requests = client.subscribe("telemetry.query.count").await.unwrap();
    let mut commands = client.subscribe("telecommand.send").await.unwrap();
    client.flush().await.unwrap();
    let responder = client.clone();
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                Some(m) = requests.next() => m,
                Some(m) = commands.next() => m,
                else => return,
            };
            if let Some(reply) = message.reply {
                let _ = responder.publish(reply, message.payload).await;
            }
        }
    });

    let web = addr.clone();
    tokio::task::spawn_blocking(move || {
        let addr = web.as_str();
        let post = |path: &str, cookie: Option<&str>, body: &str| {
            request(addr, "POST", path, &headers(addr, cookie), body)
        };
        // No session: 401; a wrong password: 401, generic, no echo.
        assert_eq!(post("/api/query/count", None, "{}").status, 401);
        let wrong = post(
            "/api/login",
            None,
            r#"{"user":"operator","password":"guess-1234"}"#,
        );
        assert_eq!(wrong.status, 401, "{wrong:?}");
        assert!(!wrong.body.contains("guess-1234"));
        let get = request(addr, "GET", "/api/session", &headers(addr, None), "");
        assert_eq!(get.status, 401);

        // The cookie.
        let response = post(
            "/api/login",
            None,
            &serde_json::json!({"user": auth::VIEWER.0, "password": auth::VIEWER.1}).to_string(),
        );
        assert_eq!(response.status, 200, "{response:?}");
        let set = response.header("set-cookie").unwrap();
        assert!(set.starts_with("telestion_session="), "{set}");
        let token = set.split(';').next().unwrap().split('=').nth(1).unwrap();
        assert_eq!(token.len(), 64, "256 bits in hex: {set}");
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attribute), "{set}");
        }
        let viewer = set.split(';').next().unwrap().to_owned();

        // The viewer may query, but not send telecommands: 403 at once.
        let query = post("/api/query/count", Some(&viewer), r#"{"x":1}"#);
        assert_eq!((query.status, query.body.as_str()), (200, r#"{"x":1}"#));
        let started = Instant::now();
        let denied = post(
            "/api/telecommand",
            Some(&viewer),
            r#"{"id":"v1","command":"ping","args":{}}"#,
        );
        assert_eq!(denied.status, 403, "{denied:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the 403 took {:?} (the request timeout is 20 s)",
            started.elapsed()
        );
        // The operator may.
        let operator = login(addr, auth::OPERATOR.0, auth::OPERATOR.1);
        let sent = post(
            "/api/telecommand",
            Some(&operator),
            r#"{"id":"o1","command":"ping","args":{}}"#,
        );
        assert_eq!(sent.status, 200, "{sent:?}");

        // Host: only the configured names.
        let mut evil = headers(addr, Some(&operator));
        evil[0].1 = "evil.example:80".into();
        assert_eq!(request(addr, "GET", "/", &evil, "").status, 421);
        // Origin: missing or another one is 403.
        let mut no_origin = headers(addr, Some(&operator));
        no_origin.retain(|(n, _)| n != "Origin");
        let refused = request(addr, "POST", "/api/query/count", &no_origin, "{}");
        assert_eq!(refused.status, 403, "{refused:?}");
        let mut other = headers(addr, Some(&operator));
        other[1].1 = "http://127.0.0.1:1".into();
        assert_eq!(
            request(addr, "POST", "/api/query/count", &other, "{}").status,
            403
        );
        // Content type: JSON only.
        let mut plain = headers(addr, Some(&operator));
        plain[2].1 = "text/plain".into();
        assert_eq!(
            request(addr, "POST", "/api/telecommand", &plain, "{}").status,
            415
        );
        // Duplicate keys, at any depth.
        let twice = post(
            "/api/telecommand",
            Some(&operator),
            r#"{"id":"d1","command":"ping","args":{"a":1,"a":2}}"#,
        );
        assert_eq!(twice.status, 400, "{twice:?}");
        assert!(twice.body.contains("duplicate"), "{twice:?}");

        // The headers, on the page and on API replies.
        for path in ["/", "/app.js", "/api/session"] {
            let response = request(addr, "GET", path, &headers(addr, Some(&operator)), "");
            assert_eq!(response.status, 200, "{path}");
            let csp = response
                .header("content-security-policy")
                .unwrap_or_default();
            assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
            assert_eq!(response.header("x-frame-options"), Some("DENY"));
            assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
            assert_eq!(response.header("cache-control"), Some("no-store"));
        }
        let page = request(addr, "GET", "/", &headers(addr, None), "").body;
        assert!(
            !page.contains("<style") && !page.contains("<script>"),
            "inline code"
        );

        // Logout ends the session.
        assert_eq!(post("/api/logout", Some(&operator), "{}").status, 200);
        assert_eq!(post("/api/query/count", Some(&operator), "{}").status, 401);
    })
    .await
    .unwrap();
}

/// Forged `telemetry.parsed` and `device.link` messages (wrong schema,
/// extra fields, duplicate keys, too large) never reach a live stream;
/// valid ones do. The live stream needs a session.
///
/// Old behaviour: any JSON was forwarded (and `/api/live` needed no
/// login).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_bus_messages_are_not_shown() {
    let server = NatsServer::start_with(auth::server_options());
    let data = tempfile::tempdir().unwrap();
    let (_web, addr) = tokio::task::block_in_place(|| start_web(&server, data.path(), &[]));
    let client = auth::client(&server).await;
    let web = addr.clone();
    let mut stream = tokio::task::spawn_blocking(move || {
        assert_eq!(live(&web, None).status, 401);
        let cookie = login(&web, auth::VIEWER.0, auth::VIEWER.1);
        let stream = live(&web, Some(&cookie));
        assert_eq!(stream.status, 200);
        stream
    })
    .await
    .unwrap();
    let forged_frames = [
        r#"{"session":1}"#.to_owned(),
        frame(1).replace("\"status\":1", "\"status\":1,\"x\":1"),
        frame(2).replace("20.5", "\"hot\""),
        frame(3).replace("\"status\":1", "\"status\":1,\"status\":2"),
        format!("{{\"pad\":\"{}\"}}", "x".repeat(100_000)),
        "[]".to_owned(),
    ];
    for forged in &forged_frames {
        client
            .publish("telemetry.parsed", forged.clone().into())
            .await
            .unwrap();
    }
    for forged in [
        r#"{"connected":"no"}"#,
        r#"{"connected":false,"since_ms":1,"evil":true}"#,
    ] {
        client.publish("device.link", forged.into()).await.unwrap();
    }
    client
        .publish("device.link", r#"{"connected":true,"since_ms":9}"#.into())
        .await
        .unwrap();
    client
        .publish("telemetry.parsed", frame(42).into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let last = stream.next_event_seeing("telemetry", |event, data| {
            seen.push(format!("{event} {data}"));
        });
        assert_eq!(last, frame(42));
        // The two subjects are two subscriptions, with no order between
        // them: the valid link message may come after the frame.
        if !seen.iter().any(|e| e.starts_with("link ")) {
            stream.next_event_seeing("link", |event, data| {
                seen.push(format!("{event} {data}"));
            });
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                r#"link {"connected":true,"since_ms":9}"#.to_owned(),
                format!("telemetry {}", frame(42))
            ]
        );
    })
    .await
    .unwrap();
}

/// 4 live clients that never read, 1,000 forged 900 KB messages, then
/// valid frames at a high rate: the web process stays under 64 MB, the
/// stalled clients are dropped (their connections closed), and a fresh
/// client still gets live data.
///
/// Old behaviour: the broadcast channel kept 1,024 messages for the
/// stalled clients: 680 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_live_clients_keep_memory_bounded() {
    let server = NatsServer::start_with(auth::server_options());
    let data = tempfile::tempdir().unwrap();
    let (web, addr) = tokio::task::block_in_place(|| {
        start_web(
            &server,
            data.path(),
            &[
                ("NATS_SUBSCRIPTION_CAPACITY", "16"),
                ("WEB_LIVE_BUFFER", "65536"),
            ],
        )
    });
    let pid = web.pid();
    let client = auth::client(&server).await;
    let web_addr = addr.clone();
    let stalled: Vec<Live> = tokio::task::spawn_blocking(move || {
        let cookie = login(&web_addr, auth::VIEWER.0, auth::VIEWER.1);
        let stalled: Vec<Live> = (0..4).map(|_| live(&web_addr, Some(&cookie))).collect();
        assert!(stalled.iter().all(|s| s.status == 200));
        // A fifth stream of one session is refused (per-session bound).
        assert_eq!(live(&web_addr, Some(&cookie)).status, 429);
        stalled
    })
    .await
    .unwrap();
    let before = status_kb(pid, "VmRSS:");

    let forged = bytes::Bytes::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(900_000)));
    for _ in 0..1000 {
        client
            .publish("telemetry.parsed", forged.clone())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!(
        "web peak after the forged messages: {} kB",
        status_kb(pid, "VmHWM:")
    );
    // Valid link messages (1 KiB reasons, 22 MB in all), paced so that
    // the service takes every one (its subscription holds only 16): more
    // than a stalled client's queue, the server's and the kernel's socket
    // buffers hold, so each stalled client falls behind.
    let link = format!(
        r#"{{"connected":true,"since_ms":5,"reason":"{}"}}"#,
        "r".repeat(1000)
    );
    for sent in 0..20_000u32 {
        client
            .publish("device.link", link.clone().into())
            .await
            .unwrap();
        if sent % 8 == 7 {
            client.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    client.flush().await.unwrap();
    // Let the service drain what NATS delivered.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let peak = status_kb(pid, "VmHWM:");
    eprintln!("web RSS before {before} kB, peak {peak} kB");
    assert!(peak < 64 * 1024, "the web process peaked at {peak} kB");

    let web_addr = addr.clone();
    tokio::task::spawn_blocking(move || {
        for mut stream in stalled {
            assert!(
                stream.closes_within(WAIT),
                "a stalled live client was not dropped"
            );
        }
        let cookie = login(&web_addr, auth::VIEWER.0, auth::VIEWER.1);
        live(&web_addr, Some(&cookie))
    })
    .await
    .map(|mut fresh| {
        assert_eq!(fresh.status, 200);
        let publisher = client.clone();
        let handle = tokio::spawn(async move {
            // Until the fresh stream has a frame.
            for counter in 0..300u32 {
                publisher
                    .publish("telemetry.parsed", frame(1_000_000 + counter).into())
                    .await
                    .unwrap();
                publisher.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let data = fresh.next_event("telemetry");
        handle.abort();
        assert!(data.starts_with("{\"session\":1,\"counter\":"), "{data}");
    })
    .unwrap();
    assert!(
        web.stderr().contains("fell behind and was dropped"),
        "{}",
        web.stderr()
    );
}

/// 1,500 connections that send half a request: the web process holds at
/// most `WEB_MAX_CONNECTIONS` of them, releases them after
/// `WEB_HEADER_TIMEOUT`, and serves the operator's page right after.
///
/// Old behaviour: no header timeout and no connection bound: 1,514
/// descriptors held as long as the clients wished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_do_not_hold_descriptors() {
    let server = NatsServer::start_with(auth::server_options());
    let data = tempfile::tempdir().unwrap();
    let (web, addr) = tokio::task::block_in_place(|| {
        start_web(
            &server,
            data.path(),
            &[("WEB_HEADER_TIMEOUT", "2s"), ("WEB_MAX_CONNECTIONS", "256")],
        )
    });
    let pid = web.pid();
    let baseline = open_fds(pid);
    let web_addr = addr.clone();
    tokio::task::spawn_blocking(move || {
        let addr = web_addr.as_str();
        let started = Instant::now();
        let mut held: Vec<TcpStream> = Vec::new();
        for _ in 0..1500 {
            let Ok(mut stream) = TcpStream::connect(addr) else {
                continue;
            };
            let _ = stream.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n").as_bytes());
            held.push(stream);
        }
        let opened = started.elapsed();
        let during = open_fds(pid);
        eprintln!(
            "baseline {baseline} fds, {during} with 1,500 half-sent requests (opened in {opened:?})"
        );
        assert!(
            during <= baseline + 256 + 16,
            "{during} descriptors open (baseline {baseline})"
        );
        // Released after the header timeout, while the clients keep them.
        let deadline = Instant::now() + WAIT;
        loop {
            let now = open_fds(pid);
            if now <= baseline + 16 {
                eprintln!("released after {:?}", started.elapsed());
                break;
            }
            assert!(Instant::now() < deadline, "{now} descriptors still open");
            std::thread::sleep(Duration::from_millis(200));
        }
        let page = request(addr, "GET", "/", &headers(addr, None), "");
        assert_eq!(page.status, 200);
        let cookie = login(addr, auth::OPERATOR.0, auth::OPERATOR.1);
        assert!(!cookie.is_empty());
        drop(held);
    })
    .await
    .unwrap();
}
