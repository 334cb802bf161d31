//! The example backend as a whole, for its end-to-end tests (and the
//! benchmark): a JetStream `nats-server`, the device simulator and the
//! backend services as real processes, a direct read of the database, and a
//! small Chrome DevTools client for the page test.
//!
//! The binaries are the workspace's own (`telestion_test::workspace_binary`
//! builds them when they are not current).

pub mod auth;
pub mod browser;
pub mod http;
pub mod rate;

pub mod secured;
pub mod telecommands;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use telestion_test::{NatsServer, Process, ServerOptions, WAIT, service_command, spawn_ready};

/// Every backend service, in start order.
pub const SERVICES: [&str; 6] = [
    "io_service",
    "telemetry_parser",
    "db_writer",
    "db_query",
    "telecommand",
    "web",
];

/// One session's rows (the reply of `telemetry.query.count`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SessionCount {
    /// The simulator session.
    pub session: u32,
    /// Smallest counter stored.
    pub min_counter: u32,
    /// Largest counter stored.
    pub max_counter: u32,
    /// Rows.
    pub count: u64,
}

/// The reply of `telemetry.query.count`.
#[derive(Debug, Clone, Deserialize)]
pub struct Count {
    /// All rows.
    pub rows: u64,
    /// Per session.
    pub sessions: Vec<SessionCount>,
}

