"""`lectern backup` and `lectern restore` end to end (docs/contract.md, "Backups", issue 12).

- A backup taken while a client keeps writing through the API (model versions, keys, datasets
  that replace each other, deletions) is one moment of the database: restored into a fresh data
  folder (SQLite) or a fresh PostgreSQL database, a server on it has every change acknowledged
  before the backup started, nothing that was never acknowledged, each version's artifact with
  its checksum (the models infer, a dataset trains, a collection is searched), and an audit log
  that is a prefix of the original's. The manifest's sizes and SHA-256s hold. Run for both
  engines whatever LECTERN_TEST_DATABASE says; the other tests use LECTERN_TEST_DATABASE's.
- A tampered backup (a byte flipped in an artifact or in the database file, a truncated file, a
  deleted file, an edited manifest) is refused with exit 1 naming the file, and the target is
  left exactly as it was; so is a target that holds data without --force; --force replaces it.
- A backup location that cannot be written, or that is not empty, is a clean exit 1.
- Backups go to, and come from, an S3 prefix too (moto's server).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import EXAMPLE_MODELS, LecternServer, TestDatabase, database_engine, lectern_binary
from lectern_checks import describe, ok
from lectern_training import IRIS_FEATURES, iris_csv, iris_x32

IRIS_V1 = (EXAMPLE_MODELS / "iris-logreg" / "1" / "model.onnx").read_bytes()
IRIS_V2 = (EXAMPLE_MODELS / "iris-logreg" / "2" / "model.onnx").read_bytes()
IRIS_LABELS = ["setosa", "versicolor", "virginica"]
PIPELINE = b'''steps = [
  { id = "flower", model = "iris-api", inputs = ["a", "b", "c", "d"] },
]
shape = { flower = "flower.label" }
'''
WORDS = [
    {"id": "cat", "text": "cat", "metadata": {"level": "easy"}, "vector": [1.0, 0.0, 0.0, 0.0]},
    {"id": "kitten", "text": "kitten", "metadata": {"level": "hard"}, "vector": [0.9, 0.1, 0.0, 0.0]},
    {"id": "car", "metadata": {}, "vector": [0.0, 0.0, 1.0, 0.2]},
]
TREE_REQUEST = {"dataset": "iris", "target": "species", "model": "iris-tree", "algorithm": "decision_tree",
                "params": {"max_depth": 3}, "seed": 3}
CLI_TIMEOUT_S = 180


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def variant(onnx: bytes, tag: str) -> bytes:
    """The model with an unknown field (number 100) appended to its ModelProto: the same model
    to every ONNX reader (unknown fields are skipped), other bytes and another SHA-256."""
    payload = tag.encode()
    assert len(payload) < 128
    return onnx + b"\xa2\x06" + bytes([len(payload)]) + payload


def dataset_csv(n: int, rows: int = 20) -> bytes:
    """A dataset whose content depends on n."""
    lines = "\n".join(f"{i},{(i * 7 + n) % 11},{'yes' if (i + n) % 2 else 'no'}" for i in range(rows))
    return f"a,b,label\n{n}.5,0,no\n{lines}\n".encode()


# =========================================================================== the CLI

def run_lectern(*args, env=None, timeout=CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("LECTERN_")}
    child_env.update(env or {})
    return subprocess.run([str(lectern_binary()), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=child_env, stdin=subprocess.DEVNULL)


def assert_cli_ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


def assert_cli_error(proc: subprocess.CompletedProcess, *mentions: str) -> str:
    """Exit 1 with `error: ...` on stderr (no panic, no backtrace) mentioning each of `mentions`."""
    assert proc.returncode == 1, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    err = proc.stderr
    assert err.strip().splitlines()[-1].startswith("error: "), err
    assert all(line.startswith(("error: ", "warning: ")) for line in err.strip().splitlines()), err
    assert "panicked" not in err and "RUST_BACKTRACE" not in err, err
    for m in mentions:
        assert m.lower() in err.lower(), f"{m!r} not in {err!r}"
    assert proc.stdout == "", proc.stdout
    return err


# =========================================================================== deployments

class Deployment:
    """A data folder and a database (SQLite in the folder, or a fresh PostgreSQL database) on
    which servers are started and which the CLI backs up or restores into."""

    def __init__(self, root: Path, engine: str):
        self.data = root
        self.data.mkdir(parents=True, exist_ok=True)
        self.engine = engine
        self.database = TestDatabase(engine)
        self.servers: list[LecternServer] = []

    def storage_args(self) -> list[str]:
        return ["--data", str(self.data), *self.database.args()]

    def start(self) -> LecternServer:
        srv = LecternServer(None, self.data, database=self.database)
        self.servers.append(srv)
        return srv

    def stop(self):
        for srv in self.servers:
            srv.stop()

    def cleanup(self):
        for srv in self.servers:
            srv.cleanup()
        self.database.drop()

    def postgres_tables(self) -> list[str]:
        import psycopg  # type: ignore
        with psycopg.connect(self.database.url, autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall()
        return sorted(r[0] for r in rows)

    def fingerprint(self):
        """Everything in the data folder (paths, SHA-256) and, for PostgreSQL, the database's
        tables: to show that a refused restore left the target as it was. SQLite's `-shm` file
        is left out: it is the WAL's index in shared memory, which a reader that opens the
        database after a crash rebuilds, not the database's content."""
        files = {}
        for path in sorted(self.data.rglob("*")):
            if path.name.endswith("-shm"):
                continue
            if path.is_file():
                files[str(path.relative_to(self.data))] = sha256(path.read_bytes())
            else:
                files[str(path.relative_to(self.data))] = "dir"
        tables = self.postgres_tables() if self.engine == "postgres" else None
        return files, tables


