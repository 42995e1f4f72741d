"""End-to-end tests of Lectern's V2 REST protocol (docs/contract.md) using plain `requests`.

Expected values always come from onnxruntime running the very same model file the server
serves, never from the server itself.
"""
from __future__ import annotations

import json
import re
import shutil
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import requests

from lectern_checks import assert_error
from lectern_v2 import (
    ALL_DATATYPES,
    EXAMPLE_MODELS,
    V2_TO_NUMPY,
    binary_input,
    binary_output_names,
    check_classification,
    DTYPE_WRAP_VALUES,
    dtypes_arrays,
    dtypes_reference,
    binary_request,
    iris_labels,
    iris_x,
    json_input,
    labels_file,
    metric_value,
    model_file,
    ort_reference,
    parse_infer_response,
    parse_metrics,
    to_bytes,
    cancer_x,
    digits_images,
)

GARBAGE = b"this is not an onnx model \x00\x01\x02\xff" * 8

def assert_tensor_equal(name, actual: np.ndarray, expected: np.ndarray):
    assert list(actual.shape) == list(expected.shape), f"{name}: shape {actual.shape} != {expected.shape}"
    if expected.dtype == object:
        got = [to_bytes(v) for v in actual.reshape(-1)]
        want = [to_bytes(v) for v in expected.reshape(-1)]
        assert got == want, f"{name}: {got!r} != {want!r}"
    else:
        assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
        assert np.array_equal(actual, expected), f"{name}: {actual.tolist()} != {expected.tolist()}"


def assert_dtypes_outputs(header, outputs, reference, names=None):
    names = names or [f"out_{t.lower()}" for t in ALL_DATATYPES]
    returned = [o["name"] for o in header["outputs"]]
    assert sorted(returned) == sorted(names), f"returned outputs {returned}, wanted {names}"
    by_name = {o["name"]: o for o in header["outputs"]}
    for name in names:
        datatype = name[len("out_"):].upper()
        assert by_name[name]["datatype"] == datatype, f"{name}: datatype {by_name[name]['datatype']}"
        assert [int(d) for d in by_name[name]["shape"]] == list(reference[name].shape)
        assert_tensor_equal(name, outputs[name], reference[name])


def iris_request(x: np.ndarray, **extra) -> dict:
    req = {"inputs": [json_input("X", x, "FP32")]}
    req.update(extra)
    return req


def infer(server, model: str, body=None, version=None, **kw) -> requests.Response:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version is not None else "") + "/infer"
    if body is not None:
        kw["json"] = body
    return server.post(path, **kw)


def infer_ok(server, model, body=None, version=None, **kw):
    resp = infer(server, model, body, version, **kw)
    assert resp.status_code == 200, f"{model} infer: {resp.status_code} {resp.text[:1000]}"
    return parse_infer_response(resp)


def index_entries(server, body=None) -> list[dict]:
    resp = server.post("/v2/repository/index", json=body) if body is not None else server.post("/v2/repository/index")
    assert resp.status_code == 200, resp.text
    entries = resp.json()
    assert isinstance(entries, list), entries
    return entries


def entries_for(entries, name):
    return [e for e in entries if e.get("name") == name]


def assert_iris_matches(server_or_dir, header, outputs, x, version):
    models_dir = server_or_dir.models_dir if hasattr(server_or_dir, "models_dir") else server_or_dir
    ref = ort_reference(model_file(models_dir, "iris-logreg", version), {"X": x})
    assert str(header["model_version"]) == str(version)
    assert np.array_equal(outputs["output_label"], ref["output_label"])
    np.testing.assert_allclose(outputs["output_probability"], ref["output_probability"], rtol=0, atol=1e-5)


IRIS_ROWS = iris_x()[[0, 50, 100, 120, 70, 133]]


# =========================================================================== start-up, health

def test_the_server_prints_exactly_one_listening_line_on_stdout(server):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url), server.url
    assert server.stdout_lines == [f"lectern listening on {server.url}"]


def test_live_answers_live_true(server):
    resp = server.get("/v2/health/live")
    assert resp.status_code == 200
    assert resp.json() == {"live": True}


def test_ready_answers_ready_true_after_the_startup_scan(server):
    resp = server.get("/v2/health/ready")
    assert resp.status_code == 200
    assert resp.json() == {"ready": True}


def test_server_metadata_names_lectern_and_lists_its_extensions(server):
    resp = server.get("/v2")
    assert resp.status_code == 200
    meta = resp.json()
    assert meta["name"] == "lectern"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", meta["version"]), meta["version"]
    for ext in ("binary_tensor_data", "model_repository", "classification", "schedule_policy"):
        assert ext in meta["extensions"], meta


# =========================================================================== model metadata

def by_name(tensors):
    return {t["name"]: t for t in tensors}


def test_model_metadata_describes_iris_logreg_with_both_served_versions(server):
    resp = server.get("/v2/models/iris-logreg")
    assert resp.status_code == 200, resp.text
    meta = resp.json()
    assert meta["name"] == "iris-logreg"
    assert meta["versions"] == ["1", "2"]
    assert meta["platform"] == "onnx"
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    outs = by_name(meta["outputs"])
    assert set(outs) == {"output_label", "output_probability"}
    assert outs["output_label"]["datatype"] == "INT64"
    assert outs["output_label"]["shape"] == [-1]
    assert outs["output_probability"]["datatype"] == "FP32"
    assert outs["output_probability"]["shape"] == [-1, 3]


def test_versioned_model_metadata_lists_only_that_version(server):
    for v in ("1", "2"):
        resp = server.get(f"/v2/models/iris-logreg/versions/{v}")
        assert resp.status_code == 200, resp.text
        meta = resp.json()
        assert meta["name"] == "iris-logreg"
        assert meta["versions"] == [v]
        assert meta["inputs"][0]["name"] == "X"


@pytest.mark.parametrize("model,features,classes", [
    ("iris-forest", 4, 3), ("cancer-tree", 30, 2), ("cancer-scaled-logreg", 30, 2), ("digits-mlp", 64, 10),
])
def test_zipmap_models_expose_output_probability_as_an_fp32_matrix(server, model, features, classes):
    resp = server.get(f"/v2/models/{model}")
    assert resp.status_code == 200, resp.text
    meta = resp.json()
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, features]}]
    outs = by_name(meta["outputs"])
    assert outs["output_probability"] == {"name": "output_probability", "datatype": "FP32", "shape": [-1, classes]}
    assert outs["output_label"] == {"name": "output_label", "datatype": "INT64", "shape": [-1]}


