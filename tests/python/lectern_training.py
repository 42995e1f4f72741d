"""Helpers for the training tests (test_training.py, test_training_jobs.py): the data sets they
upload (exported from scikit-learn, or generated with numpy), a small client of the dataset and
training-job routes, job polling that records every state/stage/percent seen, and V2 inference
of a trained model in batches the server takes (at most 64 rows: the default max_batch_size).

See docs/contract.md, "Training (issue 11)".
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import requests

from lectern_checks import assert_error, describe, ok
from lectern_v2 import binary_input, binary_request, json_input, parse_infer_response

JOB_TIMEOUT_S = 120.0
TERMINAL = ("succeeded", "failed", "cancelled")
STATE_ORDER = {"queued": 0, "running": 1, "succeeded": 2, "failed": 2, "cancelled": 2}
RUNNING_STAGES = ["loading", "preparing", "training", "evaluating", "registering"]
V2_MAX_ROWS = 64  # the default max_batch_size of a model whose X is [-1, F]

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]
DIABETES_FEATURES = [f"f{i}" for i in range(10)]

# The split shared with scikit-learn (the same as test_train_reference.py's).
TEST_SIZE = 0.3
SPLIT_SEED = 0


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_code(resp: requests.Response, status: int, code: str, *mentions) -> str:
    """The contract's error body with exactly this `code`; returns the message."""
    message = assert_error(resp, status, *mentions)
    body = resp.json()
    assert body["code"] == code, f"expected code {code!r}: {describe(resp)}"
    return message


def count(value) -> int:
    """A job's `test_rows`/`train_rows` as a number (a list of rows counts its length)."""
    return len(value) if isinstance(value, list) else int(value)


# =========================================================================== data sets

@lru_cache(maxsize=None)
def iris_table() -> tuple[np.ndarray, tuple[str, ...]]:
    from sklearn.datasets import load_iris
    data = load_iris()
    species = tuple(str(data.target_names[t]) for t in data.target)
    return data.data.astype(np.float64), species


def iris_y() -> np.ndarray:
    """The species as class indices into IRIS_CLASSES."""
    _, species = iris_table()
    return np.array([IRIS_CLASSES.index(s) for s in species])


def iris_x32() -> np.ndarray:
    return iris_table()[0].astype(np.float32)


@lru_cache(maxsize=None)
def iris_csv() -> bytes:
    x, species = iris_table()
    lines = [",".join(IRIS_FEATURES + ["species"])]
    lines += [",".join(repr(float(v)) for v in row) + f",{s}" for row, s in zip(x, species)]
    return ("\n".join(lines) + "\n").encode()


@lru_cache(maxsize=None)
def iris_int_target_csv() -> bytes:
    """Iris with the species as the integers 0, 1, 2 (an integer target: classification)."""
    x, _ = iris_table()
    lines = [",".join(IRIS_FEATURES + ["species"])]
    lines += [",".join(repr(float(v)) for v in row) + f",{c}" for row, c in zip(x, iris_y())]
    return ("\n".join(lines) + "\n").encode()


@lru_cache(maxsize=None)
def iris_json() -> bytes:
    x, species = iris_table()
    rows = [{**{c: float(v) for c, v in zip(IRIS_FEATURES, row)}, "species": s} for row, s in zip(x, species)]
    return json.dumps(rows).encode()


@lru_cache(maxsize=None)
def iris_split() -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows), sorted: scikit-learn's stratified split, test_size 0.3."""
    from sklearn.model_selection import train_test_split
    y = iris_y()
    train, test = train_test_split(np.arange(len(y)), test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=y)
    return np.sort(train), np.sort(test)


@lru_cache(maxsize=None)
def diabetes_table() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes
    data = load_diabetes()
    return data.data.astype(np.float64), data.target.astype(np.float64)


