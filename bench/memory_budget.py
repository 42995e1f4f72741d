"""Memory budget benchmark (issue 16): ten models, a budget for three, a random request mix.

    python bench/memory_budget.py [LECTERN_BIN] [SECONDS] [WEIGHT_MIB]

Run with the test suite's Python (.venv: numpy, onnx, requests). Ten MatMul models (FP32 X
[N, 64] times a weight of WEIGHT_MIB MiB, default 64) are written to a temporary repository,
all `lazy = true` so that the server starts with none loaded.

1. Sizes: a server with a budget too large to matter loads one model; its
   `lectern_model_resident_bytes` is the size S a loaded model holds, the growth of the
   server's peak RSS (VmHWM, reset through /proc/PID/clear_refs) across the load is the peak P
   a load needs, and its RSS before the load is the server's base.
2. Mix: a server with `--memory-budget 2 x S + P` (three models: two loaded while a third
   loads) takes SECONDS (default 60) of requests from 4 client threads, each to a model drawn
   at random among the ten; every answer is checked (status 200, the expected product). The
   server's RSS (VmRSS) is sampled every 10 ms, and its peak (VmHWM, over its whole life) read
   at the end; both must stay within (budget + base) x 1.1. Loads and evictions come from
   /metrics.
3. Cycles: a server with a budget for one model (1.2 x P) is asked alternately for two models,
   100 times each way: every request loads one and unloads the other. RSS after each cycle
   shows whether an unload gives the memory back (first, last, largest, and the growth from
   the 10th to the 100th cycle).
"""
from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))

from conftest import LecternServer  # noqa: E402
from lectern_v2 import metric_value, parse_metrics  # noqa: E402
from test_memory_budget import WIDTH, matmul_model  # noqa: E402

MIB = 1 << 20
MODELS = 10
CLIENTS = 4


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss(pid: int) -> int:
    return status_kib(pid, "VmRSS") * 1024


def metrics(srv) -> list:
    return parse_metrics(requests.get(srv.url + "/metrics", timeout=30).text)


def infer(srv, name: str, x: np.ndarray) -> requests.Response:
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, WIDTH], "data": x.ravel().tolist()}]}
    return requests.post(f"{srv.url}/v2/models/{name}/infer", json=body, timeout=120)


def start(work: Path, models: Path, label: str, extra: list[str]) -> LecternServer:
    data = work / f"data-{label}"
    data.mkdir()
    return LecternServer(models, data, extra_args=extra, binary=BINARY)


def settle(pid: int) -> int:
    time.sleep(1.0)
    return rss(pid)


def measure_size(work: Path, models: Path) -> tuple[int, int, int]:
    srv = start(work, models, "size", ["--memory-budget", "64GiB"])
    pid = srv.proc.pid
    try:
        x = np.ones((1, WIDTH), dtype=np.float32)
        base = settle(pid)
        # the first load of the engine is made twice (its one-time set-up is the base's)
        assert infer(srv, "m0", x).status_code == 200
        before = settle(pid)
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        assert infer(srv, "m1", x).status_code == 200
        peak = status_kib(pid, "VmHWM") * 1024 - before
        size = int(metric_value(metrics(srv), "lectern_model_resident_bytes", model="m1"))
        loaded = settle(pid)
        print(f"one model: file {os.path.getsize(models / 'm0' / '1' / 'model.onnx') / MIB:.1f} MiB, "
              f"held S = {size / MIB:.1f} MiB, load peak P = {peak / MIB:.1f} MiB, "
              f"RSS {base / MIB:.1f} -> {before / MIB:.1f} -> {loaded / MIB:.1f} MiB (none, one, two models)")
        return size, peak, base
    finally:
        srv.cleanup()


