//! The `standard_ops` service end to end: data logging.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use serde_json::{Value, json};
use telestion::health::SUBJECT as HEALTH_SUBJECT;
mod support;

use support::{ack, lines, ops};
use telestion_test::{NatsServer, WAIT, eventually, files_below, health, request, spawn_ready};

/// How many lines `<data_dir>/logs/<category>.log` has so far (0 while it
/// does not exist).
fn line_count(data_dir: &Path, category: &str) -> usize {
    let path = data_dir.join("logs").join(format!("{category}.log"));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

/// The body a line holds, as bytes.
fn body_of(line: &Value) -> Vec<u8> {
    if let Some(json) = line.get("json") {
        serde_json::to_vec(json).unwrap()
    } else if let Some(text) = line.get("text") {
        text.as_str().unwrap().as_bytes().to_vec()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(line["base64"].as_str().unwrap())
            .unwrap()
    }
}

/// Asserts that `<category>.log` holds one line for each `{"n": 0..count}`
/// message: none missing, none twice.
fn assert_each_logged_once(data_dir: &Path, category: &str, count: usize, context: &str) {
    let logged = lines(data_dir, category);
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for line in &logged {
        let n = line["json"]["n"].as_u64().expect("a line without n");
        *seen.entry(n).or_default() += 1;
    }
    let mut duplicates: Vec<u64> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    duplicates.sort();
    assert!(
        duplicates.is_empty(),
        "{} messages logged more than once, e.g. {:?} {context}",
        duplicates.len(),
        &duplicates[..duplicates.len().min(10)]
    );
    assert_eq!(logged.len(), count, "lines {context}");
    assert_eq!(seen.len(), count, "distinct messages {context}");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_both_subject_forms_and_every_body_kind() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let _ops = spawn_ready(ops(&server, data.path(), &[]));
    let client = server.client().await;

    let spec = "__telestion__/log/readings";
    assert_eq!(
        ack(&client, spec, br#"{"a": [1, 2]}"#).await,
        json!({"ok": true})
    );
    assert_eq!(
        ack(&client, spec, b"hello world").await,
        json!({"ok": true})
    );
    assert_eq!(ack(&client, spec, b"").await, json!({"ok": true}));
    assert_eq!(
        ack(&client, spec, &[0, 0xff, 1, 0xfe]).await,
        json!({"ok": true})
    );
    assert_eq!(ack(&client, spec, b"\"quoted\"").await, json!({"ok": true}));
    let dotted = "__telestion__.log.team.readings";
    assert_eq!(ack(&client, dotted, b"42").await, json!({"ok": true}));

    // Replied means written: no waiting needed.
    let logged = lines(data.path(), "readings");
    assert_eq!(logged.len(), 5, "{logged:?}");
    for line in &logged {
        assert_eq!(line["subject"], spec);
    }
    assert_eq!(logged[0]["json"], json!({"a": [1, 2]}));
    assert_eq!(logged[1]["text"], "hello world");
    assert_eq!(logged[2]["text"], "");
    assert_eq!(body_of(&logged[3]), vec![0, 0xff, 1, 0xfe]);
    assert_eq!(logged[4]["json"], "quoted");
    assert_eq!(body_of(&logged[1]), b"hello world");

    // The dotted form: the category is everything after the prefix.
    let team = lines(data.path(), "team.readings");
    assert_eq!(team.len(), 1);
    assert_eq!(team[0]["subject"], dotted);
    assert_eq!(team[0]["json"], 42);

    // Without a reply subject the line is written just the same.
    client
        .publish(spec, "fire and forget".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    eventually(WAIT, "the published message is logged", || {
        lines(data.path(), "readings").len() == 6
    })
    .await;
    assert_eq!(lines(data.path(), "readings")[5]["text"], "fire and forget");

    // Other subjects are ignored: no reply, no file, no error.
    let other = tokio::time::timeout(
        Duration::from_millis(700),
        client.request("sensors.temperature", "1".into()),
    )
    .await;
    assert!(
        !matches!(other, Ok(Ok(_))),
        "standard_ops answered a subject that is not for it"
    );
    let mut names: Vec<String> = files_below(data.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["readings.log", "team.readings.log"]);
    assert_eq!(health(&client, "__telestion__/health").await["errors"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejects_invalid_categories_and_writes_nothing() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let _ops = spawn_ready(ops(&server, data.path(), &[]));
    let client = server.client().await;

    let long = format!("__telestion__/log/{}", "a".repeat(129));
    let bad = [
        "__telestion__/log/a/b",
        "__telestion__/log/",
        "__telestion__/log/a\\b",
        "__telestion__/log/-ok/etc",
        "__telestion__.log.a/b",
        "__telestion__.log.ok.x\u{e4}",
        long.as_str(),
    ];
    for subject in bad {
        let reply = request(&client, subject, "secret data").await;
        let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(reply["ok"], false, "{subject}: {reply}");
        let error = reply["error"].as_str().expect("an error message");
        assert!(error.contains("category"), "{subject}: {error}");
    }
    // `..` and `../x` in a subject make empty tokens (`__telestion__/log/`,
    // ``, ``): NATS never delivers such a subject to any subscriber, so the
    // request finds no responder and nothing can be written. `.x` makes two
    // tokens (`__telestion__/log/`, `x`), which the service's subscriptions
    // (`*` and `__telestion__.log.>`) do not match either.
    for subject in [
        "__telestion__/log/..",
        "__telestion__/log/../x",
        "__telestion__/log/.x",
    ] {
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            client.request(subject.to_string(), "secret data".into()),
        )
        .await;
        assert!(
            !matches!(outcome, Ok(Ok(_))),
            "{subject} was answered: {outcome:?}"
        );
    }
    let report = health(&client, "__telestion__/health").await;
    assert_eq!(report["errors"], bad.len(), "{report}");
    assert!(
        files_below(data.path()).is_empty(),
        "a rejected message wrote {:?}",
        files_below(data.path())
    );
    // The start made (and checked) the log directory; it stays empty.
    let entries: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["logs"], "a rejected message created {entries:?}");
    let logged: Vec<_> = std::fs::read_dir(data.path().join("logs"))
        .unwrap()
        .collect();
    assert!(logged.is_empty(), "a rejected message created {logged:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_messages_and_data_dir_and_drain_on_sigterm() {
    const COUNT: usize = 20_000;
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut first = spawn_ready(ops(&server, data.path(), &[]));
    let mut second = spawn_ready(ops(&server, data.path(), &[]));
    let client = server.client().await;

    // Both instances share the first part. Right after it was published the
    // first instance still has a backlog of received messages when SIGTERM
    // arrives: draining must write every one of them. The rest is published
    // after the first instance exited, and the second takes all of it.
    // (Messages the server sends in the round trip of the drain's UNSUB,
    // while a publisher keeps going, are the async-nats limit the guide's
    // shutdown chapter describes; this test does not publish during it.)
    let publish = |range: std::ops::Range<usize>| {
        let client = client.clone();
        async move {
            for n in range {
                let subject = if n % 2 == 0 {
                    "__telestion__/log/shared"
                } else {
                    "__telestion__.log.shared"
                };
                client
                    .publish(subject, json!({"n": n}).to_string().into())
                    .await
                    .unwrap();
            }
            client.flush().await.unwrap();
        }
    };
    publish(0..COUNT / 2).await;
    // Both instances answer health only after everything published before
    // the request reached them (one publisher, in order).
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(HEALTH_SUBJECT, inbox, "".into())
        .await
        .unwrap();
    for _ in 0..2 {
        tokio::time::timeout(WAIT, replies.next())
            .await
            .expect("both instances answer health")
            .unwrap();
    }
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit(WAIT), Some(0), "{}", first.stderr());
    publish(COUNT / 2..COUNT).await;

    eventually(WAIT, "every message is logged", || {
        line_count(data.path(), "shared") >= COUNT
    })
    .await;
    second.signal(libc::SIGTERM);
    assert_eq!(second.wait_exit(WAIT), Some(0), "{}", second.stderr());

    assert_each_logged_once(data.path(), "shared", COUNT, "");
    // The first instance stopped by draining, not by dying.
    assert!(first.stderr().contains("drained"), "{}", first.stderr());
}

/// The guide's advice (shutdown chapter) for publishers that must not lose a message across a
/// restart: send requests (the reply comes after the line is written) and
/// retry when none comes. Requests keep going while one of two instances
/// drains on SIGTERM; every message ends up logged exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn requests_with_retry_lose_nothing_across_a_restart() {
    const COUNT: usize = 4_000;
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut first = spawn_ready(ops(&server, data.path(), &[]));
    let mut second = spawn_ready(ops(&server, data.path(), &[]));
    let client = server.client().await;

    let send = |n: usize| {
        let client = client.clone();
        async move {
            let body = json!({"n": n}).to_string();
            let mut retries = 0;
            loop {
                let reply = tokio::time::timeout(
                    Duration::from_secs(5),
                    client.request("__telestion__/log/acked", body.clone().into()),
                )
                .await;
                if let Ok(Ok(reply)) = reply {
                    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
                    assert_eq!(reply, json!({"ok": true}));
                    return retries;
                }
                retries += 1;
                assert!(retries < 5, "message {n} was never acknowledged");
            }
        }
    };
    let sending = futures::stream::iter(0..COUNT)
        .map(send)
        .buffer_unordered(8)
        .fold(0usize, |sum, retries| async move { sum + retries });
    let stopping = async {
        eventually(WAIT, "a quarter is logged", || {
            line_count(data.path(), "acked") >= COUNT / 4
        })
        .await;
        first.signal(libc::SIGTERM);
    };
    let (retries, ()) = tokio::join!(sending, stopping);
    assert_eq!(first.wait_exit(WAIT), Some(0), "{}", first.stderr());
    second.signal(libc::SIGTERM);
    assert_eq!(second.wait_exit(WAIT), Some(0), "{}", second.stderr());

    assert_each_logged_once(data.path(), "acked", COUNT, &format!("{retries} retries"));
}

/// A `DATA_DIR` where the log directory cannot be made or written fails
/// the start: exit 1 naming `DATA_DIR` and the directory, never ready. The
/// cases hold for root too (the tests run as root, who may write to a
/// `chmod 0o555` directory): a regular file, a path below one, and sysfs,
/// which refuses new entries even to root.
///
/// Old behaviour: the log directory was first touched by the first message,
/// so the service reported ready and answered every log request with
/// `{"ok": false}`.
#[test]
fn unusable_data_dir_fails_the_start_naming_it() {
    let server = NatsServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("a-regular-file");
    std::fs::write(&file, "not a directory").unwrap();
    assert!(Path::new("/sys").is_dir(), "this test needs sysfs at /sys");
    for data_dir in [file.clone(), file.join("sub"), Path::new("/sys").to_owned()] {
        let cmd = ops(&server, &data_dir, &[]);
        let stderr = telestion_test::assert_start_fails_naming(cmd, "DATA_DIR");
        let logs = data_dir.join("logs");
        assert!(
            stderr.contains(&format!("{logs:?}")),
            "the error does not name {logs:?}; stderr:\n{stderr}"
        );
    }
}
