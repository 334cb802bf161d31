//! What the tool prints: the per-instance table, the per-handler table and
//! the check's findings as text, or all of it as one JSON object.

use std::io::Write;

use serde::Serialize;

use crate::collect::Instance;

/// The result of one round, after the filter.
#[derive(Debug, Serialize)]
pub struct Round {
    /// When the round was asked (RFC 3339).
    pub time: String,
    /// How long replies were collected, milliseconds.
    pub wait_ms: u64,
    /// Every answering instance (filtered by name when asked).
    pub instances: Vec<Instance>,
    /// Expected services no instance of which answered.
    pub missing: Vec<String>,
    /// Ids of checked instances reporting recent errors or a failing or
    /// stalled durable handler.
    pub failing: Vec<String>,
    /// No expected service missing and, when checking, no recent errors.
    pub ok: bool,
}

/// Writes `round` as one line of JSON.
pub fn json(out: &mut impl Write, round: &Round) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, round)?;
    writeln!(out)?;
    out.flush()
}

fn cell(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Shortens `text` to `max` characters (an ellipsis marks the cut) and
/// keeps it on one line.
fn shorten(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Writes the tables (not `println!`, which panics when stdout is closed).
pub fn text(out: &mut impl Write, round: &Round) -> std::io::Result<()> {
    let rows = &round.instances;
    let name_width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
    let id_width = rows.iter().map(|r| r.id.len()).max().unwrap_or(0).max(8);
    writeln!(
        out,
        "{:name_width$}  {:id_width$}  {:6}  {:10}  {:6}  {:8}  VERSION",
        "NAME", "INSTANCE", "ERRORS", "LATENCY", "TOTAL", "UPTIME"
    )?;
    for row in rows {
        let latency = format!("{:.1} ms", row.latency_ms);
        let uptime = row
            .uptime_s
            .map_or_else(|| "-".to_owned(), |s| format!("{}s", s.floor() as u64));
        let version = if row.version.is_empty() {
            "-"
        } else {
            &row.version
        };
        writeln!(
            out,
            "{:name_width$}  {:id_width$}  {:6}  {:10}  {:6}  {:8}  {}",
            row.name,
            row.id,
            cell(row.errors),
            latency,
            cell(row.errors_total),
            uptime,
            version,
        )?;
    }
    let count = rows.len();
    let noun = if count == 1 { "instance" } else { "instances" };
    writeln!(out, "{count} {noun} answered within {} ms", round.wait_ms)?;
    for row in rows {
        for troubled in &row.troubled {
            writeln!(out, "{} {}: durable handler {troubled}", row.name, row.id)?;
        }
    }

    let handlers: Vec<_> = rows
        .iter()
        .flat_map(|row| row.handlers.iter().map(move |h| (row, h)))
        .collect();
    if !handlers.is_empty() {
        let handler_width = handlers
            .iter()
            .map(|(_, h)| h.name.len())
            .max()
            .unwrap_or(0)
            .max(7);
        let subject_width = handlers
            .iter()
            .map(|(_, h)| h.subject.len())
            .max()
            .unwrap_or(0)
            .max(7);
        writeln!(out)?;
        writeln!(
            out,
            "{:name_width$}  {:id_width$}  {:handler_width$}  {:subject_width$}  {:8}  {:6}  {:10}  {:7}  {:11}  LAST ERROR",
            "NAME",
            "INSTANCE",
            "HANDLER",
            "SUBJECT",
            "MESSAGES",
            "ERRORS",
            "AVG",
            "PENDING",
            "REDELIVERED"
        )?;
        for (row, h) in handlers {
            let average = format!("{:.3} ms", h.average_ns as f64 / 1e6);
            let last_error = if h.last_error.is_empty() {
                "-".to_owned()
            } else {
                shorten(&h.last_error, 60)
            };
            writeln!(
                out,
                "{:name_width$}  {:id_width$}  {:handler_width$}  {:subject_width$}  {:<8}  {:<6}  {:10}  {:7}  {:11}  {}",
                row.name,
                row.id,
                h.name,
                h.subject,
                h.messages,
                h.errors,
                average,
                cell(h.pending),
                cell(h.redelivered),
                last_error,
            )?;
        }
    }
    for name in &round.missing {
        writeln!(out, "MISSING: no instance of {name} answered")?;
    }
    for id in &round.failing {
        if let Some(row) = rows.iter().find(|r| &r.id == id) {
            writeln!(
                out,
                "ERRORS: {} {} reports {} recent errors",
                row.name,
                row.id,
                row.errors.unwrap_or(0)
            )?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_on_one_line() {
        assert_eq!(shorten("a\nb", 10), "a b");
        assert_eq!(shorten(&"é".repeat(100), 5), "éééé…");
    }
}
