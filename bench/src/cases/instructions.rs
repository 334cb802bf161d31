//! Instructions per message, a figure that does not depend on the load of a
//! shared machine: the framework service and the raw program each run
//! under callgrind (`valgrind --tool=callgrind`); for every 128 B
//! throughput case the counters are zeroed after the round's reset,
//! dumped after its done marker, and the instructions the process executed
//! in between (all threads) are divided by the messages.
//!
//! Runs only when named (`--only instructions`); needs `valgrind`
//! (`apt-get install valgrind`). The dumps stay in
//! `target/<profile>/callgrind/` for `callgrind_annotate`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};
use telestion_test::{Process, target_dir};

use crate::bus::{Res, bench_service_ready, first_reply, pong};
use crate::cases::throughput::{Case, cases};
use crate::load::{Target, make_body, reset, send_and_count};
use crate::session::{Ctx, log_tail};

/// Messages per measured round (and a tenth of it to warm up).
fn messages(ctx: &Ctx) -> u64 {
    if ctx.plan.smoke { 2_000 } else { 100_000 }
}

/// Where the dumps go.
fn dump_dir() -> PathBuf {
    target_dir().join("callgrind")
}

/// Starts `program` under callgrind and waits until it answers.
async fn start(ctx: &Ctx, side: &str, dir: &Path) -> Res<Process> {
    let (program, env, id) = if side == "tel" {
        let id = "bench-tel-callgrind";
        (&ctx.bins.service, ctx.service_env("bench", id), id)
    } else {
        let id = "bench-raw-callgrind";
        (&ctx.bins.raw, ctx.raw_env(id), id)
    };
    let out = format!("--callgrind-out-file={}/{side}.%p", dir.display());
    let program = program.display().to_string();
    let process = ctx.spawn(
        Path::new("valgrind"),
        &["--tool=callgrind", &out, &program],
        &env,
    );
    let since = Instant::now();
    let ready = if side == "tel" {
        bench_service_ready(&ctx.control, id, since).await
    } else {
        first_reply(&ctx.control, "bench.raw.ping", since, pong).await
    };
    match ready {
        Ok(_) => Ok(process),
        Err(e) => Err(format!(
            "{side} under callgrind did not answer (is valgrind installed?): {e}\n{}",
            log_tail(&process)
        )),
    }
}

/// Runs `callgrind_control <flag> <pid>`.
fn control(flag: &str, pid: u32) -> Res<()> {
    let output = Command::new("callgrind_control")
        .args([flag, &pid.to_string()])
        .output()
        .map_err(|e| format!("cannot run callgrind_control: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "callgrind_control {flag} {pid} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The dumps of process `pid` in `dir`.
fn dumps(dir: &Path, side: &str, pid: u32) -> Vec<PathBuf> {
    let prefix = format!("{side}.{pid}.");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect();
    found.sort();
    found
}

/// The instruction total of a callgrind dump.
fn total(dump: &Path) -> Res<u64> {
    let text = std::fs::read_to_string(dump).map_err(|e| format!("{}: {e}", dump.display()))?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{}: no summary line", dump.display()))
}

/// One measured round of `case` on `side`: instructions per message and
/// the dump.
async fn measure(ctx: &Ctx, side: &str, pid: u32, case: &Case, dir: &Path) -> Res<(f64, PathBuf)> {
    let mut done = ctx
        .control
        .subscribe(format!("bench.{side}.done"))
        .await
        .map_err(|e| e.to_string())?;
    let (counter, body) = (case.counter(), make_body(case.json, case.size));
    let n = messages(ctx);
    // Warm-up.
    let target = Target {
        side,
        kind: case.kind,
        counter,
    };
    reset(ctx, &mut done, target, n / 10).await?;
    send_and_count(ctx, &mut done, target, body.clone(), n / 10).await?;

    reset(ctx, &mut done, target, n).await?;
    let before = dumps(dir, side, pid);
    control("-z", pid)?;
    send_and_count(ctx, &mut done, target, body, n).await?;
    control("-d", pid)?;
    let dump = dumps(dir, side, pid)
        .into_iter()
        .find(|path| !before.contains(path))
        .ok_or_else(|| format!("callgrind wrote no dump for {side} (pid {pid})"))?;
    Ok((total(&dump)? as f64 / n as f64, dump))
}

pub async fn instructions(ctx: &mut Ctx) -> Res<Value> {
    let dir = dump_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let small: Vec<Case> = cases(&ctx.plan)
        .into_iter()
        .filter(|case| case.size == 128)
        .collect();
    let mut figures: Vec<[f64; 2]> = vec![[0.0; 2]; small.len()];
    let mut out = serde_json::Map::new();
    for (i, side) in ["tel", "raw"].into_iter().enumerate() {
        // One side at a time: callgrind runs its threads one after the
        // other, and the two processes would otherwise share the cores
        // unevenly.
        let process = start(ctx, side, &dir).await?;
        for (k, case) in small.iter().enumerate() {
            let (per_message, dump) = measure(ctx, side, process.pid(), case, &dir)
                .await
                .map_err(|e| format!("{e}\n{}", log_tail(&process)))?;
            println!(
                "  {} {side}: {per_message:.0} instructions per message ({})",
                case.label(),
                dump.display()
            );
            figures[k][i] = per_message;
        }
        drop(process);
    }
    for (case, [fw, raw]) in small.iter().zip(&figures) {
        ctx.table.row(
            &format!("{}: instructions per message", case.label()),
            format!("{fw:.0}"),
            format!("{raw:.0}"),
            format!("{:.3}", fw / raw),
            "",
            None,
        );
        out.insert(
            case.key(),
            json!({
                "messages": messages(ctx),
                "telestion_instructions_per_msg": fw,
                "raw_instructions_per_msg": raw,
                "ratio": fw / raw,
            }),
        );
    }
    Ok(Value::Object(out))
}
