#!/usr/bin/env bash
# Dynamic batching benchmark: batching off vs the adaptive default, same server, same model.
#
#   bench/batching.sh
#   BENCH_ROUNDS=1 BENCH_DURATION=10 bench/batching.sh
#
# The model: examples/models/digits-mlp, scikit-learn's MLPClassifier (64 inputs, 32 hidden,
# 10 classes: 2,410 parameters) exported by skl2onnx; one digits row per request. Two copies
# of it in temporary repositories, the only difference being config.toml:
#   off:      batching = "off" (max_batch_size = 64)
#   adaptive: nothing said: max_batch_size 64 and the adaptive window are the defaults
# Each case gets a fresh server pinned to core $BENCH_SERVER_CPU (1), warmed up, then loaded
# with wrk pinned to core $BENCH_WRK_CPU (0), at concurrency 64 (wrk -t2 -c64) and 1
# (wrk -t1 -c1). Rounds are interleaved (off then adaptive, then adaptive then off, ...) and
# each figure is the median over the rounds.
#
# Targets (issue 5):
#   concurrency 64: adaptive >= 3x the req/s of off, with p99 <= 2x off's p99
#   concurrency 1:  adaptive adds < 5% latency (p50) over off
# Each server's first answer must be onnxruntime's answer on the same model file (labels exactly,
# probabilities within 1e-5) before it is loaded. The targets are judged on the unrounded
# medians (the ratios are printed rounded). Prints PASS/FAIL for each; exits 0 only if every
# run was valid and every target passed.
#
# Environment:
#   BENCH_DURATION     seconds per measured run (default 12; capped at 60)
#   BENCH_WARMUP       seconds of unmeasured load before each run (default 3)
#   BENCH_ROUNDS       rounds (default 3)
#   BENCH_NICE         nice value for server and wrk when root (default -19; "off")
#   BENCH_NO_BUILD=1   use the release binary already built
#   CARGO_TARGET_DIR   default $HOME/.cache/lectern/target
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

DURATION="${BENCH_DURATION:-12}"
WARMUP="${BENCH_WARMUP:-3}"
ROUNDS="${BENCH_ROUNDS:-3}"
if [ "$DURATION" -gt 60 ]; then DURATION=60; fi
MODEL="digits-mlp"
MODES="off adaptive"
CONCURRENCIES="64 1"
# load_digits().data[0] / 16
BODY='{"inputs":[{"name":"X","datatype":"FP32","shape":[1,64],"data":[0.0,0.0,0.3125,0.8125,0.5625,0.0625,0.0,0.0,0.0,0.0,0.8125,0.9375,0.625,0.9375,0.3125,0.0,0.0,0.1875,0.9375,0.125,0.0,0.6875,0.5,0.0,0.0,0.25,0.75,0.0,0.0,0.5,0.5,0.0,0.0,0.3125,0.5,0.0,0.0,0.5625,0.5,0.0,0.0,0.25,0.6875,0.0,0.0625,0.75,0.4375,0.0,0.0,0.125,0.875,0.3125,0.625,0.75,0.0,0.0,0.0,0.0,0.375,0.8125,0.625,0.0,0.0,0.0]}]}'
export BENCH_BODY="$BODY"

command -v wrk >/dev/null || { log "wrk missing: run bench/setup.sh"; exit 1; }
reference_python >/dev/null || exit 1
build_lectern
# The file the servers serve (the newest version) is the one answers are checked against.
MODEL_VERSION="$(find "$ROOT/examples/models/$MODEL" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*' -printf '%f\n' | sort -n | tail -1)"
MODEL_FILE="$ROOT/examples/models/$MODEL/$MODEL_VERSION/model.onnx"

# ---------------------------------------------------------------- the two repositories
for mode in $MODES; do
    mkdir -p "$WORK/models-$mode" "$WORK/data-$mode"
    cp -r "$ROOT/examples/models/$MODEL" "$WORK/models-$mode/$MODEL"
    case "$mode" in
    off) printf 'labels = "labels.txt"\nmax_batch_size = 64\nbatching = "off"\n' ;;
    adaptive) printf 'labels = "labels.txt"\n' ;;
    esac >"$WORK/models-$mode/$MODEL/config.toml"
