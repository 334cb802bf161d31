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
//! The first connect fails within 10 s with a clear error (unreachable,
//! rejected credentials, TLS failure). After that the client reconnects
//! forever, resubscribes, and logs every disconnect and reconnect.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, Event};

use crate::config::{Config, REDACTED};
use crate::error::StartError;
use crate::health::ErrorCounter;

/// How long the first connection may take before the start fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Default number of outgoing messages the client buffers (for example while
/// disconnected); see `NATS_PUBLISH_BUFFER`.
pub const DEFAULT_PUBLISH_BUFFER: usize = 2048;

/// Default number of messages buffered per subscription before the client
/// drops further ones (a slow consumer); see `NATS_SUBSCRIPTION_CAPACITY`.
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 65536;

/// Splits `NATS_URL` into its servers.
pub fn server_list(url: &str) -> Vec<String> {
    url.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Where a server's user info (`user:password@`, `token@`) is: the range
/// before the `@`, when there is one.
fn userinfo(server: &str) -> Option<std::ops::Range<usize>> {
    let start = server.find("://").map_or(0, |i| i + 3);
    let at = server.rfind('@').filter(|&at| at >= start)?;
    Some(start..at)
}

/// `url` with any `user:password@` part replaced, safe to print.
pub fn display_url(url: &str) -> String {
    server_list(url)
        .iter()
        .map(|server| match userinfo(server) {
            Some(info) => format!(
                "{}{}{}",
                &server[..info.start],
                REDACTED,
                &server[info.end..]
            ),
            None => server.clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `user:password@` (or `token@`) of the servers, as (user, password);
/// None when the servers carry no credentials.
type UrlAuth = Option<(String, Option<String>)>;

/// Takes the credentials out of the server URLs. async-nats 0.51 ignores
/// credentials in URLs (and prints URLs in its debug logs), so they are
/// passed as connect options instead. All servers that carry credentials
/// must carry the same ones.
fn split_credentials(servers: &[String]) -> Result<(Vec<String>, UrlAuth), String> {
    let mut auth: UrlAuth = None;
    let mut plain = Vec::with_capacity(servers.len());
    for server in servers {
        let Some(info) = userinfo(server) else {
            plain.push(server.clone());
            continue;
        };
        let credentials = &server[info.clone()];
        let found = match credentials.split_once(':') {
            Some((user, password)) => (percent_decode(user), Some(percent_decode(password))),
            None => (percent_decode(credentials), None),
        };
        if auth.as_ref().is_some_and(|known| *known != found) {
            return Err(
                "the servers in NATS_URL carry different credentials; put them in \
                 NATS_USER/NATS_PASSWORD instead"
                    .into(),
            );
        }
        auth = Some(found);
        plain.push(format!(
            "{}{}",
            &server[..info.start],
            &server[info.end + 1..]
        ));
    }
    Ok((plain, auth))
}

/// Decodes `%XX` escapes (as in URL user info).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// A buffer size from config key `key` (at least 1), or `default`.
fn capacity(config: &Config, key: &str, default: usize) -> Result<usize, StartError> {
    Ok(config.get::<usize>(key)?.unwrap_or(default).max(1))
}

fn non_empty(config: &Config, key: &str) -> Option<String> {
    config.get_str(key).filter(|v| !v.is_empty())
}

/// Connects with the settings of `config`. Connection events are logged and
/// slow-consumer events counted in `errors`.
pub async fn connect(
    config: &Config,
    service_name: &str,
    errors: Arc<ErrorCounter>,
) -> Result<async_nats::Client, StartError> {
    let url = non_empty(config, "NATS_URL").unwrap_or_default();
    let shown = display_url(&url);
    let fail = |reason: String, source: Option<async_nats::ConnectError>| StartError::Connect {
        url: shown.clone(),
        reason: config.redact(reason),
        source,
    };
    let servers = server_list(&url);
    if servers.is_empty() {
        return Err(fail("NATS_URL is empty".into(), None));
    }
    let (servers, url_auth) = split_credentials(&servers).map_err(|r| fail(r, None))?;

    let mut options = ConnectOptions::new()
        .name(service_name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            // 0 ms, then 100 ms doubling up to 2 s: quick recovery, no storm.
            if attempts <= 1 {
                Duration::ZERO
            } else {
                Duration::from_millis((100u64 << (attempts.min(6) - 2)).min(2000))
            }
        });

    options = options
        .client_capacity(capacity(
            config,
            "NATS_PUBLISH_BUFFER",
            DEFAULT_PUBLISH_BUFFER,
        )?)
        .subscription_capacity(capacity(
            config,
            "NATS_SUBSCRIPTION_CAPACITY",
            DEFAULT_SUBSCRIPTION_CAPACITY,
        )?);

    match (
        non_empty(config, "NATS_USER"),
        non_empty(config, "NATS_PASSWORD"),
    ) {
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
        options = options.credentials_file(&creds).await.map_err(|e| {
            fail(
                format!("cannot read credentials file {creds:?} (NATS_CREDS): {e}"),
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
        async move { log_event(event, &errors) }
    });

    match tokio::time::timeout(START_TIMEOUT, options.connect(servers)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => {
            let reason = match e.kind() {
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    format!(
                        "the server rejected the credentials ({e}); check NATS_USER/NATS_PASSWORD, \
                         NATS_CREDS or NATS_NKEY"
                    )
                }
                ConnectErrorKind::Tls => tls_failed(&e),
                ConnectErrorKind::Io if is_tls_failure(&e.to_string()) => tls_failed(&e),
                ConnectErrorKind::Io | ConnectErrorKind::TimedOut => {
                    format!("no NATS server reachable ({e}); is nats-server running there?")
                }
                _ => e.to_string(),
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

fn tls_failed(error: &async_nats::ConnectError) -> String {
    format!("TLS failed ({error}); check NATS_TLS_CA, NATS_TLS_CERT and NATS_TLS_KEY")
}

/// Whether an I/O error text comes from the TLS handshake (rustls reports
/// certificate problems and the server's TLS alerts as I/O errors).
fn is_tls_failure(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("certificate") || text.contains("tls") || text.contains("alert")
}

fn check_readable(path: &str, key: &str) -> Result<(), String> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| format!("cannot read {path:?} ({key}): {e}"))
}

fn log_event(event: Event, errors: &ErrorCounter) {
    match event {
        Event::Connected => tracing::info!("connected to NATS"),
        Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
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
        Event::ServerError(e) => {
            tracing::warn!(error = %e, "NATS server error");
        }
        Event::ClientError(e) => tracing::warn!(error = %e, "NATS client error"),
        Event::Draining => tracing::debug!("draining the NATS connection"),
        Event::Closed => tracing::debug!("NATS connection closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            server_list(" nats://a:1, b:2 ,,"),
            vec!["nats://a:1".to_string(), "b:2".to_string()]
        );
        assert_eq!(
            display_url("nats://u:secret@h:1,x:y@h2"),
            format!("nats://{REDACTED}@h:1,{REDACTED}@h2")
        );
        let servers = server_list("nats://u:p%40ss@h:1,tls://u:p%40ss@h2:2,h3:3");
        let (plain, auth) = split_credentials(&servers).unwrap();
        assert_eq!(plain, vec!["nats://h:1", "tls://h2:2", "h3:3"]);
        assert_eq!(auth, Some(("u".into(), Some("p@ss".into()))));
        let (plain, auth) = split_credentials(&server_list("tok@h:1")).unwrap();
        assert_eq!(
            (plain, auth),
            (vec!["h:1".into()], Some(("tok".into(), None)))
        );
        assert!(split_credentials(&server_list("a:b@h:1,a:c@h:2")).is_err());
    }
}
