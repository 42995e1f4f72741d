"""A PostgreSQL that goes down while Lectern runs, and comes back.

The test runs a PostgreSQL of its own (initdb + pg_ctl in a temporary folder, on a free port;
as root through `runuser -u postgres`), so it needs no shared database and runs the same in
the SQLite and the PostgreSQL pass. While the database is down: every request that needs it
answers 503 with `Retry-After` and code `database_unavailable` (an API-key check included),
fast; readiness is false; inference of loaded models keeps working. When it is back: ready
again within 5 s, without a restart, with every acknowledged change present.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from conftest import EXAMPLE_MODELS, LecternServer, copy_models
from lectern_checks import free_port, wait_until

IRIS_V1 = (EXAMPLE_MODELS / "iris-logreg" / "1" / "model.onnx").read_bytes()
INFER = {
    "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}],
    "outputs": [{"name": "output_label"}],
}
PIPELINE = 'steps = [ { id = "m", model = "outage-m", inputs = ["a", "b", "c", "d"] } ]\n'
REDEFINED = 'steps = [ { id = "other", model = "iris-logreg", inputs = ["a", "b", "c", "d"] } ]\n'
PIPELINE_INPUT = {"a": 5.1, "b": 3.5, "c": 1.4, "d": 0.2}
# A request that needs the database answers within this (no waiting out a pool timeout).
FAST_S = 5.0
# The server serves again within this once the database is back.
RECOVERY_S = 5.0


def postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([shutil.which(name)] if shutil.which(name) else [])
    if not found:
        pytest.fail(f"this test needs PostgreSQL's {name} (under /usr/lib/postgresql/*/bin or on PATH)",
                    pytrace=False)
    return found[-1]


class OwnPostgres:
    """A throw-away PostgreSQL cluster: trust auth, TCP on 127.0.0.1:port, its socket in its folder."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="lectern-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self.run(postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                 "--no-sync")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *args: str):
        command = (["runuser", "-u", "postgres", "--"] if self.as_root else []) + list(args)
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {proc.stdout}\n{proc.stderr}\n{log}")

    def start(self):
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run(postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60",
                 "start")

    def stop(self):
        self.run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def destroy(self):
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - already stopped
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def own_postgres():
    pg = OwnPostgres()
    pg.start()
    yield pg
    pg.destroy()


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def timed(method: str, url: str, **kw) -> requests.Response:
    started = time.monotonic()
    r = requests.request(method, url, timeout=30, **kw)
    elapsed = time.monotonic() - started
    assert elapsed < FAST_S, f"{method} {url} took {elapsed:.1f} s"
    return r


def assert_database_unavailable(r: requests.Response, what: str):
    assert r.status_code == 503, f"{what}: {r.status_code} {r.text}"
    assert r.headers.get("Retry-After") == "1", f"{what}: {dict(r.headers)}"
    body = r.json()
    assert body["code"] == "database_unavailable", f"{what}: {body}"
    assert body["error"], what


