//! The benchmark: what the framework costs over hand-written async-nats code,
//! and how the health replies hold up while a handler drowns.
//!
//! ```sh
//! cargo run --release -p telestion-bench            # everything, ~2-3 minutes
//! cargo run --release -p telestion-bench -- --smoke # a tiny run, no timings judged
//! ```
//!
//! It builds its sibling binaries (`bench_service`, the service under test,
//! written with `#[telestion::service]` and `#[subscribe]`; `bench_raw`, the
//! same work with hand-written async-nats code; `standard_ops`) in the same
//! profile, starts its own `nats-server` on a free loopback port (both with
//! the test kit, `telestion-test`), runs every
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
//! 6. `standard_ops`: lines written per second in a 200,000-line burst
//!    beside a raw async-nats appender of the same line format, the lines
//!    the burst loses at default settings, and the throughput of an
//!    unrelated busy subject with and without it running;
//! 7. durable handlers (JetStream): throughput and publish-to-handled
//!    latency of a `durable` handler vs a hand-written async-nats durable
//!    pull consumer with the same ack policy;
//! 8. only when named (`--only instructions`, needs valgrind): instructions
//!    per message of both subscribers in the 128 B throughput cases, under
//!    callgrind, a figure that does not depend on the machine's load;
//! 9. only when named (`--only backend`): the example backend's chain
//!    device -> database (`apps/backend_tests`): latency at 200 and 1000
//!    frames per second with every frame stored once, and how fast it
//!    stores a backlog;
//! 10. only when named (`--only database`): Telestion's database services
//!     (`apps/database`, `apps/database_query`) on SQLite and PostgreSQL:
//!     ingest through the writer beside the store alone, and the newest
//!     value and 1,000-row ranges over ten million stored points beside the
//!     example backend's `db_query`.
//!
//! `--smoke` runs every case once with a few messages and fails (exit code 1)
//! only when a case breaks (a message missing, a process not starting); it
//! never judges a timing. Options: `--rounds N`, `--only CASE` (`cold`,
//! `throughput`, `latency`, `health`, `standard_ops`, `durable`,
//! `instructions`, `backend`, `database`),
//! `--out PATH`, `--no-build`.
//!
//! One file per concern: `cli` (arguments, the plan), `binaries` (the
//! programs under test), `session` (server, connections, processes),
//! `bus` (requests, first replies), `load` (one round of messages),
//! `measure` (statistics, `/proc`), `report` (table, machine), `run` (the
//! order of the cases) and `cases/` (one file per case).

mod binaries;
mod bus;
mod cases;
mod cli;
mod load;
mod measure;
mod report;
mod run;
mod session;

use std::process::ExitCode;

use binaries::Binaries;
use cli::{Exit, USAGE};

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(Exit::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(Exit::Usage(message)) => {
            eprintln!("error: {message}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let bins = Binaries::find(args.build);
    let server = session::start_server();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = runtime.block_on(run::run(args.plan, &server, bins));
    drop(server);
    let (results, failures) = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(out) = args.out {
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
