//! Case 4, cold start: process launch to the first health reply (the
//! framework service) or the first reply (the raw program).

use std::time::Instant;

use serde_json::{Value, json};

use crate::bus::{HEALTH, Res, first_reply, health_from, pong};
use crate::measure::{median, ms};
use crate::session::{Ctx, log_tail};

pub async fn cold_start(ctx: &mut Ctx) -> Res<Value> {
    let (mut fw, mut raw) = (Vec::new(), Vec::new());
    for i in 0..ctx.plan.cold_runs {
        let id = format!("cold-{i}");
        let since = Instant::now();
        let process = ctx.spawn_service("bench-cold", &id);
        match first_reply(&ctx.control, HEALTH, since, health_from(&id)).await {
            Ok(elapsed) => fw.push(ms(elapsed)),
            Err(e) => return Err(format!("{e}\n{}", log_tail(&process))),
        }
        drop(process);

        let since = Instant::now();
        let process = ctx.spawn_raw(&format!("cold-raw-{i}"));
        match first_reply(&ctx.control, "bench.raw.ping", since, pong).await {
            Ok(elapsed) => raw.push(ms(elapsed)),
            Err(e) => return Err(format!("{e}\n{}", log_tail(&process))),
        }
        drop(process);
    }
    let (f, r) = (median(&fw), median(&raw));
    println!("  telestion {f:.1} ms (first health reply), raw {r:.1} ms (first reply)");
    ctx.table.row(
        "cold start to first reply (ms)",
        format!("{f:.1}"),
        format!("{r:.1}"),
        format!("{:.2}", f / r),
        "< 100 ms",
        Some(f < 100.0),
    );
    Ok(json!({"telestion_ms": fw, "raw_ms": raw, "telestion_median_ms": f, "raw_median_ms": r}))
}
