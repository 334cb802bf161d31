//! Finding binaries built by this workspace's cargo run.
//!
//! A test of a binary of its own package should use cargo's
//! `env!("CARGO_BIN_EXE_<name>")`. A test that needs a binary or example of
//! another package of the workspace gets it from `target/<profile>/`, after
//! `cargo build` (same profile) made sure it is current, so a test never
//! runs a stale binary: in debug once per test process for the whole
//! workspace (the targets `cargo test --workspace` builds, so the features
//! are the same and nothing is built twice), in release once per binary.
//! A program run with `cargo run` (a benchmark driver, for example) finds
//! its sibling binaries the same way.

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

/// Makes sure the binary or example is current: in the debug profile one
/// `cargo build` of every binary, test and example of the workspace per
/// test process, in release one of just that target.
///
/// A debug build of one package (`cargo build -p io_service`) resolves
/// features for that package alone, without dev-dependencies, so it would
/// build a second copy of the dependency graph beside the one
/// `cargo test --workspace` built (serde_json, digest, regex-automata, ...
/// with other features, and everything above them: several minutes of
/// compiling inside the tests). Building the same targets as
/// `cargo test --workspace` resolves the same features: right after that
/// command it only checks fingerprints. A release build (a benchmark
/// driver's `cargo run --release`) stays per target: building every test
/// optimised would cost more than it saves.
fn build(package: &str, kind: &str, name: &str) {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let release = target_dir().file_name().is_some_and(|n| n == "release");
    let key = if release {
        format!("{package} {kind} {name}")
    } else {
        "workspace".to_owned()
    };
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.contains(&key) {
        return;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet"]);
    if release {
        cmd.args(["--release", "-p", package, kind, name]);
    } else {
        // Not `--lib`: a library built as a target of its own is built
        // with the dev profile, while `cargo test` builds it as a dependency
        // of the tests, and a proc-macro dependency gets the build-override
        // profile (no debug info): telestion-macros, and everything above
        // it, would be built twice.
        cmd.args(["--workspace", "--bins", "--tests", "--examples"]);
    }
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
    // In a process group of the test's own: a test process that is killed
    // takes the build (cargo and its compilers) with it.
    let (_, spawned) = crate::process_group::spawn(cmd);
    let mut cargo = spawned.expect("cannot run cargo");
    let status = cargo.wait().expect("cannot wait for cargo");
    crate::process_group::kill(&mut cargo);
    assert!(
        status.success(),
        "building {kind} {name} of {package} failed ({})",
        if release {
            "cargo build --release of that target"
        } else {
            "cargo build of the workspace's binaries, tests and examples"
        }
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
