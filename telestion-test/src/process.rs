//! Service binaries as child processes: a clean environment, output
//! collected in the background, signals, bounded waits, killed with their
//! whole process group on drop.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::WAIT;
use crate::process_group;

/// A command for the binary at `path` with a clean environment (only `PATH`
/// and `HOME` kept, `RUST_LOG=info`), so the host's variables do not leak
/// in. Add the service's configuration with `.env(..)` and `.arg(..)`.
pub fn clean_command(path: impl AsRef<Path>) -> Command {
    let mut cmd = Command::new(path.as_ref());
    cmd.env_clear();
    for key in ["PATH", "HOME"] {
        if let Ok(value) = std::env::var(key) {
            cmd.env(key, value);
        }
    }
    cmd.env("RUST_LOG", "info");
    cmd
}

/// A child process with its stdout and stderr collected in the background,
/// that leaves nothing running:
///
/// - it runs as the leader of a process group of its own, and when the
///   `Process` is dropped (also while a panic unwinds, so a failing test
///   too) the whole group is killed with `SIGKILL`: the process and
///   everything it started that stayed in its group (a shell's commands, a
///   script's services); the drop returns once none of them runs (at most
///   5 s later);
/// - when the test process itself dies without dropping it (killed, even
///   with `SIGKILL`), the kernel kills the process (`PR_SET_PDEATHSIG`) and
///   a watchdog (one `sh` per test process) kills its group.
///
/// A process that leaves its group (`setsid`, a daemon) is not followed.
/// Signals from a terminal (Ctrl-C) or `timeout` sent to the test's group
/// no longer reach the child directly; it dies with the test process.
/// [`Process::signal`] signals the process alone, not its group.
///
/// ```no_run
/// use telestion_test::{NatsServer, Process, clean_command};
///
/// let server = NatsServer::start();
/// let mut cmd = clean_command("target/debug/my-service");
/// cmd.env("NATS_URL", server.url())
///     .env("SERVICE_NAME", "my-service")
///     .env("DATA_DIR", "/tmp");
/// let mut service = Process::spawn(cmd);
/// service.wait_for_stderr(" ready", telestion_test::WAIT);
/// service.signal(libc::SIGTERM);
/// assert_eq!(service.wait_exit(telestion_test::WAIT), Some(0));
/// ```
pub struct Process {
    /// The child.
    pub child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.child.id())
            .finish()
    }
}

fn locked(buffer: &Mutex<String>) -> String {
    buffer.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// One of a child's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A pipe whose read end is already closed, to give a child as stdout or
/// stderr: every write to it fails with `EPIPE` (Rust programs ignore
/// `SIGPIPE`), as when whoever read a service's output has gone away. The
/// pipe is close-on-exec, so no other child inherits it.
///
/// # Panics
///
/// When no pipe can be created.
pub fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("cannot create a pipe");
    drop(reader);
    Stdio::from(writer)
}

impl Process {
    /// Spawns `cmd` with piped stdout and stderr (stdin closed).
    ///
    /// # Panics
    ///
    /// When it cannot be spawned.
    pub fn spawn(cmd: Command) -> Process {
        Process::spawn_inner(cmd, None)
    }

    /// Like [`Process::spawn`], but `closed` is a [`closed_pipe`] (every
    /// write to it fails) and stays empty in [`Process::stdout`] or
    /// [`Process::stderr`]; the other stream is collected.
    ///
    /// ```no_run
    /// use telestion_test::{Process, Stream, clean_command};
    ///
    /// let mut tool = Process::spawn_with_closed(clean_command("target/debug/health"), Stream::Stdout);
    /// assert_ne!(tool.wait_exit(telestion_test::WAIT), Some(101), "{}", tool.stderr());
    /// ```
    ///
    /// # Panics
    ///
    /// When it cannot be spawned.
    pub fn spawn_with_closed(cmd: Command, closed: Stream) -> Process {
        Process::spawn_inner(cmd, Some(closed))
    }