done

start_server() {
    local mode="$1" port="$2"
    "${PRIO[@]}" taskset -c "$SERVER_CPU" "$LECTERN_BIN" serve \
        --models "$WORK/models-$mode" --listen "127.0.0.1:$port" --data "$WORK/data-$mode" \
        >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
}

# Polls the infer URL until it answers 200 (60 s at most), then checks the answer against
# onnxruntime.
wait_ready() {
    local url="$1" code=""
    for _ in $(seq 600); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "the server exited during start-up; its log:"
            tail -n 30 "$WORK/server.log" >&2
            return 1
        fi
        code="$(curl -s -o "$WORK/response.json" -w '%{http_code}' --max-time 2 \
            -H 'Content-Type: application/json' -X POST --data "$BODY" "$url" || true)"
        if [ "$code" = 200 ]; then break; fi
        sleep 0.1
    done
    if [ "$code" != 200 ]; then
        log "answered HTTP $code: $(head -c 400 "$WORK/response.json" 2>/dev/null)"
        tail -n 30 "$WORK/server.log" >&2
        return 1
    fi
    if ! check_answer "$WORK/response.json" "$MODEL_FILE" "$BODY" "$MODEL_VERSION" >&2; then
        log "the answer is not onnxruntime's: $(head -c 400 "$WORK/response.json")"
        return 1
    fi
}

# Sum of a metric's samples for the model in a /metrics dump (metric_float: not rounded).
metric_sum() {
    awk -v n="$2{" -v m="model=\"$MODEL\"" 'index($0, n) == 1 && index($0, m) { s += $NF } END { printf "%.0f", s }' "$1"
}
metric_float() {
    awk -v n="$2{" -v m="model=\"$MODEL\"" 'index($0, n) == 1 && index($0, m) { s += $NF } END { printf "%.9f", s }' "$1"
}

# shellcheck disable=SC2034  # read through the nameref in median()
declare -A R_RPS R_P50 R_P99 R_BAD R_CPU R_ROWS R_BUSY R_COMPUTE
INVALID=0

# measure MODE CONC ROUND: one measured run on a fresh server. Returns 1 if the server
# did not start or died during the run (then nothing is recorded).
# shellcheck disable=SC2034  # R_* are read through the nameref in median()
measure() {
    local mode="$1" conc="$2" round="$3" key="$1@$2#$3" port url out cpu0 cpu1 t0 t1 hz line execs rows
    port="$(free_port)"
    url="http://127.0.0.1:$port/v2/models/$MODEL/infer"
    start_server "$mode" "$port"
    if ! wait_ready "$url"; then
        stop_server
        return 1
    fi
    if [ "$WARMUP" -gt 0 ]; then run_wrk "$WARMUP" "$conc" /dev/null "$url"; fi
    curl -s "http://127.0.0.1:$port/metrics" >"$WORK/metrics0" || true
    hz="$(getconf CLK_TCK)"
    cpu0="$(group_cpu_ticks "$SERVER_PID")"
    t0="$(date +%s.%N)"
    out="$WORK/wrk-$mode-$conc-$round.txt"
    run_wrk "$DURATION" "$conc" "$out" "$url"
    t1="$(date +%s.%N)"
    cpu1="$(group_cpu_ticks "$SERVER_PID")"
    curl -s "http://127.0.0.1:$port/metrics" >"$WORK/metrics1" || true
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "the server died during the run (killed from outside?); its log:"
        tail -n 5 "$WORK/server.log" >&2
        SERVER_PID=""
        return 1
    fi
    stop_server
    cat "$out" >&2
    line="$(grep '^BENCH ' "$out" || true)"
    if [ -z "$line" ]; then
        log "wrk failed"
        return 1
    fi
    field() { wrk_field "$line" "$1"; }
    R_RPS[$key]="$(field rps)"
    R_P50[$key]="$(field p50_us)"
    R_P99[$key]="$(field p99_us)"
    R_BAD[$key]="$(( $(field non2xx) + $(field socket_errors) ))"
    if [ "${R_BAD[$key]}" != 0 ]; then
        log "warning: ${R_BAD[$key]} non-2xx answers or socket errors: this run is not valid"
        INVALID=1
    fi
    R_CPU[$key]="$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$hz" -v t0="$t0" -v t1="$t1" \
        'BEGIN { printf "%.0f", 100 * (b - a) / hz / (t1 - t0) }')"
    execs=$(( $(metric_sum "$WORK/metrics1" lectern_inference_batch_size_count) - $(metric_sum "$WORK/metrics0" lectern_inference_batch_size_count) ))
    rows=$(( $(metric_sum "$WORK/metrics1" lectern_inference_batch_size_sum) - $(metric_sum "$WORK/metrics0" lectern_inference_batch_size_sum) ))
    R_ROWS[$key]="$(awk -v r="$rows" -v e="$execs" 'BEGIN { if (e > 0) printf "%.2f", r / e; else print "?" }')"
    # model compute per request (microseconds): what batching can save at most
    R_COMPUTE[$key]="$(awk -v a="$(metric_float "$WORK/metrics1" lectern_inference_compute_duration_seconds_sum)" \
        -v b="$(metric_float "$WORK/metrics0" lectern_inference_compute_duration_seconds_sum)" -v r="$rows" \
        'BEGIN { if (r > 0) printf "%.1f", 1e6 * (a - b) / r; else print "?" }')"
}

