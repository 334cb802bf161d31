//! NATS users for tests that run services under the permissions they
//! generate (`<service> --nats-permissions`).

use std::path::Path;
use std::process::Command;

/// What `binary --nats-permissions` prints with `SERVICE_NAME=name` and
/// `env` (a nats-server permissions object, JSON).
///
/// # Panics
///
/// When the binary fails or prints no JSON object.
pub fn service_permissions(binary: &Path, name: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = crate::clean_command(binary);
    cmd.env("SERVICE_NAME", name).arg("--nats-permissions");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = run(cmd);
    let text = String::from_utf8(output.stdout).expect("the permissions are not UTF-8");
    assert!(
        output.status.success() && text.trim_start().starts_with('{'),
        "{} --nats-permissions failed: {text}{}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

fn run(cmd: Command) -> std::process::Output {
    crate::run_with_timeout(cmd, crate::WAIT)
}

/// A nats-server `authorization` block with `users`: (user, password,
/// permissions object or `None` for everything allowed).
pub fn authorization(users: &[(&str, &str, Option<&str>)]) -> String {
    let mut text = String::from("authorization { users: [\n");
    for (user, password, permissions) in users {
        text.push_str(&format!(
            "  {{user: {}, password: {}",
            serde_json::Value::from(*user),
            serde_json::Value::from(*password)
        ));
        if let Some(permissions) = permissions {
            text.push_str(&format!(", permissions: {permissions}"));
        }
        text.push_str("}\n");
    }
    text.push_str("] }\n");
    text
}
