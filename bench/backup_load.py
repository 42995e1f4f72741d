#!/usr/bin/env python3
"""Backups of a large database while the server writes (issue 12): how long `lectern backup`
and `lectern restore` take, and what a backup does to the latency of writes.

    LECTERN_BIN=$CARGO_TARGET_DIR/debug/lectern .venv/bin/python bench/backup_load.py
    BENCH_ENGINE=postgres BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432 ... bench/backup_load.py

One server (`--data` in a temporary folder; SQLite, or a fresh PostgreSQL database with
BENCH_ENGINE=postgres) is filled with BENCH_ITEMS collection items (384-dimension vectors, in
collections of at most 100,000) and BENCH_DATASETS datasets of about 1 MB. A closed loop then
creates API keys (one small write transaction each, audited) for BENCH_SECONDS (10) alone, and
again while `lectern backup` runs over and over; each write's latency is recorded. Prints the
database and backup sizes, the backup and restore times, and the writes' p50/p99/max with and
without a backup running.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("LECTERN_BIN", ROOT / "target" / "release" / "lectern"))
ENGINE = os.environ.get("BENCH_ENGINE", "sqlite")
POSTGRES = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432").rstrip("/")
ITEMS = int(os.environ.get("BENCH_ITEMS", "100000"))
DATASETS = int(os.environ.get("BENCH_DATASETS", "20"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
DIM = 384


def psql(sql: str):
    subprocess.run(["psql", f"{POSTGRES}/postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True)


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def summary(latencies: list[float]) -> str:
    ms = [x * 1000 for x in latencies]
    return f"n={len(ms)} p50={percentile(ms, 0.5):.1f} ms p99={percentile(ms, 0.99):.1f} ms max={max(ms):.1f} ms"


def main():
    root = Path(tempfile.mkdtemp(prefix="lectern-backup-bench-"))
    data = root / "data"
    data.mkdir()
    database = []
    names = []
    if ENGINE == "postgres":
        for tag in ("source", "restored"):
            name = f"lectern_bench_{tag}_{uuid.uuid4().hex[:8]}"
            psql(f'CREATE DATABASE "{name}"')
            names.append(name)
        database = ["--database", f"{POSTGRES}/{names[0]}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LECTERN_")}
    server = subprocess.Popen([str(BIN), "serve", "--listen", "127.0.0.1:0", "--data", str(data), *database,
                               "--models", str(root / "no-models")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env=env)
    try:
        url = None
        for line in server.stdout:
            if line.startswith("lectern listening on "):
                url = line.split()[-1]
                break
        s = requests.Session()
        key = s.post(f"{url}/v1/keys", json={"name": "admin", "role": "admin"}, timeout=60).json()["key"]
        s.headers["Authorization"] = f"Bearer {key}"
        rng = random.Random(1)
        started = time.monotonic()
        for c in range(0, ITEMS, 100_000):
            n_here = min(100_000, ITEMS - c)
            for start in range(0, n_here, 2048):
                items = [{"id": f"i{start + k}", "text": f"item {start + k}",
                          "vector": [rng.uniform(-1, 1) for _ in range(DIM)]}
                         for k in range(min(2048, n_here - start))]
                r = s.put(f"{url}/v1/collections/c{c // 100_000}", json={"dimension": DIM, "items": items}, timeout=600)
                assert r.status_code == 200, r.text
        for d in range(DATASETS):
            rows = "\n".join(f"{i},{rng.random():.6f},{rng.choice('abc')}" for i in range(50_000))
            r = s.post(f"{url}/v1/datasets/d{d}", data=f"n,x,k\n{rows}\n", headers={"Content-Type": "text/csv"},
                       timeout=600)
            assert r.status_code in (200, 201), r.text
        print(f"filled: {ITEMS} items, {DATASETS} datasets in {time.monotonic() - started:.0f} s")
        storage = ["--data", str(data), *database]

        def writes(seconds: float, stop: threading.Event | None = None) -> list[float]:
            out = []
            end = time.monotonic() + seconds
            while time.monotonic() < end and not (stop and stop.is_set()):
                t = time.monotonic()
                r = s.post(f"{url}/v1/keys", json={"name": "bench", "role": "client"}, timeout=60)
                out.append(time.monotonic() - t)
                assert r.status_code == 201, r.text
            return out

        alone = writes(SECONDS)
        backups: list[float] = []
        stop = threading.Event()

        def backup_loop():
            i = 0
            while not stop.is_set():
                i += 1
                target = root / f"backup{i}"
                t = time.monotonic()
                proc = subprocess.run([str(BIN), "backup", "--to", str(target), *storage], capture_output=True,
                                      text=True, env=env)
                assert proc.returncode == 0, proc.stderr
                backups.append(time.monotonic() - t)
                print("  " + proc.stdout.strip())
                if i > 1:
                    shutil.rmtree(root / f"backup{i - 1}")

        thread = threading.Thread(target=backup_loop)
        thread.start()
        time.sleep(0.2)
        during = writes(SECONDS)
        stop.set()
        thread.join()
        last = max((p for p in root.glob("backup*")), key=lambda p: int(p.name[6:]))
        size = sum(p.stat().st_size for p in last.rglob("*") if p.is_file())
        db_size = sum(p.stat().st_size for p in data.glob("lectern.db*"))
        restored = root / "restored"
        target = ["--data", str(restored)] + (["--database", f"{POSTGRES}/{names[1]}"] if names else [])
        t = time.monotonic()
        proc = subprocess.run([str(BIN), "restore", "--from", str(last), *target], capture_output=True, text=True,
                              env=env)
        restore_s = time.monotonic() - t
        assert proc.returncode == 0, proc.stderr
        print("  " + proc.stdout.strip())
        print(json.dumps({
            "engine": ENGINE, "items": ITEMS, "datasets": DATASETS,
            "sqlite_files_mb": round(db_size / 1e6, 1) if ENGINE == "sqlite" else None,
            "backup_mb": round(size / 1e6, 1),
            "backups": len(backups), "backup_s": [round(b, 2) for b in backups],
            "restore_s": round(restore_s, 2),
        }))
        print(f"writes alone:          {summary(alone)}")
        print(f"writes during backups: {summary(during)}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
        for name in names:
            psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
