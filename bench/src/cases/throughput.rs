//! Case 1, throughput: messages from a separate publisher connection
//! through a handler vs a raw subscriber loop (128 B and 16 KiB, raw bytes
//! and `Json<T>`, and the diagnostic body-only handler), with the
//! subscriber's CPU time per message.

use serde_json::{Value, json};

use crate::cli::Plan;
use crate::load::{Target, make_body, throughput_round};
use crate::measure::median;
use crate::session::Ctx;

/// One throughput comparison.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The subject suffix: `bytes`, `json` or `plain` (the body-only
    /// handler).
    pub kind: &'static str,
    /// A JSON `Sample` body (else opaque bytes).
    pub json: bool,
    /// Body size in bytes.
    pub size: usize,
    /// Messages per round.
    pub n: u64,
}

impl Case {
    /// The counter of the case in both programs.
    pub fn counter(&self) -> &'static str {
        if self.kind == "plain" { "plain" } else { "hot" }
    }

    /// `throughput bytes 128 B`, ...
    pub fn label(&self) -> String {
        format!(
            "throughput {} {}{}",
            if self.json { "Json<T>" } else { "bytes" },
            if self.size == 128 { "128 B" } else { "16 KiB" },
            if self.kind == "plain" {
                ", body-only handler"
            } else {
                ""
            }
        )
    }

    /// The key of its figures in the JSON: `bytes_128`, ...
    pub fn key(&self) -> String {
        format!("{}_{}", self.kind, self.size)
    }
}

/// The throughput comparisons of a run.
pub fn cases(plan: &Plan) -> [Case; 5] {
    let case = |kind, json, size, n| Case {
        kind,
        json,
        size,
        n,
    };
    [
        case("bytes", false, 128, plan.small),
        case("bytes", false, 16 * 1024, plan.large),
        case("json", true, 128, plan.small),
        case("json", true, 16 * 1024, plan.large),
        // Diagnostic: a handler taking only the body (no `State`/`Service`).
        case("plain", false, 128, plan.small),
    ]
}

/// Figures of one side over the rounds.
#[derive(Debug, Default)]
struct Side {
    rates: Vec<f64>,
    cpu: Vec<f64>,
}

pub async fn throughput(ctx: &mut Ctx) -> Value {
    let mut out = serde_json::Map::new();
    let mut done = Vec::new();
    for side in ["tel", "raw"] {
        match ctx.control.subscribe(format!("bench.{side}.done")).await {
            Ok(s) => done.push(s),
            Err(e) => {
                ctx.fail("throughput", e.to_string());
                return Value::Null;
            }
        }
    }
    for case in cases(&ctx.plan) {
        let (counter, n, label) = (case.counter(), case.n, case.label());
        let body = make_body(case.json, case.size);
        let mut sides = [Side::default(), Side::default()];
        let mut pub_rates = Vec::new();
        let mut error = None;
        // Warm-up, one small round per side.
        for (i, side) in ["tel", "raw"].into_iter().enumerate() {
            let warm_up = (n / 10).max(1);
            let target = Target {
                side,
                kind: case.kind,
                counter,
            };
            let round = throughput_round(ctx, &mut done[i], target, body.clone(), warm_up);
            if let Err(e) = round.await {
                error = Some(e);
            }
        }
        for round in 0..ctx.plan.rounds {
            if error.is_some() {
                break;
            }
            // Alternate which side goes first.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let target = Target {
                    side: ["tel", "raw"][i],
                    kind: case.kind,
                    counter,
                };
                match throughput_round(ctx, &mut done[i], target, body.clone(), n).await {
                    Ok(round) => {
                        pub_rates.push(round.published);
                        sides[i].rates.push(round.rate);
                        sides[i].cpu.push(round.cpu_ns);
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
        }
        if let Some(e) = error {
            ctx.fail(&label, e);
            continue;
        }
        let [fw, raw] = &sides;
        let (f, r) = (median(&fw.rates), median(&raw.rates));
        // The ratio of each round's back-to-back pair, then the median:
        // robust against load that comes and goes on a shared machine.
        let pairs: Vec<f64> = fw
            .rates
            .iter()
            .zip(&raw.rates)
            .map(|(f, r)| f / r)
            .collect();
        let ratio = median(&pairs);
        let (fc, rc) = (median(&fw.cpu) / 1000.0, median(&raw.cpu) / 1000.0);
        println!(
            "  {label}: telestion {f:.0}/s, raw {r:.0}/s, ratio {ratio:.3}; CPU per message \
             {fc:.2} µs vs {rc:.2} µs"
        );
        let diagnostic = case.kind == "plain";
        ctx.table.row(
            &format!("{label} (msgs/s)"),
            format!("{f:.0}"),
            format!("{r:.0}"),
            format!("{ratio:.3}"),
            if diagnostic {
                "(diagnostic)"
            } else {
                ">= 0.95"
            },
            (!diagnostic).then_some(ratio >= 0.95),
        );
        // The framework's own CPU cost per small message, with and without
        // extractors, has a goal; JSON and large bodies are dominated by the
        // work both sides share.
        let cpu_goal = case.size == 128 && case.kind != "json";
        ctx.table.row(
            "  subscriber CPU per message (µs)",
            format!("{fc:.2}"),
            format!("{rc:.2}"),
            format!("{:.3}", fc / rc),
            if cpu_goal { "<= 1.10" } else { "" },
            cpu_goal.then_some(fc / rc <= 1.10),
        );
        out.insert(
            case.key(),
            json!({
                "messages_per_round": n,
                "body_bytes": case.size,
                "telestion_msgs_per_s": fw.rates,
                "raw_msgs_per_s": raw.rates,
                "publisher_msgs_per_s": pub_rates,
                "telestion_median": f,
                "raw_median": r,
                "ratio_median_of_pairs": ratio,
                "telestion_cpu_ns_per_msg": fw.cpu,
                "raw_cpu_ns_per_msg": raw.cpu,
                "cpu_ratio": fc / rc,
            }),
        );
    }
    Value::Object(out)
}
