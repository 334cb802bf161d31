# Run (bash scripts/ensure-nats-py.sh) or sourced: makes sure nats-py, the
# NATS client for Python with its micro (services) support, is installed in
# a virtual environment of its own, and prints that environment's python
# (and exports NATS_PY_PYTHON when sourced). The discovery tests use it as
# a client that is not ours.
#
# NATS_PY_VENV chooses the virtual environment (default
# ~/.cache/telestion/nats-py); NATS_PY_VERSION pins a version of nats-py
# (default: the newest).
_npy_venv="${NATS_PY_VENV:-${HOME:-/root}/.cache/telestion/nats-py}"
_npy_python="$_npy_venv/bin/python"
if [ ! -x "$_npy_python" ] || ! "$_npy_python" -c "import nats.micro" >/dev/null 2>&1; then
    echo "installing nats-py (PyPI) into $_npy_venv" >&2
    _npy_sys="$(command -v python3 || true)"
    if [ -z "$_npy_sys" ] || ! "$_npy_sys" -m venv "$_npy_venv" >/dev/null 2>&1; then
        echo "installing python3 and python3-venv (Debian packages)" >&2
        _npy_sudo=""
        if [ "$(id -u)" != 0 ]; then _npy_sudo="sudo"; fi
        $_npy_sudo apt-get update -qq
        $_npy_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
        _npy_sys="$(command -v python3 || true)"
        rm -rf "$_npy_venv"
        if [ -z "$_npy_sys" ] || ! "$_npy_sys" -m venv "$_npy_venv" >/dev/null 2>&1; then
            echo "cannot create a Python virtual environment at $_npy_venv" >&2
            return 1 2>/dev/null || exit 1
        fi
    fi
    _npy_spec="nats-py"
    if [ -n "${NATS_PY_VERSION:-}" ]; then
        _npy_spec="nats-py==${NATS_PY_VERSION}"
    fi
    if ! "$_npy_venv/bin/pip" install -q --disable-pip-version-check "$_npy_spec" >&2; then
        echo "cannot install $_npy_spec with pip" >&2
        return 1 2>/dev/null || exit 1
    fi
    if ! "$_npy_python" -c "import nats.micro" >/dev/null 2>&1; then
        echo "nats-py is installed but has no nats.micro (micro support came in 2.7)" >&2
        return 1 2>/dev/null || exit 1
    fi
fi
export NATS_PY_PYTHON="$_npy_python"
echo "$_npy_python"
unset _npy_venv _npy_python _npy_sys _npy_spec _npy_sudo
