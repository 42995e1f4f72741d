"""End-to-end tests of dynamic batching, model instances, priorities, deadlines and the bounded
queue (docs/contract.md, "Batching, instances, priorities (issue 5)").

These tests are not timed: they must hold on a noisy two-core machine. Where an ordering matters
(a request must be queued behind a busy model), the tests make the model busy for a long time
with a deliberately slow model built here with onnx.helper, calibrate its speed on the running
server, and confirm through the `lectern_inference_queue_depth` gauge that the requests really
are queued before relying on it. Expected values come from onnxruntime on the same model file.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
from onnx import TensorProto, helper, numpy_helper

from lectern_checks import assert_error, scrape
from lectern_v2 import (
    ALL_DATATYPES,
    V2_TO_NUMPY,
    binary_input,
    binary_output_names,
    binary_request,
    check_classification,
    digits_x,
    json_input,
    labels_file,
    metric_value,
    model_file,
    ort_reference,
    parse_infer_response,
    parse_metrics,
    to_bytes,
)

MLP = "digits-mlp"
SLOW = "slow"
SLOW_WIDTH = 512
SLOW_LAYERS = 192
# Large enough for the occupying requests of a fast machine (rows are calibrated per server).
SLOW_MAX_BATCH = 4096
WAIT_S = 20.0          # backstop for anything the tests wait on
# Tests that need a queue behind a busy model try again with a longer occupying request
# (this many times the calibrated length) when the queue did not form in time; after the
# last they fail: a queue that never shows (e.g. a broken depth gauge) is a failure, not a skip.
OCCUPY_FACTORS = (1.0, 3.0, 8.0)


# =========================================================================== helpers

def metrics(srv) -> list:
    return scrape(srv)


def metric(samples, name: str, model: str, **labels) -> float:
    return metric_value(samples, name, model=model, **labels) or 0.0


def histogram_buckets(samples, name: str, model: str) -> dict[float, float]:
    """{upper bound: cumulative count} of a histogram, summed over the model's versions."""
    out: dict[float, float] = {}
    for n, labels, v in samples:
        if n == name + "_bucket" and labels.get("model") == model:
            le = float(labels["le"])  # "+Inf" parses to inf
            out[le] = out.get(le, 0.0) + v
    return out


def executions_over_one_row(before, after, model: str) -> tuple[float, float, float]:
    """(executions, rows, executions with more than one row) between two scrapes, from the
    `lectern_inference_batch_size` histogram."""
    name = "lectern_inference_batch_size"
    count = metric(after, name + "_count", model) - metric(before, name + "_count", model)
    total = metric(after, name + "_sum", model) - metric(before, name + "_sum", model)
    b0, b1 = histogram_buckets(before, name, model), histogram_buckets(after, name, model)
    ones = b1.get(1.0, 0.0) - b0.get(1.0, 0.0)
    return count, total, count - ones


def queue_depth(srv, model: str) -> float | None:
    return metric_value(metrics(srv), "lectern_inference_queue_depth", model=model)


def wait_queue_depth(srv, model: str, at_least: int, timeout: float = WAIT_S,
                     while_running: "Background | None" = None) -> float | None:
    """Polls the queue-depth gauge until it reaches `at_least`; fails the test otherwise.
    With `while_running`, gives up (returning None) once that request has finished: the
    queue the test wanted to build behind it can no longer form."""
    deadline = time.monotonic() + timeout
    depth = None
    while time.monotonic() < deadline:
        depth = queue_depth(srv, model)
        if depth is not None and depth >= at_least:
            return depth
        if while_running is not None and while_running.finished():
            return None
        time.sleep(0.003)
    pytest.fail(f"lectern_inference_queue_depth{{model={model!r}}} stayed at {depth!r}, "
                f"never reached {at_least} within {timeout:.0f} s")


def infer_path(model: str) -> str:
    return f"/v2/models/{model}/infer"


# --------------------------------------------------------------------------- the slow model

def build_slow_model(path: Path, layers: int = SLOW_LAYERS, width: int = SLOW_WIDTH):
    """x FP32 [N, width] -> y FP32 [N, 1]: `layers` times (MatMul with one shared [width, width]
    weight, Tanh), then ReduceSum over the features. ~layers * width^2 multiply-adds per row;
    the file stays ~1 MB however many layers."""
    rng = np.random.default_rng(1234)
    w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    nodes, prev = [], "x"
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [prev, "w"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"t{i}"]))
        prev = f"t{i}"
    nodes.append(helper.make_node("ReduceSum", [prev, "axes"], ["y"], keepdims=1))
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        initializer=[numpy_helper.from_array(w, "w"),
                     numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def add_slow_model(models: Path, config: str):
    build_slow_model(models / SLOW / "1" / "model.onnx")
    (models / SLOW / "config.toml").write_text(config)


def slow_config(batching: str = "off", instances: int = 1, extra: str = "") -> str:
    return (f"max_batch_size = {SLOW_MAX_BATCH}\nbatching = \"{batching}\"\n"
            f"instances = {instances}\n{extra}")


def slow_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, SLOW_WIDTH)).astype(np.float32)


