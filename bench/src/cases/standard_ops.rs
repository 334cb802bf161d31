//! Case 6, `standard_ops`: lines written per second, and the throughput of
//! an unrelated busy subject with and without it on the bus.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::Subject;
use bytes::Bytes;
use serde_json::{Value, json};
use telestion_test::Process;

use crate::bus::{Res, request, service_ready};
use crate::load::{Target, make_body, throughput_round};
use crate::measure::median;
use crate::session::{Ctx, log_tail};

/// The unrelated busy subject: the raw program's bytes counter.
const RAW_BYTES: Target<'static> = Target {
    side: "raw",
    kind: "bytes",
    counter: "hot",
};

/// Starts `standard_ops` as instance `id` with its data in `data`, and
/// waits until it answers health and a data-log request.
async fn start(ctx: &Ctx, program: &Path, data: &Path, id: &str) -> Res<Process> {
    let mut env = ctx.service_env("standard-ops", id);
    env.retain(|(k, _)| *k != "DATA_DIR");
    env.push(("DATA_DIR", data.display().to_string()));
    let process = ctx.spawn(program, &[], &env);
    // Ready when a log request is answered too (its own category, so the
    // measured files stay exact).
    let logged = |reply: &[u8]| String::from_utf8_lossy(reply).contains("true");
    let warmup = "__telestion__/log/warmup";
    match service_ready(&ctx.control, id, Instant::now(), warmup, logged).await {
        Ok(_) => Ok(process),
        Err(e) => Err(format!("{e}\n{}", log_tail(&process))),
    }
}

/// Waits (at most 10 s) until `file` has `n` lines.
async fn wait_for_lines(file: &Path, n: u64) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = std::fs::read_to_string(file)
            .map(|t| t.lines().count() as u64)
            .unwrap_or(0);
        if lines == n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{}: {lines} lines, expected {n}", file.display()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn standard_ops(ctx: &mut Ctx, program: &Path) -> Res<Value> {
    let data = ctx.dir.join("so-data");

    // Lines written per second.
    let process = start(ctx, program, &data, "so-lines").await?;
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
        let reply = request(&ctx.publisher, &subject, body.clone()).await?;
        let elapsed = start.elapsed();
        if !String::from_utf8_lossy(&reply).contains("true") {
            return Err(format!(
                "standard_ops refused: {}",
                String::from_utf8_lossy(&reply)
            ));
        }
        // The reply to the last message comes after its line; earlier lines
        // are written in arrival order, but allow a moment in case not.
        wait_for_lines(&data.join("logs").join(format!("{category}.log")), n).await?;
        line_rates.push(n as f64 / elapsed.as_secs_f64());
    }
    drop(process);
    let lines_per_s = median(&line_rates);
    println!("  {lines_per_s:.0} lines/s");
    ctx.table.row(
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
            let process = if running {
                Some(start(ctx, program, &data, &format!("so-busy-{round}")).await?)
            } else {
                None
            };
            let measured = throughput_round(ctx, &mut done, RAW_BYTES, body.clone(), n).await?;
            if running {
                with.push(measured.rate)
            } else {
                without.push(measured.rate)
            }
            drop(process);
        }
    }
    let (a, b) = (median(&without), median(&with));
    println!(
        "  unrelated subject: {a:.0}/s without, {b:.0}/s with standard_ops ({:.3})",
        b / a
    );
    ctx.table.row(
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
