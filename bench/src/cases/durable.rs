//! Case 7, durable handlers (JetStream): a `#[subscribe(.., durable)]`
//! handler against a hand-written async-nats durable pull consumer with the
//! same policy (explicit acks confirmed by the server, one unacknowledged
//! message at a time, the same `ack_wait` and `max_deliver`), each on its
//! own stream (`BENCH_TEL` on `bench.tel.durable`, `BENCH_RAW` on
//! `bench.raw.durable`).
//!
//! Throughput: the side's handler is held (`hold`), `n` messages of 128 B
//! are published into its stream with JetStream acks (not timed), then the
//! clock runs from releasing the handler to its announcement of the last
//! message (consumed and all but the last acknowledged). Latency: a
//! durable publish (awaiting the stream's ack) and the wait for the
//! handler's announcement of that message, sample by sample alternating
//! the sides.

use std::time::{Duration, Instant};

use async_nats::Subscriber;
use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};

use crate::bus::{Res, request};
use crate::load::make_body;
use crate::measure::{median, ms, percentile};
use crate::session::Ctx;

const SIDES: [&str; 2] = ["tel", "raw"];

/// Sends a control command to a side (`bench.<side>.reset`).
async fn command(ctx: &Ctx, side: &str, command: &str) -> Res<()> {
    let reply = request(
        &ctx.control,
        &format!("bench.{side}.reset"),
        command.to_owned(),
    )
    .await?;
    if &reply[..] != b"ok" {
        return Err(format!(
            "{side}: {command:?} refused: {}",
            String::from_utf8_lossy(&reply)
        ));
    }
    Ok(())
}

/// Empties the done subscription of earlier markers.
fn drain(done: &mut Subscriber) {
    while let Some(Some(_)) = done.next().now_or_never() {}
}

/// Publishes `n` copies of `body` into the side's stream, waiting for every
/// stream ack (in windows of 1000).
async fn fill(js: &jetstream::Context, side: &str, body: &Bytes, n: u64) -> Res<()> {
    let subject = format!("bench.{side}.durable");
    let mut pending: Vec<PublishAckFuture> = Vec::new();
    for i in 0..n {
        let ack = js
            .publish(subject.clone(), body.clone())
            .await
            .map_err(|e| format!("{side}: durable publish: {e}"))?;
        pending.push(ack);
        if pending.len() == 1000 || i + 1 == n {
            for ack in pending.drain(..) {
                ack.await
                    .map_err(|e| format!("{side}: the stream did not store a message: {e}"))?;
            }
        }
    }
    Ok(())
}

/// Waits for the marker `n` on `done`; fails after `limit`.
async fn wait_for(done: &mut Subscriber, side: &str, n: u64, limit: Duration) -> Res<()> {
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            message = done.next() => {
                let message = message.ok_or("done subscription closed")?;
                if String::from_utf8_lossy(&message.payload).parse::<u64>() == Ok(n) {
                    return Ok(());
                }
            }
            () = &mut deadline => {
                return Err(format!("{side}: durable message {n} not handled within {limit:?}"));
            }
        }
    }
}

