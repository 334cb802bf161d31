//! Tool: asks every service instance on the bus for its health and its
//! handlers' counts, and prints a table of instances (name, instance id,
//! recent errors, reply latency, errors since start, uptime, version) and
//! one of handlers (messages, errors, average handling time, a durable
//! handler's pending and redelivered messages, the last error).
//!
//! It publishes one request on `__telestion__/health` (the spec's subject),
//! one on `__telestion__.health` (Telestion's Deno library) and one on
//! `$SRV.STATS` (the NATS micro protocol) with its own reply inbox,
//! collects every reply for `HEALTH_WAIT_MS` milliseconds (default 500, the
//! spec's answer time; 1 to 60000, or a period such as `2s`) and prints the tables. Each instance is listed
//! once; the tool does not list itself. A service of another library shows
//! in the instance table if it answers either kind of request (`-` for
//! what it did not answer).
//!
//! Options (command line, or the same keys as environment variables):
//!
//! - `--service NAME[,NAME..]`: list only these services.
//! - `--json`: print one JSON object per round instead of the tables.
//! - `--watch[=SECONDS]`: ask again every SECONDS (default 2; 0.1 to 3600,
//!   or a period such as `500ms`), redrawing
//!   the screen in place on a terminal (one round after the other
//!   otherwise, each headed `health at <time>`), until Ctrl-C or SIGTERM;
//!   exits 0 then.
//! - `--expect NAME[,NAME..]`: a check, for container health checks: exit
//!   2 when no instance of one of these services answered, else 3 when an
//!   instance of one of them reports recent errors (`errors` of its health
//!   reply) or a durable handler that is failing or stalled, else 0.
//! - `--check`: exit 3 when any listed instance reports recent errors or a
//!   durable handler that is failing (retrying a failure, its consumer or
//!   stream gone) or stalled (messages wait, none arrives).
//!
//! Without `--expect` and `--check` the tool exits 0, also when nobody
//! answered; 1 when it fails itself (bad option, no connection, stdout
//! error). When stdout is a closed pipe (as in `health | head -1`) the rest
//! is dropped quietly and the exit code stays as it would be.
//!
//! ```sh
//! NATS_URL=localhost:4222 SERVICE_NAME=health DATA_DIR=./data \
//!     cargo run -p health -- --expect standard_ops
//! ```
//!
//! ```text
//! NAME          INSTANCE                ERRORS  LATENCY     TOTAL   UPTIME    VERSION
//! standard_ops  c9uJtAq0fgV2GNBSyX3l1S  0       0.9 ms      2       3605s     0.1.0
//! 1 instance answered within 500 ms
//!
//! NAME          INSTANCE                HANDLER   SUBJECT               MESSAGES  ERRORS  AVG         PENDING  REDELIVERED  LAST ERROR
//! standard_ops  c9uJtAq0fgV2GNBSyX3l1S  log       __telestion__/log/>   120       2       0.081 ms    -        -            invalid log subject
//! ```

mod collect;
mod options;
mod render;

use std::io::{ErrorKind, IsTerminal, Write};
use std::time::SystemTime;

use telestion::Service;

use crate::options::Args;
use crate::render::Round;

/// Exit code: an expected service is missing.
const EXIT_MISSING: i32 = 2;
/// Exit code: a checked instance reports recent errors.
const EXIT_ERRORS: i32 = 3;

#[telestion::service(requests = ["__telestion__/health", "__telestion__.health", "$SRV.STATS"])]
async fn main(service: Service) -> Result<(), String> {
    let args = Args::read(service.config())?;
    let client = service.nats().map_err(|e| e.to_string())?.clone();
    let terminal = std::io::stdout().is_terminal();
    let Some(interval) = args.watch else {
        let instances = collect::round(&client, args.wait, service.id()).await?;
        // A one-shot tool: stop as soon as the tables are out.
        service.shutdown();
        let round = evaluate(&args, instances);
        let ok = round.ok;
        print(&args, &round, None)?;
        if !ok {
            let code = if round.missing.is_empty() {
                EXIT_ERRORS
            } else {
                EXIT_MISSING
            };
            std::process::exit(code);
        }
        return Ok(());
    };
    let stopped = service.stopped();
    tokio::pin!(stopped);
    loop {
        let instances = tokio::select! {
            _ = &mut stopped => return Ok(()),
            instances = collect::round(&client, args.wait, service.id()) => instances?,
        };
        let round = evaluate(&args, instances);
        let header = format!(
            "{}health at {}, every {} s (Ctrl-C to stop)",
            if terminal { "\x1b[H\x1b[2J" } else { "" },
            round.time,
            interval.as_secs_f64()
        );
        print(&args, &round, Some(&header))?;
        tokio::select! {
            _ = &mut stopped => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Filters the instances and checks them against `--expect` / `--check`.
fn evaluate(args: &Args, all: Vec<collect::Instance>) -> Round {
    let missing: Vec<String> = args
        .expect
        .iter()
        .filter(|name| !all.iter().any(|i| &i.name == *name))
        .cloned()
        .collect();
    let instances: Vec<collect::Instance> = all
        .into_iter()
        .filter(|i| args.services.is_empty() || args.services.contains(&i.name))
        .collect();
    let failing: Vec<String> = instances
        .iter()
        .filter(|i| args.check && (args.expect.is_empty() || args.expect.contains(&i.name)))
        .filter(|i| i.errors.unwrap_or(0) > 0 || !i.troubled.is_empty())
        .map(|i| i.id.clone())
        .collect();
    Round {
        time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        wait_ms: u64::try_from(args.wait.as_millis()).unwrap_or(u64::MAX),
        ok: missing.is_empty() && failing.is_empty(),
        instances,
        missing,
        failing,
    }
}

/// Prints a round; a closed stdout is not an error.
fn print(args: &Args, round: &Round, header: Option<&str>) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let result = (|| {
        if let Some(header) = header
            && !args.json
        {
            writeln!(out, "{header}")?;
        }
        if args.json {
            render::json(&mut out, round)
        } else {
            render::text(&mut out, round)?;
            if header.is_some() {
                writeln!(out)?;
            }
            out.flush()
        }
    })();
    match result {
        // Whoever read the table has gone: nothing left to do.
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("cannot print the table: {e}")),
        Ok(()) => Ok(()),
    }
}