def test_dtypes_metadata_has_one_input_and_output_per_datatype(server):
    meta = server.get("/v2/models/dtypes").json()
    ins, outs = by_name(meta["inputs"]), by_name(meta["outputs"])
    for t in ALL_DATATYPES:
        assert ins[f"in_{t.lower()}"] == {"name": f"in_{t.lower()}", "datatype": t, "shape": [-1, 3]}
        assert outs[f"out_{t.lower()}"] == {"name": f"out_{t.lower()}", "datatype": t, "shape": [-1, 3]}
    assert len(ins) == len(outs) == len(ALL_DATATYPES)


def test_digits_cnn_metadata_has_an_image_input_and_a_probabilities_output(server):
    meta = server.get("/v2/models/digits-cnn").json()
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]


def test_metadata_of_an_unknown_model_or_version_is_404(server):
    assert_error(server.get("/v2/models/no-such-model"), 404)
    assert_error(server.get("/v2/models/no-such-model/versions/1"), 404)
    assert_error(server.get("/v2/models/iris-logreg/versions/99"), 404)


def test_model_ready_answers_name_and_ready_true(server):
    for path in ("/v2/models/iris-logreg/ready", "/v2/models/iris-logreg/versions/1/ready",
                 "/v2/models/iris-logreg/versions/2/ready"):
        resp = server.get(path)
        assert resp.status_code == 200, (path, resp.text)
        body = resp.json()
        assert body["name"] == "iris-logreg" and body["ready"] is True, (path, body)


def test_model_ready_of_an_unknown_model_or_version_is_404(server):
    assert_error(server.get("/v2/models/no-such-model/ready"), 404)
    assert_error(server.get("/v2/models/iris-logreg/versions/99/ready"), 404)


# =========================================================================== inference: datatypes

def dtypes_json_request(arrays, nested=False, **extra):
    req = {"inputs": [json_input(f"in_{t.lower()}", a, t, nested=nested) for t, a in arrays.items()]}
    req.update(extra)
    return req


def test_every_datatype_round_trips_through_json_with_flat_data(server):
    arrays = dtypes_arrays()
    resp = infer(server, "dtypes", dtypes_json_request(arrays))
    assert resp.status_code == 200, resp.text
    assert "Inference-Header-Content-Length" not in resp.headers
    json.loads(resp.content)  # a plain JSON response
    header, outputs = parse_infer_response(resp)
    assert_dtypes_outputs(header, outputs, dtypes_reference(server.models_dir, arrays))
    out_bool = next(o for o in header["outputs"] if o["name"] == "out_bool")
    assert all(isinstance(v, bool) for v in np.asarray(out_bool["data"]).reshape(-1).tolist()), out_bool
    out_bytes = next(o for o in header["outputs"] if o["name"] == "out_bytes")
    assert all(isinstance(v, str) for v in np.asarray(out_bytes["data"], dtype=object).reshape(-1)), out_bytes


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_integer_addition_wraps_around_on_overflow_like_onnxruntime(server, encoding):
    arrays = dtypes_arrays()
    for t, v in DTYPE_WRAP_VALUES.items():
        arrays[t] = np.array(v, dtype=V2_TO_NUMPY[t])
    if encoding == "json":
        resp = infer(server, "dtypes", dtypes_json_request(arrays))
    else:
        inputs, blobs = zip(*(binary_input(f"in_{t.lower()}", a, t) for t, a in arrays.items()))
        body, headers = binary_request({"inputs": list(inputs)}, list(blobs))
        resp = infer(server, "dtypes", data=body, headers=headers)
    assert resp.status_code == 200, resp.text
    header, outputs = parse_infer_response(resp)
    assert_dtypes_outputs(header, outputs, dtypes_reference(server.models_dir, arrays))


def test_every_datatype_round_trips_through_json_with_nested_data(server):
    arrays = dtypes_arrays()
    req = dtypes_json_request(arrays, nested=True)
    assert isinstance(req["inputs"][0]["data"][0], list)
    header, outputs = infer_ok(server, "dtypes", req)
    assert_dtypes_outputs(header, outputs, dtypes_reference(server.models_dir, arrays))


def test_every_datatype_round_trips_through_binary_tensors(server):
    arrays = dtypes_arrays(rows=3)
    inputs, blobs = zip(*(binary_input(f"in_{t.lower()}", a, t) for t, a in arrays.items()))
    body, headers = binary_request({"inputs": list(inputs)}, list(blobs))
    header, outputs = infer_ok(server, "dtypes", data=body, headers=headers)
    assert_dtypes_outputs(header, outputs, dtypes_reference(server.models_dir, arrays))


def test_bytes_binary_elements_carry_4_byte_little_endian_length_prefixes(server):
    arrays = dtypes_arrays()
    # lengths 0, 1, 255, 256, 70000 (needs the third prefix byte) and multi-byte UTF-8
    arrays["BYTES"] = np.array([["", "a", "b" * 255], ["c" * 256, "d" * 70000, "ünï©ødé"]], dtype=object)
    inputs, blobs = zip(*(binary_input(f"in_{t.lower()}", a, t) for t, a in arrays.items()))
    body, headers = binary_request({"inputs": list(inputs), "parameters": {"binary_data_output": True}},
                                   list(blobs))
    resp = infer(server, "dtypes", data=body, headers=headers)
    assert resp.status_code == 200, resp.text
    header, outputs = parse_infer_response(resp)
    assert "out_bytes" in binary_output_names(header)
    out = next(o for o in header["outputs"] if o["name"] == "out_bytes")
    expected_blob = binary_input("x", arrays["BYTES"], "BYTES")[1]
    assert out["parameters"]["binary_data_size"] == len(expected_blob)
    assert_dtypes_outputs(header, outputs, dtypes_reference(server.models_dir, arrays))


def test_fp16_binary_input_is_read_as_little_endian_halves(server):
    arrays = dtypes_arrays()
    arrays["FP16"] = np.array([[1.0, -2.0, 0.099975586], [65504 / 4, 6.1035156e-05, -7.5]], dtype=np.float16)
    inputs, blobs = zip(*(binary_input(f"in_{t.lower()}", a, t) for t, a in arrays.items()))
    assert len(blobs[ALL_DATATYPES.index("FP16")]) == 12
    body, headers = binary_request({"inputs": list(inputs), "outputs": [
        {"name": "out_fp16", "parameters": {"binary_data": True}}]}, list(blobs))
    header, outputs = infer_ok(server, "dtypes", data=body, headers=headers)
    assert_dtypes_outputs(header, outputs, dtypes_reference(server.models_dir, arrays), names=["out_fp16"])


def test_json_and_binary_inputs_can_be_mixed_in_one_request(server):
    arrays = dtypes_arrays()
    inputs, blobs = [], []
    for i, (t, a) in enumerate(arrays.items()):
        if i % 2:
            spec, blob = binary_input(f"in_{t.lower()}", a, t)
            inputs.append(spec)
            blobs.append(blob)
        else:
            inputs.append(json_input(f"in_{t.lower()}", a, t))
    body, headers = binary_request({"inputs": inputs}, blobs)
    header, outputs = infer_ok(server, "dtypes", data=body, headers=headers)
    assert_dtypes_outputs(header, outputs, dtypes_reference(server.models_dir, arrays))


