# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this
# Helpers shared by the bench/*.sh scripts (sourced, not run). They follow
# bench/infer.sh: release build in $CARGO_TARGET_DIR (default $HOME/.cache/lectern/target),
# BENCH_NO_BUILD=1 to skip it, each server in its own session (setsid) so that its process
# group can be stopped, nice -19 for measured processes when run as root (BENCH_NICE).
#
# The caller sets ROOT (the repository) before sourcing. Provides:
#   LECTERN_BIN, WORK (a temporary directory removed on exit), PRIO (command prefix),
#   log, free_port, busy_pct, group_cpu_ticks, build_lectern, stop_server (of SERVER_PID),
#   and an EXIT trap that stops the server and wrk and removes WORK.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lectern/target}"
LECTERN_BIN="${LECTERN_BIN:-$CARGO_TARGET_DIR/release/lectern}"
NICE_VALUE="${BENCH_NICE:--19}"
PRIO=()
if [ "$NICE_VALUE" != off ] && [ "$(id -u)" = 0 ]; then
    # With autogroup scheduling a plain nice only weighs against the same session; each
    # measured process gets its own session whose autogroup gets the nice value too.
    # shellcheck disable=SC2016
    PRIO=(setsid bash -c 'echo "$0" >/proc/self/autogroup 2>/dev/null || true; exec nice -n "$0" "$@"' "$NICE_VALUE")
else
    NICE_VALUE=off
    PRIO=(setsid)
fi

log() { echo "bench: $*" >&2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/lectern-bench.XXXXXX")"
SERVER_PID=""
WRK_PID=""

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        # Started with setsid: its pid is its process group.
        kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}

bench_cleanup() {
    if [ -n "$WRK_PID" ]; then kill -TERM "$WRK_PID" 2>/dev/null || true; fi
    stop_server
    rm -rf "$WORK"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# CPU ticks (user+system) used so far by every process in a process group.
group_cpu_ticks() {
    local pgid="$1" total=0 f stat rest
    for f in /proc/[0-9]*/stat; do
        read -r stat 2>/dev/null <"$f" || continue
        rest="${stat##*) }"          # fields from 3 on: state ppid pgrp ...
        # shellcheck disable=SC2086
        set -- $rest
        if [ "${3:-}" = "$pgid" ]; then
            total=$((total + ${12} + ${13}))   # utime, stime
        fi
    done
    echo "$total"
}

# Percent of the machine's CPU time busy over one second (before a run: other work).
busy_pct() {
    local a b
    read -r -a a </proc/stat
    sleep 1
    read -r -a b </proc/stat
    awk -v u="$(( b[1] + b[2] + b[3] + b[6] + b[7] + b[8] - a[1] - a[2] - a[3] - a[6] - a[7] - a[8] ))" \
        -v i="$(( b[4] + b[5] - a[4] - a[5] ))" 'BEGIN { printf "%.0f", (u + i) ? 100 * u / (u + i) : 0 }'
}

# Builds the release binary unless BENCH_NO_BUILD=1; fails if there is no binary after.
build_lectern() {
    if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
        log "building lectern (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
        (cd "$ROOT" && cargo build --release -p lectern >&2)
    fi
    [ -x "$LECTERN_BIN" ] || { log "no $LECTERN_BIN (build it, or unset BENCH_NO_BUILD)"; return 1; }
}

lectern_version() {
    "$LECTERN_BIN" --version 2>/dev/null | awk '{ print $2 }'
}
