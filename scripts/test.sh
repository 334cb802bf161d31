#!/usr/bin/env bash
# Sets up and runs every check of telestion-rs on a fresh Debian machine
# (root, Rust toolchain only): installs nats-server from the OS packages when
# it is missing, then runs rustfmt, clippy, the whole test suite (unit,
# integration, end-to-end, trybuild, doc tests) and the benchmark's smoke mode.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-nats-server.sh
echo "==> $(nats-server --version)"

echo "==> cargo fmt --check"
cargo fmt --all --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> cargo doc (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

echo "==> cargo test"
# Unit, integration, end-to-end, trybuild and doc tests; examples are built
# (not run as tests) first, the end-to-end tests start them.
cargo test --workspace --quiet

if [ -f examples/bench.rs ]; then
    echo "==> benchmark smoke mode"
    cargo run --quiet --example bench -- --smoke
fi
echo "==> all checks passed"
