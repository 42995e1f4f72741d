#!/usr/bin/env bash
# Engine benchmark: tract (the default, pure Rust) vs ONNX Runtime (`engine = "ort"`), same
# server binary, same bundled models, same requests.
#
#   bench/engines.sh
#   BENCH_ROUNDS=3 bench/engines.sh
#
# Builds lectern in release with `--features ort`, copies examples/models to two temporary
# repositories and appends `engine = "ort"` to every config.toml of the second. Each engine
# gets a fresh server (pinned to core $BENCH_SERVER_CPU, 1) serving its repository; each model
# in $BENCH_MODELS (iris-logreg and digits-mlp: one data set row per request, V2 JSON) is
# warmed up, then loaded by wrk pinned to core $BENCH_WRK_CPU (0) at concurrency 32
# (`wrk -t2 -c32 --latency -s bench/post.lua`). Before it is measured, each server's answer
# must be a 200 with outputs; at the end the two engines' answers must agree (labels exactly,
# probabilities within 1e-5). The ort server's log must say it loaded ONNX Runtime ("loaded ONNX
# Runtime"), or the run fails. Prints req/s, p50 and p99 per model and engine; exits 0 only if
# every run was valid.
#
# The ONNX Runtime library: $ORT_DYLIB_PATH, else the onnxruntime wheel in ./.venv or the
# bench venv ($LECTERN_BENCH_VENV, see bench/setup.sh); the script exports the one it uses.
#
# Environment:
#   BENCH_MODELS       models to run (default "iris-logreg digits-mlp")
#   BENCH_DURATION     seconds per measured run (default 10, at most 10)
#   BENCH_WARMUP       seconds of unmeasured load before each run (default 2)
#   BENCH_ROUNDS       rounds (default 1); with more, each row is the median round by req/s
#   BENCH_CONNECTIONS  wrk connections (default 32)
#   BENCH_NICE         nice value for the server and wrk when run as root (default -19; "off")
#   BENCH_NO_BUILD=1   use the release binary already built (it must have the `ort` feature)
#   CARGO_TARGET_DIR   default $HOME/.cache/lectern/target
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

MODELS="${BENCH_MODELS:-iris-logreg digits-mlp}"
ENGINES="tract ort"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
ROUNDS="${BENCH_ROUNDS:-1}"
CONNS="${BENCH_CONNECTIONS:-32}"
if [ "$DURATION" -gt 10 ]; then DURATION=10; fi

# One request body per model: one row of the data set it was trained on.
body_for() {
    case "$1" in
    iris-logreg | iris-forest)
        echo '{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}' ;;
    digits-mlp)
        # load_digits().data[0] / 16
        echo '{"inputs":[{"name":"X","datatype":"FP32","shape":[1,64],"data":[0.0,0.0,0.3125,0.8125,0.5625,0.0625,0.0,0.0,0.0,0.0,0.8125,0.9375,0.625,0.9375,0.3125,0.0,0.0,0.1875,0.9375,0.125,0.0,0.6875,0.5,0.0,0.0,0.25,0.75,0.0,0.0,0.5,0.5,0.0,0.0,0.3125,0.5,0.0,0.0,0.5625,0.5,0.0,0.0,0.25,0.6875,0.0,0.0625,0.75,0.4375,0.0,0.0,0.125,0.875,0.3125,0.625,0.75,0.0,0.0,0.0,0.0,0.375,0.8125,0.625,0.0,0.0,0.0]}]}' ;;
    *) log "no request body for model $1 (known: iris-logreg iris-forest digits-mlp)"; return 1 ;;
    esac
}
for m in $MODELS; do body_for "$m" >/dev/null || exit 2; done
command -v wrk >/dev/null || { log "wrk missing: run bench/setup.sh"; exit 1; }

# ---------------------------------------------------------------- build
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "building lectern with the ONNX Runtime engine (release, --features ort, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    cargo build --release -p lectern --features ort >&2
fi
[ -x "$LECTERN_BIN" ] || { log "no $LECTERN_BIN"; exit 1; }
# A private copy: another build into the same target folder cannot swap it during the runs.
cp "$LECTERN_BIN" "$WORK/lectern"
BIN="$WORK/lectern"

