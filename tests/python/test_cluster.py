"""Scale-out over NATS and PostgreSQL (issue 15), end to end: a gateway (`lectern serve --nats`)
and `lectern worker` processes, each a process of its own, on the machine's NATS (a cluster
name of their own per test) or on a NATS server of the test's own where the test needs to stop
it; two gateways on one PostgreSQL database. The network-namespace test is in
test_cluster_netns.py.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import EXAMPLE_MODELS, REPO_ROOT, LecternServer, TestDatabase
from lectern_cluster import (
    MACHINE_NATS,
    LecternWorker,
    NatsServer,
    cluster_name,
    delete_cluster,
    free_port,
    run,
    status,
    wait_placed,
    wait_until,
)
from test_pipelines import b64, check_diagnosis, digit_image, digits_test_split, image_field

TWO_LAYER = REPO_ROOT / "examples" / "two-layer"
IRIS = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 4],
                    "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]}


class Cluster:
    """One cluster of a test: its name on a NATS server, its gateways and workers."""

    def __init__(self, tmp: Path, nats: str = MACHINE_NATS):
        self.tmp = tmp
        self.nats = nats
        self.name = cluster_name()
        self.workers: list[LecternWorker] = []
        self.gateways: list[LecternServer] = []

    def gateway(self, models: Path | None = None, config: Path | None = None, extra_args=(), data: Path | None = None,
                database: TestDatabase | None = None) -> LecternServer:
        data = data or self.tmp / f"gateway{len(self.gateways)}"
        data.mkdir(parents=True, exist_ok=True)
        args = ["--nats", self.nats, "--cluster", self.name, "--cluster-timeout-s", "3", *extra_args]
        if config is not None:
            args = ["--config", str(config), *args]
        srv = LecternServer(models, data, extra_args=args, database=database)
        self.gateways.append(srv)
        return srv

    def worker(self, name: str, labels=(), **kw) -> LecternWorker:
        w = LecternWorker(self.nats, self.name, name, labels=labels, **kw)
        self.workers.append(w)
        return w

    def cleanup(self):
        for w in self.workers:
            w.cleanup()
        for g in self.gateways:
            g.cleanup()
        delete_cluster(self.nats, self.name)


@pytest.fixture
def cluster(tmp_path):
    made: list[Cluster] = []

    def make(nats: str = MACHINE_NATS) -> Cluster:
        c = Cluster(tmp_path / f"cluster{len(made)}", nats)
        c.tmp.mkdir()
        made.append(c)
        return c

    yield make
    for c in made:
        c.cleanup()


def iris_models(root: Path, config: str) -> Path:
    """A models folder with iris-logreg only, its config.toml replaced by `config`."""
    models = root / "models"
    shutil.copytree(EXAMPLE_MODELS / "iris-logreg", models / "iris-logreg")
    (models / "iris-logreg" / "config.toml").write_text('labels = "labels.txt"\n' + config)
    return models


def infer_iris(gateway, timeout: float = 10) -> requests.Response:
    return requests.post(gateway.url + "/v2/models/iris-logreg/infer", json=IRIS, timeout=timeout)


# =========================================================================== the two-layer example

def two_layer_pinned(root: Path) -> Path:
    """A copy of examples/two-layer whose category model is pinned to `layer=1` workers and
    whose per-category models to `layer=2` ones; the pipeline is left as it is."""
    folder = root / "two-layer"
    shutil.copytree(TWO_LAYER, folder)
    for model in (folder / "models").iterdir():
        layer = "1" if model.name == "digit-category" else "2"
        config = model / "config.toml"
        text = config.read_text()
        # Top-level keys go before the first table.
        head, sep, tables = text.partition("\n[")
        config.write_text(f'placement = {{ layer = "{layer}" }}\n' + head + sep + tables)
    return folder


def test_the_two_layer_example_answers_split_over_two_workers(cluster, tmp_path, start_config_server):
    c = cluster()
    folder = two_layer_pinned(tmp_path)
    gateway = c.gateway(config=folder / "lectern.toml")
    c.worker("layer-one", labels=["layer=1"])
    c.worker("layer-two", labels=["layer=2"])
    wait_placed(gateway, {
        "digit-category": {"layer-one"},
        "digit-round": {"layer-two"}, "digit-straight": {"layer-two"}, "digit-curved": {"layer-two"},
    })
    seen = status(gateway)
    workers = {w["name"]: w for w in seen["workers"]}
    assert workers["layer-one"]["models"] == ["digit-category"]
    assert sorted(workers["layer-two"]["models"]) == ["digit-curved", "digit-round", "digit-straight"]
    assert workers["layer-one"]["labels"] == {"layer": "1"}

    # The same answers as one process serving the example alone.
    alone = start_config_server(TWO_LAYER / "lectern.toml")
    x_test, y_test = digits_test_split()
    field = image_field(folder)
    correct = 0
    for i in range(0, len(x_test), 9):
        body = {field: b64(digit_image(x_test[i]))}
        split = gateway.post("/v1/pipelines/diagnose", json=body)
        assert split.status_code == 200, split.text
        check_diagnosis(split.json(), f"image {i}")
        assert split.json() == alone.post("/v1/pipelines/diagnose", json=body).json(), f"image {i}"
        correct += split.json()["predictions"][0]["label"] == str(int(y_test[i]))
    assert correct / len(range(0, len(x_test), 9)) >= 0.9

    # Both workers answered; V2 inference through the gateway, JSON and binary tensors.
    wait_until(lambda: all(w["answered"] > 0 for w in status(gateway)["workers"]), 5, "both workers answered")
    pixels = x_test[0].reshape(1, 64).astype(np.float32)
    v2 = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 64], "data": pixels.ravel().tolist()}],
          "outputs": [{"name": "output_probability", "parameters": {"classification": 2}}]}
    here, there = gateway.post("/v2/models/digit-category/infer", json=v2), alone.post(
        "/v2/models/digit-category/infer", json=v2)
    assert here.status_code == 200, here.text
    assert here.json() == there.json()
    import tritonclient.http as httpclient  # binary tensors both ways
    client = httpclient.InferenceServerClient(gateway.host_port)
    x = httpclient.InferInput("X", [1, 64], "FP32")
    x.set_data_from_numpy(pixels, binary_data=True)
    out = client.infer("digit-round", [x], outputs=[httpclient.InferRequestedOutput("output_probability",
                                                                                    binary_data=True)])
    ref = httpclient.InferenceServerClient(alone.host_port).infer(
        "digit-round", [x], outputs=[httpclient.InferRequestedOutput("output_probability", binary_data=True)])
    np.testing.assert_array_equal(out.as_numpy("output_probability"), ref.as_numpy("output_probability"))
    # The repository index and metadata come through the gateway as from one process.
    meta = gateway.get("/v2/models/digit-round").json()
    assert meta["inputs"] == alone.get("/v2/models/digit-round").json()["inputs"]

    # `lectern cluster status` prints the same, as tables; a server without --nats has no cluster.
    import subprocess
    from conftest import lectern_binary
    env = {k: v for k, v in os.environ.items() if not k.startswith("LECTERN_")}
    shown = subprocess.run([str(lectern_binary()), "cluster", "status", "--url", gateway.url],
                           capture_output=True, text=True, env=env, timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert "WORKER" in shown.stdout and "layer-one" in shown.stdout and "layer=2" in shown.stdout, shown.stdout
    assert "digit-category" in shown.stdout and "1/1" in shown.stdout, shown.stdout
    no_cluster = alone.get("/v1/cluster")
    assert no_cluster.status_code == 404 and no_cluster.json()["code"] == "not_found", no_cluster.text


# =========================================================================== losing a worker

class Load:
    """`threads` clients sending iris requests in a loop; every answer is recorded."""

    def __init__(self, gateway, threads: int = 4):
        self.gateway = gateway
        self.answers: list[tuple[float, int, str]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _loop(self):
        session = requests.Session()
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                r = session.post(self.gateway.url + "/v2/models/iris-logreg/infer", json=IRIS, timeout=20)
                status, retry = r.status_code, r.headers.get("Retry-After", "")
                assert status == 200 or r.json().get("error"), r.text
            except requests.RequestException as e:
                status, retry = -1, str(e)
            with self.lock:
                self.answers.append((started, status, retry))
            time.sleep(0.01)

    def since(self, t: float) -> list[tuple[float, int, str]]:
        with self.lock:
            return [a for a in self.answers if a[0] >= t]

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def test_losing_a_replica_costs_only_the_requests_in_flight_on_it(cluster, tmp_path):
    c = cluster()
    gateway = c.gateway(models=iris_models(tmp_path, "replicas = 2\n"))
    c.worker("a")
    b = c.worker("b")
    wait_placed(gateway, {"iris-logreg": {"a", "b"}})
    load = Load(gateway)
    try:
        time.sleep(1.0)
        killed = time.monotonic()
        b.kill()
        time.sleep(6.0)  # past the heartbeat timeout: b is forgotten, a replica is missing
        after = load.since(killed)
    finally:
        load.finish()
    counts = Counter(s for _, s, _ in after)
    print(f"\nanswers after kill -9 of one of two replicas: {dict(counts)}")
    failed = [a for a in after if a[1] != 200]
    # At most one request per client thread can have been in flight on b when it died.
    assert len(failed) <= 4, f"{len(failed)} failures: {failed[:10]}"
    assert all(s in (503, 504) for _, s, _ in failed), failed
    assert counts[200] > 50, counts
    assert all(a[1] == 200 for a in after if a[0] > killed + 4), "a serves alone once b is forgotten"


def test_a_pinned_model_is_unavailable_while_its_worker_is_gone_and_recovers_when_it_returns(cluster, tmp_path):
    c = cluster()
    gateway = c.gateway(models=iris_models(tmp_path, 'placement = { zone = "b" }\n'))
    c.worker("a", labels=["zone=a"])
    c.worker("b", labels=["zone=b"])
    wait_placed(gateway, {"iris-logreg": {"b"}})
    load = Load(gateway)
    try:
        time.sleep(1.0)
        killed = time.monotonic()
        c.workers[-1].kill()
        wait_until(lambda: infer_iris(gateway).status_code == 503, 10, "503 once b is gone")
        time.sleep(4.0)  # b forgotten: the model has no worker that may hold it
        gone = infer_iris(gateway)
        assert gone.status_code == 503 and gone.headers.get("Retry-After"), gone.text
        assert "zone=b" in gone.json()["error"], gone.json()
        index = gateway.post("/v2/repository/index", json={}).json()
        row = next(r for r in index if r["name"] == "iris-logreg")
        assert row["state"] != "READY" and "zone=b" in row["reason"], row
        returned = time.monotonic()
        c.worker("b", labels=["zone=b"])  # the same name again, after a crash
        wait_until(lambda: infer_iris(gateway).status_code == 200, 20, "recovery when b returns")
        recovered = time.monotonic()
        time.sleep(1.0)
        answers = load.since(killed)
    finally:
        load.finish()
    before_return = [s for t, s, _ in answers if t < returned]
    counts = Counter(s for _, s, _ in answers)
    print(f"\nanswers after kill -9 of the only worker that may hold the model: {dict(counts)}")
    assert set(before_return) <= {200, 503, 504}, Counter(before_return)
    in_flight_errors = [s for t, s, _ in answers if t < killed + 0.5 and s != 200]
    assert len(in_flight_errors) <= 4 + 4 * 0.5 / 0.01, in_flight_errors
    assert counts[503] > 10, counts
    assert all(s == 200 for t, s, _ in answers if t > recovered + 0.5), Counter(
        s for t, s, _ in answers if t > recovered + 0.5)


# =========================================================================== bad input

def test_a_second_worker_with_a_taken_name_is_refused(cluster, tmp_path):
    c = cluster()
    c.gateway(models=iris_models(tmp_path, ""))
    c.worker("twin")
    second = c.worker("twin", wait=False)
    assert second.proc.wait(timeout=20) != 0
    assert "already in the cluster" in second.stderr_text(), second.stderr_text()[-2000:]
    assert c.workers[0].proc.poll() is None, "the first keeps running"


def test_a_placement_no_worker_can_satisfy_makes_the_model_unavailable_with_why(cluster, tmp_path):
    c = cluster()
    gateway = c.gateway(models=iris_models(tmp_path, 'placement = { region = "mars" }\n'))
    c.worker("earthling", labels=["region=eu"])
    wait_until(lambda: any(w["name"] == "earthling" for w in status(gateway)["workers"]), 10, "worker seen")
    wait_until(lambda: infer_iris(gateway).status_code == 503, 10, "503")
    r = infer_iris(gateway)
    assert r.headers.get("Retry-After"), r.headers
    assert "no worker has the labels region=mars" in r.json()["error"], r.json()
    model = next(m for m in status(gateway)["models"] if m["name"] == "iris-logreg")
    assert model["workers"] == [] and model["reason"] == "no worker has the labels region=mars", model
    assert gateway.get("/v2/models/iris-logreg/ready").status_code != 200


def test_a_worker_refuses_an_artifact_that_fails_its_checksum(cluster, tmp_path):
    c = cluster()
    gateway = c.gateway(models=iris_models(tmp_path, ""))
    objects = Path(gateway.data_dir) / "objects"
    artifacts = [p for p in objects.rglob("*") if p.is_file()]
    assert artifacts, list(objects.rglob("*"))
    for p in artifacts:
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0xFF
        p.write_bytes(bytes(data))
    c.worker("careful")

    def refused():
        w = next((w for w in status(gateway)["workers"] if w["name"] == "careful"), None)
        return w and w["failing"].get("iris-logreg")
    reason = wait_until(refused, 20, "the worker reports the corrupt artifact")
    assert "corrupt" in reason and "SHA-256" in reason, reason
    r = infer_iris(gateway)
    assert r.status_code == 503, r.text
    assert "corrupt" in r.json()["error"], r.json()


async def _garbage(url: str, cluster: str):
    import nats  # type: ignore

    nc = await nats.connect(url)
    try:
        subject = f"{cluster}.infer.iris-logreg"
        for payload in (b"not json at all", b'{"inputs": 5}', b"\x00\xff" * 100):
            try:
                await nc.request(subject, payload, timeout=0.5)
                answered = True
            except Exception:  # noqa: BLE001 - a timeout: ignored, as it should be
                answered = False
            assert not answered, f"a worker answered {payload!r}"
        js = nc.jetstream()
        kv = await js.key_value(cluster)
        await kv.put("workers.bogus", b"{not a worker record")
        await kv.put("models.bogus", b"[]")
        await kv.put("placement-typo", b"?")
    finally:
        await nc.close()


def test_messages_that_lectern_did_not_send_are_ignored_and_counted(cluster, tmp_path):
    c = cluster()
    gateway = c.gateway(models=iris_models(tmp_path, ""))
    c.worker("w")
    wait_placed(gateway, {"iris-logreg": {"w"}})
    run(_garbage(c.nats, c.name))

    def counted():
        s = status(gateway)
        worker = next(w for w in s["workers"] if w["name"] == "w")
        return worker["invalid_messages"] >= 3 and s["invalid_messages"] >= 3 and s
    s = wait_until(counted, 10, "the ignored messages are counted")
    assert [w["name"] for w in s["workers"]] == ["w"], "the bogus record is no worker"
    assert infer_iris(gateway).status_code == 200, "the cluster still serves"
    # A request larger than NATS carries (max_payload: 1 MiB here) is refused with why.
    rows = 100_000
    big = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [rows, 4], "data": [0.5] * (rows * 4)}]}
    r = requests.post(gateway.url + "/v2/models/iris-logreg/infer", json=big, timeout=30)
    assert r.status_code == 413 and "max_payload" in r.json()["error"], r.text[:500]
    metrics = gateway.get("/metrics").text
    assert "lectern_cluster_invalid_messages_total 3" in metrics or "lectern_cluster_invalid_messages_total" in metrics


def test_a_worker_waits_for_an_unreachable_nats_and_joins_when_it_comes(cluster, tmp_path):
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    c = cluster(nats=url)
    worker = c.worker("patient", wait=False)
    time.sleep(3.0)
    assert worker.proc.poll() is None, f"the worker exited:\n{worker.stderr_text()[-3000:]}"
    log = worker.stderr_text()
    assert log.count("cannot reach the cluster; retrying") >= 2, log[-3000:]
    assert "retry_in" in log
    nats = NatsServer(tmp_path, port=port)
    try:
        gateway = c.gateway(models=iris_models(tmp_path, ""))
        worker.wait_started(timeout=40)
        wait_placed(gateway, {"iris-logreg": {"patient"}})
        assert infer_iris(gateway).status_code == 200
        # NATS going away and coming back: the worker keeps its models and serves again.
        nats.stop()
        time.sleep(1.0)
        assert worker.proc.poll() is None
        nats = NatsServer(tmp_path, port=port)
        wait_until(lambda: infer_iris(gateway).status_code == 200, 30, "serving again after NATS returned")
        assert "disconnected from NATS" in worker.stderr_text()
    finally:
        c.cleanup()
        c.workers.clear()
        c.gateways.clear()
        nats.stop()


# =========================================================================== two gateways, one database

def test_two_gateways_on_one_postgresql_serve_a_change_made_through_either_within_a_second(tmp_path):
    database = TestDatabase("postgres")
    objects = tmp_path / "objects"
    common = ["--objects", f"file://{objects}"]
    models = iris_models(tmp_path, "")
    servers = []
    try:
        for i in (1, 2):
            data = tmp_path / f"gw{i}"
            data.mkdir()
            servers.append(LecternServer(models if i == 1 else None, data, extra_args=common, database=database))
        one, two = servers
        wait_until(lambda: two.get("/v2/models/iris-logreg/ready").status_code == 200, 10, "gateway 2 serves iris")
        version1 = two.post("/v2/models/iris-logreg/infer", json=IRIS).json()["model_version"]

        # Gateway 1 imported iris-logreg 1 and 2 and serves the newest; push version 1's file as 3.
        pushed = one.post("/v1/models/iris-logreg/versions",
                          data=(EXAMPLE_MODELS / "iris-logreg" / "1" / "model.onnx").read_bytes(),
                          headers={"Content-Type": "application/octet-stream"})
        assert pushed.status_code == 201, pushed.text
        new_version = str(pushed.json()["version"]["version"])
        assert new_version != version1
        t0 = time.monotonic()
        wait_until(lambda: two.post("/v2/models/iris-logreg/infer", json=IRIS).json()["model_version"] == new_version,
                   5, "gateway 2 serves the pushed version", interval=0.01)
        seen_after = time.monotonic() - t0
        print(f"\na version pushed through gateway 1 was served by gateway 2 after {seen_after * 1000:.0f} ms")
        assert seen_after < 1.0, seen_after

        # A pipeline defined through gateway 2 is served by gateway 1, and removed from both.
        definition = 'steps = [ { id = "s", model = "iris-logreg", inputs = ["a", "b", "c", "d"] } ]\n'
        defined = requests.put(two.url + "/v1/pipelines/p", data=definition,
                               headers={"Content-Type": "application/toml"}, timeout=10)
        assert defined.status_code == 200, defined.text
        listed = lambda srv: {p["name"] for p in srv.get("/v1/pipelines").json()["pipelines"]}  # noqa: E731
        wait_until(lambda: "p" in listed(one), 1, "gateway 1 serves the pipeline gateway 2 defined")
        assert requests.delete(one.url + "/v1/pipelines/p", timeout=10).status_code == 204
        wait_until(lambda: "p" not in listed(two), 1, "gateway 2 drops the pipeline gateway 1 removed")

        # A model deleted through gateway 2 is gone from gateway 1.
        assert requests.delete(two.url + "/v1/models/iris-logreg", timeout=10).status_code == 204
        wait_until(lambda: one.get("/v2/models/iris-logreg").status_code == 404, 1, "gone from gateway 1")
    finally:
        for s in servers:
            s.cleanup()
        database.drop()


def test_a_gateway_places_only_what_its_store_holds_and_only_on_live_workers(cluster, tmp_path):
    c = cluster()
    first = c.gateway(models=iris_models(tmp_path, ""))
    c.worker("w1")
    wait_placed(first, {"iris-logreg": {"w1"}})
    first.kill()
    c.workers[0].kill()  # its record stays in the bucket, as after a crash
    other = tmp_path / "other"
    shutil.copytree(EXAMPLE_MODELS / "cancer-tree", other / "cancer-tree")
    second = c.gateway(models=other)
    c.worker("w2")
    wait_placed(second, {"cancer-tree": {"w2"}})
    seen = status(second)
    assert [m["name"] for m in seen["models"]] == ["cancer-tree"], "a definition its store lacks is withdrawn"
    assert [w["name"] for w in seen["workers"]] == ["w2"], "the crashed worker's record is not taken for a worker"


def test_pushing_versions_to_a_model_served_by_workers(cluster, tmp_path):
    c = cluster()
    gateway = c.gateway(models=iris_models(tmp_path, ""))
    c.worker("w")
    wait_placed(gateway, {"iris-logreg": {"w"}})
    assert infer_iris(gateway).json()["model_version"] == "2"
    headers = {"Content-Type": "application/octet-stream"}
    good = (EXAMPLE_MODELS / "iris-logreg" / "1" / "model.onnx").read_bytes()
    pushed = gateway.post("/v1/models/iris-logreg/versions", data=good, headers=headers)
    assert pushed.status_code == 201, pushed.text
    # The push answers once a worker serves the new version: no window of 503s.
    assert infer_iris(gateway).json()["model_version"] == "3"
    # A version that cannot load: the push says so, and the newest good version keeps serving.
    broken = gateway.post("/v1/models/iris-logreg/versions", data=b"not an onnx model at all", headers=headers)
    assert broken.status_code < 500, broken.text
    answer = infer_iris(gateway)
    assert answer.status_code == 200 and answer.json()["model_version"] == "3", answer.text
    view = gateway.get("/v1/models/iris-logreg").json()
    four = next(v for v in view["versions"] if v["version"] == 4)
    assert four["state"] != "ready", four
    # A pushed good version after it serves again.
    again = gateway.post("/v1/models/iris-logreg/versions", data=good, headers=headers)
    assert again.status_code == 201, again.text
    assert infer_iris(gateway).json()["model_version"] == "5"
