//! What every case works with: the server, the driver's connections, the
//! programs under test and how to start them, the table and the failures.

use std::path::{Path, PathBuf};

use async_nats::Client;
use telestion_test::{NatsServer, Process, ServerOptions, clean_command};

use crate::binaries::Binaries;
use crate::bus::{Res, connect};
use crate::cli::Plan;
use crate::report::Table;

/// Starts the `nats-server` of a run: a large per-connection pending limit
/// and write deadline, so that a backlogged subscriber is never cut off as
/// a slow consumer; JetStream enabled (its store in the server's own
/// temporary directory) for the durable case.
///
/// # Panics
///
/// When the server cannot start (the kit says why).
pub fn start_server() -> NatsServer {
    NatsServer::start_with(
        ServerOptions::new()
            .jetstream()
            .config("max_pending: 1073741824\nwrite_deadline: \"30s\""),
    )
}

/// Everything a case needs.
pub struct Ctx {
    pub plan: Plan,
    pub url: String,
    /// A temporary directory for the run (data directories).
    pub dir: PathBuf,
    pub bins: Binaries,
    /// Sends the load.
    pub publisher: Client,
    /// Control requests, latency requests and done markers.
    pub control: Client,
    /// Health probes.
    pub probe: Client,
    pub failures: Vec<String>,
    pub table: Table,
    /// Process ids of the `tel` and `raw` subscribers (for CPU time).
    pub pids: [u32; 2],
}

impl Ctx {
    /// Connects the driver's clients to `server`.
    pub async fn new(plan: Plan, server: &NatsServer, dir: &Path, bins: Binaries) -> Res<Ctx> {
        let url = server.url();
        Ok(Ctx {
            publisher: connect(&url).await?,
            control: connect(&url).await?,
            probe: connect(&url).await?,
            table: Table::new(plan.smoke),
            plan,
            url,
            dir: dir.to_owned(),
            bins,
            failures: Vec::new(),
            pids: [0; 2],
        })
    }

    /// Records a failed case (the run goes on).
    pub fn fail(&mut self, case: &str, error: String) {
        eprintln!("  FAILED {case}: {error}");
        self.failures.push(format!("{case}: {error}"));
    }

    /// The environment of a service instance `name`/`id` on this run's
    /// server.
    pub fn service_env(&self, name: &str, id: &str) -> Vec<(&'static str, String)> {
        vec![
            ("NATS_URL", self.url.clone()),
            ("SERVICE_NAME", name.to_owned()),
            ("SERVICE_ID", id.to_owned()),
            ("DATA_DIR", self.dir.join("data").display().to_string()),
            ("NATS_SUBSCRIPTION_CAPACITY", "1000000".into()),
        ]
    }

    /// Starts `program` (with `args`) with a clean environment plus `env`,
    /// logging warnings only.
    pub fn spawn(&self, program: &Path, args: &[&str], env: &[(&str, String)]) -> Process {
        let mut command = clean_command(program);
        command.args(args).env("RUST_LOG", "warn");
        for (key, value) in env {
            command.env(key, value);
        }
        Process::spawn(command)
    }

    /// The framework service, instance `id` of service `name`.
    pub fn spawn_service(&self, name: &str, id: &str) -> Process {
        self.spawn(&self.bins.service, &[], &self.service_env(name, id))
    }

    /// The raw async-nats program, instance `id`.
    pub fn spawn_raw(&self, id: &str) -> Process {
        self.spawn(&self.bins.raw, &[], &self.raw_env(id))
    }

    /// The environment of the raw program.
    pub fn raw_env(&self, id: &str) -> Vec<(&'static str, String)> {
        let mut env = self.service_env("bench-raw", id);
        if let Ok(value) = std::env::var("RAW_EVENT_INTERVAL") {
            env.push(("RAW_EVENT_INTERVAL", value));
        }
        env
    }
}

/// The last lines a process wrote to stderr (for error messages).
pub fn log_tail(process: &Process) -> String {
    let text = process.stderr();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
