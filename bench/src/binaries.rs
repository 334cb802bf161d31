//! The programs under test: the framework service, its raw async-nats twin
//! and `standard_ops`, built in this binary's profile by the test kit (or
//! taken as they are with `--no-build`).

use std::path::{Path, PathBuf};

use telestion_test::{target_dir, workspace_binary};

/// Paths of the programs under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `bench_service`: the service written with the framework.
    pub service: PathBuf,
    /// `bench_raw`: the same work hand-written on async-nats.
    pub raw: PathBuf,
    /// `standard_ops`, when the workspace has it.
    pub standard_ops: Option<PathBuf>,
    /// Whether programs are built before they are used.
    pub build: bool,
}

impl Binaries {
    /// Builds (unless `build` is false) and finds the programs.
    ///
    /// # Panics
    ///
    /// When a build fails (the kit shows which).
    pub fn find(build: bool) -> Binaries {
        let has_standard_ops = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../apps/standard_ops/src/main.rs")
            .is_file();
        let binary = |package: &str, name: &str| {
            if build {
                workspace_binary(package, name)
            } else {
                target_dir().join(name)
            }
        };
        Binaries {
            service: binary("telestion-bench", "bench_service"),
            raw: binary("telestion-bench", "bench_raw"),
            standard_ops: has_standard_ops.then(|| binary("standard_ops", "standard_ops")),
            build,
        }
    }

    /// Another binary of the workspace (built now unless `--no-build`).
    pub fn other(&self, package: &str, name: &str) -> PathBuf {
        if self.build {
            workspace_binary(package, name)
        } else {
            target_dir().join(name)
        }
    }
}
