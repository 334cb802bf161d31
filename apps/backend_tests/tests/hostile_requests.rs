//! Error replies are bounded and say nothing secret (issue 23, point 4): a
//! request with a 1 MB JSON key, and one with a 1 MB value where a number
//! belongs, to `db_query`, `telecommand` and the `quickstart` sample. Each
//! is answered at once with an error reply of a few hundred bytes (the
//! echo of the input cut, with a marker), no log line of the service is
//! longer than a few kilobytes, and no reply names a server file path.
//!
//! Old behaviour: the decoder's error echoed the whole key or value into
//! the reply, which was then too large to send (the caller waited 10 s for
//! nothing), and into a 1 MB log line per request; `db_query` answered 503
//! with the database's path.

use std::time::{Duration, Instant};

use telestion_test::{
    NatsServer, Process, ServerOptions, error_header, service_command, spawn_ready,
    workspace_example,
};

/// An error reply comes within this (the old failure waited 10 s).
const ANSWER: Duration = Duration::from_secs(5);
/// The largest error reply accepted (headers and body together).
const MAX_REPLY: usize = 4096;
/// The longest log line accepted.
const MAX_LOG_LINE: usize = 8192;

/// A 1 MB key, and a 1 MB string where `field` expects something else.
fn hostile_bodies(field: &str) -> [(String, String); 2] {
    let huge = "k".repeat(1_000_000);
    [
        ("1 MB key".into(), format!("{{\"{huge}\": 1}}")),
        (
            format!("1 MB value of {field}"),
            format!("{{\"{field}\": \"{huge}\"}}"),
        ),
    ]
}

/// Sends `body` to `subject` and checks the error reply; returns its text.
async fn bounded_error(
    client: &async_nats::Client,
    subject: &str,
    what: &str,
    body: String,
) -> String {
    let started = Instant::now();
    let reply = tokio::time::timeout(ANSWER, client.request(subject.to_owned(), body.into()))
        .await
        .unwrap_or_else(|_| panic!("{subject}, {what}: no answer within {ANSWER:?}"))
        .unwrap_or_else(|e| panic!("{subject}, {what}: {e}"));
    let error = error_header(&reply)
        .unwrap_or_else(|| panic!("{subject}, {what}: not an error reply: {reply:?}"));
    let size = reply.payload.len() + error.len();
    assert!(
        size <= MAX_REPLY,
        "{subject}, {what}: an error reply of {size} bytes"
    );
    // An echo of the input is cut, by the framework (`… [N bytes cut] …`)
    // or by the service itself (`...`).
    assert!(
        !error.contains("kkkkkkkk") || error.contains("bytes cut]") || error.contains("..."),
        "{subject}, {what}: the echo is not marked as cut: {error}"
    );
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(body["error"].as_str(), Some(error.as_str()));
    assert!(started.elapsed() < ANSWER);
    error
}

fn assert_short_log_lines(process: &Process, name: &str) {
    let stderr = process.stderr();
    let longest = stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest <= MAX_LOG_LINE,
        "{name} logged a line of {longest} bytes"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_echoes_are_cut_and_answered() {
    let server = NatsServer::start_with(ServerOptions::new().jetstream());
    let data = tempfile::tempdir().unwrap();
    let start = |binary: std::path::PathBuf, name: &str| {
        spawn_ready(service_command(binary, &server, name, data.path()))
    };
    let (db_query, telecommand, quickstart) = tokio::task::block_in_place(|| {
        (
            start(backend_tests::binary("db_query"), "db_query"),
            start(backend_tests::binary("telecommand"), "telecommand"),
            start(
                workspace_example("telestion-examples", "quickstart"),
                "converter",
            ),
        )
    });
    let client = server.client().await;

    for (subject, field) in [
        ("telemetry.query.latest", "n"),
        ("telecommand.send", "command"),
        ("sensors.fahrenheit", "celsius"),
    ] {
        for (what, body) in hostile_bodies(field) {
            bounded_error(&client, subject, &what, body).await;
        }
    }

    // The database does not exist yet: 503, without the server's path.
    let reply = client
        .request("telemetry.query.count", "{}".into())
        .await
        .unwrap();
    let error = error_header(&reply).expect("an error reply");
    let data_dir = data.path().to_string_lossy();
    assert!(
        !error.contains(&*data_dir)
            && !String::from_utf8_lossy(&reply.payload).contains(&*data_dir),
        "the reply names a server path: {error}"
    );
    assert!(error.contains("has db_writer run"), "{error}");

    for (process, name) in [
        (&db_query, "db_query"),
        (&telecommand, "telecommand"),
        (&quickstart, "quickstart"),
    ] {
        assert_short_log_lines(process, name);
    }
}
