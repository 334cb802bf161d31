//! The feature points built with `#[subscribe]` (fixture
//! `tests/fixtures/e2e_features.rs`) and by hand with `Route`: config
//! subjects with defaults, error codes and log volume, blocking handlers,
//! publish targets.

use std::time::Duration;

use telestion::{HandlerError, Json, PublishTarget, Route};

use crate::support::{self, NatsServer, TestService, WAIT, service_command, spawn_ready};

fn features(server: &NatsServer, name: &str, data: &std::path::Path) -> std::process::Command {
    service_command(
        support::workspace_binary("telestion-tests", "e2e_features"),
        server,
        name,
        data,
    )
}

async fn text_reply(client: &async_nats::Client, subject: &str, body: &'static str) -> String {
    let reply = crate::request(client, subject, body).await;
    String::from_utf8_lossy(&reply.payload).into_owned()
}

/// Point 1: `#[subscribe(config = "KEY", default = "subject")]` subscribes
/// the default when the key is missing and the configured subject when it
/// is set; `--help` shows the key with its default.
#[tokio::test]
async fn config_subject_falls_back_to_its_default() {
    let server = NatsServer::start();
    let client = server.client().await;
    let data = tempfile::tempdir().unwrap();

    let proc = spawn_ready(features(&server, "defaults", data.path()));
    assert_eq!(
        text_reply(&client, "features.defaulted", "a").await,
        "defaulted:a"
    );
    drop(proc);

    let mut cmd = features(&server, "configured", data.path());
    cmd.env("DEFAULTED_SUBJECT", "features.configured");
    let proc = spawn_ready(cmd);
    assert_eq!(
        text_reply(&client, "features.configured", "b").await,
        "defaulted:b"
    );
    // The default is not subscribed when the key is set.
    assert!(
        support::try_request_within(
            &client,
            "features.defaulted",
            "c",
            Duration::from_millis(500)
        )
        .await
        .is_err(),
        "the default subject answered although the key is set"
    );
    drop(proc);

    let mut cmd =
        support::clean_command(support::workspace_binary("telestion-tests", "e2e_features"));
    cmd.arg("--help");
    let output = support::run_with_timeout(cmd, WAIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0));
    let line = stdout
        .lines()
        .find(|line| line.contains("DEFAULTED_SUBJECT"))
        .unwrap_or_else(|| panic!("DEFAULTED_SUBJECT missing from --help:\n{stdout}"));
    assert!(line.contains("(default: features.defaulted)"), "{line}");
    let line = stdout
        .lines()
        .find(|line| line.contains("MIRROR_SUBJECT"))
        .unwrap_or_else(|| panic!("MIRROR_SUBJECT missing from --help:\n{stdout}"));
    assert!(line.contains("(default: features.mirror)"), "{line}");
}

/// Point 1 by hand: `Route::from_config(..).default_subject(..)`.
#[tokio::test]
async fn route_from_config_uses_the_default_subject() {
    async fn echo(body: String) -> String {
        body
    }
    let server = NatsServer::start();
    let service = TestService::start(
        &server,
        "by-hand-default",
        vec![Route::from_config("UNSET_SUBJECT", echo).default_subject("features.hand")],
    )
    .await;
    let client = server.client().await;
    assert_eq!(text_reply(&client, "features.hand", "x").await, "x");
    service.stop().await.unwrap();
}

fn code_header(message: &async_nats::Message) -> Option<String> {
    message
        .headers
        .as_ref()?
        .get("Nats-Service-Error-Code")
        .map(|v| v.as_str().to_owned())
}