def mix(work: Path, models: Path, weights: dict, budget: int, base: int, seconds: float) -> bool:
    srv = start(work, models, "mix", ["--memory-budget", str(budget)])
    pid = srv.proc.pid
    peak_sampled = [0]
    stop = threading.Event()
    failures: list[str] = []
    answered = [0] * CLIENTS
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]

    def sample():
        while not stop.is_set():
            peak_sampled[0] = max(peak_sampled[0], rss(pid))
            time.sleep(0.01)

    def client(ix: int):
        rng = random.Random(ix)
        x = np.linspace(-1, 1, WIDTH, dtype=np.float32).reshape(1, WIDTH)
        session = requests.Session()
        while not stop.is_set():
            name = f"m{rng.randrange(MODELS)}"
            began = time.perf_counter()
            body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, WIDTH], "data": x.ravel().tolist()}]}
            resp = session.post(f"{srv.url}/v2/models/{name}/infer", json=body, timeout=120)
            latencies[ix].append(time.perf_counter() - began)
            if resp.status_code != 200:
                failures.append(f"{name}: {resp.status_code} {resp.text[:200]}")
                continue
            got = np.array(resp.json()["outputs"][0]["data"], dtype=np.float32)
            if not np.allclose(got, (x @ weights[name]).ravel(), rtol=1e-4, atol=1e-4):
                failures.append(f"{name}: a wrong answer")
            answered[ix] += 1

    try:
        sampler = threading.Thread(target=sample)
        sampler.start()
        clients = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for c in clients:
            c.start()
        time.sleep(seconds)
        stop.set()
        for c in clients:
            c.join()
        sampler.join()
        peak = status_kib(pid, "VmHWM") * 1024
        samples = metrics(srv)
        loads = metric_value(samples, "lectern_model_loads_total") or 0
        evictions = metric_value(samples, "lectern_model_evictions_total") or 0
        resident = metric_value(samples, "lectern_model_resident_bytes") or 0
        limit = (budget + base) * 1.1
        all_latencies = sorted(sum(latencies, []))
        p50 = statistics.median(all_latencies) * 1000 if all_latencies else 0
        p99 = all_latencies[int(len(all_latencies) * 0.99)] * 1000 if all_latencies else 0
        print(f"mix: {seconds:.0f} s, {CLIENTS} clients, {MODELS} models, budget {budget / MIB:.1f} MiB, "
              f"base {base / MIB:.1f} MiB, limit (budget + base) x 1.1 = {limit / MIB:.1f} MiB")
        print(f"  requests answered {sum(answered)}, failed {len(failures)}; latency p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms")
        print(f"  loads {loads:.0f}, evictions {evictions:.0f}, resident at the end {resident / MIB:.1f} MiB")
        print(f"  RSS largest sample {peak_sampled[0] / MIB:.1f} MiB, peak (VmHWM) {peak / MIB:.1f} MiB "
              f"-> {'within' if peak <= limit else 'OVER'} the limit")
        for f in failures[:5]:
            print("  failure:", f)
        return not failures and peak <= limit and evictions > 0
    finally:
        srv.cleanup()


def cycles(work: Path, models: Path, size: int, peak: int, base: int, n: int = 100) -> None:
    budget = int(peak * 1.2)
    srv = start(work, models, "cycles", ["--memory-budget", str(budget)])
    pid = srv.proc.pid
    x = np.ones((1, WIDTH), dtype=np.float32)
    after = []
    try:
        for i in range(n):
            for name in ("m0", "m1"):
                resp = infer(srv, name, x)
                assert resp.status_code == 200, resp.text
            time.sleep(0.05)  # the unloaded model's threads stop and hand the memory back
            after.append(rss(pid))
        samples = metrics(srv)
        evictions = metric_value(samples, "lectern_model_evictions_total") or 0
        print(f"cycles: {n} x (load m0 unloading m1, load m1 unloading m0), budget {budget / MIB:.1f} MiB, "
              f"evictions {evictions:.0f}")
        print(f"  RSS after cycle 1 {after[0] / MIB:.1f} MiB, 10 {after[9] / MIB:.1f}, {n} {after[-1] / MIB:.1f}, "
              f"largest {max(after) / MIB:.1f}; growth 10 -> {n}: {(after[-1] - after[9]) / MIB:+.1f} MiB "
              f"(one model: {size / MIB:.1f} MiB, base {base / MIB:.1f} MiB)")
    finally:
        srv.cleanup()


def main() -> int:
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    weight_mib = float(sys.argv[3]) if len(sys.argv) > 3 else 64.0
    work = Path(tempfile.mkdtemp(prefix="memory-budget-bench-"))
    try:
        models = work / "models"
        models.mkdir()
        weights = {f"m{i}": matmul_model(models, f"m{i}", weight_mib, "lazy = true\n", seed=i) for i in range(MODELS)}
        size, peak, base = measure_size(work, models)
        passed = mix(work, models, weights, 2 * size + peak, base, seconds)
        cycles(work, models, size, peak, base)
        print("PASS" if passed else "FAIL")
        return 0 if passed else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


BINARY = Path(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] not in ("-", "") else None

if __name__ == "__main__":
    sys.exit(main())
