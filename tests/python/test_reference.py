"""Every bundled model, served by Lectern, agrees with onnxruntime running the same file.

Inputs are real rows from the scikit-learn data sets the models were trained on. Each
batch goes to the server twice: once as JSON, once as binary tensors with binary outputs.
Probabilities must match within 1e-5, labels exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

from lectern_checks import assert_status
from lectern_v2 import (
    EXAMPLE_MODELS,
    binary_input,
    binary_output_names,
    binary_request,
    cancer_x,
    digits_images,
    digits_x,
    iris_x,
    json_input,
    model_file,
    ort_reference,
    parse_infer_response,
)

BATCH = 16
MAX_ROWS = 160  # per model and encoding; rows are spread over the whole data set

# (model, version, input name, data set)
MODELS = [
    ("iris-logreg", 1, "X", iris_x),
    ("iris-logreg", 2, "X", iris_x),
    ("iris-forest", 1, "X", iris_x),
    ("cancer-tree", 1, "X", cancer_x),
    ("cancer-scaled-logreg", 1, "X", cancer_x),
    ("digits-mlp", 1, "X", digits_x),
    ("digits-cnn", 1, "image", digits_images),
]
IDS = [f"{m}-v{v}" for m, v, _, _ in MODELS]


def sample_rows(data: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1234)
    idx = rng.permutation(len(data))[:MAX_ROWS]
    return np.ascontiguousarray(data[idx])


def batches(x: np.ndarray):
    for start in range(0, len(x), BATCH):
        yield x[start:start + BATCH]
    yield x[:1]          # a single row
    yield x[:BATCH - 3]  # a ragged batch


def assert_matches_reference(header, outputs, ref, model, version, n):
    assert header["model_name"] == model
    assert str(header["model_version"]) == str(version)
    assert set(outputs) == set(ref), f"outputs {sorted(outputs)} vs onnxruntime {sorted(ref)}"
    for name, expected in ref.items():
        got = outputs[name]
        assert got.shape == expected.shape, f"{name}: shape {got.shape} vs {expected.shape}"
        assert got.shape[0] == n
        if np.issubdtype(expected.dtype, np.integer):
            assert got.dtype == np.int64, f"{name}: {got.dtype}"
            assert np.array_equal(got, expected), f"{name}: {got.tolist()} != {expected.tolist()}"
        else:
            assert got.dtype == np.float32, f"{name}: {got.dtype}"
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5, err_msg=name)


def test_the_reference_table_covers_every_bundled_model():
    bundled = {p.name for p in EXAMPLE_MODELS.iterdir() if p.is_dir()} - {"dtypes"}
    assert {m for m, _, _, _ in MODELS} == bundled
    for p in EXAMPLE_MODELS.iterdir():
        if p.is_dir() and p.name != "dtypes":
            versions = {int(v.name) for v in p.iterdir() if v.is_dir()}
            assert versions == {v for m, v, _, _ in MODELS if m == p.name}, p.name


@pytest.mark.parametrize("model,version,input_name,dataset", MODELS, ids=IDS)
def test_json_inference_matches_onnxruntime_on_real_data(server, model, version, input_name, dataset):
    x = sample_rows(dataset())
    path = model_file(server.models_dir, model, version)
    for batch in batches(x):
        ref = ort_reference(path, {input_name: batch})
        resp = server.post(f"/v2/models/{model}/versions/{version}/infer",
                           json={"inputs": [json_input(input_name, batch, "FP32")]})
        assert_status(resp)
        header, outputs = parse_infer_response(resp)
        assert binary_output_names(header) == set()
        assert_matches_reference(header, outputs, ref, model, version, len(batch))


@pytest.mark.parametrize("model,version,input_name,dataset", MODELS, ids=IDS)
def test_binary_inference_matches_onnxruntime_on_real_data(server, model, version, input_name, dataset):
    x = sample_rows(dataset())
    path = model_file(server.models_dir, model, version)
    for batch in batches(x):
        ref = ort_reference(path, {input_name: batch})
        spec, blob = binary_input(input_name, batch, "FP32")
        body, headers = binary_request({"inputs": [spec], "parameters": {"binary_data_output": True}}, [blob])
        resp = server.post(f"/v2/models/{model}/versions/{version}/infer", data=body, headers=headers)
        assert_status(resp)
        header, outputs = parse_infer_response(resp)
        assert binary_output_names(header) == set(ref)
        assert_matches_reference(header, outputs, ref, model, version, len(batch))


@pytest.mark.parametrize("model,version,input_name,dataset", MODELS, ids=IDS)
def test_concurrent_requests_each_get_their_own_rows_back(server, model, version, input_name, dataset):
    """Requests that may be batched together server-side must not get each other's results."""
    from concurrent.futures import ThreadPoolExecutor

    x = sample_rows(dataset())
    path = model_file(server.models_dir, model, version)
    chunks = [x[i:i + 1 + (i % 5)] for i in range(0, 60, 3)]

    def one(batch):
        resp = server.post(f"/v2/models/{model}/versions/{version}/infer",
                           json={"inputs": [json_input(input_name, batch, "FP32")]})
        return batch, resp

    with ThreadPoolExecutor(max_workers=8) as pool:
        for batch, resp in pool.map(one, chunks):
            assert_status(resp)
            header, outputs = parse_infer_response(resp)
            assert_matches_reference(header, outputs, ort_reference(path, {input_name: batch}),
                                     model, version, len(batch))
