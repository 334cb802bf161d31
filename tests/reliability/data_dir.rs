//! Data directory: what the runtime creates is owner-only whatever the
//! umask; log categories are checked before anything is published.

use telestion::{Options, Service};

use crate::support::{Umask, mode, service_config};

#[tokio::test]
async fn data_files_are_owner_only_even_with_umask_0() {
    let root = tempfile::tempdir().unwrap();
    let data_root = root.path().join("a/b/data");
    let service = {
        // A permissive umask: without explicit modes everything would be
        // world-readable (0777/0666).
        let _umask = Umask::set(0);
        let service = Service::start(Options::new().nats(false).config(service_config(
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
    let service = Service::start(Options::new().nats(false).config(service_config(
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
