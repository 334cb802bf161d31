//! Secrets never leak (logs at every level in both formats, error messages,
//! `Debug` output, the testbed's config echo, health replies), and real
//! deployments' authentication works: mutual TLS with certificates made in
//! the test, NKeys, and credentials files (user JWT + seed) against a server
//! in operator (decentralized JWT) mode, with JWTs made in the test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use telestion::{Options, Route, Service, StartError};

use crate::support::{
    NatsServer, Process, ServerOptions, clean_command, free_port, run_with_timeout,
};
use crate::support::{Pki, capture_logs, service_config, start_service, try_health};

const PASSWORD: &str = "Zq7xK9-pass-4-test";
const WRONG: &str = "Wr0ng-pass-4-test";

async fn fail(_body: String) -> Result<(), String> {
    Err("failing on purpose".into())
}
async fn echo(body: bytes::Bytes) -> bytes::Bytes {
    body
}

fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{what} contains the secret {secret:?}:\n{text}"
        );
    }
}

#[tokio::test]
async fn password_never_in_logs_errors_debug_or_health() {
    let (logs, _guard) = capture_logs();
    let mut server = NatsServer::with_auth("svc", PASSWORD);
    let data = tempfile::tempdir().unwrap();
    let creds = [("NATS_USER", "svc"), ("NATS_PASSWORD", PASSWORD)];
    let service = start_service(&server.url(), "secrets", data.path(), &creds).await;
    service
        .subscribe(Route::new("secret.fail", fail))
        .await
        .unwrap();
    service
        .subscribe(Route::new("secret.echo", echo))
        .await
        .unwrap();
    let observer =
        async_nats::ConnectOptions::with_user_and_password("svc".into(), PASSWORD.into())
            .connect(server.url())
            .await
            .unwrap();
    let reply = observer.request("secret.fail", "x".into()).await.unwrap();
    assert_clean(
        "an error reply",
        &String::from_utf8_lossy(&reply.payload),
        &[PASSWORD],
    );
    let health = try_health(&observer).await.unwrap();
    assert_eq!(health["errors"], 1);
    assert_clean("the health reply", &health.to_string(), &[PASSWORD]);
    // A reconnect logs a lot at debug and trace level.
    server.restart();
    crate::support::eventually(Duration::from_secs(15), "reconnect", || {
        service.is_connected()
    })
    .await;
    assert_clean("Service Debug", &format!("{service:?}"), &[PASSWORD]);
    assert_clean(
        "Config Debug",
        &format!("{:?}", service.config()),
        &[PASSWORD],
    );
    assert_clean(
        "the redacted config",
        &service.config().to_redacted_json().to_string(),
        &[PASSWORD],
    );
    // The password is really in use (not a vacuous test).
    assert_eq!(
        service.config().get_str("NATS_PASSWORD").as_deref(),
        Some(PASSWORD)
    );
    service.shutdown();
    service.drain().await;

    // Wrong password: a clear error that does not show it.
    let error = Service::start(Options::new().config(service_config(
        &server.url(),
        "secrets",
        data.path(),
        &[("NATS_USER", "svc"), ("NATS_PASSWORD", WRONG)],
    )))
    .await
    .unwrap_err();
    assert!(matches!(error, StartError::Connect { .. }));
    let text = format!(
        "{error} / {error:?} / {:?}",
        std::error::Error::source(&error)
    );
    assert!(text.contains("rejected the credentials"), "{text}");
    assert_clean("the wrong-password error", &text, &[WRONG, PASSWORD]);

    // Unreachable server, password in NATS_URL as well as NATS_PASSWORD.
    let closed = free_port();
    let error = Service::start(Options::new().config(service_config(
        &format!("nats://svc:{PASSWORD}@127.0.0.1:{closed}"),
        "secrets",
        data.path(),
        &creds,
    )))
    .await
    .unwrap_err();
    let text = format!("{error} / {error:?}");
    assert!(text.contains("no NATS server reachable"), "{text}");
    assert_clean("the unreachable error", &text, &[PASSWORD]);

    let text = logs.text();
    assert!(text.contains("TRACE"), "trace logs were not captured");
    assert!(
        text.contains("write operation: CONNECT"),
        "no CONNECT in the trace"
    );
    assert_clean("the logs", &text, &[PASSWORD, WRONG]);
}