/// Point 2: a `HandlerError::client` is answered with its code and logged
/// at WARN, a `HandlerError::server` and a plain `Result<T, E: Display>`
/// with 500 at ERROR, and a rejected body with 400 at WARN.
#[tokio::test(flavor = "current_thread")]
async fn error_codes_choose_the_reply_code_and_log_level() {
    async fn lookup(Json(id): Json<u32>) -> Result<String, HandlerError> {
        match id {
            0 => Err(HandlerError::client("id 0 does not exist").with_code(404)),
            1 => Err(HandlerError::server("the store is down")),
            n => Ok(format!("item {n}")),
        }
    }
    async fn plain(_: String) -> Result<String, String> {
        Err("plain failure".into())
    }
    let (logs, _guard) = support::capture_logs();
    let server = NatsServer::start();
    let service = TestService::start(
        &server,
        "codes",
        vec![
            Route::new("codes.lookup", lookup),
            Route::new("codes.plain", plain),
        ],
    )
    .await;
    let client = server.client().await;

    let reply = crate::request(&client, "codes.lookup", "0").await;
    assert_eq!(code_header(&reply).as_deref(), Some("404"));
    assert_eq!(
        support::error_header(&reply).as_deref(),
        Some("id 0 does not exist")
    );
    let reply = crate::request(&client, "codes.lookup", "1").await;
    assert_eq!(code_header(&reply).as_deref(), Some("500"));
    let reply = crate::request(&client, "codes.lookup", "not json").await;
    assert_eq!(code_header(&reply).as_deref(), Some("400"));
    let reply = crate::request(&client, "codes.plain", "x").await;
    assert_eq!(code_header(&reply).as_deref(), Some("500"));
    let reply = crate::request(&client, "codes.lookup", "7").await;
    assert_eq!(&reply.payload[..], b"item 7");

    let text = logs.text();
    let line = |needle: &str| {
        text.lines()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no log line with {needle:?}:\n{text}"))
            .to_owned()
    };
    assert!(line("id 0 does not exist").contains("WARN"), "{text}");
    assert!(line("the store is down").contains("ERROR"), "{text}");
    assert!(line("cannot handle the message").contains("WARN"), "{text}");
    assert!(line("plain failure").contains("ERROR"), "{text}");
    let health = support::health_report(&client, telestion::health::SUBJECT).await;
    assert_eq!(health.errors_total, 4);
    service.stop().await.unwrap();
}

/// Point 2: 1,000 identical failures make a few log lines (the first and a
/// summary with the count of the repeats), while health counts every one
/// and every request is answered.
#[tokio::test(flavor = "current_thread")]
async fn repeated_identical_errors_are_summarised_in_the_log() {
    async fn always_fails(_: String) -> Result<(), String> {
        Err("the sensor is unplugged".into())
    }
    let (logs, _guard) = support::capture_logs();
    let server = NatsServer::start();
    let service = TestService::start(
        &server,
        "repeats",
        vec![Route::new("repeats.fail", always_fails)],
    )
    .await;
    let client = server.client().await;
    // A request is answered with an error every time.
    for _ in 0..10 {
        let reply = crate::request(&client, "repeats.fail", "x").await;
        assert_eq!(
            support::error_header(&reply).as_deref(),
            Some("the sensor is unplugged")
        );
    }
    for _ in 0..990 {
        client.publish("repeats.fail", "x".into()).await.unwrap();
    }
    client.flush().await.unwrap();
    support::eventually_async(WAIT, "health counts 1,000 errors", || {
        let client = client.clone();
        async move {
            support::health_report(&client, telestion::health::SUBJECT)
                .await
                .errors_total
                == 1000
        }
    })
    .await;
    let limit = Duration::from_secs(telestion::REPEATED_ERROR_LOG_SECS) + WAIT;
    // The summary lines (one per interval) count the 999 repeats.
    support::eventually(limit, "summary lines counting 999 repeats", || {
        summarised_repeats(&logs.text()) == 999
    })
    .await;
    let text = logs.text();
    let lines = text
        .lines()
        .filter(|line| {
            line.contains("the sensor is unplugged")
                && (line.contains(" ERROR ") || line.contains(" WARN "))
        })
        .count();
    assert!(
        lines < 20,
        "{lines} log lines for 1,000 identical errors:\n{text}"
    );
    assert!(lines >= 2, "{text}");
    service.stop().await.unwrap();
}

