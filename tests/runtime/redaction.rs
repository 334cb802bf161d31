//! Point 8, secrets through a real connection: a password is kept out of
//! what a service prints by structure (where it is used), never by searching
//! other text for it, so a password that is an ordinary word leaves
//! messages intact, and one with a comma in `NATS_URL` still connects.

use telestion::{Options, Service, StartError};

use crate::start_by_hand;
use crate::support::{self, NatsServer, ServerOptions};

/// The server wants alice/secret1; the service sends the password `server`,
/// a word of the error message itself. The start fails with
/// `StartError::Connect` saying "the server rejected the credentials",
/// worded as written.
///
/// Old behaviour: the error text was "redacted" by replacing every
/// occurrence of the password, so it read "the [redacted] rejected the
/// credentials".
#[tokio::test(flavor = "multi_thread")]
async fn password_that_is_a_word_of_the_message_leaves_the_error_intact() {
    let server = NatsServer::start_with(ServerOptions::new().auth("alice", "secret1"));
    let data = tempfile::tempdir().unwrap();
    let config = support::service_config(
        &server.url(),
        "wordy",
        data.path(),
        &[("NATS_USER", "alice"), ("NATS_PASSWORD", "server")],
    );
    let error = Service::start(Options::new().signals(false).config(config))
        .await
        .expect_err("the server must refuse the wrong password");
    assert!(matches!(error, StartError::Connect { .. }), "{error:?}");
    let text = format!("{} / {error:?}", telestion::error_chain(&error));
    assert!(
        text.contains("the server rejected the credentials"),
        "{text}"
    );
    assert!(!text.contains("[redacted] rejected"), "{text}");
    assert!(!text.contains("secret1"), "{text}");
}

/// The server wants alice with the password `Top,Secret9`; the `by_hand`
/// service gets `NATS_URL=nats://alice:Top,Secret9@127.0.0.1:<port>` (the
/// comma unencoded), connects and answers health, and nothing it prints at
/// trace level, up to its exit on SIGTERM, contains `Top` or `Secret9`.
///
/// Old behaviour: `NATS_URL` was split at every comma, into
/// `nats://alice:Top` and `Secret9@127.0.0.1:<port>`: the password was cut
/// in two, the service did not authenticate, and the first half was shown
/// as a server address.
#[tokio::test(flavor = "multi_thread")]
async fn password_with_a_comma_in_nats_url_connects_and_never_shows() {
    let server = NatsServer::start_with(ServerOptions::new().auth("alice", "Top,Secret9"));
    let url = format!("nats://alice:Top,Secret9@127.0.0.1:{}", server.port);
    let observer =
        async_nats::ConnectOptions::with_user_and_password("alice".into(), "Top,Secret9".into())
            .connect(server.url())
            .await
            .expect("the observer cannot connect; is the server's password set?");
    let mut proc = start_by_hand(&url, "comma", &[("RUST_LOG", "trace")], &observer).await;
    let health = support::health(&observer, telestion::health::SUBJECT).await;
    assert_eq!(health["name"], "comma", "{health}");

    proc.signal(libc::SIGTERM);
    let (code, output) = tokio::task::spawn_blocking(move || {
        let code = proc.wait_exit(support::WAIT);
        (code, format!("{}\n{}", proc.stdout(), proc.stderr()))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "output:\n{output}");
    assert!(
        output.contains("connected to NATS"),
        "not the expected logs:\n{output}"
    );
    for part in ["Top", "Secret9"] {
        assert!(
            !output.contains(part),
            "the output shows {part:?} of the password:\n{output}"
        );
    }
}
