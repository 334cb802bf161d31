//! Operator sessions: a login opens the operator's own NATS connection.
//!
//! `POST /api/login` connects to the servers of `NATS_URL` with the user
//! name and password typed in (at most 5 s, no retry). Only when NATS
//! accepts them is a session made: a 256-bit random token (the operating
//! system's generator, `getrandom`) that the browser keeps in the cookie
//! `telestion_session` (`HttpOnly; SameSite=Strict; Path=/`, `Secure`
//! with `WEB_SECURE_COOKIE=true`). Every request of the session goes out on
//! that connection, so NATS permissions decide what each person may do.
//!
//! Bounds: logins are handled one at a time, and a failed one holds the
//! next for [`FAILURE_DELAY`] (at most one guess per second per process;
//! failures are counted and logged without the password). A session
//! unused for `WEB_SESSION_IDLE` ends (its connection is closed). At most
//! `WEB_MAX_SESSIONS` sessions: a login beyond that is refused with 503
//! rather than ending someone else's session (whoever holds valid
//! credentials could otherwise sign the operators out, one login at a
//! time). A server that does not require authentication accepts any
//! password, so logins are refused (503) until NATS requires it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, Event, ServerError};
use telestion::tokio;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

/// How long a login may take to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a failed login holds the next one.
pub const FAILURE_DELAY: Duration = Duration::from_secs(1);
/// The longest user name accepted, in bytes.
pub const MAX_USER: usize = 256;
/// The longest password accepted, in bytes.
pub const MAX_PASSWORD: usize = 4096;

/// One signed-in operator.
pub struct Session {
    /// The NATS user name.
    pub user: String,
    /// The operator's own NATS connection.
    pub client: async_nats::Client,
    /// Live streams open in this session.
    pub live: AtomicUsize,
    last_used: Mutex<Instant>,
    /// Subjects the server refused this connection to publish to.
    denied: broadcast::Sender<String>,
    /// `true` once the session ended (logout, expiry, shutdown).
    ended: watch::Sender<bool>,
}

impl Session {
    /// Subjects the server refuses to let this session publish to, as the
    /// server reports them (subscribe before sending).
    pub fn denials(&self) -> broadcast::Receiver<String> {
        self.denied.subscribe()
    }

    /// Resolves once the session ended.
    pub async fn ended(&self) {
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(|e| *e).await;
    }

    fn end(&self) {
        self.ended.send_replace(true);
        let client = self.client.clone();
        tokio::spawn(async move {
            let _ = client.drain().await;
        });
    }
}

/// Whether `user` can be a NATS user of a person (see apps/nats_config).
fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Why a login failed; the message shown is generic on purpose.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// NATS refused the user name or password.
    #[error("user name or password refused")]
    Refused,
    /// NATS could not be reached (or the login took too long).
    #[error("NATS cannot be reached; try again later")]
    Unreachable(#[source] Option<async_nats::ConnectError>),
    /// NATS does not require authentication: any password would do.
    #[error("NATS accepts anyone without a password, so the web app refuses logins")]
    OpenServer,
    /// `WEB_MAX_SESSIONS` sessions are open.
    #[error("too many sessions open; sign out elsewhere or wait")]
    Full,
}

/// Where operators' connections go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The servers (no user info).
    pub servers: Vec<String>,
    /// `NATS_TLS_CA`.
    pub tls_ca: Option<PathBuf>,
    /// `WEB_REQUEST_TIMEOUT_MS`: the connection's request timeout.
    pub request_timeout: Duration,
}

/// The open sessions.
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
    gate: tokio::sync::Mutex<()>,
    target: Target,
    idle: Duration,
    max: usize,
    /// Failed logins since start.
    pub failures: AtomicU64,
}

/// The server's text for a publish it refused, `Permissions Violation for
/// Publish to "<subject>"` (the NATS protocol's `-ERR`; async-nats has no
/// kind for it, only the text): the subject.
fn denied_subject(text: &str) -> Option<String> {
    let rest = text
        .trim()
        .trim_matches('\'')
        .strip_prefix("Permissions Violation for Publish to ")?;
    Some(rest.trim().trim_matches('"').to_owned())
}

