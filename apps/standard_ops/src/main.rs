//! The Standard Operations service: data logging.
//!
//! A message on `__telestion__/log/<category>` (the spec's subject) or
//! `__telestion__.log.<category>` (the subject of Telestion's Deno library)
//! is appended as one JSON line to `$DATA_DIR/logs/<category>.log`:
//!
//! ```json
//! {"time":"2025-01-01T12:00:00.000000Z","subject":"__telestion__/log/temp","json":{"value":1}}
//! ```
//!
//! The body is kept as `"json"` (valid JSON), `"text"` (other UTF-8; empty
//! body → `""`) or `"base64"` (anything else), so it can always be
//! recovered. A request is answered after the line is written with
//! `{"ok": true}`, or `{"ok": false, "error": "..."}` when the category is
//! invalid (it must match `^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$`) or the
//! file cannot be written; a rejection is counted as an error in health.
//!
//! ## Why one subscription on `>`
//!
//! NATS splits subjects into tokens at `.`, so `__telestion__/log/temp` is a
//! single token. No wildcard narrower than `>` matches every
//! `__telestion__/log/<category>` subject (`*` matches any single token, so
//! it is just as broad). The service therefore subscribes once to `>` in its
//! queue group and ignores every other subject with one prefix comparison,
//! without replying. The same subscription also receives the dotted form,
//! whose category may itself contain dots.
//!
//! The cost: the NATS server delivers every message on the bus to one
//! instance of this service (the queue group shares them), so the bus
//! carries each message once more, and the service reads and discards what
//! is not for it. Run more instances to share that load.
//!
//! Configuration: the standard keys (`NATS_URL`, `SERVICE_NAME`, `DATA_DIR`,
//! ...). Instances with the same `SERVICE_NAME` share the messages and may
//! share one `DATA_DIR`: each message is logged once, and lines are written
//! whole under a file lock, so they never tear or interleave. At start the
//! service creates `$DATA_DIR/logs` and checks that it can write there: an
//! unusable `DATA_DIR` fails the start (exit 1) instead of every message.
//!
//! ```sh
//! NATS_URL=localhost:4222 SERVICE_NAME=standard_ops DATA_DIR=./data \
//!     cargo run -p standard_ops
//! ```

use std::time::SystemTime;

use standard_ops::{DataLog, log_line};
use telestion::data_log::category_of;
use telestion::{Bytes, Json, Reply, Service, State, Subject, subscribe};

/// The reply to a log request.
#[derive(serde::Serialize)]
struct Ack {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Every message on the bus arrives here; only data-log subjects are used.
#[subscribe(">")]
async fn log_data(
    Subject(subject): Subject,
    State(log): State<DataLog>,
    service: Service,
    body: Bytes,
) -> Reply {
    let Some(category) = category_of(&subject) else {
        // Not a data-log message: ignore it, no reply.
        return Reply::None;
    };
    // `append` rejects an invalid category before writing anything.
    let line = log_line(&subject, &body, SystemTime::now());
    let outcome = log.append(category, &line).map_err(|e| e.to_string());
    let ack = match outcome {
        Ok(()) => Ack {
            ok: true,
            error: None,
        },
        Err(error) => {
            tracing::warn!(%subject, %error, "message not logged");
            service.record_error();
            Ack {
                ok: false,
                error: Some(error),
            }
        }
    };
    telestion::IntoReply::into_reply(Json(ack))
}

#[telestion::service]
async fn main(service: Service) -> Result<(), String> {
    let log = DataLog::new(service.shared_data_dir().join("logs"));
    // An unusable DATA_DIR fails the start, not every message.
    log.check().map_err(|e| telestion::error_chain(&e))?;
    tracing::info!(dir = %log.dir().display(), "logging data");
    service.provide(log);
    Ok(())
}
