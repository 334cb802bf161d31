//! The database writer's disk fails for a while: every frame is stored
//! once when it is back (issue 25, points 1 and 2), on Debian's nats-server
//! and the current release at once (one backend each, side by side).
//!
//! Old behaviour: each failing 200-frame batch was tried five times over
//! about a minute, then dead-lettered to a subject no stream captured:
//! frames lost for good, 200 log lines per failed batch.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use backend_tests::{Backend, SessionCount, binary, read_counts};
use telestion_test::{ServerOptions, Tmpfs, WAIT, clean_command, run_with_timeout};

/// The services from the device to the database.
const PIPELINE: [&str; 3] = ["io_service", "telemetry_parser", "db_writer"];

/// Frames per second of the simulator.
const HZ: u32 = 50;

/// Runs `test` once per server binary, each on its own thread; panics
/// with the first failure.
fn on_both_servers(test: fn(&str, &Path)) {
    let runs: Vec<_> = telestion_test::server_binaries()
        .into_iter()
        .map(|(label, bin)| std::thread::spawn(move || test(&label, &bin)))
        .collect();
    for run in runs {
        if let Err(panic) = run.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Waits up to `limit` for `check`, polling.
fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Rows stored so far (0 while the file cannot be read).
fn rows(database: &Path) -> u64 {
    if !database.exists() {
        return 0;
    }
    std::panic::catch_unwind(|| read_counts(database))
        .map(|counts| counts.iter().map(|c| c.count).sum())
        .unwrap_or(0)
}

/// `health --check` against `backend`: its exit code and report.
fn health_check(backend: &Backend) -> (Option<i32>, String) {
    let mut check = clean_command(binary("health"));
    check
        .env("NATS_URL", backend.server.url())
        .env("SERVICE_NAME", "health-check")
        .env("DATA_DIR", backend.data_dir())
        .arg("--check");
    let output = run_with_timeout(check, WAIT);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// Runs the pipeline with the database in `db_dir`, breaks the database
/// with `break_it` once frames flow, keeps it broken for `broken`
/// (checking that health says so), mends it with `mend`, and asserts that
/// every frame the device sent is stored exactly once, that the writer was
/// failing meanwhile, and that it logged one line per try, not per frame.
fn survives(
    label: &str,
    server: &Path,
    db_dir: &Path,
    broken: Duration,
    break_it: &dyn Fn(&Path),
    mend: &dyn Fn(&Path),
) {
    let started = Instant::now();
    let mut backend = Backend::start_on(
        ServerOptions::new().binary(server),
        HZ,
        &PIPELINE,
        vec![("db_writer", "DATA_DIR".into(), db_dir.display().to_string())],
    );
    let database = db_dir.join("db_writer").join("telemetry.sqlite3");
    wait_until(WAIT, "the first frames stored", || rows(&database) >= 50);

    break_it(&database);
    let broke = Instant::now();
    // Health shows the writer failing (its route retries the batch); from
    // then on nothing is stored.
    wait_until(Duration::from_secs(60), "health --check failing", || {
        let (code, report) = health_check(&backend);
        code == Some(3) && report.contains("failing")
    });
    let before = rows(&database);
    let failing_after = broke.elapsed();
    let remaining = broken.saturating_sub(broke.elapsed());
    std::thread::sleep(remaining);
    assert_eq!(
        rows(&database),
        before,
        "[{label}] frames were stored while the database was broken: the fault did not hold"
    );
    mend(&database);

    let mended = Instant::now();
    let sent = backend.stop_telemetry();
    wait_until(
        Duration::from_secs(120),
        "every frame stored after the fault",
        || rows(&database) >= sent,
    );
    let expected = SessionCount {
        session: backend.session,
        min_counter: 0,
        max_counter: u32::try_from(sent - 1).unwrap(),
        count: sent,
    };
    let caught_up = mended.elapsed();
    assert_eq!(read_counts(&database), [expected], "[{label}]");
    let writer = backend.service("db_writer");
    let stderr = writer.stderr();
    let failures = stderr.matches("handler failed").count();
    assert!(
        failures >= 1,
        "[{label}] the writer never failed; stderr:\n{stderr}"
    );
    assert!(
        failures <= 30,
        "[{label}] {failures} failure lines for {} s of a broken database (one per try \
         expected)",
        broken.as_secs()
    );
    assert!(
        !stderr.contains("dead-letter"),
        "[{label}] something was dead-lettered:\n{stderr}"
    );
    println!(
        "[{label}] {} s broken: {sent} frames sent, all stored once; {failures} failure \
         lines; health failing after {failing_after:?}, caught up {caught_up:?} after the \
         mend, {:?} in all",
        broken.as_secs(),
        started.elapsed()
    );
}

/// The file that fills the disk.
fn filler(database: &Path) -> PathBuf {
    database
        .parent()
        .and_then(Path::parent)
        .expect("the database is in DATA_DIR/db_writer")
        .join("filler")
}

#[test]
fn a_full_disk_for_90_s_loses_nothing() {
    on_both_servers(|label, server| {
        let disk = Tmpfs::mount(16 * 1024 * 1024);
        survives(
            label,
            server,
            disk.path(),
            Duration::from_secs(90),
            &|database| {
                use std::io::Write;
                let mut file = std::fs::File::create(filler(database)).unwrap();
                let chunk = vec![0u8; 64 * 1024];
                while file.write_all(&chunk).is_ok() {}
                // The last partial pages too.
                while file.write_all(&[0u8; 512]).is_ok() {}
            },
            &|database| std::fs::remove_file(filler(database)).unwrap(),
        );
    });
}

/// `chattr +i` (or `-i`) on the database and its write-ahead log. (Not on
/// the shared-memory file: SQLite maps it, and a write to a mapped page of
/// an immutable file kills the process with SIGBUS; the service then
/// restarts and loses nothing, but that is another test.)
fn chattr(flag: &str, database: &Path) {
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    let output = Command::new("chattr")
        .arg(flag)
        .arg(database)
        .arg(&wal)
        .output()
        .expect("cannot run chattr (e2fsprogs)");
    assert!(
        output.status.success(),
        "chattr {flag} failed (the test needs root and a file system with the immutable \
         flag, such as ext4): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_read_only_database_for_60_s_loses_nothing() {
    on_both_servers(|label, server| {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("db_writer").join("telemetry.sqlite3");
        // Mended even when the test fails, so the directory can be removed.
        struct Mend(PathBuf);
        impl Drop for Mend {
            fn drop(&mut self) {
                let mut wal = self.0.as_os_str().to_owned();
                wal.push("-wal");
                let _ = Command::new("chattr")
                    .arg("-i")
                    .arg(&self.0)
                    .arg(wal)
                    .output();
            }
        }
        let _mend = Mend(database);
        survives(
            label,
            server,
            dir.path(),
            Duration::from_secs(60),
            &|database| chattr("+i", database),
            &|database| chattr("-i", database),
        );
    });
}