/// The sum of the counts in the "repeated N more times" summary lines.
fn summarised_repeats(text: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.split_once("repeated ")?.1.split_once(" more times"))
        .filter_map(|(count, _)| count.parse::<u64>().ok())
        .sum()
}

/// Point 3: four blocking handler calls (a plain `fn` sleeping 3 s each, at
/// `concurrency = 4`) on a 2-core machine do not stall the service: every
/// health request meanwhile is answered within 0.5 s (the issue's
/// requirement), and all four calls are answered afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn blocking_handlers_leave_health_responsive() {
    let server = NatsServer::start();
    let client = server.client().await;
    let data = tempfile::tempdir().unwrap();
    let _proc = spawn_ready(features(&server, "blocking", data.path()));

    let calls: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                support::try_request_within(&client, "features.block", "3000", WAIT).await
            })
        })
        .collect();
    // Let the four calls start blocking.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let answer = support::try_request_within(
            &client,
            telestion::health::SUBJECT,
            "",
            Duration::from_secs(5),
        )
        .await;
        let took = started.elapsed();
        assert!(answer.is_ok(), "no health answer: {answer:?}");
        assert!(
            took <= Duration::from_millis(500),
            "a health request took {took:?} while blocking handlers ran"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The health requests were measured while the calls still blocked.
    assert!(
        calls.iter().all(|call| !call.is_finished()),
        "the blocking calls ended before the health requests were measured"
    );
    for call in calls {
        let reply = call
            .await
            .unwrap()
            .expect("a blocking call was not answered");
        assert_eq!(&reply.payload[..], b"3000");
    }
}

/// Point 3 by hand: `Route::blocking`, with extractors, a reply and a
/// panic caught like an async handler's.
#[tokio::test]
async fn route_blocking_runs_a_plain_fn() {
    fn shout(body: String) -> Result<String, String> {
        if body == "panic" {
            panic!("told to");
        }
        Ok(body.to_uppercase())
    }
    let server = NatsServer::start();
    let service = TestService::start(&server, "shout", vec![Route::blocking("shout", shout)]).await;
    let client = server.client().await;
    assert_eq!(text_reply(&client, "shout", "hi").await, "HI");
    let reply = crate::request(&client, "shout", "panic").await;
    assert!(
        support::error_header(&reply)
            .unwrap_or_default()
            .contains("told to"),
        "{reply:?}"
    );
    assert_eq!(text_reply(&client, "shout", "again").await, "AGAIN");
    service.stop().await.unwrap();
}

/// Point 4: `#[subscribe("in", publish = [..], publish_config = "KEY",
/// publish_default = "..")]` publishes the return value to every target
/// and still answers a request; `None` and errors publish nothing (an
/// error is answered as an error reply).
#[tokio::test]
async fn return_values_are_published_to_the_targets() {
    let server = NatsServer::start();
    let client = server.client().await;
    let data = tempfile::tempdir().unwrap();
    let mut cmd = features(&server, "publisher", data.path());
    cmd.env("MIRROR_SUBJECT", "features.mirrored");
    let _proc = spawn_ready(cmd);
    let mut converted = client.subscribe("features.converted").await.unwrap();
    let mut copy = client.subscribe("features.converted.copy").await.unwrap();
    let mut mirrored = client.subscribe("features.mirrored").await.unwrap();
    client.flush().await.unwrap();

    // Published without a reply subject.
    client
        .publish("features.convert", "100".into())
        .await
        .unwrap();
    for subscription in [&mut converted, &mut copy, &mut mirrored] {
        let message = support::next_message(subscription, WAIT).await;
        assert_eq!(&message.payload[..], b"212.0");
    }
    // A request is answered and published.
    let reply = crate::request(&client, "features.convert", "0").await;
    assert_eq!(&reply.payload[..], b"32.0");
    let message = support::next_message(&mut converted, WAIT).await;
    assert_eq!(&message.payload[..], b"32.0");
    // An error is answered, not published; `None` publishes nothing.
    let reply = crate::request(&client, "features.convert", "-300").await;
    assert_eq!(
        support::error_header(&reply).as_deref(),
        Some("below absolute zero")
    );
    client
        .publish("features.convert", "99999".into())
        .await
        .unwrap();
    // A marker after both (handled in order): the next message on the
    // targets is its value, so neither the error nor `None` published.
    client
        .publish("features.convert", "10".into())
        .await
        .unwrap();
    let message = support::next_message(&mut converted, WAIT).await;
    assert_eq!(&message.payload[..], b"50.0");
    let message = support::next_message(&mut mirrored, WAIT).await;
    assert_eq!(&message.payload[..], b"32.0", "the request's value first");
    let message = support::next_message(&mut mirrored, WAIT).await;
    assert_eq!(&message.payload[..], b"50.0");
}

