"""Cluster benchmark (issue 15), run by bench/cluster.sh. Two measurements, each with fresh
processes, rounds interleaved, medians reported:

1. The NATS hop. The same tiny model (iris-logreg, one 4-float row) answered by a gateway that
   serves it itself ("local") and by a gateway that sends it over NATS to one worker
   ("cluster"); wrk at concurrency 1. Target: cluster p50 - local p50 < 300 us.
2. Scaling out. A compute-bound model (an MLP of three 1024-unit layers, generated here with
   scikit-learn and skl2onnx; 64 rows of 64 values per request; `instances = 1`, batching off, so one
   worker computes on one core) placed on one worker pinned to one core, then on two workers
   pinned to different cores (replicas = 2); wrk at concurrency 8 through the gateway.
   Target: two workers >= 1.7x the requests per second of one.

Every answer checked: the cluster's must equal the local gateway's (the same engine and file).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ["LECTERN_BIN"])
NATS = os.environ.get("BENCH_NATS", "nats://127.0.0.1:4222")
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WORK = Path(tempfile.mkdtemp(prefix="lectern-bench-cluster."))
PROCS: list[subprocess.Popen] = []
CLUSTERS: list[str] = []

IRIS = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], cpus: str | None, log_name: str) -> subprocess.Popen:
    prefix = ["taskset", "-c", cpus] if cpus else []
    out = open(WORK / log_name, "w")
    p = subprocess.Popen([*prefix, str(BIN), *args], stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    PROCS.append(p)
    return p


def stop_all():
    for p in PROCS:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in PROCS:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    PROCS.clear()


def post(url: str, body: dict, timeout: float = 10) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except OSError as e:
        return -1, {"error": str(e)}


def wait_answer(url: str, body: dict, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, answer = post(url, body)
        if code == 200:
            return answer
        time.sleep(0.1)
    raise SystemExit(f"no answer from {url} within {timeout} s (last: {code} {answer}); logs in {WORK}")


def gateway(models: Path, port: int, cluster: str | None, cpus: str | None) -> str:
    data = WORK / f"gw-{port}"
    data.mkdir()
    args = ["serve", "--models", str(models), "--listen", f"127.0.0.1:{port}", "--data", str(data), "--log", "warn"]
    if cluster:
        args += ["--nats", NATS, "--cluster", cluster]
    start(args, cpus, f"gateway-{port}.log")
    return f"http://127.0.0.1:{port}"


def worker(cluster: str, name: str, cpus: str | None):
    start(["worker", "--nats", NATS, "--cluster", cluster, "--name", name, "--log", "warn"], cpus, f"{name}.log")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes and their threads so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def nats_pids() -> list[int]:
    out = subprocess.run(["pidof", "nats-server"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def wrk(url: str, body: dict, conns: int, seconds: int, watch: list[int] | None = None) -> dict:
    body_file = WORK / "body.json"
    body_file.write_text(json.dumps(body))
    env = dict(os.environ, BENCH_BODY_FILE=str(body_file))
    before = cpu_seconds(watch or [])
    out = subprocess.run(["wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "--latency",
                          "-s", str(ROOT / "bench" / "post.lua"), url], capture_output=True, text=True, env=env)
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    fields = dict(re.findall(r"(\w+)=([\d.]+)", line))
    # CPU of the watched processes (and of wrk itself, from its own accounting) per request.
    used = cpu_seconds(watch or []) - before + resource_children_delta()
    fields["other_cpu_ms"] = str(1000 * used / max(1.0, float(fields["requests"])))
    if int(fields["non2xx"]) or int(fields["socket_errors"]):
        raise SystemExit(f"failed requests during the run: {line}")
    return {k: float(v) for k, v in fields.items()}


_CHILDREN = [0.0]


def resource_children_delta() -> float:
    """CPU used by the children that ended since the last call (wrk)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = r.ru_utime + r.ru_stime
    delta, _CHILDREN[0] = total - _CHILDREN[0], total
    return delta


def cluster_name() -> str:
    name = "bench" + uuid.uuid4().hex[:8]
    CLUSTERS.append(name)
    return name


def delete_streams():
    try:
        import asyncio

        import nats  # type: ignore

        async def go():
            nc = await nats.connect(NATS)
            js = nc.jetstream()
            for name in CLUSTERS:
                try:
                    await js.delete_stream(f"KV_{name}")
                except Exception:  # noqa: BLE001
                    pass
            await nc.close()
        asyncio.run(go())
    except Exception as e:  # noqa: BLE001
        log(f"could not delete the benchmark's streams: {e}")


# ------------------------------------------------------------------------------ 1. the hop

def hop_round(models: Path) -> tuple[float, float]:
    local_url = gateway(models, free_port(), None, "1") + "/v2/models/iris-logreg/infer"
    name = cluster_name()
    cluster_url = gateway(models, free_port(), name, "1") + "/v2/models/iris-logreg/infer"
    worker(name, "hop", "1")
    local, remote = wait_answer(local_url, IRIS), wait_answer(cluster_url, IRIS)
    assert local == remote, (local, remote)
    wrk(local_url, IRIS, 1, 2)
    wrk(cluster_url, IRIS, 1, 2)
    a = wrk(local_url, IRIS, 1, DURATION)
    b = wrk(cluster_url, IRIS, 1, DURATION)
    stop_all()
    return a["p50_us"], b["p50_us"]


# ------------------------------------------------------------------------------ 2. scaling out

