//! The benchmark: what the framework costs over hand-written async-nats code,
//! and how the health replies hold up while a handler drowns.
//!
//! ```sh
//! cargo run --release -p telestion-bench            # everything, ~2-3 minutes
//! cargo run --release -p telestion-bench -- --smoke # a tiny run, no timings judged
//! ```
//!
//! It builds its sibling examples (`bench_service`, the service under test,
//! written with `#[telestion::service]` and `#[subscribe]`; `bench_raw`, the
//! same work with hand-written async-nats code; `standard_ops`) in the same
//! profile, starts its own `nats-server` on a free loopback port, runs every
//! case alternating the two sides of each comparison round by round, prints
//! a table, and writes the same figures as JSON (`bench-results.json` in the
//! repository root, or `--out PATH`; a `--only CASE` run writes JSON only
//! to `--out PATH`). `BENCHMARKS.md` holds the latest table.
//!
//! Cases:
//!
//! 1. throughput from a separate publisher connection through a handler vs a
//!    raw subscriber loop (128 B and 16 KiB, raw bytes and `Json<T>`);
//! 2. request/reply latency through a handler vs a raw responder;
//! 3. health reply latency while a handler works through a backlog, with and
//!    without `concurrency = 8`;
//! 4. cold start: process launch to the first health reply;
//! 5. resident set size, idle and under load;
//! 6. `standard_ops`: lines written per second, and the throughput of an
//!    unrelated busy subject with and without it running.
//!
//! `--smoke` runs every case once with a few messages and fails (exit code 1)
//! only when a case breaks (a message missing, a process not starting); it
//! never judges a timing. Options: `--rounds N`, `--only CASE`, `--out PATH`,
//! `--no-build`.

use telestion_bench::work;

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::{Client, Subject, Subscriber};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};

type Res<T> = Result<T, String>;

/// The health subject of the spec.
const HEALTH: &str = "__telestion__/health";

/// Sizes of one run.
#[derive(Debug, Clone)]
struct Plan {
    smoke: bool,
    rounds: usize,
    /// Messages per throughput round, 128 B bodies.
    small: u64,
    /// Messages per throughput round, 16 KiB bodies.
    large: u64,
    /// Requests per latency round.
    requests: usize,
    /// Backlog of the health case.
    backlog: u64,
    /// Rounds of the health case.
    health_rounds: usize,
    /// Cold starts per side.
    cold_runs: usize,
    /// Lines per standard_ops round.
    log_lines: u64,
    /// Run only this case (`cold`, `throughput`, `latency`, `health`,
    /// `standard_ops`), for profiling.
    only: Option<String>,
}

