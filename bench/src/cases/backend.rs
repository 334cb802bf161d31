//! The example backend's chain (case 9, run only when named: `--only
//! backend`): device_sim -> io_service -> telemetry_parser -> db_writer as
//! real processes, on a JetStream server of their own. It measures the
//! latency from the device's `time_ms` to the row's `stored_ms` at 200 and
//! 1000 frames per second (the simulator's maximum), end to end and per hop
//! (by the times the two streams stored each frame), with every frame
//! stored exactly once, and how fast the chain stores a backlog of frames
//! the device made while no service ran. The measurements are
//! `backend_tests::rate`'s, which the ignored test
//! `apps/backend_tests/tests/pipeline_rate.rs` runs too.

use serde_json::{Value, json};

use crate::bus::Res;
use crate::session::Ctx;

/// Runs the measurements; figures as JSON, rows in the table.
pub async fn backend(ctx: &mut Ctx) -> Res<Value> {
    let seconds = if ctx.plan.smoke { 2 } else { 10 };
    let outcome = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(|| {
            let mut live = Vec::new();
            for rate_hz in [200, 1000] {
                live.push(backend_tests::rate::live(rate_hz, seconds)?);
            }
            let backlog = backend_tests::rate::backlog(seconds)?;
            Ok::<_, String>((live, backlog))
        })
    })
    .await
    .map_err(|e| format!("the backend case did not finish: {e}"))?;
    let (live, backlog) = match outcome {
        Ok(result) => result?,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            return Err(format!("the backend case failed: {message}"));
        }
    };
    let mut runs = Vec::new();
    for f in &live {
        ctx.table.row(
            &format!(
                "backend: {} Hz device -> database, latency p50 / p99 / max",
                f.rate_hz
            ),
            format!("{} / {} / {} ms", f.p50_ms, f.p99_ms, f.max_ms),
            String::new(),
            String::new(),
            "p50 < 5, p99 < 20 ms, every frame once",
            Some(f.p50_ms < 5 && f.p99_ms < 20),
        );
        for hop in &f.hops {
            ctx.table.row(
                &format!("  {} Hz {}, p50 / p99 / max", f.rate_hz, hop.name),
                format!(
                    "{:.2} / {:.2} / {:.2} ms",
                    hop.p50_ms, hop.p99_ms, hop.max_ms
                ),
                String::new(),
                String::new(),
                "",
                None,
            );
        }
        let hops: Vec<Value> = f
            .hops
            .iter()
            .map(|hop| {
                json!({
                    "hop": hop.name,
                    "p50_ms": hop.p50_ms,
                    "p99_ms": hop.p99_ms,
                    "max_ms": hop.max_ms,
                })
            })
            .collect();
        runs.push(json!({
            "hops": hops,
            "rate_hz": f.rate_hz,
            "frames": f.sent,
            "stored_per_s": f.stored_per_s,
            "drain_after_stop_ms": f.drain.as_secs_f64() * 1000.0,
            "latency_p50_ms": f.p50_ms,
            "latency_p99_ms": f.p99_ms,
            "latency_max_ms": f.max_ms,
        }));
    }
    ctx.table.row(
        "backend: backlog stored (frames/s, services' start included)",
        format!("{:.0}", backlog.per_s),
        String::new(),
        String::new(),
        "every frame once",
        Some(true),
    );
    Ok(json!({
        "live": runs,
        "backlog": {
            "frames": backlog.frames,
            "took_ms": backlog.took.as_secs_f64() * 1000.0,
            "per_s": backlog.per_s,
        },
    }))
}
