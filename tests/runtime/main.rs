//! Runtime integration tests against real nats-server processes.
#[path = "../support/mod.rs"]
mod support;

#[test]
fn support_starts_a_server() {
    let server = support::NatsServer::start();
    assert!(server.port > 0);
}
