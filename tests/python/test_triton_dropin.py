"""Lectern as a drop-in for Triton's HTTP clients (issue 16): the statistics extension, the
model configuration, gzip and deflate bodies, Triton's error words and server name, and
`load` with a config override, driven by `tritonclient.http` as Triton's `simple_http_*`
examples drive Triton (on the models those examples use, rebuilt in triton_models.py).
"""
from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from triton_models import write_triton_models


@pytest.fixture(scope="module")
def triton_server(tmp_path_factory):
    from conftest import LecternServer

    root = tmp_path_factory.mktemp("triton")
    models = write_triton_models(root / "models")
    (root / "data").mkdir()
    srv = LecternServer(models, root / "data", extra_args=["--server-name", "triton", "--max-body-bytes", "1000000"])
    yield srv
    srv.cleanup()


@pytest.fixture
def client(triton_server):
    c = httpclient.InferenceServerClient(url=triton_server.host_port)
    yield c
    c.close()


INPUT0 = np.arange(16, dtype=np.int32).reshape(1, 16)
INPUT1 = np.full((1, 16), -1, dtype=np.int32)


def simple_infer(client, model="simple", request_compression=None, response_compression=None, outputs=True):
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(INPUT0, binary_data=False)
    inputs[1].set_data_from_numpy(INPUT1, binary_data=True)
    wanted = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
              httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)] if outputs else None
    return client.infer(model, inputs, outputs=wanted, query_params={"test_1": 1, "test_2": 2},
                        request_compression_algorithm=request_compression,
                        response_compression_algorithm=response_compression)


def check_sums(result):
    assert np.array_equal(result.as_numpy("OUTPUT0"), INPUT0 + INPUT1)
    assert np.array_equal(result.as_numpy("OUTPUT1"), INPUT0 - INPUT1)


def test_server_metadata_names_the_configured_server_and_lists_the_new_extensions(client, server):
    metadata = client.get_server_metadata()
    assert metadata["name"] == "triton"
    assert {"statistics", "model_configuration", "binary_tensor_data", "model_repository"} <= set(metadata["extensions"])
    # without --server-name, Lectern says its own name
    assert server.get("/v2").json()["name"] == "lectern"
    assert client.is_server_live(query_params={"test_1": 1}) and client.is_model_ready("simple")


def test_unknown_models_are_reported_in_tritons_words(client):
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("wrong_model_name")
    assert "Request for unknown model" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        simple_infer(client, "wrong_model_name")
    assert e.value.message().startswith("Request for unknown model")
    assert e.value.status() == "404"


@pytest.mark.parametrize("request_compression", [None, "gzip", "deflate"])
@pytest.mark.parametrize("response_compression", [None, "gzip", "deflate"])
def test_compressed_requests_and_answers_compute_the_same(client, request_compression, response_compression):
    check_sums(simple_infer(client, request_compression=request_compression, response_compression=response_compression))
    check_sums(simple_infer(client, request_compression=request_compression, outputs=False))


def binary_request(datatype="INT32"):
    """A binary-tensor request for `simple`: JSON header, then both inputs as raw bytes."""
    header = json.dumps({"inputs": [
        {"name": "INPUT0", "datatype": datatype, "shape": [1, 16], "parameters": {"binary_data_size": 64}},
        {"name": "INPUT1", "datatype": datatype, "shape": [1, 16], "parameters": {"binary_data_size": 64}},
    ]}).encode()
    return header, header + INPUT0.tobytes() + INPUT1.tobytes()


def test_the_header_length_counts_the_uncompressed_json_and_answers_are_compressed_on_request(triton_server):
    header, body = binary_request()
    for name, packed in [("gzip", gzip.compress(body)), ("deflate", zlib.compress(body)),
                         ("deflate", zlib.compress(body)[2:-4])]:  # raw DEFLATE too
        r = requests.post(f"{triton_server.url}/v2/models/simple/infer", data=packed,
                          headers={"Content-Encoding": name, "Inference-Header-Content-Length": str(len(header)),
                                   "Accept-Encoding": "gzip"}, stream=True)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Encoding"] == "gzip"
        answer = json.loads(gzip.decompress(r.raw.read()))
        assert answer["outputs"][0]["data"] == (INPUT0 + INPUT1).ravel().tolist()
    # no Accept-Encoding: not compressed
    r = requests.post(f"{triton_server.url}/v2/models/simple/infer", data=body,
                      headers={"Inference-Header-Content-Length": str(len(header)), "Accept-Encoding": "identity"})
    assert r.status_code == 200 and "Content-Encoding" not in r.headers


