#!/usr/bin/env bash
# Makes sure Node.js and npm are installed (Debian packages), for the test
# that drives the bus as Telestion's web frontend does (nats.ws's
# successor, @nats-io/nats-core, over WebSocket; the test installs that
# package from npm itself). Sourced by scripts/test.sh.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "==> installing nodejs and npm (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
