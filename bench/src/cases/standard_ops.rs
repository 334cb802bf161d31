//! Case 6, `standard_ops`: lines written per second in a burst beside a
//! raw async-nats appender of the same line format (`bench_raw`,
//! `bench.raw.log.<category>`), the lines a burst loses at default
//! settings, and the throughput of an unrelated busy subject with and
//! without it on the bus.

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
async fn start(ctx: &Ctx, program: &Path, data: &Path, id: &str, defaults: bool) -> Res<Process> {
    let mut env = ctx.service_env("standard-ops", id);
    // `defaults`: the client's default subscription buffer.
    env.retain(|(k, _)| *k != "DATA_DIR" && !(defaults && *k == "NATS_SUBSCRIPTION_CAPACITY"));
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

/// One burst of `n` lines on `subject`, the last one a request: lines per
/// second from the first publish to the reply (which comes after the last
/// line is written), and how many lines `file` holds once it stopped
/// growing.
async fn burst(ctx: &Ctx, subject: &str, file: &Path, n: u64) -> Res<(f64, u64)> {
    let subject = Subject::from(subject.to_owned());
    let start = Instant::now();
    for seq in 1..n {
        let body = format!("{{\"seq\":{seq:08},\"pad\":\"{}\"}}", "x".repeat(105));
        ctx.publisher
            .publish(subject.clone(), Bytes::from(body))
            .await
            .map_err(|e| e.to_string())?;
    }
    let last = format!("{{\"seq\":{n:08},\"pad\":\"{}\"}}", "x".repeat(105));
    // A request lost in the burst (a slow consumer) is no answer: the
    // lines are counted all the same.
    let reply = request(&ctx.publisher, &subject, Bytes::from(last)).await;
    let elapsed = start.elapsed();
    if let Ok(reply) = &reply
        && !String::from_utf8_lossy(reply).contains("true")
    {
        return Err(format!("refused: {}", String::from_utf8_lossy(reply)));
    }
    // Lines are written in arrival order, but allow a moment in case not.
    let lines = settled_lines(file, n).await;
    Ok((n as f64 / elapsed.as_secs_f64(), lines))
}

/// The lines of `file` once it has `n` or stopped growing for a second.
async fn settled_lines(file: &Path, n: u64) -> u64 {
    let mut last = (0, Instant::now());
    loop {
        let lines = std::fs::read(file)
            .map(|t| t.iter().filter(|b| **b == b'\n').count() as u64)
            .unwrap_or(0);
        if lines >= n {
            return lines;
        }
        if lines != last.0 {
            last = (lines, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(1) {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn standard_ops(ctx: &mut Ctx, program: &Path) -> Res<Value> {
    let data = ctx.dir.join("so-data");
    let n = ctx.plan.log_lines;

    // Lines written per second beside the raw appender (both with a
    // subscription buffer large enough for the whole burst).
    let mut process = start(ctx, program, &data, "so-lines", false).await?;
    let raw_logs = ctx.dir.join("data").join("raw-logs");
    let (mut tel_rates, mut raw_rates) = (Vec::new(), Vec::new());
    for round in 0..ctx.plan.rounds.min(3) {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for tel in order {
            let category = format!("bench{round}");
            let (rate, lines) = if tel {
                let file = data.join("logs").join(format!("{category}.log"));
                burst(ctx, &format!("__telestion__/log/{category}"), &file, n).await
            } else {
                let file = raw_logs.join(format!("{category}.log"));
                burst(ctx, &format!("bench.raw.log.{category}"), &file, n).await
            }
            .map_err(|e| format!("{e}\n{}", log_tail(&process)))?;
            if lines != n {
                let side = if tel { "standard_ops" } else { "raw appender" };
                return Err(format!("{side}: {lines} lines of {n}"));
            }
            if tel { &mut tel_rates } else { &mut raw_rates }.push(rate);
        }
    }
    drop(process);
    let ratios: Vec<f64> = tel_rates
        .iter()
        .zip(&raw_rates)
        .map(|(t, r)| t / r)
        .collect();
    let (tel, raw, ratio) = (median(&tel_rates), median(&raw_rates), median(&ratios));
    println!("  {tel:.0} lines/s, raw appender {raw:.0} lines/s ({ratio:.3})");
    ctx.table.row(
        &format!("standard_ops lines written/s ({n} x 128 B burst)"),
        format!("{tel:.0}"),
        format!("{raw:.0}"),
        format!("{ratio:.3}"),
        ">= 0.5",
        Some(ratio >= 0.5),
    );

    // The same burst at default settings (the client's default
    // subscription buffer): lines lost.
    process = start(ctx, program, &data, "so-default", true).await?;
    let file = data.join("logs").join("default.log");
    let (_, lines) = burst(ctx, "__telestion__/log/default", &file, n)
        .await
        .map_err(|e| format!("{e}\n{}", log_tail(&process)))?;
    let (_, peak_kib) = crate::measure::memory_kib(process.pid())?;
    drop(process);
    let lost = n - lines.min(n);
    println!(
        "  default settings: {lost} of {n} lines lost, peak RSS {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    ctx.table.row(
        &format!("standard_ops lines lost, {n} burst, default settings"),
        format!("{lost}"),
        String::new(),
        String::new(),
        "0",
        Some(lost == 0),
    );
    ctx.table.row(
        "  standard_ops peak RSS in that burst (MiB)",
        format!("{:.1}", peak_kib as f64 / 1024.0),
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
                Some(start(ctx, program, &data, &format!("so-busy-{round}"), false).await?)
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
        "lines_per_s": tel_rates,
        "lines_per_s_median": tel,
        "raw_appender_lines_per_s": raw_rates,
        "raw_appender_lines_per_s_median": raw,
        "lines_ratio": ratio,
        "lines_lost_default_settings": lost,
        "peak_rss_kib_default_settings": peak_kib,
        "unrelated_without_msgs_per_s": without,
        "unrelated_with_msgs_per_s": with,
        "unrelated_ratio": b / a,
    }))
}