impl Plan {
    /// Whether case `name` runs.
    fn runs(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == name)
    }

    fn full(rounds: usize) -> Plan {
        Plan {
            smoke: false,
            rounds,
            small: 300_000,
            large: 30_000,
            requests: 2_000,
            backlog: 100_000,
            health_rounds: 3,
            cold_runs: 5,
            log_lines: 20_000,
            only: None,
        }
    }

    fn smoke() -> Plan {
        Plan {
            smoke: true,
            rounds: 1,
            small: 500,
            large: 50,
            requests: 20,
            backlog: 500,
            health_rounds: 1,
            cold_runs: 1,
            log_lines: 100,
            only: None,
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut smoke = false;
    let mut build = true;
    let mut rounds = 5;
    let mut out = None;
    let mut only = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => smoke = true,
            "--no-build" => build = false,
            "--rounds" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) if n > 0 => rounds = n,
                _ => return usage("--rounds takes a positive number"),
            },
            "--only" => match args.next() {
                Some(case) => only = Some(case),
                None => return usage("--only takes a case name"),
            },
            "--out" => match args.next() {
                Some(path) => out = Some(PathBuf::from(path)),
                None => return usage("--out takes a path"),
            },
            "-h" | "--help" => {
                println!(
                    "usage: bench [--smoke] [--rounds N] [--only CASE] [--out PATH] [--no-build]"
                );
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let mut plan = if smoke {
        Plan::smoke()
    } else {
        Plan::full(rounds)
    };
    // A partial or smoke run does not replace the full run's figures unless
    // `--out` says where to write.
    let out = out.or_else(|| {
        (!smoke && only.is_none())
            .then(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-results.json"))
    });
    plan.only = only;

    let has_standard_ops = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../apps/standard_ops/src/main.rs")
        .is_file();
    if build {
        let mut names = vec!["bench_service", "bench_raw"];
        if has_standard_ops {
            names.push("standard_ops");
        }
        if let Err(e) = build_examples(&names) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = runtime.block_on(run(plan.clone(), has_standard_ops));
    let (results, failures) = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(out) = out {
        let text = serde_json::to_string_pretty(&results).expect("json") + "\n";
        if let Err(e) = std::fs::write(&out, text) {
            eprintln!("error: cannot write {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        println!("\nfigures written to {}", out.display());
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("\n{} case(s) failed:", failures.len());
        for failure in &failures {
            eprintln!("  - {failure}");
        }
        ExitCode::FAILURE
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!(
        "error: {message}\nusage: bench [--smoke] [--rounds N] [--only CASE] [--out PATH] [--no-build]"
    );
    ExitCode::FAILURE
}

/// Builds the sibling binaries (and standard_ops) in this binary's profile.
fn build_examples(names: &[&str]) -> Res<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--quiet"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    for name in names {
        let package = if *name == "standard_ops" {
            "standard_ops"
        } else {
            "telestion-bench"
        };
        command.args(["-p", package, "--bin", name]);
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("building {names:?} failed"))
    }
}

/// Path of a sibling binary.
fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().expect("target dir").join(name)
}

// ---------------------------------------------------------------------------
// Processes

/// A child process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, bin: &Path, env: &[(&str, String)], log: PathBuf) -> Res<Proc> {
        let log_file = std::fs::File::create(&log).map_err(|e| format!("log file: {e}"))?;
        let mut command = Command::new(bin);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        Ok(Proc {
            child,
            name: name.into(),
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of its stderr (for error messages).
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// `(VmRSS, VmHWM)` in KiB.
    fn memory(&self) -> Res<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .map_err(|e| format!("{}: cannot read /proc status: {e}", self.name))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
                .ok_or_else(|| format!("no {name} in /proc status"))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stop(&mut self) {
        if self.alive() {
            // SAFETY: plain kill(2) on our own child.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if !self.alive() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn nats_server_bin() -> Res<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/local/bin", "/usr/bin"])
        .map(|dir| Path::new(dir).join("nats-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "nats-server is not installed (apt-get install nats-server, or bash scripts/test.sh)"
                .to_owned()
        })
}

/// Starts `nats-server` on a free loopback port (a large per-connection
/// pending limit, so a backlogged subscriber is not cut off).
fn start_server(dir: &Path) -> Res<(Proc, String)> {
    let port = free_port();
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!("listen: 127.0.0.1:{port}\nmax_pending: 1073741824\nwrite_deadline: \"30s\"\n"),
    )
    .map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("nats-server.log")).map_err(|e| e.to_string())?;
    let child = Command::new(nats_server_bin()?)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start nats-server: {e}"))?;
    let server = Proc {
        child,
        name: "nats-server".into(),
        log: dir.join("nats-server.log"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("nats-server did not start listening within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((server, format!("nats://127.0.0.1:{port}")))
}

// ---------------------------------------------------------------------------
// Measuring helpers

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Nearest-rank percentile of `values` (milliseconds), `p` in 0..=100.
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// CPU time (ns) used so far by all threads of process `pid`.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn request(client: &Client, subject: String, body: impl Into<Bytes>) -> Res<Bytes> {
    match tokio::time::timeout(
        Duration::from_secs(10),
        client.request(subject.clone(), body.into()),
    )
    .await
    {
        Ok(Ok(message)) => Ok(message.payload),
        Ok(Err(e)) => Err(format!("request to {subject}: {e}")),
        Err(_) => Err(format!("request to {subject}: no reply within 10 s")),
    }
}

async fn connect(url: &str) -> Res<Client> {
    async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))
}

/// Waits until a fresh process answers: publishes `subject` (with an inbox
/// reply) every millisecond until a reply satisfies `accept`. Returns the
/// time since `since`.
async fn first_reply(
    client: &Client,
    subject: &str,
    since: Instant,
    accept: impl Fn(&[u8]) -> bool,
) -> Res<Duration> {
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    loop {
        if since.elapsed() > Duration::from_secs(20) {
            return Err(format!("no reply on {subject} within 20 s"));
        }
        client
            .publish_with_reply(subject.to_owned(), inbox.clone(), Bytes::new())
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::sleep(Duration::from_millis(1));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                message = replies.next() => {
                    let Some(message) = message else { return Err("inbox closed".into()) };
                    if accept(&message.payload) {
                        return Ok(since.elapsed());
                    }
                }
                _ = &mut deadline => break,
            }
        }
    }
}

fn health_from(id: &str) -> impl Fn(&[u8]) -> bool + '_ {
    move |body| {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("service").and_then(Value::as_str).map(|s| s == id))
            .unwrap_or(false)
    }
}

// ---------------------------------------------------------------------------
// The run

/// Everything a case needs.
struct Ctx {
    plan: Plan,
    url: String,
    dir: PathBuf,
    /// Sends the load.
    publisher: Client,
    /// Control requests, latency requests and done markers.
    control: Client,
    /// Health probes.
    probe: Client,
    failures: Vec<String>,
    rows: Vec<Row>,
    /// Process ids of the `fw` and `raw` subscribers (for CPU time).
    pids: [u32; 2],
}

