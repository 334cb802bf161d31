//! Identity and data: instance ids, `SERVICE_ID`, the data
//! directory.

use telestion::{Config, Options, Service};

async fn start(pairs: &[(&str, &str)]) -> Service {
    let config = Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Service::start(Options::new().nats(false).config(config))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_get_different_ids() {
    let pairs = [
        ("NATS_URL", "nats://127.0.0.1:1"),
        ("SERVICE_NAME", "twins"),
        ("DATA_DIR", "/tmp"),
    ];
    let a = start(&pairs).await;
    let b = start(&pairs).await;
    assert_eq!(a.name(), "twins");
    assert_eq!(b.name(), "twins");
    assert!(!a.id().is_empty());
    assert_ne!(a.id(), b.id());
    // Not derived from the PID (PIDs repeat across containers).
    assert!(
        !a.id().contains(&std::process::id().to_string()),
        "{}",
        a.id()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn service_id_overrides_the_id() {
    let service = start(&[
        ("NATS_URL", "nats://127.0.0.1:1"),
        ("SERVICE_NAME", "named"),
        ("DATA_DIR", "/tmp"),
        ("SERVICE_ID", "instance-7"),
    ])
    .await;
    assert_eq!(service.id(), "instance-7");
}

#[tokio::test(flavor = "multi_thread")]
async fn data_dir_is_created_on_first_use() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let service = start(&[
        ("NATS_URL", "nats://127.0.0.1:1"),
        ("SERVICE_NAME", "keeper"),
        ("DATA_DIR", data.to_str().unwrap()),
    ])
    .await;
    assert!(!data.exists(), "created before first use");
    let dir = service.data_dir().unwrap();
    assert_eq!(dir, data.join("keeper"));
    assert!(dir.is_dir());
    std::fs::write(dir.join("file"), "x").unwrap();
    // Second use: same directory, contents kept.
    assert_eq!(service.data_dir().unwrap(), dir);
    assert!(dir.join("file").is_file());
    assert_eq!(service.shared_data_dir(), data.as_path());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "data dir readable by others: {mode:o}");
    }
}
