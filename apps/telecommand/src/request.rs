//! The request on `telecommand.send`: checked before anything is queued.

use serde_json::{Map, Value, json};

/// The longest id (it becomes a subject token and goes into the device's
/// frame).
pub const MAX_ID_LEN: usize = 64;

/// A checked telecommand.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The sender's id, the command's idempotency key (`None`: the service
    /// assigns one).
    pub id: Option<String>,
    /// The command's name.
    pub command: String,
    /// Its arguments, normalised (`{}` when it takes none).
    pub args: Value,
}

/// Whether `id` is 1 to 64 of `A-Z a-z 0-9 _ -`.
pub fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A text for a reply, cut to 64 characters.
fn shown(text: &str) -> String {
    let mut shown: String = text.chars().take(64).collect();
    if shown.len() < text.len() {
        shown.push_str("...");
    }
    shown
}

/// The checked request, or why it is refused.
pub fn validate(request: &Value) -> Result<Request, String> {
    let Some(request) = request.as_object() else {
        return Err(
            "the request must be a JSON object {\"id\"?: ..., \"command\": ..., \"args\": {...}}"
                .into(),
        );
    };
    if let Some(key) = request
        .keys()
        .find(|k| !["id", "command", "args"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown field {:?} (expected id, command and args)",
            shown(key)
        ));
    }
    let id = match request.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if valid_id(id) => Some(id.clone()),
        Some(_) => {
            return Err(format!(
                "id must be a string of 1 to {MAX_ID_LEN} of A-Z a-z 0-9 _ - (or left out: the \
                 service assigns one)"
            ));
        }
    };
    let command = match request.get("command") {
        Some(Value::String(command)) => command.as_str(),
        Some(_) => return Err("command must be a string".into()),
        None => return Err("command is missing".into()),
    };
    let empty = Map::new();
    let args = match request.get("args") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(args)) => args,
        Some(_) => return Err("args must be an object".into()),
    };
    let only = |allowed: &[&str]| -> Result<(), String> {
        match args.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(key) => Err(format!("{command}: unknown argument {:?}", shown(key))),
            None => Ok(()),
        }
    };
    let args = match command {
        "set_heater" => {
            only(&["on"])?;
            match args.get("on") {
                Some(Value::Bool(on)) => json!({"on": on}),
                _ => return Err("set_heater needs {\"on\": true|false}".into()),
            }
        }
        "set_rate" => {
            only(&["hz"])?;
            match args.get("hz").and_then(Value::as_u64) {
                Some(hz) if (1..=1000).contains(&hz) => json!({"hz": hz}),
                _ => return Err("set_rate needs {\"hz\": 1..=1000} (an integer)".into()),
            }
        }
        "reboot" | "ping" => {
            only(&[])?;
            json!({})
        }
        other => {
            return Err(format!(
                "unknown command {:?} (set_heater, set_rate, reboot, ping)",
                shown(other)
            ));
        }
    };
    Ok(Request {
        id,
        command: command.to_owned(),
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(request: Value) -> Result<(Option<String>, String, Value), String> {
        validate(&request).map(|r| (r.id, r.command, r.args))
    }

    #[test]
    fn valid_commands_pass() {
        assert_eq!(
            checked(json!({"command": "set_heater", "args": {"on": true}})),
            Ok((None, "set_heater".into(), json!({"on": true})))
        );
        assert_eq!(
            checked(json!({"command": "set_rate", "args": {"hz": 1000}})),
            Ok((None, "set_rate".into(), json!({"hz": 1000})))
        );
        assert_eq!(
            checked(json!({"command": "ping"})),
            Ok((None, "ping".into(), json!({})))
        );
        assert_eq!(
            checked(json!({"id": "web-1f_A", "command": "reboot", "args": {}})),
            Ok((Some("web-1f_A".into()), "reboot".into(), json!({})))
        );
        assert_eq!(
            checked(json!({"id": null, "command": "ping"})),
            Ok((None, "ping".into(), json!({})))
        );
    }

    #[test]
    fn invalid_commands_are_refused_with_a_reason() {
        for (request, reason) in [
            (json!([]), "JSON object"),
            (json!({}), "command is missing"),
            (json!({"command": 3}), "must be a string"),
            (json!({"command": "launch"}), "unknown command \"launch\""),
            (json!({"command": "ping", "x": 1}), "unknown field \"x\""),
            (
                json!({"command": "ping", "args": 1}),
                "args must be an object",
            ),
            (
                json!({"command": "ping", "args": {"a": 1}}),
                "unknown argument \"a\"",
            ),
            (
                json!({"command": "set_rate", "args": {"hz": 0}}),
                "1..=1000",
            ),
            (
                json!({"command": "set_rate", "args": {"hz": 1001}}),
                "1..=1000",
            ),
            (
                json!({"command": "set_rate", "args": {"hz": 2.5}}),
                "1..=1000",
            ),
            (
                json!({"command": "set_heater", "args": {"on": "yes"}}),
                "true|false",
            ),
            (json!({"id": "", "command": "ping"}), "id must be"),
            (json!({"id": "a.b", "command": "ping"}), "id must be"),
            (json!({"id": 7, "command": "ping"}), "id must be"),
            (
                json!({"id": "x".repeat(65), "command": "ping"}),
                "id must be",
            ),
        ] {
            let error = checked(request.clone()).unwrap_err();
            assert!(error.contains(reason), "{request}: {error}");
        }
        let long = "x".repeat(10_000);
        assert!(checked(json!({"command": long})).unwrap_err().len() < 200);
        let long_field = json!({ long.clone(): 1, "command": "ping" });
        assert!(checked(long_field).unwrap_err().len() < 200);
    }
}
