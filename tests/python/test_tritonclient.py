"""Lectern driven by the real Triton HTTP client (`tritonclient.http`).

Values are checked against onnxruntime running the same model files.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from lectern_v2 import (
    ALL_DATATYPES,
    V2_TO_NUMPY,
    cancer_x,
    check_classification,
    dtypes_arrays,
    dtypes_reference,
    digits_images,
    iris_x,
    labels_file,
    model_file,
    ort_reference,
    to_bytes,
)

GARBAGE = b"definitely not protobuf \xff\x00" * 10


@pytest.fixture(scope="module")
def client(server):
    c = httpclient.InferenceServerClient(url=server.host_port, network_timeout=60.0)
    yield c
    c.close()


@pytest.fixture
def make_client():
    clients = []

    def make(srv):
        c = httpclient.InferenceServerClient(url=srv.host_port, network_timeout=60.0)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def fp32_input(name, x, binary):
    inp = httpclient.InferInput(name, list(x.shape), "FP32")
    inp.set_data_from_numpy(np.ascontiguousarray(x, dtype=np.float32), binary_data=binary)
    return inp


def assert_iris(result, models_dir, model, version, x):
    ref = ort_reference(model_file(models_dir, model, version), {"X": x})
    label = result.as_numpy("output_label")
    probs = result.as_numpy("output_probability")
    assert label is not None and probs is not None, result.get_response()
    assert label.dtype == np.int64 and probs.dtype == np.float32
    assert np.array_equal(label, ref["output_label"])
    np.testing.assert_allclose(probs, ref["output_probability"], rtol=0, atol=1e-5)
    assert str(result.get_response()["model_version"]) == str(version)


def test_tritonclient_sees_a_live_and_ready_server(client):
    assert client.is_server_live()
    assert client.is_server_ready()


def test_tritonclient_reads_the_server_metadata(client):
    meta = client.get_server_metadata()
    assert meta["name"] == "lectern"
    for ext in ("binary_tensor_data", "model_repository", "classification"):
        assert ext in meta["extensions"]


def test_tritonclient_reads_model_metadata_and_readiness(client):
    meta = client.get_model_metadata("iris-logreg")
    assert meta["name"] == "iris-logreg"
    assert meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert client.get_model_metadata("iris-logreg", "1")["versions"] == ["1"]
    assert client.is_model_ready("iris-logreg")
    assert client.is_model_ready("iris-logreg", "1")
    assert not client.is_model_ready("no-such-model")
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("no-such-model")
    assert err.value.status() == "404"


def test_tritonclient_infers_with_json_tensors(client, server):
    x = iris_x()[::8]
    outputs = [httpclient.InferRequestedOutput("output_label", binary_data=False),
               httpclient.InferRequestedOutput("output_probability", binary_data=False)]
    result = client.infer("iris-logreg", [fp32_input("X", x, binary=False)], model_version="1", outputs=outputs)
    for out in result.get_response()["outputs"]:
        assert "data" in out and "binary_data_size" not in (out.get("parameters") or {}), out
    assert_iris(result, server.models_dir, "iris-logreg", 1, x)


def test_tritonclient_infers_with_binary_tensors_by_default(client, server):
    x = iris_x()[1::8]
    result = client.infer("iris-logreg", [fp32_input("X", x, binary=True)])  # all outputs binary
    for out in result.get_response()["outputs"]:
        assert "binary_data_size" in (out.get("parameters") or {}), out
    assert_iris(result, server.models_dir, "iris-logreg", 2, x)


@pytest.mark.parametrize("label_binary,probs_binary", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("input_binary", [True, False])
def test_tritonclient_requested_outputs_honour_binary_data(client, server, input_binary, label_binary, probs_binary):
    x = cancer_x()[::37]
    outputs = [httpclient.InferRequestedOutput("output_label", binary_data=label_binary),
               httpclient.InferRequestedOutput("output_probability", binary_data=probs_binary)]
    result = client.infer("cancer-scaled-logreg", [fp32_input("X", x, binary=input_binary)], outputs=outputs)
    by_name = {o["name"]: o for o in result.get_response()["outputs"]}
    assert set(by_name) == {"output_label", "output_probability"}
    for name, binary in (("output_label", label_binary), ("output_probability", probs_binary)):
        assert ("binary_data_size" in (by_name[name].get("parameters") or {})) == binary, by_name[name]
    ref = ort_reference(model_file(server.models_dir, "cancer-scaled-logreg"), {"X": x})
    assert np.array_equal(result.as_numpy("output_label"), ref["output_label"])
    np.testing.assert_allclose(result.as_numpy("output_probability"), ref["output_probability"], rtol=0, atol=1e-5)


def test_tritonclient_gets_only_the_requested_output(client, server):
    x = digits_images()[:10]
    inp = httpclient.InferInput("image", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("digits-cnn", [inp], outputs=[httpclient.InferRequestedOutput("probabilities")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probabilities"]
    ref = ort_reference(model_file(server.models_dir, "digits-cnn"), {"image": x})
    np.testing.assert_allclose(result.as_numpy("probabilities"), ref["probabilities"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_class_count_returns_top_k_classes(client, server, binary):
    x = iris_x()[::15]
    out = httpclient.InferRequestedOutput("output_probability", binary_data=binary, class_count=2)
    result = client.infer("iris-logreg", [fp32_input("X", x, binary=True)], model_version="2", outputs=[out])
    classes = result.as_numpy("output_probability")
    assert classes.shape == (len(x), 2)
    ref = ort_reference(model_file(server.models_dir, "iris-logreg", 2), {"X": x})
    check_classification(classes, ref["output_probability"], 2, labels_file(server.models_dir, "iris-logreg"))


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_round_trips_every_datatype(client, server, binary):
    arrays = dtypes_arrays()
    inputs = []
    for t, a in arrays.items():
        inp = httpclient.InferInput(f"in_{t.lower()}", list(a.shape), t)
        data = a
        if t == "BYTES":
            data = np.array([[to_bytes(v) for v in row] for row in a], dtype=np.object_)
        inp.set_data_from_numpy(data, binary_data=binary)
        inputs.append(inp)
    outputs = [httpclient.InferRequestedOutput(f"out_{t.lower()}", binary_data=binary) for t in ALL_DATATYPES]
    result = client.infer("dtypes", inputs, outputs=outputs, request_id="dtypes-42")
    assert result.get_response()["id"] == "dtypes-42"
    ref = dtypes_reference(server.models_dir, arrays)
    for t in ALL_DATATYPES:
        name = f"out_{t.lower()}"
        got = result.as_numpy(name)
        assert got is not None, name
        expected = ref[name]
        assert got.shape == expected.shape, name
        if t == "BYTES":
            assert [to_bytes(v) for v in got.reshape(-1)] == [to_bytes(v) for v in expected.reshape(-1)]
        else:
            assert got.dtype == V2_TO_NUMPY[t], (name, got.dtype)
            assert np.array_equal(got, expected), (name, got.tolist(), expected.tolist())


def test_tritonclient_reads_the_repository_index(client, server):
    index = client.get_model_repository_index()
    names = {e["name"] for e in index}
    assert names == {p.name for p in server.models_dir.iterdir() if p.is_dir()}
    assert all(e["state"] == "READY" for e in index), index


def test_tritonclient_errors_carry_the_http_status(client):
    x = iris_x()[:2]
    with pytest.raises(InferenceServerException) as err:
        client.infer("no-such-model", [fp32_input("X", x, True)])
    assert err.value.status() == "404" and err.value.message()
    bad = httpclient.InferInput("X", [2, 4], "FP64")
    bad.set_data_from_numpy(x.astype(np.float64))
    with pytest.raises(InferenceServerException) as err:
        client.infer("iris-forest", [bad])
    assert err.value.status() == "400" and err.value.message()
    assert client.is_server_live()


def test_tritonclient_unloads_and_loads_a_model(start_server, make_client):
    srv = start_server()
    c = make_client(srv)
    x = iris_x()[::10]
    c.unload_model("iris-forest")
    assert not c.is_model_ready("iris-forest")
    with pytest.raises(InferenceServerException) as err:
        c.infer("iris-forest", [fp32_input("X", x, True)])
    assert err.value.status() == "400"
    ready_names = {e["name"] for e in c.get_model_repository_index() if e["state"] == "READY"}
    assert "iris-forest" not in ready_names
    c.load_model("iris-forest")
    assert c.is_model_ready("iris-forest")
    result = c.infer("iris-forest", [fp32_input("X", x, True)])
    assert_iris(result, srv.models_dir, "iris-forest", 1, x)


def test_tritonclient_load_of_a_broken_model_raises_and_the_old_one_keeps_serving(start_server, make_client):
    srv = start_server()
    c = make_client(srv)
    x = iris_x()[::10]
    ref_result_version = 2
    ref = ort_reference(model_file(srv.models_dir, "iris-logreg", 2), {"X": x})
    model_file(srv.models_dir, "iris-logreg", 2).write_bytes(GARBAGE)
    with pytest.raises(InferenceServerException) as err:
        c.load_model("iris-logreg")
    assert err.value.status() == "400"
    result = c.infer("iris-logreg", [fp32_input("X", x, True)])
    assert str(result.get_response()["model_version"]) == str(ref_result_version)
    np.testing.assert_allclose(result.as_numpy("output_probability"), ref["output_probability"], rtol=0, atol=1e-5)
    assert np.array_equal(result.as_numpy("output_label"), ref["output_label"])


def test_tritonclient_loads_a_model_copied_in_after_startup(start_server, make_client):
    srv = start_server()
    c = make_client(srv)
    shutil.copytree(srv.models_dir / "digits-mlp", srv.models_dir / "digits-mlp-2")
    c.load_model("digits-mlp-2")
    x = (digits_images()[:12]).reshape(12, 64)
    result = c.infer("digits-mlp-2", [fp32_input("X", x, True)])
    ref = ort_reference(model_file(srv.models_dir, "digits-mlp-2"), {"X": x})
    assert np.array_equal(result.as_numpy("output_label"), ref["output_label"])
    np.testing.assert_allclose(result.as_numpy("output_probability"), ref["output_probability"], rtol=0, atol=1e-5)