def test_bad_compressed_bodies_are_refused_and_a_bomb_is_a_413(triton_server):
    url = f"{triton_server.url}/v2/models/simple/infer"
    before = requests.get(f"{triton_server.url}/v2/models/simple/stats").json()["model_stats"][0]["inference_count"]
    cases = [
        ({"Content-Encoding": "br"}, b"{}", 415, "unsupported_media_type"),
        ({"Content-Encoding": "gzip"}, b"this is not gzip", 400, "invalid_request"),
        ({"Content-Encoding": "deflate"}, b"\x78\x9c garbage", 400, "invalid_request"),
        # 20 MB of zeros packs into ~20 kB; the server's limit here is 1 MB
        ({"Content-Encoding": "gzip"}, gzip.compress(b"0" * 20_000_000), 413, "payload_too_large"),
        ({"Content-Encoding": "deflate"}, zlib.compress(b"0" * 20_000_000), 413, "payload_too_large"),
    ]
    for headers, body, status, code in cases:
        r = requests.post(url, data=body, headers=headers)
        assert r.status_code == status, (headers, r.text)
        assert r.json()["code"] == code and r.json()["error"]
    after = requests.get(f"{triton_server.url}/v2/models/simple/stats").json()["model_stats"][0]["inference_count"]
    assert after == before
    assert triton_server.get("/v2/health/live").status_code == 200


def duration(d):
    assert set(d) == {"count", "ns"} and d["count"] >= 0 and d["ns"] >= 0
    return d["count"], d["ns"]


def test_statistics_count_requests_rows_executions_and_failures(client, triton_server):
    before = client.get_inference_statistics(model_name="simple")["model_stats"][0]
    for _ in range(5):
        simple_infer(client)
    bad = requests.post(f"{triton_server.url}/v2/models/simple/infer",
                        json={"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]})
    assert bad.status_code == 400
    stats = client.get_inference_statistics(model_name="simple")
    assert len(stats["model_stats"]) == 1
    s = stats["model_stats"][0]
    assert s["name"] == "simple" and s["version"] == "1"
    assert s["response_stats"] == {} and s["memory_usage"] == []
    assert s["inference_count"] - before["inference_count"] == 5
    assert s["execution_count"] - before["execution_count"] == 5
    assert s["last_inference"] > 1_700_000_000_000
    st, bst = s["inference_stats"], before["inference_stats"]
    assert duration(st["success"])[0] - duration(bst["success"])[0] == 5
    assert duration(st["fail"])[0] - duration(bst["fail"])[0] == 1
    assert duration(st["queue"])[0] - duration(bst["queue"])[0] == 5
    assert duration(st["compute_infer"])[0] - duration(bst["compute_infer"])[0] == 5
    assert duration(st["success"])[1] > duration(bst["success"])[1]
    for part in ("compute_input", "compute_output", "cache_hit", "cache_miss"):
        duration(st[part])
    sizes = {b["batch_size"]: b for b in s["batch_stats"]}
    assert sizes[1]["compute_infer"]["count"] >= 5
    # the same over the versioned URL and in the list of all models
    version = client.get_inference_statistics(model_name="simple", model_version="1")["model_stats"]
    assert [v["version"] for v in version] == ["1"]
    every = client.get_inference_statistics()["model_stats"]
    assert {m["name"] for m in every} == {"simple", "simple_int8", "simple_string", "simple_identity"}


def test_statistics_of_unknown_models_and_versions_are_404(triton_server):
    for path in ["/v2/models/nope/stats", "/v2/models/simple/versions/9/stats", "/v2/models/simple/versions/x/stats"]:
        r = triton_server.get(path)
        assert r.status_code == 404, path
        assert r.json()["code"] in ("model_not_found", "version_not_found", "not_found")


def test_batched_requests_appear_in_the_batch_statistics(triton_server):
    """Concurrent requests joined into one execution show up under their batch size."""
    import concurrent.futures

    url = f"{triton_server.url}/v2/models/simple/infer"
    body = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [2, 16], "data": [1] * 32},
                       {"name": "INPUT1", "datatype": "INT32", "shape": [2, 16], "data": [2] * 32}]}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: requests.post(url, json=body), range(64)))
    assert all(a.status_code == 200 for a in answers)
    s = triton_server.get("/v2/models/simple/stats").json()["model_stats"][0]
    rows = sum(b["batch_size"] * b["compute_infer"]["count"] for b in s["batch_stats"])
    executions = sum(b["compute_infer"]["count"] for b in s["batch_stats"])
    assert rows == s["inference_count"] and executions == s["execution_count"]
    assert all(b["batch_size"] % 1 == 0 and b["batch_size"] <= 8 for b in s["batch_stats"])


