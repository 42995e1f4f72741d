"""The ONNX Runtime engine end to end: every bundled model served with `engine = "ort"` in its
config.toml, each answer checked against onnxruntime (the Python wheel) on the same model file.

The binary: `LECTERN_ORT_BIN` when set (scripts/test.sh builds `lectern --features ort` once and
sets it; the test then fails, never skips, when that binary cannot run ONNX Runtime), else the
binary under test (`LECTERN_BIN`), which is skipped as "feature not built" when it was built
without the cargo feature `ort`. The ONNX Runtime library given to the server is the one of
the onnxruntime wheel these tests import (`ORT_DYLIB_PATH`, unless the environment sets it).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from conftest import lectern_binary, skip_feature_not_built
from lectern_checks import assert_error, ok
from lectern_v2 import (
    ALL_DATATYPES,
    cancer_x,
    digits_images,
    digits_x,
    dtypes_arrays,
    dtypes_reference,
    iris_x,
    json_input,
    model_file,
    ort_reference,
    parse_infer_response,
    to_bytes,
)

# model -> (input name, rows) for the classifiers; dtypes is checked on its own.
CASES = {
    "iris-logreg": ("X", lambda: iris_x()[::10]),
    "iris-forest": ("X", lambda: iris_x()[::10]),
    "cancer-tree": ("X", lambda: cancer_x()[::40]),
    "cancer-scaled-logreg": ("X", lambda: cancer_x()[::40]),
    "digits-mlp": ("X", lambda: digits_x()[::100]),
    "digits-cnn": ("image", lambda: digits_images()[::100]),
}
NOT_IN_THIS_BUILD = "is not in this build"


def ort_library() -> str:
    """The ONNX Runtime shared library of the onnxruntime wheel these tests use."""
    if os.environ.get("ORT_DYLIB_PATH"):
        return os.environ["ORT_DYLIB_PATH"]
    capi = Path(onnxruntime.__file__).parent / "capi"
    found = sorted((p for p in capi.glob("libonnxruntime.so*")), key=lambda p: -len(p.name))
    assert found, f"no libonnxruntime.so* in {capi}"
    return str(found[0])


def ort_binary() -> tuple[Path, bool]:
    """(binary, required): the binary to run and whether it must have the `ort` feature."""
    explicit = os.environ.get("LECTERN_ORT_BIN")
    if explicit:
        return Path(explicit), True
    return lectern_binary(), False


def with_ort_engine(models: Path):
    for folder in models.iterdir():
        config = folder / "config.toml"
        text = config.read_text() if config.exists() else ""
        config.write_text(text + ('\n' if text and not text.endswith('\n') else '') + 'engine = "ort"\n')


@pytest.fixture
def ort_server(start_server):
    binary, required = ort_binary()
    srv = start_server(prepare=with_ort_engine, binary=binary, env={"ORT_DYLIB_PATH": ort_library()})
    iris = ok(srv.get("/v1/models/iris-logreg"))
    reasons = [v["reason"] for v in iris["versions"] if v["state"] == "UNAVAILABLE"]
    if not required and any(NOT_IN_THIS_BUILD in r for r in reasons):
        skip_feature_not_built("ort", f"{binary} was built without it; set LECTERN_ORT_BIN to a binary with it")
    return srv


def test_every_bundled_model_serves_on_onnx_runtime_with_its_answers(ort_server):
    srv = ort_server
    models = ok(srv.get("/v1/models"))["models"]
    assert sorted(m["name"] for m in models) == sorted([*CASES, "dtypes"])
    for m in models:
        assert m["config"]["engine"] == "ort", m
        for v in m["versions"]:
            if v["serving"]:
                assert v["state"] == "READY", (m["name"], v)
    # The engine really is ONNX Runtime, from the library given to the server.
    log = srv.stderr_text()
    assert "loaded ONNX Runtime" in log and ort_library() in log, log[-3000:]

    for model, (input_name, rows) in CASES.items():
        x = rows()
        resp = srv.post(f"/v2/models/{model}/infer", json={"inputs": [json_input(input_name, x, "FP32")]})
        assert resp.status_code == 200, f"{model}: {resp.status_code} {resp.text[:500]}"
        header, outputs = parse_infer_response(resp)
        version = int(header["model_version"])
        ref = ort_reference(model_file(srv.models_dir, model, version), {input_name: x})
        assert sorted(outputs) == sorted(ref), (model, sorted(outputs), sorted(ref))
        for name, want in ref.items():
            got = outputs[name]
            assert list(got.shape) == list(want.shape), (model, name, got.shape, want.shape)
            if want.dtype.kind == "f":
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=f"{model} {name}")
            else:
                assert np.array_equal(got, want), (model, name, got.tolist(), want.tolist())


def test_every_datatype_round_trips_on_onnx_runtime(ort_server):
    srv = ort_server
    arrays = dtypes_arrays()
    reference = dtypes_reference(srv.models_dir, arrays)
    body = {"inputs": [json_input(f"in_{t.lower()}", a, t) for t, a in arrays.items()]}
    header, outputs = parse_infer_response(ok_infer(srv, "dtypes", body))
    assert {o["name"]: o["datatype"] for o in header["outputs"]} == {f"out_{t.lower()}": t for t in ALL_DATATYPES}
    for name, want in reference.items():
        got = outputs[name]
        if want.dtype == object:
            assert [to_bytes(v) for v in got.reshape(-1)] == [to_bytes(v) for v in want.reshape(-1)], name
        else:
            assert got.dtype == want.dtype and np.array_equal(got, want), (name, got.tolist(), want.tolist())


def test_bad_input_on_onnx_runtime_is_a_400_and_the_model_keeps_serving(ort_server):
    srv = ort_server
    x = iris_x()[:3]
    assert_error(srv.post("/v2/models/iris-logreg/infer", json={"inputs": [json_input("X", x[:, :3], "FP32")]}), 400)
    ok_infer(srv, "iris-logreg", {"inputs": [json_input("X", x, "FP32")]})


def ok_infer(srv, model: str, body: dict):
    resp = srv.post(f"/v2/models/{model}/infer", json=body)
    assert resp.status_code == 200, f"{model}: {resp.status_code} {resp.text[:500]}"
    return resp
