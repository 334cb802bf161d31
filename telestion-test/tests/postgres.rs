//! The PostgreSQL helper starts a real server that accepts connections,
//! restarts it on the same port, and leaves no process behind.

use std::net::TcpStream;

#[test]
fn starts_restarts_and_stops() {
    let mut server = telestion_test::PostgresServer::start();
    let pid = server.pid().expect("running");
    TcpStream::connect(("127.0.0.1", server.port)).expect("postgres listens");
    assert!(server.url().starts_with("postgres://postgres@127.0.0.1:"));
    server.restart();
    TcpStream::connect(("127.0.0.1", server.port)).expect("postgres listens again");
    let restarted = server.pid().expect("running again");
    assert_ne!(pid, restarted);
    drop(server);
    assert!(
        !std::path::Path::new(&format!("/proc/{restarted}")).exists()
            || std::fs::read_to_string(format!("/proc/{restarted}/status"))
                .is_ok_and(|s| s.contains("State:\tZ")),
        "the server still runs after drop"
    );
}