/// Point 4 by hand: `Route::publish_to`, with the default of a config
/// target; a missing config target without a default fails the start.
#[tokio::test]
async fn route_publish_to_publishes_the_return_value() {
    async fn double(Json(x): Json<i64>) -> Json<i64> {
        Json(2 * x)
    }
    let server = NatsServer::start();
    let client = server.client().await;
    let mut out = client.subscribe("hand.out").await.unwrap();
    let mut defaulted = client.subscribe("hand.defaulted").await.unwrap();
    client.flush().await.unwrap();
    let service = TestService::start(
        &server,
        "hand-publish",
        vec![
            Route::new("hand.in", double)
                .publish_to("hand.out")
                .publish_to(PublishTarget::config("UNSET_TARGET").or_default("hand.defaulted")),
        ],
    )
    .await;
    client.publish("hand.in", "21".into()).await.unwrap();
    assert_eq!(
        &support::next_message(&mut out, WAIT).await.payload[..],
        b"42"
    );
    assert_eq!(
        &support::next_message(&mut defaulted, WAIT).await.payload[..],
        b"42"
    );
    service.stop().await.unwrap();

    let data = tempfile::tempdir().unwrap();
    let config = support::service_config(&server.url(), "missing-target", data.path(), &[]);
    let error = TestService::start_with(
        config,
        vec![Route::new("hand.in2", double).publish_to(PublishTarget::config("UNSET_TARGET"))],
    )
    .await
    .expect_err("a missing publish target key must fail the start");
    assert!(
        telestion::error_chain(&error).contains("UNSET_TARGET"),
        "{}",
        telestion::error_chain(&error)
    );
}

/// Point 5: `#[subscribe(every = "100ms", publish = "...")]` publishes its
/// return value periodically; `every_config` takes the period from config
/// (its default shown by `--help`); the service still stops promptly.
#[tokio::test]
async fn timers_publish_periodically() {
    let server = NatsServer::start();
    let client = server.client().await;
    let mut ticks = client.subscribe("features.tick").await.unwrap();
    let mut fast = client.subscribe("features.fast").await.unwrap();
    client.flush().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = features(&server, "timers", data.path());
    cmd.env("FAST_PERIOD", "50ms");
    let mut proc = spawn_ready(cmd);
    let mut counts = Vec::new();
    for _ in 0..3 {
        let message = support::next_message(&mut ticks, WAIT).await;
        counts.push(
            String::from_utf8_lossy(&message.payload)
                .parse::<u64>()
                .unwrap(),
        );
    }
    assert_eq!(counts, [1, 2, 3]);
    for _ in 0..3 {
        let message = support::next_message(&mut fast, WAIT).await;
        assert_eq!(&message.payload[..], b"timers");
    }
    proc.signal(libc::SIGTERM);
    assert_eq!(proc.wait_exit(WAIT), Some(0), "{}", proc.stderr());

    let mut cmd =
        support::clean_command(support::workspace_binary("telestion-tests", "e2e_features"));
    cmd.arg("--help");
    let output = support::run_with_timeout(cmd, WAIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.contains("FAST_PERIOD"))
        .unwrap_or_else(|| panic!("FAST_PERIOD missing from --help:\n{stdout}"));
    assert!(line.contains("(default: 3600s)"), "{line}");
}

