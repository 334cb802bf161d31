# Sourced by test.sh: makes sure `chromium` is on PATH for the example
# backend's page test (apps/backend_tests/tests/browser.rs), installing it
# from Debian's packages when it is missing. CHROMIUM_BIN, when set, names
# another Chromium or Chrome binary and skips the install.
if [ -z "${CHROMIUM_BIN:-}" ] && ! command -v chromium >/dev/null 2>&1 \
    && ! command -v chromium-browser >/dev/null 2>&1; then
    echo "installing chromium (Debian package)" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
