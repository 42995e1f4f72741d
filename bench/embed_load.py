#!/usr/bin/env python3
"""Load generator for bench/embed.sh: sentences per second of a text-embedding server.

    python bench/embed_load.py --url http://127.0.0.1:PORT --api openai --model minilm \
        --batches 1 32 --concurrency 1 4 --duration 15 --warmup 3 [--expect REF.json]

For each batch size B and concurrency C (every pair), C threads each keep one HTTP/1.1
keep-alive connection (a requests.Session) and post, in a closed loop, B sentences per request
taken in turn from SENTENCES (each request starts where the previous one of its thread ended,
threads start at different places, so batches differ and mix lengths). After --warmup seconds
of unmeasured load, --duration seconds are measured. Each case prints one JSON line on stdout:

    {"batch": B, "concurrency": C, "requests": n, "sentences": n * B, "seconds": s,
     "sentences_per_s": ..., "requests_per_s": ..., "p50_ms": ..., "p99_ms": ..., "errors": e, "server_cpu_pct": ...}

server_cpu_pct (with --server-pgid): the server's CPU time in the measured window over its
length (100 = its core was the limit; below that, the client's round trips were).

Latency is per request (send to answer parsed). A non-200 answer, an answer of the wrong shape
or a connection error counts as an error; its sentences are not counted.

APIs (--api):
  openai  POST /v1/embeddings {"model", "input": [...], "encoding_format": "float"}
  v2      POST /v2/models/{model}/infer, input "text" BYTES [B] -> output "embedding"
  embed   POST /embed {"texts": [...]} -> {"embeddings": [[...]]}

--check-only: post every sentence once (8 per request, then one long sentence alone) and
compare the vectors with --expect (a JSON list of reference vectors, one per sentence in
SENTENCES order) within --atol; exits 1 on a mismatch. --sentences prints SENTENCES as JSON
(bench/embed.sh computes the reference from them with sentence-transformers in-process).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time

import requests

# Quiz-like sentences, 5 to 40 words, in a fixed order that mixes the lengths.
SENTENCES = [
    "What is the capital of Australia?",
    "The mitochondria is the powerhouse of the cell, producing most of the chemical energy needed to power biochemical reactions.",
    "Name the largest planet in our solar system.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Which composer wrote the Moonlight Sonata, and in roughly which decade was it published for the first time?",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "During the French Revolution, the storming of the Bastille on 14 July 1789 became a lasting symbol of the popular uprising against the absolute monarchy of Louis XVI, and it is still celebrated as the national holiday of France.",
    "Who painted the Mona Lisa?",
    "A prime number has exactly two distinct positive divisors: one and itself.",
    "Explain why the sky appears blue during the day but red and orange near sunrise and sunset, using the idea of scattering.",
    "The Great Wall of China is visible from space.",
    "How many bones are in the adult human body?",
    "In computer science, a hash table maps keys to values by computing an index into an array of buckets, from which the desired value can be found quickly.",
    "Shakespeare wrote Hamlet around 1600.",
    "Which element has the chemical symbol Fe?",
    "The Pythagorean theorem states that in a right triangle the square of the hypotenuse equals the sum of the squares of the other two sides.",
    "Translate the French word bibliothèque into English.",
    "The Amazon rainforest produces a large share of the oxygen on Earth, although most of it is consumed again by the forest itself through respiration and decomposition.",
    "What year did the first human land on the Moon?",
    "Newton's second law relates force, mass and acceleration.",
    "Describe the main differences between a virus and a bacterium, including how each reproduces and how each can be treated by modern medicine.",
    "Tokyo is the most populous metropolitan area in the world.",
    "Which river flows through Cairo?",
    "An isosceles triangle has two sides of equal length.",
    "The treaty signed at the end of the First World War imposed heavy reparations on Germany, which many historians see as one of the causes of the economic crisis of the following decade.",
    "Spell the past tense of the verb to run.",
    "DNA is made of four bases: adenine, thymine, guanine and cytosine.",
    "How does a bill become a law in a parliamentary system with two chambers?",
    "The speed of light in a vacuum is about three hundred thousand kilometres per second.",
    "Choose the correct answer below.",
    "Vincent van Gogh cut off part of his own ear after an argument with the painter Paul Gauguin in the town of Arles in southern France.",
    "What is the square root of one hundred and forty four?",
    "Glaciers carve U-shaped valleys while rivers carve V-shaped ones.",
    "Which organ in the human body produces insulin, and what happens to blood sugar levels when it stops producing enough of it over a long period of time?",
    "Mount Everest is the highest mountain above sea level.",
    "The Roman Empire was divided into eastern and western halves.",
    "Name three noble gases, please.",
    "Plate tectonics explains earthquakes, volcanoes and the slow drift of continents across the surface of the planet over millions of years.",
    "Is a tomato a fruit or a vegetable?",
    "Binary search finds an item in a sorted list by repeatedly halving the range that could contain it.",
    "Marie Curie was the first person to win Nobel Prizes in two different sciences, physics in 1903 and chemistry in 1911, for her work on radioactivity.",
    "What does the acronym CPU stand for?",
    "The heart has four chambers.",
    "Compare the climates of the Mediterranean coast and the Scandinavian interior in winter, naming one crop that grows well in each region.",
    "Who was the first woman to fly solo across the Atlantic Ocean?",
    "Sound travels faster in water than in air.",
    "The Industrial Revolution began in Britain in the late eighteenth century, driven by cheap coal, steam power, new textile machines, a growing network of canals and later railways, and it changed how and where most people lived and worked.",
    "Find the value of x if two x plus six equals twenty.",
]


def body_for(api: str, model: str, texts: list[str]) -> dict:
    if api == "openai":
        return {"model": model, "input": texts, "encoding_format": "float"}
    if api == "v2":
        return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}
    return {"texts": texts}


def url_for(base: str, api: str, model: str) -> str:
    if api == "openai":
        return f"{base}/v1/embeddings"
    if api == "v2":
        return f"{base}/v2/models/{model}/infer"
    return f"{base}/embed"


def vectors_of(api: str, answer: dict, n: int) -> list[list[float]]:
    """The answer's vectors, in request order; raises ValueError when it is not n of them."""
    if api == "openai":
        data = sorted(answer["data"], key=lambda d: d["index"])
        vectors = [d["embedding"] for d in data]
    elif api == "v2":
        out = next(o for o in answer["outputs"] if o["name"] == "embedding")
        rows, dim = out["shape"]
        flat = out["data"]
        vectors = [flat[i * dim:(i + 1) * dim] for i in range(rows)]
    else:
        vectors = answer["embeddings"]
    if len(vectors) != n:
        raise ValueError(f"{len(vectors)} vectors for {n} texts")
    return vectors


