//! Point 10, `DATA_DIR` at start: a value that is not UTF-8, or a data
//! directory that cannot be used, fails the start with an error naming
//! `DATA_DIR`, instead of a service that reports ready and then fails every
//! message that needs the directory.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use telestion::{DataDir, Options, Route, Service, ServiceError, StartError};

use crate::support::{self, NatsServer};

/// Data directories no service can use, as `(what, DATA_DIR,
/// SERVICE_NAME)`, some made in `scratch`. The tests run as root, for whom
/// a `chmod 0o555` directory is still writable; sysfs refuses new files
/// even to root, so `/sys` with the service name `kernel` (the existing
/// directory `/sys/kernel`) stands for a read-only data directory.
fn unusable_data_dirs(scratch: &Path) -> Vec<(&'static str, PathBuf, &'static str)> {
    let file = scratch.join("a-regular-file");
    std::fs::write(&file, "not a directory").unwrap();
    assert!(
        Path::new("/sys/kernel").is_dir(),
        "this test needs sysfs mounted at /sys"
    );
    vec![
        ("a regular file", file.clone(), "svc"),
        ("below a regular file", file.join("sub"), "svc"),
        ("read-only (sysfs)", PathBuf::from("/sys"), "kernel"),
    ]
}

async fn write_into(dir: DataDir) -> Result<String, String> {
    std::fs::write(dir.join("written"), "x").map_err(|e| e.to_string())?;
    Ok(dir.display().to_string())
}

/// A `DATA_DIR` that is not valid UTF-8, given to a service process through
/// its environment: the process exits 1 with an error naming `DATA_DIR`,
/// and never gets ready, although the NATS server is there.
///
/// Old behaviour: the value was silently rewritten with `to_string_lossy`
/// (`/tmp/x\u{fffd}`) and the service started and served with a data
/// directory nobody asked for.
#[tokio::test(flavor = "multi_thread")]
async fn data_dir_that_is_not_utf8_fails_the_process_start_naming_it() {
    let server = NatsServer::start();
    let mut cmd =
        support::clean_command(support::workspace_example("telestion-examples", "by_hand"));
    cmd.env("NATS_URL", server.url())
        .env("SERVICE_NAME", "latin1")
        .env("DATA_DIR", std::ffi::OsStr::from_bytes(b"/tmp/x\xff"));
    let stderr =
        tokio::task::spawn_blocking(move || support::assert_start_fails_naming(cmd, "DATA_DIR"))
            .await
            .unwrap();
    assert!(stderr.contains("not valid UTF-8"), "stderr:\n{stderr}");
}

/// `Service::data_dir()` in start-up code fails with `ServiceError::Io`
/// naming `DATA_DIR` when the data directory is a regular file, lies below
/// one, or cannot be written to.
///
/// Old behaviour: `data_dir()` only created the directory, so a read-only
/// one was returned as usable (every later write failed), and the error of
/// the other cases said "data directory <path>" without naming the key.
#[tokio::test(flavor = "multi_thread")]
async fn unusable_data_dir_fails_data_dir_naming_it() {
    let scratch = tempfile::tempdir().unwrap();
    for (what, data_dir, name) in unusable_data_dirs(scratch.path()) {
        let config = support::service_config("nats://127.0.0.1:1", name, &data_dir, &[]);
        let service = Service::start(Options::new().nats(false).signals(false).config(config))
            .await
            .unwrap_or_else(|e| panic!("{what}: the start itself failed: {e}"));
        let error = service
            .data_dir()
            .expect_err(&format!("{what}: data_dir() accepted {data_dir:?}"));
        assert!(
            matches!(error, ServiceError::Io { .. }),
            "{what}: {error:?}"
        );
        let text = telestion::error_chain(&error);
        assert!(text.contains("DATA_DIR"), "{what}: {text}");
    }
}

/// A service process whose start-up code calls `service.data_dir()?` (the
/// `e2e_no_nats` fixture) exits 1 with an error naming `DATA_DIR` for each
/// unusable data directory.
///
/// Old behaviour: a read-only data directory passed `data_dir()`; in every
/// case the message did not name `DATA_DIR`.
#[test]
fn unusable_data_dir_fails_a_process_whose_start_up_code_uses_it() {
    let scratch = tempfile::tempdir().unwrap();
    for (what, data_dir, name) in unusable_data_dirs(scratch.path()) {
        let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_e2e_no_nats"));
        cmd.env("NATS_URL", "nats://127.0.0.1:1")
            .env("SERVICE_NAME", name)
            .env("DATA_DIR", &data_dir);
        let stderr = support::assert_start_fails_naming(cmd, "DATA_DIR");
        assert!(stderr.contains("error:"), "{what}: stderr:\n{stderr}");
        // The start-up code's error keeps its cause (the OS error), even
        // though it returns a `Box<dyn Error>`, which is not `Send`.
        assert!(
            stderr.contains("(DATA_DIR): "),
            "{what}: the OS error is missing; stderr:\n{stderr}"
        );
    }
}

/// A handler that takes `DataDir` makes `serve` fail, naming `DATA_DIR`
/// and the handler, before the service is ready, for each unusable data
/// directory; with a usable one it serves and the handler writes there.
///
/// Old behaviour: there was no `DataDir` extractor; handlers called
/// `service.data_dir()` per message, so the service started, reported
/// ready and failed every message.
#[tokio::test(flavor = "multi_thread")]
async fn unusable_data_dir_fails_serve_of_a_data_dir_handler() {
    let server = NatsServer::start();
    let scratch = tempfile::tempdir().unwrap();
    for (what, data_dir, name) in unusable_data_dirs(scratch.path()) {
        let service = support::start_service(&server.url(), name, &data_dir, &[]).await;
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            service.serve(vec![Route::new("datadir.write", write_into)]),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: serve did not fail; the service is serving"));
        let error = outcome.expect_err(what);
        assert!(
            matches!(error, StartError::Handler { .. }),
            "{what}: {error:?}"
        );
        let text = telestion::error_chain(&error);
        assert!(
            text.contains("DATA_DIR") && text.contains("write_into"),
            "{what}: {text}"
        );
        service.drain().await;
    }

    // A usable data directory: the handler gets `$DATA_DIR/$SERVICE_NAME`.
    let data = tempfile::tempdir().unwrap();
    let service = support::TestService::start_with(
        support::service_config(&server.url(), "writer", data.path(), &[]),
        vec![Route::new("datadir.write", write_into)],
    )
    .await
    .unwrap();
    let client = server.client().await;
    let reply = support::request(&client, "datadir.write", "").await;
    assert_eq!(support::error_header(&reply), None);
    let dir = data.path().join("writer");
    assert_eq!(
        String::from_utf8_lossy(&reply.payload),
        dir.display().to_string()
    );
    assert!(dir.join("written").is_file());
    service.stop().await.unwrap();
}
