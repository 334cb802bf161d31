//! What the `standard_ops` tests share: the binary configured for a test
//! server, requests, and reading log lines back the way users do (with
//! serde_json and with Python's `json`).
//!
//! Each test file uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use telestion_test::{NatsServer, WAIT, request};

/// The `standard_ops` binary configured for `server`, with `extra`
/// configuration keys.
pub fn ops(server: &NatsServer, data_dir: &Path, extra: &[(&str, &str)]) -> Command {
    let mut cmd = telestion_test::service_command(
        env!("CARGO_BIN_EXE_standard_ops"),
        server,
        "ops",
        data_dir,
    );
    for (key, value) in extra {
        cmd.env(key, value);
    }
    cmd
}

/// `<data_dir>/logs/<category>.log`.
pub fn log_file(data_dir: &Path, category: &str) -> PathBuf {
    data_dir.join("logs").join(format!("{category}.log"))
}

/// The reply to a log request, as JSON (within [`WAIT`]).
pub async fn ack(client: &async_nats::Client, subject: &str, body: impl AsRef<[u8]>) -> Value {
    let body = telestion::Bytes::copy_from_slice(body.as_ref());
    let reply = request(client, subject, body).await;
    serde_json::from_slice(&reply.payload)
        .unwrap_or_else(|e| panic!("reply to {subject} is not JSON ({e}): {:?}", reply.payload))
}

/// Asserts that a reply is `{"ok": false, "error": ...}` whose error
/// contains `needle`.
pub fn assert_refused(reply: &Value, needle: &str) {
    assert_eq!(reply["ok"], false, "{reply}");
    let error = reply["error"].as_str().expect("an error message");
    assert!(error.contains(needle), "{needle:?} not in: {error}");
}

/// The raw lines of a file (each with its `\n`); panics when the file
/// does not end with a complete line.
pub fn raw_lines(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "{path:?} ends with a torn line: {:?}",
        String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(80)..])
    );
    let text = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{path:?} is not UTF-8: {e}"));
    text.split_inclusive('\n').map(str::to_owned).collect()
}

/// The lines of `<data_dir>/logs/<category>.log`, parsed; panics on a
/// line that is not a JSON object with time, subject and one body form.
pub fn lines(data_dir: &Path, category: &str) -> Vec<Value> {
    raw_lines(&log_file(data_dir, category))
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("line {line:?} is not JSON: {e}"));
            let time = value["time"].as_str().expect("a line without time");
            humantime::parse_rfc3339(time).expect("time is not RFC 3339");
            assert!(
                value["subject"].is_string(),
                "a line without subject: {line}"
            );
            let kinds = ["json", "text", "base64"]
                .iter()
                .filter(|k| value.get(**k).is_some())
                .count();
            assert_eq!(kinds, 1, "a line must hold exactly one body form: {line}");
            value
        })
        .collect()
}

/// The body a line holds, recovered with serde_json: the raw embedded text
/// of `"json"`, the string of `"text"`, the decoded `"base64"`. Panics when
/// serde_json cannot read the line (as a `Value` and as raw text).
pub fn serde_body(line: &str) -> Vec<u8> {
    use serde_json::value::RawValue;
    serde_json::from_str::<Value>(line)
        .unwrap_or_else(|e| panic!("serde_json cannot read {line:?} as a value: {e}"));
    let members: std::collections::HashMap<String, &RawValue> = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("serde_json cannot read {line:?}: {e}"));
    let string = |raw: &RawValue| -> String {
        serde_json::from_str(raw.get()).unwrap_or_else(|e| panic!("not a string in {line:?}: {e}"))
    };
    let forms: Vec<&str> = ["json", "text", "base64"]
        .into_iter()
        .filter(|form| members.contains_key(*form))
        .collect();
    match forms[..] {
        ["json"] => members["json"].get().as_bytes().to_vec(),
        ["text"] => string(members["text"]).into_bytes(),
        ["base64"] => base64::engine::general_purpose::STANDARD
            .decode(string(members["base64"]))
            .unwrap_or_else(|e| panic!("bad base64 in {line:?}: {e}")),
        _ => panic!("a line must hold exactly one body form: {line:?}"),
    }
}

/// Python's reading of log lines: `json.loads` must accept each line, and
/// the body is recovered as in [`serde_body`] (the raw text of `"json"`
/// taken from Python's own scanner). Prints one hex line per input line.
const PYTHON_READER: &str = r#"
import base64, json, sys

decoder = json.JSONDecoder()
SPACE = " \t\n\r"

def skip(s, i):
    while i < len(s) and s[i] in SPACE:
        i += 1
    return i

def raw_members(s):
    """The top-level members of the object in s: key -> raw value text."""
    i = skip(s, 0)
    assert s[i] == "{", s
    i = skip(s, i + 1)
    members = {}
    while s[i] != "}":
        assert s[i] == '"', s
        key, i = json.decoder.scanstring(s, i + 1)
        i = skip(s, i)
        assert s[i] == ":", s
        i = skip(s, i + 1)
        _, end = decoder.scan_once(s, i)
        members[key] = s[i:end]
        i = skip(s, end)
        if s[i] == ",":
            i = skip(s, i + 1)
    assert skip(s, i + 1) == len(s), s
    return members

with open(sys.argv[1], "rb") as lines:
    for raw in lines:
        line = raw.decode("utf-8")
        value = json.loads(line)
        members = raw_members(line)
        assert set(members) == set(value), line
        if "json" in value:
            body = members["json"].encode("utf-8")
            assert json.loads(body) == value["json"], line
        elif "text" in value:
            body = value["text"].encode("utf-8")
        else:
            body = base64.b64decode(value["base64"], validate=True)
        print(body.hex())
"#;

/// The bodies Python recovers from `lines` (one `python3` run for all).
///
/// # Panics
///
/// When Python cannot read a line, naming it.
pub fn python_bodies(lines: &[String]) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("lines.jsonl");
    std::fs::write(&input, lines.concat()).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(PYTHON_READER).arg(&input);
    let output = telestion_test::run_with_timeout(cmd, WAIT);
    assert!(
        output.status.success(),
        "Python's json cannot read the lines: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

/// Asserts that serde_json and Python both read every line and recover
/// exactly `bodies` from them, in order.
pub fn assert_recovered(lines: &[String], bodies: &[Vec<u8>]) {
    assert_eq!(lines.len(), bodies.len(), "one line per body");
    let python = python_bodies(lines);
    assert_eq!(python.len(), lines.len(), "Python read every line");
    for ((line, body), from_python) in lines.iter().zip(bodies).zip(&python) {
        assert_eq!(
            &serde_body(line),
            body,
            "serde_json recovered another body from {line:?}"
        );
        assert_eq!(
            from_python, body,
            "Python recovered another body from {line:?}"
        );
    }
}

/// Waits (bounded) until `path` exists.
pub async fn wait_for_file(path: &Path) {
    telestion_test::eventually(WAIT, &format!("{path:?} exists"), || path.exists()).await;
}

/// A generous bound on a request that must be answered.
pub const ANSWER: Duration = Duration::from_secs(15);
