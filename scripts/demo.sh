#!/usr/bin/env bash
# The telestion-rs demo, in one command, on a fresh Debian machine (root,
# Rust toolchain only):
#
#     bash scripts/demo.sh
#
# - uses the NATS server at NATS_URL when one is reachable there (it must
#   have JetStream enabled); otherwise starts its own nats-server with
#   JetStream (`-js -sd <data dir>/jetstream`) on a free loopback port
#   (never 4222), after installing it from the OS packages when it is
#   missing;
# - builds and runs, with one shared data directory, the example backend:
#       device_sim  --TCP frames-->  io_service  --telemetry.raw-->
#       telemetry_parser  --telemetry.parsed-->  db_writer  --> SQLite
#       db_query (telemetry.query.*), telecommand (telecommand.send),
#       web (the page: http://127.0.0.1:8080/, or a free port when taken)
#   with Telestion's database services beside it: the parser also
#   publishes each frame in the upstream format on data.telemetry.device,
#       database (DATA_SUBJECT=data.>)  --> $DATA_DIR/database/telemetry.sqlite3
#       database_query (query.database), which the page's history chart asks
#   and, beside it, standard_ops and the samples publisher,
#   latest_value_cache and requester:
#       publisher  --data.demo.temperature-->  latest_value_cache
#       requester  --latest.demo.temperature-->  latest_value_cache (reply)
#       requester  --__telestion__/log/temperature-->  standard_ops
#       standard_ops  -->  $DATA_DIR/logs/temperature.log
# - shows the frames stored in the database (telemetry.query.count, asked
#   through the web service) and the log file growing, prints the health
#   table of every instance and the page's address, and stops everything
#   cleanly after DEMO_SECONDS (default 20) or on Ctrl-C.
#
# Settings (environment): DEMO_SECONDS, DEMO_DATA_DIR (default: a new temp
# dir, kept afterwards), NATS_URL, WEB_ADDR (the page's address),
# DEMO_BIN_DIR (use prebuilt binaries from this directory instead of
# building them), DEMO_POSTGRES=1 (database and database_query use a
# private PostgreSQL cluster in $DATA_DIR/postgres on a free loopback port
# instead of SQLite; PostgreSQL is installed from the OS packages when
# missing).
set -euo pipefail
# Job control: each background service gets its own process group, so a
# Ctrl-C in the terminal reaches only this script, which then stops the
# services in order (services first, NATS last).
set -m
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/usr/local/sbin"

SECONDS_TO_RUN="${DEMO_SECONDS:-20}"
SAMPLES=(standard_ops latest_value_cache publisher requester)
BACKEND=(device_sim io_service telemetry_parser db_writer db_query telecommand web database database_query)
PIDS=()
NATS_PID=""
PG_PID=""

say() { printf 'demo: %s\n' "$*"; }

# Whether something accepts TCP connections on host $1, port $2.
reachable() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

stop_all() {
    trap - INT TERM EXIT
    say "stopping"
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$NATS_PID" ]; then
        kill -TERM "$NATS_PID" 2>/dev/null || true
        wait "$NATS_PID" 2>/dev/null || true
    fi
    if [ -n "$PG_PID" ]; then
        kill -INT "$PG_PID" 2>/dev/null || true
        wait "$PG_PID" 2>/dev/null || true
    fi
    say "stopped; data and service output are in $DATA_DIR"
}

# ---- NATS -----------------------------------------------------------------
if [ -n "${NATS_URL:-}" ]; then
    hostport="${NATS_URL#*://}"
    hostport="${hostport##*@}"
    hostport="${hostport%%,*}"
    host="${hostport%:*}"
    port="${hostport##*:}"
    [ "$host" = "$hostport" ] && port=4222
    if ! reachable "$host" "$port"; then
        say "nothing answers at NATS_URL=$NATS_URL; starting a local NATS server instead"
        unset NATS_URL
    fi
fi
if [ -z "${NATS_URL:-}" ]; then
    . scripts/ensure-nats-server.sh
fi

# ---- build ----------------------------------------------------------------
if [ -n "${DEMO_BIN_DIR:-}" ]; then
    BIN_DIR="$DEMO_BIN_DIR"
else
    say "building the services"
    cargo build --quiet -p standard_ops -p health -p device_sim -p io_service \
        -p telemetry_parser -p db_writer -p db_query -p telecommand -p web \
        -p database -p database_query
    cargo build --quiet -p telestion-examples --example publisher \
        --example latest_value_cache --example requester
    TARGET="${CARGO_TARGET_DIR:-target}/debug"
    BIN_DIR="$(mktemp -d /tmp/telestion-demo-bin.XXXXXX)"
    for name in standard_ops health "${BACKEND[@]}"; do ln -s "$(cd "$TARGET" && pwd)/$name" "$BIN_DIR/$name"; done
    for name in publisher latest_value_cache requester; do
        ln -s "$(cd "$TARGET/examples" && pwd)/$name" "$BIN_DIR/$name"
    done