#[tokio::test]
async fn password_in_nats_url_is_not_leaked() {
    let (logs, _guard) = capture_logs();
    let mut server = NatsServer::with_auth("svc", PASSWORD);
    let data = tempfile::tempdir().unwrap();
    let url = format!("nats://svc:{PASSWORD}@127.0.0.1:{}", server.port);
    let service = start_service(&url, "secrets-url", data.path(), &[]).await;
    server.restart();
    crate::support::eventually(Duration::from_secs(15), "reconnect", || {
        service.is_connected()
    })
    .await;
    assert_clean(
        "Config Debug",
        &format!("{:?}", service.config()),
        &[PASSWORD],
    );
    assert_clean(
        "the redacted config",
        &service.config().to_redacted_json().to_string(),
        &[PASSWORD],
    );
    service.shutdown();
    service.drain().await;
    assert_clean("the logs", &logs.text(), &[PASSWORD]);
}

/// Runs the `soak` example service at trace level in `format`, exercises it
/// (requests, an error, health, a reconnect, SIGTERM) and greps everything it
/// printed.
#[test]
fn password_never_in_process_output() {
    let mut server = NatsServer::with_auth("svc", PASSWORD);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for format in ["human", "json"] {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = clean_command(env!("CARGO_BIN_EXE_soak"));
        cmd.env("RUST_LOG", "trace")
            .env("LOG_FORMAT", format)
            .env("NATS_URL", server.url())
            .env("NATS_USER", "svc")
            .env("NATS_PASSWORD", PASSWORD)
            .env("SERVICE_NAME", "soak")
            .env("DATA_DIR", data.path());
        let mut proc = Process::spawn(cmd);
        proc.wait_for_stderr("ready", Duration::from_secs(20));
        let client = runtime.block_on(async {
            async_nats::ConnectOptions::with_user_and_password("svc".into(), PASSWORD.into())
                .connect(server.url())
                .await
                .unwrap()
        });
        runtime.block_on(async {
            let reply = client.request("soak.echo", "hi".into()).await.unwrap();
            assert_eq!(reply.payload, "hi".as_bytes());
            let reply = client.request("soak.fail", "x".into()).await.unwrap();
            assert!(reply.headers.is_some());
            let health = try_health(&client).await.unwrap();
            assert_clean("the health reply", &health.to_string(), &[PASSWORD]);
        });
        server.restart();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while proc.stderr().matches("connected to NATS").count() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "no reconnect:\n{}",
                proc.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proc.signal(libc::SIGTERM);
        assert_eq!(proc.wait_exit(Duration::from_secs(20)), Some(0));
        let output = format!("{}\n{}", proc.stdout(), proc.stderr());
        assert!(
            output.contains("write operation: CONNECT"),
            "not logging at trace level:\n{output}"
        );
        if format == "json" {
            assert!(output.contains("\"level\":\"TRACE\""), "{output}");
        }
        assert_clean(&format!("the {format} logs"), &output, &[PASSWORD]);
    }
}

