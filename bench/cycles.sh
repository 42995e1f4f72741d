#!/usr/bin/env bash
# shellcheck disable=SC2317  # the cycle functions are called indirectly ("$fn")
# Memory over load/unload cycles: does a model that is unloaded and loaded again (or whose
# versions come and go) give its memory back?
#
#   bench/cycles.sh
#   LECTERN_BIN=target/debug/lectern bench/cycles.sh     # any binary (numbers are that build's)
#   BENCH_CYCLES=200 BENCH_MODEL=digits-cnn bench/cycles.sh
#
# One `lectern serve` over a copy of examples/models, on loopback, with no key (open). Two
# variants, each BENCH_CYCLES cycles (default 50), each cycle followed by one inference (so the
# loaded model runs and allocates what a request needs) and a read of VmRSS from
# /proc/PID/status after BENCH_SETTLE seconds (default 0.2):
#   repository: POST /v2/repository/models/M/unload, then .../load (the V2 repository routes)
#   versions:   POST /v1/models/cycles/versions (a new version of an API-made model, which is
#               then served), then DELETE /v1/models/cycles/versions/N (back to the base version)
# Prints the RSS after cycle 1 and after the last cycle, their ratio, and the growth per cycle:
# the least-squares slope of RSS over the cycles after the first fifth (the warm-up, while the
# allocator's arenas and the engine's caches fill).
#
# Target (issue 3): memory given back, judged by the slope: at most BENCH_MAX_GROWTH_KB
# (default 8) KB per cycle. A whole-process ratio would hide a leak: 10% of ~30 MB lets
# ~60 KB a cycle through 50 cycles. Prints PASS/FAIL for each variant; exits 0 only if both pass.
#
# Environment:
#   LECTERN_BIN      the binary (default: the release build in $CARGO_TARGET_DIR, built with
#                    `cargo build --release` when it is not there yet, or when BENCH_BUILD=1)
#   BENCH_CYCLES     cycles per variant (default 50)
#   BENCH_MODEL      the bundled model cycled by the repository variant (default iris-logreg);
#                    the versions variant uploads that model's newest file
#   BENCH_SETTLE     seconds between the end of a cycle and the RSS read (default 0.2)
#   BENCH_MAX_GROWTH_KB  the largest growth per cycle that passes (default 8)
#   BENCH_CPUS       taskset CPU list for the server (default: none, all cores)
#   CARGO_TARGET_DIR default $HOME/.cache/lectern/target
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