fi

DATA_DIR="${DEMO_DATA_DIR:-$(mktemp -d /tmp/telestion-demo.XXXXXX)}"
mkdir -p "$DATA_DIR/output"
DATA_DIR="$(cd "$DATA_DIR" && pwd)"
trap 'stop_all; exit 0' INT TERM
trap 'stop_all' EXIT

if [ -z "${NATS_URL:-}" ]; then
    # A random port below Linux's ephemeral range (32768+), so it is not in
    # use as some connection's local port; if it is taken anyway, the server
    # exits and the next attempt takes another one.
    started=""
    for _attempt in $(seq 10); do
        port=$((20000 + RANDOM % 12000))
        reachable 127.0.0.1 "$port" && continue
        nats-server -a 127.0.0.1 -p "$port" -js -sd "$DATA_DIR/jetstream" \
            >"$DATA_DIR/output/nats-server.log" 2>&1 &
        NATS_PID=$!
        for _ in $(seq 100); do
            reachable 127.0.0.1 "$port" && { started=1; break; }
            kill -0 "$NATS_PID" 2>/dev/null || break
            sleep 0.1
        done
        [ -n "$started" ] && break
        kill -TERM "$NATS_PID" 2>/dev/null || true
        wait "$NATS_PID" 2>/dev/null || true
        NATS_PID=""
    done
    [ -n "$started" ] || {
        say "nats-server did not start:"
        cat "$DATA_DIR/output/nats-server.log" >&2
        exit 1
    }
    export NATS_URL="nats://127.0.0.1:$port"
    say "started nats-server on port $port"
    say "JetStream stores in $DATA_DIR/jetstream"
else
    say "using the NATS server at $NATS_URL"
fi
export DATA_DIR
unset SERVICE_NAME SERVICE_ID CONFIG_FILE DATABASE_URL

# ---- PostgreSQL (DEMO_POSTGRES=1) -----------------------------------------
if [ "${DEMO_POSTGRES:-0}" = 1 ]; then
    . scripts/ensure-postgresql.sh
    # PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
    AS=()
    if [ "$(id -u)" = 0 ]; then
        AS=(setpriv --reuid=postgres --regid=postgres --clear-groups)
        mkdir -p "$DATA_DIR/postgres"
        chown postgres:postgres "$DATA_DIR/postgres"
        chmod o+x "$DATA_DIR"
    fi
    "${AS[@]}" "$PG_BIN_DIR/initdb" -D "$DATA_DIR/postgres/data" -U postgres --auth=trust \
        -E UTF8 --locale=C >"$DATA_DIR/output/initdb.log" 2>&1
    for _attempt in $(seq 10); do
        pg_port=$((20000 + RANDOM % 12000))
        reachable 127.0.0.1 "$pg_port" && continue
        "${AS[@]}" "$PG_BIN_DIR/postgres" -D "$DATA_DIR/postgres/data" -p "$pg_port" \
            -c listen_addresses=127.0.0.1 -c unix_socket_directories= \
            >"$DATA_DIR/output/postgres.log" 2>&1 &
        PG_PID=$!
        for _ in $(seq 100); do
            grep -qs "ready to accept connections" "$DATA_DIR/output/postgres.log" && break 2
            kill -0 "$PG_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -INT "$PG_PID" 2>/dev/null || true
        wait "$PG_PID" 2>/dev/null || true
        PG_PID=""
    done
    [ -n "$PG_PID" ] || { say "PostgreSQL did not start:"; cat "$DATA_DIR/output/postgres.log"; exit 1; }
    export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
    say "started PostgreSQL on port $pg_port (cluster in $DATA_DIR/postgres)"
fi

# ---- services -------------------------------------------------------------
start() {
    local name="$1"
    shift
    env SERVICE_NAME="$name" "$@" "$BIN_DIR/$name" >"$DATA_DIR/output/$name.log" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 100); do
        grep -qs ' ready' "$DATA_DIR/output/$name.log" && return 0
        kill -0 "${PIDS[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    say "$name did not start; its output:"
    cat "$DATA_DIR/output/$name.log"
    exit 1
}
start standard_ops
start latest_value_cache DATA_SUBJECT='data.demo.>' REQUEST_SUBJECT='latest.demo.>'
start publisher DATA_SUBJECT=data.demo.temperature FREQUENCY=500
start requester REQUEST_SUBJECT=latest.demo.temperature \
    OUTPUT_SUBJECT=__telestion__/log/temperature FREQUENCY=1000

