//! `scripts/demo.sh`: the one-command demo, and that it leaves nothing
//! running however it ends.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use telestion_test::{
    NatsServer, Process, ProcessMark, ServerOptions, WAIT, workspace_binary, workspace_example,
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
        workspace_binary("nats_config", "nats_config"),
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
        .split_whitespace()
        .next()
        .unwrap_or("")
        .parse()
        .unwrap()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The demo with `mark` on it (and so on everything it starts), started.
fn spawn_marked(seconds: u32, data: &std::path::Path, mark: &ProcessMark) -> Process {
    let mut cmd = demo_cmd(seconds, data);
    mark.apply(&mut cmd);
    Process::spawn(cmd)
}

/// Waits until the demo printed `needle`.
fn wait_for_stdout(demo: &Process, needle: &str) {
    let deadline = Instant::now() + WAIT * 2;
    while !demo.stdout().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "the demo did not print {needle:?}:\n{}\n{}",
            demo.stdout(),
            demo.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A machine under load (as with other builds running): busy threads,
/// twice as many as cores, until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start() -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..2 * cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[test]
fn demo_runs_shows_growing_log_and_health_then_stops() {
    let data = tempfile::tempdir().unwrap();
    let mark = ProcessMark::new();
    let mut demo = spawn_marked(8, data.path(), &mark);
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

    // Every service and sample ran as its own NATS user, under the
    // permissions it generated, and never did anything they do not cover;
    // anonymous clients were refused.
    assert!(stdout.contains("credentials: "), "{stdout}");
    let server_log = std::fs::read_to_string(data.path().join("output/nats-server.log")).unwrap();
    assert!(
        !server_log.contains("Violation"),
        "a service was refused by the server:\n{server_log}"
    );
    let auth = std::fs::read_to_string(data.path().join("nats/auth.conf")).unwrap();
    for name in [
        "standard_ops",
        "publisher",
        "requester",
        "io_service",
        "web",
        "health",
    ] {
        assert!(auth.contains(&format!("\"user\": \"{name}\"")), "{auth}");
    }

    // Everything it started is gone.
    assert!(!port_open(nats_port(&stdout)), "nats-server still running");
    assert!(stdout.contains("demo: stopped"), "{stdout}");
    mark.assert_none_within(Duration::from_secs(5));
}

#[test]
fn demo_stops_cleanly_on_ctrl_c() {
    let data = tempfile::tempdir().unwrap();
    let mark = ProcessMark::new();
    let mut demo = spawn_marked(600, data.path(), &mark);
    wait_for_stdout(&demo, "demo: running");
    let port = nats_port(&demo.stdout());
    assert!(port_open(port));
    // Ctrl-C right after the start, on a busy machine: the demo still
    // stops within WAIT (30 s), everything it started with it.
    let load = Load::start();
    let interrupted = Instant::now();
    demo.signal(libc::SIGINT);
    let code = demo.wait_exit(WAIT);
    eprintln!("the demo ended {:?} after Ctrl-C", interrupted.elapsed());
    mark.assert_none_within(Duration::from_secs(5));
    drop(load);
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

/// Kills the demo script with SIGKILL (it cannot react) once it printed
/// `needle` and `delay` later, and checks that nothing it started runs 30 s
/// later.
fn killed_demo_leaves_nothing(needle: &str, delay: Duration) {
    let data = tempfile::tempdir().unwrap();
    let mark = ProcessMark::new();
    let demo = spawn_marked(600, data.path(), &mark);
    wait_for_stdout(&demo, needle);
    std::thread::sleep(delay);
    assert!(
        !mark.running().is_empty(),
        "the demo started nothing:\n{}",
        demo.stdout()
    );
    demo.signal(libc::SIGKILL);
    mark.assert_none_within(WAIT);
}

#[test]
fn demo_killed_while_running_leaves_nothing() {
    killed_demo_leaves_nothing("demo: running", Duration::ZERO);
}

#[test]
fn demo_killed_while_starting_leaves_nothing() {
    // At some moment of the start (nats-server runs, services start);
    // printed, to repeat a failure.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let delay = Duration::from_millis(u64::from(nanos % 2000));
    eprintln!("killing the demo {delay:?} after nats-server started");
    killed_demo_leaves_nothing("demo: started nats-server", delay);
}

#[test]
fn demo_killed_while_stopping_leaves_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mark = ProcessMark::new();
    let demo = spawn_marked(600, data.path(), &mark);
    wait_for_stdout(&demo, "demo: running");
    demo.signal(libc::SIGINT);
    wait_for_stdout(&demo, "demo: stopping");
    demo.signal(libc::SIGKILL);
    mark.assert_none_within(WAIT);
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