def count_of(api: str, answer: dict) -> int:
    """How many vectors an answer holds, without building them (the hot path)."""
    if api == "openai":
        return len(answer["data"])
    if api == "v2":
        return next(o for o in answer["outputs"] if o["name"] == "embedding")["shape"][0]
    return len(answer["embeddings"])


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by every process in process group pgid."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[2]) == pgid:  # fields from 3 on: state ppid pgrp ...
            total += int(rest[11]) + int(rest[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i]


def run_case(url: str, api: str, model: str, batch: int, conc: int, warmup: float, duration: float,
             timeout: float, pgid: int | None) -> dict:
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"requests": 0, "errors": 0}
    measuring = threading.Event()
    stop = threading.Event()
    first_error: list[str] = []

    def worker(index: int) -> None:
        session = requests.Session()
        pos = (index * 7 * batch) % len(SENTENCES)
        headers = {"Content-Type": "application/json"}
        while not stop.is_set():
            texts = [SENTENCES[(pos + i) % len(SENTENCES)] for i in range(batch)]
            pos = (pos + batch) % len(SENTENCES)
            data = json.dumps(body_for(api, model, texts))
            t0 = time.perf_counter()
            ok = False
            try:
                r = session.post(url, data=data, headers=headers, timeout=timeout)
                if r.status_code == 200 and count_of(api, r.json()) == batch:
                    ok = True
                elif not first_error:
                    first_error.append(f"HTTP {r.status_code}: {r.text[:200]}")
            except (requests.RequestException, ValueError, KeyError, StopIteration) as e:
                if not first_error:
                    first_error.append(repr(e)[:200])
                session.close()
                session = requests.Session()
            elapsed = time.perf_counter() - t0
            with lock:
                if measuring.is_set() and not stop.is_set():
                    if ok:
                        counts["requests"] += 1
                        latencies.append(elapsed)
                    else:
                        counts["errors"] += 1
        session.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(conc)]
    for t in threads:
        t.start()
    time.sleep(warmup)
    cpu0 = group_cpu_seconds(pgid) if pgid else 0.0
    measuring.set()
    t0 = time.perf_counter()
    time.sleep(duration)
    with lock:
        stop.set()
        seconds = time.perf_counter() - t0
    cpu1 = group_cpu_seconds(pgid) if pgid else 0.0
    with lock:
        n = counts["requests"]
        errors = counts["errors"]
        lat = sorted(latencies)
    for t in threads:
        t.join(timeout + 5)
    result = {
        "batch": batch,
        "concurrency": conc,
        "requests": n,
        "sentences": n * batch,
        "seconds": round(seconds, 3),
        "sentences_per_s": round(n * batch / seconds, 2),
        "requests_per_s": round(n / seconds, 2),
        "p50_ms": round(percentile(lat, 0.50) * 1000, 2),
        "p99_ms": round(percentile(lat, 0.99) * 1000, 2),
        "errors": errors,
    }
    if pgid:
        result["server_cpu_pct"] = round(100 * (cpu1 - cpu0) / seconds)
    if first_error:
        result["first_error"] = first_error[0]
    return result


