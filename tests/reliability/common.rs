//! Helpers shared by the reliability tests: services configured by hand,
//! async polling, and in-process log capture.

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use telestion::{Config, Options, Service};

/// The required keys for a service on `url`, plus `extra`.
pub fn config(url: &str, name: &str, data_dir: &Path, extra: &[(&str, &str)]) -> Config {
    let mut pairs: Vec<(String, String)> = vec![
        ("NATS_URL".into(), url.into()),
        ("SERVICE_NAME".into(), name.into()),
        ("DATA_DIR".into(), data_dir.to_string_lossy().into_owned()),
    ];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_pairs(pairs)
}

/// Starts a service on `url` (panics on failure).
pub async fn start(url: &str, name: &str, data_dir: &Path, extra: &[(&str, &str)]) -> Service {
    Service::start(Options::new().config(config(url, name, data_dir, extra)))
        .await
        .expect("service did not start")
}

/// Polls the async `check` until it returns true (panics after `timeout`).
pub async fn eventually_async<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// A request with a short timeout; `None` when it fails or times out.
pub async fn try_request(
    client: &async_nats::Client,
    subject: &str,
    body: impl Into<bytes::Bytes>,
) -> Option<async_nats::Message> {
    tokio::time::timeout(
        Duration::from_secs(2),
        client.request(subject.to_string(), body.into()),
    )
    .await
    .ok()?
    .ok()
}

/// The health reply of the single service on the bus, if any.
pub async fn try_health(client: &async_nats::Client) -> Option<serde_json::Value> {
    let reply = try_request(client, "__telestion__/health", "").await?;
    serde_json::from_slice(&reply.payload).ok()
}

/// Log lines collected by [`capture_logs`].
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the logs (at every level) of the current thread while the guard
/// lives. Use with a current-thread tokio runtime so that every task of the
/// test runs on this thread.
pub fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}
