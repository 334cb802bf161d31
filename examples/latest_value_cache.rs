//! Sample: remembers the latest message per key and answers requests for it.
//!
//! A port of Telestion's Deno `latest-value-cache` sample, with the same keys:
//!
//! - `DATA_SUBJECT` (must end in `>`, e.g. `data.>`): every message is
//!   stored under its key, the part of the subject matched by `>`
//!   (`data.temperature` → `temperature`). This subscription is NOT in a
//!   queue group, so every instance of the cache sees every value.
//! - `REQUEST_SUBJECT` (must end in `>`, e.g. `latest.>`): a request on
//!   `latest.temperature` is answered with the stored bytes of
//!   `temperature`, or an empty body when there are none yet. Requests are
//!   shared by the instances (queue group `SERVICE_NAME`).
//!
//! ```sh
//! NATS_URL=localhost:4222 SERVICE_NAME=cache DATA_DIR=./data \
//!     DATA_SUBJECT='data.>' REQUEST_SUBJECT='latest.>' \
//!     cargo run --example latest_value_cache
//! ```

use std::collections::HashMap;
use std::sync::Mutex;

use telestion::{Bytes, Service, State, Subject, subscribe};

/// The stored values and the subject prefixes the keys follow.
struct Cache {
    data_prefix: String,
    request_prefix: String,
    values: Mutex<HashMap<String, Bytes>>,
}

impl Cache {
    fn key<'a>(prefix: &str, subject: &'a str) -> Option<&'a str> {
        subject.strip_prefix(prefix).filter(|key| !key.is_empty())
    }
}

/// Stores every data message under its key.
#[subscribe(config = "DATA_SUBJECT", queue = false)]
async fn store(Subject(subject): Subject, State(cache): State<Cache>, body: Bytes) {
    if let Some(key) = Cache::key(&cache.data_prefix, &subject) {
        let mut values = cache.values.lock().unwrap_or_else(|e| e.into_inner());
        values.insert(key.to_owned(), body);
    }
}

/// Answers with the latest value of the requested key (or an empty body).
#[subscribe(config = "REQUEST_SUBJECT")]
async fn latest(Subject(subject): Subject, State(cache): State<Cache>) -> Bytes {
    let values = cache.values.lock().unwrap_or_else(|e| e.into_inner());
    Cache::key(&cache.request_prefix, &subject)
        .and_then(|key| values.get(key).cloned())
        .unwrap_or_default()
}

/// The part of `subject` before its final `>` token, or an error naming `key`.
fn prefix_of(service: &Service, key: &str) -> Result<String, String> {
    let subject = service.config().get_str(key).unwrap_or_default();
    if subject.is_empty() {
        return Err(format!(
            "missing key {key}; set it, e.g. `{key}=data.>` (it must end in `>`)"
        ));
    }
    match subject.strip_suffix('>') {
        Some(prefix) if prefix.is_empty() || prefix.ends_with('.') => Ok(prefix.to_owned()),
        _ => Err(format!(
            "key {key}: `{subject}` must end in the wildcard token `>`, e.g. `data.>`"
        )),
    }
}

#[telestion::service]
async fn main(service: Service) -> Result<(), String> {
    let data_prefix = prefix_of(&service, "DATA_SUBJECT")?;
    let request_prefix = prefix_of(&service, "REQUEST_SUBJECT")?;
    service.provide(Cache {
        data_prefix,
        request_prefix,
        values: Mutex::new(HashMap::new()),
    });
    Ok(())
}
