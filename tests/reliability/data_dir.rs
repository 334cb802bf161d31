//! Data directory: what the runtime creates is owner-only whatever the
//! umask, and the data log never writes outside its directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use telestion::datalog::{DataLog, valid_category};
use telestion::{Options, Service};

use crate::common::config;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every path below `root` (files and directories).
fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// Sets the process umask while alive.
struct Umask(libc::mode_t);
impl Umask {
    fn set(mask: libc::mode_t) -> Umask {
        Umask(unsafe { libc::umask(mask) })
    }
}
impl Drop for Umask {
    fn drop(&mut self) {
        unsafe { libc::umask(self.0) };
    }
}

#[tokio::test]
async fn data_files_are_owner_only_even_with_umask_0() {
    let root = tempfile::tempdir().unwrap();
    let data_root = root.path().join("a/b/data");
    let service = {
        // A permissive umask: without explicit modes everything would be
        // world-readable (0777/0666).
        let _umask = Umask::set(0);
        let service = Service::start(Options::new().nats(false).config(config(
            "unused:1",
            "svc",
            &data_root,
            &[],
        )))
        .await
        .unwrap();
        let dir = service.data_dir().unwrap();
        assert_eq!(dir, data_root.join("svc"));
        let log = DataLog::new(dir.join("logs"));
        log.append("telemetry", "{}\n").unwrap();
        log.append("events.v2", "{}\n").unwrap();
        service
    };
    let dir = service.data_dir().unwrap();
    for path in [data_root.clone(), dir.clone(), dir.join("logs")] {
        assert_eq!(mode(&path), 0o700, "{path:?}");
    }
    for file in ["telemetry.log", "events.v2.log"] {
        let path = dir.join("logs").join(file);
        assert_eq!(mode(&path), 0o600, "{path:?}");
    }
    // Directories above DATA_DIR that the runtime created are private too.
    assert_eq!(mode(&root.path().join("a")), 0o700);
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
            for path in walk(root.path()) {
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
    // Invalid categories are also refused before publishing.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let service = Service::start(Options::new().nats(false).config(config(
            "unused:1",
            "svc",
            root.path(),
            &[],
        )))
        .await
        .unwrap();
        for bad in ["../x", "/etc/passwd", "a/b", "", "..", "a\0b"] {
            let error = service.log_data(bad, "x").await.unwrap_err().to_string();
            assert!(error.contains("invalid log category"), "{error}");
        }
    });
}
