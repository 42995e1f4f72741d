"""Pipelines defined through the management API: checked against the loaded models, stored,
served at once, kept across restarts, removable; config-file pipelines stay read-only."""
from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from sklearn.datasets import load_digits

from lectern_checks import assert_error, ok

REPO = Path(__file__).resolve().parents[2]
TWO_LAYER = REPO / "examples" / "two-layer"

DIAGNOSE = b'''steps = [
  { id = "category", model = "digit-category", image = "image" },
  { id = "digit", route = "category.label", models = { round = "digit-round", straight = "digit-straight", curved = "digit-curved" }, image = "image", top_k = 3 },
]
shape = { category = "category.label", predictions = "digit.top_k" }
'''
CATEGORY = b'''steps = [
  { id = "category", model = "digit-category", image = "image" },
]
shape = { category = "category.label" }
'''


def png_of(pixels: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(np.round(pixels.reshape(8, 8) * 255 / 16).astype(np.uint8), mode="L").save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


@pytest.fixture
def two_layer_models(tmp_path):
    return shutil.copytree(TWO_LAYER / "models", tmp_path / "models")


def test_a_pipeline_put_over_the_api_serves_at_once_and_after_a_restart(server_state, two_layer_models):
    state = server_state(models=two_layer_models)
    server = state.start()
    url = server.url
    r = ok(requests.put(f"{url}/v1/pipelines/diagnose", data=DIAGNOSE, timeout=30))
    assert [s["id"] for s in r["pipeline"]["steps"]] == ["category", "digit"]
    digits = load_digits()
    image = png_of(digits.data[3])
    answer = ok(requests.post(f"{url}/v1/pipelines/diagnose", json={"image": image}, timeout=30))
    assert answer["predictions"][0]["label"] == str(digits.target[3])
    audit = ok(requests.get(f"{url}/v1/audit", timeout=30))["entries"]
    assert any(e["action"] == "pipeline.put" and e["target"] == "diagnose" for e in audit)

    server.stop()
    server = state.start()
    url = server.url
    listed = requests.get(f"{url}/v1/pipelines", timeout=30).json()["pipelines"]
    assert [p["name"] for p in listed] == ["diagnose"]
    assert requests.post(f"{url}/v1/pipelines/diagnose", json={"image": image}, timeout=30).status_code == 200

    ok(requests.delete(f"{url}/v1/pipelines/diagnose", timeout=30), 204)
    assert_error(requests.post(f"{url}/v1/pipelines/diagnose", json={"image": image}, timeout=30), 404)
    assert_error(requests.delete(f"{url}/v1/pipelines/diagnose", timeout=30), 404, "diagnose")
    server.stop()
    server = state.start()
    assert requests.get(f"{server.url}/v1/pipelines", timeout=30).json()["pipelines"] == []


@pytest.mark.parametrize("body, mentions", [
    (b'steps = [\n  { id = "x", model = "no-such-model", image = "image" },\n]\n', ["line 2", "unknown model 'no-such-model'"]),
    (DIAGNOSE.replace(b"curved = ", b"wavy = "), ["route key 'wavy'"]),
    (b"steps = [", ["line 1"]),
    (b'steps = []\n', ["has no steps"]),
    (b'\xff\xfe', ["UTF-8"]),
])
def test_a_bad_definition_is_refused_and_changes_nothing(start_server, two_layer_models, body, mentions):
    server = start_server(models_dir=two_layer_models)
    assert_error(requests.put(f"{server.url}/v1/pipelines/bad", data=body, timeout=30), 400, *mentions)
    assert requests.get(f"{server.url}/v1/pipelines", timeout=30).json()["pipelines"] == []


def test_config_file_pipelines_cannot_be_replaced_or_deleted(start_config_server, tmp_path):
    folder = shutil.copytree(TWO_LAYER, tmp_path / "two-layer")
    server = start_config_server(folder / "lectern.toml")
    for method in ("put", "delete"):
        r = getattr(requests, method)(f"{server.url}/v1/pipelines/diagnose", data=DIAGNOSE, timeout=30)
        assert_error(r, 400, "config file")
    assert_error(requests.put(f"{server.url}/v1/pipelines/bad%20name", data=DIAGNOSE, timeout=30), 400)


def test_a_stored_pipeline_that_no_longer_fits_is_not_served_after_a_restart(server_state, two_layer_models):
    """docs/contract.md: a stored pipeline that no longer fits is logged and not served after a
    restart, and the server still starts. `diagnose` routes to digit-curved, which is deleted
    (over the API, and its folder, so that the import does not bring it back); `category`
    needs only digit-category and is still served."""
    state = server_state(models=two_layer_models)
    server = state.start()
    ok(requests.put(f"{server.url}/v1/pipelines/diagnose", data=DIAGNOSE, timeout=30))
    ok(requests.put(f"{server.url}/v1/pipelines/category", data=CATEGORY, timeout=30))
    ok(requests.delete(f"{server.url}/v1/models/digit-curved", timeout=30), 204)
    shutil.rmtree(two_layer_models / "digit-curved")
    server.stop()

    server = state.start()
    listed = ok(requests.get(f"{server.url}/v1/pipelines", timeout=30))["pipelines"]
    assert [p["name"] for p in listed] == ["category"], listed
    digits = load_digits()
    image = png_of(digits.data[5])
    assert_error(requests.post(f"{server.url}/v1/pipelines/diagnose", json={"image": image}, timeout=30), 404)
    answer = ok(requests.post(f"{server.url}/v1/pipelines/category", json={"image": image}, timeout=30))
    assert set(answer) == {"category"}, answer
    log = server.stderr_text()
    assert "diagnose" in log and "digit-curved" in log, log[-3000:]