/// The testbed (the ordinary start-up path) never echoes the password, in
/// its config echo, its logs or its error.
#[test]
fn testbed_never_echoes_the_password() {
    let server = NatsServer::with_auth("svc", PASSWORD);
    for (password, started) in [(PASSWORD, true), (WRONG, false)] {
        for format in ["human", "json"] {
            let data = tempfile::tempdir().unwrap();
            let mut cmd = clean_command(env!("CARGO_BIN_EXE_testbed"));
            cmd.env("RUST_LOG", "trace")
                .env("LOG_FORMAT", format)
                .env("NATS_URL", server.url())
                .env("NATS_USER", "svc")
                .env("NATS_PASSWORD", password)
                .env("SERVICE_NAME", "testbed")
                .env("DATA_DIR", data.path());
            let output = run_with_timeout(cmd, Duration::from_secs(30));
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last: serde_json::Value =
                serde_json::from_str(stdout.lines().last().expect("no output")).unwrap();
            assert_eq!(last["started"], started, "{stdout}\n{stderr}");
            if started {
                assert!(last["config"]["NATS_PASSWORD"].is_string());
            }
            assert_clean(
                "the testbed's output",
                &format!("{stdout}\n{stderr}"),
                &[password],
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_certificates_made_in_the_test() {
    let pki = tempfile::tempdir().unwrap();
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let good = Pki::generate(pki.path(), "good");
    let other = Pki::generate(pki.path(), "other");
    let (ca, server_cert, server_key, client_cert, client_key) = (
        path(good.ca),
        path(good.server_cert),
        path(good.server_key),
        path(good.client_cert),
        path(good.client_key),
    );
    let (other_ca, other_cert, other_key) = (
        path(other.ca),
        path(other.client_cert),
        path(other.client_key),
    );
    let server = NatsServer::start_with(ServerOptions {
        config: Some(format!(
            "tls {{\n  cert_file: \"{server_cert}\"\n  key_file: \"{server_key}\"\n  \
             ca_file: \"{ca}\"\n  verify: true\n  timeout: 5\n}}"
        )),
        ..Default::default()
    });
    let url = format!("tls://127.0.0.1:{}", server.port);
    let data = tempfile::tempdir().unwrap();
    let tls = |ca: &str, cert: &str, key: &str| {
        vec![
            ("NATS_TLS_CA".to_owned(), ca.to_owned()),
            ("NATS_TLS_CERT".to_owned(), cert.to_owned()),
            ("NATS_TLS_KEY".to_owned(), key.to_owned()),
        ]
    };
    let start_with = |pairs: Vec<(String, String)>| {
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Service::start(Options::new().config(service_config(&url, "tls", data.path(), &pairs)))
    };

    let service = start_with(tls(&ca, &client_cert, &client_key))
        .await
        .expect("TLS start");
    service
        .subscribe(Route::new("tls.echo", echo))
        .await
        .unwrap();
    assert!(service.client().unwrap().server_info().tls_required);
    let observer = async_nats::ConnectOptions::new()
        .add_root_certificates(ca.clone().into())
        .add_client_certificate(client_cert.clone().into(), client_key.clone().into())
        .require_tls(true)
        .connect(url.as_str())
        .await
        .unwrap();
    let reply = observer
        .request("tls.echo", "over tls".into())
        .await
        .unwrap();
    assert_eq!(reply.payload, "over tls".as_bytes());
    assert_eq!(
        try_health(&observer).await.unwrap()["service"],
        service.id()
    );
    service.shutdown();
    service.drain().await;

    // The wrong CA: the server's certificate is not trusted.
    let error = start_with(tls(&other_ca, &client_cert, &client_key))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("TLS failed") && error.contains("NATS_TLS_CA"),
        "{error}"
    );
    // A client certificate from another CA: the server refuses it.
    let started = std::time::Instant::now();
    let error = start_with(tls(&ca, &other_cert, &other_key))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("TLS failed"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(15), "{error}");
    // No client certificate at all.
    let error = start_with(vec![("NATS_TLS_CA".into(), ca.clone())])
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("TLS failed"), "{error}");
    // A missing file is named.
    let error = start_with(tls("/nonexistent/ca.pem", &client_cert, &client_key))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("NATS_TLS_CA") && error.contains("/nonexistent/ca.pem"),
        "{error}"
    );
}

#[tokio::test]
async fn nkey_authentication_and_seed_redaction() {
    let (logs, _guard) = capture_logs();
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let server = NatsServer::start_with(ServerOptions {
        config: Some(format!(
            "authorization {{\n  users = [ {{ nkey: \"{}\" }} ]\n}}",
            user.public_key()
        )),
        ..Default::default()
    });
    let data = tempfile::tempdir().unwrap();
    // Without the NKey the server refuses the connection ...
    let error = Service::start(Options::new().config(service_config(
        &server.url(),
        "nkey",
        data.path(),
        &[],
    )))
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("rejected the credentials"), "{error}");
    // ... with it, the service works.
    let service = start_service(&server.url(), "nkey", data.path(), &[("NATS_NKEY", &seed)]).await;
    service
        .subscribe(Route::new("nkey.echo", echo))
        .await
        .unwrap();
    let observer = async_nats::ConnectOptions::with_nkey(seed.clone())
        .connect(server.url())
        .await
        .unwrap();
    let reply = observer
        .request("nkey.echo", "signed".into())
        .await
        .unwrap();
    assert_eq!(reply.payload, "signed".as_bytes());
    assert_clean("Service Debug", &format!("{service:?}"), &[&seed]);
    assert_clean(
        "the redacted config",
        &service.config().to_redacted_json().to_string(),
        &[&seed],
    );
    service.shutdown();
    service.drain().await;
    // A different user's seed: rejected, and the seed is not shown.
    let other = nkeys::KeyPair::new_user().seed().unwrap();
    let error = Service::start(Options::new().config(service_config(
        &server.url(),
        "nkey",
        data.path(),
        &[("NATS_NKEY", &other)],
    )))
    .await
    .unwrap_err();
    let text = format!("{error} / {error:?}");
    assert!(text.contains("rejected the credentials"), "{text}");
    assert_clean("the NKey error", &text, &[&other, &seed]);
    assert_clean("the logs", &logs.text(), &[&seed, &other]);
}

