//! Finding every process a command started, also after the command is gone
//! and its children were handed to another parent: a mark in the
//! environment that each of them inherits, looked up in `/proc`.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::procs;

/// The environment variable that carries a [`ProcessMark`].
pub const MARK_VAR: &str = "TELESTION_TEST_MARK";

/// A mark for a command and everything it starts: an environment variable
/// ([`MARK_VAR`]) with a value unique to this mark, inherited by every
/// process below the command (unless one clears its environment). A test
/// finds them by it in `/proc`, by pid, however they are related by then,
/// and tests running in parallel do not see each other's processes.
///
/// Dropping the mark kills (`SIGKILL`) every marked process that still
/// runs, so a test that fails its check leaves nothing behind either.
///
/// ```no_run
/// use std::time::Duration;
/// use telestion_test::{Process, ProcessMark};
///
/// let mark = ProcessMark::new();
/// let mut cmd = std::process::Command::new("bash");
/// cmd.args(["-c", "sleep 1000 & echo started; wait"]);
/// mark.apply(&mut cmd);
/// let mut shell = Process::spawn(cmd);
/// while !shell.stdout().contains("started") {
///     std::thread::sleep(Duration::from_millis(20));
/// }
/// assert_eq!(mark.running().len(), 2, "bash and its sleep");
/// drop(shell);
/// mark.assert_none_within(Duration::from_secs(5));
/// ```
#[derive(Debug)]
pub struct ProcessMark {
    value: String,
}

/// A running process that carries a [`ProcessMark`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedProcess {
    /// Its process id.
    pub pid: u32,
    /// Its process group.
    pub pgid: u32,
    /// Its command line.
    pub command: String,
}

impl std::fmt::Display for MarkedProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} (group {}): {}",
            self.pid, self.pgid, self.command
        )
    }
}

impl Default for ProcessMark {
    fn default() -> ProcessMark {
        ProcessMark::new()
    }
}

impl ProcessMark {
    /// A new mark, unique on this machine.
    pub fn new() -> ProcessMark {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        ProcessMark {
            value: format!(
                "{}-{}-{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// Sets the mark in `cmd`'s environment (after an `env_clear`, if
    /// any, such as [`clean_command`](crate::clean_command)'s).
    pub fn apply<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env(MARK_VAR, &self.value)
    }

    /// The value of [`MARK_VAR`] for this mark.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Every marked process that runs now (zombies do not count).
    pub fn running(&self) -> Vec<MarkedProcess> {
        let entry = format!("{MARK_VAR}={}", self.value).into_bytes();
        procs::all_pids()
            .into_iter()
            .filter(|pid| procs::environ_holds(*pid, &entry))
            .filter_map(|pid| {
                let stat = procs::stat(pid).filter(procs::Stat::runs)?;
                Some(MarkedProcess {
                    pid: pid as u32,
                    pgid: stat.pgid as u32,
                    command: procs::command_line(pid),
                })
            })
            .collect()
    }

    /// Waits until no marked process runs.
    ///
    /// # Panics
    ///
    /// When some still run after `timeout`, listing them (after killing
    /// them with `SIGKILL`).
    pub fn assert_none_within(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let running = self.running();
            if running.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                self.kill_all();
                let list: Vec<String> = running.iter().map(ToString::to_string).collect();
                panic!(
                    "{} marked process(es) still ran {timeout:?} later (now killed):\n{}",
                    running.len(),
                    list.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills (`SIGKILL`) every marked process that runs.
    pub fn kill_all(&self) {
        // What a killed process started may appear meanwhile: a few rounds.
        for _ in 0..5 {
            let running = self.running();
            if running.is_empty() {
                return;
            }
            for process in running {
                // SAFETY: kill(2) with a pid read from /proc just now.
                unsafe {
                    libc::kill(process.pid as libc::pid_t, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProcessMark {
    fn drop(&mut self) {
        self.kill_all();
    }
}
