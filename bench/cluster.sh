#!/usr/bin/env bash
# Cluster benchmark (issue 15): the NATS hop's added latency, and the throughput of two
# workers over one on a compute-bound model. What it runs and the targets: bench/cluster.py.
#
#   bench/cluster.sh
#   BENCH_ROUNDS=1 BENCH_DURATION=5 bench/cluster.sh
#
# Environment:
#   BENCH_DURATION     seconds per measured run (default 10)
#   BENCH_ROUNDS       rounds, interleaved (default 3)
#   BENCH_NATS         NATS server with JetStream (default nats://127.0.0.1:4222)
#   BENCH_NO_BUILD=1   use the release binary already built
#   CARGO_TARGET_DIR   default $HOME/.cache/lectern/target
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
command -v wrk >/dev/null || { log "wrk missing: run bench/setup.sh"; exit 1; }
build_lectern
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { log "no .venv: run scripts/test.sh once (it makes .venv with scikit-learn, skl2onnx, nats-py)"; exit 1; }
log "lectern $(lectern_version), $(nproc) cores"
LECTERN_BIN="$LECTERN_BIN" "$PY" "$ROOT/bench/cluster.py"
