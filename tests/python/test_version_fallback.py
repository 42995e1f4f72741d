"""Version fallback: when a version the policy selects fails to load and the store did not know
it would, it is recorded UNAVAILABLE with its reason and the policy is applied again over the
versions not known to fail, so the newest loadable version serves (contract: "A version known to
fail is skipped by the policy"). Covers the folder import at start-up, a restart whose newest
version's artifact turned corrupt (the state a SIGKILL during an upload leaves), and V2 `load`
of a model that serves nothing.
"""
from __future__ import annotations

import hashlib

import numpy as np
import requests

from conftest import EXAMPLE_MODELS
from lectern_checks import ok
from lectern_v2 import iris_x, json_input, model_file, ort_reference, parse_infer_response

GARBAGE = b"this is not an onnx model \x00\x01\x02\xff" * 8
ROWS = iris_x()[::5]
IRIS_V1 = model_file(EXAMPLE_MODELS, "iris-logreg", 1)
IRIS_V2 = model_file(EXAMPLE_MODELS, "iris-logreg", 2)


def assert_serves(srv, name: str, version: int, path):
    resp = requests.post(f"{srv.url}/v2/models/{name}/infer",
                         json={"inputs": [json_input("X", ROWS, "FP32")]}, timeout=60)
    assert resp.status_code == 200, f"infer {name}: {resp.status_code} {resp.text[:500]}"
    header, outputs = parse_infer_response(resp)
    assert str(header["model_version"]) == str(version), header
    ref = ort_reference(path, {"X": ROWS})
    np.testing.assert_allclose(outputs["output_probability"], ref["output_probability"], rtol=0, atol=1e-5)


def states(srv, name: str) -> dict[int, tuple[str, str]]:
    view = ok(requests.get(f"{srv.url}/v1/models/{name}", timeout=30))
    return {v["version"]: (v["state"], v["reason"]) for v in view["versions"]}


def index_of(srv, name: str) -> dict[str, str]:
    rows = ok(requests.post(f"{srv.url}/v2/repository/index", timeout=30))
    return {str(r.get("version")): r["state"] for r in rows if r["name"] == name}


def assert_fell_back(srv, name: str, good_path):
    assert_serves(srv, name, 1, good_path)
    got = states(srv, name)
    assert got[1] == ("READY", ""), got
    assert got[2][0] == "UNAVAILABLE" and got[2][1].strip(), got
    assert index_of(srv, name) == {"1": "READY", "2": "UNAVAILABLE"}
    assert requests.get(f"{srv.url}/v2/models/{name}/ready", timeout=30).status_code == 200
    resp = requests.post(f"{srv.url}/v2/models/{name}/versions/2/infer",
                         json={"inputs": [json_input("X", ROWS, "FP32")]}, timeout=60)
    assert resp.status_code == 400, resp.text


def test_a_corrupt_newest_folder_version_falls_back_to_the_older_one_at_start_up(start_server):
    def corrupt(models):
        model_file(models, "iris-logreg", 2).write_bytes(GARBAGE)

    srv = start_server(prepare=corrupt)
    assert_fell_back(srv, "iris-logreg", model_file(srv.models_dir, "iris-logreg", 1))


def test_after_a_restart_a_newest_version_whose_artifact_turned_bad_gives_way_to_the_older(server_state):
    state = server_state(models=False)
    srv = state.start(models=False)
    ok(requests.post(f"{srv.url}/v1/models", json={"name": "fb"}, timeout=30), 201)
    v1, v2 = IRIS_V1.read_bytes(), IRIS_V2.read_bytes()
    ok(requests.post(f"{srv.url}/v1/models/fb/versions", data=v1, timeout=60), 201)
    ok(requests.post(f"{srv.url}/v1/models/fb/versions", data=v2, timeout=60), 201)
    assert_serves(srv, "fb", 2, IRIS_V2)
    srv.kill()
    # The store says version 2 is READY (as an upload cut off by SIGKILL leaves it PENDING):
    # nothing tells it that its artifact no longer loads.
    digest = hashlib.sha256(v2).hexdigest()
    artifacts = [p for p in state.data_dir.rglob("*") if p.is_file() and digest in p.name]
    assert len(artifacts) == 1, artifacts
    artifacts[0].write_bytes(GARBAGE)
    srv = state.start(models=False)
    assert_fell_back(srv, "fb", IRIS_V1)


def test_v2_load_of_a_model_serving_nothing_falls_back_to_the_newest_loadable_version(start_server):
    srv = start_server()
    assert requests.post(f"{srv.url}/v2/repository/models/iris-logreg/unload", timeout=30).status_code == 200
    model_file(srv.models_dir, "iris-logreg", 2).write_bytes(GARBAGE)
    resp = requests.post(f"{srv.url}/v2/repository/models/iris-logreg/load", timeout=60)
    # version 2 failed (the answer says so); version 1 serves in its place
    assert resp.status_code == 400, resp.text
    assert "version 2" in resp.json()["error"], resp.text
    assert_fell_back(srv, "iris-logreg", model_file(srv.models_dir, "iris-logreg", 1))
