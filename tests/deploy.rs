//! The container files, checked without a Docker engine (none on the test
//! machine): the Dockerfile is multi-stage, non-root, builds a real example
//! with the committed lock file and runs it as the entry point with an empty
//! `CMD`, and offers the same runtime stage around a prebuilt binary (the
//! images themselves are built and run in tests/containers.rs); every
//! service in `compose.yaml` builds an existing example and is
//! configured as the spec asks; `.dockerignore` keeps every build input.

use std::path::Path;

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(name))
        .unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
}

fn example_exists(name: &str) -> bool {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .join("examples")
        .join(format!("{name}.rs"))
        .is_file()
}

fn app_exists(name: &str) -> bool {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .join("apps")
        .join(name)
        .join("Cargo.toml")
        .is_file()
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_the_service_as_entrypoint() {
    let dockerfile = read("Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let froms = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "not multi-stage: {froms} FROM lines");
    let default = lines
        .iter()
        .find_map(|l| l.strip_prefix("ARG APP="))
        .expect("ARG APP=<default> missing");
    assert!(app_exists(default), "default app {default} missing");
    assert!(
        lines.contains(&"ARG EXAMPLE="),
        "ARG EXAMPLE= (samples) missing"
    );
    assert!(
        dockerfile.contains("-p \"$APP\"")
            && dockerfile.contains("--example \"$EXAMPLE\"")
            && dockerfile.contains("--locked"),
        "must build the chosen app or example with the lock file"
    );
    // A binary built outside the image gets the same runtime stage (what
    // tests/containers.rs builds and runs).
    for stage in [
        "AS runtime-base",
        "FROM runtime-base AS prebuilt",
        "FROM runtime-base AS runtime",
    ] {
        assert!(
            lines.iter().any(|l| l.ends_with(stage)),
            "no stage line ending in {stage:?}"
        );
    }
    assert!(lines.contains(&"ARG BINARY=telestion-service"));
    assert!(lines.contains(&"ARG BASE=debian:bookworm-slim"));
    // The last stage switches to a non-root user before the entry point.
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let user = lines[last_from..]
        .iter()
        .position(|l| l.starts_with("USER "))
        .expect("no USER in the final stage");
    let user_name = lines[last_from + user].trim_start_matches("USER ").trim();
    assert!(
        user_name != "root" && user_name != "0",
        "runs as {user_name}"
    );
    let entry = lines[last_from..]
        .iter()
        .position(|l| l.starts_with("ENTRYPOINT ["))
        .expect("no exec-form ENTRYPOINT in the final stage");
    assert!(user < entry);
    assert_eq!(lines.last(), Some(&"CMD []"), "CMD must be empty and last");
}

#[test]
fn compose_services_build_existing_examples_with_full_config() {
    let compose = read("compose.yaml");
    assert!(compose.contains("\n  nats:\n"), "no nats service");
    let examples: Vec<&str> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("EXAMPLE: "))
        .collect();
    let apps: Vec<&str> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("APP: "))
        .collect();
    assert!(
        apps.contains(&"standard_ops"),
        "standard_ops not in compose.yaml"
    );
    for wanted in ["publisher", "latest_value_cache", "requester"] {
        assert!(examples.contains(&wanted), "{wanted} not in compose.yaml");
    }
    for example in &examples {
        assert!(
            example_exists(example),
            "compose builds missing example {example}"
        );
    }
    for app in &apps {
        assert!(app_exists(app), "compose builds missing app {app}");
    }
    assert!(compose.contains("NATS_URL: nats://nats:4222"));
    assert!(compose.contains("DATA_DIR: /data"));
    let names = compose
        .lines()
        .filter(|l| l.trim().starts_with("SERVICE_NAME: "))
        .count();
    assert!(
        names >= 4,
        "every service needs a SERVICE_NAME ({names} found)"
    );
}

#[test]
fn dockerignore_keeps_every_build_input() {
    let ignore = read(".dockerignore");
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    for input in [
        "Cargo.toml",
        "Cargo.lock",
        "telestion/",
        "telestion-macros/",
        "telestion-test/",
        "apps/",
        "examples/",
        "tests/",
        "bench/",
    ] {
        assert!(
            !ignored
                .iter()
                .any(|p| p.trim_end_matches('/') == input.trim_end_matches('/')),
            "{input} is excluded from the build context"
        );
    }
    // A stale Cargo.lock is caught by the test command itself: every cargo
    // step of scripts/test.sh runs with `--locked`, as the image build does.
}