/// One line of the printed table.
struct Row {
    metric: String,
    telestion: String,
    raw: String,
    ratio: String,
    goal: String,
    met: String,
}

impl Ctx {
    fn row(
        &mut self,
        metric: &str,
        telestion: String,
        raw: String,
        ratio: String,
        goal: &str,
        met: Option<bool>,
    ) {
        let met = match (met, self.plan.smoke) {
            (_, true) | (None, _) => String::new(),
            (Some(true), false) => "yes".into(),
            (Some(false), false) => "NO".into(),
        };
        self.rows.push(Row {
            metric: metric.into(),
            telestion,
            raw,
            ratio,
            goal: goal.into(),
            met,
        });
    }

    fn fail(&mut self, case: &str, error: String) {
        eprintln!("  FAILED {case}: {error}");
        self.failures.push(format!("{case}: {error}"));
    }

    fn service_env(&self, name: &str, id: &str) -> Vec<(&'static str, String)> {
        vec![
            ("NATS_URL", self.url.clone()),
            ("SERVICE_NAME", name.to_owned()),
            ("SERVICE_ID", id.to_owned()),
            ("DATA_DIR", self.dir.join("data").display().to_string()),
            ("NATS_SUBSCRIPTION_CAPACITY", "1000000".into()),
        ]
    }

    fn spawn_service(&self, name: &str, id: &str) -> Res<Proc> {
        Proc::spawn(
            id,
            &example_bin("bench_service"),
            &self.service_env(name, id),
            self.dir.join(format!("{id}.log")),
        )
    }

    fn spawn_raw(&self, id: &str) -> Res<Proc> {
        let mut env = self.service_env("bench-raw", id);
        if let Ok(value) = std::env::var("RAW_EVENT_INTERVAL") {
            env.push(("RAW_EVENT_INTERVAL", value));
        }
        Proc::spawn(
            id,
            &example_bin("bench_raw"),
            &env,
            self.dir.join(format!("{id}.log")),
        )
    }
}

async fn run(plan: Plan, has_standard_ops: bool) -> Res<(Value, Vec<String>)> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path().to_owned();
    let (server, url) = start_server(&dir)?;
    let mut ctx = Ctx {
        publisher: connect(&url).await?,
        control: connect(&url).await?,
        probe: connect(&url).await?,
        plan: plan.clone(),
        url,
        dir,
        failures: Vec::new(),
        rows: Vec::new(),
        pids: [0; 2],
    };
    println!(
        "telestion benchmark{} ({} round(s) per comparison; nats-server at {})",
        if plan.smoke {
            " (smoke mode: timings not judged)"
        } else {
            ""
        },
        plan.rounds,
        ctx.url
    );
    let mut results = serde_json::Map::new();
    results.insert(
        "mode".into(),
        json!(if plan.smoke { "smoke" } else { "full" }),
    );
    results.insert("machine".into(), machine());
    results.insert("plan".into(), json!(format!("{plan:?}")));

    // 4. Cold start, before the long-running processes exist.
    if plan.runs("cold") {
        println!("cold start ...");
        match cold_start(&mut ctx).await {
            Ok(value) => {
                results.insert("cold_start".into(), value);
            }
            Err(e) => ctx.fail("cold start", e),
        }
    }

    let mut fw = ctx.spawn_service("bench", "bench-fw")?;
    let mut raw = ctx.spawn_raw("bench-raw")?;
    ctx.pids = [fw.pid(), raw.pid()];
    let ready = async {
        let since = Instant::now();
        first_reply(&ctx.control, HEALTH, since, health_from("bench-fw")).await?;
        first_reply(&ctx.control, "bench.raw.ping", since, |_| true).await
    };
    if let Err(e) = ready.await {
        return Err(format!(
            "the benchmark processes did not start: {e}\n{}\n{}",
            fw.log_tail(),
            raw.log_tail()
        ));
    }

    // 5a. Idle memory.
    tokio::time::sleep(Duration::from_millis(if plan.smoke { 100 } else { 1000 })).await;
    let idle = (fw.memory()?, raw.memory()?);

    // 1. Throughput.
    if plan.runs("throughput") {
        println!("throughput ...");
        let throughput = throughput(&mut ctx, &fw, &raw).await;
        results.insert("throughput".into(), throughput);
    }

    // 5b. Memory under load: the peak while the throughput cases ran.
    let load = (fw.memory()?, raw.memory()?);
    results.insert(
        "memory_kib".into(),
        json!({
            "telestion": {"idle_rss": idle.0.0, "peak_rss_under_load": load.0.1},
            "raw": {"idle_rss": idle.1.0, "peak_rss_under_load": load.1.1},
        }),
    );
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    ctx.row(
        "RSS idle",
        mib(idle.0.0),
        mib(idle.1.0),
        format!("{:.2}", idle.0.0 as f64 / idle.1.0 as f64),
        "< 15 MiB",
        Some(idle.0.0 < 15 * 1024),
    );
    ctx.row(
        "RSS peak under load (throughput cases)",
        mib(load.0.1),
        mib(load.1.1),
        format!("{:.2}", load.0.1 as f64 / load.1.1 as f64),
        "",
        None,
    );

    // 2. Latency.
    if plan.runs("latency") {
        println!("request/reply latency ...");
        match latency(&mut ctx).await {
            Ok(value) => {
                results.insert("request_reply".into(), value);
            }
            Err(e) => ctx.fail("request/reply latency", e),
        }
    }

    // 3. Health under a backlog.
    if plan.runs("health") {
        println!("health under backlog ...");
        let mut health = serde_json::Map::new();
        for (counter, label) in [("slow", "concurrency 1"), ("slow8", "concurrency 8")] {
            match health_under_backlog(&mut ctx, counter, label).await {
                Ok(value) => {
                    health.insert(counter.into(), value);
                }
                Err(e) => ctx.fail(&format!("health under backlog ({label})"), e),
            }
        }
        results.insert("health_under_backlog".into(), Value::Object(health));
    }

    // 6. standard_ops.
    if !plan.runs("standard_ops") {
    } else if has_standard_ops {
        println!("standard_ops ...");
        match standard_ops(&mut ctx).await {
            Ok(value) => {
                results.insert("standard_ops".into(), value);
            }
            Err(e) => ctx.fail("standard_ops", e),
        }
    } else {
        println!("standard_ops: apps/standard_ops does not exist; skipped");
        ctx.failures
            .push("standard_ops: apps/standard_ops does not exist".into());
    }

    for process in [&mut fw, &mut raw] {
        if !process.alive() {
            let tail = process.log_tail();
            ctx.fail(
                &process.name.clone(),
                format!("exited during the run:\n{tail}"),
            );
        }
    }
    drop(fw);
    drop(raw);
    drop(server);

    print_table(&ctx.rows);
    results.insert("failures".into(), json!(ctx.failures.clone()));
    Ok((Value::Object(results), ctx.failures))
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "kernel": output("uname", &["-sr"]),
        "rustc": output("rustc", &["--version"]),
        "nats_server": nats_server_bin().map(|bin| output(&bin.display().to_string(), &["--version"])).unwrap_or_default(),
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

