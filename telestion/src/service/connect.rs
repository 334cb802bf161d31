//! Connecting to NATS: server list, authentication, TLS, reconnect events.
//!
//! Config keys read here:
//!
//! | key | meaning |
//! | --- | --- |
//! | `NATS_URL` | one server or a comma-separated list (`host:port`, `nats://`, `tls://`) |
//! | `NATS_USER`, `NATS_PASSWORD` | user/password authentication |
//! | `NATS_CREDS` | path of a NATS credentials file (JWT + NKey seed) |
//! | `NATS_NKEY` | an NKey seed (`SU...`) |
//! | `NATS_TLS_CA` | PEM file of the CA that signed the server certificate |
//! | `NATS_TLS_CERT`, `NATS_TLS_KEY` | PEM client certificate and key (mutual TLS) |
//! | `NATS_PUBLISH_BUFFER` | outgoing messages buffered while disconnected (default 2048) |
//! | `NATS_SUBSCRIPTION_CAPACITY` | messages buffered per subscription before the client drops them as a slow consumer (default 65536) |
//!
//! The first connection fails within 10 s with a clear error (unreachable,
//! rejected credentials, TLS failure); its first pass tries every server of
//! the list without delay. After that the client reconnects forever (each
//! pass through the list first without delay, then with a back-off of
//! 100 ms doubling up to 2 s), resubscribes, and logs every disconnect and
//! reconnect.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, Event};

use crate::config::Config;
use crate::config::nats_url;
use crate::error::StartError;
use crate::observe::connection::ConnectionWatch;
use crate::observe::error_counter::ErrorCounter;

/// How long the first connection may take before the start fails.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Default number of outgoing messages the client buffers (for example while
/// disconnected); see `NATS_PUBLISH_BUFFER`.
pub(crate) const DEFAULT_PUBLISH_BUFFER: usize = 2048;

/// Default number of messages buffered per subscription before the client
/// drops further ones (a slow consumer); see `NATS_SUBSCRIPTION_CAPACITY`.
pub(crate) const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 65536;

/// The keys read here (for `--help`).
pub(crate) const KEYS: [(&str, &str); 10] = [
    (
        "NATS_URL",
        "server, or comma-separated cluster list (required)",
    ),
    ("NATS_USER", "user name"),
    ("NATS_PASSWORD", "password"),
    (
        "NATS_PASSWORD_FILE",
        "a file holding the password (when NATS_PASSWORD is not set)",
    ),
    ("NATS_CREDS", "credentials file (JWT + NKey seed)"),
    ("NATS_NKEY", "NKey seed"),
    (
        "NATS_TLS_CA",
        "PEM CA file to verify the server (implies TLS)",
    ),
    (
        "NATS_TLS_CERT",
        "PEM client certificate (with NATS_TLS_KEY)",
    ),
    ("NATS_TLS_KEY", "PEM client key (with NATS_TLS_CERT)"),
    (
        "NATS_PUBLISH_BUFFER",
        "messages buffered while disconnected (default 2048)",
    ),
];

/// A buffer size from config key `key` (at least 1), or `default`.
fn capacity(config: &Config, key: &str, default: usize) -> Result<usize, StartError> {
    Ok(config.get::<usize>(key)?.unwrap_or(default).max(1))
}

fn non_empty(config: &Config, key: &str) -> Option<String> {
    config.get_str(key).filter(|v| !v.is_empty())
}

/// The reconnect delay for the `attempt`-th try (counted from 1 since the
/// last successful connection) with `servers` servers: none for the first
/// pass through the list, then 100 ms doubling up to 2 s.
pub(crate) fn reconnect_delay(attempt: usize, servers: usize) -> Duration {
    let after_first_pass = attempt.saturating_sub(servers.max(1));
    if after_first_pass == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis((100u64 << (after_first_pass.min(5) - 1)).min(2000))
    }
}

