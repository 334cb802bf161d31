//! One data-log line as standard_ops writes it:
//! `{"time":"<RFC 3339>","subject":"<subject>",X}` where `X` is exactly one
//! of `"json":<the body, embedded as it was>`, `"text":"<the UTF-8 body>"`
//! or `"base64":"<standard base64 of the body>"`. Other fields are ignored.

use std::borrow::Cow;
use std::time::SystemTime;

use base64::Engine;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use telestion::Bytes;

/// A message to publish again.
#[derive(Debug, PartialEq)]
pub(crate) struct Record {
    pub(crate) time: SystemTime,
    pub(crate) subject: String,
    pub(crate) body: Bytes,
}

/// The fields of a line. The bodies are taken raw, so that `"json": null`
/// (the body `null`) counts as present and `json` keeps its exact text.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    time: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    subject: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    json: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    text: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    base64: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A JSON string field, unescaped.
fn string<'a>(raw: &'a RawValue, field: &str) -> Result<Cow<'a, str>, String> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    serde_json::from_str::<Text>(raw.get())
        .map(|t| t.0)
        .map_err(|_| format!("`{field}` is not a string"))
}

/// Checks a subject to publish to: a valid subject without wildcards.
fn check_subject(subject: &str) -> Result<(), String> {
    telestion::validate_subject(subject)
        .map_err(|reason| format!("invalid subject {subject:?}: {reason}"))?;
    if subject.split('.').any(|token| token == "*" || token == ">") {
        return Err(format!(
            "invalid subject {subject:?}: messages are published to subjects without wildcards"
        ));
    }
    Ok(())
}

/// Parses one line (without or with its line break); the error says why
/// it is not a data-log line.
pub(crate) fn parse(line: &[u8]) -> Result<Record, String> {
    // (A struct would also be read from a JSON array.)
    if line.trim_ascii_start().first() != Some(&b'{') {
        return Err("not a data-log line (a JSON object)".into());
    }
    let fields: Fields = serde_json::from_slice(line)
        .map_err(|e| format!("not a data-log line (a JSON object): {e}"))?;
    let time = fields.time.ok_or("no `time`")?;
    let time = string(time, "time")?;
    let time = humantime::parse_rfc3339(&time)
        .map_err(|e| format!("`time` {time:?} is not an RFC 3339 time in UTC: {e}"))?;
    let subject = string(fields.subject.ok_or("no `subject`")?, "subject")?.into_owned();
    check_subject(&subject)?;
    let body = match (fields.json, fields.text, fields.base64) {
        (Some(json), None, None) => Bytes::copy_from_slice(json.get().as_bytes()),
        (None, Some(text), None) => Bytes::from(string(text, "text")?.into_owned()),
        (None, None, Some(encoded)) => {
            let encoded = string(encoded, "base64")?;
            base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .map(Bytes::from)
                .map_err(|e| format!("`base64` is not standard base64: {e}"))?
        }
        (None, None, None) => {
            return Err("no body: expected one of `json`, `text`, `base64`".into());
        }
        _ => return Err("more than one body: expected one of `json`, `text`, `base64`".into()),
    };
    Ok(Record {
        time,
        subject,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = r#""time":"2025-01-01T12:00:00.000000Z","subject":"a.b""#;

    fn body(tail: &str) -> Result<Vec<u8>, String> {
        parse(format!("{{{T},{tail}}}\n").as_bytes()).map(|r| r.body.to_vec())
    }

    #[test]
    fn bodies_come_back_byte_for_byte() {
        assert_eq!(body(r#""json":{"a" : 1.50}"#).unwrap(), br#"{"a" : 1.50}"#);
        assert_eq!(body(r#""json":null"#).unwrap(), b"null");
        assert_eq!(body(r#""json":"\u00e4""#).unwrap(), br#""\u00e4""#);
        assert_eq!(
            body(r#""text":"h\u00e4 \"x\"\n""#).unwrap(),
            "hä \"x\"\n".as_bytes()
        );
        assert_eq!(body(r#""text":"""#).unwrap(), b"");
        assert_eq!(body(r#""base64":"/wAB""#).unwrap(), [0xff, 0, 1]);
        assert_eq!(body(r#""base64":"""#).unwrap(), b"");
        let record = parse(format!("{{{T},\"json\":1}}\r\n").as_bytes()).unwrap();
        assert_eq!(record.subject, "a.b");
        assert_eq!(
            record.time,
            humantime::parse_rfc3339("2025-01-01T12:00:00Z").unwrap()
        );
    }

    #[test]
    fn malformed_lines_say_why() {
        let err = |line: &str| parse(line.as_bytes()).unwrap_err();
        assert!(err("").contains("not a data-log line"));
        assert!(err("{\"time\":").contains("not a data-log line"));
        assert!(err("[1]").contains("not a data-log line"));
        assert!(err(r#"{"subject":"a","json":1}"#).contains("no `time`"));
        assert!(err(r#"{"time":"2025-01-01T12:00:00Z","json":1}"#).contains("no `subject`"));
        assert!(err(r#"{"time":"yesterday","subject":"a","json":1}"#).contains("RFC 3339"));
        assert!(err(r#"{"time":5,"subject":"a","json":1}"#).contains("`time` is not a string"));
        let t = r#""time":"2025-01-01T12:00:00Z""#;
        assert!(err(&format!(r#"{{{t},"subject":"a b","json":1}}"#)).contains("invalid subject"));
        assert!(err(&format!(r#"{{{t},"subject":"a.*","json":1}}"#)).contains("wildcards"));
        assert!(err(&format!(r#"{{{t},"subject":"a"}}"#)).contains("no body"));
        assert!(
            err(&format!(r#"{{{t},"subject":"a","json":1,"text":"x"}}"#)).contains("more than one")
        );
        assert!(err(&format!(r#"{{{t},"subject":"a","json":1,"json":2}}"#)).contains("duplicate"));
        assert!(err(&format!(r#"{{{t},"subject":"a","text":1}}"#)).contains("`text` is not"));
        assert!(err(&format!(r#"{{{t},"subject":"a","base64":"%%"}}"#)).contains("base64"));
    }
}
