"""The V2 protocol over gRPC (issue 16): `lectern serve --grpc-listen ADDR` serves Triton's
`inference.GRPCInferenceService`, driven here by `tritonclient.grpc` as Triton's
`simple_grpc_*` examples drive Triton, and by the raw generated stub that tritonclient ships
(typed contents, malformed messages). Same models as test_triton_dropin.py; answers are
compared with the HTTP routes' answers for the same request.
"""
from __future__ import annotations

import queue
import shutil
import socket
import time

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import EXAMPLE_MODELS, LecternServer
from triton_models import write_triton_models

MAX_BODY = 1_000_000
INPUT0 = np.arange(16, dtype=np.int32).reshape(1, 16)
INPUT1 = np.full((1, 16), -1, dtype=np.int32)


def start(root, extra=()):
    models = write_triton_models(root / "models")
    shutil.copytree(EXAMPLE_MODELS / "iris-logreg", models / "iris-logreg")
    (root / "data").mkdir()
    return LecternServer(models, root / "data", extra_args=[
        "--grpc-listen", "127.0.0.1:0", "--server-name", "triton", "--max-body-bytes", str(MAX_BODY), *extra])


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory):
    srv = start(tmp_path_factory.mktemp("grpc"))
    yield srv
    srv.cleanup()


@pytest.fixture
def client(grpc_server):
    c = grpcclient.InferenceServerClient(url=grpc_server.grpc_host_port)
    yield c
    c.close()


