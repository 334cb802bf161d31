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
#   through the web service), the newest point database_query answers with
#   and the log file growing, prints the health
#   table of every instance and the page's address, and stops everything
#   cleanly after DEMO_SECONDS (default 20) or on Ctrl-C (see "Stopping").
#
# Settings (environment): DEMO_SECONDS, DEMO_DATA_DIR (default: a new temp
# dir, kept afterwards), NATS_URL, WEB_ADDR (the page's address),
# DEMO_BIN_DIR (use prebuilt binaries from this directory instead of
# building them), DEMO_POSTGRES=1 (database and database_query use a
# private PostgreSQL cluster in $DATA_DIR/postgres on a free loopback port
# instead of SQLite; PostgreSQL is installed from the OS packages when
# missing; it is stopped after nats-server).
#
# Stopping. Ctrl-C (SIGINT), SIGTERM or SIGHUP stop the demo at any moment
# (while it builds, starts, runs or stops) and it leaves nothing running,
# also when this script itself is killed, even with SIGKILL:
# - The demo runs in a process group of its own: this script starts it as
#   one job with job control (`run_demo`, a subshell, leads the new group),
#   and everything the demo starts (the build, nats-server, the services,
#   helpers) stays in that group. This script stays in the terminal's
#   group and runs nothing else, so a Ctrl-C in the terminal reaches only
#   the script, which then stops the demo in order.
# - In order: the script sends SIGTERM to run_demo, which stops the
#   services (SIGTERM: each drains, within SHUTDOWN_TIMEOUT=4 s, set for
#   them here; SIGKILL after 10 s), then its nats-server (SIGKILL after
#   3 s). When run_demo has ended, or 15 s after the signal, or at a second
#   signal, whatever is left of the group gets SIGTERM and 2 s later
#   SIGKILL. So the demo ends at the latest about 20 s after the signal,
#   with exit code 0 when everything stopped in order, 1 when something
#   had to be killed.
# - A watchdog in the group (a subshell of run_demo) checks twice a second
#   that this script still runs (its pid with its start time, in /proc).
#   When the script is gone, it stops the demo the same way.
# This needs only bash and /proc. A parent-death signal (`setpriv
# --pdeathsig`, prctl) would reach only the services the script started
# itself, not the compilers of a build; `setsid` for the services would
# take them out of any group a caller kills.
# The one step left in the script is installing nats-server when it is
# missing (apt-get, maybe asking for a sudo password on the terminal): it
# runs before the demo starts, and is left to finish, never killed half
# way through, when the script is.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/usr/local/sbin"

SECONDS_TO_RUN="${DEMO_SECONDS:-20}"
SAMPLES=(standard_ops latest_value_cache publisher requester)
BACKEND=(device_sim io_service telemetry_parser db_writer db_query telecommand web database database_query)
# Every NATS client the demo runs, each its own NATS user.
NATS_SERVICES=(standard_ops latest_value_cache publisher requester io_service telemetry_parser
    db_writer db_query telecommand database database_query web health)
# Bounds of the stop, in seconds (see "Stopping").
SERVICE_DRAIN=4       # the services' SHUTDOWN_TIMEOUT: a drain takes at most twice this
SERVICE_STOP_LIMIT=10 # from SIGTERM until the services still running get SIGKILL
NATS_STOP_LIMIT=3     # the same for nats-server, after the services
DEMO_STOP_LIMIT=15    # from the stop request until the rest of the group gets SIGTERM
GROUP_STOP_LIMIT=2    # from that SIGTERM until SIGKILL
PIDS=()
NATS_PID=""
PG_PID=""
DATA_DIR=""
KILLED="" # set when the stop had to kill something

say() { printf 'demo: %s\n' "$*" 2>/dev/null || true; }

# Whether something accepts TCP connections on host $1, port $2.
reachable() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# ---- processes ------------------------------------------------------------
# Reads /proc/$1/stat into STAT_STATE, STAT_PPID, STAT_PGRP and STAT_START
# (state letter, parent, process group, start time); fails when there is no
# process $1.
proc_stat() {
    local line
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    # The fields after the command name, which may hold spaces.
    line="${line##*) }"
    # shellcheck disable=SC2086
    set -- $line
    STAT_STATE="$1" STAT_PPID="$2" STAT_PGRP="$3" STAT_START="${20}"
}

# Whether process $1 runs (a zombie has ended; only its parent has not
# collected it yet).
runs() { proc_stat "$1" && [ "$STAT_STATE" != Z ]; }

