//! The web service's configuration: every key it reads, decoded and
//! checked once at start (a bad value fails the start naming the key).

use std::path::PathBuf;
use std::time::Duration;

use telestion::Config;
use telestion::period::{BareNumber, parse_setting};

/// The bounds of `WEB_REQUEST_TIMEOUT_MS`: 100 ms to an hour.
const REQUEST_TIMEOUT_BOUNDS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(3600);
/// The bounds of `WEB_HEADER_TIMEOUT`: 100 ms to 5 min.
const HEADER_TIMEOUT_BOUNDS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(300);
/// The bounds of `WEB_SESSION_IDLE`: 1 s to a day.
const SESSION_IDLE_BOUNDS: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 3600);

/// Everything the web service is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `WEB_ADDR`: where to listen.
    pub addr: String,
    /// `WEB_HOSTS`, lower case: the `Host` values accepted (filled in by
    /// [`Settings::with_bound_port`] when the key is not set).
    pub hosts: Vec<String>,
    /// `WEB_REQUEST_TIMEOUT_MS`: how long a forwarded request waits.
    pub request_timeout: Duration,
    /// `WEB_HEADER_TIMEOUT`: how long a client may take to send a request's
    /// head (and its body).
    pub header_timeout: Duration,
    /// `WEB_MAX_CONNECTIONS`: open HTTP connections at most.
    pub max_connections: usize,
    /// `WEB_MAX_LIVE`: live streams at most, all sessions together.
    pub max_live: usize,
    /// `WEB_MAX_LIVE_PER_SESSION`: live streams at most per session.
    pub max_live_per_session: usize,
    /// `WEB_LIVE_BUFFER`: bytes queued per live stream at most.
    pub live_buffer: usize,
    /// `WEB_SESSION_IDLE`: a session unused this long ends.
    pub session_idle: Duration,
    /// `WEB_MAX_SESSIONS`: sessions at most.
    pub max_sessions: usize,
    /// `WEB_SECURE_COOKIE`: mark the session cookie `Secure`.
    pub secure_cookie: bool,
    /// `HISTORY_SUBJECT`: where `/api/history` goes.
    pub history_subject: String,
    /// The NATS servers of `NATS_URL` without their user info: where the
    /// operators' own connections go.
    pub nats_servers: Vec<String>,
    /// `NATS_TLS_CA`: the CA the operators' connections verify the server
    /// with.
    pub nats_tls_ca: Option<PathBuf>,
}

fn non_empty(config: &Config, key: &str) -> Option<String> {
    config.get_str(key).filter(|v| !v.trim().is_empty())
}

fn number(config: &Config, key: &str, default: u64, min: u64) -> Result<usize, String> {
    let value = config
        .get::<u64>(key)
        .map_err(|e| e.to_string())?
        .unwrap_or(default);
    if value < min {
        return Err(format!("key {key}: at least {min}, not {value}"));
    }
    Ok(usize::try_from(value).unwrap_or(usize::MAX))
}

fn period(
    config: &Config,
    key: &str,
    default: &str,
    bare: BareNumber,
    bounds: std::ops::RangeInclusive<Duration>,
) -> Result<Duration, String> {
    let text = non_empty(config, key).unwrap_or_else(|| default.into());
    parse_setting(key, &text, bare, bounds).map_err(|e| e.to_string())
}

/// The servers of a `NATS_URL` list without user info (`user:pw@`): the
/// operators' connections carry their own credentials.
fn servers_without_userinfo(url: &str) -> Vec<String> {
    url.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|server| {
            let (scheme, rest) = match server.split_once("://") {
                Some((scheme, rest)) => (format!("{scheme}://"), rest),
                None => (String::new(), server),
            };
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}{host}")
        })
        .collect()
}

/// One `host[:port]` of `WEB_HOSTS`, checked: no scheme, path or space.
fn host_entry(entry: &str) -> Result<String, String> {
    let entry = entry.trim().to_ascii_lowercase();
    let valid = !entry.is_empty()
        && entry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if valid {
        Ok(entry)
    } else {
        Err(format!(
            "key WEB_HOSTS: {entry:?} is not a host[:port] (comma-separated list)"
        ))
    }
}

