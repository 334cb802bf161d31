//! Data directory: what the runtime creates is owner-only whatever the
//! umask; log categories are checked before anything is published.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use telestion::{Options, Service};

use crate::common::config;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
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
        service
    };
    let dir = service.data_dir().unwrap();
    for path in [data_root.clone(), dir.clone()] {
        assert_eq!(mode(&path), 0o700, "{path:?}");
    }
    // Directories above DATA_DIR that the runtime created are private too.
    assert_eq!(mode(&root.path().join("a")), 0o700);
}

#[tokio::test]
async fn invalid_log_categories_are_refused_before_publishing() {
    let root = tempfile::tempdir().unwrap();
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
}
