#!/usr/bin/env bash
# Instructions per V2 infer request, counted by valgrind's callgrind: the same number on a
# quiet or a busy machine, so a change to the request path can be judged in one run, where
# req/s on this shared machine moves by 15% between runs.
#
#   bench/instructions.sh                      # lectern and the ceiling
#   BENCH_SERVERS=lectern LECTERN_BIN=/tmp/old/lectern bench/instructions.sh
#
# Each server runs under callgrind twice, answering $BENCH_LOW and then $BENCH_HIGH requests
# (one iris row each) over one keep-alive connection; the difference of the two totals divided
# by the difference of the counts is the cost of one request (start-up cancels out). Then the
# functions whose inclusive cost per request is largest. One client, so every request is its own
# model execution (no batching): this counts the work per request, not the throughput.
# User-space instructions only: system calls and context switches are not counted.
#
# Environment: BENCH_SERVERS (default "lectern ceiling"), BENCH_LOW (500), BENCH_HIGH (2500),
# BENCH_TOP (25 functions), BENCH_NO_BUILD=1, LECTERN_BIN, CARGO_TARGET_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
SERVERS="${BENCH_SERVERS:-lectern ceiling}"
LOW="${BENCH_LOW:-500}"
HIGH="${BENCH_HIGH:-2500}"
TOP="${BENCH_TOP:-25}"
CEILING_BIN="$CARGO_TARGET_DIR/release/lectern-bench-ceiling"

command -v valgrind >/dev/null || { log "valgrind is not installed (apt-get install valgrind)"; exit 1; }
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    case " $SERVERS " in *" lectern "*) cargo build --release -p lectern >&2 ;; esac
    case " $SERVERS " in *" ceiling "*) cargo build --release --manifest-path bench/ceiling/Cargo.toml >&2 ;; esac
fi

# drive PORT N: waits for readiness, then sends N infer requests on one connection.
drive() {
    python3 - "$1" "$2" <<'PY'
import http.client, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
deadline = time.time() + 300
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/v2/health/ready")
        r = c.getresponse(); r.read()
        if r.status == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("server not ready")
    time.sleep(0.2)
body = '{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}'
for _ in range(n):
    c.request("POST", "/v2/models/iris-logreg/infer", body, {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status != 200:
        sys.exit(f"infer answered {r.status}")
PY
}

# profile NAME N: one callgrind run of NAME answering N requests; the profile is $WORK/NAME.N
profile() {
    local name="$1" n="$2" port pid
    port="$(free_port)"
    local cmd=("$CEILING_BIN" "127.0.0.1:$port")
    if [ "$name" = lectern ]; then
        rm -rf "$WORK/data-$n"
        cmd=("$LECTERN_BIN" serve --models "$ROOT/examples/models" --listen "127.0.0.1:$port" --data "$WORK/data-$n")
    fi
    valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.$n.raw" "${cmd[@]}" >"$WORK/$name.$n.log" 2>&1 &
    pid=$!
    drive "$port" "$n"
    # Dump while it runs (the ceiling has no signal handling under valgrind), then stop it.
    callgrind_control -d "$pid" >/dev/null
    mv "$WORK/$name.$n.raw.1" "$WORK/$name.$n"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

for name in $SERVERS; do
    log "$name: $LOW and $HIGH requests under callgrind"
    profile "$name" "$LOW"
    profile "$name" "$HIGH"
    python3 - "$WORK/$name.$LOW" "$WORK/$name.$HIGH" "$LOW" "$HIGH" "$TOP" "$name" <<'PY'
import re, subprocess, sys
low_file, high_file, low, high, top, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]

# Frames every request passes through (threads, the runtime, poll wrappers): not informative.
GENERIC = re.compile(r"std::sys|start_thread|thread_start|tokio::runtime|core::ops::function|"
                     r"__rust_begin|core::future::|Pin<P>|PollFn|poll_fn|catch_unwind")

def inclusive(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    total, per_fn = 0, {}
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$", line)
        if not m or m.group(2).startswith("=>") or m.group(2) == "events annotated":
            continue
        count, what = int(m.group(1).replace(",", "")), m.group(2)
        if "PROGRAM TOTALS" in what:
            total = count
        elif not GENERIC.search(what):
            # "file:function [binary]": the same function appears once per source file of its
            # (inlined) code; each line is its own inclusive cost, so lines are not summed.
            per_fn[what] = count
    return total, per_fn

t_low, f_low = inclusive(low_file)
t_high, f_high = inclusive(high_file)
n = high - low
per_request = (t_high - t_low) / n
print(f"\n{name}: {per_request:,.0f} instructions per request")
with open(f"{low_file}.per-request", "w") as f:
    f.write(f"{per_request:.0f}\n")
rows = sorted(((f_high[k] - f_low.get(k, 0)) / n, k) for k in f_high)
for cost, fn in reversed(rows[-top:]):
    short = re.sub(r"^\S*?/\.cargo/registry/src/[^/]+/|^/rustc/[0-9a-f]+/|^\S*?/(?=crates/)", "", fn)
    print(f"  {cost:10,.0f}  {short[:150]}")
PY
done

if [ -f "$WORK/lectern.$LOW.per-request" ] && [ -f "$WORK/ceiling.$LOW.per-request" ]; then
    python3 -c 'import sys; a, b = (float(open(p).read()) for p in sys.argv[1:]); print(f"\nlectern / ceiling: {a / b:.2f}x the instructions per request")' \
        "$WORK/lectern.$LOW.per-request" "$WORK/ceiling.$LOW.per-request"
fi