# run_one MODE CONC ROUND: a measured run, tried up to 3 times.
run_one() {
    local key="$1@$2#$3" attempt
    for attempt in 1 2 3; do
        R_BUSY[$key]="$(busy_pct)"
        log "---- batching $1, concurrency $2 (round $3/$ROUNDS, attempt $attempt), machine ${R_BUSY[$key]}% busy before"
        if measure "$1" "$2" "$3"; then return 0; fi
    done
    log "batching $1, concurrency $2, round $3: no valid run"
    INVALID=1
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
    # Odd rounds run off first, even rounds adaptive first: drift within a round (other work
    # on the machine, the CPU's clock) then favours neither.
    order="$MODES"
    if [ $((round % 2)) = 0 ]; then order="$(tr ' ' '\n' <<<"$MODES" | tac | tr '\n' ' ')"; fi
    for conc in $CONCURRENCIES; do
        for mode in $order; do
            run_one "$mode" "$conc" "$round"
        done
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# median ARRAY_NAME MODE CONC: lower median over the rounds that produced a value.
median() {
    local -n arr="$1"
    local vals
    vals="$(for r in $(seq "$ROUNDS"); do
        if [ -n "${arr[$2@$3#$r]:-}" ] && [ "${arr[$2@$3#$r]}" != "?" ]; then echo "${arr[$2@$3#$r]}"; fi
    done | sort -g)"
    if [ -z "$vals" ]; then echo ""; return; fi
    sed -n "$(( ($(wc -l <<<"$vals") + 1) / 2 ))p" <<<"$vals"
}

