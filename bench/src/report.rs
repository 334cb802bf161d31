//! What a run prints and writes: the table of figures and goals, and the
//! description of the machine for the JSON.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::Command;

use serde_json::{Value, json};

/// One line of the printed table.
struct Row {
    metric: String,
    telestion: String,
    raw: String,
    ratio: String,
    goal: String,
    met: String,
}

/// The table of a run.
pub struct Table {
    /// Smoke mode: no goal is judged.
    smoke: bool,
    rows: Vec<Row>,
}

impl Table {
    pub fn new(smoke: bool) -> Table {
        Table {
            smoke,
            rows: Vec::new(),
        }
    }

    /// Adds a row; `met` is whether the goal is met (`None`: no goal).
    pub fn row(
        &mut self,
        metric: &str,
        telestion: String,
        raw: String,
        ratio: String,
        goal: &str,
        met: Option<bool>,
    ) {
        let met = match (met, self.smoke) {
            (_, true) | (None, _) => String::new(),
            (Some(true), false) => "yes".into(),
            (Some(false), false) => "NO".into(),
        };
        self.rows.push(Row {
            metric: metric.into(),
            telestion,
            raw,
            ratio,
            goal: goal.into(),
            met,
        });
    }

    /// Prints the table as Markdown.
    pub fn print(&self) {
        let headers = [
            "metric",
            "telestion",
            "raw async-nats",
            "ratio",
            "goal",
            "met",
        ];
        let cells: Vec<[&str; 6]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    &*r.metric,
                    &*r.telestion,
                    &*r.raw,
                    &*r.ratio,
                    &*r.goal,
                    &*r.met,
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[&str; 6]| {
            let mut s = String::from("|");
            for (cell, w) in cells.iter().zip(widths) {
                let _ = write!(s, " {cell:<w$} |");
            }
            s
        };
        println!();
        println!("{}", line(&headers));
        let mut sep = String::from("|");
        for w in widths {
            let _ = write!(sep, "{}|", "-".repeat(w + 2));
        }
        println!("{sep}");
        for row in &cells {
            println!("{}", line(row));
        }
        let _ = std::io::stdout().flush();
    }
}

/// The machine, toolchain and profile of the run.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let nats_server = telestion_test::nats_server_bin();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "kernel": output("uname", &["-sr"]),
        "rustc": output("rustc", &["--version"]),
        "nats_server": output(&nats_server.display().to_string(), &["--version"]),
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}