/// Connects with the settings of `config`. Connection events are logged,
/// disconnects and slow-consumer events counted in `errors`, and the
/// connection's condition kept in `watch`.
pub(crate) async fn connect(
    config: &Config,
    service_name: &str,
    subscription_capacity: usize,
    errors: Arc<ErrorCounter>,
    watch: Arc<ConnectionWatch>,
) -> Result<async_nats::Client, StartError> {
    config.check_utf8(&KEYS.map(|(key, _)| key))?;
    let url = non_empty(config, "NATS_URL").unwrap_or_default();
    let shown = nats_url::display(&url);
    let fail = |reason: String, source: Option<async_nats::ConnectError>| StartError::Connect {
        url: shown.clone(),
        reason,
        source,
    };
    let servers = nats_url::parse(&url);
    if servers.is_empty() {
        return Err(fail("NATS_URL is empty".into(), None));
    }
    // async-nats 0.51 ignores credentials in URLs (and prints URLs in its
    // debug logs), so they are taken out and passed as connect options. All
    // servers that carry credentials must carry the same ones.
    let mut url_auth = None;
    for server in &servers {
        if let Some(found) = server.credentials() {
            if url_auth.as_ref().is_some_and(|known| *known != found) {
                return Err(fail(
                    "the servers in NATS_URL carry different credentials; put them in \
                     NATS_USER/NATS_PASSWORD instead"
                        .into(),
                    None,
                ));
            }
            url_auth = Some(found);
        }
    }
    let addresses: Vec<String> = servers.iter().map(nats_url::Server::address).collect();
    let count = addresses.len();

    let mut options = ConnectOptions::new()
        .name(service_name)
        // Replies come to the service's own inbox prefix, the only one
        // its generated permissions let it subscribe to.
        .custom_inbox_prefix(crate::service::uses::inbox_prefix(service_name))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .reconnect_delay_callback(move |attempt| reconnect_delay(attempt, count))
        .client_capacity(capacity(
            config,
            "NATS_PUBLISH_BUFFER",
            DEFAULT_PUBLISH_BUFFER,
        )?)
        .subscription_capacity(capacity(
            config,
            "NATS_SUBSCRIPTION_CAPACITY",
            subscription_capacity,
        )?);

    let password = match (
        non_empty(config, "NATS_PASSWORD"),
        non_empty(config, "NATS_PASSWORD_FILE"),
    ) {
        (Some(password), _) => Some(password),
        (None, Some(file)) => {
            // File work off the async workers.
            let read = tokio::task::spawn_blocking(move || password_from_file(&file))
                .await
                .unwrap_or_else(|e| Err(format!("cannot read NATS_PASSWORD_FILE: {e}")));
            Some(read.map_err(|reason| fail(reason, None))?)
        }
        (None, None) => None,
    };
    match (non_empty(config, "NATS_USER"), password) {
        (Some(user), password) => {
            options = options.user_and_password(user, password.unwrap_or_default());
        }
        (None, Some(_)) => {
            return Err(fail(
                "NATS_PASSWORD is set but NATS_USER is not; set both".into(),
                None,
            ));
        }
        (None, None) => match url_auth {
            Some((user, Some(password))) => options = options.user_and_password(user, password),
            Some((token, None)) => options = options.token(token),
            None => {}
        },
    }
    if let Some(creds) = non_empty(config, "NATS_CREDS") {
        check_readable(&creds, "NATS_CREDS")
            .map_err(|r| fail(format!("cannot read credentials file: {r}"), None))?;
        options = options.credentials_file(&creds).await.map_err(|_| {
            fail(
                format!(
                    "cannot use credentials file {creds:?} (NATS_CREDS): not a valid creds file"
                ),
                None,
            )
        })?;
    }
    if let Some(seed) = non_empty(config, "NATS_NKEY") {
        options = options.nkey(seed);
    }
    if let Some(ca) = non_empty(config, "NATS_TLS_CA") {
        check_readable(&ca, "NATS_TLS_CA").map_err(|r| fail(r, None))?;
        options = options
            .add_root_certificates(PathBuf::from(ca))
            .require_tls(true);
    }
    match (
        non_empty(config, "NATS_TLS_CERT"),
        non_empty(config, "NATS_TLS_KEY"),
    ) {
        (Some(cert), Some(key)) => {
            check_readable(&cert, "NATS_TLS_CERT").map_err(|r| fail(r, None))?;
            check_readable(&key, "NATS_TLS_KEY").map_err(|r| fail(r, None))?;
            options = options
                .add_client_certificate(PathBuf::from(cert), PathBuf::from(key))
                .require_tls(true);
        }
        (None, None) => {}
        _ => {
            return Err(fail(
                "NATS_TLS_CERT and NATS_TLS_KEY must be set together".into(),
                None,
            ));
        }
    }

    let event_errors = errors.clone();
    options = options.event_callback(move |event| {
        let errors = event_errors.clone();
        let watch = watch.clone();
        async move { log_event(event, &errors, &watch) }
    });

    match tokio::time::timeout(START_TIMEOUT, options.connect(addresses)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => {
            let reason = match e.kind() {
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    "the server rejected the credentials; check NATS_USER/NATS_PASSWORD, \
                     NATS_CREDS or NATS_NKEY"
                        .to_owned()
                }
                ConnectErrorKind::Tls => tls_failed(),
                ConnectErrorKind::Io if is_tls_failure(&e) => tls_failed(),
                ConnectErrorKind::Io | ConnectErrorKind::TimedOut | ConnectErrorKind::Dns => {
                    "no NATS server reachable; is nats-server running there?".to_owned()
                }
                _ => "the connection failed".to_owned(),
            };
            Err(fail(reason, Some(e)))
        }
        Err(_) => Err(fail(
            format!(
                "no connection within {} s; is the server reachable?",
                START_TIMEOUT.as_secs()
            ),
            None,
        )),
    }
}

fn tls_failed() -> String {
    "TLS failed; check NATS_TLS_CA, NATS_TLS_CERT and NATS_TLS_KEY".to_owned()
}

/// Whether a connect error comes from TLS: rustls reports certificate
/// problems and the server's TLS alerts as I/O errors that wrap a
/// `rustls::Error`; found by type along the source chain.
fn is_tls_failure(error: &async_nats::ConnectError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(current) = source {
        if current.is::<async_nats::rustls::Error>() {
            return true;
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<async_nats::rustls::Error>())
        {
            return true;
        }
        source = current.source();
    }
    false
}

