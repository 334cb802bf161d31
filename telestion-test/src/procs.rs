//! The process table as `/proc` shows it: which processes run, in which
//! process group, with which environment. Zombies (ended, not yet
//! collected by their parent) do not count as running.

use std::path::Path;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    /// The state letter (`R`, `S`, `D`, `Z`, ...).
    pub(crate) state: char,
    /// The process group.
    pub(crate) pgid: i32,
}

impl Stat {
    /// Whether the process still runs (it is not a zombie).
    pub(crate) fn runs(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// The stat of process `pid`, `None` when there is none.
pub(crate) fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (command name) state ppid pgrp ...": the name may hold spaces
    // and parentheses, so the fields are counted from its last ')'.
    let mut fields = text.get(text.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(Stat { state, pgid })
}

/// The ids of every process in the table.
pub(crate) fn all_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether a process of group `pgid` still runs.
pub(crate) fn group_runs(pgid: i32) -> bool {
    all_pids()
        .into_iter()
        .filter_map(stat)
        .any(|stat| stat.pgid == pgid && stat.runs())
}

/// Whether the environment process `pid` started with holds `entry`
/// (`KEY=value`).
pub(crate) fn environ_holds(pid: i32, entry: &[u8]) -> bool {
    std::fs::read(Path::new("/proc").join(pid.to_string()).join("environ"))
        .is_ok_and(|environ| environ.split(|b| *b == 0).any(|e| e == entry))
}

/// The command line of process `pid`, its arguments joined by spaces.
pub(crate) fn command_line(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}
