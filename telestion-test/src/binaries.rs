//! Finding binaries built by this workspace's cargo run.
//!
//! A test of a binary of its own package should use cargo's
//! `env!("CARGO_BIN_EXE_<name>")`. A test that needs a binary or example of
//! another package of the workspace gets it from `target/<profile>/`, after
//! `cargo build` (same profile) made sure it is current: once per binary and
//! test process, about 0.3 s when nothing changed, so a test never runs a
//! stale binary.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// `target/<profile>` of the running test executable.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("no current executable");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable is not in target/<profile>/deps")
        .to_owned()
}

fn build(package: &str, kind: &str, name: &str) {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let key = format!("{package} {kind} {name}");
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.contains(&key) {
        return;
    }
    let release = target_dir().file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, kind, name]);
    // Cargo sets these for the test process; a nested build that inherits
    // them makes build scripts that track them (ring's) rebuild every
    // dependent crate, and the next plain build flip it back.
    for key in ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME", "CARGO_CRATE_NAME"] {
        cmd.env_remove(key);
    }
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("cannot run cargo");
    assert!(
        status.success(),
        "building {kind} {name} of {package} failed"
    );
    built.push(key);
}

/// The binary `name` of workspace package `package`, built if not current.
pub fn workspace_binary(package: &str, name: &str) -> PathBuf {
    build(package, "--bin", name);
    target_dir().join(name)
}

/// The example `name` of workspace package `package`, built if not current.
pub fn workspace_example(package: &str, name: &str) -> PathBuf {
    build(package, "--example", name);
    target_dir().join("examples").join(name)
}