fn check_readable(path: &str, key: &str) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_file() => Ok(()),
        Ok(_) => Err(format!("{path:?} ({key}) is not a regular file")),
        Err(e) => Err(format!("cannot read {path:?} ({key}): {e}")),
    }
}

/// Whether a client error says that the server refused the credentials on
/// a reconnect. async-nats reports a failed reconnect as
/// `ClientError::Other` holding the text of its `ConnectErrorKind`; this
/// compares with the text of the two kinds that mean the credentials
/// (the library's own rendering of those kinds, not a search in free text).
fn refused_credentials(error: &async_nats::ClientError) -> bool {
    let async_nats::ClientError::Other(kind) = error else {
        return false;
    };
    [
        ConnectErrorKind::AuthorizationViolation,
        ConnectErrorKind::Authentication,
    ]
    .iter()
    .any(|refused| *kind == refused.to_string())
}

/// Whether a server error is a permissions violation (`-ERR 'Permissions
/// Violation for Publish to ...'`).
fn permission_violation(error: &async_nats::ServerError) -> bool {
    error
        .to_string()
        .to_ascii_lowercase()
        .contains("permissions violation")
}

/// The password in `path` (NATS_PASSWORD_FILE): its first line, from a
/// regular file of at most 4 KiB.
fn password_from_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read NATS_PASSWORD_FILE {path:?}: {e}"))?;
    let metadata = file
        .metadata()
        .map_err(|e| format!("cannot read NATS_PASSWORD_FILE {path:?}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("NATS_PASSWORD_FILE {path:?} is not a regular file"));
    }
    let mut text = String::new();
    file.take(4096)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read NATS_PASSWORD_FILE {path:?}: {e}"))?;
    let password = text.lines().next().unwrap_or("").to_owned();
    if password.is_empty() {
        return Err(format!("NATS_PASSWORD_FILE {path:?} is empty"));
    }
    Ok(password)
}

fn log_event(event: Event, errors: &ErrorCounter, watch: &ConnectionWatch) {
    match event {
        Event::Connected => {
            watch.connected();
            tracing::info!("connected to NATS");
        }
        Event::Disconnected => {
            // Messages in flight (to and from this service) may be lost
            // while it reconnects: an error, as health and metrics show.
            watch.disconnected();
            errors.record();
            tracing::warn!(
                "disconnected from NATS (counted as an error: messages in flight may be lost); \
                 reconnecting"
            );
        }
        Event::LameDuckMode => {
            tracing::warn!("NATS server entered lame duck mode; will move to another server")
        }
        Event::SlowConsumer(sid) => {
            errors.record();
            tracing::error!(
                sid,
                "slow consumer: a handler fell behind and the client dropped messages \
                 (counted as an error)"
            );
        }
        Event::ServerError(async_nats::ServerError::AuthorizationViolation) => {
            watch.rejected();
            errors.record();
            tracing::error!(
                "the NATS server rejected this service's credentials (authorization violation)"
            );
        }
        Event::ServerError(e) if permission_violation(&e) => {
            // Something the service did is not in its permissions: a
            // message not sent or a subscription not made.
            errors.record();
            tracing::error!(
                error = %e,
                "the NATS server refused an action of this service (permissions violation; \
                 counted as an error): declare what the service does (see --nats-permissions)"
            );
        }
        Event::ServerError(e) => {
            tracing::warn!(error = %e, "NATS server error");
        }
        Event::ClientError(e) => {
            if refused_credentials(&e) {
                watch.rejected();
            }
            tracing::warn!(error = %e, "NATS client error");
        }
        Event::Draining => tracing::debug!("draining the NATS connection"),
        Event::Closed => {
            if watch.mark_lost("the NATS client closed its connection".into()) {
                tracing::debug!("NATS connection closed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_credentials_are_told_apart() {
        let refused =
            async_nats::ClientError::Other(ConnectErrorKind::AuthorizationViolation.to_string());
        assert!(refused_credentials(&refused));
        let refused = async_nats::ClientError::Other(ConnectErrorKind::Authentication.to_string());
        assert!(refused_credentials(&refused));
        let io = async_nats::ClientError::Other(ConnectErrorKind::Io.to_string());
        assert!(!refused_credentials(&io));
        assert!(!refused_credentials(
            &async_nats::ClientError::MaxReconnects
        ));
    }

    #[test]
    fn first_pass_has_no_back_off() {
        for attempt in 1..=21 {
            assert_eq!(reconnect_delay(attempt, 21), Duration::ZERO, "{attempt}");
        }
        assert_eq!(reconnect_delay(22, 21), Duration::from_millis(100));
        assert_eq!(reconnect_delay(23, 21), Duration::from_millis(200));
        assert_eq!(reconnect_delay(100, 21), Duration::from_millis(1600));
        assert_eq!(reconnect_delay(1, 1), Duration::ZERO);
        assert_eq!(reconnect_delay(2, 1), Duration::from_millis(100));
        assert!((1..1000).all(|a| reconnect_delay(a, 3) <= Duration::from_secs(2)));
    }
}
