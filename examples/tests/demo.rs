//! `scripts/demo.sh`: the one-command demo.

use std::process::Command;
use std::time::Duration;

use telestion_test::{
    NatsServer, Process, ServerOptions, WAIT, workspace_binary, workspace_example,
};

/// The demo script with a clean environment, prebuilt binaries (this test
/// build's) and its data in `data`.
fn demo_cmd(seconds: u32, data: &std::path::Path) -> Command {
    // One directory with every binary the demo runs (links to this build's).
    let bin_dir = data.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let binaries = [
        workspace_binary("standard_ops", "standard_ops"),
        workspace_binary("health", "health"),
        workspace_binary("device_sim", "device_sim"),
        workspace_binary("io_service", "io_service"),
        workspace_binary("telemetry_parser", "telemetry_parser"),
        workspace_binary("db_writer", "db_writer"),
        workspace_binary("db_query", "db_query"),
        workspace_binary("telecommand", "telecommand"),
        workspace_binary("web", "web"),
        workspace_binary("database", "database"),
        workspace_binary("database_query", "database_query"),
        workspace_example("telestion-examples", "publisher"),
        workspace_example("telestion-examples", "latest_value_cache"),
        workspace_example("telestion-examples", "requester"),
    ];
    for binary in binaries {
        let link = bin_dir.join(binary.file_name().unwrap());
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&binary, &link).unwrap();
    }
    let mut cmd = Command::new("bash");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo.sh"));
    cmd.env_clear();
    for key in ["PATH", "HOME"] {
        if let Ok(value) = std::env::var(key) {
            cmd.env(key, value);
        }
    }
    cmd.env("DEMO_SECONDS", seconds.to_string())
        .env("DEMO_DATA_DIR", data)
        .env("DEMO_BIN_DIR", bin_dir)
        // Tests run in parallel: each demo's page on a port of its own.
        .env(
            "WEB_ADDR",
            format!("127.0.0.1:{}", telestion_test::free_port()),
        );
    cmd
}

/// The line counts the demo reported for the log file, in order.
fn reported_counts(stdout: &str) -> Vec<usize> {
    stdout
        .lines()
        .filter_map(|line| {
            line.split_once("temperature.log: ")?
                .1
                .split_once(" lines")?
                .0
                .parse()
                .ok()
        })
        .collect()
}

/// The frame counts the demo reported for the database, in order.
fn reported_frames(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("demo: frames stored: ")?.parse().ok())
        .collect()
}

/// The port of the nats-server the demo started.
fn nats_port(stdout: &str) -> u16 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo: started nats-server on port "))
        .expect("the demo did not start its own nats-server")
        .trim()
        .parse()
        .unwrap()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn demo_runs_shows_growing_log_and_health_then_stops() {
    let data = tempfile::tempdir().unwrap();
    let mut demo = Process::spawn(demo_cmd(8, data.path()));
    let code = demo.wait_exit(Duration::from_secs(120));
    let stdout = demo.stdout();
    assert_eq!(
        code,
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        demo.stderr()
    );

    let counts = reported_counts(&stdout);
    assert!(
        counts.windows(2).any(|w| w[1] > w[0])
            && counts.iter().all(|c| *c > 0)
            && counts.len() >= 2,
        "the log did not visibly grow: {counts:?}\n{stdout}"
    );
    // The log lines carry the publisher's readings, through cache and requester.
    let log = std::fs::read_to_string(data.path().join("logs/temperature.log")).unwrap();
    assert!(log.lines().count() >= *counts.last().unwrap());
    assert!(
        log.contains("\"value\":"),
        "no reading reached the log:\n{log}"
    );

    // The backend stores the simulator's frames, more and more.
    let frames = reported_frames(&stdout);
    assert!(
        frames.len() >= 2 && frames.windows(2).any(|w| w[1] > w[0]),
        "the stored frames did not visibly grow: {frames:?}\n{stdout}"
    );
    assert!(
        stdout.contains("demo: web page: http://127.0.0.1:"),
        "{stdout}"
    );

    // The health table lists the samples and the backend services.
    let table_start = stdout.find("NAME").expect("no health table");
    let table = &stdout[table_start..];
    for name in [
        "standard_ops",
        "publisher",
        "latest_value_cache",
        "requester",
        "io_service",
        "telemetry_parser",
        "db_writer",
        "db_query",
        "telecommand",
        "web",
        "database",
        "database_query",
    ] {
        assert!(
            table.lines().any(|l| l.starts_with(name)),
            "no health row for {name}:\n{stdout}"
        );
    }
    assert!(table.contains("12 instances answered"), "{stdout}");
    // The upstream-format database got the parser's points.
    assert!(
        stdout.contains("database_query: newest telemetry.device temperature_c"),
        "{stdout}"
    );

    // Everything it started is gone.
    assert!(!port_open(nats_port(&stdout)), "nats-server still running");
    assert!(stdout.contains("demo: stopped"), "{stdout}");
}

#[test]
fn demo_stops_cleanly_on_ctrl_c() {
    let data = tempfile::tempdir().unwrap();
    let mut demo = Process::spawn(demo_cmd(600, data.path()));
    let deadline = std::time::Instant::now() + WAIT * 2;
    while !demo.stdout().contains("demo: running") {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not start:\n{}\n{}",
            demo.stdout(),
            demo.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = nats_port(&demo.stdout());
    assert!(port_open(port));
    demo.signal(libc::SIGINT);
    let code = demo.wait_exit(WAIT);
    let stdout = demo.stdout();
    assert_eq!(
        code,
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        demo.stderr()
    );
    assert!(stdout.contains("demo: stopped"), "{stdout}");
    assert!(!port_open(port), "nats-server still running");
    // The services are gone: the log stops growing.
    let log = data.path().join("logs/temperature.log");
    let before = std::fs::read_to_string(&log).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(2500));
    let after = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(before, after, "something still writes the log");
    // Each service drained on SIGTERM (exit code 0 is not visible here, but
    // the runtime logs the drain).
    for name in [
        "standard_ops",
        "publisher",
        "latest_value_cache",
        "requester",
    ] {
        let output =
            std::fs::read_to_string(data.path().join(format!("output/{name}.log"))).unwrap();
        assert!(
            output.contains("drained"),
            "{name} did not drain:\n{output}"
        );
    }
}

#[test]
fn demo_uses_a_reachable_nats_url_and_leaves_it_running() {
    // The backend needs JetStream.
    let server = NatsServer::start_with(ServerOptions::new().jetstream());
    let data = tempfile::tempdir().unwrap();
    let mut cmd = demo_cmd(3, data.path());
    cmd.env("NATS_URL", server.url());
    let mut demo = Process::spawn(cmd);
    let code = demo.wait_exit(Duration::from_secs(120));
    let stdout = demo.stdout();
    assert_eq!(
        code,
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        demo.stderr()
    );
    assert!(
        stdout.contains(&format!("using the NATS server at {}", server.url())),
        "{stdout}"
    );
    assert!(!stdout.contains("started nats-server"), "{stdout}");
    assert!(stdout.contains("12 instances answered"), "{stdout}");
    // The server belongs to someone else: the demo leaves it alone.
    assert!(
        port_open(server.port),
        "the demo stopped a server it did not start"
    );
}
