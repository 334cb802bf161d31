//! The roles of people (NATS users for the web app and Telestion's nats.ws
//! frontend): a viewer sees telemetry and asks queries; an operator also
//! sends telecommands. Nobody but the services may publish telemetry,
//! device traffic or telecommand acks, or call the JetStream API.

use telestion::permissions::{NatsPermissions, SubjectPermissions};

/// A role's name and what it may do.
pub struct Role {
    pub name: &'static str,
    /// Subjects a person in this role may request on.
    pub requests: &'static [&'static str],
}

/// What a viewer asks: the query services.
const VIEWER_REQUESTS: &[&str] = &["telemetry.query.*", "query.database"];
/// What an operator asks besides: telecommands, through the
/// `telecommand` service (validated, queued durably, acknowledged).
const OPERATOR_REQUESTS: &[&str] = &["telemetry.query.*", "query.database", "telecommand.send"];

/// The roles.
pub const ROLES: &[Role] = &[
    Role {
        name: "viewer",
        requests: VIEWER_REQUESTS,
    },
    Role {
        name: "operator",
        requests: OPERATOR_REQUESTS,
    },
];

/// What people see live.
const LIVE: &[&str] = &["telemetry.parsed", "device.link"];

/// What no person may publish, whatever else is allowed.
const DENIED: &[&str] = &[
    "telecommand.outgoing",
    "telecommand.ack.>",
    "telemetry.raw",
    "telemetry.parsed",
    "telemetry.rejected",
    "device.>",
    "data.>",
    "$JS.>",
    "$KV.>",
    "$SRV.>",
    "_INBOX.>",
];

/// The role named `name`.
pub fn role(name: &str) -> Option<&'static Role> {
    ROLES.iter().find(|role| role.name == name)
}

/// The permissions of person `user` in `role`: requests on the role's
/// subjects, replies to the person's own inbox (`_INBOX.<user>`), live
/// telemetry.
pub fn permissions(user: &str, role: &Role) -> NatsPermissions {
    NatsPermissions {
        publish: SubjectPermissions {
            allow: role.requests.iter().map(|s| (*s).to_owned()).collect(),
            deny: DENIED.iter().map(|s| (*s).to_owned()).collect(),
        },
        subscribe: SubjectPermissions {
            allow: LIVE
                .iter()
                .map(|s| (*s).to_owned())
                .chain([format!("{}.>", telestion::permissions::inbox_prefix(user))])
                .collect(),
            deny: Vec::new(),
        },
        allow_responses: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_operator_sends_telecommands() {
        let viewer = permissions("vera", role("viewer").unwrap());
        let operator = permissions("otto", role("operator").unwrap());
        assert!(!viewer.publish.allow.iter().any(|s| s == "telecommand.send"));
        assert!(
            operator
                .publish
                .allow
                .iter()
                .any(|s| s == "telecommand.send")
        );
        for p in [&viewer, &operator] {
            assert!(p.publish.deny.iter().any(|s| s == "$JS.>"));
            assert!(p.allow_responses.is_none());
        }
        assert!(viewer.subscribe.allow.iter().any(|s| s == "_INBOX.vera.>"));
    }
}