@pytest.fixture
def stub(grpc_server):
    channel = grpc.insecure_channel(grpc_server.grpc_host_port)
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def simple_inputs(a=INPUT0, b=INPUT1):
    inputs = [grpcclient.InferInput("INPUT0", list(a.shape), "INT32"), grpcclient.InferInput("INPUT1", list(b.shape), "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


def check_sums(result, a=INPUT0, b=INPUT1):
    assert np.array_equal(result.as_numpy("OUTPUT0"), a + b)
    assert np.array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_health_and_metadata_as_tritons_health_example_reads_them(client, grpc_server):
    assert client.is_server_live(headers={"test": "1"}) and client.is_server_ready()
    assert client.is_model_ready("simple") and client.is_model_ready("simple", "1")
    # not ready is an answer, not an error (Triton's is_model_ready after an unload)
    assert not client.is_model_ready("wrong_model_name") and not client.is_model_ready("simple", "7")
    metadata = client.get_server_metadata()
    assert metadata.name == "triton"
    assert {"statistics", "model_configuration", "model_repository"} <= set(metadata.extensions)
    http = grpc_server.get("/v2/models/simple").json()
    metadata = client.get_model_metadata("simple", as_json=True)
    assert metadata["name"] == "simple" and metadata["versions"] == http["versions"]
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in metadata["inputs"]] == \
        [(t["name"], t["datatype"], t["shape"]) for t in http["inputs"]]
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("wrong_model_name")
    assert "Request for unknown model" in e.value.message() and e.value.status() == "StatusCode.NOT_FOUND"


@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_infer_with_raw_contents_and_compression(client, compression):
    outputs = [grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("OUTPUT1")]
    result = client.infer("simple", simple_inputs(), outputs=outputs, request_id="r-7",
                          compression_algorithm=compression)
    check_sums(result)
    response = result.get_response()
    assert response.id == "r-7" and response.model_name == "simple" and response.model_version == "1"
    # every output when none is named; a batch of 3 rows
    a = np.arange(48, dtype=np.int32).reshape(3, 16)
    b = np.ones((3, 16), dtype=np.int32)
    check_sums(client.infer("simple", simple_inputs(a, b), compression_algorithm=compression), a, b)


def test_the_grpc_answer_is_the_http_answer(client, grpc_server):
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
    inp = grpcclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("iris-logreg", [inp])
    http = grpc_server.post("/v2/models/iris-logreg/infer", json={
        "inputs": [{"name": "X", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}).json()
    assert http["model_version"] == result.get_response().model_version
    for output in http["outputs"]:
        got = result.as_numpy(output["name"])
        assert list(got.shape) == output["shape"]
        assert np.allclose(got.ravel().astype(np.float64), np.array(output["data"], dtype=np.float64), atol=1e-6)


def test_bytes_tensors_travel_length_prefixed(client):
    a = np.array([[str(i).encode() for i in range(16)]], dtype=np.object_)
    b = np.array([[b"1"] * 16], dtype=np.object_)
    inputs = [grpcclient.InferInput("INPUT0", [1, 16], "BYTES"), grpcclient.InferInput("INPUT1", [1, 16], "BYTES")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("simple_string", inputs)
    assert [int(v) for v in result.as_numpy("OUTPUT0").ravel()] == [i + 1 for i in range(16)]
    assert [int(v) for v in result.as_numpy("OUTPUT1").ravel()] == [i - 1 for i in range(16)]


def typed_request(datatype="INT32", shape=(1, 16), **contents):
    request = service_pb2.ModelInferRequest(model_name="simple")
    for name in ["INPUT0", "INPUT1"]:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=list(shape))
        for field, values in contents.items():
            getattr(tensor.contents, field).extend(values)
    return request


def test_typed_contents_as_the_explicit_content_examples_send_them(stub):
    answer = stub.ModelInfer(typed_request(int_contents=list(range(16))))
    assert answer.outputs[0].name == "OUTPUT0" and list(answer.outputs[0].shape) == [1, 16]
    # answers always carry raw contents, as Triton's do
    assert np.array_equal(np.frombuffer(answer.raw_output_contents[0], dtype="<i4"), np.arange(16) * 2)
    assert np.array_equal(np.frombuffer(answer.raw_output_contents[1], dtype="<i4"), np.zeros(16))


INVALID = grpc.StatusCode.INVALID_ARGUMENT


def many_inputs(n):
    request = service_pb2.ModelInferRequest(model_name="simple")
    for _ in range(n):
        request.inputs.add()
    return request


@pytest.mark.parametrize("request_, code, words", [
    (typed_request(int_contents=list(range(15))), INVALID, "needs 16 elements but 15"),
    (typed_request(fp32_contents=[1.0] * 16), INVALID, "int_contents, not fp32_contents"),
    (typed_request("INT99", int_contents=list(range(16))), INVALID, "INT99"),
    (typed_request(shape=(1, -16), int_contents=list(range(16))), INVALID, "negative"),
    (typed_request(), INVALID, "has no data"),
    (service_pb2.ModelInferRequest(model_name="simple"), INVALID, "no inputs"),
    (service_pb2.ModelInferRequest(model_name="simple", model_version="x"), grpc.StatusCode.NOT_FOUND, "no version 'x'"),
    # 2 bytes each on the wire, hundreds in memory: refused before the message is decoded
    (many_inputs(200_000), INVALID, "top-level fields"),
])
def test_malformed_messages_are_refused_with_the_reason(stub, client, request_, code, words):
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request_)
    assert e.value.code() == code, e.value
    assert words in e.value.details(), e.value.details()
    assert client.is_server_live()


def test_raw_contents_must_cover_every_input(stub):
    request = typed_request(shape=(1, 16))
    request.raw_input_contents.append(INPUT0.tobytes())
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "for every input" in e.value.details()


def test_statistics_count_grpc_requests_as_http_shows_them(client, grpc_server):
    before = client.get_inference_statistics("simple", as_json=True)["model_stats"][0]
    for _ in range(3):
        client.infer("simple", simple_inputs())
    with pytest.raises(InferenceServerException):
        bad = [grpcclient.InferInput("INPUT0", [1, 16], "INT32")]
        bad[0].set_data_from_numpy(INPUT0)
        client.infer("simple", bad)
    stats = client.get_inference_statistics("simple", as_json=True)["model_stats"][0]
    assert int(stats["inference_count"]) == int(before.get("inference_count", 0)) + 3
    success = stats["inference_stats"]["success"]
    assert int(success["count"]) == int(before["inference_stats"].get("success", {}).get("count", 0)) + 3
    failed_before = int(before["inference_stats"].get("fail", {}).get("count", 0))
    assert int(stats["inference_stats"]["fail"]["count"]) == failed_before + 1
    http = grpc_server.get("/v2/models/simple/stats").json()["model_stats"][0]
    assert int(stats["inference_count"]) == http["inference_count"]
    assert int(success["ns"]) == http["inference_stats"]["success"]["ns"]
    names = {s["name"] for s in client.get_inference_statistics(as_json=True)["model_stats"]}
    assert {"simple", "simple_string", "iris-logreg"} <= names
    with pytest.raises(InferenceServerException) as e:
        client.get_inference_statistics("wrong_model_name")
    assert e.value.status() == "StatusCode.NOT_FOUND"


def test_model_configuration_and_the_repository_calls(client, grpc_server):
    config = client.get_model_config("simple", as_json=True)["config"]
    assert config["name"] == "simple" and config["platform"] == "onnxruntime_onnx"
    assert int(config["max_batch_size"]) == 8
    assert [(i["name"], i["data_type"], [int(d) for d in i["dims"]]) for i in config["input"]] == \
        [("INPUT0", "TYPE_INT32", [16]), ("INPUT1", "TYPE_INT32", [16])]
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    index = {m.name: m for m in client.get_model_repository_index().models}
    assert index["simple"].state == "READY" and index["simple"].version == "1"

    # Triton's model-control example: a malformed override, a good one, unload, a sent file
    with pytest.raises(InferenceServerException) as e:
        client.load_model("simple", config='"parameters": {"config": {{"max_batch_size": "16"}}}')
    assert "failed to load" in e.value.message()
    assert int(client.get_model_config("simple", as_json=True)["config"]["max_batch_size"]) == 8
    client.load_model("simple", config='{"max_batch_size":"16"}')
    assert int(client.get_model_config("simple", as_json=True)["config"]["max_batch_size"]) == 16
    assert grpc_server.get("/v2/models/simple/config").json()["max_batch_size"] == 16
    with pytest.raises(InferenceServerException) as e:
        client.load_model("simple", config="{}", files={"file:" + "A" * 256: b"a"})
    assert "failed to poll from model repository" in e.value.message()
    assert e.value.status() == "StatusCode.INTERNAL"
    client.unload_model("simple")
    assert not client.is_model_ready("simple")
    with pytest.raises(InferenceServerException) as e:
        client.infer("simple", simple_inputs())
    assert e.value.status() in ("StatusCode.UNAVAILABLE", "StatusCode.NOT_FOUND")
    client.load_model("simple")
    assert client.is_model_ready("simple")
    assert int(client.get_model_config("simple", as_json=True)["config"]["max_batch_size"]) == 8
    with pytest.raises(InferenceServerException) as e:
        client.load_model("wrong_model_name")
    assert "failed to load" in e.value.message()


def test_a_stream_answers_each_request_in_order_and_goes_on_after_a_failure(client):
    answers: "queue.Queue" = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(4):
            model = "wrong_model_name" if i == 2 else "simple"
            a = np.full((1, 16), i, dtype=np.int32)
            client.async_stream_infer(model, simple_inputs(a, INPUT1), request_id=str(i))
        got = [answers.get(timeout=30) for _ in range(4)]
    finally:
        client.stop_stream()
    for i, (result, error) in enumerate(got):
        if i == 2:
            assert result is None and "Request for unknown model" in error.message()
            continue
        assert error is None, error
        assert result.get_response().id == str(i)
        check_sums(result, np.full((1, 16), i, dtype=np.int32), INPUT1)


def test_undeclared_calls_are_unimplemented(client, stub):
    with pytest.raises(grpc.RpcError) as e:
        stub.SystemSharedMemoryStatus(service_pb2.SystemSharedMemoryStatusRequest())
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert client.is_server_live()


def test_messages_over_the_body_limit_are_resource_exhausted_even_compressed(client, stub):
    big = np.zeros((1, MAX_BODY // 4 + 16), dtype=np.int32)
    request = service_pb2.ModelInferRequest(model_name="simple")
    request.inputs.add(name="INPUT0", datatype="INT32", shape=list(big.shape))
    request.raw_input_contents.append(big.tobytes())
    for compression in [None, grpc.Compression.Gzip]:
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(request, compression=compression)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (compression, e.value)
    # a bomb: 64 MB of zeros is 64 kB gzipped, far under the limit on the wire
    bomb = service_pb2.ModelInferRequest(model_name="simple")
    bomb.raw_input_contents.append(bytes(64 * 1024 * 1024))
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(bomb, compression=grpc.Compression.Gzip)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # in a stream too: the stream ends with the same code
    with pytest.raises(grpc.RpcError) as e:
        list(stub.ModelStreamInfer(iter([typed_request(int_contents=list(range(16))), request])))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value
    check_sums(client.infer("simple", simple_inputs()))


def test_bytes_that_are_not_a_message_are_invalid_argument(grpc_server, client):
    channel = grpc.insecure_channel(grpc_server.grpc_host_port)
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)
    for garbage in [b"\xff\xff\xff\xff", b"\x0a\x05ab"]:
        with pytest.raises(grpc.RpcError) as e:
            call(garbage)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
    channel.close()
    assert client.is_server_live()


def test_silent_connections_do_not_hold_the_connection_slots(tmp_path):
    srv = start(tmp_path, ["--max-connections", "2"])
    try:
        port = int(srv.grpc_host_port.rsplit(":", 1)[1])
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        time.sleep(11)  # past the 10 s in which a client must speak
        c = grpcclient.InferenceServerClient(url=srv.grpc_host_port)
        assert c.is_server_live(client_timeout=10)
        c.close()
        for s in silent:
            s.close()
    finally:
        srv.cleanup()


def test_a_stream_counts_each_message_against_the_rate_limit(tmp_path):
    srv = start(tmp_path, ["--rate-limit", "0.01", "--rate-burst", "3"])
    try:
        admin = requests.post(srv.url + "/v1/keys", json={"name": "admin", "role": "admin"}, timeout=30).json()["key"]
        answers = []
        stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(srv.grpc_host_port))
        messages = iter([typed_request(int_contents=list(range(16))) for _ in range(5)])
        for answer in stub.ModelStreamInfer(messages, metadata=[("authorization", f"Bearer {admin}")]):
            answers.append(answer)
        assert [a.error_message == "" for a in answers] == [True, True, True, False, False], answers
        assert "rate limit" in answers[3].error_message
    finally:
        srv.cleanup()


def test_an_open_stream_does_not_keep_the_server_from_stopping(tmp_path):
    import signal
    import threading

    srv = start(tmp_path)
    try:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(srv.grpc_host_port))
        release = threading.Event()

        def messages():
            yield typed_request(int_contents=list(range(16)))
            release.wait(60)  # the client keeps its stream open

        answers = stub.ModelStreamInfer(messages())
        assert next(answers).error_message == ""
        began = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(timeout=30)
        assert time.monotonic() - began < 20 and srv.proc.returncode == 0, srv.stderr_text()[-2000:]
        release.set()
    finally:
        srv.cleanup()


def test_grpc_is_off_unless_asked_for(server):
    assert not any(line.startswith("lectern gRPC") for line in server.stdout_lines)


def test_the_gate_reads_credentials_from_metadata(tmp_path):
    srv = start(tmp_path)
    try:
        admin = requests.post(srv.url + "/v1/keys", json={"name": "admin", "role": "admin"}, timeout=30).json()["key"]
        keys = {}
        for role in ["client", "trainer"]:
            r = requests.post(srv.url + "/v1/keys", json={"name": role, "role": role},
                              headers={"Authorization": f"Bearer {admin}"}, timeout=30)
            keys[role] = r.json()["key"]
        c = grpcclient.InferenceServerClient(url=srv.grpc_host_port)
        assert c.is_server_live()  # open
        with pytest.raises(InferenceServerException) as e:
            c.infer("simple", simple_inputs())
        assert e.value.status() == "StatusCode.UNAUTHENTICATED" and "credential" in e.value.message()
        with pytest.raises(InferenceServerException) as e:
            c.infer("simple", simple_inputs(), headers={"authorization": "Bearer lk_not_a_key"})
        assert e.value.status() == "StatusCode.UNAUTHENTICATED"
        assert "lk_not_a_key" not in e.value.message() and "lk_not_a_key" not in srv.stderr_text()
        client_key = {"authorization": f"Bearer {keys['client']}"}
        check_sums(c.infer("simple", simple_inputs(), headers=client_key))
        check_sums(c.infer("simple", simple_inputs(), headers={"x-api-key": keys["client"]}))
        with pytest.raises(InferenceServerException) as e:
            c.unload_model("simple", headers=client_key)
        assert e.value.status() == "StatusCode.PERMISSION_DENIED"
        assert c.is_model_ready("simple", headers=client_key)
        c.unload_model("simple", headers={"authorization": f"Bearer {keys['trainer']}"})
        assert not c.is_model_ready("simple", headers=client_key)
        c.close()
    finally:
        srv.cleanup()


def test_other_users_project_models_are_hidden_from_every_call(tmp_path):
    """`[dashboard] projects = "kids-"`: a model named in another user's projects answers over
    gRPC as one that does not exist, as the HTTP gate answers a path naming it."""
    models = write_triton_models(tmp_path / "models")
    hidden = "kids-_kzzz-proj"
    shutil.copytree(models / "simple", models / hidden)
    config = tmp_path / "lectern.toml"
    config.write_text('[dashboard]\nprojects = "kids-"\n')
    (tmp_path / "data").mkdir()
    srv = LecternServer(models, tmp_path / "data", extra_args=["--grpc-listen", "127.0.0.1:0", "--config", str(config)])
    try:
        admin = requests.post(srv.url + "/v1/keys", json={"name": "admin", "role": "admin"}, timeout=30).json()["key"]
        trainer = requests.post(srv.url + "/v1/keys", json={"name": "t", "role": "trainer"},
                                headers={"Authorization": f"Bearer {admin}"}, timeout=30).json()["key"]
        as_trainer = {"authorization": f"Bearer {trainer}"}
        c = grpcclient.InferenceServerClient(url=srv.grpc_host_port)
        assert c.is_model_ready("simple", headers=as_trainer)
        assert not c.is_model_ready(hidden, headers=as_trainer)
        calls = [
            lambda: c.get_model_metadata(hidden, headers=as_trainer),
            lambda: c.get_model_config(hidden, headers=as_trainer),
            lambda: c.get_inference_statistics(hidden, headers=as_trainer),
            lambda: c.infer(hidden, simple_inputs(), headers=as_trainer),
            lambda: c.load_model(hidden, headers=as_trainer),
            lambda: c.unload_model(hidden, headers=as_trainer),
        ]
        for call in calls:
            with pytest.raises(InferenceServerException) as e:
                call()
            assert e.value.status() == "StatusCode.NOT_FOUND" and "Request for unknown model" in e.value.message()
        assert hidden not in {m.name for m in c.get_model_repository_index(headers=as_trainer).models}
        names = {s["name"] for s in c.get_inference_statistics(headers=as_trainer, as_json=True)["model_stats"]}
        assert "simple" in names and hidden not in names
        stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(srv.grpc_host_port))
        request = typed_request(int_contents=list(range(16)))
        request.model_name = hidden
        answers = list(stub.ModelStreamInfer(iter([request]), metadata=list(as_trainer.items())))
        assert "Request for unknown model" in answers[0].error_message
        # the refused unload changed nothing: the owner's model still serves (an admin sees it)
        assert c.is_model_ready(hidden, headers={"authorization": f"Bearer {admin}"})
        c.close()
    finally:
        srv.cleanup()


def test_grpc_over_tls_with_the_https_certificate(tmp_path):
    from test_tls import make_certificate

    cert, key = make_certificate(tmp_path / "tls")
    srv = start(tmp_path, ["--tls-cert", str(cert), "--tls-key", str(key)])
    try:
        c = grpcclient.InferenceServerClient(url=srv.grpc_host_port, ssl=True, root_certificates=str(cert))
        check_sums(c.infer("simple", simple_inputs()))
        c.close()
        # a plaintext client gets nothing from the TLS port, and the server goes on
        plain = grpcclient.InferenceServerClient(url=srv.grpc_host_port)
        with pytest.raises(InferenceServerException):
            plain.is_server_live(client_timeout=5)
        plain.close()
        port = int(srv.grpc_host_port.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"garbage that is not TLS\r\n\r\n")
        c = grpcclient.InferenceServerClient(url=srv.grpc_host_port, ssl=True, root_certificates=str(cert))
        assert c.is_server_live()
        c.close()
    finally:
        srv.cleanup()
