//! A secured deployment for tests: `nats_config`'s users for some
//! services and people, and the environment that signs each service in.

use std::path::Path;

use crate::binary;

/// Runs `nats_config` for `services` and `people` (`user:role,...`) with
/// its credentials in `dir/credentials` and its output in `dir/nats`;
/// returns the `authorization` block it wrote (`auth.conf`).
///
/// # Panics
///
/// When `nats_config` fails, or writes a password into the configuration.
pub fn generate(dir: &Path, services: &[&str], people: &str) -> String {
    let services: Vec<String> = services
        .iter()
        .map(|name| format!("{name}={}", binary(name).display()))
        .collect();
    let output = telestion_test::clean_command(binary("nats_config"))
        .env("SERVICES", services.join(","))
        .env("PEOPLE", people)
        .env("CREDENTIALS_DIR", dir.join("credentials"))
        .env("OUT_DIR", dir.join("nats"))
        .output()
        .expect("cannot run nats_config");
    assert!(
        output.status.success(),
        "nats_config failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let conf = std::fs::read_to_string(dir.join("nats").join("nats-server.conf"))
        .expect("no nats-server.conf");
    assert!(conf.contains("include ./auth.conf"), "{conf}");
    let auth = std::fs::read_to_string(dir.join("nats").join("auth.conf")).expect("no auth.conf");
    for entry in std::fs::read_dir(dir.join("credentials")).expect("no credentials") {
        let secret = std::fs::read_to_string(entry.expect("entry").path()).expect("password");
        assert!(
            !auth.contains(secret.trim()),
            "a password is in the configuration"
        );
    }
    auth
}

/// The password `nats_config` made for `user`.
pub fn password(dir: &Path, user: &str) -> String {
    std::fs::read_to_string(dir.join("credentials").join(format!("{user}.password")))
        .expect("no password file")
        .trim()
        .to_owned()
}

/// The environment that signs every service in `services` in with its
/// user (`NATS_USER`, `NATS_PASSWORD_FILE`), for [`crate::Backend::start_on`].
pub fn credentials_env(
    dir: &Path,
    services: &[&'static str],
) -> Vec<(&'static str, String, String)> {
    services
        .iter()
        .flat_map(|name| {
            [
                (*name, "NATS_USER".to_owned(), (*name).to_owned()),
                (
                    *name,
                    "NATS_PASSWORD_FILE".to_owned(),
                    dir.join("credentials")
                        .join(format!("{name}.password"))
                        .display()
                        .to_string(),
                ),
            ]
        })
        .collect()
}
