//! Health replies: the [`HealthReport`] every instance answers with, and
//! the responder that answers.
//!
//! Every instance subscribes (outside any queue group) to [`SUBJECT`] (the
//! spec's subject) and [`SUBJECT_DOTTED`] (the one Telestion's Deno library
//! uses) and answers with a [`HealthReport`] as JSON:
//!
//! ```json
//! {"errors": 0, "service": "<instance id>", "name": "<SERVICE_NAME>",
//!  "errors_total": 0, "uptime_s": 12.5, "error_window_s": 60}
//! ```
//!
//! The health subscriptions have their own tasks and client channels, so
//! they answer at once even when every handler is busy or backlogged.

use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::instance::Instance;

/// The health subject of the Telestion spec.
pub const SUBJECT: &str = "__telestion__/health";
/// The health subject used by Telestion's Deno library.
pub const SUBJECT_DOTTED: &str = "__telestion__.health";

/// What an instance answers on the health subjects.
///
/// The first three fields are the Telestion spec's; the others are this
/// runtime's additions, and default to zero when reading the reply of a
/// service written with another library.
///
/// ```
/// let reply = r#"{"errors": 2, "service": "abc", "name": "parser"}"#;
/// let report: telestion::health::HealthReport = serde_json::from_str(reply).unwrap();
/// assert_eq!((report.errors, report.name.as_str()), (2, "parser"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Errors within the last `error_window_s` seconds.
    #[serde(default)]
    pub errors: u64,
    /// The instance id (`SERVICE_ID`).
    pub service: String,
    /// `SERVICE_NAME`.
    #[serde(default)]
    pub name: String,
    /// Errors since start.
    #[serde(default)]
    pub errors_total: u64,
    /// The length of the "recent" window (`HEALTH_ERROR_WINDOW`).
    #[serde(default)]
    pub error_window_s: u64,
    /// Seconds since start.
    #[serde(default)]
    pub uptime_s: f64,
    /// Each durable handler's consumer, as last read from the server
    /// (refreshed every 2 s); absent when the service has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub durable: Vec<DurableHealth>,
}

/// A durable handler's share of a health reply: its consumer's numbers as
/// the server counts them (for every instance of the service together),
/// plus what this instance dead-lettered.
///
/// ```
/// let reply = r#"{"service": "a", "durable": [{"handler": "h", "pending": 3}]}"#;
/// let report: telestion::health::HealthReport = serde_json::from_str(reply).unwrap();
/// assert_eq!(report.durable[0].pending, 3);
/// assert_eq!(report.durable[0].redelivered, 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DurableHealth {
    /// The handler's name.
    #[serde(default)]
    pub handler: String,
    /// The stream it consumes.
    #[serde(default)]
    pub stream: String,
    /// Its durable consumer.
    #[serde(default)]
    pub consumer: String,
    /// Messages in the stream not yet delivered to any instance.
    #[serde(default)]
    pub pending: u64,
    /// Messages delivered and not yet acknowledged.
    #[serde(default)]
    pub ack_pending: u64,
    /// Messages delivered more than once and not yet acknowledged.
    #[serde(default)]
    pub redelivered: u64,
    /// Messages this instance gave up on and published to the dead-letter
    /// subject since start.
    #[serde(default)]
    pub dead_lettered: u64,
}

/// Subscribes the health subjects; the returned tasks answer until they are
/// aborted, after every handler has drained at shutdown. A request without
/// a reply subject is ignored.
pub(crate) async fn start(
    client: &async_nats::Client,
    instance: Arc<Instance>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, (&'static str, async_nats::SubscribeError)> {
    let mut tasks = Vec::new();
    for subject in [SUBJECT, SUBJECT_DOTTED] {
        let mut subscriber = client.subscribe(subject).await.map_err(|e| (subject, e))?;
        let instance = instance.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let Some(reply) = message.reply else { continue };
                let body = match serde_json::to_vec(&instance.report()) {
                    Ok(body) => body,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot encode the health reply");
                        continue;
                    }
                };
                if let Err(e) = client.publish(reply, body.into()).await {
                    tracing::warn!(error = %e, "cannot send health reply");
                }
            }
        }));
    }
    Ok(tasks)
}