/// A 256-bit random token, hex.
fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Sessions {
    /// No sessions yet.
    pub fn new(target: Target, idle: Duration, max: usize) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            gate: tokio::sync::Mutex::new(()),
            target,
            idle,
            max,
            failures: AtomicU64::new(0),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the sessions unused for `WEB_SESSION_IDLE`; returns how many
    /// are left.
    pub fn expire(&self) -> usize {
        let now = Instant::now();
        let mut map = self.map();
        map.retain(|_, session| {
            let last = *session.last_used.lock().unwrap_or_else(|e| e.into_inner());
            let alive = now.duration_since(last) < self.idle;
            if !alive {
                telestion::tracing::info!(user = %session.user, "session expired");
                session.end();
            }
            alive
        });
        map.len()
    }

    /// The session of `token` (and marks it used), if it is open.
    pub fn get(&self, token: &str) -> Option<Arc<Session>> {
        let session = self.map().get(token).cloned()?;
        let now = Instant::now();
        let mut last = session.last_used.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(*last) >= self.idle {
            drop(last);
            self.expire();
            return None;
        }
        *last = now;
        drop(last);
        Some(session)
    }

    /// Ends the session of `token`, if any.
    pub fn logout(&self, token: &str) -> Option<Arc<Session>> {
        let session = self.map().remove(token)?;
        session.end();
        Some(session)
    }

    /// Ends every session (at shutdown).
    pub fn end_all(&self) {
        for (_, session) in self.map().drain() {
            session.end();
        }
    }

    /// Signs `user` in: connects to NATS with the credentials and makes a
    /// session. Returns the token.
    pub async fn login(&self, user: &str, password: &str) -> Result<String, LoginError> {
        let _gate = self.gate.lock().await;
        if self.expire() >= self.max {
            return Err(LoginError::Full);
        }
        // A user name is also a subject token (the inbox prefix
        // `_INBOX.<user>`): letters, digits, `_` and `-` only, as
        // nats_config makes them; anything else is refused like a wrong
        // password.
        let result = if valid_user(user) {
            self.connect(user, password).await
        } else {
            Err(LoginError::Refused)
        };
        let (client, denied) = match result {
            Ok(connected) => connected,
            Err(error) => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                telestion::tracing::warn!(
                    user = %user.escape_debug(),
                    failures,
                    error = %error,
                    "login failed"
                );
                // Held while the gate is: the next login waits too.
                tokio::time::sleep(FAILURE_DELAY).await;
                return Err(error);
            }
        };
        let token = match new_token() {
            Ok(token) => token,
            Err(e) => {
                telestion::tracing::error!(error = %e, "no random token");
                let _ = client.drain().await;
                return Err(LoginError::Unreachable(None));
            }
        };
        let session = Arc::new(Session {
            user: user.to_owned(),
            client,
            live: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
            denied,
            ended: watch::Sender::new(false),
        });
        telestion::tracing::info!(user = %user.escape_debug(), "signed in");
        self.map().insert(token.clone(), session);
        Ok(token)
    }

    async fn connect(
        &self,
        user: &str,
        password: &str,
    ) -> Result<(async_nats::Client, broadcast::Sender<String>), LoginError> {
        let (denied, _) = broadcast::channel(16);
        let events = denied.clone();
        let mut options =
            ConnectOptions::with_user_and_password(user.to_owned(), password.to_owned())
                .name(format!("web session of {user}"))
                // The person's replies come to their own inbox prefix, the
                // only one their NATS user may read (see apps/nats_config).
                .custom_inbox_prefix(telestion::permissions::inbox_prefix(user))
                .connection_timeout(CONNECT_TIMEOUT)
                .max_reconnects(Some(10))
                .request_timeout(Some(self.target.request_timeout))
                .event_callback(move |event| {
                    let events = events.clone();
                    async move {
                        if let Event::ServerError(ServerError::Other(text)) = event
                            && let Some(subject) = denied_subject(&text)
                        {
                            let _ = events.send(subject);
                        }
                    }
                });
        if let Some(ca) = &self.target.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let connect = options.connect(self.target.servers.as_slice());
        let client =
            match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), connect).await {
                Err(_) => return Err(LoginError::Unreachable(None)),
                Ok(Err(e)) => {
                    return Err(match e.kind() {
                        ConnectErrorKind::AuthorizationViolation
                        | ConnectErrorKind::Authentication => LoginError::Refused,
                        _ => LoginError::Unreachable(Some(e)),
                    });
                }
                Ok(Ok(client)) => client,
            };
        if !client.server_info().auth_required {
            let _ = client.drain().await;
            return Err(LoginError::OpenServer);
        }
        Ok((client, denied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_denied_subject_is_read_from_the_server_error() {
        assert_eq!(
            denied_subject("Permissions Violation for Publish to \"telecommand.send\"").as_deref(),
            Some("telecommand.send")
        );
        assert_eq!(
            denied_subject("'Permissions Violation for Publish to \"a.b\"'").as_deref(),
            Some("a.b")
        );
        assert_eq!(
            denied_subject("Permissions Violation for Subscription to \"x\""),
            None
        );
    }

    #[test]
    fn tokens_are_256_bit_and_differ() {
        let a = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_token().unwrap());
    }
}
