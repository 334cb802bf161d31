//! Sample: remembers the latest message per key and answers requests for it.
//!
//! A port of Telestion's Deno `latest-value-cache` sample, with its keys
//! and two bounds of its own:
//!
//! - `DATA_SUBJECT` (must end in `>`, e.g. `data.>`): every message is
//!   stored under its key, the part of the subject matched by `>`
//!   (`data.temperature` → `temperature`). This subscription is NOT in a
//!   queue group, so every instance of the cache sees every value.
//! - `REQUEST_SUBJECT` (must end in `>`, e.g. `latest.>`): a request on
//!   `latest.temperature` is answered with the stored bytes of
//!   `temperature`, or an empty body when there are none (not yet, or no
//!   longer). Requests are shared by the instances (queue group
//!   `SERVICE_NAME`).
//! - `CACHE_MAX_KEYS` (default 10000) and `CACHE_MAX_BYTES` (default
//!   67108864, 64 MiB; the bytes of the keys and values together) bound
//!   the memory the cache holds. When storing a value would exceed either
//!   bound, the least recently stored keys are dropped until it fits
//!   (storing a key again makes it the most recent; asking for it does
//!   not). A value whose key and bytes alone exceed `CACHE_MAX_BYTES` is
//!   not stored: the error is logged and counted in health, and the key's
//!   older value is dropped too, so that no request gets a value that is
//!   no longer the latest.
//!
//! ```sh
//! NATS_URL=localhost:4222 SERVICE_NAME=cache DATA_DIR=./data \
//!     DATA_SUBJECT='data.>' REQUEST_SUBJECT='latest.>' CACHE_MAX_BYTES=16777216 \
//!     cargo run --example latest_value_cache
//! ```

use std::sync::Mutex;

use lru::LruCache;
use telestion::{Bytes, Service, State, Subject, subscribe};

/// Default of `CACHE_MAX_KEYS`.
const DEFAULT_MAX_KEYS: usize = 10_000;
/// Default of `CACHE_MAX_BYTES`: 64 MiB.
const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// The stored values and the subject prefixes the keys follow.
struct Cache {
    data_prefix: String,
    request_prefix: String,
    values: Mutex<Values>,
}

impl Cache {
    fn key<'a>(prefix: &str, subject: &'a str) -> Option<&'a str> {
        subject.strip_prefix(prefix).filter(|key| !key.is_empty())
    }
}

/// The latest value per key, least recently stored first, within the
/// bounds.
struct Values {
    entries: LruCache<String, Bytes>,
    /// The bytes of all keys and values.
    bytes: usize,
    max_keys: usize,
    max_bytes: usize,
}

impl Values {
    fn new(max_keys: usize, max_bytes: usize) -> Values {
        Values {
            entries: LruCache::unbounded(),
            bytes: 0,
            max_keys,
            max_bytes,
        }
    }

    /// Stores `value` as the latest of `key`, dropping the least recently
    /// stored keys until it fits; `Err` when it cannot fit at all (the
    /// key's older value is dropped all the same).
    fn store(&mut self, key: &str, value: Bytes) -> Result<(), String> {
        if let Some(old) = self.entries.pop(key) {
            self.bytes -= key.len() + old.len();
        }
        let size = key.len() + value.len();
        if size > self.max_bytes {
            return Err(format!(
                "value of {} bytes for key {key:?} not stored: key and value exceed \
                 CACHE_MAX_BYTES ({})",
                value.len(),
                self.max_bytes
            ));
        }
        while self.entries.len() >= self.max_keys || self.bytes + size > self.max_bytes {
            let Some((old_key, old)) = self.entries.pop_lru() else {
                break;
            };
            self.bytes -= old_key.len() + old.len();
        }
        self.entries.put(key.to_owned(), value);
        self.bytes += size;
        Ok(())
    }

    /// The latest value of `key`, if stored (does not change the order).
    fn get(&self, key: &str) -> Option<Bytes> {
        self.entries.peek(key).cloned()
    }
}

/// Stores every data message under its key. A value too big for the cache
/// is an error (logged and counted in health).
#[subscribe(config = "DATA_SUBJECT", queue = false)]
async fn store(Subject(subject): Subject, cache: State<Cache>, body: Bytes) -> Result<(), String> {
    let Some(key) = Cache::key(&cache.data_prefix, &subject) else {
        return Ok(());
    };
    // A copy of exactly the body: the received bytes share the client's
    // read buffer, which a stored slice would keep alive whole.
    let value = Bytes::copy_from_slice(&body);
    let mut values = cache.values.lock().unwrap_or_else(|e| e.into_inner());
    values.store(key, value)
}

/// Answers with the latest value of the requested key (or an empty body).
#[subscribe(config = "REQUEST_SUBJECT")]
async fn latest(Subject(subject): Subject, cache: State<Cache>) -> Bytes {
    let values = cache.values.lock().unwrap_or_else(|e| e.into_inner());
    Cache::key(&cache.request_prefix, &subject)
        .and_then(|key| values.get(key))
        .unwrap_or_default()
}

/// A bound from config key `key` (at least 1), or `default`.
fn bound(service: &Service, key: &str, default: usize) -> Result<usize, String> {
    match service
        .config()
        .get::<usize>(key)
        .map_err(|e| e.to_string())?
    {
        None => Ok(default),
        Some(0) => Err(format!("key {key}: must be at least 1")),
        Some(n) => Ok(n),
    }
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
    let max_keys = bound(&service, "CACHE_MAX_KEYS", DEFAULT_MAX_KEYS)?;
    let max_bytes = bound(&service, "CACHE_MAX_BYTES", DEFAULT_MAX_BYTES)?;
    service.provide(Cache {
        data_prefix,
        request_prefix,
        values: Mutex::new(Values::new(max_keys, max_bytes)),
    });
    Ok(())
}
