//! Finding binaries built by this workspace's cargo run.
//!
//! A test of a binary of its own package should use cargo's
//! `env!("CARGO_BIN_EXE_<name>")`. A test that needs a binary or example of
//! another package of the workspace gets it from `target/<profile>/`, after
//! `cargo build` (same profile) made sure it is current: once per binary and
//! test process, about 0.3 s when nothing changed, so a test never runs a
//! stale binary. A program run with `cargo run` (a benchmark driver, for
//! example) finds its sibling binaries the same way.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// `target/<profile>` of the running executable: a test
/// (`target/<profile>/deps/<test>`), an example
/// (`target/<profile>/examples/<name>`) or a binary such as a benchmark
/// driver (`target/<profile>/<name>`).
///
/// ```no_run
/// let dir = telestion_test::target_dir();
/// assert!(dir.join("deps").is_dir(), "{} is not a profile directory", dir.display());
/// ```
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("no current executable");
    let parent = exe.parent().expect("the executable has no directory");
    if parent
        .file_name()
        .is_some_and(|name| name == "deps" || name == "examples")
    {
        parent
            .parent()
            .expect("deps/ or examples/ outside a profile directory")
            .to_owned()
    } else {
        parent.to_owned()
    }
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
    // Cargo sets these for the test process (the package's name, version,
    // manifest, ...); a nested build that inherits them makes build
    // scripts that track them (ring's tracks CARGO_PKG_VERSION_MAJOR)
    // rebuild every dependent crate, and the next plain build flip it back.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|prefix| key.starts_with(prefix))
            || key == "CARGO_PRIMARY_PACKAGE"
            || key == "CARGO_TARGET_TMPDIR"
        {
            cmd.env_remove(key);
        }
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