@lru_cache(maxsize=None)
def diabetes_csv() -> bytes:
    x, y = diabetes_table()
    lines = [",".join(DIABETES_FEATURES + ["target"])]
    lines += [",".join(repr(float(v)) for v in row) + f",{float(t)!r}" for row, t in zip(x, y)]
    return ("\n".join(lines) + "\n").encode()


@lru_cache(maxsize=None)
def diabetes_split() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split
    _, y = diabetes_table()
    train, test = train_test_split(np.arange(len(y)), test_size=TEST_SIZE, random_state=SPLIT_SEED)
    return np.sort(train), np.sort(test)


@lru_cache(maxsize=None)
def big_csv(rows: int = 50_000, columns: int = 20, seed: int = 0) -> bytes:
    """A generated classification data set (`c0`..`c19` numbers, `label` 0-2), ~7 MB of CSV:
    a random forest of 1000 trees on it runs for minutes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, columns)).round(3)
    label = ((x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=rows)) > 0).astype(int) + (x[:, 2] > 1)
    out = io.StringIO()
    out.write(",".join([f"c{i}" for i in range(columns)] + ["label"]) + "\n")
    np.savetxt(out, np.column_stack([x, label]), fmt=["%.3f"] * columns + ["%d"], delimiter=",")
    return out.getvalue().encode()


def csv_bytes(header: list[str], rows: list[list]) -> bytes:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


# =========================================================================== the client

class Lectern:
    """The dataset, training-job and inference routes of one server, with an optional key."""

    def __init__(self, srv, key: str | None = None):
        self.srv = srv
        self.key = key
        self.s = requests.Session()

    @property
    def url(self) -> str:
        return self.srv.url

    def as_key(self, key: str | None) -> "Lectern":
        return Lectern(self.srv, key)

    def call(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        headers = dict(kw.pop("headers", None) or {})
        if self.key is not None:
            headers.setdefault("Authorization", f"Bearer {self.key}")
        return self.s.request(method, self.srv.url + path, headers=headers, **kw)

    # ----------------------------------------------------------------- datasets
    def upload(self, name: str, data, content_type: str = "text/csv", fmt: str | None = None) -> requests.Response:
        params = {"format": fmt} if fmt is not None else None
        return self.call("POST", f"/v1/datasets/{name}", data=data, params=params,
                         headers={"Content-Type": content_type})

    def upload_ok(self, name: str, data, content_type: str = "text/csv", fmt: str | None = None,
                  status: int | tuple = (200, 201)) -> dict:
        resp = self.upload(name, data, content_type, fmt)
        statuses = status if isinstance(status, tuple) else (status,)
        assert resp.status_code in statuses, f"upload of dataset {name}: expected {statuses}: {describe(resp)}"
        return resp.json()

    def dataset(self, name: str) -> requests.Response:
        return self.call("GET", f"/v1/datasets/{name}")

    def datasets(self) -> list[dict]:
        body = ok(self.call("GET", "/v1/datasets"))
        assert isinstance(body, dict) and isinstance(body.get("datasets"), list), body
        return body["datasets"]

    # ----------------------------------------------------------------- jobs
    def submit(self, **request) -> requests.Response:
        return self.call("POST", "/v1/training-jobs", json=request)

    def submit_ok(self, **request) -> dict:
        job = ok(self.submit(**request), 202)
        assert job["state"] == "queued", f"a new job is queued: {job}"
        assert isinstance(job["id"], str) and job["id"], job
        return job

    def job(self, job_id: str) -> dict:
        return ok(self.call("GET", f"/v1/training-jobs/{job_id}"))

    def jobs(self, model: str | None = None, limit: int | None = None) -> list[dict]:
        params = {k: v for k, v in (("model", model), ("limit", limit)) if v is not None}
        body = ok(self.call("GET", "/v1/training-jobs", params=params))
        assert isinstance(body, dict) and isinstance(body.get("jobs"), list), body
        return body["jobs"]

    def cancel(self, job_id: str) -> requests.Response:
        return self.call("DELETE", f"/v1/training-jobs/{job_id}")

    def picture(self, job_id: str, picture: str) -> requests.Response:
        return self.call("GET", f"/v1/training-jobs/{job_id}/pictures/{picture}.svg")

    def wait_job(self, job_id: str, timeout: float = JOB_TIMEOUT_S, until=TERMINAL,
                 seen: list | None = None, interval: float = 0.02) -> dict:
        """Polls the job until its state is in `until`; appends every answer to `seen`."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = self.job(job_id)
            if seen is not None:
                seen.append(last)
            if last["state"] in until:
                return last
            if time.monotonic() >= deadline:
                pytest.fail(f"job {job_id} did not reach {until} within {timeout:.0f} s; last: {json.dumps(last)}")
            time.sleep(interval)

    def train(self, seen: list | None = None, timeout: float = JOB_TIMEOUT_S, **request) -> dict:
        """Submits the request and waits for the job; it must succeed. Returns the final job."""
        job = self.submit_ok(**request)
        if seen is not None:
            seen.append(job)
        final = self.wait_job(job["id"], timeout=timeout, seen=seen)
        assert final["state"] == "succeeded", f"job failed: {json.dumps(final)}"
        return final

    # ----------------------------------------------------------------- models
    def model(self, name: str) -> requests.Response:
        return self.call("GET", f"/v1/models/{name}")

    def versions(self, name: str) -> list[dict]:
        """The model's versions, or [] when the model does not exist."""
        resp = self.model(name)
        if resp.status_code == 404:
            assert_code(resp, 404, "model_not_found")
            return []
        return ok(resp)["versions"]

    def artifact(self, model: str, version: int, fmt: str | None = "onnx") -> requests.Response:
        params = {"format": fmt} if fmt is not None else None
        return self.call("GET", f"/v1/models/{model}/versions/{version}/artifact", params=params)

    def infer(self, model: str, x: np.ndarray, version: int | None = None) -> dict[str, np.ndarray]:
        """V2 inference of X (FP32) in batches of at most 64 rows; the outputs concatenated."""
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version is not None else "") + "/infer"
        x = np.asarray(x, dtype=np.float32)
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(x), V2_MAX_ROWS):
            resp = self.call("POST", path, json={"inputs": [json_input("X", x[start:start + V2_MAX_ROWS], "FP32")]})
            assert resp.status_code == 200, f"V2 inference of {model}: {describe(resp)}"
            _, outputs = parse_infer_response(resp)
            for name, arr in outputs.items():
                parts.setdefault(name, []).append(arr)
        return {name: np.concatenate(arrs) for name, arrs in parts.items()}

    def infer_binary(self, model: str, x: np.ndarray) -> requests.Response:
        """V2 inference with X as a binary tensor (it can carry NaN, which JSON cannot)."""
        header, blob = binary_input("X", np.asarray(x, dtype=np.float32), "FP32")
        body, headers = binary_request({"inputs": [header]}, [blob])
        return self.call("POST", f"/v2/models/{model}/infer", data=body, headers=headers)


