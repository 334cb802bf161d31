//! The README's and the guide's claims: the quick-start code is
//! `examples/quickstart.rs`, and that service behaves as the README says;
//! the guide's examples are the files they show.

use telestion_test as support;

use std::time::Duration;

use support::{NatsServer, Process, clean_command};

/// A guide chapter (`telestion/src/docs/<name>.md`).
fn chapter(name: &str) -> String {
    let path = format!(
        "{}/../telestion/src/docs/{name}.md",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The README's code block that follows `after` and opens with `fence`.
fn readme_block(after: &str, fence: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    text_block(&readme, after, fence)
}

/// The code block of `text` that follows `after` and opens with `fence`.
fn text_block(readme: &str, after: &str, fence: &str) -> String {
    let from = readme
        .find(after)
        .unwrap_or_else(|| panic!("README lacks {after:?}"));
    let start = from
        + readme[from..]
            .find(fence)
            .unwrap_or_else(|| panic!("no {fence} block after {after:?}"))
        + fence.len();
    let end = start + readme[start..].find("```").unwrap();
    readme[start..end].to_string()
}

/// The quick start's code block.
fn readme_rust_block() -> String {
    readme_block("## A complete service", "```rust,no_run\n")
}

#[test]
fn readme_by_hand_service_compiles_without_a_tokio_dependency() {
    let crate_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/without_tokio");
    let main = std::fs::read_to_string(format!("{crate_dir}/src/main.rs")).unwrap();
    assert_eq!(
        text_block(
            &chapter("handlers"),
            "## Without the macros",
            "```rust,no_run\n"
        ),
        main
    );
    // That crate depends on telestion alone (and the workspace builds it).
    let manifest = std::fs::read_to_string(format!("{crate_dir}/Cargo.toml")).unwrap();
    let dependencies = manifest.split("[dependencies]").nth(1).unwrap();
    let names: Vec<&str> = dependencies
        .lines()
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim()))
        .collect();
    assert_eq!(names, ["telestion"]);
}

/// The guide's "Dependencies" promise: a service with derives, logging
/// and a timer needs only `telestion` and `serde` (the workspace builds
/// `tests/with_serde`).
#[test]
fn a_service_needs_only_telestion_and_serde() {
    let crate_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/with_serde");
    let manifest = std::fs::read_to_string(format!("{crate_dir}/Cargo.toml")).unwrap();
    let dependencies = manifest.split("[dependencies]").nth(1).unwrap();
    let names: Vec<&str> = dependencies
        .lines()
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim()))
        .collect();
    assert_eq!(names, ["telestion", "serde"]);
    let configuration = chapter("configuration");
    assert!(
        configuration.contains("\n## Dependencies\n")
            && configuration.contains("telestion = \"0.1\"")
            && configuration.contains("serde = { version = \"1\", features = [\"derive\"] }"),
        "the guide's configuration chapter lacks the section"
    );
}

#[test]
fn readme_testing_section_is_the_testing_example() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/testing_example.rs"))
            .unwrap();
    assert_eq!(
        text_block(&chapter("testing"), "", "```rust,ignore\n"),
        example
    );
}

#[test]
fn readme_quick_start_is_the_quickstart_example() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/quickstart.rs"
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
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/run")).unwrap();
    assert!(readme.contains("bash scripts/test.sh"));
    assert!(
        ci.contains("bash scripts/test.sh"),
        ".ci/run must call the README's test command"
    );
    for script in ["scripts/test.sh", "scripts/demo.sh"] {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(script);
        assert!(path.is_file(), "{script} is missing");
        assert!(readme.contains(&format!("bash {script}")));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_behaves_as_documented() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = clean_command(support::workspace_example(
        "telestion-examples",
        "quickstart",
    ));
    cmd.env("NATS_URL", server.url())
        .env("SERVICE_NAME", "converter")
        .env("DATA_DIR", data.path());
    let mut service = Process::spawn(cmd);
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

/// Issue 23, points 6 and 8: the drain's known limit is stated as it is
/// (async-nats has had pull request #1504 since 0.46, and a drained
/// subscription is still forgotten at the next poll, not on the `PONG`),
/// with the way out (durable handlers), and the exit codes of a stop that
/// was not confirmed or lost its connection are documented.
///
/// Old text: "async-nats 0.51, the newest release on crates.io, does not
/// have" PR #1504; no exit codes besides 0, 1 and 130.
#[test]
fn the_shutdown_section_tells_the_truth() {
    let shutdown = chapter("shutdown");
    assert!(
        !shutdown.contains("does not have it") && !shutdown.contains("newest release"),
        "{shutdown}"
    );
    for claim in ["0.52", "next poll", "PONG", "durable handler"] {
        assert!(shutdown.contains(claim), "the drain limit lacks {claim:?}");
    }
    for code in [
        telestion::exit_code::SUCCESS,
        telestion::exit_code::START_FAILED,
        telestion::exit_code::UNCONFIRMED,
        telestion::exit_code::CONNECTION_LOST,
        telestion::exit_code::SECOND_SIGNAL,
    ] {
        assert!(
            shutdown.contains(&format!("| {code} |")),
            "exit code {code} is not in the table"
        );
    }
}
