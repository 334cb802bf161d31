//! Tool: asks every service instance on the bus for its health and prints a
//! table of name, instance id, recent errors and reply latency.
//!
//! It publishes one request on `__telestion__/health` (the spec's subject)
//! and one on `__telestion__.health` (Telestion's Deno library) with its own
//! reply inbox, collects every reply for `HEALTH_WAIT_MS` milliseconds
//! (default 500, the spec's answer time), prints the table and exits with 0,
//! also when nobody answered. Each instance is listed once; the tool does
//! not list itself. When stdout is a closed pipe (as in `health | head -1`)
//! the rest of the table is dropped quietly and the exit code is still 0;
//! any other write error fails the run (exit 1, `error: ...` on stderr).
//!
//! ```sh
//! NATS_URL=localhost:4222 SERVICE_NAME=health DATA_DIR=./data \
//!     cargo run -p health
//! ```
//!
//! ```text
//! NAME            INSTANCE                ERRORS  LATENCY
//! publisher       c9uJtAq0fgV2GNBSyX3ky9  0       1.2 ms
//! standard_ops    c9uJtAq0fgV2GNBSyX3l1S  2       0.9 ms
//! 2 instances answered within 500 ms
//! ```

use std::collections::HashSet;
use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use futures::StreamExt;
use telestion::Service;
use telestion::health::{
    HealthReport, SUBJECT as HEALTH_SUBJECT, SUBJECT_DOTTED as HEALTH_SUBJECT_DOTTED,
};

/// One answering instance.
struct Row {
    name: String,
    id: String,
    errors: u64,
    latency: Duration,
}

#[telestion::service]
async fn main(service: Service) -> Result<(), String> {
    let wait = service
        .config()
        .get::<u64>("HEALTH_WAIT_MS")
        .map_err(|e| e.to_string())?
        .unwrap_or(500);
    let client = service.nats().map_err(|e| e.to_string())?.clone();
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| format!("cannot subscribe to the reply inbox: {e}"))?;
    let sent = Instant::now();
    for subject in [HEALTH_SUBJECT, HEALTH_SUBJECT_DOTTED] {
        client
            .publish_with_reply(subject, inbox.clone(), "".into())
            .await
            .map_err(|e| format!("cannot send the health request: {e}"))?;
    }
    client
        .flush()
        .await
        .map_err(|e| format!("cannot send the health request: {e}"))?;

    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    let deadline = tokio::time::sleep(Duration::from_millis(wait));
    tokio::pin!(deadline);
    loop {
        let message = tokio::select! {
            _ = &mut deadline => break,
            message = replies.next() => match message {
                Some(message) => message,
                None => break,
            },
        };
        let latency = sent.elapsed();
        // The runtime's own report type: services of other libraries
        // send only the spec's fields, the rest default to zero.
        let report = match serde_json::from_slice::<HealthReport>(&message.payload) {
            Ok(report) => report,
            Err(error) => {
                tracing::warn!(%error, "a health reply is not a health report; skipped");
                continue;
            }
        };
        if report.service == service.id() || !seen.insert(report.service.clone()) {
            continue;
        }
        rows.push(Row {
            name: report.name,
            id: report.service,
            errors: report.errors,
            latency,
        });
    }
    rows.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    // A one-shot tool: stop as soon as the table is out.
    service.shutdown();
    match print_table(&mut std::io::stdout().lock(), &rows, wait) {
        // Whoever read the table has gone: nothing left to do.
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("cannot print the table: {e}")),
        Ok(()) => Ok(()),
    }
}

/// Writes the table to `out` (not `println!`, which panics when stdout is
/// closed).
fn print_table(out: &mut impl Write, rows: &[Row], wait: u64) -> std::io::Result<()> {
    let name_width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
    let id_width = rows.iter().map(|r| r.id.len()).max().unwrap_or(0).max(8);
    writeln!(
        out,
        "{:name_width$}  {:id_width$}  {:6}  LATENCY",
        "NAME", "INSTANCE", "ERRORS"
    )?;
    for row in rows {
        writeln!(
            out,
            "{:name_width$}  {:id_width$}  {:6}  {:.1} ms",
            row.name,
            row.id,
            row.errors,
            row.latency.as_secs_f64() * 1000.0
        )?;
    }
    let count = rows.len();
    let noun = if count == 1 { "instance" } else { "instances" };
    writeln!(out, "{count} {noun} answered within {wait} ms")?;
    out.flush()
}
