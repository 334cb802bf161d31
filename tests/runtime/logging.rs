//! Logging: stderr, human lines by default, JSON lines with
//! `LOG_FORMAT=json`, `RUST_LOG` honoured.

use crate::run_testbed;
use crate::support;

/// The testbed's stdout and stderr for a dev start without NATS with `env`.
fn logs(env: &[(&str, &str)]) -> (String, String) {
    let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_testbed"));
    cmd.env("X_DISABLE_NATS", "1")
        .arg("--dev")
        .envs(env.iter().copied());
    let output = support::run_with_timeout(cmd, std::time::Duration::from_secs(30));
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn human_lines_on_stderr_by_default() {
    let (stdout, stderr) = logs(&[]);
    let line = stderr
        .lines()
        .find(|l| l.contains("service started"))
        .unwrap_or_else(|| panic!("no start line on stderr:\n{stderr}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(!line.starts_with('{'), "{line}");
    assert!(!line.contains('\u{1b}'), "color codes in a pipe: {line:?}");
    assert!(
        !stdout.contains("service started"),
        "logs on stdout:\n{stdout}"
    );
}

#[test]
fn json_lines_with_log_format_json() {
    let (_, stderr) = logs(&[("LOG_FORMAT", "json")]);
    let mut started = false;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if value["fields"]["message"] == "service started" {
            assert_eq!(value["level"], "INFO", "{line}");
            started = true;
        }
    }
    assert!(started, "no JSON start line:\n{stderr}");
}

#[test]
fn rust_log_is_honoured() {
    let (_, stderr) = logs(&[("RUST_LOG", "error")]);
    assert!(!stderr.contains("service started"), "{stderr}");
    let (_, stderr) = logs(&[("RUST_LOG", "telestion=debug")]);
    assert!(stderr.contains("service started"), "{stderr}");
    assert!(
        stderr.contains("DEBUG") || stderr.contains("drained"),
        "{stderr}"
    );
    // The testbed's JSON stays on stdout whatever the log level.
    let mut cmd = support::clean_command(env!("CARGO_BIN_EXE_testbed"));
    cmd.env("X_DISABLE_NATS", "1")
        .env("RUST_LOG", "trace")
        .arg("--dev");
    let (result, _) = run_testbed(cmd);
    assert_eq!(result["started"], true);
}
