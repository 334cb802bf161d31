//! The README's claims: its quick-start code is `examples/quickstart.rs`,
//! and that service behaves as the README says.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::{NatsServer, Proc, example_cmd};

/// The first ```rust block of the README.
fn readme_rust_block() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```rust\n").expect("README has a rust block") + "```rust\n".len();
    let end = start + readme[start..].find("```").unwrap();
    readme[start..end].to_string()
}

#[test]
fn readme_quick_start_is_the_quickstart_example() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/quickstart.rs"
    ))
    .unwrap();
    assert_eq!(readme_rust_block(), example);
    assert!(
        example.lines().count() <= 20,
        "the quick start must stay within 20 lines"
    );
}

#[test]
fn readme_commands_exist() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(readme.contains("bash scripts/test.sh"));
    assert!(
        ci.contains("bash scripts/test.sh"),
        ".ci/run must call the README's test command"
    );
    for script in ["scripts/test.sh", "scripts/demo.sh"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
        assert!(path.is_file(), "{script} is missing");
        assert!(readme.contains(&format!("bash {script}")));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_behaves_as_documented() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = example_cmd("quickstart");
    cmd.env("NATS_URL", server.url())
        .env("SERVICE_NAME", "converter")
        .env("DATA_DIR", data.path());
    let mut service = Proc::spawn(cmd);
    service.wait_for_stderr(" ready", Duration::from_secs(20));
    let client = server.client().await;
    // Subscriptions are made right after "service started"; retry briefly.
    let mut reply = None;
    for _ in 0..100 {
        match client
            .request("sensors.fahrenheit", r#"{"celsius": 20}"#.into())
            .await
        {
            Ok(message) => {
                reply = Some(message);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let reply = reply.expect("no reply from the quickstart service");
    assert_eq!(std::str::from_utf8(&reply.payload).unwrap(), "68.0");

    let bad = client
        .request("sensors.fahrenheit", "not json".into())
        .await
        .expect("a bad body must get an error reply, not a timeout");
    let headers = bad.headers.expect("error reply has headers");
    assert_eq!(
        headers.get("Nats-Service-Error-Code").map(|v| v.as_str()),
        Some("400")
    );
    let health = support::health(&client, "__telestion__/health").await;
    assert_eq!(health["name"], "converter");
    assert_eq!(health["errors"], 1);

    service.signal(libc::SIGTERM);
    assert_eq!(service.wait_exit(Duration::from_secs(20)), Some(0));
}
