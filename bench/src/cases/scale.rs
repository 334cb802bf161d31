//! Case 8, scale: what adding instances buys. On a 3-node cluster started
//! by the test kit (JetStream on every node), 1, 2 and 4 instances of the
//! benchmark service in one queue group (one `SERVICE_NAME`; instance `i`
//! connected to node `i mod 3`), and the driver publishing from node 0:
//!
//! - core: `n` messages of 128 B on `bench.tel.bytes`; the time from the
//!   first publish until the instances' handler statistics
//!   (`$SRV.STATS.<name>.<id>`, `num_requests` of that endpoint) add up to
//!   `n`;
//! - durable: `m` messages published durably (stream `BENCH_TEL`, one
//!   replica) to the durable handler, whose instances share one consumer;
//!   the time from the first publish until the consumer has nothing
//!   pending or unacknowledged.
//!
//! Each instance count gets fresh processes; the figures are messages per
//! second for the whole group.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishAckFuture};
use async_nats::{Client, Subject};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use telestion_test::{NatsServer, Process, ServerOptions};

use crate::bus::{Res, bench_service_ready, connect, request};
use crate::load::make_body;
use crate::session::{Ctx, log_tail};

/// The service name of the scaled instances (their queue group).
const NAME: &str = "bench-scale";

/// How many instances each step runs.
const COUNTS: [usize; 3] = [1, 2, 4];

/// What one instance count measured.
struct Step {
    instances: usize,
    core_per_s: f64,
    durable_per_s: f64,
}

