"""Warmup benchmark (issue 16): the first request after a load, with and without `[[warmup]]`.

Two copies of the same model (default examples/models/digits-cnn) are served, one with a
`[[warmup]]` sample in its config. Each round reloads both (POST .../load: new sessions) and
times the first request to each, then the tenth (a warm session). Prints medians and the ratio
of first to warm request for both; warmup works when the warmed copy's first request is as
fast as a warm one.

    python bench/warmup.py [LECTERN_BIN] [ROUNDS] [MODEL]
"""
from __future__ import annotations

import json
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
        inputs.append({"name": i["name"], "datatype": i["datatype"], "shape": shape, "data": [0.5] * n})
    return {"inputs": inputs}


def main() -> int:
    binary = sys.argv[1] if len(sys.argv) > 1 else None
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    model = sys.argv[3] if len(sys.argv) > 3 else "digits-cnn"
    work = Path(tempfile.mkdtemp(prefix="warmup-bench-"))
    models = work / "models"
    shutil.copytree(ROOT / "examples" / "models" / model, models / "cold")
    shutil.copytree(ROOT / "examples" / "models" / model, models / "warm")
    for name in ("cold", "warm"):
        c = models / name / "config.toml"
        c.write_text("instances = 1\n" + (c.read_text() if c.exists() else ""))
    config = models / "warm" / "config.toml"
    config.write_text(config.read_text() + "\n[[warmup]]\ninputs = \"random\"\nbatch_size = 1\ncount = 2\n")
    (work / "data").mkdir()
    server = LecternServer(models, work / "data", binary=binary)
    try:
        body = request_for(server.get("/v2/models/cold").json())
        session = requests.Session()
        times = {"cold": [], "warm": [], "steady": []}

        def timed(name):
            t = time.perf_counter()
            r = session.post(f"{server.url}/v2/models/{name}/infer", json=body)
            assert r.status_code == 200, r.text
            return (time.perf_counter() - t) * 1e3

        for _ in range(rounds):
            for name in ("cold", "warm"):
                assert session.post(f"{server.url}/v2/repository/models/{name}/load").status_code == 200
                times[name].append(timed(name))
            for _ in range(9):
                timed("cold")
            times["steady"].append(timed("cold"))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(json.dumps({"model": model, "rounds": rounds, "median_ms": med}, indent=1))
        print(f"first request without warmup: {med['cold']:.2f} ms ({med['cold'] / med['steady']:.1f}x a warm one)")
        print(f"first request with warmup:    {med['warm']:.2f} ms ({med['warm'] / med['steady']:.1f}x a warm one)")
        print(f"warm request:                 {med['steady']:.2f} ms")
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