@pytest.fixture
def deployments(tmp_path):
    made: list[Deployment] = []
    counter = [0]

    def make(engine: str | None = None) -> Deployment:
        counter[0] += 1
        d = Deployment(tmp_path / f"deployment{counter[0]}", engine or database_engine())
        made.append(d)
        return d

    yield make
    for d in made:
        d.cleanup()


class Api:
    """The management routes of one server, with a key."""

    def __init__(self, srv: LecternServer, key: str | None = None):
        self.srv = srv
        self.s = requests.Session()
        if key:
            self.s.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        resp = self.s.request(method, self.srv.url + path, **kw)
        assert resp.status_code < 500, f"a server error: {describe(resp)}"
        return resp

    def admin_key(self) -> str:
        body = ok(self.call("POST", "/v1/keys", json={"name": "admin", "role": "admin"}), 201)
        self.s.headers["Authorization"] = f"Bearer {body['key']}"
        return body["key"]

    def models(self) -> dict[str, dict]:
        return {m["name"]: m for m in ok(self.call("GET", "/v1/models"))["models"]}

    def keys(self) -> dict[str, dict]:
        return {k["id"]: k for k in ok(self.call("GET", "/v1/keys"))["keys"]}

    def datasets(self) -> dict[str, dict]:
        return {d["name"]: d for d in ok(self.call("GET", "/v1/datasets"))["datasets"]}

    def pipelines(self) -> list[str]:
        return [p["name"] for p in ok(self.call("GET", "/v1/pipelines"))["pipelines"]]

    def audit(self) -> list[dict]:
        return ok(self.call("GET", "/v1/audit", params={"limit": 10000}))["entries"]

    def infer(self, model: str, version: int | None = None) -> dict:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        x = iris_x32()[[0, 60, 120]]
        body = {"inputs": [{"name": "X", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
        return ok(self.call("POST", path, json=body))

    def train(self, request: dict) -> dict:
        job = ok(self.call("POST", "/v1/training-jobs", json=request), 202)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = ok(self.call("GET", f"/v1/training-jobs/{job['id']}"))
            if job["state"] in ("succeeded", "failed", "cancelled"):
                assert job["state"] == "succeeded", job
                return job
            time.sleep(0.1)
        pytest.fail(f"training job did not end: {job}")


def seed(api: Api) -> dict:
    """Models (two versions, a default, labels), a dataset, a trained model, a pipeline and a
    client key. Returns what was made."""
    ok(api.call("POST", "/v1/models", json={"name": "iris-api", "labels": IRIS_LABELS}), 201)
    for body in (IRIS_V1, IRIS_V2):
        ok(api.call("POST", "/v1/models/iris-api/versions", data=body,
                    headers={"Content-Type": "application/octet-stream"}), 201)
    ok(api.call("PUT", "/v1/models/iris-api/default", json={"version": 1}))
    ok(api.call("POST", "/v1/datasets/iris", data=iris_csv(), headers={"Content-Type": "text/csv"}), 201)
    job = api.train(TREE_REQUEST)
    ok(api.call("PUT", "/v1/pipelines/flowers", data=PIPELINE))
    ok(api.call("PUT", "/v1/collections/words", json={"dimension": 4, "items": WORDS}))
    client = ok(api.call("POST", "/v1/keys", json={"name": "client", "role": "client"}), 201)
    return {"job": job, "client_key": client["key"]}


# =========================================================================== the write load

class Writer(threading.Thread):
    """Writes through the API until stopped, one request at a time, logging each change with
    the time it was sent and the time it was acknowledged."""

    def __init__(self, api: Api):
        super().__init__(daemon=True)
        self.api = api
        self.stop_event = threading.Event()
        self.log: list[dict] = []
        self.error: BaseException | None = None
        self.created_keys: list[str] = []

    def change(self, kind: str, method: str, path: str, status: int, **kw) -> dict:
        sent = time.monotonic()
        resp = self.api.call(method, path, **kw)
        acked = time.monotonic()
        body = ok(resp, status)
        return {"kind": kind, "sent": sent, "acked": acked, "body": body}

    def run(self):
        try:
            i = 0
            while not self.stop_event.is_set():
                i += 1
                model = f"load-{i % 2}"
                e = self.change("version", "POST", f"/v1/models/{model}/versions", 201,
                                data=variant(IRIS_V1, f"load {i}"),
                                headers={"Content-Type": "application/octet-stream"})
                e.update(model=model, version=e["body"]["version"]["version"], sha=e["body"]["version"]["sha256"])
                self.log.append(e)
                e = self.change("key", "POST", "/v1/keys", 201, json={"name": f"load-{i}", "role": "client"})
                e.update(id=e["body"]["id"])
                self.log.append(e)
                self.created_keys.append(e["id"])
                name = f"load-data-{i % 3}"
                sent = time.monotonic()
                # Every third one is large (about 1 MB), so that copies take a while.
                body = dataset_csv(i, 60_000 if i % 3 == 1 else 20)
                resp = self.api.call("POST", f"/v1/datasets/{name}", data=body,
                                     headers={"Content-Type": "text/csv"})
                acked = time.monotonic()
                assert resp.status_code in (200, 201), describe(resp)
                self.log.append({"kind": "dataset", "sent": sent, "acked": acked, "name": name,
                                 "sha": resp.json()["sha256"]})
                if i % 4 == 0:
                    versions = [v for v in self.api.models()["load-0"]["versions"]]
                    if len(versions) > 1:
                        v = versions[0]["version"]
                        e = self.change("version-delete", "DELETE", f"/v1/models/load-0/versions/{v}", 200)
                        e.update(model="load-0", version=v)
                        self.log.append(e)
                if i % 5 == 0:
                    key = self.created_keys[len(self.created_keys) // 2]
                    e = self.change("key-revoke", "DELETE", f"/v1/keys/{key}", 204)
                    e.update(id=key)
                    self.log.append(e)
                    self.created_keys.remove(key)
                if i % 6 == 0:
                    e = self.change("dataset-delete", "DELETE", "/v1/datasets/load-data-0", 204)
                    e.update(name="load-data-0")
                    self.log.append(e)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def finish(self):
        self.stop_event.set()
        self.join(timeout=60)
        assert not self.is_alive(), "the writer did not stop"
        if self.error is not None:
            raise self.error


def when(entry: dict, start: float, end: float) -> str:
    """`before` the backup (acknowledged before it started), `after` (sent after it ended), or
    `during`."""
    if entry["acked"] < start:
        return "before"
    if entry["sent"] > end:
        return "after"
    return "during"


# =========================================================================== checks

def check_manifest(backup: Path, engine: str) -> dict:
    """The manifest's format, and every file's size and SHA-256."""
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["format"] == 1
    assert manifest["engine"] == engine
    assert isinstance(manifest["schema_version"], int) and manifest["schema_version"] >= 4
    assert isinstance(manifest["lectern"], str) and manifest["lectern"]
    assert abs(manifest["created_at_ms"] / 1000 - time.time()) < 600
    paths = [f["path"] for f in manifest["files"]]
    database = "database.sqlite" if engine == "sqlite" else "database.jsonl"
    assert database in paths
    assert all(p == database or p.startswith("objects/") for p in paths), paths
    on_disk = sorted(str(p.relative_to(backup)) for p in backup.rglob("*") if p.is_file())
    assert on_disk == sorted(paths + ["manifest.json"]), "the backup holds exactly the listed files"
    for f in manifest["files"]:
        data = (backup / f["path"]).read_bytes()
        assert (len(data), sha256(data)) == (f["size"], f["sha256"]), f["path"]
    return manifest


def check_restored(api: Api, log: list[dict], start: float, end: float, seeded: dict):
    """What the restored server holds against what the writer was told, and the seed."""
    models = api.models()
    keys = api.keys()
    datasets = api.datasets()

    # The seed: every model, version, key, dataset, job and pipeline; the models infer.
    iris = models["iris-api"]
    assert [v["version"] for v in iris["versions"]] == [1, 2]
    assert [v["sha256"] for v in iris["versions"]] == [sha256(IRIS_V1), sha256(IRIS_V2)]
    assert iris["default_version"] == 1 and iris["labels"] == IRIS_LABELS
    answer = api.infer("iris-api")
    assert answer["model_version"] == "1", answer
    assert "iris-tree" in models and models["iris-tree"]["versions"][0]["state"] == "READY", models["iris-tree"]
    api.infer("iris-tree")
    job = ok(api.call("GET", f"/v1/training-jobs/{seeded['job']['id']}"))
    assert job["state"] == "succeeded" and job["metrics"] == seeded["job"]["metrics"]
    assert api.call("GET", f"/v1/training-jobs/{job['id']}/pictures/tree.svg").status_code == 200
    assert "flowers" in api.pipelines()
    flower = ok(api.call("POST", "/v1/pipelines/flowers", json=dict(zip("abcd", iris_x32()[0].tolist()))))
    assert flower["flower"] == "setosa", flower
    assert datasets["iris"]["sha256"] == sha256(iris_csv())
    collection = ok(api.call("GET", "/v1/collections/words"))
    assert (collection["dimension"], collection["count"]) == (4, 3), collection
    found = ok(api.call("POST", "/v1/collections/words/search", json={"vector": [1, 0, 0, 0], "k": 2}))["results"]
    assert [r["id"] for r in found] == ["cat", "kitten"] and found[0]["metadata"] == {"level": "easy"}, found
    assert abs(found[0]["score"] - 1.0) < 1e-6, found
    client = Api(api.srv, seeded["client_key"])
    assert client.call("GET", "/v2/models/iris-api").status_code == 200, "the client key works"

    # Versions: present when created before the backup and not deleted before it ended.
    created = {(e["model"], e["version"]): e for e in log if e["kind"] == "version"}
    deleted = {(e["model"], e["version"]): e for e in log if e["kind"] == "version-delete"}
    restored_versions = {(name, v["version"]): v for name, m in models.items() if name.startswith("load-")
                         for v in m["versions"]}
    for key, e in created.items():
        made, gone = when(e, start, end), deleted.get(key) and when(deleted[key], start, end)
        if made == "before" and gone in (None, "after"):
            assert key in restored_versions, f"version {key} acknowledged before the backup is missing"
            assert restored_versions[key]["sha256"] == e["sha"]
        if made == "after" or gone == "before":
            assert key not in restored_versions, f"version {key} should not be in the backup"
    for key in restored_versions:
        assert key in created, f"version {key} was never acknowledged"

    # Keys: created before the backup are there; revocations before it are revoked.
    revoked = {e["id"]: e for e in log if e["kind"] == "key-revoke"}
    for e in (e for e in log if e["kind"] == "key"):
        made = when(e, start, end)
        if made == "before":
            assert e["id"] in keys, f"key {e['id']} acknowledged before the backup is missing"
        if made == "after":
            assert e["id"] not in keys
        if e["id"] in keys and e["id"] in revoked:
            r = when(revoked[e["id"]], start, end)
            if r == "before":
                assert keys[e["id"]]["revoked_at_ms"] is not None
            if r == "after":
                assert keys[e["id"]]["revoked_at_ms"] is None

    # Datasets: the content of the last upload acknowledged before the backup, or of one that
    # was in flight during it; a deletion in between may have removed it.
    for name in {e["name"] for e in log if e["kind"] in ("dataset", "dataset-delete")}:
        events = [e for e in log if e.get("name") == name]
        before = [e for e in events if when(e, start, end) == "before"]
        during = [e for e in events if when(e, start, end) == "during"]
        allowed = set()
        if before and before[-1]["kind"] == "dataset":
            allowed.add(before[-1]["sha"])
        if not before or before[-1]["kind"] == "dataset-delete":
            allowed.add(None)
        for e in during:
            allowed.add(e["sha"] if e["kind"] == "dataset" else None)
        got = datasets.get(name, {}).get("sha256")
        assert got in allowed, f"dataset {name}: {got} not in {allowed}"

    # Every restored artifact is there with its checksum, and loads.
    for (name, version), v in restored_versions.items():
        resp = api.call("GET", f"/v1/models/{name}/versions/{version}/artifact")
        assert resp.status_code == 200 and sha256(resp.content) == v["sha256"], describe(resp)
    for name in ("load-0", "load-1"):
        if name in models and models[name]["versions"]:
            api.infer(name)


def check_audit_prefix(restored: list[dict], original: list[dict]):
    """The restored audit log is the original's first entries, unchanged: the snapshot is one
    moment of the database."""
    original_by_id = {e["id"]: e for e in original}
    top = max(e["id"] for e in restored)
    assert sorted(e["id"] for e in restored) == sorted(i for i in original_by_id if i <= top)
    for e in restored:
        assert e == original_by_id[e["id"]]


# =========================================================================== tests

@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_a_backup_under_write_load_restores_every_acknowledged_change(deployments, tmp_path, engine):
    source = deployments(engine)
    srv = source.start()
    api = Api(srv)
    admin = api.admin_key()
    seeded = seed(api)
    for name in ("load-0", "load-1"):
        ok(api.call("POST", "/v1/models", json={"name": name, "labels": IRIS_LABELS}), 201)

    writer = Writer(Api(srv, admin))
    writer.start()
    try:
        deadline = time.monotonic() + 30
        while len(writer.log) < 30 and time.monotonic() < deadline and writer.is_alive():
            time.sleep(0.05)
        assert len(writer.log) >= 30, f"the writer is too slow or failed: {writer.error!r}"
        # Backups until one overlapped acknowledged writes (each takes a fraction of a second;
        # the writer never pauses, so the first nearly always does).
        for attempt in range(5):
            backup = tmp_path / f"backup{attempt}"
            start = time.monotonic()
            proc = run_lectern("backup", "--to", backup, *source.storage_args())
            end = time.monotonic()
            out = assert_cli_ok(proc)
            time.sleep(0.3)
            during = [e for e in writer.log if e["sent"] < end and e["acked"] > start]
            if during:
                break
    finally:
        writer.finish()
    print(f"\n{out.strip()}\n{len(writer.log)} changes, {len(during)} while the backup ran "
          f"({end - start:.2f} s); stderr: {proc.stderr.strip()!r}")
    assert out.startswith(f"backed up the {engine} database") and str(backup) in out, out
    assert during, "the writer wrote while a backup ran"
    manifest = check_manifest(backup, engine)
    original_audit = api.audit()

    # Restored into a fresh deployment of the same engine.
    target = deployments(engine)
    proc = run_lectern("restore", "--from", backup, *target.storage_args())
    out = assert_cli_ok(proc)
    assert out.startswith(f"restored the {engine} database (schema {manifest['schema_version']}"), out
    restored = target.start()
    rapi = Api(restored, admin)
    check_restored(rapi, writer.log, start, end, seeded)
    check_audit_prefix(rapi.audit(), original_audit)

    # The restored deployment takes new changes (no identifier collides with restored ones).
    before = max(e["id"] for e in rapi.audit())
    body = ok(rapi.call("POST", "/v1/models/iris-api/versions", data=variant(IRIS_V2, "after"),
                        headers={"Content-Type": "application/octet-stream"}), 201)
    assert body["version"]["version"] == 3
    ok(rapi.call("POST", "/v1/keys", json={"name": "after", "role": "client"}), 201)
    ok(rapi.call("POST", "/v1/datasets/after", data=dataset_csv(99), headers={"Content-Type": "text/csv"}), 201)
    job = rapi.train({**TREE_REQUEST, "model": "iris-tree-again"})
    assert job["version"] == 1
    assert min(e["id"] for e in rapi.audit()[:4]) > before

    # And the backup itself was not changed by any of this.
    assert check_manifest(backup, engine) == manifest


def make_backup(deployments, tmp_path, name="backup", engine=None) -> tuple[Deployment, Path, str]:
    """A small deployment (seeded, server stopped) and a backup of it."""
    source = deployments(engine)
    srv = source.start()
    api = Api(srv)
    admin = api.admin_key()
    seed(api)
    source.stop()
    backup = tmp_path / name
    assert_cli_ok(run_lectern("backup", "--to", backup, *source.storage_args()))
    return source, backup, admin


def test_a_tampered_backup_is_refused_and_the_target_is_untouched(deployments, tmp_path):
    _, backup, _ = make_backup(deployments, tmp_path)
    manifest = json.loads((backup / "manifest.json").read_text())
    database = next(f["path"] for f in manifest["files"] if f["path"].startswith("database."))
    artifact = next(f["path"] for f in manifest["files"] if f["path"].startswith("objects/models/"))
    dataset = next(f["path"] for f in manifest["files"] if f["path"].startswith("objects/datasets/"))

    def flip(path: Path, at: int):
        data = bytearray(path.read_bytes())
        data[at] ^= 0x01
        path.write_bytes(bytes(data))

    def edit(change):
        def apply(root: Path):
            m = json.loads((root / "manifest.json").read_text())
            change(m)
            (root / "manifest.json").write_text(json.dumps(m))
        return apply

    def drop_entry(path):
        return edit(lambda m: m.update(files=[f for f in m["files"] if f["path"] != path]))

    def set_field(path, field, value):
        return edit(lambda m: next(f for f in m["files"] if f["path"] == path).update({field: value}))

    cases = {
        "a byte flipped in an artifact": (lambda r: flip(r / artifact, 100), [artifact, "SHA-256"]),
        "a byte flipped in the database": (lambda r: flip(r / database, 50), [database]),
        "a truncated artifact": (lambda r: (r / artifact).write_bytes((r / artifact).read_bytes()[:-10]),
                                 [artifact, "bytes"]),
        "a truncated database": (lambda r: (r / database).write_bytes((r / database).read_bytes()[:1000]),
                                 [database]),
        "a deleted dataset file": (lambda r: (r / dataset).unlink(), [dataset, "missing"]),
        "a deleted manifest": (lambda r: (r / "manifest.json").unlink(), ["manifest.json"]),
        "a manifest that is cut off": (lambda r: (r / "manifest.json").write_text(
            (r / "manifest.json").read_text()[:-30]), ["manifest.json"]),
        "a manifest with another checksum": (set_field(artifact, "sha256", "0" * 64), [artifact]),
        "a manifest with another size": (set_field(dataset, "size", 1), [dataset]),
        "a manifest without an artifact": (drop_entry(artifact), [artifact, "not in the backup"]),
        "a manifest of another schema version": (edit(lambda m: m.update(schema_version=1)), ["schema version"]),
        "a manifest of the other engine": (edit(lambda m: m.update(engine="postgres" if database.endswith("sqlite")
                                                                    else "sqlite")), []),
        "a manifest of a newer format": (edit(lambda m: m.update(format=2)), ["format"]),
        "a manifest naming a file outside": (edit(lambda m: m["files"].append(
            {"path": "objects/../../etc/passwd", "size": 1, "sha256": "0" * 64})), ["../"]),
    }
    for what, (tamper, mentions) in cases.items():
        copy = tmp_path / f"tampered-{len(what)}-{abs(hash(what))}"
        shutil.copytree(backup, copy)
        tamper(copy)
        target = deployments()
        before = target.fingerprint()
        proc = run_lectern("restore", "--from", copy, *target.storage_args())
        assert_cli_error(proc, *mentions)
        assert target.fingerprint() == before, f"{what}: the target was changed"
        if target.engine == "sqlite":
            assert not (target.data / "lectern.db").exists(), what
        else:
            assert target.postgres_tables() == [], what
        shutil.rmtree(copy)

    # The untouched backup restores.
    target = deployments()
    assert_cli_ok(run_lectern("restore", "--from", backup, *target.storage_args()))


def test_a_restore_that_fails_after_writing_objects_leaves_nothing_behind(deployments, tmp_path):
    """The database part fails after the objects went in: they are removed again, and the
    database is as it was (one transaction)."""
    # PostgreSQL: a row that cannot be loaded (a duplicate key), in a backup that verifies.
    _, backup, _ = make_backup(deployments, tmp_path, "pg", engine="postgres")
    jsonl = backup / "database.jsonl"
    lines = jsonl.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith('{"table":"models"'))
    jsonl.write_text("".join(lines[:at + 1] + lines[at:]))
    manifest = json.loads((backup / "manifest.json").read_text())
    entry = next(f for f in manifest["files"] if f["path"] == "database.jsonl")
    entry.update(size=jsonl.stat().st_size, sha256=sha256(jsonl.read_bytes()))
    (backup / "manifest.json").write_text(json.dumps(manifest))
    target = deployments("postgres")
    before = target.fingerprint()
    assert_cli_error(run_lectern("restore", "--from", backup, *target.storage_args()), "models", "duplicate")
    assert target.fingerprint() == before and target.postgres_tables() == []

    # SQLite: a target file the backup API cannot write into (WAL with another page size).
    _, backup, _ = make_backup(deployments, tmp_path, "sqlite", engine="sqlite")
    target = deployments("sqlite")
    with sqlite3.connect(target.data / "lectern.db") as conn:
        conn.execute("PRAGMA page_size = 8192")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE unrelated (x)")
    conn.close()
    before = target.fingerprint()
    assert_cli_error(run_lectern("restore", "--from", backup, *target.storage_args()), "lectern.db")
    assert target.fingerprint() == before
    assert not (target.data / "objects").exists()


def test_a_target_holding_data_is_refused_without_force_and_replaced_with_it(deployments, tmp_path):
    source, backup, admin = make_backup(deployments, tmp_path)

    # Back into the deployment it came from, whose server runs: refused, nothing changes.
    srv = source.start()
    api = Api(srv, admin)
    ok(api.call("POST", "/v1/models", json={"name": "made-after"}), 201)
    before = api.models(), api.keys(), api.datasets(), api.pipelines()
    err = assert_cli_error(run_lectern("restore", "--from", backup, *source.storage_args()), "not empty", "--force")
    assert "models" in err and "api_keys" in err, err
    assert (api.models(), api.keys(), api.datasets(), api.pipelines()) == before
    source.stop()

    # Another deployment with data of its own: refused, then replaced with --force.
    other = deployments()
    srv = other.start()
    oapi = Api(srv)
    other_admin = oapi.admin_key()
    ok(oapi.call("POST", "/v1/models", json={"name": "theirs"}), 201)
    ok(oapi.call("POST", "/v1/models/theirs/versions", data=variant(IRIS_V1, "theirs"),
                 headers={"Content-Type": "application/octet-stream"}), 201)
    other.stop()
    fingerprint = other.fingerprint()
    assert_cli_error(run_lectern("restore", "--from", backup, *other.storage_args()), "not empty")
    assert other.fingerprint() == fingerprint
    out = assert_cli_ok(run_lectern("restore", "--from", backup, "--force", *other.storage_args()))
    assert out.startswith("restored"), out
    srv = other.start()
    rapi = Api(srv, admin)
    models = rapi.models()
    assert "theirs" not in models and "iris-api" in models and "made-after" not in models
    assert Api(srv, other_admin).call("GET", "/v1/models").status_code == 401, "the replaced keys are gone"
    rapi.infer("iris-api")
    rapi.infer("iris-tree")

    # A restore into the store the backup came from keeps the objects that are there already.
    source_again = deployments()
    source_again.data.rmdir()
    shutil.copytree(source.data, source_again.data)
    if source_again.engine == "sqlite":
        (source_again.data / "lectern.db").unlink()
        for extra in source_again.data.glob("lectern.db-*"):
            extra.unlink()
    out = assert_cli_ok(run_lectern("restore", "--from", backup, *source_again.storage_args()))
    assert "already there" in out, out


def test_a_backup_location_that_cannot_be_written_is_a_clean_error(deployments, tmp_path):
    source = deployments()
    srv = source.start()
    Api(srv).admin_key()
    source.stop()

    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for where in (a_file / "backup", a_file, Path("/proc/lectern-backup-test")):
        assert_cli_error(run_lectern("backup", "--to", where, *source.storage_args()), str(where))
    assert a_file.read_text() == "not a folder"

    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("x")
    assert_cli_error(run_lectern("backup", "--to", full, *source.storage_args()), "not empty")
    assert sorted(p.name for p in full.iterdir()) == ["something"]

    # A backup of a data folder without a database.
    empty = tmp_path / "no-data"
    empty.mkdir()
    assert_cli_error(run_lectern("backup", "--to", tmp_path / "b2", "--data", empty), "no SQLite database")
    assert not (tmp_path / "b2").exists() and not (empty / "lectern.db").exists()

    # Restores from nothing, or into another engine.
    target = deployments()
    assert_cli_error(run_lectern("restore", "--from", tmp_path / "nothing", *target.storage_args()), "no backup")
    good = tmp_path / "good"
    assert_cli_ok(run_lectern("backup", "--to", good, *source.storage_args()))
    other_engine = "postgres" if source.engine == "sqlite" else "sqlite"
    other = deployments(other_engine)
    assert_cli_error(run_lectern("restore", "--from", good, *other.storage_args()), "cannot be restored into")


def test_a_backup_of_a_store_that_lost_or_damaged_an_object_fails_and_leaves_nothing(deployments, tmp_path):
    source = deployments()
    srv = source.start()
    api = Api(srv)
    api.admin_key()
    ok(api.call("POST", "/v1/models", json={"name": "m"}), 201)
    for body in (IRIS_V1, IRIS_V2):
        ok(api.call("POST", "/v1/models/m/versions", data=body, headers={"Content-Type": "application/octet-stream"}),
           201)
    source.stop()
    v1 = next((source.data / "objects").rglob(f"{sha256(IRIS_V1)}.onnx"))
    v2 = next((source.data / "objects").rglob(f"{sha256(IRIS_V2)}.onnx"))

    # An artifact whose bytes changed in the store: refused, naming it.
    v2.write_bytes(IRIS_V2[:-1] + bytes([IRIS_V2[-1] ^ 1]))
    where = tmp_path / "b1"
    assert_cli_error(run_lectern("backup", "--to", where, *source.storage_args()), v2.name, "SHA-256")
    assert not where.exists(), "a failed backup leaves nothing"

    # An artifact gone from the store: after the snapshots it retries, refused, naming it.
    v2.write_bytes(IRIS_V2)
    v1.unlink()
    empty = tmp_path / "b2"
    empty.mkdir()
    err = assert_cli_error(run_lectern("backup", "--to", empty, *source.storage_args()), v1.name,
                           "not in the object store")
    assert list(empty.iterdir()) == [], "a failed backup leaves its (empty) folder empty"
    assert err.count("taking a new snapshot") == 4, err


def test_backups_go_to_and_come_from_an_s3_prefix(deployments, tmp_path, monkeypatch):
    s3_objects = pytest.importorskip("test_s3_objects")
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    s3 = s3_objects.S3()
    try:
        source, _, admin = make_backup(deployments, tmp_path)
        bucket = s3.new_bucket()
        where = f"s3://{bucket}/backups/one"
        env = s3.server_env()
        out = assert_cli_ok(run_lectern("backup", "--to", where, *source.storage_args(), env=env))
        assert where in out
        keys = s3.keys(bucket)
        assert "backups/one/manifest.json" in keys
        manifest = json.loads(s3.read(bucket, "backups/one/manifest.json"))
        for f in manifest["files"]:
            assert sha256(s3.read(bucket, f"backups/one/{f['path']}")) == f["sha256"]
        # Not twice into the same prefix.
        assert_cli_error(run_lectern("backup", "--to", where, *source.storage_args(), env=env), "not empty")

        target = deployments()
        assert_cli_ok(run_lectern("restore", "--from", where, *target.storage_args(), env=env))
        srv = target.start()
        api = Api(srv, admin)
        assert sorted(api.models()) == ["iris-api", "iris-tree"]
        api.infer("iris-api")

        # An altered object in the bucket is found before anything is restored.
        artifact = next(f["path"] for f in manifest["files"] if f["path"].startswith("objects/models/"))
        data = bytearray(s3.read(bucket, f"backups/one/{artifact}"))
        data[10] ^= 0xFF
        s3.write(bucket, f"backups/one/{artifact}", bytes(data))
        fresh = deployments()
        before = fresh.fingerprint()
        assert_cli_error(run_lectern("restore", "--from", where, *fresh.storage_args(), env=env), artifact)
        assert fresh.fingerprint() == before
    finally:
        s3.stop()