# Whether a process of group $1 runs, other than process $2 and its
# children.
group_runs() {
    local stat pid
    for stat in /proc/[0-9]*/stat; do
        pid="${stat#/proc/}"
        pid="${pid%/stat}"
        proc_stat "$pid" || continue
        if [ "$STAT_PGRP" = "$1" ] && [ "$STAT_STATE" != Z ] &&
            [ "$pid" != "${2:-}" ] && [ "$STAT_PPID" != "${2:-}" ]; then
            return 0
        fi
    done
    return 1
}

# Names and pids of the processes $@.
names() {
    local pid comm list=()
    for pid in "$@"; do
        comm="?"
        { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || true
        list+=("$comm ($pid)")
    done
    printf '%s' "${list[*]}"
}

# Sends SIGTERM to the processes $2..., waits until they have ended, at
# most $1 seconds, then sends SIGKILL to those still running.
stop_pids() {
    local limit="$1" pid left deadline
    shift
    [ "$#" -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null || true
    deadline=$((SECONDS + limit))
    while :; do
        left=()
        for pid in "$@"; do runs "$pid" && left+=("$pid"); done
        [ "${#left[@]}" -gt 0 ] || break
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "not stopped within $limit s, killed: $(names "${left[@]}")"
            kill -KILL "${left[@]}" 2>/dev/null || true
            KILLED=1
            break
        fi
        sleep 0.1
    done
    wait "$@" 2>/dev/null || true
}

# Stops process group $1 but for process $2 (and its children): SIGTERM,
# then SIGKILL to the whole group when some still run GROUP_STOP_LIMIT s
# later.
stop_group() {
    local deadline=$((SECONDS + GROUP_STOP_LIMIT))
    kill -TERM -- "-$1" 2>/dev/null || return 0
    while group_runs "$1" "${2:-}"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            kill -KILL -- "-$1" 2>/dev/null || true
            return 0
        fi
        sleep 0.1
    done
}

# The watchdog, in the demo's group (run_demo is $1): when this script is
# gone (its pid no longer runs or is another process's), it stops the demo
# as the script would have, and the rest of the group with itself.
watch_script() {
    local demo="$1" deadline
    while proc_stat "$SCRIPT_PID" && [ "$STAT_START" = "$SCRIPT_START" ] &&
        [ "$STAT_STATE" != Z ]; do
        sleep 0.5
    done
    trap '' INT TERM HUP
    kill -TERM "$demo" 2>/dev/null || true
    deadline=$((SECONDS + DEMO_STOP_LIMIT))
    while runs "$demo" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    stop_group "$demo" "$BASHPID"
}

# ---- the demo, in its own process group -----------------------------------
# Stops the services (in the background of run_demo), then nats-server;
# bounded (see "Stopping"). Signals that arrive meanwhile change nothing.
# Fails when it had to kill one.
stop_all() {
    trap '' INT TERM HUP PIPE
    trap - EXIT
    say "stopping"
    stop_pids "$SERVICE_STOP_LIMIT" "${PIDS[@]}"
    if [ -n "$NATS_PID" ]; then stop_pids "$NATS_STOP_LIMIT" "$NATS_PID"; fi
    # SIGTERM is PostgreSQL's smart shutdown: its clients are gone by now.
    if [ -n "$PG_PID" ]; then stop_pids "$NATS_STOP_LIMIT" "$PG_PID"; fi
    if [ -n "$DATA_DIR" ]; then
        say "stopped; data and service output are in $DATA_DIR"
    else
        say "stopped"
    fi
    [ -z "$KILLED" ]
}

# Everything from the build on. A command that may take long runs in the
# background and is waited for, so that a signal is handled at once.
run_demo() {
    set +m
    # (Expanded here: the arguments of a background command are expanded
    # in the new process, where $BASHPID is its own.)
    local demo_pid="$BASHPID"
    watch_script "$demo_pid" &
    trap 'stop_all && exit 0 || exit 1' INT TERM HUP
    trap 'stop_all' EXIT

    # ---- build ------------------------------------------------------------
    if [ -n "${DEMO_BIN_DIR:-}" ]; then
        BIN_DIR="$DEMO_BIN_DIR"
    else
        say "building the services"
        cargo build --quiet -p standard_ops -p health -p device_sim -p io_service \
            -p telemetry_parser -p db_writer -p db_query -p telecommand -p web \
            -p database -p database_query -p nats_config &
        wait $!
        cargo build --quiet -p telestion-examples --example publisher \
            --example latest_value_cache --example requester &
        wait $!
        TARGET="${CARGO_TARGET_DIR:-target}/debug"
        BIN_DIR="$(mktemp -d /tmp/telestion-demo-bin.XXXXXX)"
        for name in standard_ops health nats_config "${BACKEND[@]}"; do ln -s "$(cd "$TARGET" && pwd)/$name" "$BIN_DIR/$name"; done
        for name in publisher latest_value_cache requester; do
            ln -s "$(cd "$TARGET/examples" && pwd)/$name" "$BIN_DIR/$name"
        done
    fi

    DATA_DIR="${DEMO_DATA_DIR:-$(mktemp -d /tmp/telestion-demo.XXXXXX)}"
    mkdir -p "$DATA_DIR/output"
    DATA_DIR="$(cd "$DATA_DIR" && pwd)"

    # Each NATS service's configuration (also what its permissions are
    # generated from).
    env_of() {
        case "$1" in
        latest_value_cache) ENV_ARGS=(DATA_SUBJECT='data.demo.>' REQUEST_SUBJECT='latest.demo.>') ;;
        publisher) ENV_ARGS=(DATA_SUBJECT=data.demo.temperature FREQUENCY=500) ;;
        requester)
            ENV_ARGS=(REQUEST_SUBJECT=latest.demo.temperature
                OUTPUT_SUBJECT=__telestion__/log/temperature FREQUENCY=1000)
            ;;
        database) ENV_ARGS=(DATA_SUBJECT='data.>') ;;
        database_query) ENV_ARGS=(QUERY_SUBJECT=query.database) ;;
        # The live view keeps few messages per subscription: memory stays
        # bounded even for large forged messages (see apps/web).
        web) ENV_ARGS=(NATS_SUBSCRIPTION_CAPACITY=32) ;;
        *) ENV_ARGS=() ;;
        esac
    }
    SECURED=""
    if [ -z "${NATS_URL:-}" ]; then
        # A secured server: one NATS user per service with the permissions
        # the service declares (--nats-permissions), two people (operator,
        # viewer), passwords in $DATA_DIR/credentials, anonymous refused.
        SECURED=1
        mkdir -p "$DATA_DIR/nats/permissions"
        services_list=""
        for name in "${NATS_SERVICES[@]}"; do
            env_of "$name"
            env SERVICE_NAME="$name" "${ENV_ARGS[@]}" "$BIN_DIR/$name" --nats-permissions \
                >"$DATA_DIR/nats/permissions/$name.json" &
            wait $!
            services_list="$services_list${services_list:+,}$name=$DATA_DIR/nats/permissions/$name.json"
        done
        # A random port below Linux's ephemeral range (32768+), so it is not in
        # use as some connection's local port; if it is taken anyway, the server
        # exits and the next attempt takes another one.
        started=""
        for _attempt in $(seq 10); do
            port=$((20000 + RANDOM % 12000))
            reachable 127.0.0.1 "$port" && continue
            SERVICES="$services_list" PEOPLE=operator:operator,viewer:viewer \
                CREDENTIALS_DIR="$DATA_DIR/credentials" OUT_DIR="$DATA_DIR/nats" \
                LISTEN="127.0.0.1:$port" JETSTREAM_DIR="$DATA_DIR/jetstream" \
                "$BIN_DIR/nats_config" >"$DATA_DIR/output/nats_config.log" 2>&1 &
            wait $! || { say "nats_config failed:"; cat "$DATA_DIR/output/nats_config.log" >&2; exit 1; }
            nats-server -c "$DATA_DIR/nats/nats-server.conf" \
                >"$DATA_DIR/output/nats-server.log" 2>&1 &
            NATS_PID=$!
            for _ in $(seq 100); do
                reachable 127.0.0.1 "$port" && { started=1; break; }
                kill -0 "$NATS_PID" 2>/dev/null || break
                sleep 0.1
            done
            [ -n "$started" ] && break
            stop_pids "$NATS_STOP_LIMIT" "$NATS_PID"
            NATS_PID=""
        done
        [ -n "$started" ] || {
            say "nats-server did not start:"
            cat "$DATA_DIR/output/nats-server.log" >&2
            exit 1
        }
        export NATS_URL="nats://127.0.0.1:$port"
        say "started nats-server on port $port (users and permissions: $DATA_DIR/nats/auth.conf)"
        say "JetStream stores in $DATA_DIR/jetstream"
        say "credentials: $DATA_DIR/credentials (<user>.password; people: operator, viewer)"
    else
        say "using the NATS server at $NATS_URL (no users generated)"
    fi
    export DATA_DIR
    unset SERVICE_NAME SERVICE_ID CONFIG_FILE DATABASE_URL

    # ---- PostgreSQL (DEMO_POSTGRES=1) -------------------------------------
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
            -E UTF8 --locale=C >"$DATA_DIR/output/initdb.log" 2>&1 &
        wait $!
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
            stop_pids "$NATS_STOP_LIMIT" "$PG_PID"
            PG_PID=""
        done
        [ -n "$PG_PID" ] || { say "PostgreSQL did not start:"; cat "$DATA_DIR/output/postgres.log"; exit 1; }
        export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
        say "started PostgreSQL on port $pg_port (cluster in $DATA_DIR/postgres)"
    fi

    # ---- services ---------------------------------------------------------
    # The NATS user of service $1, when the demo made one.
    credentials_of() {
        CREDENTIALS=()
        if [ -n "$SECURED" ]; then
            CREDENTIALS=(NATS_USER="$1" NATS_PASSWORD_FILE="$DATA_DIR/credentials/$1.password")
        fi
    }
    start() {
        local name="$1"
        shift
        env_of "$name"
        credentials_of "$name"
        env SERVICE_NAME="$name" SHUTDOWN_TIMEOUT="$SERVICE_DRAIN" "${ENV_ARGS[@]}" \
            "${CREDENTIALS[@]}" "$@" "$BIN_DIR/$name" \
            >"$DATA_DIR/output/$name.log" 2>&1 &
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
    start latest_value_cache
    start publisher
    start requester

    # The example backend. The simulator is not a NATS service: it prints its
    # TCP address, which the IO service connects to.
    "$BIN_DIR/device_sim" >"$DATA_DIR/output/device_sim.log" 2>&1 &
    PIDS+=("$!")
    DEVICE_ADDR=""
    for _ in $(seq 100); do
        # (The log may not exist yet: the simulator's shell creates it.)
        DEVICE_ADDR="$(sed -n 's/^listening on //p' "$DATA_DIR/output/device_sim.log" 2>/dev/null)" || true
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
    start database
    start database_query
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
    # The page needs a sign-in: the demo signs in as the operator (its
    # password from the credentials directory, sent in the request body).
    COOKIE=""
    post_raw() {
        local body="$2" response
        exec 3<>"/dev/tcp/${WEB_ADDR%:*}/${WEB_ADDR##*:}" || return 1
        printf 'POST %s HTTP/1.1\r\nHost: %s\r\nOrigin: http://%s\r\nCookie: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
            "$1" "$WEB_ADDR" "$WEB_ADDR" "$COOKIE" "${#body}" "$body" >&3
        response="$(timeout 5 cat <&3)" || true
        exec 3<&-
        printf '%s\n' "$response"
    }
    sign_in() {
        [ -n "$SECURED" ] && [ -z "$COOKIE" ] || return 0
        local password response
        password="$(cat "$DATA_DIR/credentials/operator.password")"
        response="$(post_raw /api/login "{\"user\":\"operator\",\"password\":\"$password\"}")" || return 0
        COOKIE="$(printf '%s' "$response" | sed -n 's/^[Ss]et-[Cc]ookie: \(telestion_session=[^;]*\).*/\1/p' | tr -d '\r')"
    }
    post() {
        local response
        sign_in
        response="$(post_raw "$@")" || return 1
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

    # ---- watch ------------------------------------------------------------
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
    credentials_of health
    env SERVICE_NAME=health "${CREDENTIALS[@]}" "$BIN_DIR/health" 2>>"$DATA_DIR/output/health.log" &
    wait $! || true
    frames_stored
    say "web page: http://$WEB_ADDR/ (until the demo stops)"
    stop_all && exit 0 || exit 1
}

# ---- NATS -----------------------------------------------------------------
# In the script itself: installing may ask for a password on the terminal.
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

# ---- run the demo in its own group, stop it on a signal -------------------
SCRIPT_PID=$$
proc_stat "$SCRIPT_PID"
SCRIPT_START="$STAT_START"
requests=0
trap 'requests=$((requests + 1))' INT TERM HUP
set -m
run_demo </dev/null &
DEMO_PID=$!
set +m
asked=""
forced=""
while runs "$DEMO_PID"; do
    if [ "$requests" -gt 0 ] && [ -z "$asked" ]; then
        kill -TERM "$DEMO_PID" 2>/dev/null || true
        asked="$SECONDS"
    fi
    if [ "$requests" -gt 1 ]; then
        forced="a second signal"
    elif [ -n "$asked" ] && [ $((SECONDS - asked)) -ge "$DEMO_STOP_LIMIT" ]; then
        forced="not stopped within $DEMO_STOP_LIMIT s"
    fi
    if [ -n "$forced" ]; then
        # (Unless the demo has just ended by itself.)
        runs "$DEMO_PID" || forced=""
        break
    fi
    sleep 0.2 &
    wait $! || true
done
stop_group "$DEMO_PID"
status=0
wait "$DEMO_PID" 2>/dev/null || status=$?
if [ -n "$forced" ]; then
    say "stopped what was left ($forced)"
    exit 1
fi
exit "$status"
