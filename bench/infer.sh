#!/usr/bin/env bash
# shellcheck disable=SC2317  # start_* functions are called indirectly ("start_$name")
# Comparative benchmark: V2 infer, one iris row, concurrency 32, one core per server.
#
#   bench/infer.sh                 # all servers: lectern, mlserver, fastapi, ceiling
#   BENCH_SERVERS="mlserver fastapi" bench/infer.sh
#
# Each server runs alone, pinned to core $BENCH_SERVER_CPU (1); wrk runs pinned to
# core $BENCH_WRK_CPU (0). Every server serves the same model, version 1 of
# examples/models/iris-logreg (Lectern a repository holding only that version, FastAPI that
# file, MLServer the same LogisticRegression fitted the same way), and before it is measured
# its answer to the request body must be a 200 with onnxruntime's answer on that file (label
# exactly, probabilities within 1e-5; a model_version, when given, "1"). A server that fails
# this is not measured. Traffic goes to 127.0.0.1 only.
#
# Environment:
#   BENCH_SERVERS      servers to run, in order (default: "lectern mlserver fastapi ceiling")
#   BENCH_DURATION     seconds per measured run (default 15; capped at 60)
#   BENCH_WARMUP       seconds of unmeasured warm-up per server (default 3)
#   BENCH_ROUNDS       rounds over all servers (default 1); with more, each server's row is
#                      its median round by req/s, and the req/s range is shown
#   BENCH_CONNECTIONS  wrk connections (default 32); BENCH_THREADS wrk threads (default 2)
#   BENCH_NICE         nice value for the server and wrk when run as root (default -19, so that
#                      other work on the machine, e.g. a compile, gets ~1% of their cores;
#                      "off" to leave it)
#   BENCH_SKIP_SETUP=1 do not run bench/setup.sh
#   BENCH_NO_BUILD=1   do not run cargo build (use the binaries already built)
#   CARGO_TARGET_DIR   default $HOME/.cache/lectern/target
#   LECTERN_BENCH_VENV default $HOME/.cache/lectern/bench-venv
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

VENV="${LECTERN_BENCH_VENV:-$HOME/.cache/lectern/bench-venv}"
export LECTERN_BENCH_VENV="$VENV"
SERVERS="${BENCH_SERVERS:-lectern mlserver fastapi ceiling}"
DURATION="${BENCH_DURATION:-15}"
WARMUP="${BENCH_WARMUP:-3}"
ROUNDS="${BENCH_ROUNDS:-1}"
CONNS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-2}"
WRK_THREADS="$THREADS"
MODEL="iris-logreg"
VERSION=1
ONNX="$ROOT/examples/models/$MODEL/$VERSION/model.onnx"
BODY='{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}'
export BENCH_BODY="$BODY"

if [ "$DURATION" -gt 60 ]; then DURATION=60; fi
for s in $SERVERS; do
    case "$s" in
    lectern | mlserver | fastapi | ceiling) ;;
    *) echo "bench: unknown server $s (known: lectern mlserver fastapi ceiling)" >&2; exit 2 ;;
    esac
done
# ---------------------------------------------------------------- preparation
if [ "${BENCH_SKIP_SETUP:-0}" != 1 ]; then
    "$ROOT/bench/setup.sh" >&2
fi
command -v wrk >/dev/null || { log "wrk missing: run bench/setup.sh"; exit 1; }
[ -x "$VENV/bin/python" ] || { log "venv $VENV missing: run bench/setup.sh"; exit 1; }
reference_python >/dev/null || exit 1

# Lectern's repository: the benchmark model at the one version every server serves.
mkdir -p "$WORK/lectern-models/$MODEL/$VERSION"
cp "$ONNX" "$WORK/lectern-models/$MODEL/$VERSION/model.onnx"
cp "$ROOT/examples/models/$MODEL/labels.txt" "$WORK/lectern-models/$MODEL/"
printf 'labels = "labels.txt"\n' >"$WORK/lectern-models/$MODEL/config.toml"

declare -A RESULT_RPS RESULT_P50 RESULT_P99 RESULT_BAD RESULT_CPU RESULT_NOTE RESULT_BUSY RESULT_RANGE
declare -A R_RPS R_P50 R_P99 R_BAD R_CPU R_BUSY

