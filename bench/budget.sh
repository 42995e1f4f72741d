#!/usr/bin/env bash
# Resource budget of the release binary: memory and start-up time.
#
#   bench/budget.sh
#   BENCH_CPUS=1 bench/budget.sh      # pin the server to core 1 (default: all cores)
#
# Measures, each with a fresh `lectern serve` process:
#   - resident memory (VmRSS from /proc/PID/status) of an idle server with no model,
#     with 20 models and with 50 models loaded: read once /v2/health/ready has answered 200
#     and the server has been left alone for BENCH_SETTLE seconds (default 1);
#   - the same after one small inference per model ("warm": first runs allocate buffers);
#   - start-up time: from spawning the process to the first 200 on /v2/health/ready,
#     polled every millisecond; BENCH_STARTS fresh starts (default 5), median and worst;
#   - per-model overhead = (RSS with 20 models - RSS with none - the served model files'
#     bytes) / 20, i.e. what a model costs on top of its weights.
# The models are copies of the bundled examples/models under new names (m01-iris-logreg,
# m02-cancer-tree, ...), cycling through every kind, so 20 and 50 "bundled-size" models.
# Every copy must be READY in /v2/repository/index, or the run is invalid.
#
# Targets: idle (no model) < 30 MB; 50 models ready < 1 s; per-model overhead < 2 MB + weights,
# both idle and after one request to each model (the buffers a first run allocates count).
# Prints PASS/FAIL for each; exits 0 only if all pass.
#
# Environment:
#   BENCH_CPUS       taskset CPU list for the server (default: none, all cores; the default
#                    instance count per model is then one per core, at most 4)
#   BENCH_STARTS     start-up measurements with 50 models (default 5)
#   BENCH_SETTLE     seconds to wait after ready before reading memory (default 1)
#   BENCH_NO_BUILD=1 use the release binary already built
#   CARGO_TARGET_DIR default $HOME/.cache/lectern/target
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

CPUS="${BENCH_CPUS:-}"
STARTS="${BENCH_STARTS:-5}"
SETTLE="${BENCH_SETTLE:-1}"
KINDS=(iris-logreg cancer-tree digits-mlp iris-forest cancer-scaled-logreg digits-cnn dtypes)

build_lectern

# make_repo DIR N: N copies of the bundled models under new names, cycling through the kinds.
make_repo() {
    local dir="$1" n="$2" i kind
    mkdir -p "$dir"
    for i in $(seq "$n"); do
        kind="${KINDS[$(( (i - 1) % ${#KINDS[@]} ))]}"
        cp -r "$ROOT/examples/models/$kind" "$dir/$(printf 'm%02d' "$i")-$kind"
    done
}

make_repo "$WORK/models-0" 0
make_repo "$WORK/models-20" 20
make_repo "$WORK/models-50" 50

cat >"$WORK/measure.py" <<'PY'
"""Starts lectern once, times it to ready, checks the index, reads its memory; prints JSON."""
import http.client
import json
import os
import signal
import subprocess
import sys
import time

binary, models, data, port, cpus, settle, warm, log = sys.argv[1:9]
port, settle, warm = int(port), float(settle), warm == "1"


def request(method, path, body=None, timeout=5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def status_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[key] = int(value.split()[0])
    return out


def served_bytes(models_dir, name):
    folder = os.path.join(models_dir, name)
    versions = sorted(int(v) for v in os.listdir(folder) if v.isdigit())
    return os.path.getsize(os.path.join(folder, str(versions[-1]), "model.onnx")) if versions else 0


def sample_request(meta):
    zero = {"BOOL": False, "BYTES": "a", "FP16": 0.5, "FP32": 0.5, "FP64": 0.5}
    inputs = []
    for spec in meta["inputs"]:
        shape = [1 if int(d) < 0 else int(d) for d in spec["shape"]]
        n = 1
        for d in shape:
            n *= d
        inputs.append({"name": spec["name"], "datatype": spec["datatype"], "shape": shape,
                       "data": [zero.get(spec["datatype"], 1)] * n})
    return json.dumps({"inputs": inputs}).encode()


args = ([ "taskset", "-c", cpus] if cpus else []) + [
    binary, "serve", "--models", models, "--listen", f"127.0.0.1:{port}", "--data", data]
with open(log, "w") as err:
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                            start_new_session=True)
result = {}
try:
    while True:
        try:
            status, _ = request("GET", "/v2/health/ready", timeout=2.0)
            if status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"lectern exited with status {proc.returncode} before ready; see {log}")
        if time.monotonic() - t0 > 60:
            raise SystemExit("not ready after 60 s")
        time.sleep(0.001)
    result["startup_s"] = time.monotonic() - t0
    status, body = request("POST", "/v2/repository/index", body=b"{}")
    entries = json.loads(body)
    folders = sorted(os.listdir(models))
    ready = sorted({e["name"] for e in entries if e.get("state") == "READY"})
    result["folders"] = len(folders)
    result["ready"] = len(ready)
    result["not_ready"] = [e for e in entries if e.get("state") != "READY"]
    result["weights_bytes"] = sum(served_bytes(models, name) for name in ready)
    time.sleep(settle)
    result["idle"] = status_kb(proc.pid)
    if warm:
        failures = []
        for name in ready:
            _, meta = request("GET", f"/v2/models/{name}")
            status, body = request("POST", f"/v2/models/{name}/infer", body=sample_request(json.loads(meta)))
            if status != 200:
                failures.append((name, status, body[:200].decode(errors="replace")))
        result["warm_failures"] = failures
        time.sleep(settle)
        result["warm"] = status_kb(proc.pid)