#[tokio::test]
async fn credentials_file_errors_are_clear() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let error = Service::start(Options::new().config(service_config(
        &server.url(),
        "creds",
        data.path(),
        &[("NATS_CREDS", "/nonexistent/user.creds")],
    )))
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("cannot read credentials file") && error.contains("NATS_CREDS"),
        "{error}"
    );
}

/// A NATS JWT (v2) about `subject`, issued and signed by `issuer`; `nats` is
/// the type-specific part of the claims.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    nats_jwt_signed_by(&issuer.public_key(), issuer, subject, name, nats)
}

/// Like [`nats_jwt`], but claiming `issuer` while signed by `signer` (which
/// only matches when `signer` is the issuer's key pair).
fn nats_jwt_signed_by(
    issuer: &str,
    signer: &nkeys::KeyPair,
    subject: &str,
    name: &str,
    mut nats: serde_json::Value,
) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    nats["version"] = 2.into();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let claims = serde_json::json!({
        // Unique per token (the server does not recompute it).
        "jti": format!(
            "T{}{}{}",
            now.as_nanos(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ),
        "iat": now.as_secs(),
        "iss": issuer,
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let header = serde_json::json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = signer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// An operator with one account, as `nsc` would make them.
struct Operator {
    jwt: String,
    account: nkeys::KeyPair,
    account_jwt: String,
}

impl Operator {
    fn new() -> Operator {
        let key = nkeys::KeyPair::new_operator();
        let jwt = nats_jwt(
            &key,
            &key.public_key(),
            "test-operator",
            serde_json::json!({"type": "operator"}),
        );
        let account = nkeys::KeyPair::new_account();
        let account_jwt = account_jwt(&key, &account);
        Operator {
            jwt,
            account,
            account_jwt,
        }
    }

    /// A server in operator (decentralized JWT) mode that knows the account.
    fn server(&self) -> NatsServer {
        NatsServer::start_with(ServerOptions {
            config: Some(format!(
                "operator: \"{}\"\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{}\"\n}}",
                self.jwt,
                self.account.public_key(),
                self.account_jwt
            )),
            ..Default::default()
        })
    }
}

/// An account JWT for `account`, issued by the operator `operator`.
fn account_jwt(operator: &nkeys::KeyPair, account: &nkeys::KeyPair) -> String {
    nats_jwt(
        operator,
        &account.public_key(),
        "test-account",
        serde_json::json!({
            "type": "account",
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1,
                "exports": -1, "wildcards": true, "conn": -1, "leaf": -1
            },
            "default_permissions": {"pub": {}, "sub": {}},
        }),
    )
}

/// A new user of `account` as the text of a credentials file; returns
/// (file text, user seed).
fn user_creds(account: &nkeys::KeyPair, name: &str) -> (String, String) {
    user_creds_signed_by(&account.public_key(), account, name)
}

/// A credentials file for a new user whose JWT names `account` as issuer but
/// is signed by `signer`; returns (file text, user seed).
fn user_creds_signed_by(account: &str, signer: &nkeys::KeyPair, name: &str) -> (String, String) {
    let user = nkeys::KeyPair::new_user();
    let jwt = nats_jwt_signed_by(
        account,
        signer,
        &user.public_key(),
        name,
        serde_json::json!({
            "type": "user",
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
        }),
    );
    let seed = user.seed().unwrap();
    let text = format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    );
    (text, seed)
}

/// Writes `text` as `name` in `dir`; returns the path.
fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// A credentials file (user JWT + seed, as `nsc` writes them) authenticates
/// against a server in operator mode; the seed never shows.
#[tokio::test]
async fn creds_file_authenticates_in_operator_mode() {
    let (logs, _guard) = capture_logs();
    let operator = Operator::new();
    let server = operator.server();
    let files = tempfile::tempdir().unwrap();
    let (creds, seed) = user_creds(&operator.account, "service");
    let creds_path = write_file(files.path(), "service.creds", &creds);
    let (observer_creds, observer_seed) = user_creds(&operator.account, "observer");
    let data = tempfile::tempdir().unwrap();
    // The server is really in operator mode: it refuses a client without a
    // user JWT.
    let error = async_nats::connect(server.url()).await.unwrap_err();
    assert_eq!(
        error.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{error}"
    );

    let service = start_service(
        &server.url(),
        "creds",
        data.path(),
        &[("NATS_CREDS", &creds_path)],
    )
    .await;
    service
        .subscribe(Route::new("creds.echo", echo))
        .await
        .unwrap();
    service
        .subscribe(Route::new("creds.fail", fail))
        .await
        .unwrap();
    let observer = async_nats::ConnectOptions::with_credentials(&observer_creds)
        .unwrap()
        .connect(server.url())
        .await
        .expect("a second user of the account cannot connect");
    let reply = observer
        .request("creds.echo", "with a JWT".into())
        .await
        .unwrap();
    assert_eq!(reply.payload, "with a JWT".as_bytes());
    let reply = observer.request("creds.fail", "x".into()).await.unwrap();
    assert!(reply.headers.is_some());
    let health = try_health(&observer).await.expect("no health reply");
    assert_eq!(health["service"], service.id());
    assert_eq!(health["errors"], 1);

    let secrets = [seed.as_str(), observer_seed.as_str()];
    assert_clean(
        "the error reply",
        &String::from_utf8_lossy(&reply.payload),
        &secrets,
    );
    assert_clean("the health reply", &health.to_string(), &secrets);
    assert_clean("Service Debug", &format!("{service:?}"), &secrets);
    assert_clean(
        "the redacted config",
        &service.config().to_redacted_json().to_string(),
        &secrets,
    );
    service.shutdown();
    service.drain().await;
    let text = logs.text();
    assert!(
        text.contains("write operation: CONNECT"),
        "no CONNECT in the trace"
    );
    assert_clean("the logs", &text, &secrets);
}

/// In operator mode a start without credentials, and one with a user of an
/// account the server does not know, fail with a clear error that does not
/// show the seed.
#[tokio::test]
async fn creds_file_rejections_are_clear() {
    let (logs, _guard) = capture_logs();
    let operator = Operator::new();
    let server = operator.server();
    let files = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let start_with = |pairs: &[(&str, &str)]| {
        Service::start(Options::new().config(service_config(
            &server.url(),
            "creds",
            data.path(),
            pairs,
        )))
    };

    // No credentials at all.
    let error = start_with(&[]).await.unwrap_err();
    assert!(matches!(error, StartError::Connect { .. }));
    let text = error.to_string();
    assert!(text.contains("rejected the credentials"), "{text}");

    // A user of an account the server does not know ...
    let stranger = nkeys::KeyPair::new_account();
    let (creds, seed) = user_creds(&stranger, "stranger");
    let path = write_file(files.path(), "stranger.creds", &creds);
    let error = start_with(&[("NATS_CREDS", &path)]).await.unwrap_err();
    let text = format!("{error} / {error:?}");
    assert!(text.contains("rejected the credentials"), "{text}");
    assert_clean("the stranger's error", &text, &[&seed]);

    // ... and a user JWT claiming the known account but signed by another
    // account's key: the signature does not match.
    let (forged, forged_seed) =
        user_creds_signed_by(&operator.account.public_key(), &stranger, "forger");
    let path = write_file(files.path(), "forged.creds", &forged);
    let error = start_with(&[("NATS_CREDS", &path)]).await.unwrap_err();
    let text = format!("{error} / {error:?}");
    assert!(text.contains("rejected the credentials"), "{text}");
    assert_clean("the forger's error", &text, &[&forged_seed]);

    // The operator mode is really in use: a user of the known account gets in.
    let (creds, good_seed) = user_creds(&operator.account, "service");
    let path = write_file(files.path(), "service.creds", &creds);
    let service = start_with(&[("NATS_CREDS", &path)]).await.unwrap();
    service.shutdown();
    service.drain().await;
    assert_clean("the logs", &logs.text(), &[&seed, &forged_seed, &good_seed]);
}