/// Point 5 by hand: `Route::every` with a failing handler counts every
/// failure in health (and logs it); a bad period from config fails the
/// start naming the key; the timer stops at shutdown.
#[tokio::test]
async fn failing_timer_counts_in_health_and_stops_at_shutdown() {
    async fn broken() -> Result<(), String> {
        Err("the link is down".into())
    }
    let server = NatsServer::start();
    let client = server.client().await;
    let service = TestService::start(
        &server,
        "broken-timer",
        vec![Route::every(Duration::from_millis(50), broken)],
    )
    .await;
    support::eventually_async(WAIT, "three timer failures in health", || {
        let client = client.clone();
        async move {
            support::health_report(&client, telestion::health::SUBJECT)
                .await
                .errors_total
                >= 3
        }
    })
    .await;
    tokio::time::timeout(WAIT, service.stop())
        .await
        .expect("the timer did not stop at shutdown")
        .unwrap();

    let data = tempfile::tempdir().unwrap();
    let config = support::service_config(
        &server.url(),
        "bad-period",
        data.path(),
        &[("POLL_PERIOD", "soon")],
    );
    let error = TestService::start_with(config, vec![Route::every_config("POLL_PERIOD", broken)])
        .await
        .expect_err("a bad period must fail the start");
    let text = telestion::error_chain(&error);
    assert!(text.contains("POLL_PERIOD"), "{text}");
}

/// Point 5: `#[subscribe(task)]` starts once the handlers are subscribed;
/// a failure is counted in health and the task restarted after a back-off;
/// at shutdown it sees `service.stopped()`, finishes (its last publish
/// arrives) and the service exits 0.
#[tokio::test]
async fn tasks_restart_after_failure_and_finish_at_shutdown() {
    let server = NatsServer::start();
    let client = server.client().await;
    let mut link = client.subscribe("features.link").await.unwrap();
    client.flush().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut proc = spawn_ready(features(&server, "tasks", data.path()));
    let text =
        |message: async_nats::Message| String::from_utf8_lossy(&message.payload).into_owned();
    assert_eq!(text(support::next_message(&mut link, WAIT).await), "up 1");
    assert_eq!(text(support::next_message(&mut link, WAIT).await), "up 2");
    let health = support::health_report(&client, telestion::health::SUBJECT).await;
    assert_eq!(health.errors_total, 1);
    proc.signal(libc::SIGTERM);
    assert_eq!(text(support::next_message(&mut link, WAIT).await), "down");
    assert_eq!(proc.wait_exit(WAIT), Some(0), "{}", proc.stderr());
    let stderr = proc.stderr();
    assert!(stderr.contains("the link dropped"), "{stderr}");
    assert!(
        stderr.contains("restarting it after a back-off"),
        "{stderr}"
    );
}

