"""Warmup benchmark (issue 16): the first request after a load, with and without `[[warmup]]`.

Two copies of the same model (default examples/models/digits-cnn) are served, one with a
`[[warmup]]` sample in its config. Each round reloads both (POST .../load: new sessions) and
times the first request to each, then the tenth (a warm session). Prints medians and the ratio
of first to warm request for both; warmup works when the warmed copy's first request is as
fast as a warm one.

    python bench/warmup.py [LECTERN_BIN] [ROUNDS] [MODEL]

MODEL is a folder of examples/models, or `minilm` (the all-MiniLM-L6-v2 text encoder of the
test suite, one sentence per request). BENCH_ENGINE=ort serves both copies with ONNX Runtime
(a binary built with `--features lectern-backends/ort`, ORT_DYLIB_PATH naming the library).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))

from conftest import LecternServer  # noqa: E402


def request_for(metadata: dict) -> dict:
    inputs = []
    for i in metadata["inputs"]:
        shape = [1 if d < 0 else d for d in i["shape"]]
        n = 1
        for d in shape:
            n *= d
        value = "the quick brown fox jumps over the lazy dog" if i["datatype"] == "BYTES" else 0.5
        inputs.append({"name": i["name"], "datatype": i["datatype"], "shape": shape, "data": [value] * n})
    return {"inputs": inputs}


def main() -> int:
    binary = sys.argv[1] if len(sys.argv) > 1 else None
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    model = sys.argv[3] if len(sys.argv) > 3 else "digits-cnn"
    work = Path(tempfile.mkdtemp(prefix="warmup-bench-"))
    models = work / "models"
    for name in ("cold", "warm"):
        if model == "minilm":
            from lectern_text import make_encoder_repo

            make_encoder_repo(models, name)
        else:
            shutil.copytree(ROOT / "examples" / "models" / model, models / name)
    for name in ("cold", "warm"):
        c = models / name / "config.toml"
        chosen = os.environ.get("BENCH_ENGINE")
        head = "instances = 1\n" + (f'engine = "{chosen}"\n' if chosen else "")
        c.write_text(head + (c.read_text() if c.exists() else ""))
    config = models / "warm" / "config.toml"
    config.write_text(config.read_text() + "\n[[warmup]]\ninputs = \"random\"\nbatch_size = 1\ncount = 2\n")
    (work / "data").mkdir()
    server = LecternServer(models, work / "data", binary=binary)
    try:
        body = request_for(server.get("/v2/models/cold").json())
        session = requests.Session()
        times = {"cold": [], "warm": [], "steady": []}
        engine = {"cold": [], "warm": [], "steady": []}

        def compute_ns(name):
            stats = session.get(f"{server.url}/v2/models/{name}/stats").json()["model_stats"][0]
            return stats["inference_stats"]["compute_infer"]["ns"]

        def timed(name, kind):
            before = compute_ns(name)
            t = time.perf_counter()
            r = session.post(f"{server.url}/v2/models/{name}/infer", json=body)
            took = (time.perf_counter() - t) * 1e3
            assert r.status_code == 200, r.text
            times[kind].append(took)
            engine[kind].append((compute_ns(name) - before) / 1e6)

        for _ in range(rounds):
            for name in ("cold", "warm"):
                assert session.post(f"{server.url}/v2/repository/models/{name}/load").status_code == 200
                timed(name, name)
            for _ in range(9):
                session.post(f"{server.url}/v2/models/cold/infer", json=body)
            timed("cold", "steady")
        med = {k: statistics.median(v) for k, v in times.items()}
        eng = {k: statistics.median(v) for k, v in engine.items()}
        print(json.dumps({"model": model, "rounds": rounds, "median_ms": med, "engine_median_ms": eng}, indent=1))
        for label, kind in [("first request without warmup", "cold"), ("first request with warmup", "warm"),
                            ("warm request", "steady")]:
            print(f"{label:29}: {med[kind]:7.2f} ms whole ({med[kind] / med['steady']:.2f}x), "
                  f"{eng[kind]:7.3f} ms in the engine ({eng[kind] / eng['steady']:.2f}x)")
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
