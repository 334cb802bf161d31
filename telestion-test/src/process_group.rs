//! Children the test owns: each runs as the leader of a process group of
//! its own and is killed with that whole group; none outlives the test
//! process.
//!
//! - [`kill`] (on drop, also while a panic unwinds) sends `SIGKILL` to the
//!   child's whole group: the child and everything it started that stayed
//!   in its group (a shell's commands, a script's services, a browser's
//!   helpers), and waits (at most 5 s) until none of them runs.
//! - When the test process dies without dropping (killed, even with
//!   `SIGKILL`, or aborted), the kernel kills each child
//!   (`PR_SET_PDEATHSIG`), and a watchdog, one small `sh` per test process
//!   that reads the live groups from a pipe only the test process writes
//!   to, sees the pipe close and kills every group still listed.
//!
//! The parent-death signal belongs to the thread that spawned the child,
//! so every child is spawned by one thread that lives as long as the test
//! process: a child spawned from a short-lived thread (a `spawn_blocking`
//! task, a helper thread) is not killed when that thread ends.
//!
//! Not followed: a process that leaves its group (`setsid`, `setpgid`, a
//! daemon). A program that does that must stop what it started itself, as
//! `scripts/demo.sh` does. The parent-death signal is also cleared when the
//! child executes a set-user-ID binary or one with file capabilities (the
//! watchdog still kills its group).

use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::procs;

/// How long [`kill`] waits for the group's processes to end.
const GROUP_END: Duration = Duration::from_secs(5);

/// Spawns `cmd` as the leader of a new process group, to be killed with
/// [`kill`], and killed by the kernel when the test process dies. Hands
/// the command back with the result.
pub(crate) fn spawn(cmd: Command) -> (Command, io::Result<Child>) {
    let (reply, answer) = mpsc::channel();
    spawner()
        .send(Job { cmd, reply })
        .expect("the spawner thread has ended");
    answer.recv().expect("the spawner thread has ended")
}

/// Kills `child`'s whole process group (`SIGKILL`), collects the child and
/// waits, at most 5 s, until no process of its group runs.
pub(crate) fn kill(child: &mut Child) {
    let pgid = child.id() as libc::pid_t;
    // While the child is not collected, its number cannot be reused, nor
    // while any process of its group lives. Once it is collected and its
    // group is empty the number is free: when a process holds it again,
    // the group is someone else's.
    let collected = !matches!(child.try_wait(), Ok(None));
    if !(collected && procs::stat(pgid).is_some()) {
        // SAFETY: kill(2) on our child's process group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    let _ = child.wait();
    let deadline = Instant::now() + GROUP_END;
    while group_lives(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    watch(b'-', pgid);
}

/// Whether a process of group `pgid` still runs.
fn group_lives(pgid: libc::pid_t) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the group exists.
    let exists = unsafe { libc::kill(-pgid, 0) == 0 };
    // It also exists while only zombies are left (ended, not yet collected
    // by their new parent), so /proc decides then.
    exists && procs::group_runs(pgid)
}

struct Job {
    cmd: Command,
    reply: mpsc::Sender<(Command, io::Result<Child>)>,
}

/// The queue of the thread that spawns every child; it lives as long as
/// the test process.
fn spawner() -> &'static mpsc::Sender<Job> {
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("telestion-test spawner".into())
            .spawn(move || {
                for mut job in queue {
                    let result = spawn_here(&mut job.cmd);
                    let _ = job.reply.send((job.cmd, result));
                }
            })
            .expect("cannot start the spawner thread");
        jobs
    })
}

fn spawn_here(cmd: &mut Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and
    // calls only prctl(2) and getppid(2), which are async-signal-safe, and
    // builds errors without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The test process ended before the prctl: no signal will come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    watch(b'+', child.id() as libc::pid_t);
    Ok(child)
}

/// The watchdog: it reads lines `+ <pgid>` (a new group) and `- <pgid>` (a
/// group killed) and, at the end of its input (the test process has ended:
/// the kernel closed the pipe's only write end), kills every group still
/// listed. It ignores the signals a terminal or `timeout` sends.
const WATCHDOG: &str = r#"
trap '' HUP INT QUIT TERM
groups=
while read -r op group; do
    case $op in
        +) groups="$groups $group" ;;
        -) left=
           for g in $groups; do [ "$g" = "$group" ] || left="$left $g"; done
           groups=$left ;;
    esac
done
for g in $groups; do kill -KILL "-$g" 2>/dev/null; done
"#;

/// Tells the watchdog about a group (`+` new, `-` killed); started with the
/// first child. Without a watchdog (no `sh`), children still get the
/// parent-death signal.
fn watch(op: u8, pgid: libc::pid_t) {
    static WATCHDOG_INPUT: OnceLock<Option<Mutex<ChildStdin>>> = OnceLock::new();
    let input = WATCHDOG_INPUT.get_or_init(|| {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", WATCHDOG])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the test's group: a signal to that group (Ctrl-C,
            // `timeout`) does not reach it.
            .process_group(0);
        // Never collected: it ends after this process. The write end of
        // its input is close-on-exec, so no other child holds it.
        let mut watchdog = cmd.spawn().ok()?;
        watchdog.stdin.take().map(Mutex::new)
    });
    if let Some(input) = input {
        let line = format!("{} {pgid}\n", op as char);
        // One short write (atomic on a pipe); when the watchdog is gone
        // the write fails, and the parent-death signal remains.
        let _ = input
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(line.as_bytes());
    }
}
