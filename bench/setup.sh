#!/usr/bin/env bash
# Installs what the comparative benchmark (bench/infer.sh) needs. Idempotent.
#  - Debian's wrk (HTTP/1.1 load generator) and h2load (nghttp2-client: HTTP/2 and gRPC, bench/grpc.sh)
#  - a Python venv with the peer servers: MLServer (+ sklearn runtime) and a
#    FastAPI + uvicorn + onnxruntime wrapper.
# The venv lives at ${LECTERN_BENCH_VENV:-$HOME/.cache/lectern/bench-venv}.
set -euo pipefail

VENV="${LECTERN_BENCH_VENV:-$HOME/.cache/lectern/bench-venv}"
PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v wrk >/dev/null 2>&1 || ! command -v h2load >/dev/null 2>&1; then
    echo "setup: installing wrk and h2load" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk nghttp2-client >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating venv $VENV" >&2
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
fi

# Reinstall only when the pinned requirements changed.
STAMP="$VENV/.lectern-bench-requirements"
if ! cmp -s "$HERE/requirements.txt" "$STAMP" 2>/dev/null; then
    echo "setup: installing peer packages into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r "$HERE/requirements.txt"
    cp "$HERE/requirements.txt" "$STAMP"
fi

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for name in ["mlserver", "mlserver-sklearn", "fastapi", "uvicorn", "onnxruntime",
             "scikit-learn", "skl2onnx", "numpy"]:
    print(f"setup: {name}=={md.version(name)}")
PY
echo "setup: wrk at $(command -v wrk)"
