//! Data logging, the Standard Operations Library's first operation.
//!
//! A message on `__telestion__/log/<category>` (the spec's subject) or
//! `__telestion__.log.<category>` is appended as one JSON line to
//! `$DATA_DIR/logs/<category>.log`. This module holds what both sides need:
//! [`Service::log_data`] for any service that wants to log, and the pieces
//! the `standard_ops` service is built from ([`category_of`],
//! [`valid_category`], [`log_line`], [`DataLog`]).
//!
//! Line format: `{"time": "<RFC 3339>", "subject": "...", X}` where `X` is
//! exactly one of `"json": <the body as a JSON value>` (valid JSON),
//! `"text": "<the body>"` (UTF-8 that is not JSON; empty body → `""`) or
//! `"base64": "<standard base64>"` (anything else), so every body can be
//! recovered from its line.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine;
use bytes::Bytes;

use crate::error::ServiceError;
use crate::service::Service;

/// Subject prefix of the spec (the category follows; one NATS token).
pub const LOG_PREFIX: &str = "__telestion__/log/";
/// Subject prefix used by Telestion's Deno library.
pub const LOG_PREFIX_DOTTED: &str = "__telestion__.log.";

/// Whether `category` is acceptable: `^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$`.
/// Rejects empty and hidden names, `..`, and anything with `/`.
pub fn valid_category(category: &str) -> bool {
    let bytes = category.as_bytes();
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    !bytes.is_empty()
        && bytes.len() <= 128
        && allowed(bytes[0])
        && bytes[1..].iter().all(|&b| allowed(b) || b == b'.')
}

/// [`valid_category`] as a result, with an error that states the rule.
pub fn check_category(category: &str) -> Result<(), ServiceError> {
    if valid_category(category) {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "invalid log category {category:?}: it must match \
             ^[A-Za-z0-9_-][A-Za-z0-9._-]{{0,127}}$"
        )))
    }
}

/// The category of a data-log subject (not validated), or `None` when the
/// subject is not a data-log subject.
pub fn category_of(subject: &str) -> Option<&str> {
    subject
        .strip_prefix(LOG_PREFIX)
        .or_else(|| subject.strip_prefix(LOG_PREFIX_DOTTED))
}

/// One log line (with the trailing newline) for a message.
///
/// A JSON body without line breaks is embedded byte for byte; one with line
/// breaks is embedded compacted (the same JSON value).
pub fn log_line(subject: &str, body: &[u8], time: SystemTime) -> String {
    let time = serde_json::Value::from(humantime::format_rfc3339_micros(time).to_string());
    let subject = serde_json::Value::from(subject);
    let tail = match std::str::from_utf8(body) {
        Ok(text) => match serde_json::from_str::<&serde_json::value::RawValue>(text) {
            Ok(_) if !shallow(text) => format!("\"text\":{}", serde_json::Value::from(text)),
            Ok(raw) if !text.contains(['\n', '\r']) => format!("\"json\":{}", raw.get()),
            Ok(_) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(value) => format!("\"json\":{value}"),
                Err(_) => format!("\"text\":{}", serde_json::Value::from(text)),
            },
            Err(_) => format!("\"text\":{}", serde_json::Value::from(text)),
        },
        Err(_) => format!(
            "\"base64\":\"{}\"",
            base64::engine::general_purpose::STANDARD.encode(body)
        ),
    };
    format!("{{\"time\":{time},\"subject\":{subject},{tail}}}\n")
}

/// Whether valid JSON `text` nests at most 126 levels, so that readers
/// with serde_json's default recursion limit (127 levels) can parse its line,
/// which adds one level (deeper bodies are logged as `"text"`).
fn shallow(text: &str) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
    for byte in text.bytes() {
        match (in_string, escaped, byte) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'[' | b'{') => {
                depth += 1;
                if depth > 126 {
                    return false;
                }
            }
            (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Appends lines to `<dir>/<category>.log` files.
///
/// Each line is written with one `write` call to a file opened in append
/// mode while holding an exclusive `flock`, so several processes sharing
/// the directory never tear or interleave lines. Files are created
/// owner-only (`0600`), directories `0700`.
#[derive(Debug, Clone)]
pub struct DataLog {
    dir: PathBuf,
    files: Arc<Mutex<HashMap<String, Arc<Mutex<File>>>>>,
}

impl DataLog {
    /// A writer for files in `dir` (created when first needed).
    pub fn new(dir: impl Into<PathBuf>) -> DataLog {
        DataLog {
            dir: dir.into(),
            files: Arc::default(),
        }
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `line` to the file of `category`; an invalid category is
    /// an error (see [`check_category`]) and writes nothing.
    pub fn append(&self, category: &str, line: &str) -> Result<(), ServiceError> {
        check_category(category)?;
        let path = self.dir.join(format!("{category}.log"));
        let io_error = |source| ServiceError::Io {
            path: path.clone(),
            source,
        };
        let file = {
            let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            match files.get(category) {
                Some(file) => file.clone(),
                None => {
                    crate::service::create_private_dir(&self.dir).map_err(io_error)?;
                    let mut options = OpenOptions::new();
                    options.create(true).append(true);
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::OpenOptionsExt;
                        options.mode(0o600);
                    }
                    let file = Arc::new(Mutex::new(options.open(&path).map_err(io_error)?));
                    files.insert(category.to_owned(), file.clone());
                    file
                }
            }
        };
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        file.lock().map_err(io_error)?;
        let written = file.write_all(line.as_bytes());
        let unlocked = file.unlock();
        written.map_err(io_error)?;
        unlocked.map_err(io_error)?;
        Ok(())
    }
}

impl Service {
    /// Logs `body` under `category` through the Standard Operations
    /// service: publishes it to `__telestion__/log/<category>`.
    /// Fails (without publishing) when the category is invalid.
    pub async fn log_data(
        &self,
        category: &str,
        body: impl Into<Bytes>,
    ) -> Result<(), ServiceError> {
        check_category(category)?;
        self.publish(format!("{LOG_PREFIX}{category}"), body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        for ok in ["a", "A-1_b.c", "_x", "-", "a..b"] {
            assert!(valid_category(ok), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in ["", ".x", "..", "../x", "a/b", "a b", "ä", long.as_str()] {
            assert!(!valid_category(bad), "{bad}");
        }
        assert!(valid_category(&"a".repeat(128)));
    }

    #[test]
    fn lines_recover_the_body() {
        let t = SystemTime::UNIX_EPOCH;
        let line = log_line("s", br#"{"a": 1}"#, t);
        assert!(line.contains(r#""json":{"a": 1}"#), "{line}");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["json"]["a"], 1);
        assert_eq!(json["time"], "1970-01-01T00:00:00.000000Z");
        let text: serde_json::Value = serde_json::from_str(&log_line("s", b"hi", t)).unwrap();
        assert_eq!(text["text"], "hi");
        let empty: serde_json::Value = serde_json::from_str(&log_line("s", b"", t)).unwrap();
        assert_eq!(empty["text"], "");
        let bin: serde_json::Value = serde_json::from_str(&log_line("s", &[0xff, 0], t)).unwrap();
        assert_eq!(bin["base64"], "/wA=");
        let multi = log_line("s", b"[1,\n2]", t);
        assert_eq!(multi.lines().count(), 1);
        assert!(multi.contains(r#""json":[1,2]"#), "{multi}");
        assert!(bin.get("text").is_none() && bin.get("json").is_none());
    }
}