def slow_body(x: np.ndarray, **extra) -> tuple[bytes, dict]:
    spec, blob = binary_input("x", x, "FP32")
    header = {"inputs": [spec]}
    header.update(extra)
    return binary_request(header, [blob])


def post_slow(srv, x: np.ndarray, timeout: float = 120, **extra) -> requests.Response:
    body, headers = slow_body(x, **extra)
    return requests.post(srv.url + infer_path(SLOW), data=body, headers=headers, timeout=timeout)


def check_slow_answer(srv, resp: requests.Response, x: np.ndarray):
    assert resp.status_code == 200, f"{resp.status_code}: {resp.text[:500]}"
    _, outputs = parse_infer_response(resp)
    ref = ort_reference(model_file(srv.models_dir, SLOW), {"x": x})["y"]
    # SLOW_LAYERS layers of float32 MatMul + Tanh: engines differ by rounding, not by rows.
    np.testing.assert_allclose(outputs["y"], ref, rtol=1e-3, atol=1e-2)


@dataclass
class SlowSpeed:
    seconds_per_row: float

    def rows_for(self, seconds: float) -> int:
        return int(min(SLOW_MAX_BATCH, max(1, round(seconds / self.seconds_per_row))))


def calibrate(srv) -> SlowSpeed:
    """Seconds per row of the slow model on this server now (the best of a few runs; the
    request overhead is counted in, so the estimate errs on the slow side)."""
    x = slow_rows(64, seed=0)
    check_slow_answer(srv, post_slow(srv, x), x)      # warm-up, and the model computes right
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        resp = post_slow(srv, x)
        best = min(best, time.perf_counter() - t0)
        assert resp.status_code == 200, resp.text[:500]
    return SlowSpeed(seconds_per_row=best / 64)


class Background:
    """Runs a request in a thread and records when its answer arrived."""

    def __init__(self, fn, *args, **kwargs):
        self.response: requests.Response | None = None
        self.error: BaseException | None = None
        self.done_at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True)
        self._thread.start()

    def _run(self, fn, args, kwargs):
        try:
            self.response = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - reported by result()
            self.error = e
        finally:
            self.done_at = time.monotonic()

    def finished(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float = 180) -> requests.Response:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "request did not finish"
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


# --------------------------------------------------------------------------- digits-mlp requests

@dataclass
class Call:
    """One caller's request to digits-mlp and what it must get back."""
    index: int
    rows: np.ndarray
    id: str
    body: bytes
    headers: dict
    wanted: list[str]                # output names expected in the answer, in order
    classification: int | None       # k when output_probability is asked as classification
    binary_outputs: set[str] = field(default_factory=set)


def make_call(i: int, rows: np.ndarray) -> Call:
    """Request i: varies JSON/binary input, which outputs are asked, classification and binary
    outputs, so that a batched response given to the wrong caller cannot pass."""
    rid = f"caller-{i}-{uuid.uuid4().hex[:8]}"
    variant = i % 5
    outputs: list[dict] | None
    classification = None
    binary: set[str] = set()
    if variant == 0:
        outputs, wanted = None, ["output_label", "output_probability"]
    elif variant == 1:
        outputs, wanted = [{"name": "output_label"}], ["output_label"]
    elif variant == 2:
        outputs, wanted = [{"name": "output_probability", "parameters": {"binary_data": True}}], ["output_probability"]
        binary = {"output_probability"}
    elif variant == 3:
        classification = 1 + i % 3
        outputs = [{"name": "output_probability", "parameters": {"classification": classification}},
                   {"name": "output_label"}]
        wanted = ["output_probability", "output_label"]
    else:
        outputs = [{"name": "output_probability"}, {"name": "output_label", "parameters": {"binary_data": True}}]
        wanted, binary = ["output_probability", "output_label"], {"output_label"}
    params: dict = {"caller": i}
    if i % 7 == 6:   # every output binary through the request-level switch
        params["binary_data_output"] = True
        binary = set(wanted)
    header: dict = {"id": rid, "parameters": params}
    if outputs is not None:
        header["outputs"] = outputs
    if i % 2 == 0:
        spec, blob = binary_input("X", rows, "FP32")
        header["inputs"] = [spec]
        body, headers = binary_request(header, [blob])
    else:
        header["inputs"] = [json_input("X", rows, "FP32", nested=(i % 4 == 1))]
        body, headers = json.dumps(header).encode(), {"Content-Type": "application/json"}
    return Call(i, rows, rid, body, headers, wanted, classification, binary)


