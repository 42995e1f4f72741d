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

REPO = Path(__file__).resolve().parents[2]
TWO_LAYER = REPO / "examples" / "two-layer"

DIAGNOSE = b'''steps = [
  { id = "category", model = "digit-category", image = "image" },
  { id = "digit", route = "category.label", models = { round = "digit-round", straight = "digit-straight", curved = "digit-curved" }, image = "image", top_k = 3 },
]
shape = { category = "category.label", predictions = "digit.top_k" }
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
    r = requests.put(f"{url}/v1/pipelines/diagnose", data=DIAGNOSE, timeout=30)
    assert r.status_code == 200, r.text
    assert [s["id"] for s in r.json()["pipeline"]["steps"]] == ["category", "digit"]
    digits = load_digits()
    image = png_of(digits.data[3])
    answer = requests.post(f"{url}/v1/pipelines/diagnose", json={"image": image}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["label"] == str(digits.target[3])
    audit = requests.get(f"{url}/v1/audit", timeout=30).json()["entries"]
    assert any(e["action"] == "pipeline.put" and e["target"] == "diagnose" for e in audit)

    server.stop()
    server = state.start()
    url = server.url
    listed = requests.get(f"{url}/v1/pipelines", timeout=30).json()["pipelines"]
    assert [p["name"] for p in listed] == ["diagnose"]
    assert requests.post(f"{url}/v1/pipelines/diagnose", json={"image": image}, timeout=30).status_code == 200

    assert requests.delete(f"{url}/v1/pipelines/diagnose", timeout=30).status_code == 204
    assert requests.post(f"{url}/v1/pipelines/diagnose", json={"image": image}, timeout=30).status_code == 404
    r = requests.delete(f"{url}/v1/pipelines/diagnose", timeout=30)
    assert r.status_code == 404 and r.json()["error"]
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
    r = requests.put(f"{server.url}/v1/pipelines/bad", data=body, timeout=30)
    assert r.status_code == 400, r.text
    message = r.json()["error"]
    for m in mentions:
        assert m in message, message
    assert requests.get(f"{server.url}/v1/pipelines", timeout=30).json()["pipelines"] == []


def test_config_file_pipelines_cannot_be_replaced_or_deleted(start_config_server, tmp_path):
    folder = shutil.copytree(TWO_LAYER, tmp_path / "two-layer")
    server = start_config_server(folder / "lectern.toml")
    for method in ("put", "delete"):
        r = getattr(requests, method)(f"{server.url}/v1/pipelines/diagnose", data=DIAGNOSE, timeout=30)
        assert r.status_code == 400, r.text
        assert "config file" in r.json()["error"]
    assert requests.put(f"{server.url}/v1/pipelines/bad%20name", data=DIAGNOSE, timeout=30).status_code == 400