# =========================================================================== checks

def check_progression(seen: list[dict]):
    """States only move forward (queued -> running -> an end), the stages while running follow
    the contract's order, percent stays in 0..100 and never goes down, and the end is `done`."""
    assert seen, "no observation of the job"
    last_state, last_stage, last_percent = -1, -1, -1
    for job in seen:
        state, stage, percent = job["state"], job.get("stage"), job.get("percent")
        assert state in STATE_ORDER, f"unknown state {state!r}: {job}"
        assert STATE_ORDER[state] >= last_state, f"state went back to {state!r}: {[j['state'] for j in seen]}"
        last_state = STATE_ORDER[state]
        assert isinstance(percent, (int, float)) and 0 <= percent <= 100, f"percent {percent!r}: {job}"
        assert percent >= last_percent, f"percent went down: {[(j['state'], j.get('stage'), j.get('percent')) for j in seen]}"
        last_percent = percent
        if state == "running":
            assert stage in RUNNING_STAGES, f"stage {stage!r} while running: {job}"
            index = RUNNING_STAGES.index(stage)
            assert index >= last_stage, (
                f"stage went back to {stage!r}: {[(j['state'], j.get('stage'), j.get('percent')) for j in seen]}")
            last_stage = index
        elif state in TERMINAL:
            assert stage == "done", f"an ended job's stage is 'done': {job}"
    final = seen[-1]
    assert final["state"] in TERMINAL, final
    if final["state"] == "succeeded":
        assert final["percent"] == 100, final
        assert final["error"] is None, final


