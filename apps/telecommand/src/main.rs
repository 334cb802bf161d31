//! `telecommand`: the example backend's telecommand service.
//!
//! A request on `telecommand.send`,
//! `{"command": "set_heater"|"set_rate"|"reboot"|"ping", "args": {...}}`,
//! is checked (`set_heater` takes `{"on": bool}`, `set_rate`
//! `{"hz": 1..=1000}`, `reboot` and `ping` take `{}` or no `args`; any
//! other command or argument is refused with a 400 error reply naming the
//! reason), gets a new id (a NUID) and is published durably on
//! `telecommand.outgoing` (stream `TELECOMMANDS`, a work queue) as
//! `{"id", "command", "args", "deadline_ms"}` with the message id `<id>`.
//! The service subscribes to `telecommand.ack.<id>` *before* publishing,
//! so the ack cannot be missed, and answers with it:
//! `{"id": "...", "status": "acknowledged"|"rejected", "reason": "..."}`.
//! When no ack comes within `TELECOMMAND_TIMEOUT` it answers with a 504
//! error reply; `deadline_ms` tells the IO service not to send the command
//! after that moment (nobody waits for its ack any more). A command that
//! could not be stored is a 503 error reply.
//!
//! # Configuration
//!
//! The standard keys, and `TELECOMMAND_TIMEOUT` (default `5s`; `500ms`,
//! `2s`, ... or a number of seconds), `TELECOMMANDS_REPLICAS` (default 1).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::{Map, Value, json};
use telestion::{
    HandlerError, Json, Service, State, StreamRetention, StreamSpec, parse_period, subscribe,
    tokio, tracing,
};

/// How long a request waits for the device's ack.
struct Timeout(Duration);

/// The checked arguments of a command, or why they are refused.
fn validate(request: &Value) -> Result<(String, Value), String> {
    let Some(request) = request.as_object() else {
        return Err("the request must be a JSON object {\"command\": ..., \"args\": {...}}".into());
    };
    if let Some(key) = request.keys().find(|k| *k != "command" && *k != "args") {
        return Err(format!("unknown field {key:?} (expected command and args)"));
    }
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
            Some(key) => Err(format!("{command}: unknown argument {key:?}")),
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
            let mut shown: String = other.chars().take(64).collect();
            if shown.len() < other.len() {
                shown.push_str("...");
            }
            return Err(format!(
                "unknown command {shown:?} (set_heater, set_rate, reboot, ping)"
            ));
        }
    };
    Ok((command.to_owned(), args))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sends one telecommand and answers with the device's ack.
#[subscribe("telecommand.send", concurrency = 64)]
async fn send(
    Json(request): Json<Value>,
    service: Service,
    limit: State<Timeout>,
) -> Result<Json<Value>, HandlerError> {
    let (command, args) = validate(&request).map_err(HandlerError::client)?;
    let id = nuid::next().to_string();
    let timeout = limit.0.0;
    // Subscribe first: the ack may come back before the publish returns.
    let mut acks = service
        .nats()?
        .subscribe(format!("telecommand.ack.{id}"))
        .await
        .map_err(|e| HandlerError::server(format!("cannot subscribe to the ack: {e}")))?;
    let outgoing = json!({
        "id": id,
        "command": command,
        "args": args,
        "deadline_ms": now_ms() + timeout.as_millis() as u64,
    });
    let started = tokio::time::Instant::now();
    service
        .publish_durable_with_id("telecommand.outgoing", id.clone(), outgoing.to_string())
        .await
        .map_err(|e| HandlerError::server(format!("telecommand not queued: {e}")).with_code(503))?;
    tracing::info!(%id, %command, "telecommand queued");
    let left = timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, acks.next()).await {
        Ok(Some(message)) => {
            let ack: Value = serde_json::from_slice(&message.payload).map_err(|e| {
                HandlerError::server(format!("unreadable ack for telecommand {id}: {e}"))
            })?;
            Ok(Json(ack))
        }
        _ => Err(HandlerError::server(format!(
            "telecommand {id} ({command}): no ack from the device within {timeout:?}"
        ))
        .with_code(504)),
    }
}

#[telestion::service]
async fn main(service: Service) -> Result<(), Box<dyn std::error::Error>> {
    let text = service
        .config()
        .get_str("TELECOMMAND_TIMEOUT")
        .unwrap_or_else(|| "5s".into());
    let timeout = match text.trim().parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 3600.0 => Duration::from_secs_f64(secs),
        Ok(_) => return Err("TELECOMMAND_TIMEOUT must be more than 0 and at most 1 h".into()),
        Err(_) => parse_period(&text).map_err(|e| format!("TELECOMMAND_TIMEOUT: {e}"))?,
    };
    service.provide(Timeout(timeout));
    // Declared identically by the IO service: whoever starts first creates it.
    service
        .declare_stream(
            StreamSpec::new("TELECOMMANDS")
                .subjects(["telecommand.outgoing"])
                .retention(StreamRetention::WorkQueue)
                .max_age(Duration::from_secs(3600))
                .replicas_from_key("TELECOMMANDS_REPLICAS"),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_commands_pass() {
        assert_eq!(
            validate(&json!({"command": "set_heater", "args": {"on": true}})),
            Ok(("set_heater".into(), json!({"on": true})))
        );
        assert_eq!(
            validate(&json!({"command": "set_rate", "args": {"hz": 1000}})),
            Ok(("set_rate".into(), json!({"hz": 1000})))
        );
        assert_eq!(
            validate(&json!({"command": "ping"})),
            Ok(("ping".into(), json!({})))
        );
        assert_eq!(
            validate(&json!({"command": "reboot", "args": {}})),
            Ok(("reboot".into(), json!({})))
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
        ] {
            let error = validate(&request).unwrap_err();
            assert!(error.contains(reason), "{request}: {error}");
        }
        let long = "x".repeat(10_000);
        assert!(validate(&json!({"command": long})).unwrap_err().len() < 200);
    }
}