def test_database_outage_answers_503_keeps_inference_and_recovers(own_postgres, tmp_path):
    models = copy_models(tmp_path / "models")
    data = tmp_path / "data"
    data.mkdir()
    srv = LecternServer(models, data, extra_args=["--database", own_postgres.url, "--open-inference", "true"])
    try:
        url = srv.url
        assert requests.get(url + "/v2/health/ready", timeout=10).status_code == 200

        # Acknowledged changes: keys, a model with an uploaded version, a pipeline.
        r = requests.post(url + "/v1/keys", json={"name": "admin", "role": "admin"}, timeout=30)
        assert r.status_code == 201, r.text
        admin = bearer(r.json()["key"])
        r = requests.post(url + "/v1/keys", json={"name": "spare", "role": "trainer"}, headers=admin, timeout=30)
        assert r.status_code == 201, r.text
        spare = bearer(r.json()["key"])  # never used before the outage: not in any cache
        r = requests.post(url + "/v1/models", json={"name": "outage-m"}, headers=admin, timeout=30)
        assert r.status_code == 201, r.text
        r = requests.post(url + "/v1/models/outage-m/versions", data=IRIS_V1, headers=admin, timeout=60)
        assert r.status_code == 201, r.text
        r = requests.put(url + "/v1/pipelines/outage-p", data=PIPELINE, headers=admin, timeout=30)
        assert r.status_code == 200, r.text
        for model in ("iris-logreg", "outage-m"):
            r = requests.post(f"{url}/v2/models/{model}/infer", json=INFER, timeout=30)
            assert r.status_code == 200, r.text
        assert requests.post(url + "/v1/pipelines/outage-p", json=PIPELINE_INPUT, timeout=30).status_code == 200

        own_postgres.stop()

        # Readiness turns false (it checks the database at most once a second).
        def not_ready():
            r = timed("GET", url + "/v2/health/ready")
            return r.status_code == 503
        wait_until(not_ready, "readiness did not turn false", timeout=3.0, interval=0.1)
        r = timed("GET", url + "/v2/health/ready")
        assert_database_unavailable(r, "readiness")
        assert r.json()["ready"] is False

        # An API-key check that needs the database.
        assert_database_unavailable(timed("GET", url + "/v1/models", headers=spare), "key check")
        # Requests whose handlers need it.
        assert_database_unavailable(timed("GET", url + "/v1/models", headers=admin), "list models")
        assert_database_unavailable(timed("POST", url + "/v1/models", json={"name": "during"}, headers=admin),
                                    "create a model")
        assert_database_unavailable(timed("GET", url + "/v1/keys", headers=admin), "list keys")
        assert_database_unavailable(timed("POST", url + "/v1/keys", json={"name": "x", "role": "client"},
                                          headers=admin), "create a key")
        assert_database_unavailable(timed("GET", url + "/v1/audit", headers=admin), "audit log")
        assert_database_unavailable(timed("POST", url + "/v2/repository/models/iris-logreg/load", headers=admin),
                                    "repository load")
        assert_database_unavailable(timed("PUT", url + "/v1/pipelines/during", data=PIPELINE, headers=admin),
                                    "define a pipeline")
        # A redefinition the store cannot take changes nothing: the old definition keeps serving.
        assert_database_unavailable(timed("PUT", url + "/v1/pipelines/outage-p", data=REDEFINED, headers=admin),
                                    "redefine a pipeline")
        r = timed("POST", url + "/v1/pipelines/outage-p", json=PIPELINE_INPUT)
        assert r.status_code == 200, r.text
        served = requests.get(url + "/v1/pipelines", timeout=30).json()["pipelines"]
        assert [s["id"] for p in served if p["name"] == "outage-p" for s in p["steps"]] == ["m"], served
        # Inference of loaded models does not need the database.
        for model in ("iris-logreg", "outage-m"):
            r = timed("POST", f"{url}/v2/models/{model}/infer", json=INFER)
            assert r.status_code == 200, r.text
        assert timed("GET", url + "/v2/health/live").status_code == 200
        assert timed("GET", url + "/v2/models/outage-m").status_code == 200

        own_postgres.start()
        back = time.monotonic()

        def ready():
            return requests.get(url + "/v2/health/ready", timeout=10).status_code == 200
        wait_until(ready, "the server was not ready again", timeout=RECOVERY_S, interval=0.1)
        at = time.monotonic()
        print(f"ready {at - back:.2f} s after the database came back")

        # Serving again, the same process, with everything acknowledged before the outage.
        def serving():
            return requests.get(url + "/v1/models", headers=spare, timeout=10).status_code == 200
        wait_until(serving, "management did not serve again",
                   timeout=max(0.5, RECOVERY_S - (time.monotonic() - back)), interval=0.1)
        assert srv.is_running()
        listed = requests.get(url + "/v1/models", headers=admin, timeout=30).json()["models"]
        by_name = {m["name"]: m for m in listed}
        assert "during" not in by_name
        assert [v["version"] for v in by_name["outage-m"]["versions"]] == [1]
        names = {k["name"] for k in requests.get(url + "/v1/keys", headers=admin, timeout=30).json()["keys"]}
        assert names == {"admin", "spare"}
        listed = requests.get(url + "/v1/pipelines", timeout=30).json()["pipelines"]
        assert {p["name"] for p in listed} == {"outage-p"}, listed
        actions = [e["action"] for e in requests.get(url + "/v1/audit", headers=admin, timeout=30).json()["entries"]]
        assert {"key.create", "model.create", "version.create"} <= set(actions), actions
        r = requests.post(url + "/v1/models", json={"name": "after"}, headers=admin, timeout=30)
        assert r.status_code == 201, r.text
        r = requests.post(url + "/v2/models/outage-m/infer", json=INFER, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        srv.cleanup()