def test_a_binary_header_covering_the_whole_body_is_a_plain_json_request(server):
    arrays = dtypes_arrays()
    body = json.dumps(dtypes_json_request(arrays)).encode()
    headers = {"Inference-Header-Content-Length": str(len(body)), "Content-Type": "application/octet-stream"}
    header, outputs = infer_ok(server, "dtypes", data=body, headers=headers)
    assert_dtypes_outputs(header, outputs, dtypes_reference(server.models_dir, arrays))


def test_binary_data_output_returns_every_output_as_binary(server):
    arrays = dtypes_arrays()
    resp = infer(server, "dtypes", dtypes_json_request(arrays, parameters={"binary_data_output": True}))
    assert resp.status_code == 200, resp.text
    assert "Inference-Header-Content-Length" in resp.headers
    header, outputs = parse_infer_response(resp)
    assert binary_output_names(header) == {f"out_{t.lower()}" for t in ALL_DATATYPES}
    assert_dtypes_outputs(header, outputs, dtypes_reference(server.models_dir, arrays))


def test_binary_data_per_output_selects_which_outputs_are_binary(server):
    arrays = dtypes_arrays()
    wanted = {"out_fp16": True, "out_bytes": True, "out_bool": True, "out_int64": False, "out_fp32": False}
    req = dtypes_json_request(arrays, outputs=[{"name": n, "parameters": {"binary_data": b}}
                                               for n, b in wanted.items()])
    resp = infer(server, "dtypes", req)
    assert resp.status_code == 200, resp.text
    header, outputs = parse_infer_response(resp)
    assert binary_output_names(header) == {n for n, b in wanted.items() if b}
    for o in header["outputs"]:
        if not wanted[o["name"]]:
            assert "data" in o, o
    assert_dtypes_outputs(header, outputs, dtypes_reference(server.models_dir, arrays), names=list(wanted))


def test_requested_outputs_are_the_only_outputs_returned(server):
    arrays = dtypes_arrays()
    req = dtypes_json_request(arrays, outputs=[{"name": "out_int32"}, {"name": "out_bytes"}])
    header, outputs = infer_ok(server, "dtypes", req)
    assert_dtypes_outputs(header, outputs, dtypes_reference(server.models_dir, arrays),
                          names=["out_int32", "out_bytes"])

    header, outputs = infer_ok(server, "iris-forest", iris_request(IRIS_ROWS, outputs=[{"name": "output_probability"}]))
    assert [o["name"] for o in header["outputs"]] == ["output_probability"]
    ref = ort_reference(model_file(server.models_dir, "iris-forest"), {"X": IRIS_ROWS})
    np.testing.assert_allclose(outputs["output_probability"], ref["output_probability"], rtol=0, atol=1e-5)