/// Issue 24, point 3: every line a handler logs carries the call's
/// context: the service, the handler and the message's subject, in the
/// text format and in JSON (as a `span` object), from an `async fn` and
/// from a blocking handler alike; a line logged outside a call carries
/// none.
///
/// Old behaviour: a handler's `tracing::info!` carried neither the handler
/// nor the subject.
#[tokio::test(flavor = "multi_thread")]
async fn lines_logged_in_a_handler_carry_the_call() {
    let server = NatsServer::start();
    let client = server.client().await;
    let data = tempfile::tempdir().unwrap();
    for json in [false, true] {
        let mut cmd = features(&server, "noting", data.path());
        if json {
            cmd.env("LOG_FORMAT", "json");
        }
        let mut proc = tokio::task::block_in_place(|| {
            let mut proc = support::Process::spawn(cmd);
            let ready = if json {
                "\"message\":\"ready\""
            } else {
                " ready"
            };
            proc.wait_for_stderr(ready, WAIT);
            proc
        });
        for (subject, body) in [
            ("features.noted.sensor7", "hello"),
            ("features.noted_blocking", "heavy"),
        ] {
            client.publish(subject, body.into()).await.unwrap();
        }
        client.flush().await.unwrap();
        let needle = "noting on the blocking pool";
        tokio::task::block_in_place(|| proc.wait_for_stderr(needle, WAIT));
        let stderr = proc.stderr();
        let line = |note: &str| {
            stderr
                .lines()
                .find(|line| line.contains(note) && line.contains("noting"))
                .unwrap_or_else(|| panic!("no line with {note}:\n{stderr}"))
                .to_owned()
        };
        for (note, handler, subject) in [
            ("hello", "noted", "features.noted.sensor7"),
            ("heavy", "noted_blocking", "features.noted_blocking"),
        ] {
            let line = line(note);
            if json {
                let value: serde_json::Value = serde_json::from_str(&line).unwrap();
                let span = &value["span"];
                assert_eq!(span["service"], "noting", "{line}");
                assert!(
                    span["handler"].as_str().unwrap_or("").ends_with(handler),
                    "{line}"
                );
                assert_eq!(span["subject"], subject, "{line}");
                assert_eq!(value["fields"]["note"], note, "{line}");
            } else {
                assert!(line.contains(" service=noting"), "{line}");
                assert!(line.contains(&format!("::{handler} ")), "{line}");
                assert!(line.contains(&format!(" subject={subject}")), "{line}");
            }
        }
        let started = stderr
            .lines()
            .find(|line| line.contains("service started"))
            .expect("a start line");
        assert!(!started.contains("subject="), "{started}");
        assert!(!started.contains("\"span\""), "{started}");
        drop(proc);
    }
}

/// An extractor of the test's own: the caller's token from the
/// `Authorization` header; a message without one is rejected with 401.
struct Token(String);

impl telestion::FromMessage for Token {
    type Context = ();
    fn prepare(_: &telestion::Service) -> Result<(), telestion::BoxError> {
        Ok(())
    }
    fn from_message(
        incoming: &mut telestion::Incoming,
        _: &(),
    ) -> Result<Self, telestion::ExtractError> {
        incoming
            .message
            .headers
            .as_ref()
            .and_then(|headers| headers.get("Authorization"))
            .map(|value| Token(value.to_string()))
            .ok_or_else(|| telestion::ExtractError::reject(401, "no Authorization header"))
    }
}

async fn whoami(Token(token): Token) -> String {
    format!("you are {token}")
}

/// Issue 24, point 4: a user's extractor rejects a message with its own
/// message and code, and the rejection is counted, answered and logged
/// like the built-in ones.
///
/// Old behaviour: `ExtractError` had no variant an extractor could return
/// with its own code; every rejection was a 400.
#[tokio::test(flavor = "multi_thread")]
async fn a_user_extractor_rejects_with_its_own_code() {
    let server = NatsServer::start();
    let service =
        TestService::start(&server, "tokens", vec![Route::new("tokens.whoami", whoami)]).await;
    let client = server.client().await;
    let reply = crate::request(&client, "tokens.whoami", "").await;
    assert_eq!(
        support::error_header(&reply).as_deref(),
        Some("cannot handle the message: no Authorization header")
    );
    let code = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
        .map(|v| v.to_string());
    assert_eq!(code.as_deref(), Some("401"));
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", "ada");
    let reply = client
        .request_with_headers("tokens.whoami", headers, "".into())
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"you are ada");
    assert_eq!(service.service().error_counter().total(), 1);
    service.stop().await.unwrap();
}