    fn spawn_inner(mut cmd: Command, closed: Option<Stream>) -> Process {
        let output = |stream| {
            if closed == Some(stream) {
                closed_pipe()
            } else {
                Stdio::piped()
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(output(Stream::Stdout))
            .stderr(output(Stream::Stderr));
        let (cmd, spawned) = process_group::spawn(cmd);
        let mut child =
            spawned.unwrap_or_else(|e| panic!("cannot spawn {:?}: {e}", cmd.get_program()));
        let stderr = child.stderr.take().map(collect).unwrap_or_default();
        let stdout = child.stdout.take().map(collect).unwrap_or_default();
        Process {
            child,
            stderr,
            stdout,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        locked(&self.stderr)
    }

    /// Everything it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        locked(&self.stdout)
    }

    /// Waits until stderr contains `needle`.
    ///
    /// # Panics
    ///
    /// After `timeout`, or when the process exits first, showing stderr.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                if self.stderr().contains(needle) {
                    return;
                }
                panic!(
                    "the process exited ({status}) before stderr contained {needle:?}; \
                     stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "stderr did not contain {needle:?} within {timeout:?}; stderr:\n{}",
            self.stderr()
        );
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    #[cfg(unix)]
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits for exit; returns the exit code (`None` when killed by a
    /// signal).
    ///
    /// # Panics
    ///
    /// After `timeout`, showing stderr (the process is killed on drop).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("cannot wait for the child") {
                // Let the collectors finish reading.
                std::thread::sleep(Duration::from_millis(50));
                return status.code();
            }
            if Instant::now() > deadline {
                panic!(
                    "process did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What its open file descriptors point to (the targets of
    /// `/proc/<pid>/fd/*`: paths, `socket:[...]`, `pipe:[...]`, ...), as
    /// `lsof` would show them; empty once it has exited.
    pub fn open_files(&self) -> Vec<std::path::PathBuf> {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{}/fd", self.child.id())) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| std::fs::read_link(entry.path()).ok())
            .collect()
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    /// Kills the process's whole group (see [`Process`]).
    fn drop(&mut self) {
        process_group::kill(&mut self.child);
    }
}

fn collect(stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buffer = Arc::new(Mutex::new(String::new()));
    let sink = buffer.clone();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    });
    buffer
}

/// Runs a command to completion; kills it when it takes longer than
/// `timeout`.
///
/// # Panics
///
/// On the timeout, showing stderr.
pub fn run_with_timeout(cmd: Command, timeout: Duration) -> Output {
    let mut process = Process::spawn(cmd);
    process.wait_exit(timeout);
    let status = process
        .child
        .try_wait()
        .expect("cannot wait for the child")
        .expect("the child has exited");
    Output {
        status,
        stdout: process.stdout().into_bytes(),
        stderr: process.stderr().into_bytes(),
    }
}

/// Spawns `cmd` and waits (at most [`WAIT`]) until the service logs that it
/// is ready (every handler subscribed).
pub fn spawn_ready(cmd: Command) -> Process {
    let mut process = Process::spawn(cmd);
    process.wait_for_stderr(" ready", WAIT);
    process
}

/// [`clean_command`] for the service binary at `path`, configured for
/// `server` with `SERVICE_NAME=service_name` and `DATA_DIR=data_dir`.
pub fn service_command(
    path: impl AsRef<Path>,
    server: &crate::NatsServer,
    service_name: &str,
    data_dir: &Path,
) -> Command {
    let mut cmd = clean_command(path);
    cmd.env("NATS_URL", server.url())
        .env("SERVICE_NAME", service_name)
        .env("DATA_DIR", data_dir);
    cmd
}

/// Runs `cmd` to completion and asserts that the start failed (exit code
/// 1), that stderr names `key`, and that the service never got ready.
/// Returns stderr.
///
/// # Panics
///
/// When any of that does not hold.
pub fn assert_start_fails_naming(cmd: Command, key: &str) -> String {
    let output = run_with_timeout(cmd, WAIT);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected a failed start (exit 1) naming {key}; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(key),
        "the error does not name {key}; stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains(" ready"),
        "the service got ready despite bad config; stderr:\n{stderr}"
    );
    stderr
}
