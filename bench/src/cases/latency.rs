//! Case 2, request/reply latency through a handler vs a raw responder,
//! request by request alternating the sides.

use std::time::Instant;

use serde_json::{Value, json};

use crate::bus::{Res, request};
use crate::load::make_body;
use crate::measure::{ms, percentile};
use crate::session::Ctx;

pub async fn latency(ctx: &mut Ctx) -> Res<Value> {
    let body = make_body(false, 128);
    let mut samples: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let subjects = ["tel", "raw"].map(|side| format!("bench.{side}.echo"));
    for subject in &subjects {
        for _ in 0..(ctx.plan.requests / 10).max(1) {
            request(&ctx.control, subject, body.clone()).await?;
        }
    }
    // Request by request, alternating the side (and which goes first), so
    // that both see the same moments of a shared, noisy machine.
    for k in 0..ctx.plan.rounds * ctx.plan.requests {
        let order = if k % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let start = Instant::now();
            let reply = request(&ctx.control, &subjects[i], body.clone()).await?;
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
    ctx.table.row(
        "request/reply p50 (ms)",
        format!("{:.3}", fw.0),
        format!("{:.3}", raw.0),
        format!("{ratio:.3}"),
        "<= 1.10",
        Some(ratio <= 1.10),
    );
    ctx.table.row(
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