CYCLES="${BENCH_CYCLES:-50}"
MODEL="${BENCH_MODEL:-iris-logreg}"
SETTLE="${BENCH_SETTLE:-0.2}"
MAX_GROWTH_KB="${BENCH_MAX_GROWTH_KB:-8}"
CPUS="${BENCH_CPUS:-}"
case "$LECTERN_BIN" in /*) ;; *) LECTERN_BIN="$ROOT/$LECTERN_BIN" ;; esac

[ "$CYCLES" -ge 10 ] 2>/dev/null || { log "BENCH_CYCLES must be at least 10 (a slope needs points)"; exit 2; }
[ -d "$ROOT/examples/models/$MODEL" ] || { log "no bundled model $MODEL in examples/models"; exit 2; }
if [ ! -x "$LECTERN_BIN" ] || [ "${BENCH_BUILD:-0}" = 1 ]; then
    build_lectern
fi
case "$LECTERN_BIN" in
*/release/*) BUILD="release" ;;
*/debug/*) BUILD="debug (numbers are not those of a release build)" ;;
*) BUILD="unknown build" ;;
esac

cp -r "$ROOT/examples/models" "$WORK/models"
mkdir -p "$WORK/data"
NEWEST="$(find "$WORK/models/$MODEL" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*' -printf '%f\n' | sort -n | tail -1)"
MODEL_FILE="$WORK/models/$MODEL/$NEWEST/model.onnx"

PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
log "starting $LECTERN_BIN on 127.0.0.1:$PORT ($BUILD)"
# shellcheck disable=SC2086
"${PRIO[@]}" ${CPUS:+taskset -c "$CPUS"} "$LECTERN_BIN" serve --models "$WORK/models" --data "$WORK/data" \
    --listen "127.0.0.1:$PORT" --log warn >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 600); do
    if curl -sf -o /dev/null "$BASE/v2/health/ready"; then break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { log "lectern exited before ready:"; tail -n 20 "$WORK/server.err" >&2; exit 1; }
    sleep 0.05
done
curl -sf -o /dev/null "$BASE/v2/health/ready" || { log "not ready after 30 s"; exit 1; }
# The pid that answers is the server itself (setsid/nice exec into it).
grep -q '^Name:.*lectern' "/proc/$SERVER_PID/status" || { log "pid $SERVER_PID is not lectern"; exit 1; }

# request METHOD PATH [curl args...]: the body on stdout; fails unless the status is 2xx.
request() {
    local method="$1" path="$2" out status
    shift 2
    out="$WORK/answer"
    status="$(curl -s -o "$out" -w '%{http_code}' -X "$method" "$@" "$BASE$path")"
    if [ "${status:0:1}" != 2 ]; then
        log "$method $path answered $status: $(head -c 300 "$out")"
        return 1
    fi
    cat "$out"
}

# An inference body for MODEL: every input filled with ones, free dimensions set to 1.
infer_body() {
    request GET "/v2/models/$1" | python3 -c '
import json, sys
meta = json.load(sys.stdin)
inputs = []
for spec in meta["inputs"]:
    shape = [1 if int(d) < 0 else int(d) for d in spec["shape"]]
    n = 1
    for d in shape:
        n *= d
    value = {"BOOL": True, "BYTES": "a"}.get(spec["datatype"], 1)
    inputs.append({"name": spec["name"], "datatype": spec["datatype"], "shape": shape, "data": [value] * n})
print(json.dumps({"inputs": inputs}))'
}

infer() {
    request POST "/v2/models/$1/infer" -H 'Content-Type: application/json' --data-binary "@$WORK/body-$1.json" >/dev/null
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status"; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f MB", kb / 1024 }'; }

# cycles NAME FUNCTION: runs FUNCTION (one cycle) CYCLES times, reading RSS after each into
# $WORK/rss-NAME ("cycle kB" lines).
declare -A FIRST LAST PEAK SERIES
cycles() {
    local name="$1" fn="$2" i rss peak=0 series=""
    : >"$WORK/rss-$name"
    for i in $(seq "$CYCLES"); do
        "$fn" "$i"
        sleep "$SETTLE"
        rss="$(rss_kb)"
        echo "$i $rss" >>"$WORK/rss-$name"
        [ "$i" = 1 ] && FIRST[$name]="$rss"
        [ "$rss" -gt "$peak" ] && peak="$rss"
        if [ "$i" = 1 ] || [ $((i % 10)) = 0 ] || [ "$i" = "$CYCLES" ]; then series+=" $i:$(awk -v kb="$rss" 'BEGIN { printf "%.1f", kb / 1024 }')"; fi
    done
    LAST[$name]="$rss"
    PEAK[$name]="$peak"
    SERIES[$name]="$series"
}

# --- variant 1: V2 repository unload + load of MODEL
infer_body "$MODEL" >"$WORK/body-$MODEL.json"
infer "$MODEL"
repository_cycle() {
    request POST "/v2/repository/models/$MODEL/unload" >/dev/null
    request POST "/v2/repository/models/$MODEL/load" >/dev/null
    infer "$MODEL"
}
START_RSS="$(rss_kb)"
log "repository variant: $CYCLES cycles of unload + load of $MODEL"
cycles repository repository_cycle

# --- variant 2: upload a new version of an API-made model, serve it, delete it
request POST /v1/models -H 'Content-Type: application/json' --data-binary '{"name": "cycles"}' >/dev/null
request POST /v1/models/cycles/versions --data-binary "@$MODEL_FILE" >/dev/null
infer_body cycles >"$WORK/body-cycles.json"
infer cycles
versions_cycle() {
    local version
    version="$(request POST /v1/models/cycles/versions --data-binary "@$MODEL_FILE" | python3 -c '
import json, sys
answer = json.load(sys.stdin)
assert answer["version"]["state"] == "READY" and answer["version"]["serving"], answer["version"]
print(answer["version"]["version"])')"
    infer cycles
    request DELETE "/v1/models/cycles/versions/$version" >/dev/null
    infer cycles
}
log "versions variant: $CYCLES cycles of upload + delete of a version of 'cycles'"
cycles versions versions_cycle

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b / a }'; }
# growth FILE: kB per cycle, the least-squares slope of the "cycle kB" lines after the first fifth.
growth() {
    awk -v skip="$((CYCLES / 5))" '$1 > skip { n++; sx += $1; sy += $2; sxx += $1 * $1; sxy += $1 * $2 }
        END { d = n * sxx - sx * sx; if (n < 2 || d == 0) { print "nan"; exit 1 }; printf "%.2f", (n * sxy - sx * sy) / d }' "$1"
}
verdict() { awk -v g="$1" -v max="$MAX_GROWTH_KB" 'BEGIN { print (g <= max) ? "PASS" : "FAIL" }'; }

echo
echo "Memory over load/unload cycles: Lectern $(lectern_version), $BUILD"
echo "binary: $LECTERN_BIN"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); model $MODEL; $CYCLES cycles per variant; RSS read ${SETTLE}s after each cycle; RSS before the cycles $(mb "$START_RSS")"
echo
echo "| variant | RSS after cycle 1 | RSS after cycle $CYCLES | ratio | peak | RSS (MB) by cycle | growth per cycle (cycles $((CYCLES / 5 + 1))-$CYCLES) | target (<= $MAX_GROWTH_KB KB) |"
echo "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |"
status=0
for name in repository versions; do
    g="$(growth "$WORK/rss-$name")" || g=nan
    v="$(verdict "$g")"
    [ "$v" = PASS ] || status=1
    printf '| %s | %s | %s | %s | %s |%s | %s KB | %s |\n' "$name" "$(mb "${FIRST[$name]}")" "$(mb "${LAST[$name]}")" \
        "$(ratio "${FIRST[$name]}" "${LAST[$name]}")" "$(mb "${PEAK[$name]}")" "${SERIES[$name]}" "$g" "$v"
done
kill -0 "$SERVER_PID" 2>/dev/null || { log "the server died during the cycles"; status=1; }
exit "$status"
