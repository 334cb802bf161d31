//! Node.js packages for tests that drive the bus as a JavaScript client
//! (Telestion's web frontend): installed from npm once per version set
//! into `~/.cache/telestion/node/<name>`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The directory holding `node_modules` with `packages` (`name@version`)
/// installed, under the name `name`; installs them when missing.
///
/// # Panics
///
/// When `node` or `npm` is missing (with the install hint) or the install
/// fails.
pub fn node_packages(name: &str, packages: &[&str]) -> PathBuf {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    for tool in ["node", "npm"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "`{tool}` is missing: run `. scripts/ensure-node.sh` (apt-get install -y nodejs npm)"
        );
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    let key: String = packages
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = home
        .join(".cache")
        .join("telestion")
        .join("node")
        .join(format!("{name}-{key}"));
    let marker = dir.join(".installed");
    if marker.exists() {
        return dir;
    }
    std::fs::create_dir_all(&dir).expect("cannot create the node package directory");
    let mut child = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&dir)
        .args(packages)
        .spawn()
        .expect("cannot run npm");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("cannot wait for npm") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("npm install {packages:?} did not finish within 10 minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "npm install {packages:?} failed ({status})"
    );
    std::fs::write(&marker, b"").expect("cannot mark the install");
    dir
}
