//! End-to-end tests of the Standard Operations service, the sample services,
//! the health tool and the demo script, against real nats-server processes.
#[path = "../support/mod.rs"]
mod support;

mod demo;
mod deploy;
mod samples;
mod standard_ops;

use std::path::Path;
use std::process::Command;

use support::{NatsServer, example_cmd};

pub use support::{WAIT, request, spawn_ready};

/// A command for example `name` configured for `server`, with
/// `SERVICE_NAME=service_name` and `DATA_DIR=data_dir`.
pub fn service_cmd(
    name: &str,
    server: &NatsServer,
    service_name: &str,
    data_dir: &Path,
) -> Command {
    let mut cmd = example_cmd(name);
    cmd.env("NATS_URL", server.url())
        .env("SERVICE_NAME", service_name)
        .env("DATA_DIR", data_dir);
    cmd
}

/// Runs `cmd` to completion; asserts that it failed and that stderr names
/// `key`. Returns stderr.
pub fn assert_fails_naming(cmd: Command, key: &str) -> String {
    let output = support::run_with_timeout(cmd, WAIT);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "expected a failed start naming {key}; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(key),
        "the error does not name {key}; stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains(" ready"),
        "the service got ready despite bad config; stderr:\n{stderr}"
    );
    stderr
}

/// Every file (not directory) below `dir`, recursively.
pub fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
