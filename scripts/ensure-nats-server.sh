# Sourced by test.sh and demo.sh: makes sure `nats-server` is on PATH,
# installing it from Debian's packages when it is missing.
export PATH="$PATH:/usr/sbin:/usr/local/sbin"
if ! command -v nats-server >/dev/null 2>&1; then
    echo "installing nats-server (Debian package)" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi
