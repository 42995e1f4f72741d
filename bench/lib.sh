# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this
# Helpers shared by the bench/*.sh scripts (sourced, not run). They follow
# bench/infer.sh: release build in $CARGO_TARGET_DIR (default $HOME/.cache/lectern/target),
# BENCH_NO_BUILD=1 to skip it, each server in its own session (setsid) so that its process
# group can be stopped, nice -19 for measured processes when run as root (BENCH_NICE).
#
# Every bench script opens with
#
#   set -euo pipefail
#   ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
#   cd "$ROOT"
#   # shellcheck source=bench/lib.sh
#   . "$ROOT/bench/lib.sh"
#
# and gets: LECTERN_BIN, WORK (a temporary directory removed on exit), PRIO (command prefix),
# SERVER_CPU and WRK_CPU (cores for the server and for wrk: $BENCH_SERVER_CPU, default 1, and
# $BENCH_WRK_CPU, default 0), log, free_port, busy_pct, group_cpu_ticks, build_lectern,
# stop_server (of SERVER_PID), run_wrk and wrk_field (the load generator and its summary),
# reference_python and check_answer (an answer checked against onnxruntime), and an EXIT
# trap that stops the server and wrk and removes WORK.

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

SERVER_CPU="${BENCH_SERVER_CPU:-1}"
WRK_CPU="${BENCH_WRK_CPU:-0}"

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

# run_wrk SECONDS CONNECTIONS OUTFILE URL: one bounded wrk run of bench/post.lua (the body in
# $BENCH_BODY) pinned to core $WRK_CPU, with $WRK_THREADS threads (default 2, never more than
# the connections). In the background, so that a signal to the script stops it at once.
run_wrk() {
    local secs="$1" conns="$2" out="$3" url="$4" threads="${WRK_THREADS:-2}"
    if [ "$conns" -lt "$threads" ]; then threads="$conns"; fi
    timeout $((secs + 30)) "${PRIO[@]}" taskset -c "$WRK_CPU" wrk -t"$threads" -c"$conns" -d"${secs}s" \
        --timeout 5s --latency -s "$ROOT/bench/post.lua" "$url" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || true
    WRK_PID=""
}

# wrk_field LINE NAME: a field of post.lua's summary line ("BENCH requests=.. rps=.. ...").
wrk_field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# reference_python: a Python that imports onnxruntime and numpy ($BENCH_PYTHON, else the
# repository's .venv, else the bench venv); fails when there is none.
reference_python() {
    local py
    for py in "${BENCH_PYTHON:-}" "$ROOT/.venv/bin/python" "${LECTERN_BENCH_VENV:-$HOME/.cache/lectern/bench-venv}/bin/python"; do
        if [ -n "$py" ] && [ -x "$py" ] && "$py" -c 'import numpy, onnxruntime' 2>/dev/null; then
            echo "$py"
            return 0
        fi
    done
    log "no Python with onnxruntime: set BENCH_PYTHON, or create .venv (scripts/test.sh) or the bench venv (bench/setup.sh)"
    return 1
}

# check_answer ANSWER_FILE MODEL_ONNX BODY [VERSION]: the V2 answer in ANSWER_FILE is what
# onnxruntime computes for BODY's inputs on MODEL_ONNX: every output it carries has
# onnxruntime's shape (an extra trailing 1 allowed) and values (integers exactly, floats within
# 1e-5; a ZipMap output as an [N, classes] array), and the label output is among them
# (`predict` and `predict_proba`, MLServer's scikit-learn names, stand for the label and the
# probabilities). With VERSION, a model_version in the answer must be it. Prints why not.
check_answer() {
    local py
    py="$(reference_python)" || return 1
    "$py" - "$@" <<'PY'
import json, sys
import numpy as np
import onnxruntime as ort

answer_file, model, body = sys.argv[1:4]
version = sys.argv[4] if len(sys.argv) > 4 else None
try:
    answer = json.load(open(answer_file))
except ValueError as e:
    sys.exit(f"the answer is not JSON ({e}): {open(answer_file).read(300)!r}")
if version is not None and "model_version" in answer and str(answer["model_version"]) != version:
    sys.exit(f"answered by version {answer['model_version']!r}, not {version}")
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
types = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
feeds = {i["name"]: np.asarray(i["data"], dtype=types[i["datatype"]]).reshape(i["shape"])
         for i in json.loads(body)["inputs"]}
names = [o.name for o in session.get_outputs()]
expected = {}
for name, value in zip(names, session.run(None, feeds)):
    if isinstance(value, list):  # ZipMap: [{class: probability}, ...]
        value = np.array([[row[k] for k in sorted(row)] for row in value], dtype=np.float32)
    expected[name] = np.asarray(value)
label = names[0]
aliases = {"predict": label, "predict_proba": names[1] if len(names) > 1 else label}
outputs = answer.get("outputs")
if not isinstance(outputs, list) or not outputs:
    sys.exit(f"no outputs: {json.dumps(answer)[:300]}")
seen = set()
for out in outputs:
    name = aliases.get(out["name"], out["name"])
    if name not in expected:
        sys.exit(f"output {out['name']!r} is not one of the model's {names}")
    want = expected[name]
    got = np.asarray(out["data"]).reshape(out["shape"])
    if got.shape != want.shape and got.shape != want.shape + (1,):
        sys.exit(f"output {out['name']!r}: shape {list(got.shape)}, onnxruntime {list(want.shape)}")
    got = got.reshape(want.shape)
    if np.issubdtype(want.dtype, np.floating):
        if not np.allclose(got, want, rtol=0, atol=1e-5):
            sys.exit(f"output {out['name']!r}: {got.ravel().tolist()} != onnxruntime {want.ravel().tolist()}")
    elif got.tolist() != want.tolist():
        sys.exit(f"output {out['name']!r}: {got.ravel().tolist()} != onnxruntime {want.ravel().tolist()}")
    seen.add(name)
if label not in seen:
    sys.exit(f"the answer lacks the label output {label!r}")
PY
}