CEILING_BIN="$CARGO_TARGET_DIR/release/lectern-bench-ceiling"

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    for s in $SERVERS; do
        case "$s" in
        lectern)
            log "building lectern (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
            if ! cargo build --release -p lectern >&2; then
                log "lectern did not build: skipping it"
                RESULT_NOTE[lectern]="build failed"
            fi
            ;;
        ceiling)
            log "building the ceiling (release)"
            cargo build --release --manifest-path "$ROOT/bench/ceiling/Cargo.toml" >&2
            ;;
        esac
    done
fi

# ---------------------------------------------------------------- servers
# start_<server> PORT: starts it in its own process group, pinned to one core.
start_lectern() {
    local port="$1"
    [ -x "$LECTERN_BIN" ] || { log "no $LECTERN_BIN"; return 1; }
    "${PRIO[@]}" taskset -c "$SERVER_CPU" "$LECTERN_BIN" serve \
        --models "$WORK/lectern-models" --listen "127.0.0.1:$port" --data "$WORK/lectern-data" \
        >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
}

start_mlserver() {
    local port="$1" grpc metrics
    grpc="$(free_port)"
    metrics="$(free_port)"
    rm -rf "$WORK/mlserver"
    "$VENV/bin/python" "$ROOT/bench/peers/train_iris.py" "$WORK/mlserver" "$port" "$grpc" "$metrics" >&2
    (cd "$WORK/mlserver" && exec "${PRIO[@]}" taskset -c "$SERVER_CPU" "$VENV/bin/mlserver" start "$WORK/mlserver") \
        >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
}

start_fastapi() {
    local port="$1"
    "${PRIO[@]}" taskset -c "$SERVER_CPU" "$VENV/bin/python" "$ROOT/bench/peers/fastapi_onnx.py" \
        --model "$ONNX" --name "$MODEL" --port "$port" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
}

start_ceiling() {
    local port="$1"
    [ -x "$CEILING_BIN" ] || { log "no $CEILING_BIN"; return 1; }
    "${PRIO[@]}" taskset -c "$SERVER_CPU" "$CEILING_BIN" "127.0.0.1:$port" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
}

# Polls the infer URL until it answers 200 (or gives up after 60 s), then checks the
# answer against onnxruntime on the model file.
wait_ready() {
    local url="$1" name="$2" code
    for _ in $(seq 600); do   # up to 60 s (MLServer takes a few seconds)
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "$name exited during start-up; its log:"
            tail -n 30 "$WORK/server.log" >&2
            return 1
        fi
        code="$(curl -s -o "$WORK/response.json" -w '%{http_code}' --max-time 2 \
            -H 'Content-Type: application/json' -X POST --data "$BODY" "$url" || true)"
        # Keep polling through start-up answers (a server may listen before its
        # models are loaded, and answer 404/400/503 meanwhile).
        if [ "$code" = 200 ]; then
            break
        fi
        sleep 0.1
    done
    if [ "$code" != 200 ]; then
        log "$name answered HTTP $code instead of 200: $(head -c 400 "$WORK/response.json" 2>/dev/null)"
        tail -n 30 "$WORK/server.log" >&2
        return 1
    fi
    if ! check_answer "$WORK/response.json" "$ONNX" "$BODY" "$VERSION" >&2; then
        log "$name's answer is not onnxruntime's on $MODEL version $VERSION: $(head -c 400 "$WORK/response.json")"
        return 1
    fi
    log "$name answers: $(head -c 300 "$WORK/response.json")"
}