fn print_table(rows: &[Row]) {
    let headers = [
        "metric",
        "telestion",
        "raw async-nats",
        "ratio",
        "goal",
        "met",
    ];
    let cells: Vec<[&str; 6]> = rows
        .iter()
        .map(|r| {
            [
                &*r.metric,
                &*r.telestion,
                &*r.raw,
                &*r.ratio,
                &*r.goal,
                &*r.met,
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str; 6]| {
        let mut s = String::from("|");
        for (cell, w) in cells.iter().zip(widths) {
            let _ = write!(s, " {cell:<w$} |");
        }
        s
    };
    println!();
    println!("{}", line(&headers));
    let mut sep = String::from("|");
    for w in widths {
        let _ = write!(sep, "{}|", "-".repeat(w + 2));
    }
    println!("{sep}");
    for row in &cells {
        println!("{}", line(row));
    }
    let _ = std::io::stdout().flush();
}

// ---------------------------------------------------------------------------
// 1. Throughput

/// One round: `n` messages on `bench.<side>.<kind>`; messages per second
/// until the subscriber announced the last one, the publisher's own rate,
/// and the subscriber process's CPU time per message (ns).
async fn throughput_round(
    ctx: &Ctx,
    done: &mut Subscriber,
    side: &str,
    kind: &str,
    counter: &str,
    body: Bytes,
    n: u64,
) -> Res<(f64, f64, f64)> {
    let pid = ctx.pids[usize::from(side == "raw")];
    let reply = request(
        &ctx.control,
        format!("bench.{side}.reset"),
        format!("{counter} {n}"),
    )
    .await?;
    if &reply[..] != b"ok" {
        return Err(format!(
            "reset refused: {}",
            String::from_utf8_lossy(&reply)
        ));
    }
    while let Some(Some(_)) = done.next().now_or_never() {}
    let publisher = ctx.publisher.clone();
    let subject = Subject::from(format!("bench.{side}.{kind}"));
    let cpu_before = cpu_ns(pid);
    let start = Instant::now();
    let sending = tokio::spawn(async move {
        for _ in 0..n {
            publisher
                .publish(subject.clone(), body.clone())
                .await
                .map_err(|e| e.to_string())?;
        }
        publisher.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(start.elapsed())
    });
    let elapsed = wait_done(ctx, done, side, counter, n).await?;
    let cpu = cpu_ns(pid).saturating_sub(cpu_before) as f64 / n as f64;
    let published = sending.await.map_err(|e| e.to_string())??;
    Ok((
        n as f64 / elapsed.as_secs_f64(),
        n as f64 / published.as_secs_f64(),
        cpu,
    ))
}

/// Waits for the done marker of a round of `n`; fails, naming the number
/// of missing messages, when the count stops growing for 3 s.
async fn wait_done(
    ctx: &Ctx,
    done: &mut Subscriber,
    side: &str,
    counter: &str,
    n: u64,
) -> Res<Duration> {
    let start = Instant::now();
    let mut last = (0u64, Instant::now());
    loop {
        tokio::select! {
            message = done.next() => {
                let message = message.ok_or("done subscription closed")?;
                if String::from_utf8_lossy(&message.payload).parse::<u64>() == Ok(n) {
                    return Ok(start.elapsed());
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let stats = request(&ctx.control, format!("bench.{side}.stats"), Bytes::new()).await?;
                let stats: Value = serde_json::from_slice(&stats).map_err(|e| e.to_string())?;
                let count = stats.get(counter).and_then(Value::as_u64).unwrap_or(0);
                if count != last.0 {
                    last = (count, Instant::now());
                } else if last.1.elapsed() > Duration::from_secs(3) {
                    return Err(format!(
                        "{side}: only {count} of {n} messages arrived ({} missing)",
                        n.saturating_sub(count)
                    ));
                }
            }
        }
    }
}

/// A body of exactly `size` bytes: JSON `Sample` or opaque bytes.
fn make_body(json: bool, size: usize) -> Bytes {
    if json {
        let empty = serde_json::to_vec(&work::Sample {
            seq: 1,
            sensor: "bench".into(),
            data: String::new(),
        })
        .expect("json");
        let sample = work::Sample {
            seq: 1,
            sensor: "bench".into(),
            data: "x".repeat(size - empty.len()),
        };
        let body = serde_json::to_vec(&sample).expect("json");
        debug_assert_eq!(body.len(), size);
        Bytes::from(body)
    } else {
        Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
    }
}

async fn throughput(ctx: &mut Ctx, fw: &Proc, raw: &Proc) -> Value {
    let mut out = serde_json::Map::new();
    let mut done_fw = match ctx.control.subscribe("bench.fw.done").await {
        Ok(s) => s,
        Err(e) => {
            ctx.fail("throughput", e.to_string());
            return Value::Null;
        }
    };
    let mut done_raw = match ctx.control.subscribe("bench.raw.done").await {
        Ok(s) => s,
        Err(e) => {
            ctx.fail("throughput", e.to_string());
            return Value::Null;
        }
    };
    let cases = [
        ("bytes", false, 128usize, ctx.plan.small),
        ("bytes", false, 16 * 1024, ctx.plan.large),
        ("json", true, 128, ctx.plan.small),
        ("json", true, 16 * 1024, ctx.plan.large),
        // Diagnostic: a handler taking only the body (no `State`/`Service`).
        ("plain", false, 128, ctx.plan.small),
    ];
    for (kind, json_body, size, n) in cases {
        let counter = if kind == "plain" { "plain" } else { "hot" };
        let label = format!(
            "throughput {} {}{}",
            if json_body { "Json<T>" } else { "bytes" },
            if size == 128 { "128 B" } else { "16 KiB" },
            if kind == "plain" {
                ", body-only handler"
            } else {
                ""
            }
        );
        let body = make_body(json_body, size);
        let (mut fw_rates, mut raw_rates, mut pub_rates) = (Vec::new(), Vec::new(), Vec::new());
        let (mut fw_cpu, mut raw_cpu) = (Vec::new(), Vec::new());
        let mut error = None;
        // Warm-up, one small round per side.
        for (side, done) in [("fw", &mut done_fw), ("raw", &mut done_raw)] {
            if let Err(e) = throughput_round(
                ctx,
                done,
                side,
                kind,
                counter,
                body.clone(),
                (n / 10).max(1),
            )
            .await
            {
                error = Some(e);
            }
        }
        for round in 0..ctx.plan.rounds {
            if error.is_some() {
                break;
            }
            // Alternate which side goes first.
            let order = if round % 2 == 0 {
                ["fw", "raw"]
            } else {
                ["raw", "fw"]
            };
            for side in order {
                let done = if side == "fw" {
                    &mut done_fw
                } else {
                    &mut done_raw
                };
                match throughput_round(ctx, done, side, kind, counter, body.clone(), n).await {
                    Ok((rate, pub_rate, cpu)) => {
                        pub_rates.push(pub_rate);
                        if side == "fw" {
                            fw_rates.push(rate);
                            fw_cpu.push(cpu);
                        } else {
                            raw_rates.push(rate);
                            raw_cpu.push(cpu);
                        }
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
        }
        let _ = (fw.pid(), raw.pid());
        if let Some(e) = error {
            ctx.fail(&label, e);
            continue;
        }
        let (f, r) = (median(&fw_rates), median(&raw_rates));
        // The ratio of each round's back-to-back pair, then the median:
        // robust against load that comes and goes on a shared machine.
        let pairs: Vec<f64> = fw_rates
            .iter()
            .zip(&raw_rates)
            .map(|(f, r)| f / r)
            .collect();
        let ratio = median(&pairs);
        let (fc, rc) = (median(&fw_cpu) / 1000.0, median(&raw_cpu) / 1000.0);
        println!(
            "  {label}: telestion {f:.0}/s, raw {r:.0}/s, ratio {ratio:.3}; CPU per message \
             {fc:.2} µs vs {rc:.2} µs"
        );
        ctx.row(
            &format!("{label} (msgs/s)"),
            format!("{f:.0}"),
            format!("{r:.0}"),
            format!("{ratio:.3}"),
            if kind == "plain" {
                "(diagnostic)"
            } else {
                ">= 0.95"
            },
            (kind != "plain").then_some(ratio >= 0.95),
        );
        ctx.row(
            "  subscriber CPU per message (µs)",
            format!("{fc:.2}"),
            format!("{rc:.2}"),
            format!("{:.3}", fc / rc),
            "",
            None,
        );
        out.insert(
            format!("{kind}_{size}"),
            json!({
                "messages_per_round": n,
                "body_bytes": size,
                "telestion_msgs_per_s": fw_rates,
                "raw_msgs_per_s": raw_rates,
                "publisher_msgs_per_s": pub_rates,
                "telestion_median": f,
                "raw_median": r,
                "ratio_median_of_pairs": ratio,
                "telestion_cpu_ns_per_msg": fw_cpu,
                "raw_cpu_ns_per_msg": raw_cpu,
                "cpu_ratio": fc / rc,
            }),
        );
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------
// 2. Request/reply latency

async fn latency(ctx: &mut Ctx) -> Res<Value> {
    let body = make_body(false, 128);
    let mut samples: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let sides = ["fw", "raw"];
    for side in sides {
        for _ in 0..(ctx.plan.requests / 10).max(1) {
            request(&ctx.control, format!("bench.{side}.echo"), body.clone()).await?;
        }
    }
    // Request by request, alternating the side (and which goes first), so
    // that both see the same moments of a shared, noisy machine.
    let subjects = sides.map(|side| format!("bench.{side}.echo"));
    for k in 0..ctx.plan.rounds * ctx.plan.requests {
        let order = if k % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let start = Instant::now();
            let reply = request(&ctx.control, subjects[i].clone(), body.clone()).await?;
            samples[i].push(ms(start.elapsed()));
            if reply != body {
                return Err(format!(
                    "{}: the reply is not the request body",
                    subjects[i]
                ));
            }
        }
    }
    let stats = |v: &[f64]| (percentile(v, 50.0), percentile(v, 99.0));
    let (fw, raw) = (stats(&samples[0]), stats(&samples[1]));
    let ratio = fw.0 / raw.0;
    println!(
        "  telestion p50 {:.3} ms p99 {:.3} ms; raw p50 {:.3} ms p99 {:.3} ms; p50 ratio {ratio:.3}",
        fw.0, fw.1, raw.0, raw.1
    );
    ctx.row(
        "request/reply p50 (ms)",
        format!("{:.3}", fw.0),
        format!("{:.3}", raw.0),
        format!("{ratio:.3}"),
        "<= 1.10",
        Some(ratio <= 1.10),
    );
    ctx.row(
        "request/reply p99 (ms)",
        format!("{:.3}", fw.1),
        format!("{:.3}", raw.1),
        format!("{:.3}", fw.1 / raw.1),
        "",
        None,
    );
    Ok(json!({
        "requests": samples[0].len(),
        "body_bytes": 128,
        "telestion_ms": {"p50": fw.0, "p99": fw.1},
        "raw_ms": {"p50": raw.0, "p99": raw.1},
        "p50_ratio": ratio,
    }))
}

// ---------------------------------------------------------------------------
// 3. Health under a backlog

/// Latencies (ms) of requests to `subject`, one every 2 ms, until `stop`.
async fn probe(client: Client, subject: &'static str, stop: Arc<AtomicBool>) -> (Vec<f64>, u64) {
    let mut latencies = Vec::new();
    let mut timeouts = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        match tokio::time::timeout(
            Duration::from_secs(2),
            client.request(subject, Bytes::new()),
        )
        .await
        {
            Ok(Ok(_)) => latencies.push(ms(start.elapsed())),
            _ => timeouts += 1,
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (latencies, timeouts)
}

/// Health replies of the framework service while `counter`'s handler works
/// through a backlog, side by side with a raw async-nats responder task
/// (`bench.raw.ping`) while the raw subscriber does the same.
async fn health_under_backlog(ctx: &mut Ctx, counter: &str, label: &str) -> Res<Value> {
    let n = ctx.plan.backlog;
    let body = make_body(false, 128);
    let sides = ["fw", "raw"];
    let mut done = [
        ctx.control
            .subscribe("bench.fw.done")
            .await
            .map_err(|e| e.to_string())?,
        ctx.control
            .subscribe("bench.raw.done")
            .await
            .map_err(|e| e.to_string())?,
    ];
    let mut latencies = [Vec::new(), Vec::new()];
    let mut timeouts = [0u64; 2];
    let mut drain_rates = [Vec::new(), Vec::new()];
    for round in 0..ctx.plan.health_rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let stop = Arc::new(AtomicBool::new(false));
            let subject = if i == 0 { HEALTH } else { "bench.raw.ping" };
            let probing = tokio::spawn(probe(ctx.probe.clone(), subject, stop.clone()));
            let outcome = throughput_round(
                ctx,
                &mut done[i],
                sides[i],
                counter,
                counter,
                body.clone(),
                n,
            )
            .await;
            stop.store(true, Ordering::Relaxed);
            let (mut l, t) = probing.await.map_err(|e| e.to_string())?;
            let (rate, _, _) = outcome?;
            latencies[i].append(&mut l);
            timeouts[i] += t;
            drain_rates[i].push(rate);
        }
    }
    if latencies.iter().any(Vec::is_empty) {
        return Err("no probe reply at all".into());
    }
    let stats = |v: &[f64]| {
        (
            percentile(v, 50.0),
            percentile(v, 99.0),
            percentile(v, 100.0),
        )
    };
    let (fw, raw) = (stats(&latencies[0]), stats(&latencies[1]));
    let (fw_rate, raw_rate) = (median(&drain_rates[0]), median(&drain_rates[1]));
    println!(
        "  {label}: telestion health p50 {:.3} p99 {:.3} max {:.3} ms ({} probes, {} timeouts, \
         backlog at {fw_rate:.0}/s); raw responder p50 {:.3} p99 {:.3} max {:.3} ms \
         ({} probes, {} timeouts, backlog at {raw_rate:.0}/s)",
        fw.0,
        fw.1,
        fw.2,
        latencies[0].len(),
        timeouts[0],
        raw.0,
        raw.1,
        raw.2,
        latencies[1].len(),
        timeouts[1],
    );
    ctx.row(
        &format!("health p50/p99/max (ms), backlog {n}, {label}"),
        format!("{:.2} / {:.2} / {:.2}", fw.0, fw.1, fw.2),
        format!("{:.2} / {:.2} / {:.2}", raw.0, raw.1, raw.2),
        format!("{:.2}", fw.1 / raw.1),
        "p99 < 5 ms",
        Some(fw.1 < 5.0 && timeouts[0] == 0),
    );
    ctx.row(
        &format!("backlog drain (msgs/s), {label}"),
        format!("{fw_rate:.0}"),
        format!("{raw_rate:.0}"),
        format!("{:.3}", fw_rate / raw_rate),
        "",
        None,
    );
    let side = |i: usize, s: (f64, f64, f64)| {
        json!({
            "probes": latencies[i].len(),
            "timeouts_2s": timeouts[i],
            "p50_ms": s.0,
            "p99_ms": s.1,
            "max_ms": s.2,
            "backlog_msgs_per_s": drain_rates[i],
        })
    };
    Ok(json!({
        "backlog": n,
        "telestion_health": side(0, fw),
        "raw_responder": side(1, raw),
    }))
}

// ---------------------------------------------------------------------------
// 4. Cold start

async fn cold_start(ctx: &mut Ctx) -> Res<Value> {
    let (mut fw, mut raw) = (Vec::new(), Vec::new());
    for i in 0..ctx.plan.cold_runs {
        let id = format!("cold-{i}");
        let since = Instant::now();
        let mut process = ctx.spawn_service("bench-cold", &id)?;
        match first_reply(&ctx.control, HEALTH, since, health_from(&id)).await {
            Ok(elapsed) => fw.push(ms(elapsed)),
            Err(e) => return Err(format!("{e}\n{}", process.log_tail())),
        }
        process.stop();

        let since = Instant::now();
        let mut process = ctx.spawn_raw(&format!("cold-raw-{i}"))?;
        match first_reply(&ctx.control, "bench.raw.ping", since, |_| true).await {
            Ok(elapsed) => raw.push(ms(elapsed)),
            Err(e) => return Err(format!("{e}\n{}", process.log_tail())),
        }
        process.stop();
    }
    let (f, r) = (median(&fw), median(&raw));
    println!("  telestion {f:.1} ms (first health reply), raw {r:.1} ms (first reply)");
    ctx.row(
        "cold start to first reply (ms)",
        format!("{f:.1}"),
        format!("{r:.1}"),
        format!("{:.2}", f / r),
        "< 100 ms",
        Some(f < 100.0),
    );
    Ok(json!({"telestion_ms": fw, "raw_ms": raw, "telestion_median_ms": f, "raw_median_ms": r}))
}

// ---------------------------------------------------------------------------
// 6. standard_ops

async fn standard_ops(ctx: &mut Ctx) -> Res<Value> {
    let data = ctx.dir.join("so-data");
    let spawn = |ctx: &Ctx, id: &str| -> Res<Proc> {
        let mut env = ctx.service_env("standard-ops", id);
        env.retain(|(k, _)| *k != "DATA_DIR");
        env.push(("DATA_DIR", data.display().to_string()));
        Proc::spawn(
            id,
            &example_bin("standard_ops"),
            &env,
            ctx.dir.join(format!("{id}.log")),
        )
    };
    let ready = |ctx: &Ctx, id: String| {
        let control = ctx.control.clone();
        async move { first_reply(&control, HEALTH, Instant::now(), health_from(&id)).await }
    };

    // Lines written per second.
    let mut process = spawn(ctx, "so-lines")?;
    if let Err(e) = ready(ctx, "so-lines".into()).await {
        return Err(format!("{e}\n{}", process.log_tail()));
    }
    let body = Bytes::from(format!("{{\"seq\":1,\"pad\":\"{}\"}}", "x".repeat(100)));
    let mut line_rates = Vec::new();
    for round in 0..ctx.plan.rounds.min(3) {
        let category = format!("bench{round}");
        let subject = Subject::from(format!("__telestion__/log/{category}"));
        let n = ctx.plan.log_lines;
        let start = Instant::now();
        for _ in 1..n {
            ctx.publisher
                .publish(subject.clone(), body.clone())
                .await
                .map_err(|e| e.to_string())?;
        }
        let reply = request(&ctx.publisher, subject.to_string(), body.clone()).await?;
        let elapsed = start.elapsed();
        if !String::from_utf8_lossy(&reply).contains("true") {
            return Err(format!(
                "standard_ops refused: {}",
                String::from_utf8_lossy(&reply)
            ));
        }
        let file = data.join("logs").join(format!("{category}.log"));
        // The reply to the last message comes after its line; earlier lines
        // are written in arrival order, but allow a moment in case not.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = std::fs::read_to_string(&file)
                .map(|t| t.lines().count() as u64)
                .unwrap_or(0);
            if lines == n {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{}: {lines} lines, expected {n}", file.display()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        line_rates.push(n as f64 / elapsed.as_secs_f64());
    }
    process.stop();
    let lines_per_s = median(&line_rates);
    println!("  {lines_per_s:.0} lines/s");
    ctx.row(
        "standard_ops lines written/s",
        format!("{lines_per_s:.0}"),
        String::new(),
        String::new(),
        "",
        None,
    );

    // An unrelated busy subject (the raw subscriber), without and with
    // standard_ops on the bus.
    let mut done = ctx
        .control
        .subscribe("bench.raw.done")
        .await
        .map_err(|e| e.to_string())?;
    let body = make_body(false, 128);
    let n = ctx.plan.small;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..ctx.plan.rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for running in order {
            let mut process = None;
            if running {
                let id = format!("so-busy-{round}");
                let p = spawn(ctx, &id)?;
                if let Err(e) = ready(ctx, id).await {
                    return Err(format!("{e}\n{}", p.log_tail()));
                }
                process = Some(p);
            }
            let (rate, _, _) =
                throughput_round(ctx, &mut done, "raw", "bytes", "hot", body.clone(), n).await?;
            if running {
                with.push(rate)
            } else {
                without.push(rate)
            }
            if let Some(mut p) = process {
                p.stop();
            }
        }
    }
    let (a, b) = (median(&without), median(&with));
    println!(
        "  unrelated subject: {a:.0}/s without, {b:.0}/s with standard_ops ({:.3})",
        b / a
    );
    ctx.row(
        "unrelated subject msgs/s: without / with standard_ops",
        format!("{a:.0} / {b:.0}"),
        String::new(),
        format!("{:.3}", b / a),
        "",
        None,
    );
    Ok(json!({
        "lines_per_s": line_rates,
        "lines_per_s_median": lines_per_s,
        "unrelated_without_msgs_per_s": without,
        "unrelated_with_msgs_per_s": with,
        "unrelated_ratio": b / a,
    }))
}