def heavy_model(folder: Path):
    """An MLP of three 1024-unit layers on 64 inputs (fitted for one step on random data:
    the weights do not matter, the arithmetic does). 12 MB of weights: two workers' copies fit
    in the shared L3 cache, so that the two cores do not wait on memory."""
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPRegressor

    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=(64, 64)), 2).astype(np.float32)
    y = rng.normal(size=(64, 8)).astype(np.float32)
    mlp = MLPRegressor(hidden_layer_sizes=(1024, 1024, 1024), max_iter=1).fit(x, y)
    onx = to_onnx(mlp, x[:1], target_opset=15)
    (folder / "heavy" / "1").mkdir(parents=True)
    (folder / "heavy" / "1" / "model.onnx").write_bytes(onx.SerializeToString())
    return x


def scale_round(models: Path, body: dict, reference: dict, workers: int) -> float:
    name = cluster_name()
    # The gateway and wrk share the machine's cores with the workers; each worker has one.
    url = gateway(models, free_port(), name, None) + "/v2/models/heavy/infer"
    gateway_pid = PROCS[-1].pid
    for i in range(workers):
        worker(name, f"heavy{i}", str(i))
    if workers == 2:
        # Both replicas must serve before the run: wait until each has answered.
        deadline = time.monotonic() + 60
        status: dict = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url.replace("/v2/models/heavy/infer", "/v1/cluster"), timeout=5) as r:
                    status = json.loads(r.read())
            except OSError as e:  # not listening yet
                status = {"models": [], "error": str(e)}
            if any(m["name"] == "heavy" and len(m["ready_on"]) == 2 for m in status["models"]):
                break
            time.sleep(0.2)
        else:
            raise SystemExit(f"two replicas were not ready: {status}")
    answer = wait_answer(url, body)
    assert answer["outputs"] == reference["outputs"], "the cluster's answer differs from the local one"
    wrk(url, body, 8, 2)
    resource_children_delta()
    run = wrk(url, body, 8, DURATION, watch=[gateway_pid, *nats_pids()])
    stop_all()
    return run["rps"], float(run["other_cpu_ms"])


def main():
    cores = os.cpu_count() or 1
    if cores < 2:
        raise SystemExit("needs two cores")
    iris = WORK / "iris"
    shutil.copytree(ROOT / "examples" / "models" / "iris-logreg", iris / "iris-logreg")
    heavy = WORK / "heavy-models"
    x = heavy_model(heavy)
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [64, 64], "data": x.ravel().tolist()}]}
    base = 'instances = 1\nbatching = "off"\nmax_batch_size = 256\n'
    (heavy / "heavy" / "config.toml").write_text(base)
    two = WORK / "heavy-two"
    shutil.copytree(heavy, two)
    (two / "heavy" / "config.toml").write_text(base + "replicas = 2\n")

    local_url = gateway(heavy, free_port(), None, None) + "/v2/models/heavy/infer"
    reference = wait_answer(local_url, body)
    stop_all()

    hops, scale, others = [], {1: [], 2: []}, []
    for r in range(ROUNDS):
        log(f"round {r + 1}/{ROUNDS}: NATS hop")
        hops.append(hop_round(iris))
        order = (1, 2) if r % 2 == 0 else (2, 1)
        for n in order:
            log(f"round {r + 1}/{ROUNDS}: {n} worker(s)")
            rps, other = scale_round(heavy if n == 1 else two, body, reference, n)
            scale[n].append(rps)
            others.append(other)
    local_p50 = statistics.median(a for a, _ in hops)
    cluster_p50 = statistics.median(b for _, b in hops)
    added = statistics.median(b - a for a, b in hops)
    one, both = statistics.median(scale[1]), statistics.median(scale[2])
    print(f"NATS hop (iris-logreg, 1 row, concurrency 1, {ROUNDS} rounds of {DURATION} s):")
    print(f"  local p50 {local_p50:.0f} us, over NATS p50 {cluster_p50:.0f} us, added {added:.0f} us "
          f"(rounds: {[round(b - a) for a, b in hops]})")
    print(f"  {'PASS' if added < 300 else 'FAIL'}: added p50 < 300 us")
    print("Scaling out (3x1024 MLP, 64 rows per request, concurrency 8):")
    print(f"  one worker {one:.1f} req/s, two workers {both:.1f} req/s: {both / one:.2f}x "
          f"(rounds: one {[round(v, 1) for v in scale[1]]}, two {[round(v, 1) for v in scale[2]]})")
    # On a machine whose every core runs a worker, the gateway, NATS and the load generator
    # take their CPU from the workers: with c ms of compute and o ms of everything else per
    # request, one worker (the rest riding on the idle core) gives 1000/c req/s and two give at
    # most 2000/(c + o): the ratio is bounded by 2c/(c + o).
    c = 1000 / one
    o = statistics.median(others)
    print(f"  per request: worker compute c = {c:.2f} ms; gateway + NATS + wrk o = {o:.2f} ms of CPU "
          f"(measured); bound on {cores} cores: 2c/(c+o) = {2 * c / (c + o):.2f}x")
    print(f"  {'PASS' if both / one >= 1.7 else 'FAIL'}: two workers >= 1.7x one")
    return 0 if added < 300 and both / one >= 1.7 else 1


if __name__ == "__main__":
    try:
        code = main()
    finally:
        stop_all()
        delete_streams()
        shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(code)