# ---------------------------------------------------------------- ONNX Runtime library
find_ort() {
    local venv lib
    for venv in "$ROOT/.venv" "${LECTERN_BENCH_VENV:-$HOME/.cache/lectern/bench-venv}"; do
        for lib in "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*; do
            if [ -f "$lib" ]; then echo "$lib"; return 0; fi
        done
    done
    return 1
}
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
    if ORT_DYLIB_PATH="$(find_ort)"; then
        export ORT_DYLIB_PATH
    else
        log "no ONNX Runtime library: set ORT_DYLIB_PATH, or install the onnxruntime wheel (bench/setup.sh)"
        exit 1
    fi
fi
log "ONNX Runtime library: $ORT_DYLIB_PATH"

# ---------------------------------------------------------------- the two repositories
for engine in $ENGINES; do
    mkdir -p "$WORK/data-$engine"
    cp -r "$ROOT/examples/models" "$WORK/models-$engine"
done
for folder in "$WORK/models-ort"/*/; do
    # On a line of its own (a config may lack its final newline; a missing one is created).
    if [ -s "$folder/config.toml" ] && [ -n "$(tail -c 1 "$folder/config.toml")" ]; then
        echo >>"$folder/config.toml"
    fi
    echo 'engine = "ort"' >>"$folder/config.toml"
done

start_server() {
    local engine="$1" port="$2"
    "${PRIO[@]}" taskset -c "$SERVER_CPU" "$BIN" serve \
        --models "$WORK/models-$engine" --listen "127.0.0.1:$port" --data "$WORK/data-$engine" \
        >"$WORK/server-$engine.log" 2>&1 &
    SERVER_PID=$!
}

# wait_ready URL BODY OUT: polls until the model answers 200 with outputs (60 s at most).
wait_ready() {
    local url="$1" body="$2" out="$3" code=""
    for _ in $(seq 600); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "the server exited during start-up; its log:"
            tail -n 30 "$WORK/server-$ENGINE.log" >&2
            return 1
        fi
        code="$(curl -s -o "$out" -w '%{http_code}' --max-time 2 \
            -H 'Content-Type: application/json' -X POST --data "$body" "$url" || true)"
        if [ "$code" = 200 ]; then break; fi
        sleep 0.1
    done
    if [ "$code" != 200 ] || ! grep -q '"outputs"' "$out"; then
        log "answered HTTP $code: $(head -c 400 "$out" 2>/dev/null)"
        tail -n 30 "$WORK/server-$ENGINE.log" >&2
        return 1
    fi
}

# The two engines' answers to the same request: same outputs, labels exact, numbers within 1e-5.
same_answers() {
    python3 - "$1" "$2" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
oa, ob = ({o["name"]: o for o in r["outputs"]} for r in (a, b))
assert oa.keys() == ob.keys(), (sorted(oa), sorted(ob))
for name, x in oa.items():
    y = ob[name]
    assert (x["datatype"], x["shape"]) == (y["datatype"], y["shape"]), (name, x, y)
    if x["datatype"].startswith("FP"):
        assert all(abs(p - q) <= 1e-5 for p, q in zip(x["data"], y["data"])), (name, x["data"], y["data"])
    else:
        assert x["data"] == y["data"], (name, x["data"], y["data"])
PY
}

declare -A R_RPS R_P50 R_P99 R_BAD R_CPU
ENGINE=""
FAILED=0
hz="$(getconf CLK_TCK)"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
    for ENGINE in $ENGINES; do
        port="$(free_port)"
        log "---- round $round/$ROUNDS: engine $ENGINE on core $SERVER_CPU, port $port (machine $(busy_pct)% busy before)"
        start_server "$ENGINE" "$port"
        for model in $MODELS; do
            key="$model/$ENGINE#$round"
            url="http://127.0.0.1:$port/v2/models/$model/infer"
            BODY="$(body_for "$model")"
            export BENCH_BODY="$BODY"
            if ! wait_ready "$url" "$BODY" "$WORK/answer-$model-$ENGINE.json"; then
                FAILED=1
                continue
            fi
            log "$model on $ENGINE answers: $(head -c 300 "$WORK/answer-$model-$ENGINE.json")"
            if [ "$WARMUP" -gt 0 ]; then run_wrk "$WARMUP" "$CONNS" /dev/null "$url"; fi
            cpu0="$(group_cpu_ticks "$SERVER_PID")"
            t0="$(date +%s.%N)"
            out="$WORK/wrk-$model-$ENGINE-$round.txt"
            log "load: $model on $ENGINE, ${DURATION}s at concurrency $CONNS"
            run_wrk "$DURATION" "$CONNS" "$out" "$url"
            t1="$(date +%s.%N)"
            cpu1="$(group_cpu_ticks "$SERVER_PID")"
            line="$(grep '^BENCH ' "$out" || true)"
            if [ -z "$line" ]; then
                log "wrk failed: $(tail -n 5 "$out")"
                FAILED=1
                continue
            fi
            field() { wrk_field "$line" "$1"; }
            R_RPS[$key]="$(field rps)"
            R_P50[$key]="$(field p50_us)"
            R_P99[$key]="$(field p99_us)"
            R_BAD[$key]="$(( $(field non2xx) + $(field socket_errors) ))"
            R_CPU[$key]="$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$hz" -v t0="$t0" -v t1="$t1" \
                'BEGIN { printf "%.0f%%", 100 * (b - a) / hz / (t1 - t0) }')"
            if [ "${R_BAD[$key]}" != 0 ]; then
                log "warning: $model on $ENGINE had ${R_BAD[$key]} non-2xx answers or socket errors"
                FAILED=1
            fi
        done
        # The ort server must really have loaded ONNX Runtime (the runtime honours `engine`):
        # otherwise its numbers are tract's under another name.
        if [ "$ENGINE" = ort ] && ! grep -q "loaded ONNX Runtime" "$WORK/server-ort.log"; then
            log "the ort server never loaded ONNX Runtime (is 'engine' honoured? is the library there?); its end:"
            tail -n 10 "$WORK/server-ort.log" >&2
            FAILED=1
        fi
        stop_server
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

for model in $MODELS; do
    if [ -f "$WORK/answer-$model-tract.json" ] && [ -f "$WORK/answer-$model-ort.json" ]; then
        if same_answers "$WORK/answer-$model-tract.json" "$WORK/answer-$model-ort.json" 2>"$WORK/diff.txt"; then
            log "$model: tract and ort give the same answer"
        else
            log "$model: tract and ort DISAGREE: $(tail -n 1 "$WORK/diff.txt")"
            FAILED=1
        fi
    fi
done

# ---------------------------------------------------------------- report
ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
ort_version="$(basename "$ORT_DYLIB_PATH" | sed -n 's/^libonnxruntime\.so\.//p')"
echo
echo "Engines: V2 infer, one row per request, concurrency $CONNS, the server on one core"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); lectern $("$BIN" --version 2>/dev/null | awk '{ print $2 }'); ONNX Runtime ${ort_version:-?} ($ORT_DYLIB_PATH)"
echo "wrk -t2 -c$CONNS -d${DURATION}s after ${WARMUP}s warm-up; $ROUNDS round(s), median by req/s; nice $NICE_VALUE; load average before $LOAD_BEFORE, after $LOAD_AFTER"
echo
echo "| model | engine | req/s | p50 | p99 | non-2xx/errors | server CPU |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for model in $MODELS; do
    for engine in $ENGINES; do
        keys="$(for r in $(seq "$ROUNDS"); do
            k="$model/$engine#$r"
            if [ -n "${R_RPS[$k]:-}" ]; then echo "${R_RPS[$k]} $k"; fi
        done | sort -n)"
        if [ -z "$keys" ]; then
            echo "| $model | $engine | failed | | | | |"
            continue
        fi
        n="$(wc -l <<<"$keys")"
        k="$(sed -n "$(( (n + 1) / 2 ))p" <<<"$keys" | cut -d' ' -f2)"
        printf '| %s | %s | %.0f | %s | %s | %s | %s |\n' "$model" "$engine" "${R_RPS[$k]}" \
            "$(ms "${R_P50[$k]}")" "$(ms "${R_P99[$k]}")" "${R_BAD[$k]}" "${R_CPU[$k]}"
    done
done
echo
if [ "$FAILED" != 0 ]; then log "some runs failed or were invalid (see above)"; fi
exit "$FAILED"
