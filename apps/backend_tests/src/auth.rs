//! NATS users for the web tests: the services' own identity, the web
//! service's identity, an operator and a viewer, as a nats-server
//! `authorization` block.

use telestion_test::{NatsServer, ServerOptions};

/// The backend services' (and the test clients') user: everything allowed.
pub const SERVICES: (&str, &str) = ("services", "services-secret-7");
/// The web service's own identity: it may not send queries or commands
/// itself (the operators' connections do).
pub const WEB: (&str, &str) = ("web", "web-secret-7");
/// May query and send telecommands.
pub const OPERATOR: (&str, &str) = ("operator", "operator-secret-7");
/// May query, may not send telecommands.
pub const VIEWER: (&str, &str) = ("viewer", "viewer-secret-7");

/// The `authorization` block of the four users.
pub fn config() -> String {
    format!(
        r#"authorization {{
  users = [
    {{user: "{}", password: "{}"}}
    {{user: "{}", password: "{}", permissions: {{publish: {{deny: ["telecommand.>", "telemetry.query.>", "query.>"]}}}}}}
    {{user: "{}", password: "{}", permissions: {{publish: ["telemetry.query.>", "query.database", "telecommand.send"], subscribe: ["_INBOX.>"]}}}}
    {{user: "{}", password: "{}", permissions: {{publish: ["telemetry.query.>", "query.database"], subscribe: ["_INBOX.>"]}}}}
  ]
}}
"#,
        SERVICES.0, SERVICES.1, WEB.0, WEB.1, OPERATOR.0, OPERATOR.1, VIEWER.0, VIEWER.1
    )
}

/// Server options with the four users.
pub fn server_options() -> ServerOptions {
    ServerOptions::new().config(config())
}

/// Environment for [`crate::Backend::start_on`]: every service as
/// [`SERVICES`], the web service as [`WEB`].
pub fn service_env() -> Vec<(&'static str, String, String)> {
    vec![
        ("*", "NATS_USER".into(), SERVICES.0.into()),
        ("*", "NATS_PASSWORD".into(), SERVICES.1.into()),
        ("web", "NATS_USER".into(), WEB.0.into()),
        ("web", "NATS_PASSWORD".into(), WEB.1.into()),
    ]
}

/// A test client with the services' rights.
pub async fn client(server: &NatsServer) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(SERVICES.0.into(), SERVICES.1.into())
        .connect(server.url())
        .await
        .expect("test client cannot connect")
}
