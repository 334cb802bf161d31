//! Case 3, health under a backlog: the latency of health requests to the
//! framework service while a handler works through a backlog, side by side
//! with a raw async-nats responder while the raw subscriber does the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::Client;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::bus::{HEALTH, Res};
use crate::load::{Target, make_body, throughput_round};
use crate::measure::{median, ms, percentile};
use crate::session::Ctx;

/// Latencies (ms) of requests to `subject`, one every 2 ms, until `stop`,
/// and the number of requests unanswered within 2 s.
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

/// Health replies while `counter`'s handler (`slow` or `slow8`) works
/// through a backlog; `label` names the case in the table.
pub async fn health_under_backlog(ctx: &mut Ctx, counter: &str, label: &str) -> Res<Value> {
    let n = ctx.plan.backlog;
    let body = make_body(false, 128);
    let sides = ["tel", "raw"];
    let mut done = Vec::new();
    for side in sides {
        let subject = format!("bench.{side}.done");
        done.push(
            ctx.control
                .subscribe(subject)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let mut latencies = [Vec::new(), Vec::new()];
    let mut timeouts = [0u64; 2];
    let mut drain_rates = [Vec::new(), Vec::new()];
    for round in 0..ctx.plan.health_rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let stop = Arc::new(AtomicBool::new(false));
            let subject = if i == 0 { HEALTH } else { "bench.raw.ping" };
            let probing = tokio::spawn(probe(ctx.probe.clone(), subject, stop.clone()));
            let target = Target {
                side: sides[i],
                kind: counter,
                counter,
            };
            let outcome = throughput_round(ctx, &mut done[i], target, body.clone(), n).await;
            stop.store(true, Ordering::Relaxed);
            let (mut l, t) = probing.await.map_err(|e| e.to_string())?;
            let round = outcome?;
            latencies[i].append(&mut l);
            timeouts[i] += t;
            drain_rates[i].push(round.rate);
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
    ctx.table.row(
        &format!("health p50/p99/max (ms), backlog {n}, {label}"),
        format!("{:.2} / {:.2} / {:.2}", fw.0, fw.1, fw.2),
        format!("{:.2} / {:.2} / {:.2}", raw.0, raw.1, raw.2),
        format!("{:.2}", fw.1 / raw.1),
        "p99 < 5 ms",
        Some(fw.1 < 5.0 && timeouts[0] == 0),
    );
    ctx.table.row(
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

/// Both backlog cases: one message at a time and `concurrency = 8`.
pub async fn health(ctx: &mut Ctx) -> Value {
    let mut health = serde_json::Map::new();
    for (counter, label) in [("slow", "concurrency 1"), ("slow8", "concurrency 8")] {
        match health_under_backlog(ctx, counter, label).await {
            Ok(value) => {
                health.insert(counter.into(), value);
            }
            Err(e) => ctx.fail(&format!("health under backlog ({label})"), e),
        }
    }
    Value::Object(health)
}