# run_one SERVER ROUND: one measured run; results go to R_*["SERVER#ROUND"].
run_one() {
    local name="$1" round="$2" key="$1#$2" port url out cpu0 cpu1 t0 t1 hz line
    port="$(free_port)"
    url="http://127.0.0.1:$port/v2/models/$MODEL/infer"
    R_BUSY[$key]="$(busy_pct)"
    log "---- $name (round $round/$ROUNDS) on core $SERVER_CPU, port $port (machine ${R_BUSY[$key]}% busy before start)"
    if [ "${R_BUSY[$key]}" -gt 10 ]; then
        if [ "${#PRIO[@]}" -gt 1 ]; then
            log "note: other processes are using the CPU; the server and wrk run at nice $NICE_VALUE, so they should matter little"
        else
            log "warning: other processes are using the CPU; numbers will be low and noisy"
        fi
    fi
    if ! "start_$name" "$port"; then
        RESULT_NOTE[$name]="${RESULT_NOTE[$name]:-did not start}"
        return 0
    fi
    if ! wait_ready "$url" "$name"; then
        RESULT_NOTE[$name]="not ready / wrong answer"
        stop_server
        return 0
    fi
    if [ "$WARMUP" -gt 0 ]; then
        run_wrk "$WARMUP" "$CONNS" /dev/null "$url"
    fi
    hz="$(getconf CLK_TCK)"
    cpu0="$(group_cpu_ticks "$SERVER_PID")"
    t0="$(date +%s.%N)"
    out="$WORK/wrk-$name-$round.txt"
    log "load: $name, $DURATION s"
    # wrk stops itself after -d; timeout is a backstop.
    run_wrk "$DURATION" "$CONNS" "$out" "$url"
    t1="$(date +%s.%N)"
    cpu1="$(group_cpu_ticks "$SERVER_PID")"
    cat "$out" >&2
    line="$(grep '^BENCH ' "$out" || true)"
    stop_server
    if [ -z "$line" ]; then
        RESULT_NOTE[$name]="wrk failed"
        return 0
    fi
    field() { wrk_field "$line" "$1"; }
    R_RPS[$key]="$(field rps)"
    R_P50[$key]="$(field p50_us)"
    R_P99[$key]="$(field p99_us)"
    R_BAD[$key]="$(( $(field non2xx) + $(field socket_errors) ))"
    if [ "${R_BAD[$key]}" != 0 ]; then
        log "warning: $name had ${R_BAD[$key]} non-2xx answers or socket errors: its numbers are not valid"
    fi
    R_CPU[$key]="$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$hz" -v t0="$t0" -v t1="$t1" \
        'BEGIN { printf "%.0f%%", 100 * (b - a) / hz / (t1 - t0) }')"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
    for s in $SERVERS; do
        if [ "$s" = lectern ] && [ "${RESULT_NOTE[lectern]:-}" = "build failed" ]; then continue; fi
        run_one "$s" "$round"
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# Each server's row: its median round by req/s (lower median for an even count).
for s in $SERVERS; do
    keys="$(for r in $(seq "$ROUNDS"); do
        if [ -n "${R_RPS[$s#$r]:-}" ]; then echo "${R_RPS[$s#$r]} $s#$r"; fi
    done | sort -n)"
    [ -n "$keys" ] || continue
    n="$(wc -l <<<"$keys")"
    mid="$(sed -n "$(( (n + 1) / 2 ))p" <<<"$keys" | cut -d' ' -f2)"
    RESULT_RPS[$s]="${R_RPS[$mid]}"
    RESULT_P50[$s]="${R_P50[$mid]}"
    RESULT_P99[$s]="${R_P99[$mid]}"
    RESULT_CPU[$s]="${R_CPU[$mid]}"
    RESULT_BUSY[$s]="${R_BUSY[$mid]}"
    bad=0
    for r in $(seq "$ROUNDS"); do bad=$(( bad + ${R_BAD[$s#$r]:-0} )); done
    RESULT_BAD[$s]="$bad"
    RESULT_RANGE[$s]="$(awk -v lo="$(head -1 <<<"$keys" | cut -d' ' -f1)" -v hi="$(tail -1 <<<"$keys" | cut -d' ' -f1)" \
        'BEGIN { printf "%.0f-%.0f", lo, hi }')"
    if [ "$n" -lt "$ROUNDS" ]; then RESULT_NOTE[$s]="$((ROUNDS - n)) of $ROUNDS rounds failed"; fi
done

# ---------------------------------------------------------------- report
ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
label() {
    case "$1" in
    lectern) echo "Lectern $("$LECTERN_BIN" --version 2>/dev/null | awk '{ print $2 }')" ;;
    mlserver) echo "MLServer $("$VENV/bin/python" -c 'import mlserver; print(mlserver.__version__)' 2>/dev/null) (sklearn runtime)" ;;
    fastapi) echo "FastAPI + onnxruntime $("$VENV/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)' 2>/dev/null)" ;;
    ceiling) echo "ceiling (axum, parse JSON, fixed answer)" ;;
    esac
}

