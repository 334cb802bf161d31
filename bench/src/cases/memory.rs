//! Case 5, memory: resident set size idle and its peak under load (the
//! throughput cases).

use serde_json::{Value, json};

use crate::session::Ctx;

/// `(VmRSS, VmHWM)` in KiB of the framework service and the raw program.
pub type Pair = ((u64, u64), (u64, u64));

/// The rows and JSON of the memory figures: `idle` measured before the
/// throughput cases, `load` after them.
pub fn memory(ctx: &mut Ctx, idle: Pair, load: Pair) -> Value {
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    ctx.table.row(
        "RSS idle",
        mib(idle.0.0),
        mib(idle.1.0),
        format!("{:.2}", idle.0.0 as f64 / idle.1.0 as f64),
        "< 15 MiB",
        Some(idle.0.0 < 15 * 1024),
    );
    ctx.table.row(
        "RSS peak under load (throughput cases)",
        mib(load.0.1),
        mib(load.1.1),
        format!("{:.2}", load.0.1 as f64 / load.1.1 as f64),
        "",
        None,
    );
    json!({
        "telestion": {"idle_rss": idle.0.0, "peak_rss_under_load": load.0.1},
        "raw": {"idle_rss": idle.1.0, "peak_rss_under_load": load.1.1},
    })
}