# The example backend. The simulator is not a NATS service: it prints its
# TCP address, which the IO service connects to.
"$BIN_DIR/device_sim" >"$DATA_DIR/output/device_sim.log" 2>&1 &
PIDS+=("$!")
DEVICE_ADDR=""
for _ in $(seq 100); do
    DEVICE_ADDR="$(sed -n 's/^listening on //p' "$DATA_DIR/output/device_sim.log")"
    [ -n "$DEVICE_ADDR" ] && break
    sleep 0.1
done
[ -n "$DEVICE_ADDR" ] || { say "device_sim did not start:"; cat "$DATA_DIR/output/device_sim.log"; exit 1; }
if [ -z "${WEB_ADDR:-}" ]; then
    WEB_ADDR=127.0.0.1:8080
    if reachable 127.0.0.1 8080; then
        for _attempt in $(seq 10); do
            WEB_ADDR="127.0.0.1:$((20000 + RANDOM % 12000))"
            reachable "${WEB_ADDR%:*}" "${WEB_ADDR##*:}" || break
        done
    fi
fi
start io_service DEVICE_ADDR="$DEVICE_ADDR"
start telemetry_parser
start db_writer
start db_query
start telecommand
start database DATA_SUBJECT='data.>'
start database_query QUERY_SUBJECT=query.database
start web WEB_ADDR="$WEB_ADDR"
say "running ${SAMPLES[*]} ${BACKEND[*]} (data dir $DATA_DIR) for $SECONDS_TO_RUN s; Ctrl-C stops"
say "web page: http://$WEB_ADDR/"
say "backend: device_sim ($DEVICE_ADDR) -> io_service -> telemetry.raw -> telemetry_parser"
say "  -> telemetry.parsed -> db_writer -> $DATA_DIR/db_writer/telemetry.sqlite3"
say "  telemetry_parser -> data.telemetry.device -> database -> ${DATABASE_URL:-$DATA_DIR/database/telemetry.sqlite3}"
say "  database_query answers query.database (the page's history chart)"
say "samples: publisher -> data.demo.temperature -> latest_value_cache (and database);"
say "  requester asks latest.demo.temperature every second and forwards the reply"
say "  to __telestion__/log/temperature -> standard_ops -> logs/temperature.log"

# POST $2 to path $1 of the web service with bash's /dev/tcp (no curl
# needed); prints the response body.
post() {
    local body="$2" response
    exec 3<>"/dev/tcp/${WEB_ADDR%:*}/${WEB_ADDR##*:}" || return 1
    printf 'POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
        "$1" "$WEB_ADDR" "${#body}" "$body" >&3
    response="$(timeout 5 cat <&3)" || true
    exec 3<&-
    printf '%s\n' "${response#*$'\r\n\r\n'}"
}

# "frames stored: N" from telemetry.query.count.
frames_stored() {
    local reply rows
    reply="$(post /api/query/count '{}' 2>/dev/null)" || reply=""
    rows="$(printf '%s' "$reply" | sed -n 's/^{"rows":\([0-9]*\).*/\1/p')"
    if [ -n "$rows" ]; then
        say "frames stored: $rows"
    else
        say "frames stored: unknown ($reply)"
    fi
}

# The newest point of the upstream-format database, through database_query.
newest_point() {
    local reply time value
    reply="$(post /api/history '{"measurement":"telemetry.device","order":"desc","limit":1,"fields":["temperature_c"]}' 2>/dev/null)" || reply=""
    time="$(printf '%s' "$reply" | sed -n 's/.*"_time":"\([^"]*\)".*/\1/p')"
    value="$(printf '%s' "$reply" | sed -n 's/.*"_value":\([-0-9.e]*\).*/\1/p')"
    if [ -n "$time" ]; then
        say "database_query: newest telemetry.device temperature_c $value at $time"
    else
        say "database_query: no point yet ($reply)"
    fi
}

# ---- watch ----------------------------------------------------------------
LOG="$DATA_DIR/logs/temperature.log"
end=$((SECONDS + SECONDS_TO_RUN))
while [ "$SECONDS" -lt "$end" ]; do
    sleep 2 &
    wait $! || true
    frames_stored
    newest_point
    if [ -f "$LOG" ]; then
        say "$LOG: $(wc -l <"$LOG") lines; newest: $(tail -n 1 "$LOG")"
    else
        say "$LOG: not yet written"
    fi
done

say "health of every instance on the bus:"
SERVICE_NAME=health "$BIN_DIR/health" 2>>"$DATA_DIR/output/health.log" || true
frames_stored
say "web page: http://$WEB_ADDR/ (until the demo stops)"
stop_all
exit 0
