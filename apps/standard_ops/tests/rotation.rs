//! Log rotation: after `logs/<category>.log` is renamed or deleted the next
//! line goes to a new file at that path, and SIGHUP closes every open file
//! without stopping the service.

mod support;

use std::path::Path;

use support::{ack, lines, log_file, ops};
use telestion_test::{NatsServer, WAIT, eventually, health, spawn_ready};

fn texts(data: &Path, category: &str) -> Vec<String> {
    lines(data, category)
        .iter()
        .map(|line| line["text"].as_str().unwrap().to_owned())
        .collect()
}

/// `mv rot.log rot.log.1` (as logrotate does) and `rm`: each next line
/// goes to a new `rot.log`; nothing more reaches the renamed file.
///
/// Old behaviour: the handle stayed cached: after `mv` the lines went on
/// into `rot.log.1`, and after `rm` into the deleted file while every
/// request was answered `{"ok": true}`.
#[tokio::test(flavor = "multi_thread")]
async fn renamed_or_deleted_files_are_followed_by_new_ones() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let _ops = spawn_ready(ops(&server, data.path(), &[]));
    let client = server.client().await;
    let subject = "__telestion__/log/rot";
    let file = log_file(data.path(), "rot");

    assert_eq!(ack(&client, subject, "one").await["ok"], true);
    let rotated = data.path().join("logs/rot.log.1");
    std::fs::rename(&file, &rotated).unwrap();
    assert_eq!(ack(&client, subject, "two").await["ok"], true);
    assert_eq!(
        ack(&client, "__telestion__.log.rot", "three").await["ok"],
        true
    );
    assert_eq!(texts(data.path(), "rot"), ["two", "three"]);
    assert_eq!(texts(data.path(), "rot.log.1"), Vec::<String>::new());
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap().lines().count(),
        1
    );

    std::fs::remove_file(&file).unwrap();
    assert_eq!(ack(&client, subject, "four").await["ok"], true);
    assert_eq!(texts(data.path(), "rot"), ["four"]);
    assert_eq!(telestion_test::mode(&file), 0o600);

    // The whole directory removed: created again, owner-only.
    std::fs::remove_dir_all(data.path().join("logs")).unwrap();
    assert_eq!(ack(&client, subject, "five").await["ok"], true);
    assert_eq!(texts(data.path(), "rot"), ["five"]);
    assert_eq!(telestion_test::mode(&data.path().join("logs")), 0o700);
    assert_eq!(health(&client, "__telestion__/health").await["errors"], 0);
}

/// SIGHUP closes every open log file at once (no descriptor keeps a
/// rotated file), and the service goes on logging; a logrotate
/// `postrotate` script relies on it.
///
/// Old behaviour: SIGHUP stopped the service, like SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_closes_every_file_and_the_service_goes_on() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut service = spawn_ready(ops(&server, data.path(), &[]));
    let client = server.client().await;
    for category in ["a", "b", "c"] {
        let subject = format!("__telestion__/log/{category}");
        assert_eq!(ack(&client, &subject, "before").await["ok"], true);
    }
    let logs = data.path().join("logs");
    let open_logs = |service: &telestion_test::Process| {
        service
            .open_files()
            .into_iter()
            .filter(|path| path.parent() == Some(logs.as_path()))
            .count()
    };
    assert_eq!(open_logs(&service), 3);
    for category in ["a", "b", "c"] {
        let file = log_file(data.path(), category);
        std::fs::rename(&file, file.with_extension("log.1")).unwrap();
    }
    service.signal(libc::SIGHUP);
    eventually(WAIT, "every log file is closed", || {
        open_logs(&service) == 0
    })
    .await;
    assert!(service.is_running(), "{}", service.stderr());
    assert_eq!(health(&client, "__telestion__/health").await["errors"], 0);
    assert_eq!(
        ack(&client, "__telestion__/log/a", "after").await["ok"],
        true
    );
    assert_eq!(texts(data.path(), "a"), ["after"]);
    assert_eq!(open_logs(&service), 1);
    assert!(service.is_running());
}
