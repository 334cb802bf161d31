//! The files `standard_ops` writes: owner-only whatever the umask, and
//! never outside the log directory.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use standard_ops::DataLog;
use telestion::data_log::valid_category;
use telestion_test::{Umask, mode, paths_below};

#[test]
fn log_files_are_owner_only_even_with_umask_0() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data/logs");
    {
        let _umask = Umask::set(0);
        let log = DataLog::new(&dir);
        log.append("telemetry", "{}\n").unwrap();
        log.append("events.v2", "{}\n").unwrap();
    }
    assert_eq!(mode(&dir), 0o700);
    for file in ["telemetry.log", "events.v2.log"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
}

fn category() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._-]{0,12}",
        ".{0,12}",
        "(\\.\\./){1,3}[a-z]{1,4}",
        "/[a-z/]{0,10}",
        "[a-z]{0,3}\0[a-z]{0,3}",
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("".to_owned()),
        Just("a/../../b".to_owned()),
        Just("ü".to_owned()),
        Just("x".repeat(129)),
    ]
}

#[test]
fn data_log_never_writes_outside_its_directory() {
    let root = tempfile::tempdir().unwrap();
    let outer = root.path().join("outer");
    let dir = outer.join("logs");
    let log = DataLog::new(&dir);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&category(), |category| {
            let result = log.append(&category, "{\"x\":1}\n");
            prop_assert_eq!(result.is_ok(), valid_category(&category), "{:?}", result);
            if result.is_ok() {
                let file = dir.join(format!("{category}.log"));
                prop_assert!(file.is_file());
                prop_assert_eq!(file.parent().unwrap(), dir.as_path());
            }
            // Nothing anywhere but plain `<category>.log` files in `dir`.
            for path in paths_below(root.path()) {
                if path == outer || path == dir {
                    continue;
                }
                prop_assert_eq!(path.parent().unwrap(), dir.as_path(), "{:?}", path);
                let name = path.file_name().unwrap().to_str().unwrap();
                let stem = name.strip_suffix(".log").unwrap();
                prop_assert!(valid_category(stem), "{:?}", path);
                prop_assert!(path.is_file());
            }
            Ok(())
        })
        .unwrap();
}

/// Lines of one category are written in the order their writes began, even
/// with many categories in flight at once.
#[tokio::test(flavor = "multi_thread")]
async fn lines_of_a_category_keep_the_order_their_writes_began() {
    let root = tempfile::tempdir().unwrap();
    let log = DataLog::new(root.path().join("logs"));
    let writes = (0..400).map(|n| {
        let log = log.clone();
        async move {
            let category = format!("order{}", n % 4);
            log.write(&category, format!("{n}\n")).await
        }
    });
    for result in futures::future::join_all(writes).await {
        result.unwrap();
    }
    for c in 0..4 {
        let text = std::fs::read_to_string(root.path().join(format!("logs/order{c}.log"))).unwrap();
        let numbers: Vec<usize> = text.lines().map(|l| l.parse().unwrap()).collect();
        let expected: Vec<usize> = (0..400).filter(|n| n % 4 == c).collect();
        assert_eq!(numbers, expected, "order{c}");
    }
}
