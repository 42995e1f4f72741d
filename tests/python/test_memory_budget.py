"""The memory budget and models loaded on demand (issue 16, docs/contract.md "Memory budget").

`lectern serve --memory-budget SIZE`: a load that would take the loaded models over the budget
first unloads the least recently used unpinned ones; a request for such a model (or for a lazy
one) loads it and waits; `pinned = true` models stay. The models here are MatMuls over a weight
of a known size, written by the test with onnx.helper.
"""
from __future__ import annotations

import shutil
import subprocess
import threading

import numpy as np
import onnx
import pytest
import requests
import tritonclient.grpc as grpcclient
from onnx import TensorProto, helper, numpy_helper

from conftest import EXAMPLE_MODELS, LecternServer, lectern_binary
from lectern_checks import assert_error, describe, ok, scrape, wait_until
from lectern_v2 import iris_x, json_input, metric_value

WIDTH = 64
MIB = 1 << 20


def matmul_model(folder, name: str, weight_mib: float, config: str = "", seed: int = 0):
    """`Y = X @ W` with X FP32 [N, 64] and W of about `weight_mib` MiB (deterministic values)."""
    columns = int(weight_mib * MIB / 4 / WIDTH)
    weight = np.random.default_rng(seed).standard_normal((WIDTH, columns)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])], name,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", WIDTH])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", columns])],
        [numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    (folder / name / "1").mkdir(parents=True)
    (folder / name / "1" / "model.onnx").write_bytes(model.SerializeToString())
    (folder / name / "config.toml").write_text(config)
    return weight


def infer(srv, name: str, x: np.ndarray | None = None) -> requests.Response:
    x = np.ones((1, WIDTH), dtype=np.float32) if x is None else x
    return srv.post(f"/v2/models/{name}/infer", json={"inputs": [json_input("X", x, "FP32")]}, timeout=120)


def memory(srv) -> dict[str, tuple[float, float, float]]:
    """Per model: (loads, evictions, resident bytes)."""
    samples = scrape(srv)
    names = {labels["model"] for n, labels, _ in samples if n == "lectern_model_loads_total"}
    return {m: tuple(metric_value(samples, f, model=m) for f in
                     ("lectern_model_loads_total", "lectern_model_evictions_total", "lectern_model_resident_bytes"))
            for m in names}


def index_reasons(srv) -> dict[str, str]:
    rows = ok(srv.post("/v2/repository/index", json={}))
    return {r["name"]: r.get("reason", "") for r in rows if r["state"] != "READY"}


def start(tmp_path, models, extra=()) -> LecternServer:
    (tmp_path / "data").mkdir()
    return LecternServer(models, tmp_path / "data", extra_args=list(extra))


@pytest.fixture
def models(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


def test_loads_past_the_budget_unload_the_least_recently_used_and_requests_load_them_again(tmp_path, models):
    weights = {f"m{i}": matmul_model(models, f"m{i}", 4, seed=i) for i in range(7)}
    shutil.copytree(EXAMPLE_MODELS / "iris-logreg", models / "iris-logreg")
    (models / "iris-logreg" / "config.toml").write_text("pinned = true\n")
    # seven models hold at least 7 x 4 MiB, more than the budget; a load needs 4 x 4 MiB the
    # first time, later what it took (about 20 MiB), less than the budget
    budget = 24 * MIB
    srv = start(tmp_path, models, ["--memory-budget", "24MiB"])
    try:
        x = np.linspace(-1, 1, WIDTH, dtype=np.float32).reshape(1, WIDTH)
        for round_ in range(3):
            for name, weight in weights.items():
                resp = infer(srv, name, x)
                body = ok(resp)
                got = np.array(body["outputs"][0]["data"], dtype=np.float32)
                np.testing.assert_allclose(got, (x @ weight).ravel(), rtol=1e-4, atol=1e-4)
                held = memory(srv)
                assert sum(r for _, _, r in held.values()) <= budget, held
                assert held[name][2] >= 4 * MIB, (name, held[name])
        ok(srv.post("/v2/models/iris-logreg/infer", json={"inputs": [json_input("X", iris_x()[:1], "FP32")]}))
        held = memory(srv)
        assert held["iris-logreg"][1] == 0, "a pinned model is never unloaded"
        assert all(held[m][1] >= 1 for m in weights), held
        assert all(held[m][0] == held[m][1] + (held[m][2] > 0) for m in weights), held
        samples = scrape(srv)
        assert metric_value(samples, "lectern_memory_budget_bytes") == budget
        assert metric_value(samples, "lectern_process_resident_bytes") > 0
        evicted = [m for m in weights if held[m][2] == 0]
        assert evicted, held
        reasons = index_reasons(srv)
        for m in evicted:
            assert reasons[m] == "unloaded to stay within the memory budget: the next request loads it again"
        # metadata and readiness load an evicted model too
        meta = ok(srv.get(f"/v2/models/{evicted[0]}"))
        assert meta["inputs"][0]["name"] == "X"
        assert memory(srv)[evicted[0]][2] > 0
    finally:
        srv.cleanup()


def test_a_lazy_model_loads_on_its_first_request_and_an_unloaded_one_stays_unloaded(tmp_path, models):
    matmul_model(models, "lazy", 1, "lazy = true\n")
    matmul_model(models, "eager", 1)
    srv = start(tmp_path, models, ["--grpc-listen", "127.0.0.1:0"])
    try:
        held = memory(srv)
        assert held["lazy"] == (0, 0, 0) and held["eager"][0] == 1, held
        assert index_reasons(srv) == {"lazy": "lazy: the first request loads it"}
        client = grpcclient.InferenceServerClient(url=srv.grpc_host_port)
        assert client.is_model_ready("lazy"), "ModelReady loads a lazy model"
        assert memory(srv)["lazy"][0] == 1
        ok(infer(srv, "lazy"))

        ok(srv.post("/v2/repository/models/lazy/unload", json={}))
        assert_error(infer(srv, "lazy"), 400, "unloaded")
        assert not client.is_model_ready("lazy")
        assert memory(srv)["lazy"] == (1, 0, 0)
        ok(srv.post("/v2/repository/models/lazy/load", json={}))
        ok(infer(srv, "lazy"))
        assert memory(srv)["lazy"][0] == 2
    finally:
        srv.cleanup()


def test_concurrent_first_requests_share_one_load(tmp_path, models):
    matmul_model(models, "lazy", 8, "lazy = true\n")
    srv = start(tmp_path, models)
    try:
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(infer(srv, "lazy"))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.status_code for r in answers] == [200] * 8, [describe(r) for r in answers if r.status_code != 200]
        assert memory(srv)["lazy"][0] == 1
    finally:
        srv.cleanup()


def test_a_request_past_the_load_wait_gets_503_and_a_retry_finds_the_model(tmp_path, models):
    matmul_model(models, "lazy", 8, "lazy = true\n")
    srv = start(tmp_path, models, ["--model-load-wait-s", "0.000001"])
    try:
        resp = infer(srv, "lazy")
        assert_error(resp, 503, "loading on demand")
        assert resp.json()["code"] == "model_loading"
        assert resp.headers["Retry-After"] == "1"
        wait_until(lambda: infer(srv, "lazy").status_code == 200, "the load goes on without the request")
        assert memory(srv)["lazy"][0] == 1
    finally:
        srv.cleanup()


def test_a_model_larger_than_the_budget_is_refused_and_unloads_nothing(tmp_path, models):
    matmul_model(models, "small", 1, "pinned = true\n")
    matmul_model(models, "huge", 8, "lazy = true\n")
    srv = start(tmp_path, models, ["--memory-budget", "6MiB"])
    try:
        message = assert_error(infer(srv, "huge"), 400, "model 'huge' needs about 32.0 MiB",
                               "the memory budget of 6.0 MiB leaves")
        assert "beside the pinned models" in message
        assert infer(srv, "huge").json()["code"] == "model_load_failed"
        held = memory(srv)
        assert held["huge"] == (0, 0, 0) and held["small"][1] == 0, held
        ok(infer(srv, "small"))
    finally:
        srv.cleanup()


@pytest.mark.parametrize("args, message", [
    (["--memory-budget", "lots"], "memory_budget: cannot read 'lots' (e.g. 2GiB, 512MiB)"),
    (["--memory-budget", "0"], "memory_budget: cannot read '0'"),
    (["--model-load-wait-s=-1"], "model_load_wait_s must be a positive number of seconds"),
    (["--memory-budget", "1GiB", "--nats", "nats://127.0.0.1:4222"],
     "--memory-budget applies to the models a server loads itself"),
])
def test_a_bad_budget_setting_stops_the_start_with_a_message(tmp_path, models, args, message):
    proc = subprocess.run(
        [str(lectern_binary()), "serve", "--models", str(models), "--listen", "127.0.0.1:0",
         "--data", str(tmp_path / "data"), *args],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, proc
    assert message in proc.stderr, proc.stderr