finally:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
print(json.dumps(result))
PY

# measure N WARM: one fresh server over models-N; prints its JSON result. Tried up to 3
# times (a server that dies during start-up, e.g. killed from outside, is started again).
measure() {
    local n="$1" warm="$2" port attempt
    for attempt in 1 2 3; do
        port="$(free_port)"
        rm -rf "$WORK/data"
        mkdir -p "$WORK/data"
        if python3 "$WORK/measure.py" "$LECTERN_BIN" "$WORK/models-$n" "$WORK/data" "$port" "$CPUS" "$SETTLE" \
            "$warm" "$WORK/server-$n.log"; then
            return 0
        fi
        log "attempt $attempt with $n models failed; server log tail:"
        tail -n 5 "$WORK/server-$n.log" >&2
    done
    return 1
}

# field JSON EXPR: EXPR evaluated over the JSON object's keys (and `d`, the object itself).
field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {"d": d}, d))' "$1" "$2"; }

INVALID=0
check_loaded() {
    local n="$1" json="$2"
    if [ "$(field "$json" ready)" != "$n" ] || [ "$(field "$json" folders)" != "$n" ]; then
        log "with $n model folders, $(field "$json" ready) are READY: $(field "$json" not_ready)"
        INVALID=1
    fi
    if [ "$(field "$json" 'len(d.get("warm_failures", []))')" != 0 ]; then
        log "inference failures with $n models: $(field "$json" 'warm_failures')"
        INVALID=1
    fi
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
log "no model"
R0="$(measure 0 0)"
check_loaded 0 "$R0"
log "20 models"
R20="$(measure 20 1)"
check_loaded 20 "$R20"
log "50 models, $STARTS starts"
STARTUPS=()
R50=""
for i in $(seq "$STARTS"); do
    r="$(measure 50 "$([ "$i" = 1 ] && echo 1 || echo 0)")"
    check_loaded 50 "$r"
    if [ -z "$R50" ]; then R50="$r"; fi
    STARTUPS+=("$(field "$r" startup_s)")
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

mb() { awk -v kb="$1" 'BEGIN { printf "%.1f MB", kb / 1024 }'; }
RSS0="$(field "$R0" 'idle["VmRSS"]')"
RSS20="$(field "$R20" 'idle["VmRSS"]')"
RSS50="$(field "$R50" 'idle["VmRSS"]')"
W20="$(field "$R20" 'warm["VmRSS"]')"
W50="$(field "$R50" 'warm["VmRSS"]')"
WEIGHTS20="$(field "$R20" weights_bytes)"
WEIGHTS50="$(field "$R50" weights_bytes)"
START_MED="$(printf '%s\n' "${STARTUPS[@]}" | sort -g | sed -n "$(( (${#STARTUPS[@]} + 1) / 2 ))p")"
START_MAX="$(printf '%s\n' "${STARTUPS[@]}" | sort -g | tail -1)"
# per-model overhead beyond its weights, in KB (RSS in kB, weights in bytes)
OVER20="$(awk -v a="$RSS20" -v b="$RSS0" -v w="$WEIGHTS20" 'BEGIN { printf "%.0f", (a - b - w / 1024) / 20 }')"
OVER20W="$(awk -v a="$W20" -v b="$RSS0" -v w="$WEIGHTS20" 'BEGIN { printf "%.0f", (a - b - w / 1024) / 20 }')"
OVER50="$(awk -v a="$RSS50" -v b="$RSS0" -v w="$WEIGHTS50" 'BEGIN { printf "%.0f", (a - b - w / 1024) / 50 }')"
# marginal: what the 30 models from 20 to 50 cost each (one-off costs of the first model,
# such as engine code paged in and allocator arenas, drop out)
MARGINAL="$(awk -v a="$RSS50" -v b="$RSS20" -v w50="$WEIGHTS50" -v w20="$WEIGHTS20" 'BEGIN { printf "%.0f", (a - b - (w50 - w20) / 1024) / 30 }')"

echo
echo "Resource budget: release binary, Lectern $(lectern_version)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); server CPUs: ${CPUS:-all ($(nproc))}; memory read ${SETTLE}s after ready; load average before $LOAD_BEFORE, after $LOAD_AFTER"
echo
echo "| models | weights (served files) | RSS idle (anon + file) | RSS after one request each | peak RSS (VmHWM) | threads | start-up to ready |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
split() { echo "$(mb "$(field "$1" 'idle["RssAnon"]')") + $(mb "$(field "$1" 'idle["RssFile"]')")"; }
printf '| 0 | 0 | %s (%s) | - | %s | %s | %.0f ms |\n' "$(mb "$RSS0")" "$(split "$R0")" "$(mb "$(field "$R0" 'idle["VmHWM"]')")" \
    "$(field "$R0" 'idle["Threads"]')" "$(awk -v s="$(field "$R0" startup_s)" 'BEGIN { print s * 1000 }')"
printf '| 20 | %s | %s (%s) | %s | %s | %s | %.0f ms |\n' "$(mb "$((WEIGHTS20 / 1024))")" "$(mb "$RSS20")" "$(split "$R20")" "$(mb "$W20")" \
    "$(mb "$(field "$R20" 'warm["VmHWM"]')")" "$(field "$R20" 'warm["Threads"]')" \
    "$(awk -v s="$(field "$R20" startup_s)" 'BEGIN { print s * 1000 }')"
printf '| 50 | %s | %s (%s) | %s | %s | %s | %.0f ms median, %.0f ms worst of %s |\n' "$(mb "$((WEIGHTS50 / 1024))")" "$(mb "$RSS50")" \
    "$(split "$R50")" "$(mb "$W50")" "$(mb "$(field "$R50" 'warm["VmHWM"]')")" "$(field "$R50" 'warm["Threads"]')" \
    "$(awk -v s="$START_MED" 'BEGIN { print s * 1000 }')" "$(awk -v s="$START_MAX" 'BEGIN { print s * 1000 }')" "$STARTS"
echo
echo "per-model overhead beyond weights: $(mb "$OVER20") idle, $(mb "$OVER20W") after one request each (20 models); $(mb "$OVER50") idle (50 models)"
echo "marginal cost of a model beyond weights (from 20 to 50 models, idle): $(mb "$MARGINAL")"
echo

verdict() { if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi; }
ok_idle="$(awk -v r="$RSS0" 'BEGIN { print (r / 1024 < 30) }')"
ok_start="$(awk -v s="$START_MAX" 'BEGIN { print (s < 1) }')"
ok_over="$(awk -v o="$OVER20" 'BEGIN { print (o / 1024 < 2) }')"
ok_over_warm="$(awk -v o="$OVER20W" 'BEGIN { print (o / 1024 < 2) }')"
echo "idle server, no model: $(mb "$RSS0") (target < 30 MB): $(verdict "$ok_idle")"
echo "50 models, spawn to ready: worst $(awk -v s="$START_MAX" 'BEGIN { printf "%.0f ms", s * 1000 }') of $STARTS (target < 1 s): $(verdict "$ok_start")"
echo "per-model overhead (20 models, idle): $(mb "$OVER20") + weights (target < 2 MB + weights): $(verdict "$ok_over")"
echo "per-model overhead (20 models, after one request each): $(mb "$OVER20W") + weights (target < 2 MB + weights): $(verdict "$ok_over_warm")"

status=0
if [ "$INVALID" != 0 ]; then
    log "not every model loaded or answered: the run is not valid"
    status=1
fi
if [ "$ok_idle$ok_start$ok_over$ok_over_warm" != 1111 ]; then status=1; fi
exit "$status"