def test_the_request_id_is_echoed_and_the_response_names_model_and_version(server):
    resp = infer(server, "iris-forest", iris_request(IRIS_ROWS, id="my-request-42"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == "my-request-42"
    assert body["model_name"] == "iris-forest"
    assert str(body["model_version"]) == "1"


def test_iris_outputs_have_v2_names_datatypes_and_shapes(server):
    header, outputs = infer_ok(server, "iris-forest", iris_request(IRIS_ROWS))
    outs = by_name(header["outputs"])
    n = len(IRIS_ROWS)
    assert outs["output_label"]["datatype"] == "INT64" and outs["output_label"]["shape"] == [n]
    assert outs["output_probability"]["datatype"] == "FP32" and outs["output_probability"]["shape"] == [n, 3]
    ref = ort_reference(model_file(server.models_dir, "iris-forest"), {"X": IRIS_ROWS})
    assert np.array_equal(outputs["output_label"], ref["output_label"])
    np.testing.assert_allclose(outputs["output_probability"], ref["output_probability"], rtol=0, atol=1e-5)


def test_unknown_request_parameters_are_ignored(server):
    req = iris_request(IRIS_ROWS, parameters={"some_unknown_key": "x", "another": 3, "nested": {"a": [1]}})
    req["inputs"][0]["parameters"] = {"unknown_input_param": True}
    header, outputs = infer_ok(server, "iris-forest", req)
    ref = ort_reference(model_file(server.models_dir, "iris-forest"), {"X": IRIS_ROWS})
    assert np.array_equal(outputs["output_label"], ref["output_label"])


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/json; charset=utf-8"])
def test_any_content_type_is_accepted_as_json(server, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps(iris_request(IRIS_ROWS)).encode()
    resp = server.post("/v2/models/iris-forest/infer", data=body, headers=headers)
    assert resp.status_code == 200, (content_type, resp.status_code, resp.text)
    ref = ort_reference(model_file(server.models_dir, "iris-forest"), {"X": IRIS_ROWS})
    _, outputs = parse_infer_response(resp)
    assert np.array_equal(outputs["output_label"], ref["output_label"])


def test_a_single_row_is_served(server):
    x = iris_x()[77:78]
    header, outputs = infer_ok(server, "iris-logreg", iris_request(x), version=1)
    assert_iris_matches(server, header, outputs, x, 1)


# =========================================================================== classification

@pytest.mark.parametrize("k", [1, 2, 3])
def test_classification_returns_top_k_score_index_label_strings(server, k):
    x = iris_x()[::10]
    req = iris_request(x, outputs=[{"name": "output_probability", "parameters": {"classification": k}}])
    header, outputs = infer_ok(server, "iris-logreg", req, version=2)
    out = header["outputs"][0]
    assert [o["name"] for o in header["outputs"]] == ["output_probability"]
    assert out["datatype"] == "BYTES"
    assert out["shape"] == [len(x), k]
    ref = ort_reference(model_file(server.models_dir, "iris-logreg", 2), {"X": x})
    labels = labels_file(server.models_dir, "iris-logreg")
    assert labels == iris_labels()
    check_classification(outputs["output_probability"], ref["output_probability"], k, labels)


def test_classification_results_can_be_returned_as_binary_bytes(server):
    x = cancer_x()[:16]
    req = {"inputs": [json_input("X", x, "FP32")],
           "outputs": [{"name": "output_probability", "parameters": {"classification": 2, "binary_data": True}},
                       {"name": "output_label"}]}
    header, outputs = infer_ok(server, "cancer-scaled-logreg", req)
    assert binary_output_names(header) == {"output_probability"}
    ref = ort_reference(model_file(server.models_dir, "cancer-scaled-logreg"), {"X": x})
    check_classification(outputs["output_probability"], ref["output_probability"], 2,
                         labels_file(server.models_dir, "cancer-scaled-logreg"))
    assert np.array_equal(outputs["output_label"], ref["output_label"])


def test_classification_works_on_a_plain_probability_output(server):
    # digits-cnn's config does not name a labels file: the label part is optional here.
    x = digits_images()[:8]
    req = {"inputs": [json_input("image", x, "FP32")],
           "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}]}
    header, outputs = infer_ok(server, "digits-cnn", req)
    ref = ort_reference(model_file(server.models_dir, "digits-cnn"), {"image": x})
    check_classification(outputs["probabilities"], ref["probabilities"], 3, None)


# =========================================================================== versions

def test_versions_1_and_2_each_compute_with_their_own_file(server):
    x = iris_x()[::5]
    h1, o1 = infer_ok(server, "iris-logreg", iris_request(x), version=1)
    h2, o2 = infer_ok(server, "iris-logreg", iris_request(x), version=2)
    assert_iris_matches(server, h1, o1, x, 1)
    assert_iris_matches(server, h2, o2, x, 2)
    assert not np.allclose(o1["output_probability"], o2["output_probability"], atol=1e-3)


def test_unversioned_infer_uses_the_newest_served_version(server):
    x = iris_x()[::7]
    header, outputs = infer_ok(server, "iris-logreg", iris_request(x))
    assert_iris_matches(server, header, outputs, x, 2)


def write_policy_copies(models: Path):
    src = models / "iris-logreg"
    for name, policy in (("iris-only-v1", "versions = [1]\n"), ("iris-latest-2", "latest = 2\n"),
                         ("iris-default", "")):
        shutil.copytree(src, models / name)
        (models / name / "config.toml").write_text('labels = "labels.txt"\n' + policy)


def test_version_policy_default_latest_1_versions_list_and_latest_2(start_server):
    srv = start_server(prepare=write_policy_copies)
    x = iris_x()[::9]
    expected_versions = {"iris-logreg": ["2"], "iris-default": ["2"], "iris-only-v1": ["1"], "iris-latest-2": ["1", "2"]}
    for model, versions in expected_versions.items():
        meta = srv.get(f"/v2/models/{model}")
        assert meta.status_code == 200, (model, meta.text)
        assert meta.json()["versions"] == versions, (model, meta.json())
        # unversioned uses the newest served version
        header, outputs = infer_ok(srv, model, iris_request(x))
        ref = ort_reference(model_file(srv.models_dir, model, int(versions[-1])), {"X": x})
        assert str(header["model_version"]) == versions[-1], (model, header["model_version"])
        np.testing.assert_allclose(outputs["output_probability"], ref["output_probability"], rtol=0, atol=1e-5)
        for v in ("1", "2"):
            resp = infer(srv, model, iris_request(x), version=v)
            if v in versions:
                assert resp.status_code == 200, (model, v, resp.text)
                assert str(resp.json()["model_version"]) == v
            else:
                # on disk but not served by the policy: unknown (404) or not ready (400), never served
                assert resp.status_code in (400, 404), (model, v, resp.status_code, resp.text)
                assert_error(resp, resp.status_code)


# =========================================================================== repository

def test_repository_index_lists_every_bundled_model_ready(server):
    expected = {p.name for p in server.models_dir.iterdir() if p.is_dir()}
    for body in (None, {}, {"ready": True}):
        entries = index_entries(server, body)
        assert {e["name"] for e in entries} == expected, (body, entries)
        for e in entries:
            assert e["state"] == "READY", e
    entries = index_entries(server)
    iris_versions = sorted(str(e["version"]) for e in entries_for(entries, "iris-logreg"))
    assert iris_versions == ["1", "2"]
    assert [str(e["version"]) for e in entries_for(entries, "iris-forest")] == ["1"]


def test_repository_index_with_an_empty_body_or_no_content_type_works(server):
    resp = requests.post(server.url + "/v2/repository/index", data=b"", timeout=30)
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json(), list)


def test_unload_makes_a_model_unready_and_load_brings_it_back(start_server):
    srv = start_server()
    x = iris_x()[::11]
    ref = ort_reference(model_file(srv.models_dir, "iris-forest"), {"X": x})
    infer_ok(srv, "iris-forest", iris_request(x))

    resp = srv.post("/v2/repository/models/iris-forest/unload")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}

    assert_error(srv.get("/v2/models/iris-forest/ready"), 400)
    assert_error(infer(srv, "iris-forest", iris_request(x)), 400)

    entries = entries_for(index_entries(srv), "iris-forest")
    assert len(entries) == 1, entries
    assert entries[0]["state"] == "UNAVAILABLE", entries
    assert entries[0].get("version") is None, f"nothing loaded: listed once without version: {entries}"
    assert isinstance(entries[0].get("reason"), str) and entries[0]["reason"], entries
    assert entries_for(index_entries(srv, {"ready": True}), "iris-forest") == []

    # the others keep serving
    header, outputs = infer_ok(srv, "iris-logreg", iris_request(x))
    assert_iris_matches(srv, header, outputs, x, 2)
    assert srv.get("/v2/health/ready").status_code == 200

    resp = srv.post("/v2/repository/models/iris-forest/load")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    body = srv.get("/v2/models/iris-forest/ready").json()
    assert body["name"] == "iris-forest" and body["ready"] is True, body
    header, outputs = infer_ok(srv, "iris-forest", iris_request(x))
    assert np.array_equal(outputs["output_label"], ref["output_label"])
    np.testing.assert_allclose(outputs["output_probability"], ref["output_probability"], rtol=0, atol=1e-5)
    entries = entries_for(index_entries(srv, {"ready": True}), "iris-forest")
    assert [(str(e["version"]), e["state"]) for e in entries] == [("1", "READY")]


def test_versioned_urls_of_an_unloaded_model_answer_400_not_ready(start_server):
    # contract: `/v2/models/{m}[/versions/{v}]/ready` -> 400 when known but not ready (unloaded)
    srv = start_server()
    assert srv.post("/v2/repository/models/iris-forest/unload").status_code == 200
    assert_error(srv.get("/v2/models/iris-forest/versions/1/ready"), 400)
    assert_error(infer(srv, "iris-forest", iris_request(IRIS_ROWS), version=1), 400)


def test_load_and_unload_accept_a_tritonclient_style_json_body(start_server):
    srv = start_server()
    resp = srv.post("/v2/repository/models/iris-forest/unload", json={"parameters": {"unload_dependents": False}})
    assert resp.status_code == 200, resp.text
    resp = srv.post("/v2/repository/models/iris-forest/load", json={})
    assert resp.status_code == 200, resp.text
    infer_ok(srv, "iris-forest", iris_request(IRIS_ROWS))


def test_load_and_unload_of_an_unknown_model_are_404(server):
    assert_error(server.post("/v2/repository/models/no-such-model/load"), 404)
    assert_error(server.post("/v2/repository/models/no-such-model/unload"), 404)


def test_load_re_reads_the_folder_and_serves_a_version_added_on_disk(start_server):
    srv = start_server()
    x = iris_x()[::6]
    (srv.models_dir / "iris-logreg" / "3").mkdir()
    shutil.copy(model_file(srv.models_dir, "iris-logreg", 1), model_file(srv.models_dir, "iris-logreg", 3))
    resp = srv.post("/v2/repository/models/iris-logreg/load")
    assert resp.status_code == 200, resp.text
    header, outputs = infer_ok(srv, "iris-logreg", iris_request(x))
    assert_iris_matches(srv, header, outputs, x, 3)  # version 3 carries v1's weights
    ref_v1 = ort_reference(model_file(srv.models_dir, "iris-logreg", 1), {"X": x})
    np.testing.assert_allclose(outputs["output_probability"], ref_v1["output_probability"], rtol=0, atol=1e-5)
    assert srv.get("/v2/models/iris-logreg").json()["versions"] == ["3"]
    resp = infer(srv, "iris-logreg", iris_request(x), version=2)
    assert resp.status_code in (400, 404), f"version 2 is no longer in the policy: {resp.status_code} {resp.text}"
    assert_error(resp, resp.status_code)


def test_load_serves_a_model_folder_added_after_startup(start_server):
    srv = start_server()
    assert_error(srv.post("/v2/repository/models/iris-forest-copy/load"), 404)
    shutil.copytree(srv.models_dir / "iris-forest", srv.models_dir / "iris-forest-copy")
    resp = srv.post("/v2/repository/models/iris-forest-copy/load")
    assert resp.status_code == 200, resp.text
    x = iris_x()[::4]
    header, outputs = infer_ok(srv, "iris-forest-copy", iris_request(x))
    assert header["model_name"] == "iris-forest-copy"
    ref = ort_reference(model_file(srv.models_dir, "iris-forest-copy"), {"X": x})
    np.testing.assert_allclose(outputs["output_probability"], ref["output_probability"], rtol=0, atol=1e-5)
    entries = entries_for(index_entries(srv), "iris-forest-copy")
    assert [(str(e["version"]), e["state"]) for e in entries] == [("1", "READY")]


def test_a_failed_reload_answers_400_and_the_old_version_keeps_serving(start_server):
    srv = start_server()
    x = iris_x()[::3]
    path = model_file(srv.models_dir, "iris-logreg", 2)
    ref = ort_reference(path, {"X": x})  # computed from the good file before it is overwritten
    path.write_bytes(GARBAGE)
    assert_error(srv.post("/v2/repository/models/iris-logreg/load"), 400)
    header, outputs = infer_ok(srv, "iris-logreg", iris_request(x))
    assert str(header["model_version"]) == "2"
    assert np.array_equal(outputs["output_label"], ref["output_label"])
    np.testing.assert_allclose(outputs["output_probability"], ref["output_probability"], rtol=0, atol=1e-5)
    assert srv.get("/v2/models/iris-logreg/ready").status_code == 200
    ready = [(str(e.get("version")), e["state"]) for e in entries_for(index_entries(srv), "iris-logreg")
             if e["state"] == "READY"]
    assert ready == [("2", "READY")], ready


def test_a_reload_with_a_broken_config_answers_400_and_the_old_version_keeps_serving(start_server):
    srv = start_server()
    x = iris_x()[::3]
    ref = ort_reference(model_file(srv.models_dir, "iris-forest"), {"X": x})
    (srv.models_dir / "iris-forest" / "config.toml").write_text("this is = = not toml [[[\n")
    assert_error(srv.post("/v2/repository/models/iris-forest/load"), 400)
    header, outputs = infer_ok(srv, "iris-forest", iris_request(x))
    np.testing.assert_allclose(outputs["output_probability"], ref["output_probability"], rtol=0, atol=1e-5)


def test_a_model_file_that_is_garbage_at_startup_is_unavailable_and_the_others_serve(start_server):
    def corrupt(models: Path):
        model_file(models, "cancer-tree").write_bytes(GARBAGE)

    srv = start_server(prepare=corrupt)
    assert srv.get("/v2/health/ready").json() == {"ready": True}
    entries = entries_for(index_entries(srv), "cancer-tree")
    assert entries, "the broken model is missing from the index"
    for e in entries:
        assert e["state"] == "UNAVAILABLE", e
        assert isinstance(e.get("reason"), str) and e["reason"].strip(), f"no reason given: {e}"
    assert entries_for(index_entries(srv, {"ready": True}), "cancer-tree") == []
    assert_error(srv.get("/v2/models/cancer-tree/ready"), 400)
    x = cancer_x()[:5]
    assert_error(infer(srv, "cancer-tree", {"inputs": [json_input("X", x, "FP32")]}), 400)

    others = [p.name for p in srv.models_dir.iterdir() if p.is_dir() and p.name != "cancer-tree"]
    for name in others:
        assert srv.get(f"/v2/models/{name}/ready").status_code == 200, name
    header, outputs = infer_ok(srv, "cancer-scaled-logreg", {"inputs": [json_input("X", x, "FP32")]})
    ref = ort_reference(model_file(srv.models_dir, "cancer-scaled-logreg"), {"X": x})
    np.testing.assert_allclose(outputs["output_probability"], ref["output_probability"], rtol=0, atol=1e-5)

    # fixing the file and loading brings it up
    shutil.copy(model_file(EXAMPLE_MODELS, "cancer-tree"),
                model_file(srv.models_dir, "cancer-tree"))
    resp = srv.post("/v2/repository/models/cancer-tree/load")
    assert resp.status_code == 200, resp.text
    header, outputs = infer_ok(srv, "cancer-tree", {"inputs": [json_input("X", x, "FP32")]})
    ref = ort_reference(model_file(srv.models_dir, "cancer-tree"), {"X": x})
    assert np.array_equal(outputs["output_label"], ref["output_label"])
    np.testing.assert_allclose(outputs["output_probability"], ref["output_probability"], rtol=0, atol=1e-5)


def test_a_model_folder_without_versions_is_listed_once_without_version(start_server):
    srv = start_server(prepare=lambda models: (models / "empty-model").mkdir())
    assert srv.get("/v2/health/ready").status_code == 200
    entries = entries_for(index_entries(srv), "empty-model")
    assert len(entries) == 1, entries
    assert entries[0].get("version") is None, entries
    assert entries[0]["state"] == "UNAVAILABLE", entries
    assert entries[0].get("reason"), entries
    infer_ok(srv, "iris-forest", iris_request(IRIS_ROWS))


# =========================================================================== metrics, request ids

def test_metrics_count_successes_rows_and_executions_per_model_and_version(server):
    before = parse_metrics(server.get("/metrics").text)
    x = iris_x()[:5]
    for _ in range(3):
        infer_ok(server, "iris-logreg", iris_request(x), version=1)
    # one failure against the same model/version (wrong datatype)
    bad = {"inputs": [json_input("X", x.astype(np.float64), "FP64")]}
    assert_error(infer(server, "iris-logreg", bad, version=1), 400)

    resp = server.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers.get("content-type", "").startswith("text/plain"), resp.headers
    after = parse_metrics(resp.text)

    def delta(name):
        b = metric_value(before, name, model="iris-logreg", version="1") or 0.0
        a = metric_value(after, name, model="iris-logreg", version="1")
        assert a is not None, f"{name}{{model=\"iris-logreg\",version=\"1\"}} missing from /metrics"
        return a - b

    assert delta("lectern_inference_request_success_total") == 3
    assert delta("lectern_inference_count_total") == 15
    assert 1 <= delta("lectern_inference_exec_count_total") <= 3
    assert delta("lectern_inference_request_failure_total") == 1, "the one failed request is counted once"
    for hist in ("lectern_inference_request_duration_seconds", "lectern_inference_queue_duration_seconds",
                 "lectern_inference_compute_duration_seconds"):
        assert delta(hist + "_count") >= 3, hist
        assert metric_value(after, hist + "_sum", model="iris-logreg", version="1") is not None, hist
        assert metric_value(after, hist + "_bucket", model="iris-logreg", version="1") is not None, hist
    assert "lectern_inference_queue_rejected_total" in resp.text


def test_every_response_carries_an_x_request_id(server):
    for resp in (server.get("/v2/health/live"), server.get("/v2"), server.get("/v2/nope"),
                 server.post("/v2/models/iris-forest/infer", data=b"{"),
                 infer(server, "iris-forest", iris_request(IRIS_ROWS)), server.get("/metrics")):
        assert resp.headers.get("x-request-id"), (resp.url, resp.status_code, dict(resp.headers))


def test_a_sent_x_request_id_is_echoed(server):
    rid = "e2e-test-3f9c2a"
    for resp in (server.get("/v2/health/ready", headers={"x-request-id": rid}),
                 server.post("/v2/models/iris-forest/infer", json=iris_request(IRIS_ROWS), headers={"X-Request-Id": rid}),
                 server.post("/v2/models/no-such/infer", json=iris_request(IRIS_ROWS), headers={"x-request-id": rid})):
        assert resp.headers.get("x-request-id") == rid, (resp.url, dict(resp.headers))


def test_a_request_s_log_lines_carry_its_id(start_server):
    """The request id is on the log lines written while the request runs (its span)."""
    srv = start_server(extra_args=["--log", "debug"])
    rid = "log-trace-5d81e0"
    resp = srv.post("/v2/models/no-such/infer", json=iris_request(IRIS_ROWS), headers={"x-request-id": rid})
    assert_error(resp, 404)
    lines = [line for line in srv.stderr_text().splitlines() if "request rejected" in line]
    assert any(f"request{{id={rid}}}" in line and "no-such" in line for line in lines), lines[-5:]


# =========================================================================== caller mistakes

@pytest.mark.parametrize("method,path", [
    ("POST", "/v2/models/%FF/infer"),
    ("POST", "/v2/models/iris-forest/versions/%C3%28/infer"),
    ("GET", "/v2/models/%FF"),
    ("GET", "/v2/models/%FF/ready"),
    ("GET", "/v2/models/iris-forest/versions/%FF/ready"),
    ("POST", "/v2/repository/models/%FF/load"),
    ("GET", "/v1/models/%FF"),
])
def test_path_parameters_that_are_not_utf8_get_a_json_400(server, method, path):
    resp = server.get(path) if method == "GET" else server.post(path, json={})
    assert_error(resp, 400)
    assert "path" in resp.json()["error"], resp.text


X2 = iris_x()[:2]
X2_FLAT = X2.reshape(-1).tolist()


def x_input(**over):
    spec = {"name": "X", "datatype": "FP32", "shape": [2, 4], "data": X2_FLAT}
    spec.update(over)
    return {k: v for k, v in spec.items() if v is not None}


def dtypes_inputs_without(dt: str):
    arrays = dtypes_arrays()
    return [json_input(f"in_{t.lower()}", a, t) for t, a in arrays.items() if t != dt]


def binary_case(header: dict, blob: bytes, header_len=None):
    head = json.dumps(header).encode()
    hl = str(len(head)) if header_len is None else header_len
    return {"data": head + blob, "headers": {"Inference-Header-Content-Length": hl,
                                              "Content-Type": "application/octet-stream"}}


X2_BLOB = X2.astype("<f4").tobytes()
BIN_X = {"name": "X", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 32}}

IRIS_INFER = "/v2/models/iris-forest/infer"
DTYPES_INFER = "/v2/models/dtypes/infer"

CALLER_MISTAKES = [
    # (id, method, path, requests kwargs, status)
    ("malformed JSON is 400", "POST", IRIS_INFER, {"data": b'{"inputs": [{"name": "X",'}, 400),
    ("a JSON body that is not an object is 400", "POST", IRIS_INFER, {"json": [1, 2, 3]}, 400),
    ("an empty body is 400", "POST", IRIS_INFER, {"data": b""}, 400),
    ("a body that is not UTF-8 is 400", "POST", IRIS_INFER, {"data": b"\xff\xfe\x00garbage"}, 400),
    ("a missing inputs field is 400", "POST", IRIS_INFER, {"json": {}}, 400),
    ("inputs null is 400", "POST", IRIS_INFER, {"json": {"inputs": None}}, 400),
    ("an empty inputs list is 400", "POST", IRIS_INFER, {"json": {"inputs": []}}, 400),
    ("an input without datatype is 400", "POST", IRIS_INFER, {"json": {"inputs": [x_input(datatype=None)]}}, 400),
    ("an input without shape is 400", "POST", IRIS_INFER, {"json": {"inputs": [x_input(shape=None)]}}, 400),
    ("an input without name is 400", "POST", IRIS_INFER,
     {"json": {"inputs": [{k: v for k, v in x_input().items() if k != "name"}]}}, 400),
    ("an input without data or binary_data_size is 400", "POST", IRIS_INFER,
     {"json": {"inputs": [x_input(data=None)]}}, 400),
    ("a missing input is 400", "POST", DTYPES_INFER, {"json": {"inputs": dtypes_inputs_without("BYTES")}}, 400),
    ("an unknown input name is 400", "POST", IRIS_INFER, {"json": {"inputs": [x_input(name="Y")]}}, 400),
    ("an extra unknown input next to the right one is 400", "POST", IRIS_INFER,
     {"json": {"inputs": [x_input(), x_input(name="extra")]}}, 400),
    ("a wrong datatype is 400", "POST", IRIS_INFER, {"json": {"inputs": [x_input(datatype="FP64")]}}, 400),
    ("an integer datatype for a float input is 400", "POST", IRIS_INFER,
     {"json": {"inputs": [x_input(datatype="INT32", data=[1] * 8)]}}, 400),
    ("an invalid datatype name is 400", "POST", IRIS_INFER, {"json": {"inputs": [x_input(datatype="FLOAT32")]}}, 400),
    ("strings as FP32 data is 400", "POST", IRIS_INFER, {"json": {"inputs": [x_input(data=["a"] * 8)]}}, 400),
    ("fewer data values than the shape is 400", "POST", IRIS_INFER,
     {"json": {"inputs": [x_input(data=X2_FLAT[:7])]}}, 400),
    ("more data values than the shape is 400", "POST", IRIS_INFER,
     {"json": {"inputs": [x_input(data=X2_FLAT + [1.0])]}}, 400),
    ("ragged nested data is 400", "POST", IRIS_INFER,
     {"json": {"inputs": [x_input(data=[X2_FLAT[:4], X2_FLAT[4:7]])]}}, 400),
    ("a shape that does not fit the model input is 400", "POST", IRIS_INFER,
     {"json": {"inputs": [x_input(shape=[2, 5], data=X2_FLAT + [0.0, 0.0])]}}, 400),
    ("a shape of the wrong rank is 400", "POST", IRIS_INFER, {"json": {"inputs": [x_input(shape=[8])]}}, 400),
    ("a negative dimension is 400", "POST", IRIS_INFER, {"json": {"inputs": [x_input(shape=[-1, 4])]}}, 400),
    ("a negative feature dimension is 400", "POST", IRIS_INFER, {"json": {"inputs": [x_input(shape=[-2, -4])]}}, 400),
    ("a fractional dimension is 400", "POST", IRIS_INFER, {"json": {"inputs": [x_input(shape=[2.5, 4])]}}, 400),
    ("absurd dimensions 2^32 x 2^32 are 400", "POST", IRIS_INFER,
     {"json": {"inputs": [x_input(shape=[4294967296, 4294967296])]}}, 400),
    ("more than 2^31 elements is 400", "POST", IRIS_INFER,
     {"json": {"inputs": [x_input(shape=[2**31, 4], data=[])]}}, 400),
    ("dimensions whose product overflows 64 bits are 400", "POST", IRIS_INFER,
     {"json": {"inputs": [x_input(shape=[2**63 - 1, 2**63 - 1])]}}, 400),
    ("a dimension beyond u64 is 400", "POST", IRIS_INFER, {"json": {"inputs": [x_input(shape=[2**64, 4])]}}, 400),
    ("an unknown requested output is 400", "POST", IRIS_INFER,
     {"json": {"inputs": [x_input()], "outputs": [{"name": "no_such_output"}]}}, 400),
    ("classification of an unknown output is 400", "POST", IRIS_INFER,
     {"json": {"inputs": [x_input()], "outputs": [{"name": "nope", "parameters": {"classification": 2}}]}}, 400),
    ("outputs that is not a list is 400", "POST", IRIS_INFER, {"json": {"inputs": [x_input()], "outputs": "all"}}, 400),
    ("an unknown model is 404", "POST", "/v2/models/no-such-model/infer", {"json": {"inputs": [x_input()]}}, 404),
    ("an unknown version is 404", "POST", "/v2/models/iris-forest/versions/99/infer",
     {"json": {"inputs": [x_input()]}}, 404),
    ("an unknown model with a version is 404", "POST", "/v2/models/no-such-model/versions/1/infer",
     {"json": {"inputs": [x_input()]}}, 404),
    ("a truncated binary body is 400", "POST", IRIS_INFER, binary_case({"inputs": [BIN_X]}, X2_BLOB[:16]), 400),
    ("a binary section missing entirely is 400", "POST", IRIS_INFER, binary_case({"inputs": [BIN_X]}, b""), 400),
    ("a header length larger than the body is 400", "POST", IRIS_INFER,
     binary_case({"inputs": [BIN_X]}, X2_BLOB, header_len="100000"), 400),
    ("a header length shorter than the JSON is 400", "POST", IRIS_INFER,
     binary_case({"inputs": [BIN_X]}, X2_BLOB, header_len="10"), 400),
    ("a non-numeric header length is 400", "POST", IRIS_INFER,
     binary_case({"inputs": [BIN_X]}, X2_BLOB, header_len="abc"), 400),
    ("a negative header length is 400", "POST", IRIS_INFER,
     binary_case({"inputs": [BIN_X]}, X2_BLOB, header_len="-5"), 400),
    ("a binary_data_size that does not fit the shape is 400", "POST", IRIS_INFER,
     binary_case({"inputs": [dict(BIN_X, parameters={"binary_data_size": 28})]}, X2_BLOB[:28]), 400),
    ("a binary_data_size larger than the shape needs is 400", "POST", IRIS_INFER,
     binary_case({"inputs": [dict(BIN_X, parameters={"binary_data_size": 36})]}, X2_BLOB + b"\0" * 4), 400),
    ("absurd dimensions with a small binary input are 400", "POST", IRIS_INFER,
     binary_case({"inputs": [dict(BIN_X, shape=[4294967296, 4294967296])]}, X2_BLOB), 400),
    ("a BYTES length prefix running past the body is 400", "POST", DTYPES_INFER,
     binary_case({"inputs": dtypes_inputs_without("BYTES") + [
         {"name": "in_bytes", "datatype": "BYTES", "shape": [2, 3], "parameters": {"binary_data_size": 7}}]},
         struct.pack("<I", 1000) + b"abc"), 400),
    ("BYTES binary with fewer elements than the shape is 400", "POST", DTYPES_INFER,
     binary_case({"inputs": dtypes_inputs_without("BYTES") + [
         {"name": "in_bytes", "datatype": "BYTES", "shape": [2, 3], "parameters": {"binary_data_size": 16}}]},
         (struct.pack("<I", 1) + b"a") * 2 + struct.pack("<I", 2) + b"bc"), 400),
    ("a garbage JSON header in a binary request is 400", "POST", IRIS_INFER,
     {"data": b"not json!!" + X2_BLOB, "headers": {"Inference-Header-Content-Length": "10"}}, 400),
    ("an unknown route is 404", "GET", "/v2/no-such-route", {}, 404),
    ("an unknown top-level route is 404", "GET", "/v3", {}, 404),
    ("an unknown model sub-route is 404", "POST", "/v2/models/iris-forest/explode", {"json": {}}, 404),
    ("GET on infer is 405", "GET", IRIS_INFER, {}, 405),
    ("DELETE on live is 405", "DELETE", "/v2/health/live", {}, 405),
    ("POST on server metadata is 405", "POST", "/v2", {"json": {}}, 405),
    ("GET on repository load is 405", "GET", "/v2/repository/models/iris-forest/load", {}, 405),
    ("PUT on repository index is 405", "PUT", "/v2/repository/index", {"json": {}}, 405),
]


@pytest.mark.parametrize("method,path,kwargs,status", [c[1:] for c in CALLER_MISTAKES],
                         ids=[c[0] for c in CALLER_MISTAKES])
def test_a_caller_mistake_gets_its_status_and_a_json_error(server, method, path, kwargs, status):
    log_before = len(server.stderr_text())
    resp = requests.request(method, server.url + path, timeout=30, **kwargs)
    assert server.is_running(), f"server died:\n{server.stderr_text()[-5000:]}"
    new_log = server.stderr_text()[log_before:]
    assert "panicked" not in new_log, f"the server panicked on this request:\n{new_log[-5000:]}"
    assert_error(resp, status)


def test_a_model_known_but_not_ready_answers_infer_with_400(start_server):
    srv = start_server()
    assert srv.post("/v2/repository/models/digits-cnn/unload").status_code == 200
    x = digits_images()[:2]
    assert_error(infer(srv, "digits-cnn", {"inputs": [json_input("image", x, "FP32")]}), 400)


def test_the_server_is_still_alive_and_serving_after_the_caller_mistakes(server):
    assert server.is_running(), server.stderr_text()[-5000:]
    assert server.get("/v2/health/live").json() == {"live": True}
    assert server.get("/v2/health/ready").json() == {"ready": True}
    x = iris_x()[::13]
    header, outputs = infer_ok(server, "iris-logreg", iris_request(x), version=1)
    assert_iris_matches(server, header, outputs, x, 1)
    arrays = dtypes_arrays()
    header, outputs = infer_ok(server, "dtypes", dtypes_json_request(arrays))
    assert_dtypes_outputs(header, outputs, dtypes_reference(server.models_dir, arrays))


# =========================================================================== body limit, queue, config

def iris_body_of_at_least(nbytes: int) -> bytes:
    rows = 1
    while True:
        body = json.dumps(iris_request(np.resize(iris_x(), (rows, 4)).astype(np.float32))).encode()
        if len(body) >= nbytes:
            return body
        rows *= 2


def test_a_body_over_max_body_bytes_is_413_and_the_server_keeps_serving(start_server):
    srv = start_server(extra_args=["--max-body-bytes", "1000"])
    small = json.dumps(iris_request(iris_x()[:2])).encode()
    assert len(small) < 1000
    resp = srv.post(IRIS_INFER, data=small)
    assert resp.status_code == 200, resp.text

    big = iris_body_of_at_least(4000)
    assert_error(srv.post(IRIS_INFER, data=big, headers={"Content-Type": "application/json"}), 413)
    # a large binary request too
    body, headers = binary_request({"inputs": [binary_input("X", np.resize(iris_x(), (200, 4)), "FP32")[0]]},
                                   [np.resize(iris_x(), (200, 4)).astype("<f4").tobytes()])
    assert_error(srv.post(IRIS_INFER, data=body, headers=headers), 413)
    # and a chunked upload without Content-Length
    assert_error(srv.post(IRIS_INFER, data=iter([big[:2000], big[2000:]])), 413)

    assert srv.is_running()
    resp = srv.post(IRIS_INFER, data=small)
    assert resp.status_code == 200, resp.text


def test_config_file_environment_and_flag_precedence_for_max_body_bytes(start_server, tmp_path):
    cfg = tmp_path / "lectern.toml"
    cfg.write_text("[server]\nmax_body_bytes = 1000\n")
    big = iris_body_of_at_least(3000)
    assert len(big) < 100000

    srv = start_server(extra_args=["--config", str(cfg)])
    assert_error(srv.post(IRIS_INFER, data=big), 413)

    srv = start_server(extra_args=["--config", str(cfg)], env={"LECTERN_MAX_BODY_BYTES": "100000"})
    assert srv.post(IRIS_INFER, data=big).status_code == 200

    srv = start_server(extra_args=["--config", str(cfg), "--max-body-bytes", "100000"],
                       env={"LECTERN_MAX_BODY_BYTES": "1000"})
    assert srv.post(IRIS_INFER, data=big).status_code == 200

    srv = start_server(env={"LECTERN_CONFIG": str(cfg)})
    assert_error(srv.post(IRIS_INFER, data=big), 413)


def test_a_full_queue_answers_503_with_retry_after_and_nothing_else_fails(start_server):
    """One instance, a queue of one, batching off: bursts of 16 callers released together
    overflow it. Bursts go on until some caller got its 503 (at most MAX_BURSTS, else the
    queue bound is not enforced and the test fails); every other answer is a correct 200."""
    def small_queue(models: Path):
        (models / "digits-cnn" / "config.toml").write_text(
            'max_batch_size = 64\nqueue_capacity = 1\ninstances = 1\nbatching = "off"\n')

    max_bursts, callers = 20, 16
    srv = start_server(prepare=small_queue)
    x = digits_images()[:64]
    ref = ort_reference(model_file(srv.models_dir, "digits-cnn"), {"image": x})
    body, headers = binary_request({"inputs": [binary_input("image", x, "FP32")[0]]},
                                   [x.astype("<f4").tobytes()])
    results: list = []
    lock = threading.Lock()

    def burst():
        barrier = threading.Barrier(callers)

        def caller():
            with requests.Session() as s:
                barrier.wait(timeout=60)
                r = s.post(srv.url + "/v2/models/digits-cnn/infer", data=body, headers=headers, timeout=60)
            with lock:
                results.append(r)

        threads = [threading.Thread(target=caller) for _ in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    bursts = 0
    while bursts < max_bursts and not any(r.status_code == 503 for r in results):
        burst()
        bursts += 1
    statuses = [r.status_code for r in results]
    assert len(statuses) == bursts * callers, "a caller got no answer"
    assert 503 in statuses, (f"queue_capacity 1, {bursts} bursts of {callers} simultaneous callers: "
                             f"no 503 ({sorted(set(statuses))})")
    assert set(statuses) <= {200, 503}, statuses
    for r in results:
        if r.status_code == 503:
            assert r.headers.get("Retry-After") == "1", dict(r.headers)
            assert_error(r, 503)
        else:
            _, outputs = parse_infer_response(r)
            np.testing.assert_allclose(outputs["probabilities"], ref["probabilities"], rtol=0, atol=1e-5)
    rejected = metric_value(parse_metrics(srv.get("/metrics").text), "lectern_inference_queue_rejected_total",
                            model="digits-cnn")
    assert rejected == statuses.count(503), (rejected, statuses.count(503))
    assert srv.is_running()