def check_times(job: dict):
    created, started, finished = job["created_at_ms"], job["started_at_ms"], job["finished_at_ms"]
    assert isinstance(created, int) and created > 1_600_000_000_000, job
    assert isinstance(started, int) and started >= created, job
    assert isinstance(finished, int) and finished >= started, job


def check_classification_metrics(job: dict, classes: list[str]):
    """The metrics of a classification job agree with themselves and with the job."""
    assert job["task"] == "classification", job
    assert job["classes"] == classes, job
    m = job["metrics"]
    assert m["task"] == "classification", m
    n = count(job["test_rows"])
    k = len(classes)
    assert m["labels"] == classes, m
    confusion = np.array(m["confusion"])
    assert confusion.shape == (k, k) and confusion.dtype.kind == "i", m["confusion"]
    assert int(confusion.sum()) == n, f"the confusion matrix counts {confusion.sum()} rows, test_rows is {n}"
    assert m["accuracy"] == pytest.approx(np.trace(confusion) / n), m
    assert isinstance(m["per_class"], list) and [c["label"] for c in m["per_class"]] == classes, m["per_class"]
    for i, c in enumerate(m["per_class"]):
        assert set(c) >= {"label", "precision", "recall", "f1", "support"}, c
        support = int(confusion[i].sum())   # rows are the true classes
        assert c["support"] == support, (c, m["confusion"])
        if support:
            assert c["recall"] == pytest.approx(confusion[i, i] / support), (c, m["confusion"])
        predicted = int(confusion[:, i].sum())
        if predicted:
            assert c["precision"] == pytest.approx(confusion[i, i] / predicted), (c, m["confusion"])
        for key in ("precision", "recall", "f1"):
            assert 0.0 <= c[key] <= 1.0, c


def check_regression_metrics(job: dict):
    assert job["task"] == "regression", job
    assert job["classes"] is None, job
    m = job["metrics"]
    assert m["task"] == "regression", m
    for key in ("r2", "mae", "rmse"):
        assert isinstance(m[key], (int, float)) and np.isfinite(m[key]), m
    assert 0 <= m["mae"] <= m["rmse"], m


def r2_score(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(1 - ((truth - predicted) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())


def parse_svg(resp: requests.Response):
    """The answer is an SVG document: 200, image/svg+xml, XML whose root is <svg>."""
    import xml.etree.ElementTree as ET
    assert resp.status_code == 200, describe(resp)
    content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    assert content_type == "image/svg+xml", f"Content-Type {content_type!r}: {describe(resp)}"
    try:
        root = ET.fromstring(resp.content)
    except ET.ParseError as e:
        pytest.fail(f"the picture is not well-formed XML ({e}): {resp.text[:300]!r}")
    assert root.tag.split("}")[-1] == "svg", f"the root element is {root.tag!r}, not svg"
    return root


def svg_text(root) -> str:
    return " ".join(t for t in root.itertext() if t.strip())


# =========================================================================== processes

def processes_in(folder: Path, exclude: tuple[int, ...] = ()) -> list[int]:
    """Pids (not in `exclude`) whose working directory is `folder` or inside it: a server's
    training processes (the fixtures start servers in their --data folder)."""
    folder = Path(folder).resolve()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude or int(entry) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(f"/proc/{entry}/cwd")).resolve()
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            found.append(int(entry))
    return found


def process_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


SERVER_STOPPED = re.compile(r"server stopped", re.I)