def make_calls(n: int, seed: int, max_rows: int = 5) -> list[Call]:
    """n callers with 1..max_rows rows each, every row a different digits sample (shuffled)."""
    data = digits_x()
    order = np.random.default_rng(seed).permutation(len(data))
    calls, pos = [], 0
    for i in range(n):
        k = 1 + (i * 7 + seed) % max_rows
        calls.append(make_call(i, data[order[pos:pos + k]]))
        pos += k
    assert pos <= len(data)
    return calls


def fire_concurrently(srv, model: str, calls: list) -> list[requests.Response | BaseException]:
    """Sends every call (anything with `body` and `headers`) at once, one thread each, released
    together, and returns the answers in the same order."""
    results: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(j: int, call: Call):
        try:
            with requests.Session() as s:
                barrier.wait(timeout=60)
                results[j] = s.post(srv.url + infer_path(model), data=call.body, headers=call.headers, timeout=120)
        except BaseException as e:  # noqa: BLE001 - checked by the caller
            results[j] = e

    threads = [threading.Thread(target=run, args=(j, c), daemon=True) for j, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return results


def check_call(srv, call: Call, resp, labels: list[str]):
    assert not isinstance(resp, BaseException), f"caller {call.index}: {resp!r}"
    assert resp.status_code == 200, f"caller {call.index}: {resp.status_code} {resp.text[:500]}"
    header, outputs = parse_infer_response(resp)
    assert header.get("id") == call.id, f"caller {call.index} got the answer of {header.get('id')!r}"
    assert header["model_name"] == MLP and str(header["model_version"]) == "1", header
    names = [o["name"] for o in header["outputs"]]
    assert sorted(names) == sorted(call.wanted), f"caller {call.index}: outputs {names}, asked {call.wanted}"
    assert binary_output_names(header) == call.binary_outputs, (call.index, header["outputs"])
    n = len(call.rows)
    ref = ort_reference(model_file(srv.models_dir, MLP), {"X": call.rows})
    shapes = {o["name"]: [int(d) for d in o["shape"]] for o in header["outputs"]}
    if "output_label" in call.wanted:
        assert shapes["output_label"] == [n], (call.index, shapes)
        assert np.array_equal(outputs["output_label"], ref["output_label"]), (
            f"caller {call.index}: labels {outputs['output_label'].tolist()} != {ref['output_label'].tolist()}")
    if "output_probability" in call.wanted:
        if call.classification is not None:
            check_classification(outputs["output_probability"], ref["output_probability"],
                                 call.classification, labels)
        else:
            assert shapes["output_probability"] == [n, 10], (call.index, shapes)
            np.testing.assert_allclose(outputs["output_probability"], ref["output_probability"],
                                       rtol=0, atol=1e-5, err_msg=f"caller {call.index}")


def mlp_config(extra: str) -> str:
    return 'labels = "labels.txt"\n' + extra


# =========================================================================== batches form

FIXED_WINDOW = 'max_batch_size = 64\nbatching = "fixed"\nmax_queue_delay_us = 100000\ninstances = 1\n'


def test_concurrent_requests_are_run_in_batches_of_more_than_one_row(start_server):
    """64 one-row callers at once against a fixed 100 ms window: since every request has one
    row, an execution of more than one row is a batch of several requests."""
    srv = start_server(prepare=lambda m: (m / MLP / "config.toml").write_text(mlp_config(FIXED_WINDOW)))
    labels = labels_file(srv.models_dir, MLP)
    calls = make_calls(64, seed=1, max_rows=1)
    before = metrics(srv)
    answers = fire_concurrently(srv, MLP, calls)
    for call, resp in zip(calls, answers):
        check_call(srv, call, resp, labels)
    after = metrics(srv)

    execs, rows, multi = executions_over_one_row(before, after, MLP)
    assert rows == sum(len(c.rows) for c in calls), (
        f"lectern_inference_batch_size_sum grew by {rows}, the callers sent {sum(len(c.rows) for c in calls)} rows")
    assert execs >= 1 and rows / execs > 1 and multi >= 1, (
        f"no execution held more than one row: {execs} executions for {rows} rows")
    # the batches mixed callers: fewer executions than requests
    assert execs < len(calls), f"{execs} executions for {len(calls)} requests: nothing was batched together"
    exec_delta = (metric(after, "lectern_inference_exec_count_total", MLP)
                  - metric(before, "lectern_inference_exec_count_total", MLP))
    assert exec_delta == execs, (exec_delta, execs)
    assert (metric(after, "lectern_inference_count_total", MLP)
            - metric(before, "lectern_inference_count_total", MLP)) == rows
    assert (metric(after, "lectern_inference_request_success_total", MLP)
            - metric(before, "lectern_inference_request_success_total", MLP)) == len(calls)
    # no batch is over max_batch_size
    buckets = histogram_buckets(after, "lectern_inference_batch_size", MLP)
    for le in (1, 2, 4, 8, 16, 32, 64, 128, 256, float("inf")):
        assert float(le) in buckets, f"lectern_inference_batch_size lacks the bucket le={le}: {sorted(buckets)}"
    assert buckets[64.0] == buckets[float("inf")], f"an execution had more than 64 rows: {buckets}"


def test_adaptive_batching_takes_the_queued_requests_together_when_the_model_frees_up(start_server):
    """While the slow model is busy, 12 small requests queue up; adaptive batching (the default
    mode) runs them together, not one by one, and each caller gets its own rows."""
    srv = start_server(prepare=lambda m: add_slow_model(
        m, f"max_batch_size = {SLOW_MAX_BATCH}\ninstances = 1\n"))   # batching: the default
    speed = calibrate(srv)
    smalls = [slow_rows(1 + i % 4, seed=100 + i) for i in range(12)]
    for attempt, factor in enumerate(OCCUPY_FACTORS):
        x0 = slow_rows(speed.rows_for(2.0 * factor), seed=10 + attempt)
        before = metrics(srv)

        occupier = start_occupier(srv, x0)
        small_calls = [Background(post_slow, srv, x, id=f"small-{i}") for i, x in enumerate(smalls)]
        reached = wait_queue_depth(srv, SLOW, len(smalls), while_running=occupier)
        queued_while_busy = reached is not None and not occupier.finished()

        check_slow_answer(srv, occupier.result(), x0)
        for i, (call, x) in enumerate(zip(small_calls, smalls)):
            resp = call.result()
            check_slow_answer(srv, resp, x)
            header, _ = parse_infer_response(resp)
            assert header.get("id") == f"small-{i}", header
        after = metrics(srv)
        execs = (metric(after, "lectern_inference_exec_count_total", SLOW)
                 - metric(before, "lectern_inference_exec_count_total", SLOW))
        assert (metric(after, "lectern_inference_count_total", SLOW)
                - metric(before, "lectern_inference_count_total", SLOW)) == len(x0) + sum(len(x) for x in smalls)
        if queued_while_busy:
            # Ideally 2 (the occupier, then the 12 queued requests as one batch); allow some slack.
            assert execs <= 1 + 3, (
                f"{execs} executions for 1 occupying + {len(smalls)} queued requests: the queued ones were not batched")
            return
    pytest.fail(f"the occupying request finished before the {len(smalls)} small ones showed in "
                f"lectern_inference_queue_depth, {len(OCCUPY_FACTORS)} times, the last time with "
                f"{len(x0)} rows (~{2.0 * OCCUPY_FACTORS[-1]:.0f} s calibrated): the queue never formed")


def queue_exits(srv, model: str) -> float:
    """Requests that have left the queue so far (the count of the queue-duration histogram,
    observed when a request leaves the queue for an execution)."""
    return metric(metrics(srv), "lectern_inference_queue_duration_seconds_count", model)


def start_occupier(srv, x: np.ndarray) -> Background:
    """Sends a long request and returns once it is at the server: waiting in the queue (depth
    >= 1) or taken for execution (the queue-duration count grew). Should neither show, gives it
    a grace period of 0.25 s, after which a request sent now lands behind it anyway."""
    exits = queue_exits(srv, SLOW)
    occupier = Background(post_slow, srv, x)
    deadline = time.monotonic() + 0.25
    while time.monotonic() < deadline and not occupier.finished():
        samples = metrics(srv)
        if (metric(samples, "lectern_inference_queue_depth", SLOW) >= 1
                or metric(samples, "lectern_inference_queue_duration_seconds_count", SLOW) > exits):
            break
        time.sleep(0.002)
    assert not occupier.finished(), "the occupying request already finished (calibration far off)"
    return occupier


# =========================================================================== every caller gets its own rows

@pytest.mark.parametrize("config", [
    pytest.param(FIXED_WINDOW, id="fixed-100ms-window"),
    pytest.param("", id="adaptive-default"),
    pytest.param('max_batch_size = 64\nbatching = "adaptive"\nmax_queue_delay_us = 20000\ninstances = 2\n',
                 id="adaptive-20ms-2-instances"),
    pytest.param('max_batch_size = 64\nbatching = "off"\n', id="off"),
])
def test_every_concurrent_caller_receives_exactly_its_own_rows(start_server, config):
    srv = start_server(prepare=lambda m: (m / MLP / "config.toml").write_text(mlp_config(config)))
    labels = labels_file(srv.models_dir, MLP)
    for seed in (2, 3):      # two bursts: the second finds a warmed-up adaptive window
        calls = make_calls(64, seed=seed)
        answers = fire_concurrently(srv, MLP, calls)
        for call, resp in zip(calls, answers):
            check_call(srv, call, resp, labels)
    assert srv.is_running()


def test_batching_off_runs_every_request_alone(start_server):
    srv = start_server(prepare=lambda m: (m / MLP / "config.toml").write_text(
        mlp_config('max_batch_size = 64\nbatching = "off"\n')))
    calls = make_calls(32, seed=4)
    before = metrics(srv)
    answers = fire_concurrently(srv, MLP, calls)
    for call, resp in zip(calls, answers):
        check_call(srv, call, resp, labels_file(srv.models_dir, MLP))
    after = metrics(srv)
    execs = (metric(after, "lectern_inference_exec_count_total", MLP)
             - metric(before, "lectern_inference_exec_count_total", MLP))
    assert execs == len(calls), f"batching off: {execs} executions for {len(calls)} requests"
    n, rows, _ = executions_over_one_row(before, after, MLP)
    assert n == len(calls) and rows == sum(len(c.rows) for c in calls), (n, rows)


@dataclass
class Raw:
    body: bytes
    headers: dict


def dtypes_caller_arrays(i: int, n: int) -> dict[str, np.ndarray]:
    """n rows of 3 values per datatype, distinct per caller i (floats and strings carry i)."""
    arrays = {}
    for t in ALL_DATATYPES:
        if t == "BYTES":
            a = np.empty((n, 3), dtype=object)
            a[:] = [[f"caller {i} row {r} col {j} é🎉" for j in range(3)] for r in range(n)]
        elif t == "BOOL":
            a = np.array([[(i + r + j) % 3 == 0 for j in range(3)] for r in range(n)])
        elif t.startswith("FP"):
            a = np.array([[i + r * 0.25 + j * 0.125 for j in range(3)] for r in range(n)], dtype=V2_TO_NUMPY[t])
        else:
            a = np.array([[(i * 7 + r * 3 + j) % 60 for j in range(3)] for r in range(n)], dtype=V2_TO_NUMPY[t])
        arrays[t] = a
    return arrays


def test_every_datatype_is_batched_and_split_back_per_caller(start_server):
    """The dtypes model (one [N, 3] input per V2 datatype, BYTES included) made batchable:
    32 concurrent callers with 1..4 rows each get exactly their own rows of every output."""
    config = 'max_batch_size = 16\nbatching = "fixed"\nmax_queue_delay_us = 100000\ninstances = 1\n'
    srv = start_server(prepare=lambda m: (m / "dtypes" / "config.toml").write_text(config))
    calls, expected = [], []
    for i in range(32):
        n = 1 + i % 4
        arrays = dtypes_caller_arrays(i, n)
        header: dict = {"id": f"dt-{i}"}
        if i % 3 == 1:
            header["parameters"] = {"binary_data_output": True}
        if i % 2 == 0:
            specs, blobs = zip(*(binary_input(f"in_{t.lower()}", a, t) for t, a in arrays.items()))
            header["inputs"] = list(specs)
            calls.append(Raw(*binary_request(header, list(blobs))))
        else:
            header["inputs"] = [json_input(f"in_{t.lower()}", a, t) for t, a in arrays.items()]
            calls.append(Raw(json.dumps(header).encode(), {"Content-Type": "application/json"}))
        feeds = {f"in_{t.lower()}": a for t, a in arrays.items()}
        expected.append(ort_reference(model_file(srv.models_dir, "dtypes"), feeds))
    before = metrics(srv)
    answers = fire_concurrently(srv, "dtypes", calls)
    after = metrics(srv)
    for i, (resp, ref) in enumerate(zip(answers, expected)):
        assert not isinstance(resp, BaseException), f"caller {i}: {resp!r}"
        assert resp.status_code == 200, f"caller {i}: {resp.status_code} {resp.text[:500]}"
        header, outputs = parse_infer_response(resp)
        assert header.get("id") == f"dt-{i}", header.get("id")
        assert sorted(outputs) == sorted(ref), (i, sorted(outputs))
        for name, want in ref.items():
            got = outputs[name]
            assert list(got.shape) == list(want.shape), (i, name, got.shape, want.shape)
            if want.dtype == object:
                assert [to_bytes(v) for v in got.reshape(-1)] == [to_bytes(v) for v in want.reshape(-1)], (i, name)
            else:
                assert got.dtype == want.dtype and np.array_equal(got, want), (i, name, got.tolist(), want.tolist())
    execs = (metric(after, "lectern_inference_exec_count_total", "dtypes")
             - metric(before, "lectern_inference_exec_count_total", "dtypes"))
    assert execs < len(calls), f"{execs} executions for {len(calls)} requests: nothing was batched"


def build_rowsum_model(path: Path, dims=("batch", "width")):
    """x FP32 [N, W] (both free) -> y = sum over W, FP32 [N, 1]. `dims`: the ONNX names of the
    two free dimensions (None: anonymous, as some exporters write them)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)], "rowsum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dims[0], 1])],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


@pytest.mark.parametrize("dims", [pytest.param(("batch", "width"), id="named-dims"),
                                  pytest.param((None, None), id="anonymous-dims")])
def test_requests_with_different_non_batch_dimensions_are_not_mixed(start_server, dims):
    """Only requests whose inputs agree after the first dimension may share a batch: callers
    sending rows of widths 2, 3, 5 and 8 at once all get their own sums. The model's metadata
    is [-1, -1] either way; whether ONNX names its free dimensions must not matter."""
    def prepare(models: Path):
        build_rowsum_model(models / "rowsum" / "1" / "model.onnx", dims)
        (models / "rowsum" / "config.toml").write_text(
            'max_batch_size = 32\nbatching = "fixed"\nmax_queue_delay_us = 100000\ninstances = 1\n')

    srv = start_server(prepare=prepare)
    rng = np.random.default_rng(5)
    xs = [rng.uniform(-10, 10, (1 + i % 4, (2, 3, 5, 8)[i % 4 if i % 8 < 4 else (i // 2) % 4])).astype(np.float32)
          for i in range(40)]
    calls = []
    for i, x in enumerate(xs):
        if i % 2:
            spec, blob = binary_input("x", x, "FP32")
            calls.append(Raw(*binary_request({"inputs": [spec]}, [blob])))
        else:
            calls.append(Raw(json.dumps({"inputs": [json_input("x", x, "FP32")]}).encode(), {}))
    before = metrics(srv)
    answers = fire_concurrently(srv, "rowsum", calls)
    after = metrics(srv)
    for i, (resp, x) in enumerate(zip(answers, xs)):
        assert not isinstance(resp, BaseException), f"caller {i}: {resp!r}"
        assert resp.status_code == 200, f"caller {i} (shape {x.shape}): {resp.status_code} {resp.text[:500]}"
        _, outputs = parse_infer_response(resp)
        np.testing.assert_allclose(outputs["y"], x.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-4,
                                   err_msg=f"caller {i} (shape {x.shape})")
    execs = (metric(after, "lectern_inference_exec_count_total", "rowsum")
             - metric(before, "lectern_inference_exec_count_total", "rowsum"))
    widths = {x.shape[1] for x in xs}
    assert len(widths) <= execs < len(xs), f"{execs} executions for {len(xs)} requests of {len(widths)} widths"


# =========================================================================== max_batch_size

def test_a_request_over_max_batch_size_is_refused_with_400(start_server):
    srv = start_server(prepare=lambda m: (m / MLP / "config.toml").write_text(
        mlp_config('max_batch_size = 4\nbatching = "adaptive"\n')))
    x = digits_x()
    ok = srv.post(infer_path(MLP), json={"inputs": [json_input("X", x[:4], "FP32")]})
    assert ok.status_code == 200, ok.text[:500]
    assert_error(srv.post(infer_path(MLP), json={"inputs": [json_input("X", x[:5], "FP32")]}), 400)
    assert srv.is_running()


def test_max_batch_size_defaults_to_64_when_the_first_dimension_is_free(start_server):
    srv = start_server()   # digits-mlp's bundled config sets only labels; X is [-1, 64]
    x = digits_x()
    ok = srv.post(infer_path(MLP), json={"inputs": [json_input("X", x[:64], "FP32")]})
    assert ok.status_code == 200, ok.text[:500]
    assert_error(srv.post(infer_path(MLP), json={"inputs": [json_input("X", x[:65], "FP32")]}), 400)


# =========================================================================== deadlines

def test_expired_deadlines_are_answered_408_and_never_computed(start_server):
    srv = start_server(prepare=lambda m: add_slow_model(m, slow_config(batching="off", instances=1)))
    speed = calibrate(srv)
    busy = [slow_rows(speed.rows_for(0.8), seed=20), slow_rows(speed.rows_for(0.8), seed=21)]
    patient = slow_rows(3, seed=22)
    before = metrics(srv)

    # Two long requests: while the second waits in the queue the first is computing, so
    # anything sent now waits for at least ~0.8 s, far over its 1 ms timeout.
    first = start_occupier(srv, busy[0])
    second = Background(post_slow, srv, busy[1])
    wait_queue_depth(srv, SLOW, 1)
    assert not first.finished(), "the first long request finished before the test could queue behind it"

    n_expired = 6
    expiring = [Background(post_slow, srv, slow_rows(1 + i % 3, seed=30 + i), id=f"late-{i}",
                           parameters={"timeout": 1000})
                for i in range(n_expired)]
    wait_queue_depth(srv, SLOW, 1 + n_expired)
    # a generous timeout is not a reason to fail (queued last, behind the expired ones)
    lenient = Background(post_slow, srv, patient, parameters={"timeout": 120_000_000})

    for i, call in enumerate(expiring):
        assert_error(call.result(), 408, "timeout")
    check_slow_answer(srv, first.result(), busy[0])
    check_slow_answer(srv, second.result(), busy[1])
    check_slow_answer(srv, lenient.result(), patient)

    after = metrics(srv)

    def delta(name):
        return metric(after, name, SLOW) - metric(before, name, SLOW)

    assert delta("lectern_inference_deadline_expired_total") == n_expired, (
        f"lectern_inference_deadline_expired_total grew by {delta('lectern_inference_deadline_expired_total')}")
    assert delta("lectern_inference_exec_count_total") == 3, (
        f"{delta('lectern_inference_exec_count_total')} executions: only the two long requests and the "
        "patient one may have been computed")
    assert delta("lectern_inference_count_total") == len(busy[0]) + len(busy[1]) + len(patient)
    assert delta("lectern_inference_request_success_total") == 3
    assert delta("lectern_inference_request_failure_total") == n_expired
    assert queue_depth(srv, SLOW) == 0
    # and the model still serves
    x = slow_rows(2, seed=40)
    check_slow_answer(srv, post_slow(srv, x, parameters={"timeout": 60_000_000}), x)


def test_the_queue_depth_gauge_returns_to_0_when_the_last_queued_requests_expire(start_server):
    srv = start_server(prepare=lambda m: add_slow_model(m, slow_config(batching="off", instances=1)))
    speed = calibrate(srv)
    busy = slow_rows(speed.rows_for(0.8), seed=23)
    first = start_occupier(srv, busy)
    expiring = [Background(post_slow, srv, slow_rows(1, seed=24 + i), parameters={"timeout": 1000})
                for i in range(3)]
    wait_queue_depth(srv, SLOW, 3)
    for call in expiring:
        assert_error(call.result(), 408)
    check_slow_answer(srv, first.result(), busy)
    deadline = time.monotonic() + 2.0
    while (depth := queue_depth(srv, SLOW)) != 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert depth == 0, (f"lectern_inference_queue_depth is {depth} after every queued request was answered "
                        "(the last ones 408)")


# =========================================================================== priorities

def test_priority_requests_leave_the_queue_before_default_ones(start_server):
    srv = start_server(prepare=lambda m: add_slow_model(m, slow_config(batching="off", instances=1)))
    speed = calibrate(srv)
    step_rows = speed.rows_for(0.08)
    for attempt, factor in enumerate(OCCUPY_FACTORS):
        occupying = slow_rows(speed.rows_for(1.5 * factor), seed=50 + attempt)
        order, all_queued_while_busy = priority_round(srv, occupying, step_rows)
        if all_queued_while_busy:
            break
    else:
        pytest.fail(f"the occupying request finished before the queue was built, {len(OCCUPY_FACTORS)} times, "
                    f"the last time with {len(occupying)} rows; last completion order {order}")
    defaults_before = lambda name: sum(1 for n in order[:order.index(name)] if n.startswith("default"))  # noqa: E731
    # Allow one default request to slip through (taken by the worker as the occupier ended).
    assert defaults_before("priority-1") <= 1, f"completion order: {order}"
    assert defaults_before("priority-2") <= 1, f"completion order: {order}"
    assert order.index("priority-1") < order.index("priority-2"), f"completion order: {order}"
    # the default ones keep their arrival order among themselves
    defaults = [n for n in order if n.startswith("default")]
    assert defaults == sorted(defaults, key=lambda n: int(n.split("-")[1])), f"completion order: {order}"


def priority_round(srv, occupying: np.ndarray, step_rows: int) -> tuple[list[str], bool]:
    """Occupies the slow model, queues six default-priority requests, then one of priority 2
    and one of priority 1; returns the completion order (every answer checked) and whether all
    eight were queued while the occupier still ran."""
    occupier = start_occupier(srv, occupying)

    calls: list[tuple[str, Background, np.ndarray]] = []
    n_default = 6
    for i in range(n_default):
        x = slow_rows(step_rows, seed=60 + i)
        # even ones say nothing, odd ones say priority 0: both mean the default level
        extra = {"parameters": {"priority": 0}} if i % 2 else {}
        calls.append((f"default-{i}", Background(post_slow, srv, x, **extra), x))
        wait_queue_depth(srv, SLOW, i + 1, while_running=occupier)
    x = slow_rows(step_rows, seed=70)
    calls.append(("priority-2", Background(post_slow, srv, x, parameters={"priority": 2}), x))
    wait_queue_depth(srv, SLOW, n_default + 1, while_running=occupier)
    x = slow_rows(step_rows, seed=71)
    calls.append(("priority-1", Background(post_slow, srv, x, parameters={"priority": 1}), x))
    reached = wait_queue_depth(srv, SLOW, n_default + 2, while_running=occupier)
    all_queued_while_busy = reached is not None and not occupier.finished()

    check_slow_answer(srv, occupier.result(), occupying)
    for name, call, x in calls:
        check_slow_answer(srv, call.result(), x)
    order = [name for name, call, _ in sorted(calls, key=lambda c: c[1].done_at)]
    return order, all_queued_while_busy


# =========================================================================== queue bound

def test_a_full_queue_answers_503_with_retry_after_1_while_the_model_is_busy(start_server):
    capacity = 2
    srv = start_server(prepare=lambda m: add_slow_model(
        m, slow_config(batching="off", instances=1, extra=f"queue_capacity = {capacity}\n")))
    speed = calibrate(srv)
    occupying = slow_rows(speed.rows_for(1.5), seed=80)
    before = metrics(srv)
    occupier = start_occupier(srv, occupying)

    n = 12
    xs = [slow_rows(2, seed=90 + i) for i in range(n)]
    burst = [Background(post_slow, srv, x) for x in xs]
    # Settled: every burst request is either answered (503) or waiting in the queue.
    deadline = time.monotonic() + WAIT_S
    settled_while_busy = False
    while time.monotonic() < deadline and not occupier.finished():
        answered = sum(b.finished() for b in burst)
        if answered + (queue_depth(srv, SLOW) or 0) >= n:
            settled_while_busy = not occupier.finished()
            break
        time.sleep(0.005)
    responses = [b.result() for b in burst]
    check_slow_answer(srv, occupier.result(), occupying)

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    for r, x in zip(responses, xs):
        if r.status_code == 503:
            assert r.headers.get("Retry-After") == "1", dict(r.headers)
            assert_error(r, 503)
        else:
            check_slow_answer(srv, r, x)
    rejected = statuses.count(503)
    assert rejected >= 1, f"queue_capacity {capacity}, {n} requests sent while the model was busy: {statuses}"
    if settled_while_busy:
        # At most `capacity` wait while one computes; allow two more for requests a worker or
        # hand-off may hold outside the bounded queue.
        assert rejected >= n - capacity - 2, f"queue_capacity {capacity}: statuses {statuses}"
    after = metrics(srv)
    assert (metric(after, "lectern_inference_queue_rejected_total", SLOW)
            - metric(before, "lectern_inference_queue_rejected_total", SLOW)) == rejected
    assert (metric(after, "lectern_inference_exec_count_total", SLOW)
            - metric(before, "lectern_inference_exec_count_total", SLOW)) == 1 + statuses.count(200)
    # the queue drains and the model serves again
    x = slow_rows(1, seed=99)
    check_slow_answer(srv, post_slow(srv, x), x)
    assert srv.is_running()


# =========================================================================== metrics

def test_batching_metrics_are_exported_per_model(start_server):
    srv = start_server(prepare=lambda m: (m / MLP / "config.toml").write_text(mlp_config(FIXED_WINDOW)))
    x = digits_x()[:3]
    resp = srv.post(infer_path(MLP), json={"inputs": [json_input("X", x, "FP32")]})
    assert resp.status_code == 200, resp.text[:500]
    text = srv.get("/metrics").text
    samples = parse_metrics(text)
    for name in ("lectern_inference_batch_size_count", "lectern_inference_batch_size_sum",
                 "lectern_inference_queue_depth", "lectern_inference_queue_rejected_total",
                 "lectern_inference_deadline_expired_total"):
        assert metric_value(samples, name, model=MLP, version="1") is not None, f"{name} for {MLP}:1 missing"
    assert metric_value(samples, "lectern_inference_batch_size_count", model=MLP, version="1") >= 1
    assert metric_value(samples, "lectern_inference_batch_size_sum", model=MLP, version="1") >= 3
    assert metric_value(samples, "lectern_inference_queue_depth", model=MLP, version="1") == 0