def test_model_configuration_in_tritons_form(client):
    config = client.get_model_config("simple")
    assert config["name"] == "simple" and config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 8
    assert config["input"] == [{"name": "INPUT0", "data_type": "TYPE_INT32", "dims": [16]},
                               {"name": "INPUT1", "data_type": "TYPE_INT32", "dims": [16]}]
    assert [o["name"] for o in config["output"]] == ["OUTPUT0", "OUTPUT1"]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 1000
    assert config["instance_group"][0]["kind"] == "KIND_CPU" and config["instance_group"][0]["count"] >= 1
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    assert client.get_model_config("simple", model_version="1") == config
    strings = client.get_model_config("simple_string")
    assert strings["input"][0]["data_type"] == "TYPE_STRING"


def test_bytes_models_as_in_the_string_example(client):
    in0 = np.array([str(i).encode() for i in range(16)], dtype=np.object_).reshape(1, 16)
    in1 = np.array([b"1"] * 16, dtype=np.object_).reshape(1, 16)
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "BYTES"), httpclient.InferInput("INPUT1", [1, 16], "BYTES")]
    inputs[0].set_data_from_numpy(in0, binary_data=True)
    inputs[1].set_data_from_numpy(in1, binary_data=False)
    result = client.infer("simple_string", inputs, outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
                                                            httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)])
    assert [int(x) for x in result.as_numpy("OUTPUT0").ravel()] == [i + 1 for i in range(16)]
    assert [int(x) for x in result.as_numpy("OUTPUT1").ravel()] == [i - 1 for i in range(16)]
    blob = np.array([b"he\x00llo"] * 16, dtype=np.object_).reshape(1, 16)
    for binary in (True, False):
        one = httpclient.InferInput("INPUT0", [1, 16], "BYTES")
        one.set_data_from_numpy(blob, binary_data=binary)
        out = client.infer("simple_identity", [one], outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)])
        got = [x if isinstance(x, bytes) else str(x).encode() for x in out.as_numpy("OUTPUT0").ravel()]
        assert got == [b"he\x00llo"] * 16


def test_load_with_a_config_override_as_the_model_control_example(client, triton_server):
    with pytest.raises(InferenceServerException) as e:
        client.load_model("simple", config='"parameters": {"config": {{"max_batch_size": "16"}}}')
    assert "failed to load" in e.value.message()
    r = requests.post(f"{triton_server.url}/v2/repository/models/simple/load",
                      json={"parameters": {"config": {"max_batch_size": 16}}})  # an object, not JSON text
    assert r.status_code == 400 and r.json()["code"] == "model_load_failed"
    assert r.json()["error"].startswith("failed to load 'simple'")
    assert client.is_model_ready("simple")  # the failed loads changed nothing
    assert client.get_model_config("simple")["max_batch_size"] == 8
    try:
        client.load_model("simple", config='{"max_batch_size":"16", "instance_group": [{"count": 1}]}')
        config = client.get_model_config("simple")
        assert config["max_batch_size"] == 16 and config["instance_group"][0]["count"] == 1
        rows = np.arange(16 * 12, dtype=np.int32).reshape(12, 16)
        inputs = [httpclient.InferInput("INPUT0", [12, 16], "INT32"), httpclient.InferInput("INPUT1", [12, 16], "INT32")]
        inputs[0].set_data_from_numpy(rows)
        inputs[1].set_data_from_numpy(rows)
        assert np.array_equal(client.infer("simple", inputs).as_numpy("OUTPUT0"), rows * 2)  # 12 rows: over the old 8
        for bad in ['{"max_batch_size": -1}', '{"max_batch_size": 99999999}', '[1]', '{"instance_group": [{"count": 0}]}']:
            with pytest.raises(InferenceServerException) as e:
                client.load_model("simple", config=bad)
            assert "failed to load" in e.value.message() and e.value.status() == "400", bad
        assert client.get_model_config("simple")["max_batch_size"] == 16
        client.unload_model("simple")
        assert not client.is_model_ready("simple")
    finally:
        client.load_model("simple")  # the config file again
    assert client.get_model_config("simple")["max_batch_size"] == 8
    with pytest.raises(InferenceServerException) as e:
        client.load_model("wrong_model_name")
    assert "failed to load" in e.value.message() and e.value.status() == "404"