echo
echo "V2 infer, one row, concurrency $CONNS, one core each"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); wrk -t$THREADS -c$CONNS -d${DURATION}s (after ${WARMUP}s warm-up), $ROUNDS round(s); priority: nice ${NICE_VALUE} (process and autogroup); load average before $LOAD_BEFORE, after $LOAD_AFTER"
echo
RANGE_HEAD="" RANGE_SEP=""
if [ "$ROUNDS" -gt 1 ]; then RANGE_HEAD=" req/s range |" RANGE_SEP=" ---: |"; fi
echo "| server | req/s |$RANGE_HEAD p50 | p99 | non-2xx/errors | server CPU | busy before |"
echo "| --- | ---: |$RANGE_SEP ---: | ---: | ---: | ---: | ---: |"
for s in $SERVERS; do
    if [ -n "${RESULT_RPS[$s]:-}" ]; then
        range=""
        if [ "$ROUNDS" -gt 1 ]; then range=" ${RESULT_RANGE[$s]} |"; fi
        printf '| %s | %.0f |%s %s | %s | %s | %s | %s%% |\n' "$(label "$s")${RESULT_NOTE[$s]:+ (${RESULT_NOTE[$s]})}" \
            "${RESULT_RPS[$s]}" "$range" "$(ms "${RESULT_P50[$s]}")" "$(ms "${RESULT_P99[$s]}")" \
            "${RESULT_BAD[$s]}" "${RESULT_CPU[$s]}" "${RESULT_BUSY[$s]}"
    else
        range=""
        if [ "$ROUNDS" -gt 1 ]; then range=" |"; fi
        printf '| %s | %s |%s | | | | |\n' "$(label "$s")" "${RESULT_NOTE[$s]:-not run}" "$range"
    fi
done
echo
echo "server CPU: the server's CPU time / wall time during the run (100% = its core was the"
echo "limit; below that, wrk on its one core was). busy before: whole-machine CPU use in the"
echo "second before the server started (other work; the server and wrk run at nice $NICE_VALUE)."
echo

best=""
for s in mlserver fastapi; do
    if [ -n "${RESULT_RPS[$s]:-}" ]; then
        if [ -z "$best" ] || awk -v a="${RESULT_RPS[$s]}" -v b="${RESULT_RPS[$best]}" 'BEGIN { exit !(a > b) }'; then
            best="$s"
        fi
    fi
done
if [ -n "${RESULT_RPS[lectern]:-}" ]; then
    if [ -n "$best" ]; then
        awk -v l="${RESULT_RPS[lectern]}" -v p="${RESULT_RPS[$best]}" -v lp="${RESULT_P99[lectern]}" \
            -v pp="${RESULT_P99[$best]}" -v n="$(label "$best")" \
            'BEGIN { printf "Lectern / best peer (%s): %.2fx req/s; p99 %.2f ms vs %.2f ms\n", n, l / p, lp / 1000, pp / 1000 }'
    fi
    if [ -n "${RESULT_RPS[ceiling]:-}" ]; then
        awk -v l="${RESULT_RPS[lectern]}" -v c="${RESULT_RPS[ceiling]}" \
            'BEGIN { printf "Lectern / ceiling: %.2f of the ceiling'"'"'s req/s\n", l / c }'
    fi
else
    echo "Lectern: ${RESULT_NOTE[lectern]:-not run}; no ratio."
    if [ -n "$best" ]; then echo "best peer: $(label "$best")"; fi
fi

status=0
for s in $SERVERS; do
    if [ -z "${RESULT_RPS[$s]:-}" ] || [ "${RESULT_BAD[$s]:-0}" != 0 ]; then status=1; fi
done
if [ "$status" != 0 ]; then log "some servers have no valid result (see the table)"; fi
exit "$status"
