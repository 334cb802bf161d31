//! Compile tests of the macros: every misuse in `tests/ui/fail/` is a
//! compile error whose message is pinned in the `.stderr` next to it (for
//! the toolchain in `rust-toolchain.toml`; regenerate with
//! `TRYBUILD=overwrite cargo test -p telestion --test ui` and review the diff), and
//! everything in `tests/ui/pass/` compiles.
//!
//! trybuild also runs each pass case: against a real nats-server (JetStream
//! on, for the durable cases), so the
//! runtime accepts what compiled (every handler subscribes, its state and
//! typed config are provided); each `main` then calls `service.shutdown()`.

use telestion_test as support;

#[test]
fn ui() {
    let server = support::NatsServer::start_jetstream();
    let data = tempfile::tempdir().unwrap();
    // SAFETY: set before trybuild starts any thread or child process; this
    // is the only test in this binary.
    unsafe {
        std::env::set_var("NATS_URL", server.url());
        std::env::set_var("SERVICE_NAME", "ui-pass");
        std::env::set_var("DATA_DIR", data.path());
        std::env::set_var("INPUT_SUBJECT", "ui.input");
        std::env::set_var("OTHER_SUBJECT", "ui.other");
        std::env::set_var("KEY", "ui.key");
        std::env::set_var("GREETING", "hello");
        std::env::set_var("RUST_LOG", "warn");
        // trybuild's project does not inherit the workspace's profiles: its
        // dependencies would carry full debug info (a 3.7 GB target and
        // seconds of linking per pass case). None is needed here.
        std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "false");
    }
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
