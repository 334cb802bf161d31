//! A run: the cases in their order, around the two long-running processes
//! under test, collected into the JSON figures and the table.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use telestion_test::NatsServer;

use crate::binaries::Binaries;
use crate::bus::{Res, bench_service_ready, first_reply, pong};
use crate::cases::{
    backend, cold_start, database, durable, health_backlog, instructions, latency, memory, scale,
    standard_ops, throughput,
};
use crate::cli::Plan;
use crate::measure::memory_kib;
use crate::session::{Ctx, log_tail};

/// Runs the plan against `server`; returns the JSON figures and the
/// failures.
pub async fn run(plan: Plan, server: &NatsServer, bins: Binaries) -> Res<(Value, Vec<String>)> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut ctx = Ctx::new(plan.clone(), server, tmp.path(), bins).await?;
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
    results.insert("machine".into(), crate::report::machine());
    results.insert("plan".into(), json!(format!("{plan:?}")));

    if plan.runs_only("instructions") {
        // Its processes run under callgrind, alone on the bus.
        println!("instructions per message (callgrind) ...");
        match instructions::instructions(&mut ctx).await {
            Ok(value) => {
                results.insert("instructions".into(), value);
            }
            Err(e) => ctx.fail("instructions", e),
        }
    } else if plan.runs_only("backend") {
        // The example backend's chain, on a server of its own.
        println!("example backend: device -> database ...");
        let outcome = backend::backend(&mut ctx).await;
        record(
            &mut ctx,
            &mut results,
            "backend",
            "example backend",
            outcome,
        );
    } else if plan.runs_only("database") {
        // Telestion's database services, with PostgreSQL servers of their own.
        println!("database services: ingest and queries over stored points ...");
        let outcome = database::database(&mut ctx).await;
        record(
            &mut ctx,
            &mut results,
            "database",
            "database services",
            outcome,
        );
    } else {
        cases(&mut ctx, &mut results).await?;
    }

    ctx.table.print();
    results.insert("failures".into(), json!(ctx.failures.clone()));
    Ok((Value::Object(results), ctx.failures))
}

/// Inserts the result of a case, or records its failure.
fn record(
    ctx: &mut Ctx,
    results: &mut serde_json::Map<String, Value>,
    key: &str,
    case: &str,
    outcome: Res<Value>,
) {
    match outcome {
        Ok(value) => {
            results.insert(key.into(), value);
        }
        Err(e) => ctx.fail(case, e),
    }
}

/// The cases of a full run (or the one `--only` names).
async fn cases(ctx: &mut Ctx, results: &mut serde_json::Map<String, Value>) -> Res<()> {
    let plan = ctx.plan.clone();
    // 4. Cold start, before the long-running processes exist.
    if plan.runs("cold") {
        println!("cold start ...");
        let outcome = cold_start::cold_start(ctx).await;
        record(ctx, results, "cold_start", "cold start", outcome);
    }

    let mut fw = ctx.spawn_service("bench", "bench-tel");
    let mut raw = ctx.spawn_raw("bench-raw");
    ctx.pids = [fw.pid(), raw.pid()];
    let ready = async {
        let since = Instant::now();
        bench_service_ready(&ctx.control, "bench-tel", since).await?;
        first_reply(&ctx.control, "bench.raw.ping", since, pong).await
    };
    if let Err(e) = ready.await {
        return Err(format!(
            "the benchmark processes did not start: {e}\n{}\n{}",
            log_tail(&fw),
            log_tail(&raw)
        ));
    }

    // 5a. Idle memory.
    tokio::time::sleep(Duration::from_millis(if plan.smoke { 100 } else { 1000 })).await;
    let idle = (memory_kib(fw.pid())?, memory_kib(raw.pid())?);

    // 1. Throughput.
    if plan.runs("throughput") {
        println!("throughput ...");
        let throughput = throughput::throughput(ctx).await;
        results.insert("throughput".into(), throughput);
    }

    // 5b. Memory under load: the peak while the throughput cases ran.
    let load = (memory_kib(fw.pid())?, memory_kib(raw.pid())?);
    let memory = memory::memory(ctx, idle, load);
    results.insert("memory_kib".into(), memory);

    // 2. Latency.
    if plan.runs("latency") {
        println!("request/reply latency ...");
        let outcome = latency::latency(ctx).await;
        record(
            ctx,
            results,
            "request_reply",
            "request/reply latency",
            outcome,
        );
    }

    // 3. Health under a backlog.
    if plan.runs("health") {
        println!("health under backlog ...");
        let health = health_backlog::health(ctx).await;
        results.insert("health_under_backlog".into(), health);
    }

    // 6. standard_ops.
    if plan.runs("standard_ops") {
        match ctx.bins.standard_ops.clone() {
            Some(program) => {
                println!("standard_ops ...");
                let outcome = standard_ops::standard_ops(ctx, &program).await;
                record(ctx, results, "standard_ops", "standard_ops", outcome);
            }
            None => {
                println!("standard_ops: apps/standard_ops does not exist; skipped");
                ctx.failures
                    .push("standard_ops: apps/standard_ops does not exist".into());
            }
        }
    }

    // 7. Durable handlers (JetStream).
    if plan.runs("durable") {
        println!("durable handlers (JetStream) ...");
        let outcome = durable::durable(ctx).await;
        record(ctx, results, "durable", "durable handlers", outcome);
    }

    // 8. Scale: 1, 2 and 4 instances on a 3-node cluster.
    if plan.runs("scale") {
        println!("scale: instances in one queue group on a 3-node cluster ...");
        let outcome = scale::scale(ctx).await;
        record(ctx, results, "scale", "scale", outcome);
    }

    for (name, process) in [("bench-tel", &mut fw), ("bench-raw", &mut raw)] {
        if !process.is_running() {
            let tail = log_tail(process);
            ctx.fail(name, format!("exited during the run:\n{tail}"));
        }
    }
    Ok(())
}
