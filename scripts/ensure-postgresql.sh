# Sourced by test.sh and demo.sh: makes sure PostgreSQL's server binaries
# (initdb, postgres) are installed, from Debian's `postgresql` package when
# they are missing, and exports PG_BIN_DIR (the newest
# /usr/lib/postgresql/<version>/bin). Nothing is started here: the tests
# and the demo start private clusters on free loopback ports themselves.
pg_bin_dir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n | tail -n 1
}
if [ -z "${PG_BIN_DIR:-}" ] || [ ! -x "$PG_BIN_DIR/postgres" ]; then
    if [ -z "$(pg_bin_dir)" ]; then
        echo "installing postgresql (Debian package)" >&2
        SUDO=""
        if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    PG_BIN_DIR="$(pg_bin_dir)"
    export PG_BIN_DIR
fi
