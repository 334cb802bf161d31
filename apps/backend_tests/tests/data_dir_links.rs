//! The database under `DATA_DIR` is reached without following symbolic
//! links (issue 25, point 7). A link planted at `db_writer`'s database, at
//! its WAL or shared-memory file, or at its data directory fails the
//! start (naming the path), and nothing is written where it points; a
//! database created afresh, with its WAL and shared-memory files, is
//! owner-only (`0600`). `db_query` refuses a database that is a link (503,
//! "symbolic link"), reading nothing through it.
//!
//! Old behaviour: `db_writer` followed a link at `telemetry.sqlite3` and
//! wrote the database, its WAL and its shared-memory file where it pointed
//! (mode 0644), and `db_query` answered from the database a link pointed
//! at.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use backend_tests::binary;
use telestion_test::{
    NatsServer, ServerOptions, assert_start_fails_naming, error_header, paths_below,
    request_within, service_command, spawn_ready,
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_at_the_database_are_never_followed() {
    let server = NatsServer::start_with(ServerOptions::new().jetstream());
    let data = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let dir = data.path().join("db_writer");
    let database = dir.join("telemetry.sqlite3");
    let writer = || service_command(binary("db_writer"), &server, "db_writer", data.path());
    std::fs::create_dir(&dir).unwrap();

    // A link at the database, the WAL file or the shared-memory file.
    for name in [
        "telemetry.sqlite3",
        "telemetry.sqlite3-wal",
        "telemetry.sqlite3-shm",
    ] {
        let link = dir.join(name);
        symlink(outside.path().join("target"), &link).unwrap();
        let stderr = assert_start_fails_naming(writer(), name);
        assert!(stderr.contains("symbolic link"), "{name}:\n{stderr}");
        assert!(
            paths_below(outside.path()).is_empty(),
            "{name}: written outside DATA_DIR: {:?}",
            paths_below(outside.path())
        );
        std::fs::remove_file(&link).unwrap();
        let _ = std::fs::remove_file(&database);
    }

    // A link at the service's data directory.
    std::fs::remove_dir(&dir).unwrap();
    symlink(outside.path(), &dir).unwrap();
    let stderr = assert_start_fails_naming(writer(), "DATA_DIR");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(paths_below(outside.path()).is_empty());
    std::fs::remove_file(&dir).unwrap();

    // No link: it starts; the database and its companions are owner-only.
    let mut writer = spawn_ready(writer());
    for suffix in ["", "-wal", "-shm"] {
        let path = dir.join(format!("telemetry.sqlite3{suffix}"));
        assert_eq!(mode(&path), 0o600, "{path:?}");
    }
    writer.signal(libc::SIGTERM);
    assert_eq!(writer.wait_exit(telestion_test::WAIT), Some(0));

    // db_query and a database that is a link to one outside.
    let real = outside.path().join("real.sqlite3");
    std::fs::rename(&database, &real).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("telemetry.sqlite3{suffix}")));
    }
    symlink(&real, &database).unwrap();
    let _query = spawn_ready(service_command(
        binary("db_query"),
        &server,
        "db_query",
        data.path(),
    ));
    let client = server.client().await;
    let reply = request_within(
        &client,
        "telemetry.query.count",
        "{}",
        Duration::from_secs(10),
    )
    .await;
    let error = error_header(&reply).unwrap_or_else(|| {
        panic!(
            "answered through the link: {}",
            String::from_utf8_lossy(&reply.payload)
        )
    });
    assert!(error.contains("symbolic link"), "{error}");
    assert!(
        !error.contains(&*outside.path().to_string_lossy()),
        "{error}"
    );
    let code = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
        .map(|v| v.as_str().to_owned());
    assert_eq!(code.as_deref(), Some("503"));
    assert_eq!(paths_below(outside.path()), [real]);
}