impl Settings {
    /// Reads every key from `config`.
    pub fn from_config(config: &Config) -> Result<Settings, String> {
        let addr = non_empty(config, "WEB_ADDR").unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let hosts = match non_empty(config, "WEB_HOSTS") {
            Some(list) => list.split(',').map(host_entry).collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let history_subject =
            non_empty(config, "HISTORY_SUBJECT").unwrap_or_else(|| "query.database".to_owned());
        telestion::validate_subject(&history_subject)
            .map_err(|e| format!("HISTORY_SUBJECT: {e}"))?;
        let secure_cookie = config
            .get::<bool>("WEB_SECURE_COOKIE")
            .map_err(|e| e.to_string())?
            .unwrap_or(false);
        Ok(Settings {
            addr,
            hosts,
            request_timeout: period(
                config,
                "WEB_REQUEST_TIMEOUT_MS",
                "10000",
                BareNumber::Milliseconds,
                REQUEST_TIMEOUT_BOUNDS,
            )?,
            header_timeout: period(
                config,
                "WEB_HEADER_TIMEOUT",
                "10s",
                BareNumber::Seconds,
                HEADER_TIMEOUT_BOUNDS,
            )?,
            max_connections: number(config, "WEB_MAX_CONNECTIONS", 256, 8)?,
            max_live: number(config, "WEB_MAX_LIVE", 32, 1)?,
            max_live_per_session: number(config, "WEB_MAX_LIVE_PER_SESSION", 4, 1)?,
            live_buffer: number(config, "WEB_LIVE_BUFFER", 1024 * 1024, 64 * 1024)?,
            session_idle: period(
                config,
                "WEB_SESSION_IDLE",
                "30min",
                BareNumber::Seconds,
                SESSION_IDLE_BOUNDS,
            )?,
            max_sessions: number(config, "WEB_MAX_SESSIONS", 64, 1)?,
            secure_cookie,
            history_subject,
            nats_servers: servers_without_userinfo(
                &non_empty(config, "NATS_URL").unwrap_or_default(),
            ),
            nats_tls_ca: non_empty(config, "NATS_TLS_CA").map(PathBuf::from),
        })
    }

    /// Fills in the default `WEB_HOSTS` once the listener is bound: the
    /// host of `WEB_ADDR`, `localhost` and `127.0.0.1`, each with the bound
    /// port (and without it when the port is 80).
    pub fn with_bound_port(mut self, port: u16) -> Settings {
        if self.hosts.is_empty() {
            let host = self
                .addr
                .rsplit_once(':')
                .map_or(self.addr.as_str(), |(host, _)| host)
                .to_ascii_lowercase();
            for name in [host.as_str(), "localhost", "127.0.0.1"] {
                let entry = format!("{name}:{port}");
                if !self.hosts.contains(&entry) {
                    self.hosts.push(entry);
                }
                if port == 80 && !self.hosts.iter().any(|h| h == name) {
                    self.hosts.push(name.to_owned());
                }
            }
        }
        self
    }

    /// The `Origin` values a write may come from: each allowed host with
    /// `http://` and `https://` (behind a TLS proxy).
    pub fn origins(&self) -> Vec<String> {
        self.hosts
            .iter()
            .flat_map(|host| [format!("http://{host}"), format!("https://{host}")])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_taken_out_of_the_servers() {
        assert_eq!(
            servers_without_userinfo("nats://web:pw@127.0.0.1:4333, tls://h:1,127.0.0.1:2"),
            ["nats://127.0.0.1:4333", "tls://h:1", "127.0.0.1:2"]
        );
    }

    #[test]
    fn default_hosts_and_origins() {
        let config = Config::from_pairs([("WEB_ADDR", "0.0.0.0:80")]);
        let settings = Settings::from_config(&config).unwrap().with_bound_port(80);
        assert!(settings.hosts.contains(&"localhost:80".to_owned()));
        assert!(settings.hosts.contains(&"localhost".to_owned()));
        assert!(settings.origins().contains(&"http://127.0.0.1".to_owned()));
        let config = Config::from_pairs([("WEB_HOSTS", "ops.example:8443, Ground")]);
        let settings = Settings::from_config(&config).unwrap().with_bound_port(1);
        assert_eq!(settings.hosts, ["ops.example:8443", "ground"]);
        let config = Config::from_pairs([("WEB_HOSTS", "http://x/")]);
        assert!(
            Settings::from_config(&config)
                .unwrap_err()
                .contains("WEB_HOSTS")
        );
    }
}