def wait_ready(url: str, api: str, model: str, seconds: float, pid: int | None) -> int:
    """Posts one text until the answer is a 200 with one vector; 1 when the time runs out or
    the server process is gone."""
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        if pid:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                print("wait: the server exited", file=sys.stderr)
                return 1
        try:
            r = requests.post(url, json=body_for(api, model, [SENTENCES[0]]), timeout=10)
            if r.status_code == 200 and count_of(api, r.json()) == 1:
                return 0
            last = f"HTTP {r.status_code}: {r.text[:300]}"
        except (requests.RequestException, ValueError, KeyError, StopIteration) as e:
            last = repr(e)[:300]
        time.sleep(0.2)
    print(f"wait: not ready after {seconds:g} s; last answer: {last}", file=sys.stderr)
    return 1


def check(url: str, api: str, model: str, expect: str, atol: float, timeout: float) -> int:
    reference = json.load(open(expect))
    if len(reference) != len(SENTENCES):
        print(f"check: {expect} holds {len(reference)} vectors, not {len(SENTENCES)}", file=sys.stderr)
        return 1
    got: list[list[float]] = []
    with requests.Session() as session:
        for start in range(0, len(SENTENCES), 8):
            texts = SENTENCES[start:start + 8]
            r = session.post(url, json=body_for(api, model, texts), timeout=timeout)
            if r.status_code != 200:
                print(f"check: HTTP {r.status_code}: {r.text[:300]}", file=sys.stderr)
                return 1
            got.extend(vectors_of(api, r.json(), len(texts)))
        # One text alone must give the same vector as inside a batch (padding must not count).
        r = session.post(url, json=body_for(api, model, [SENTENCES[6]]), timeout=timeout)
        if r.status_code != 200:
            print(f"check: HTTP {r.status_code}: {r.text[:300]}", file=sys.stderr)
            return 1
        alone = vectors_of(api, r.json(), 1)[0]
    worst = 0.0
    for i, (g, w) in enumerate(zip(got + [alone], reference + [reference[6]])):
        if len(g) != len(w):
            print(f"check: sentence {i}: {len(g)} values, reference {len(w)}", file=sys.stderr)
            return 1
        worst = max(worst, max(abs(a - b) for a, b in zip(g, w)))
    print(f"check: {len(SENTENCES)} sentences (+1 alone), largest difference from the reference {worst:.2e}"
          f" (allowed {atol:g})", file=sys.stderr)
    return 0 if worst <= atol else 1


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", help="http://127.0.0.1:PORT (required but with --sentences)")
    p.add_argument("--api", choices=["openai", "v2", "embed"], default="openai")
    p.add_argument("--model", default="minilm")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1])
    p.add_argument("--duration", type=float, default=15)
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--label", default="", help="added to each JSON line as \"server\"")
    p.add_argument("--expect", help="reference vectors (JSON), for --check-only")
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--check-only", action="store_true")
    p.add_argument("--wait", type=float, metavar="SECONDS",
                   help="only wait until the server answers one text (200), at most SECONDS")
    p.add_argument("--server-pid", type=int, help="with --wait: give up when this process is gone")
    p.add_argument("--server-pgid", type=int,
                   help="measure this process group's CPU time during each measured window")
    p.add_argument("--sentences", action="store_true", help="print SENTENCES as JSON and exit")
    args = p.parse_args()
    if args.sentences:
        json.dump(SENTENCES, sys.stdout)
        return 0
    if not args.url:
        p.error("--url is required")
    url = url_for(args.url.rstrip("/"), args.api, args.model)
    if args.wait is not None:
        return wait_ready(url, args.api, args.model, args.wait, args.server_pid)
    if args.check_only:
        return check(url, args.api, args.model, args.expect, args.atol, args.timeout)
    for batch in args.batches:
        for conc in args.concurrency:
            result = run_case(url, args.api, args.model, batch, conc, args.warmup, args.duration, args.timeout,
                              args.server_pgid)
            if args.label:
                result = {"server": args.label, **result}
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
