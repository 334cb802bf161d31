//! One round of load: `n` messages from the publisher connection to one
//! side's subscriber, counted exactly, with its rate and CPU time.

use std::time::{Duration, Instant};

use async_nats::{Subject, Subscriber};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use telestion_bench::work;

use crate::bus::{Res, request};
use crate::measure::cpu_ns;
use crate::session::Ctx;

/// Where a round's messages go: `bench.<side>.<kind>`, counted by the
/// side's counter `counter`.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `tel` (the telestion service) or `raw`.
    pub side: &'a str,
    /// The subject's last token: `bytes`, `json`, `plain`, `slow`, ...
    pub kind: &'a str,
    /// The counter: `hot`, `plain`, `slow` or `slow8`.
    pub counter: &'a str,
}

/// What one round measured.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// Messages per second until the subscriber announced the last one.
    pub rate: f64,
    /// The publisher's own rate.
    pub published: f64,
    /// The subscriber process's CPU time per message (ns).
    pub cpu_ns: f64,
}

/// Starts a round on `bench.<side>.reset` (`"<counter> <n>"`) and empties
/// the done subscription of markers from earlier rounds.
pub async fn reset(ctx: &Ctx, done: &mut Subscriber, target: Target<'_>, n: u64) -> Res<()> {
    let Target { side, counter, .. } = target;
    let reply = request(
        &ctx.control,
        &format!("bench.{side}.reset"),
        format!("{counter} {n}"),
    )
    .await?;
    if &reply[..] != b"ok" {
        return Err(format!(
            "reset refused: {}",
            String::from_utf8_lossy(&reply)
        ));
    }
    while let Some(Some(_)) = done.next().now_or_never() {}
    Ok(())
}

/// Publishes `n` copies of `body` on `bench.<side>.<kind>` and waits until
/// `counter` of that side counted all of them. Returns the time from the
/// first publish to the done marker and the publisher's own time.
pub async fn send_and_count(
    ctx: &Ctx,
    done: &mut Subscriber,
    target: Target<'_>,
    body: Bytes,
    n: u64,
) -> Res<(Duration, Duration)> {
    let Target {
        side,
        kind,
        counter,
    } = target;
    let publisher = ctx.publisher.clone();
    let subject = Subject::from(format!("bench.{side}.{kind}"));
    let start = Instant::now();
    let sending = tokio::spawn(async move {
        for _ in 0..n {
            publisher
                .publish(subject.clone(), body.clone())
                .await
                .map_err(|e| e.to_string())?;
        }
        publisher.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(start.elapsed())
    });
    let elapsed = wait_done(ctx, done, side, counter, n).await?;
    let published = sending.await.map_err(|e| e.to_string())??;
    Ok((elapsed, published))
}

/// One round: `n` messages to `target`.
pub async fn throughput_round(
    ctx: &Ctx,
    done: &mut Subscriber,
    target: Target<'_>,
    body: Bytes,
    n: u64,
) -> Res<Round> {
    let pid = ctx.pids[usize::from(target.side == "raw")];
    reset(ctx, done, target, n).await?;
    let cpu_before = cpu_ns(pid);
    let (elapsed, published) = send_and_count(ctx, done, target, body, n).await?;
    let cpu = cpu_ns(pid).saturating_sub(cpu_before) as f64 / n as f64;
    Ok(Round {
        rate: n as f64 / elapsed.as_secs_f64(),
        published: n as f64 / published.as_secs_f64(),
        cpu_ns: cpu,
    })
}

/// Waits for the done marker of a round of `n`; fails, naming the number
/// of missing messages, when the count stops growing for 3 s.
async fn wait_done(
    ctx: &Ctx,
    done: &mut Subscriber,
    side: &str,
    counter: &str,
    n: u64,
) -> Res<Duration> {
    let start = Instant::now();
    let mut last = (0u64, Instant::now());
    loop {
        tokio::select! {
            message = done.next() => {
                let message = message.ok_or("done subscription closed")?;
                if String::from_utf8_lossy(&message.payload).parse::<u64>() == Ok(n) {
                    return Ok(start.elapsed());
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let stats = request(&ctx.control, &format!("bench.{side}.stats"), Bytes::new()).await?;
                let stats: Value = serde_json::from_slice(&stats).map_err(|e| e.to_string())?;
                let count = stats.get(counter).and_then(Value::as_u64).unwrap_or(0);
                if count != last.0 {
                    last = (count, Instant::now());
                } else if last.1.elapsed() > Duration::from_secs(3) {
                    return Err(format!(
                        "{side}: only {count} of {n} messages arrived ({} missing)",
                        n.saturating_sub(count)
                    ));
                }
            }
        }
    }
}

/// A body of exactly `size` bytes: JSON `Sample` or opaque bytes.
pub fn make_body(json: bool, size: usize) -> Bytes {
    if json {
        let empty = serde_json::to_vec(&work::Sample {
            seq: 1,
            sensor: "bench".into(),
            data: String::new(),
        })
        .expect("json");
        let sample = work::Sample {
            seq: 1,
            sensor: "bench".into(),
            data: "x".repeat(size - empty.len()),
        };
        let body = serde_json::to_vec(&sample).expect("json");
        debug_assert_eq!(body.len(), size);
        Bytes::from(body)
    } else {
        Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
    }
}
