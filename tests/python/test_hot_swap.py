"""Hot swap under load: while several clients hammer `/v2/models/M/infer`, a new version is
pushed, then a corrupt one, then the default is rolled back to version 1. No request may fail;
every answer names the version that computed it (and its outputs are that version's: the two
versions are different models, iris-logreg v1 and v2, whose probabilities differ); and the
versions seen follow the changes: 1, then 2, then 1 again, never the corrupt 3.

Run on SQLite and on PostgreSQL (LECTERN_TEST_DATABASE=postgres).
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import requests

from conftest import EXAMPLE_MODELS
from lectern_checks import ok
from lectern_v2 import iris_x, json_input, metric_value, model_file, ort_reference, parse_metrics

IRIS = {1: model_file(EXAMPLE_MODELS, "iris-logreg", 1), 2: model_file(EXAMPLE_MODELS, "iris-logreg", 2)}
CORRUPT = b"\x08\x07garbage, not an ONNX model" * 16
ROWS = iris_x()[[0, 50, 100, 120, 70, 133]]
THREADS = 4
PER_PHASE = 1000          # answers to wait for in each of the four phases
PHASE_TIMEOUT_S = 40.0    # the whole test stays well under a minute on a debug build
MODEL = "swap"


class Load:
    """THREADS clients, each with its own keep-alive session, sending the same request until
    stopped; every answer is kept with its send and receive times."""

    def __init__(self, url: str):
        self.url = url
        self.body = {"inputs": [json_input("X", ROWS, "FP32")]}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.done = 0
        # per thread: [(sent, received, status, body bytes | exception text)]
        self.results: list[list[tuple]] = [[] for _ in range(THREADS)]
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(THREADS)]

    def run(self, i: int):
        out = self.results[i]
        with requests.Session() as s:
            for _ in range(100_000):  # bounded, whatever happens
                if self.stop.is_set():
                    return
                sent = time.monotonic()
                try:
                    r = s.post(self.url, json=self.body, timeout=30)
                    out.append((sent, time.monotonic(), r.status_code, r.content))
                except requests.RequestException as e:
                    out.append((sent, time.monotonic(), None, repr(e)))
                with self.lock:
                    self.done += 1

    def wait_for(self, more: int, what: str):
        with self.lock:
            target = self.done + more
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while time.monotonic() < deadline:
            with self.lock:
                if self.done >= target:
                    return
            time.sleep(0.01)
        raise AssertionError(f"the load made fewer than {more} requests in {PHASE_TIMEOUT_S} s ({what})")

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def timed(fn):
    sent = time.monotonic()
    resp = fn()
    return resp, sent, time.monotonic()


def test_hot_swap_under_load_fails_no_request_and_follows_the_changes(start_server):
    srv = start_server()
    api = requests.Session()
    refs = {v: ort_reference(path, {"X": ROWS})["output_probability"] for v, path in IRIS.items()}
    assert np.abs(refs[1] - refs[2]).max() > 0.1, "the two versions must be told apart by their outputs"

    ok(api.post(f"{srv.url}/v1/models", json={"name": MODEL}, timeout=30), 201)
    r = ok(api.post(f"{srv.url}/v1/models/{MODEL}/versions", data=IRIS[1].read_bytes(), timeout=60), 201)
    assert r["version"]["version"] == 1, r

    events = {}
    with Load(f"{srv.url}/v2/models/{MODEL}/infer") as load:
        load.wait_for(PER_PHASE, "version 1")

        r, *events["v2"] = timed(lambda: api.post(
            f"{srv.url}/v1/models/{MODEL}/versions", data=IRIS[2].read_bytes(), timeout=60))
        v = ok(r, 201)["version"]
        assert (v["version"], v["state"], v["serving"]) == (2, "READY", True), v
        load.wait_for(PER_PHASE, "after version 2")

        r, *events["corrupt"] = timed(lambda: api.post(
            f"{srv.url}/v1/models/{MODEL}/versions", data=CORRUPT, timeout=60))
        v = ok(r, 201)["version"]
        assert (v["version"], v["state"], v["serving"]) == (3, "UNAVAILABLE", False), v
        assert v["reason"], v
        load.wait_for(PER_PHASE, "after the corrupt version 3")

        r, *events["rollback"] = timed(lambda: api.put(
            f"{srv.url}/v1/models/{MODEL}/default", json={"version": 1}, timeout=60))
        assert ok(r)["default_version"] == 1, r.text
        load.wait_for(PER_PHASE, "after the roll-back to version 1")

    total = sum(len(rs) for rs in load.results)
    assert total >= 4 * PER_PHASE, total

    failures, wrong, versions_by_thread = [], [], []
    for i, rs in enumerate(load.results):
        seq = []
        for sent, received, status, body in rs:
            if status != 200:
                failures.append((i, round(sent, 4), status, body[:300] if isinstance(body, bytes) else body))
                continue
            answer = json.loads(body)
            version = int(answer["model_version"])
            probs = next(np.array(o["data"], dtype=np.float32).reshape(o["shape"])
                         for o in answer["outputs"] if o["name"] == "output_probability")
            if version not in refs or not np.allclose(probs, refs[version], rtol=0, atol=1e-5):
                wrong.append((i, round(sent, 4), version, probs[0].tolist()))
            seq.append((sent, received, version))
        versions_by_thread.append(seq)
    assert not failures, f"{len(failures)} of {total} requests failed during the swaps, e.g. {failures[:5]}"
    assert not wrong, f"{len(wrong)} answers are not the output of the version they name, e.g. {wrong[:5]}"

    v2_sent, v2_acked = events["v2"]
    rb_sent, rb_acked = events["rollback"]
    misplaced = []
    for i, seq in enumerate(versions_by_thread):
        for sent, received, version in seq:
            if received < v2_sent:
                expected = 1                      # before version 2 was pushed
            elif sent > v2_acked and received < rb_sent:
                expected = 2                      # version 2 acknowledged, the corrupt 3 never served
            elif sent > rb_acked:
                expected = 1                      # rolled back
            else:
                continue                          # in flight across a change: either
            if version != expected:
                misplaced.append((i, round(sent - v2_sent, 4), version, expected))
        # each client sees 1..1 2..2 1..1: never back to 1 before the roll-back, never 2 after it
        order = [v for _, _, v in seq]
        compact = [v for j, v in enumerate(order) if j == 0 or order[j - 1] != v]
        assert compact == [1, 2, 1], f"client {i} saw the versions in the order {compact}"
    assert not misplaced, (
        f"{len(misplaced)} answers came from the wrong version for when they were sent "
        f"(thread, seconds after the v2 upload was sent, version, expected): {misplaced[:10]}")

    counts = {v: sum(1 for seq in versions_by_thread for *_, x in seq if x == v) for v in (1, 2)}
    print(f"hot swap: {total} requests, {counts[1]} by version 1, {counts[2]} by version 2, none failed")
    seen = {v for seq in versions_by_thread for _, _, v in seq}
    assert seen == {1, 2}, seen
    samples = parse_metrics(requests.get(f"{srv.url}/metrics", timeout=30).text)
    for version in ("1", "2", "3"):
        failed = metric_value(samples, "lectern_inference_request_failure_total", model=MODEL, version=version)
        assert not failed, f"metrics count {failed} failed requests on version {version}"
    served = sum(metric_value(samples, "lectern_inference_request_success_total", model=MODEL, version=v) or 0
                 for v in ("1", "2"))
    assert served == total, (served, total)
