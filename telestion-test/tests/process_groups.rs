//! The test kit leaves nothing running: a spawned process dies with its
//! whole process group when it is dropped, also while a panic unwinds, and
//! when the test process itself is killed.

use std::process::Command;
use std::time::{Duration, Instant};

use telestion_test::{NatsServer, Process, ProcessMark, run_with_timeout};

/// A shell that starts a grandchild (`sleep`), says so, and waits for it.
fn shell_with_grandchild(mark: &ProcessMark) -> Command {
    let mut cmd = Command::new("bash");
    cmd.args(["-c", "sleep 1000 & echo started; wait"]);
    mark.apply(&mut cmd);
    cmd
}

fn wait_for_stdout(process: &Process, needle: &str) {
    let deadline = Instant::now() + telestion_test::WAIT;
    while !process.stdout().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} on stdout: {}\nstderr: {}",
            process.stdout(),
            process.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_grandchild_dies_with_its_process_on_drop() {
    let mark = ProcessMark::new();
    let shell = Process::spawn(shell_with_grandchild(&mark));
    wait_for_stdout(&shell, "started");
    let running = mark.running();
    assert_eq!(running.len(), 2, "bash and its sleep: {running:?}");
    drop(shell);
    mark.assert_none_within(Duration::from_secs(5));
}

#[test]
fn a_grandchild_dies_when_a_test_panics() {
    let mark = ProcessMark::new();
    let unwound = std::panic::catch_unwind(|| {
        let shell = Process::spawn(shell_with_grandchild(&mark));
        wait_for_stdout(&shell, "started");
        assert_eq!(mark.running().len(), 2);
        panic!("a failing test");
    });
    assert!(unwound.is_err());
    mark.assert_none_within(Duration::from_secs(5));

    // The same when run_with_timeout gives up on a command.
    let timed_out = std::panic::catch_unwind(|| {
        run_with_timeout(shell_with_grandchild(&mark), Duration::from_secs(1))
    });
    assert!(timed_out.is_err(), "the shell waits for its sleep");
    mark.assert_none_within(Duration::from_secs(5));
}

/// The environment variable that turns [`helper_owning_children`] on.
const HELPER: &str = "PROCESS_GROUPS_HELPER";

#[test]
fn children_die_with_the_test_process() {
    let mark = ProcessMark::new();
    // This test binary again, running only the helper below: a "test
    // process" with a shell (and its grandchild) and a nats-server.
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "helper_owning_children",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(HELPER, "1");
    mark.apply(&mut cmd);
    let helper = Process::spawn(cmd);
    wait_for_stdout(&helper, "helper: ready");
    let running = mark.running();
    assert!(
        running.len() >= 4,
        "the helper, bash, sleep and nats-server: {running:?}"
    );
    // Killed as a test process is when a run is cut short: no unwinding,
    // no drop.
    helper.signal(libc::SIGKILL);
    mark.assert_none_within(Duration::from_secs(10));
}

#[test]
#[ignore = "not a test: the process children_die_with_the_test_process kills"]
fn helper_owning_children() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    // The mark reaches the server through the environment: NatsServer does
    // not clear it.
    let _server = NatsServer::start();
    let shell = Process::spawn(shell_with_grandchild_inherited());
    wait_for_stdout(&shell, "started");
    println!("helper: ready");
    std::thread::sleep(Duration::from_secs(1000));
}

/// The shell with the environment this process inherited (its mark).
fn shell_with_grandchild_inherited() -> Command {
    let mut cmd = Command::new("bash");
    cmd.args(["-c", "sleep 1000 & echo started; wait"]);
    cmd
}