/// One throughput round of `n` messages on `side`: messages per second.
async fn round(
    ctx: &Ctx,
    js: &jetstream::Context,
    done: &mut Subscriber,
    side: &str,
    body: &Bytes,
    n: u64,
) -> Res<f64> {
    command(ctx, side, "hold 0").await?;
    fill(js, side, body, n).await?;
    drain(done);
    let start = Instant::now();
    command(ctx, side, &format!("durable {n}")).await?;
    // Generous: a side that stalls (an unacknowledged message waits
    // `ack_wait`, 30 s) fails instead of hanging.
    let limit = Duration::from_secs(60) + Duration::from_millis(n);
    wait_for(done, side, n, limit).await?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

pub async fn durable(ctx: &mut Ctx) -> Res<Value> {
    let js = jetstream::new(ctx.publisher.clone());
    let body = make_body(false, 128);
    let mut done = Vec::new();
    for side in SIDES {
        done.push(
            ctx.control
                .subscribe(format!("bench.{side}.done"))
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let n = ctx.plan.durable;

    // Throughput: a warm-up round per side, then rounds alternating which
    // side goes first.
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for (i, side) in SIDES.into_iter().enumerate() {
        round(ctx, &js, &mut done[i], side, &body, (n / 10).max(1)).await?;
    }
    for r in 0..ctx.plan.rounds {
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let rate = round(ctx, &js, &mut done[i], SIDES[i], &body, n).await?;
            rates[i].push(rate);
        }
    }
    let (f, r) = (median(&rates[0]), median(&rates[1]));
    let pairs: Vec<f64> = rates[0].iter().zip(&rates[1]).map(|(f, r)| f / r).collect();
    let ratio = median(&pairs);
    let spread = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        (lo, hi)
    };
    let pair_spread = spread(&pairs);
    println!(
        "  durable throughput 128 B: telestion {f:.0}/s, raw {r:.0}/s, ratio {ratio:.3} \
         (pairs {:.3}..{:.3})",
        pair_spread.0, pair_spread.1
    );
    ctx.table.row(
        "durable throughput 128 B, one at a time (msgs/s)",
        format!("{f:.0}"),
        format!("{r:.0}"),
        format!("{ratio:.3}"),
        ">= 0.95",
        Some(ratio >= 0.95),
    );

    // Latency: durable publish (stream ack) to the handler's announcement.
    for (i, side) in SIDES.into_iter().enumerate() {
        command(ctx, side, "durable_each 0").await?;
        drain(&mut done[i]);
    }
    let mut samples: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut stored: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut counts = [0u64; 2];
    let warm_up = (ctx.plan.durable_requests / 10).max(1);
    let total = warm_up + ctx.plan.rounds * ctx.plan.durable_requests;
    for k in 0..total {
        let order = if k % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let side = SIDES[i];
            let start = Instant::now();
            js.publish(format!("bench.{side}.durable"), body.clone())
                .await
                .map_err(|e| format!("{side}: durable publish: {e}"))?
                .await
                .map_err(|e| format!("{side}: the stream did not store a message: {e}"))?;
            let acked = start.elapsed();
            counts[i] += 1;
            wait_for(&mut done[i], side, counts[i], Duration::from_secs(40)).await?;
            if k >= warm_up {
                samples[i].push(ms(start.elapsed()));
                stored[i].push(ms(acked));
            }
        }
    }
    for side in SIDES {
        command(ctx, side, "durable 0").await?;
    }
    let stats = |v: &[f64]| (percentile(v, 50.0), percentile(v, 99.0));
    let (fl, rl) = (stats(&samples[0]), stats(&samples[1]));
    let (fs, rs) = (stats(&stored[0]), stats(&stored[1]));
    let lat_ratio = fl.0 / rl.0;
    println!(
        "  durable latency: telestion p50 {:.3} ms p99 {:.3} ms; raw p50 {:.3} ms p99 {:.3} ms; \
         p50 ratio {lat_ratio:.3} (of which the stream ack: p50 {:.3} / {:.3} ms)",
        fl.0, fl.1, rl.0, rl.1, fs.0, rs.0
    );
    ctx.table.row(
        "durable publish to handled p50 (ms)",
        format!("{:.3}", fl.0),
        format!("{:.3}", rl.0),
        format!("{lat_ratio:.3}"),
        "<= 1.05",
        Some(lat_ratio <= 1.05),
    );
    ctx.table.row(
        "durable publish to handled p99 (ms)",
        format!("{:.3}", fl.1),
        format!("{:.3}", rl.1),
        format!("{:.3}", fl.1 / rl.1),
        "",
        None,
    );
    Ok(json!({
        "body_bytes": 128,
        "policy": "durable pull consumer, explicit ack confirmed by the server (double ack), \
                   max_ack_pending 1, ack_wait 30 s, max_deliver -1 on the server; file storage, \
                   limits retention",
        "throughput": {
            "messages_per_round": n,
            "telestion_msgs_per_s": rates[0],
            "raw_msgs_per_s": rates[1],
            "telestion_median": f,
            "raw_median": r,
            "pair_ratios": pairs,
            "ratio_median_of_pairs": ratio,
        },
        "latency": {
            "samples": samples[0].len(),
            "telestion_ms": {"p50": fl.0, "p99": fl.1},
            "raw_ms": {"p50": rl.0, "p99": rl.1},
            "stream_ack_ms": {"telestion_p50": fs.0, "raw_p50": rs.0},
            "p50_ratio": lat_ratio,
        },
    }))
}