def test_warmup_samples_run_before_ready_and_are_not_counted(start_server):
    def prepare(models):
        write_triton_models(models)
        with open(models / "simple" / "config.toml", "a") as f:
            f.write('\n[[warmup]]\ninputs = "random"\nbatch_size = 4\ncount = 3\n\n[[warmup]]\n')
        with open(models / "simple_string" / "config.toml", "a") as f:
            f.write('\n[[warmup]]\ninputs = "zeros"\n')
        # a declared shape the model cannot run: its warmup fails, so the version never serves
        (models / "iris-logreg" / "config.toml").write_text(
            '[[inputs]]\nname = "X"\ndatatype = "FP32"\nshape = [-1, 5]\n\n[[warmup]]\ninputs = "zeros"\n')
        # out of range: the config is refused
        (models / "iris-forest" / "config.toml").write_text('[[warmup]]\nbatch_size = 0\n')

    srv = start_server(prepare=prepare)
    index = {(r["name"], r.get("version")): r for r in srv.post("/v2/repository/index").json()}
    assert index[("simple", "1")]["state"] == "READY" and index[("simple_string", "1")]["state"] == "READY"
    assert index[("iris-logreg", "1")]["state"] == "UNAVAILABLE"
    assert "warmup failed" in index[("iris-logreg", "1")]["reason"]
    assert any(r["name"] == "iris-forest" and r["state"] == "UNAVAILABLE" and "warmup" in r["reason"]
               for r in index.values())
    stats = srv.get("/v2/models/simple/stats").json()["model_stats"][0]
    assert stats["inference_count"] == 0 and stats["execution_count"] == 0
    r = srv.post("/v2/models/simple/infer", json={"inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(16))},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]})
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [i + 1 for i in range(16)]


def test_warmup_from_a_request_file_of_the_model_folder(start_server):
    """`[[warmup]] file = "..."`: the folder import reads the V2 request and stores it inline as
    `request`; its inputs are the sample (a wrong one keeps the version from serving)."""
    request = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [2, 16], "data": [1] * 32},
                          {"name": "INPUT1", "datatype": "INT32", "shape": [2, 16], "data": [2] * 32}]}
    wrong = {"inputs": [{"name": "NOPE", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]}

    def prepare(models):
        write_triton_models(models)
        (models / "simple" / "warmup.json").write_text(json.dumps(request))
        with open(models / "simple" / "config.toml", "a") as f:
            f.write('\n[[warmup]]\nfile = "warmup.json"\ncount = 2\n')
        (models / "simple_int8" / "warmup.json").write_text(json.dumps(wrong))
        with open(models / "simple_int8" / "config.toml", "a") as f:
            f.write('\n[[warmup]]\nfile = "warmup.json"\n')
        with open(models / "simple_string" / "config.toml", "a") as f:
            f.write('\n[[warmup]]\nfile = "missing.json"\n')
        # beside a labels file (the import reads both)
        (models / "iris-logreg" / "warmup.json").write_text(json.dumps(
            {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}))
        with open(models / "iris-logreg" / "config.toml", "a") as f:
            f.write('\n[[warmup]]\nfile = "warmup.json"\n')
        # a link out of the model folder is not followed
        (models / "iris-forest" / "warmup.json").symlink_to(models / "iris-logreg" / "warmup.json")
        with open(models / "iris-forest" / "config.toml", "a") as f:
            f.write('\n[[warmup]]\nfile = "warmup.json"\n')

    srv = start_server(prepare=prepare)
    index = {r["name"]: r for r in srv.post("/v2/repository/index").json()}
    assert index["simple"]["state"] == "READY", index["simple"]
    assert index["simple_int8"]["state"] == "UNAVAILABLE" and "warmup failed" in index["simple_int8"]["reason"]
    assert "has no input 'NOPE'" in index["simple_int8"]["reason"]
    assert index["iris-logreg"]["state"] == "READY", index["iris-logreg"]
    assert srv.get("/v1/models/iris-logreg").json()["labels"] == ["setosa", "versicolor", "virginica"]
    assert index["iris-forest"]["state"] == "UNAVAILABLE" and "was not read" in index["iris-forest"]["reason"]
    assert index["simple_string"]["state"] == "UNAVAILABLE" and "'missing.json' was not read" in index["simple_string"]["reason"]
    # the store keeps the request itself; the API shows it and takes it back unchanged
    model = srv.get("/v1/models/simple").json()
    assert "file" not in model["config"]["warmup"][0]
    assert json.loads(model["config"]["warmup"][0]["request"]) == request
    put = requests.put(f"{srv.url}/v1/models/simple/config", json={"config": model["config"]}, timeout=30)
    assert put.status_code == 200, put.text
    with_file = dict(model["config"], warmup=[{"file": "warmup.json"}])
    put = requests.put(f"{srv.url}/v1/models/simple/config", json={"config": with_file}, timeout=30)
    assert put.status_code == 400 and "was not read" in put.json()["error"], put.text
    assert srv.get("/v1/models/simple").json()["config"]["warmup"][0]["request"]
    stats = srv.get("/v2/models/simple/stats").json()["model_stats"][0]
    assert stats["inference_count"] == 0