declare -A M_RPS M_P50 M_P99 M_CPU M_ROWS M_RANGE M_COMPUTE M_BUSY
for conc in $CONCURRENCIES; do
    for mode in $MODES; do
        k="$mode@$conc"
        M_RPS[$k]="$(median R_RPS "$mode" "$conc")"
        M_P50[$k]="$(median R_P50 "$mode" "$conc")"
        M_P99[$k]="$(median R_P99 "$mode" "$conc")"
        M_CPU[$k]="$(median R_CPU "$mode" "$conc")"
        M_ROWS[$k]="$(median R_ROWS "$mode" "$conc")"
        M_COMPUTE[$k]="$(median R_COMPUTE "$mode" "$conc")"
        M_BUSY[$k]="$(for r in $(seq "$ROUNDS"); do echo "${R_BUSY[$mode@$conc#$r]:-}"; done | grep . | sort -n | tail -1)"
        M_RANGE[$k]="$(for r in $(seq "$ROUNDS"); do echo "${R_RPS[$mode@$conc#$r]:-}"; done | grep . | sort -g |
            awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%.0f-%.0f", lo, hi }')"
    done
done

# ---------------------------------------------------------------- report
ms() { awk -v us="$1" 'BEGIN { printf "%.3f ms", us / 1000 }'; }
echo
echo "Dynamic batching: $MODEL (MLPClassifier 64-32-10, 2,410 parameters), one row per request, server on one core"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); Lectern $(lectern_version); wrk -c64 (-t2) and -c1 (-t1), ${DURATION}s runs after ${WARMUP}s warm-up, $ROUNDS round(s), medians; nice $NICE_VALUE; load average before $LOAD_BEFORE, after $LOAD_AFTER"
echo
echo "| batching | concurrency | req/s | req/s range | p50 | p99 | rows/execution | compute/row | server CPU | busy before |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for conc in $CONCURRENCIES; do
    for mode in $MODES; do
        k="$mode@$conc"
        if [ -n "${M_RPS[$k]}" ]; then
            printf '| %s | %s | %.0f | %s | %s | %s | %s | %s µs | %s%% | %s%% |\n' "$mode" "$conc" "${M_RPS[$k]}" "${M_RANGE[$k]}" \
                "$(ms "${M_P50[$k]}")" "$(ms "${M_P99[$k]}")" "${M_ROWS[$k]:-?}" "${M_COMPUTE[$k]:-?}" "${M_CPU[$k]}" "${M_BUSY[$k]}"
        else
            printf '| %s | %s | no valid run | | | | | | | |\n' "$mode" "$conc"
        fi
    done
done
echo
echo "rows/execution and compute/row (model time per row, from lectern_inference_batch_size and"
echo "lectern_inference_compute_duration_seconds); server CPU: its CPU time over the run's wall time"
echo "(100%: its core was the limit); busy before: the highest whole-machine CPU use in the second"
echo "before a round's server started (other work on the machine; measured processes run at nice $NICE_VALUE)."
echo

status=0
verdict() { if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi; }
# holds EXPRESSION A B: 1 when the awk EXPRESSION over the unrounded a and b is true, else 0.
holds() { awk -v a="$2" -v b="$3" "BEGIN { print ($1) ? 1 : 0 }"; }
ok_tput=0 ok_p99=0 ok_p50=0
if [ -n "${M_RPS[adaptive@64]}" ] && [ -n "${M_RPS[off@64]}" ]; then
    ok_tput="$(holds 'a >= 3 * b' "${M_RPS[adaptive@64]}" "${M_RPS[off@64]}")"
    ok_p99="$(holds 'a <= 2 * b' "${M_P99[adaptive@64]}" "${M_P99[off@64]}")"
    tput_ratio="$(awk -v a="${M_RPS[adaptive@64]}" -v o="${M_RPS[off@64]}" 'BEGIN { printf "%.3f", a / o }')"
    p99_ratio="$(awk -v a="${M_P99[adaptive@64]}" -v o="${M_P99[off@64]}" 'BEGIN { printf "%.3f", a / o }')"
    echo "concurrency 64: adaptive/off req/s = ${tput_ratio}x (target >= 3x): $(verdict "$ok_tput")"
    echo "concurrency 64: adaptive/off p99 = ${p99_ratio}x (target <= 2x): $(verdict "$ok_p99")"
else
    echo "concurrency 64: no valid pair of runs: FAIL"
fi
if [ -n "${M_P50[adaptive@1]}" ] && [ -n "${M_P50[off@1]}" ]; then
    ok_p50="$(holds 'a < 1.05 * b' "${M_P50[adaptive@1]}" "${M_P50[off@1]}")"
    p50_over="$(awk -v a="${M_P50[adaptive@1]}" -v o="${M_P50[off@1]}" 'BEGIN { printf "%+.2f", 100 * (a / o - 1) }')"
    p99_over="$(awk -v a="${M_P99[adaptive@1]}" -v o="${M_P99[off@1]}" 'BEGIN { printf "%+.1f", 100 * (a / o - 1) }')"
    echo "concurrency 1: adaptive p50 ${p50_over}% vs off (target < +5%): $(verdict "$ok_p50") (p99 ${p99_over}%, for information)"
else
    echo "concurrency 1: no valid pair of runs: FAIL"
fi
if [ "$INVALID" != 0 ]; then
    log "some runs were not valid (server not ready, a wrong answer, wrk failed, or non-2xx answers): see above"
    status=1
fi
if [ "$ok_tput$ok_p99$ok_p50" != 111 ]; then status=1; fi
exit "$status"
