//! The line format: one JSON object per message,
//! `{"time": "<RFC 3339>", "subject": "...", X}` where `X` is exactly one of
//! `"json": <the body, byte for byte>`, `"text": "<the body>"` (UTF-8 that
//! is not embedded as JSON; empty body → `""`) or `"base64": "<standard
//! base64>"` (anything else), so every body can be recovered exactly from
//! its line.
//!
//! A body is embedded as `"json"` only when every reader gets it back
//! unchanged: serde_json parses it to a value (so a lone surrogate such as
//! `"\ud800"` or a number out of range such as `1e400`, which lenient
//! parsers accept, is kept as text), it nests at most 126 levels, has no
//! line break and no leading or trailing whitespace (a reader recovering
//! the raw embedded text would drop that whitespace). Every other UTF-8
//! body is kept as `"text"`, so each line parses with any JSON reader
//! (serde_json, Python's `json`, ...) and gives back the body's bytes.

use std::time::SystemTime;

use base64::Engine;

/// One log line (with the trailing newline) for a message.
pub fn log_line(subject: &str, body: &[u8], time: SystemTime) -> String {
    let time = serde_json::Value::from(humantime::format_rfc3339_micros(time).to_string());
    let subject = serde_json::Value::from(subject);
    let tail = match std::str::from_utf8(body) {
        Ok(text) if embeddable(text) => format!("\"json\":{text}"),
        Ok(text) => format!("\"text\":{}", serde_json::Value::from(text)),
        Err(_) => format!(
            "\"base64\":\"{}\"",
            base64::engine::general_purpose::STANDARD.encode(body)
        ),
    };
    format!("{{\"time\":{time},\"subject\":{subject},{tail}}}\n")
}

/// Whether `text` can be embedded as it is as the `"json"` member (see the
/// module docs).
fn embeddable(text: &str) -> bool {
    let json_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
    !text.contains(['\n', '\r'])
        && !text.starts_with(json_space)
        && !text.ends_with(json_space)
        && shallow(text)
        && serde_json::from_str::<serde_json::Value>(text).is_ok()
}

/// Whether `text` nests at most 126 levels (brackets outside strings), so
/// that readers with serde_json's default recursion limit (127 levels) can
/// parse its line, which adds one level (deeper bodies are logged as
/// `"text"`).
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // Line breaks or surrounding whitespace: kept as text, byte for byte.
        for body in ["[1,\n2]", "[1,\r\n2]", " [1]", "[1]\t"] {
            let line = log_line("s", body.as_bytes(), t);
            assert_eq!(line.lines().count(), 1);
            let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(parsed["text"], body, "{line}");
        }
        assert!(bin.get("text").is_none() && bin.get("json").is_none());
    }

    /// Bodies only a lenient parser accepts are text, so that serde_json
    /// reads every line back.
    #[test]
    fn lenient_json_is_kept_as_text() {
        let t = SystemTime::UNIX_EPOCH;
        for body in [
            r#""\ud800""#,
            "1e400",
            "-1e400",
            r#"{"a":["\udc00"]}"#,
            "NaN",
        ] {
            let line = log_line("s", body.as_bytes(), t);
            let parsed: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{body}: {e}: {line}"));
            assert_eq!(parsed["text"], body, "{line}");
        }
        // A valid surrogate pair and a large but finite number stay JSON.
        for body in [
            r#""\ud83d\ude00""#,
            "1e300",
            "123456789012345678901234567890",
        ] {
            let line = log_line("s", body.as_bytes(), t);
            assert!(line.contains(&format!("\"json\":{body}}}")), "{line}");
        }
    }

    #[test]
    fn lines_stay_parseable_at_any_depth() {
        let now = SystemTime::now();
        for depth in [1usize, 126, 127, 128, 129, 1000, 100_000] {
            let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let line = log_line("s", body.as_bytes(), now);
            let parsed: serde_json::Value = serde_json::from_str(line.trim_end())
                .unwrap_or_else(|e| panic!("depth {depth}: {e}"));
            let kept = if parsed.get("json").is_some() {
                parsed["json"].to_string()
            } else {
                parsed["text"].as_str().unwrap().to_owned()
            };
            assert_eq!(kept, body, "depth {depth}");
            assert_eq!(parsed.get("json").is_some(), depth <= 126, "depth {depth}");
        }
        // Brackets inside strings do not count.
        let body = format!("[\"{}\"]", "[".repeat(500));
        let line = log_line("s", body.as_bytes(), now);
        assert!(
            serde_json::from_str::<serde_json::Value>(line.trim_end()).unwrap()["json"].is_array()
        );
    }
}
