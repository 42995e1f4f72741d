#!/usr/bin/env python3
"""Inference latency while models train (issue 11): p99 of V2 infer with and without two
training jobs running on the same server.

    cargo build --release && .venv/bin/python bench/train_load.py
    LECTERN_BIN=$CARGO_TARGET_DIR/release/lectern .venv/bin/python bench/train_load.py

One server (`--training-workers 2`) serves examples/models (iris-logreg). A closed loop of
BENCH_CLIENTS (4) keep-alive clients posts one iris row for BENCH_SECONDS (15) and records
each latency: first alone, then while two random-forest jobs (BENCH_TREES trees, 400 by
default, on a synthetic dataset of BENCH_ROWS rows x 20 features) train. If a job finishes
before the loaded phase ends, the phase stops there. Prints both p50/p99 and the ratio (the
goal: p99 under training at most 2x p99 without).
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("LECTERN_BIN", ROOT / "target" / "release" / "lectern"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "4"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))
ROWS = int(os.environ.get("BENCH_ROWS", "50000"))
TREES = int(os.environ.get("BENCH_TREES", "400"))
BODY = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | str | None = None, content_type="application/json"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else None


def load(port: int, seconds: float, stop: threading.Event | None = None) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            start = time.perf_counter()
            conn.request("POST", "/v2/models/iris-logreg/infer", body=BODY,
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"infer answered {response.status}")
            mine.append(time.perf_counter() - start)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def synthetic_csv(rows: int) -> bytes:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 20)).round(4)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int) + (x[:, 3] > 1).astype(int)
    header = ",".join(f"f{i}" for i in range(20)) + ",label\n"
    lines = "\n".join(",".join(map(str, r)) + f",{c}" for r, c in zip(x.tolist(), y.tolist()))
    return (header + lines + "\n").encode()


def main() -> int:
    if not BIN.exists():
        print(f"no lectern binary at {BIN} (set LECTERN_BIN)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="lectern-train-load-"))
    models = work / "models"
    shutil.copytree(ROOT / "examples" / "models", models)
    port = free_port()
    server = subprocess.Popen(
        [str(BIN), "serve", "--models", str(models), "--data", str(work / "data"),
         "--listen", f"127.0.0.1:{port}", "--training-workers", "2", "--log", "warn"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for line in server.stdout:
            if b"listening" in line:
                break
        status, _ = request(port, "POST", "/v1/datasets/bench", synthetic_csv(ROWS), "text/csv")
        assert status in (200, 201), status
        load(port, 3)  # warm-up
        alone = load(port, SECONDS)
        jobs = []
        for seed in (1, 2):
            status, job = request(port, "POST", "/v1/training-jobs", json.dumps({
                "dataset": "bench", "target": "label", "model": f"bench-forest-{seed}",
                "algorithm": "random_forest", "params": {"n_trees": TREES}, "seed": seed}))
            assert status == 202, (status, job)
            jobs.append(job["id"])
        while any(request(port, "GET", f"/v1/training-jobs/{j}")[1]["state"] != "running" for j in jobs):
            time.sleep(0.1)
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                states = [request(port, "GET", f"/v1/training-jobs/{j}")[1]["state"] for j in jobs]
                if any(s != "running" for s in states):
                    stop.set()
                time.sleep(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.monotonic()
        loaded = load(port, SECONDS, stop)
        loaded_seconds = time.monotonic() - started
        still_running = not stop.is_set()
        stop.set()
        for j in jobs:
            request(port, "DELETE", f"/v1/training-jobs/{j}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    p99_alone, p99_loaded = percentile(alone, 99), percentile(loaded, 99)
    print(f"{'phase':<22} {'requests':>9} {'rps':>8} {'p50_ms':>8} {'p99_ms':>8}")
    print(f"{'inference alone':<22} {len(alone):>9} {len(alone) / SECONDS:>8.0f} "
          f"{percentile(alone, 50) * 1e3:>8.2f} {p99_alone * 1e3:>8.2f}")
    print(f"{'with 2 training jobs':<22} {len(loaded):>9} {len(loaded) / loaded_seconds:>8.0f} "
          f"{percentile(loaded, 50) * 1e3:>8.2f} {p99_loaded * 1e3:>8.2f}")
    print(f"p99 ratio (with / without training): {p99_loaded / p99_alone:.2f}  (goal: at most 2.00)"
          + ("" if still_running else f"  [a job ended after {loaded_seconds:.1f} s]"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
