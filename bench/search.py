#!/usr/bin/env python3
"""Collections search at scale: recall@10 against NumPy's exact search, and latency.

    bench/search.py [--items 100000] [--dimension 384] [--queries 200]

Starts Lectern (the release binary, or $LECTERN_BIN) on an empty data folder, fills a
collection with random unit vectors (PUT in chunks of 2048), then sends queries — random
vectors, some with a metadata filter — and compares each answer's top 10 with NumPy's exact
top 10. Prints recall@10, p50/p99 latency of the search request (HTTP included), and the
process's resident memory. Lectern searches exactly, so recall is 1.0 unless a result is
wrong; the number that matters is the latency.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent


def start(binary: str, data: Path):
    proc = subprocess.Popen(
        [binary, "serve", "--models", str(data / "models"), "--data", str(data), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    match = re.search(r"http://\S+", line)
    if not match:
        proc.kill()
        sys.exit(f"lectern did not start: {line!r}")
    url = match.group(0)
    for _ in range(100):
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=1).ok:
                return proc, url
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    sys.exit("lectern never became ready")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    binary = os.environ.get("LECTERN_BIN") or str(Path(os.environ.get(
        "CARGO_TARGET_DIR", Path.home() / ".cache/lectern/target")) / "release/lectern")
    rng = np.random.default_rng(args.seed)
    vectors = rng.standard_normal((args.items, args.dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    groups = rng.integers(0, 10, args.items)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        (data / "models").mkdir()
        proc, url = start(binary, data)
        session = requests.Session()
        try:
            began = time.perf_counter()
            for start_at in range(0, args.items, 2048):
                chunk = range(start_at, min(start_at + 2048, args.items))
                body = {"items": [{"id": f"v{i}", "vector": vectors[i].tolist(), "metadata": {"group": int(groups[i])}}
                                  for i in chunk]}
                if start_at == 0:
                    body["dimension"] = args.dimension
                r = session.put(f"{url}/v1/collections/bench", json=body, timeout=300)
                r.raise_for_status()
            fill_s = time.perf_counter() - began
            queries = rng.standard_normal((args.queries, args.dimension)).astype(np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            first = time.perf_counter()
            session.post(f"{url}/v1/collections/bench/search", json={"vector": queries[0].tolist(), "k": 10},
                         timeout=300).raise_for_status()
            load_s = time.perf_counter() - first
            latencies, recalls = [], []
            for qi, q in enumerate(queries):
                filtered = qi % 2 == 1
                body = {"vector": q.tolist(), "k": 10}
                scores = vectors @ q
                if filtered:
                    body["filter"] = {"group": 3}
                    scores = np.where(groups == 3, scores, -np.inf)
                expected = {f"v{i}" for i in np.argsort(-scores)[:10]}
                t = time.perf_counter()
                r = session.post(f"{url}/v1/collections/bench/search", json=body, timeout=60)
                latencies.append(time.perf_counter() - t)
                r.raise_for_status()
                got = {hit["id"] for hit in r.json()["results"]}
                recalls.append(len(got & expected) / 10)
            memory = rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
    lat = np.array(latencies) * 1000
    print(f"items={args.items} dimension={args.dimension} queries={args.queries} (half with a metadata filter)")
    print(f"fill: {fill_s:.1f} s ({args.items / fill_s:.0f} items/s); first search (loads the index): {load_s * 1000:.0f} ms")
    print(f"recall@10 = {np.mean(recalls):.4f} (min {np.min(recalls):.2f})")
    print(f"search latency: p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms")
    print(f"lectern RSS after the run: {memory:.0f} MiB")


if __name__ == "__main__":
    main()