/// The running backend.
pub struct Backend {
    /// The JetStream server.
    pub server: NatsServer,
    /// `DATA_DIR` of every service.
    pub data: tempfile::TempDir,
    /// The device simulator.
    pub device: Process,
    /// Where the IO service connects.
    pub device_addr: String,
    /// The simulator's control port.
    pub control_addr: String,
    /// The simulator's session.
    pub session: u32,
    /// `WEB_ADDR` of the web service.
    pub web_addr: String,
    /// The running services by name.
    pub services: HashMap<&'static str, Process>,
    /// Extra environment per service.
    pub env: Vec<(&'static str, String, String)>,
}

fn stdout_value(process: &mut Process, prefix: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(line) = process
            .stdout()
            .lines()
            .find_map(|line| line.strip_prefix(prefix).map(str::to_owned))
        {
            return line.trim().to_owned();
        }
        assert!(
            Instant::now() < deadline && process.is_running(),
            "device_sim did not print {prefix:?}; stdout:\n{}\nstderr:\n{}",
            process.stdout(),
            process.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub use telestion_test::server_binaries;

/// The binary of workspace package `name` (built when not current).
pub fn binary(name: &str) -> PathBuf {
    telestion_test::workspace_binary(name, name)
}

impl Backend {
    /// Starts a JetStream server, the simulator at `hz` frames per second
    /// and `services` (names from [`SERVICES`]).
    pub fn start(hz: u32, services: &[&'static str]) -> Backend {
        Backend::start_with(hz, services, Vec::new())
    }

    /// Like [`Backend::start`], with extra environment `(service, key,
    /// value)` (service `"*"`: every service).
    pub fn start_with(
        hz: u32,
        services: &[&'static str],
        env: Vec<(&'static str, String, String)>,
    ) -> Backend {
        Backend::start_on(ServerOptions::new(), hz, services, env)
    }

    /// Like [`Backend::start_with`], on a server started with `server`
    /// (JetStream is added): another `nats-server` binary, say.
    pub fn start_on(
        server: ServerOptions,
        hz: u32,
        services: &[&'static str],
        env: Vec<(&'static str, String, String)>,
    ) -> Backend {
        // Build (or check) every binary first: the simulator counts from
        // its start.
        for name in services {
            binary(name);
        }
        let server = NatsServer::start_with(server.jetstream());
        let data = tempfile::tempdir().expect("cannot create a temporary directory");
        let mut cmd = telestion_test::clean_command(binary("device_sim"));
        cmd.env("TELEMETRY_HZ", hz.to_string());
        let mut device = Process::spawn(cmd);
        let device_addr = stdout_value(&mut device, "listening on ");
        let control_addr = stdout_value(&mut device, "control on ");
        let session = stdout_value(&mut device, "session ")
            .parse()
            .expect("the session is not a number");
        let web_addr = format!("127.0.0.1:{}", telestion_test::free_port());
        let mut backend = Backend {
            server,
            data,
            device,
            device_addr,
            control_addr,
            session,
            web_addr,
            services: HashMap::new(),
            env,
        };
        for name in services {
            backend.start_service(name);
        }
        backend
    }

    /// `DATA_DIR`.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The database file `db_writer` writes.
    pub fn database(&self) -> PathBuf {
        self.data_dir().join("db_writer").join("telemetry.sqlite3")
    }

    /// Starts (or restarts) service `name` and waits until it is ready.
    pub fn start_service(&mut self, name: &'static str) {
        let mut cmd = service_command(binary(name), &self.server, name, self.data.path());
        // Quick redelivery after a SIGKILL.
        cmd.env("DURABLE_ACK_WAIT", "2");
        cmd.env("DEVICE_ADDR", &self.device_addr);
        cmd.env("WEB_ADDR", &self.web_addr);
        for (service, key, value) in &self.env {
            if *service == name || *service == "*" {
                cmd.env(key, value);
            }
        }
        let process = spawn_ready(cmd);
        self.services.insert(name, process);
    }

    /// The running process of service `name`.
    ///
    /// # Panics
    ///
    /// When it is not running.
    pub fn service(&mut self, name: &str) -> &mut Process {
        self.services
            .get_mut(name)
            .unwrap_or_else(|| panic!("{name} is not running"))
    }

    /// Sends SIGTERM to `name`, asserts that it exits 0, and starts it
    /// again.
    pub fn restart_gracefully(&mut self, name: &'static str) {
        let mut process = self.services.remove(name).expect("not running");
        process.signal(libc::SIGTERM);
        let code = process.wait_exit(WAIT);
        assert_eq!(
            code,
            Some(0),
            "{name} did not exit 0 on SIGTERM; stderr:\n{}",
            process.stderr()
        );
        self.start_service(name);
    }

    /// Kills `name` with SIGKILL and starts it again.
    pub fn restart_killed(&mut self, name: &'static str) {
        let mut process = self.services.remove(name).expect("not running");
        process.signal(libc::SIGKILL);
        process.wait_exit(WAIT);
        self.start_service(name);
    }

    /// Sends one line to the simulator's control port; returns its answer.
    pub fn control(&self, command: &str) -> String {
        let mut stream =
            TcpStream::connect(&self.control_addr).expect("cannot reach the control port");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream
            .write_all(format!("{command}\n").as_bytes())
            .expect("cannot send a control command");
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .expect("no answer from the control port");
        assert!(line.starts_with("ok"), "control {command:?}: {line}");
        line.trim().to_owned()
    }

    /// A value of the simulator's `stats` line (`next_counter`, `acked`, ...).
    pub fn device_stat(&self, key: &str) -> u64 {
        let stats = self.control("stats");
        stats
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {stats}"))
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number in {stats}"))
    }

    /// Stops the telemetry (the simulator stays silent for an hour) and
    /// returns how many frames it produced in its session.
    pub fn stop_telemetry(&self) -> u64 {
        self.control("silence 3600");
        // A frame being sent when the silence began still counts.
        std::thread::sleep(Duration::from_millis(200));
        self.device_stat("next_counter")
    }
}

/// Rows per session read straight from the database file (read-only).
pub fn read_counts(database: &Path) -> Vec<SessionCount> {
    let connection =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", database.display()));
    let mut statement = connection
        .prepare(
            "SELECT session, min(counter), max(counter), count(*) FROM telemetry \
             GROUP BY session ORDER BY session",
        )
        .expect("cannot query the database");
    statement
        .query_map([], |row| {
            Ok(SessionCount {
                session: row.get(0)?,
                min_counter: row.get(1)?,
                max_counter: row.get(2)?,
                count: row.get(3)?,
            })
        })
        .expect("cannot query the database")
        .collect::<Result<_, _>>()
        .expect("cannot read a row")
}

/// Asks `telemetry.query.count`.
pub async fn query_count(client: &async_nats::Client) -> Count {
    telestion_test::request_json(client, "telemetry.query.count", &serde_json::json!({})).await
}
