//! The parts every AsyncAPI document of a Telestion service has: the error
//! reply of request/reply handlers and the health report.

use serde_json::{Value, json};

/// The name of the error reply in `components/messages` (and of its body's
/// schema in `components/schemas`).
pub(super) const ERROR_MESSAGE: &str = "TelestionError";

/// The error reply of every request/reply handler: what a typed client
/// (generated models, FastStream with pydantic) tells apart from a reply.
pub(super) fn error_message() -> Value {
    json!({
        "name": ERROR_MESSAGE,
        "title": "Error reply",
        "summary": "the handler failed or rejected the request",
        "description": "Sent instead of the reply when the handler fails (its error), \
            rejects the request (a body it cannot decode: code 400) or panics (500). Tell it \
            apart from a reply by the header Nats-Service-Error-Code (always present in an \
            error reply, never in a reply), or by the body's only member `error`. The \
            message is one line, at most about 1 KB (a longer one keeps its first and last \
            256 bytes around `… [N bytes cut] …`).",
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "required": ["Nats-Service-Error", "Nats-Service-Error-Code"],
            "properties": {
                "Nats-Service-Error": {
                    "type": "string",
                    "description": "the error message, on one line",
                },
                "Nats-Service-Error-Code": {
                    "type": "string",
                    "pattern": "^[0-9]{3}$",
                    "description": "4xx: the request was at fault; 5xx: the handler was",
                },
            },
        },
        "payload": {"$ref": format!("#/components/schemas/{ERROR_MESSAGE}")},
    })
}

/// The JSON schema of an error reply's body.
pub(super) fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "the body of an error reply",
        "required": ["error"],
        "additionalProperties": false,
        "properties": {
            "error": {"type": "string", "description": "the error message"},
        },
    })
}

/// The JSON schema of a health reply.
pub(super) fn health_report_schema() -> Value {
    json!({
        "type": "object",
        "description": "what every instance answers on the health subjects",
        "required": ["service"],
        "properties": {
            "errors": {"type": "integer", "minimum": 0,
                       "description": "errors within the last error_window_s seconds"},
            "service": {"type": "string", "description": "the instance id (SERVICE_ID)"},
            "name": {"type": "string", "description": "SERVICE_NAME"},
            "errors_total": {"type": "integer", "minimum": 0,
                             "description": "errors since start"},
            "error_window_s": {"type": "integer", "minimum": 0},
            "uptime_s": {"type": "number", "minimum": 0},
            "durable": {
                "type": "array",
                "description": "each durable handler's consumer",
                "items": {
                    "type": "object",
                    "properties": {
                        "handler": {"type": "string"},
                        "stream": {"type": "string"},
                        "consumer": {"type": "string"},
                        "pending": {"type": "integer", "minimum": 0},
                        "ack_pending": {"type": "integer", "minimum": 0},
                        "redelivered": {"type": "integer", "minimum": 0},
                        "dead_lettered": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    })
}