/// Messages the endpoint on `subject` took, summed over `ids`.
async fn handled(client: &Client, ids: &[String], subject: &str) -> Res<u64> {
    let mut total = 0;
    for id in ids {
        let reply = request(client, &format!("$SRV.STATS.{NAME}.{id}"), Bytes::new()).await?;
        let stats: Value = serde_json::from_slice(&reply).map_err(|e| e.to_string())?;
        total += stats["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|endpoint| endpoint["subject"] == subject)
            .filter_map(|endpoint| endpoint["num_requests"].as_u64())
            .sum::<u64>();
    }
    Ok(total)
}

/// Polls `check` every 5 ms until it says done; fails when its progress
/// stops growing for 5 s.
async fn wait_until<F, Fut>(what: &str, mut check: F) -> Res<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Res<(bool, u64)>>,
{
    let mut last = (0u64, Instant::now());
    loop {
        let (done, progress) = check().await?;
        if done {
            return Ok(());
        }
        if progress != last.0 {
            last = (progress, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            return Err(format!("{what}: stuck at {progress}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The core round: `n` messages to the queue group.
async fn core_round(publisher: &Client, control: &Client, ids: &[String], n: u64) -> Res<f64> {
    let subject = Subject::from_static("bench.tel.bytes");
    let body = make_body(false, 128);
    let before = handled(control, ids, "bench.tel.bytes").await?;
    let start = Instant::now();
    for _ in 0..n {
        publisher
            .publish(subject.clone(), body.clone())
            .await
            .map_err(|e| e.to_string())?;
    }
    publisher.flush().await.map_err(|e| e.to_string())?;
    wait_until("core messages handled", || async {
        let count = handled(control, ids, "bench.tel.bytes").await? - before;
        Ok((count >= n, count))
    })
    .await?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Messages the stream's consumers have not settled yet.
async fn unsettled(js: &jetstream::Context) -> Res<u64> {
    let stream = js
        .get_stream("BENCH_TEL")
        .await
        .map_err(|e| e.to_string())?;
    let mut consumers = stream.consumers();
    let mut total = 0;
    while let Some(info) = consumers.next().await {
        let info = info.map_err(|e| e.to_string())?;
        total += info.num_pending + info.num_ack_pending as u64;
    }
    Ok(total)
}

/// The durable round: `m` messages through the shared consumer.
async fn durable_round(js: &jetstream::Context, m: u64) -> Res<f64> {
    let body = make_body(false, 128);
    let start = Instant::now();
    let mut pending: Vec<PublishAckFuture> = Vec::new();
    for i in 0..m {
        pending.push(
            js.publish("bench.tel.durable", body.clone())
                .await
                .map_err(|e| format!("durable publish: {e}"))?,
        );
        if pending.len() == 500 || i + 1 == m {
            for ack in pending.drain(..) {
                ack.await
                    .map_err(|e| format!("the stream did not store a message: {e}"))?;
            }
        }
    }
    wait_until("durable messages settled", || async {
        let left = unsettled(js).await?;
        Ok((left == 0, m - left.min(m)))
    })
    .await?;
    let took = start.elapsed();
    Ok(m as f64 / took.as_secs_f64())
}

/// Starts `count` instances spread over the nodes and waits until each
/// answers.
async fn start_instances(
    ctx: &Ctx,
    control: &Client,
    urls: &[String],
    count: usize,
) -> Res<(Vec<Process>, Vec<String>)> {
    let mut processes = Vec::new();
    let mut ids = Vec::new();
    for i in 0..count {
        let id = format!("scale-{count}-{i}");
        let mut env = ctx.service_env(NAME, &id);
        for (key, value) in &mut env {
            if *key == "NATS_URL" {
                *value = urls[i % urls.len()].clone();
            }
        }
        processes.push(ctx.spawn(&ctx.bins.service, &[], &env));
        ids.push(id);
    }
    for (id, process) in ids.iter().zip(&processes) {
        if let Err(e) = bench_service_ready(control, id, Instant::now()).await {
            return Err(format!("{e}\n{}", log_tail(process)));
        }
    }
    Ok((processes, ids))
}

/// Waits until the cluster's JetStream answers (its meta leader elected):
/// `$JS.API.INFO` replies with account figures, not an error.
async fn jetstream_ready(client: &Client) -> Res<()> {
    let start = Instant::now();
    loop {
        let reply = client.request("$JS.API.INFO", Bytes::new()).await;
        let ready = reply.as_ref().is_ok_and(|reply| {
            serde_json::from_slice::<Value>(&reply.payload)
                .is_ok_and(|info| info.get("error").is_none() && info.get("memory").is_some())
        });
        if ready {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "the cluster's JetStream is not ready: {:?}",
                reply.map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn scale(ctx: &mut Ctx) -> Res<Value> {
    let (n, m) = if ctx.plan.smoke {
        (500, 50)
    } else {
        (ctx.plan.small, ctx.plan.durable)
    };
    let (_, nodes) = tokio::task::spawn_blocking(|| {
        NatsServer::start_cluster(
            3,
            ServerOptions::new()
                .jetstream()
                .config("max_pending: 1073741824\nwrite_deadline: \"30s\""),
        )
    })
    .await
    .map_err(|e| format!("the cluster did not start: {e}"))?;
    let urls: Vec<String> = nodes.iter().map(NatsServer::url).collect();
    let publisher = connect(&urls[0]).await?;
    let control = connect(&urls[0]).await?;
    let js = jetstream::new(publisher.clone());
    jetstream_ready(&control).await?;
    let mut steps = Vec::new();
    for count in COUNTS {
        let (processes, ids) = start_instances(ctx, &control, &urls, count).await?;
        let core_per_s = core_round(&publisher, &control, &ids, n).await?;
        let durable_per_s = durable_round(&js, m).await?;
        println!(
            "  {count} instance(s): core {core_per_s:.0} msgs/s, durable {durable_per_s:.0} msgs/s"
        );
        drop(processes);
        steps.push(Step {
            instances: count,
            core_per_s,
            durable_per_s,
        });
    }
    let base = &steps[0];
    for step in &steps {
        ctx.table.row(
            &format!(
                "scale: {} instance(s), 3-node cluster: core / durable (msgs/s)",
                step.instances
            ),
            format!("{:.0} / {:.0}", step.core_per_s, step.durable_per_s),
            String::new(),
            format!(
                "{:.2} / {:.2}",
                step.core_per_s / base.core_per_s,
                step.durable_per_s / base.durable_per_s
            ),
            "(vs 1 instance)",
            None,
        );
    }
    drop(nodes);
    Ok(json!({
        "cluster_nodes": 3,
        "core_messages": n,
        "durable_messages": m,
        "steps": steps
            .iter()
            .map(|s| json!({
                "instances": s.instances,
                "core_msgs_per_s": s.core_per_s,
                "durable_msgs_per_s": s.durable_per_s,
            }))
            .collect::<Vec<_>>(),
    }))
}
