"""End-to-end tests of the management API (`/v1/models`, versions, config, default version,
deletion, the audit log), the import of the `--models` folder, and the durability of the
state across restarts. Run on SQLite and on PostgreSQL (LECTERN_TEST_DATABASE=postgres).

Without API keys and without an OIDC issuer the servers here are open on loopback, so every
change is made by the actor `local`; the folder import is made by `import`.
"""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import requests

from conftest import EXAMPLE_MODELS, LecternServer, TestDatabase, copy_models
from lectern_v2 import iris_x, json_input, model_file, ort_reference, parse_infer_response

IRIS_V1 = model_file(EXAMPLE_MODELS, "iris-logreg", 1)
IRIS_V2 = model_file(EXAMPLE_MODELS, "iris-logreg", 2)
GARBAGE = b"this is not an onnx model \x00\x01\x02\xff" * 8
ROWS = iris_x()[[0, 50, 100, 120, 70, 133]]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- helpers

def assert_error(resp: requests.Response, status: int, *mentions: str) -> str:
    """`resp` is `status` with a `{"error": "...", "code": "..."}` body (mentioning each of `mentions`)."""
    assert resp.status_code == status, (
        f"{resp.request.method} {resp.request.path_url}: expected {status}, got {resp.status_code}: {resp.text[:500]!r}"
    )
    try:
        body = resp.json()
    except ValueError:
        pytest.fail(f"error body is not JSON: {resp.text[:500]!r}")
    assert isinstance(body, dict) and set(body) == {"error", "code"}, f"error body is not {{'error', 'code'}}: {body!r}"
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["error"], str) and body["error"].strip(), body
    for m in mentions:
        assert m.lower() in body["error"].lower(), f"error does not mention {m!r}: {body['error']!r}"
    return body["error"]


def ok(resp: requests.Response, status: int = 200):
    assert resp.status_code == status, (
        f"{resp.request.method} {resp.request.path_url}: expected {status}, got {resp.status_code}: {resp.text[:1000]!r}"
    )
    return resp.json() if resp.content else None


class Api:
    """The management API of one server."""

    def __init__(self, srv: LecternServer):
        self.srv = srv
        self.s = requests.Session()

    def call(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        return self.s.request(method, self.srv.url + path, **kw)

    def create(self, name: str, **fields) -> requests.Response:
        return self.call("POST", "/v1/models", json={"name": name, **fields})

    def describe(self, name: str) -> dict:
        return ok(self.call("GET", f"/v1/models/{name}"))

    def upload(self, name: str, data: bytes, version: int | None = None) -> requests.Response:
        params = {"version": version} if version is not None else None
        return self.call("POST", f"/v1/models/{name}/versions", data=data, params=params)

    def set_default(self, name: str, version) -> requests.Response:
        return self.call("PUT", f"/v1/models/{name}/default", json={"version": version})

    def set_config(self, name: str, **fields) -> requests.Response:
        return self.call("PUT", f"/v1/models/{name}/config", json=fields)

    def audit(self, limit: int = 10000) -> list[dict]:
        return ok(self.call("GET", "/v1/audit", params={"limit": limit}))["entries"]

    def audit_for(self, target: str) -> list[dict]:
        """Entries naming `target`, oldest first."""
        return [e for e in reversed(self.audit()) if e["target"] == target]

    def infer(self, name: str, x: np.ndarray, version=None, **extra) -> requests.Response:
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version is not None else "") + "/infer"
        return self.call("POST", path, json={"inputs": [json_input("X", x, "FP32")], **extra})


def versions_of(view: dict) -> dict[int, dict]:
    return {v["version"]: v for v in view["versions"]}


def assert_serves(api: Api, name: str, version: int, model_path, versioned: bool = False):
    """An inference on `name` is computed by `version`, whose file is `model_path`."""
    resp = api.infer(name, ROWS, version=version if versioned else None)
    assert resp.status_code == 200, f"infer {name} (v{version}): {resp.status_code} {resp.text[:500]}"
    header, outputs = parse_infer_response(resp)
    assert str(header["model_version"]) == str(version), header
    ref = ort_reference(model_path, {"X": ROWS})
    np.testing.assert_allclose(outputs["output_probability"], ref["output_probability"], rtol=0, atol=1e-5)
    assert np.array_equal(outputs["output_label"], ref["output_label"])


def assert_version_view(v: dict, version: int, data: bytes, state: str = "READY"):
    assert v["version"] == version, v
    assert v["sha256"] == sha256(data), f"version {version}: sha256 {v['sha256']} != {sha256(data)} of the file"
    assert v["size"] == len(data), v
    assert v["state"] == state, v
    if state == "READY":
        assert v["reason"] == "", v
    else:
        assert isinstance(v["reason"], str) and v["reason"].strip(), f"no reason for {state}: {v}"
    assert isinstance(v["created_at_ms"], int) and v["created_at_ms"] > 0, v


def audit_tuples(entries: list[dict]) -> list[tuple[str, str, str]]:
    return [(e["actor"], e["action"], e["target"]) for e in entries]


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """One server for the module's flow tests (each test uses models of its own names)."""
    root = tmp_path_factory.mktemp("management")
    models = copy_models(root / "models")
    data = root / "data"
    data.mkdir()
    database = TestDatabase()
    srv = LecternServer(models, data, database=database)
    yield Api(srv)
    srv.cleanup()
    database.drop()


# =========================================================================== create, list, describe

def test_create_answers_201_with_the_model_and_list_and_describe_show_it(api):
    resp = api.create("mg-create", config={"max_batch_size": 8}, labels=["setosa", "versicolor", "virginica"])
    created = ok(resp, 201)
    assert created["name"] == "mg-create"
    assert created["default_version"] is None
    assert created["config"] == {"max_batch_size": 8}
    assert created["labels"] == ["setosa", "versicolor", "virginica"]
    assert created["versions"] == []
    assert isinstance(created["created_at_ms"], int) and created["created_at_ms"] > 0
    assert created["updated_at_ms"] >= created["created_at_ms"]

    assert api.describe("mg-create") == created
    listed = ok(api.call("GET", "/v1/models"))
    assert set(listed) == {"models"}, listed
    by_name = {m["name"]: m for m in listed["models"]}
    assert by_name["mg-create"] == created
    # the bundled models are there too (imported from --models)
    assert {p.name for p in EXAMPLE_MODELS.iterdir() if p.is_dir()} <= set(by_name)

    plain = ok(api.create("mg-create-plain"), 201)
    assert plain["config"] == {} and plain["labels"] is None and plain["versions"] == []

    assert audit_tuples(api.audit_for("mg-create")) == [("local", "model.create", "mg-create")]


def test_a_registered_model_without_versions_is_known_but_not_ready(api):
    """docs/contract.md: 404 for an unknown model, 400 for a model "known but not ready". A
    model created over the API is known (GET /v1/models/{m} answers 200) before any upload, as
    it is after its last version is deleted and after a restart."""
    ok(api.create("mg-empty"), 201)
    assert api.describe("mg-empty")["versions"] == []
    for method, path in (("POST", "/v2/models/mg-empty/infer"), ("GET", "/v2/models/mg-empty/ready")):
        resp = api.call(method, path, json={"inputs": [json_input("X", ROWS, "FP32")]} if method == "POST" else None)
        assert_error(resp, 400)


def test_creating_a_model_twice_is_409_and_changes_nothing(api):
    first = ok(api.create("mg-dup", labels=["a"]), 201)
    assert_error(api.create("mg-dup"), 409, "mg-dup")
    assert_error(api.create("mg-dup", config={"max_batch_size": 2}, labels=["b"]), 409)
    assert api.describe("mg-dup") == first
    assert audit_tuples(api.audit_for("mg-dup")) == [("local", "model.create", "mg-dup")]


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/v1/models/mg-nope", None),
    ("DELETE", "/v1/models/mg-nope", None),
    ("PUT", "/v1/models/mg-nope/config", {"config": {}}),
    ("PUT", "/v1/models/mg-nope/default", {"version": None}),
    ("PUT", "/v1/models/mg-nope/default", {"version": 1}),
    ("POST", "/v1/models/mg-nope/versions", IRIS_V1),
    ("DELETE", "/v1/models/mg-nope/versions/1", None),
])
def test_an_unknown_model_is_404(api, method, path, body):
    kw = {"data": body.read_bytes()} if hasattr(body, "read_bytes") else ({"json": body} if body is not None else {})
    assert_error(api.call(method, path, **kw), 404, "mg-nope")
    assert api.audit_for("mg-nope") == []
    assert_error(api.call("GET", "/v1/models/mg-nope"), 404)


def test_an_unknown_version_is_404(api):
    ok(api.create("mg-nover"), 201)
    ok(api.upload("mg-nover", IRIS_V1.read_bytes()), 201)
    assert_error(api.call("DELETE", "/v1/models/mg-nover/versions/7"), 404, "7")
    assert_error(api.call("DELETE", "/v1/models/mg-nover/versions/not-a-number"), 404)
    assert_error(api.set_default("mg-nover", 7), 404, "7")
    assert [v["version"] for v in api.describe("mg-nover")["versions"]] == [1]


BAD_CREATE_BODIES = {
    "not json": b"{name: nope",
    "a list": b"[]",
    "a string": b'"mg-bad"',
    "empty object": b"{}",
    "name is a number": b'{"name": 3}',
    "unknown field": b'{"name": "mg-bad", "colour": "red"}',
    "name with a space": b'{"name": "mg bad"}',
    "name with a slash": b'{"name": "mg/bad"}',
    "empty name": b'{"name": ""}',
    "name starting with a dot": b'{"name": ".mg-bad"}',
    "name too long": json.dumps({"name": "m" * 129}).encode(),
    "config not an object": b'{"name": "mg-bad", "config": [1, 2]}',
    "config with an unknown key": b'{"name": "mg-bad", "config": {"no_such_key": 1}}',
    "config with a wrong type": b'{"name": "mg-bad", "config": {"max_batch_size": "eight"}}',
    "labels inside config": b'{"name": "mg-bad", "config": {"labels": "labels.txt"}}',
    "labels not a list": b'{"name": "mg-bad", "labels": "a,b"}',
    "labels not strings": b'{"name": "mg-bad", "labels": [1, 2]}',
    "label with a line break": b'{"name": "mg-bad", "labels": ["a\\nb"]}',
}


@pytest.mark.parametrize("case", list(BAD_CREATE_BODIES))
def test_a_malformed_create_body_is_400_and_creates_nothing(api, case):
    before = len(api.audit())
    resp = api.call("POST", "/v1/models", data=BAD_CREATE_BODIES[case], headers={"Content-Type": "application/json"})
    assert_error(resp, 400)
    names = {m["name"] for m in ok(api.call("GET", "/v1/models"))["models"]}
    assert not {n for n in names if n.startswith(("mg-bad", "mg bad", ".mg-bad", "mmmm"))}, names
    assert len(api.audit()) == before, "a refused request wrote the audit log"


def test_malformed_config_default_and_upload_requests_are_400_and_change_nothing(api):
    ok(api.create("mg-malformed", config={"max_batch_size": 8}, labels=["a", "b", "c"]), 201)
    ok(api.upload("mg-malformed", IRIS_V1.read_bytes()), 201)
    before_view = api.describe("mg-malformed")
    before_audit = len(api.audit())
    bad = [
        ("PUT", "/v1/models/mg-malformed/config", b"not json"),
        ("PUT", "/v1/models/mg-malformed/config", b'{"config": "max_batch_size = 2"}'),
        ("PUT", "/v1/models/mg-malformed/config", b'{"config": {"no_such_key": 1}}'),
        ("PUT", "/v1/models/mg-malformed/config", b'{"config": {"labels": "x.txt"}}'),
        ("PUT", "/v1/models/mg-malformed/config", b'{"config": {}, "labels": "abc"}'),
        ("PUT", "/v1/models/mg-malformed/config", b'{"config": {}, "extra": true}'),
        ("PUT", "/v1/models/mg-malformed/default", b"nope"),
        ("PUT", "/v1/models/mg-malformed/default", b'{"version": "one"}'),
        ("PUT", "/v1/models/mg-malformed/default", b'{"version": -1}'),
        ("PUT", "/v1/models/mg-malformed/default", b'{"version": 1.5}'),
        ("PUT", "/v1/models/mg-malformed/default", b'{"version": 1, "extra": 1}'),
        ("POST", "/v1/models/mg-malformed/versions", b""),
        ("POST", "/v1/models/mg-malformed/versions?version=0", IRIS_V2.read_bytes()),
        ("POST", "/v1/models/mg-malformed/versions?version=abc", IRIS_V2.read_bytes()),
        ("POST", "/v1/models/mg-malformed/versions?version=-2", IRIS_V2.read_bytes()),
        ("POST", "/v1/models/mg-malformed/versions?colour=red", IRIS_V2.read_bytes()),
    ]
    for method, path, body in bad:
        resp = api.call(method, path, data=body, headers={"Content-Type": "application/json"})
        assert_error(resp, 400)
    assert api.describe("mg-malformed") == before_view
    assert len(api.audit()) == before_audit, "a refused request wrote the audit log"
    assert_serves(api, "mg-malformed", 1, IRIS_V1)


# =========================================================================== versions

def test_uploads_are_numbered_checksummed_served_and_audited(api):
    v1, v2 = IRIS_V1.read_bytes(), IRIS_V2.read_bytes()
    ok(api.create("mg-versions"), 201)

    body = ok(api.upload("mg-versions", v1), 201)
    assert set(body) == {"version", "model"}, body
    assert_version_view(body["version"], 1, v1)
    assert body["version"]["serving"] is True
    assert body["model"]["name"] == "mg-versions"
    assert versions_of(body["model"])[1] == body["version"]
    assert_serves(api, "mg-versions", 1, IRIS_V1)

    body = ok(api.upload("mg-versions", v2), 201)
    assert_version_view(body["version"], 2, v2)
    assert body["version"]["serving"] is True
    # the default policy (latest = 1) serves the newest only
    assert versions_of(body["model"])[1]["serving"] is False
    assert_serves(api, "mg-versions", 2, IRIS_V2)

    body = ok(api.upload("mg-versions", v1, version=10), 201)
    assert_version_view(body["version"], 10, v1)
    assert_serves(api, "mg-versions", 10, IRIS_V1)
    assert_serves(api, "mg-versions", 10, IRIS_V1, versioned=True)

    body = ok(api.upload("mg-versions", v2), 201)
    assert body["version"]["version"] == 11, "the next number follows the highest version"
    assert_error(api.upload("mg-versions", v1, version=2), 409, "2")
    assert_error(api.upload("mg-versions", v1, version=11), 409)

    view = api.describe("mg-versions")
    assert sorted(versions_of(view)) == [1, 2, 10, 11]
    for number, data in ((1, v1), (2, v2), (10, v1), (11, v2)):
        v = versions_of(view)[number]
        assert v["sha256"] == sha256(data) and v["size"] == len(data), v
    assert_serves(api, "mg-versions", 11, IRIS_V2)

    meta = ok(api.call("GET", "/v2/models/mg-versions"))
    assert meta["versions"] == ["11"], meta

    creates = [e for e in api.audit_for("mg-versions") if e["action"] == "version.create"]
    assert [(e["actor"], e["target"]) for e in creates] == [("local", "mg-versions")] * 4
    for e, (number, data) in zip(creates, ((1, v1), (2, v2), (10, v1), (11, v2))):
        assert f"version {number}" in e["detail"] and sha256(data) in e["detail"], e


def test_a_corrupt_upload_is_stored_unavailable_with_a_reason_and_the_old_version_keeps_serving(api):
    ok(api.create("mg-corrupt"), 201)
    ok(api.upload("mg-corrupt", IRIS_V2.read_bytes()), 201)
    body = ok(api.upload("mg-corrupt", GARBAGE), 201)
    assert_version_view(body["version"], 2, GARBAGE, state="UNAVAILABLE")
    assert body["version"]["serving"] is False
    assert versions_of(body["model"])[1]["serving"] is True
    assert_serves(api, "mg-corrupt", 1, IRIS_V2)
    # the corrupt version is never served (unknown to the registry, or known and not ready)
    resp = api.infer("mg-corrupt", ROWS, version=2)
    assert_error(resp, resp.status_code)
    assert resp.status_code in (400, 404), resp.text
    # a later good upload is served over the corrupt one
    body = ok(api.upload("mg-corrupt", IRIS_V1.read_bytes()), 201)
    assert body["version"]["version"] == 3
    assert_serves(api, "mg-corrupt", 3, IRIS_V1)


# =========================================================================== default version

def test_the_default_version_serves_unversioned_requests_and_null_goes_back_to_the_newest(api):
    ok(api.create("mg-default"), 201)
    ok(api.upload("mg-default", IRIS_V1.read_bytes()), 201)
    ok(api.upload("mg-default", IRIS_V2.read_bytes()), 201)
    assert_serves(api, "mg-default", 2, IRIS_V2)

    view = ok(api.set_default("mg-default", 1))
    assert view["name"] == "mg-default" and view["default_version"] == 1
    assert versions_of(view)[1]["serving"] is True and versions_of(view)[2]["serving"] is True
    assert_serves(api, "mg-default", 1, IRIS_V1)
    assert_serves(api, "mg-default", 2, IRIS_V2, versioned=True)
    assert api.describe("mg-default")["default_version"] == 1

    # a newer upload does not override an explicit default
    ok(api.upload("mg-default", IRIS_V2.read_bytes()), 201)
    assert_serves(api, "mg-default", 1, IRIS_V1)

    view = ok(api.set_default("mg-default", None))
    assert view["default_version"] is None
    assert_serves(api, "mg-default", 3, IRIS_V2)

    assert_error(api.set_default("mg-default", 42), 404)
    assert api.describe("mg-default")["default_version"] is None

    defaults = [e for e in api.audit_for("mg-default") if e["action"] == "model.default"]
    assert [(e["actor"], e["detail"]) for e in defaults] == [("local", "1"), ("local", "newest")], defaults


# =========================================================================== config and labels

def test_config_and_labels_are_replaced_applied_and_audited(api):
    ok(api.create("mg-config", labels=["a", "b", "c"]), 201)
    ok(api.upload("mg-config", IRIS_V1.read_bytes()), 201)

    def top_label(expected_labels):
        resp = api.infer("mg-config", ROWS[:1], outputs=[
            {"name": "output_probability", "parameters": {"classification": 1}}])
        assert resp.status_code == 200, resp.text
        text = resp.json()["outputs"][0]["data"][0]
        assert text.split(":")[2] in expected_labels, text
        return text.split(":")[2]

    assert top_label(["a", "b", "c"]) == "a"

    view = ok(api.set_config("mg-config", config={"max_batch_size": 8, "queue_capacity": 16},
                             labels=["setosa", "versicolor", "virginica"]))
    assert view["config"] == {"max_batch_size": 8, "queue_capacity": 16}
    assert view["labels"] == ["setosa", "versicolor", "virginica"]
    assert api.describe("mg-config")["config"] == {"max_batch_size": 8, "queue_capacity": 16}
    assert top_label(["setosa", "versicolor", "virginica"]) == "setosa", "the new labels apply at once"
    # max_batch_size 8 applies: a request of 9 rows is refused
    resp = api.infer("mg-config", iris_x()[:9])
    assert_error(resp, 400, "max_batch_size")
    assert_serves(api, "mg-config", 1, IRIS_V1)

    # the config is replaced as a whole; no labels: the model has none
    view = ok(api.set_config("mg-config", config={"latest": 2}))
    assert view["config"] == {"latest": 2} and view["labels"] is None
    ok(api.upload("mg-config", IRIS_V2.read_bytes()), 201)
    assert ok(api.call("GET", "/v2/models/mg-config"))["versions"] == ["1", "2"]

    configs = [e for e in api.audit_for("mg-config") if e["action"] == "model.config"]
    assert [e["actor"] for e in configs] == ["local", "local"]


# =========================================================================== deletion

def test_deleting_versions_and_models(api):
    ok(api.create("mg-delete"), 201)
    for data in (IRIS_V1, IRIS_V2, IRIS_V1):
        ok(api.upload("mg-delete", data.read_bytes()), 201)
    ok(api.set_default("mg-delete", 3))

    # deleting the default version clears the default and serves the newest remaining
    view = ok(api.call("DELETE", "/v1/models/mg-delete/versions/3"))
    assert sorted(versions_of(view)) == [1, 2] and view["default_version"] is None
    assert_serves(api, "mg-delete", 2, IRIS_V2)
    assert_error(api.call("DELETE", "/v1/models/mg-delete/versions/3"), 404)

    view = ok(api.call("DELETE", "/v1/models/mg-delete/versions/2"))
    assert sorted(versions_of(view)) == [1]
    assert_serves(api, "mg-delete", 1, IRIS_V1)

    # the last version: the model is still known but serves nothing
    view = ok(api.call("DELETE", "/v1/models/mg-delete/versions/1"))
    assert view["versions"] == []
    resp = api.infer("mg-delete", ROWS)
    assert resp.status_code == 400, f"a model with no version is not ready: {resp.status_code} {resp.text}"

    number = ok(api.upload("mg-delete", IRIS_V2.read_bytes()), 201)["version"]["version"]
    assert_serves(api, "mg-delete", number, IRIS_V2)

    resp = api.call("DELETE", "/v1/models/mg-delete")
    assert resp.status_code == 204, resp.text
    assert resp.content == b""
    assert_error(api.call("GET", "/v1/models/mg-delete"), 404)
    assert_error(api.infer("mg-delete", ROWS), 404)
    assert_error(api.call("GET", "/v2/models/mg-delete"), 404)
    index = ok(api.call("POST", "/v2/repository/index"))
    assert "mg-delete" not in {e["name"] for e in index}
    assert "mg-delete" not in {m["name"] for m in ok(api.call("GET", "/v1/models"))["models"]}
    assert_error(api.call("DELETE", "/v1/models/mg-delete"), 404)

    # the name is free again
    assert ok(api.create("mg-delete"), 201)["versions"] == []

    actions = [(e["actor"], e["action"], e["detail"]) for e in api.audit_for("mg-delete")
               if e["action"] in ("version.delete", "model.delete", "model.create")]
    assert actions == [
        ("local", "model.create", ""),
        ("local", "version.delete", "version 3"),
        ("local", "version.delete", "version 2"),
        ("local", "version.delete", "version 1"),
        ("local", "model.delete", ""),
        ("local", "model.create", ""),
    ], actions


def test_without_a_number_an_upload_is_numbered_the_newest_plus_one(api):
    """docs/contract.md: `?version=N` picks the number (409 if taken), else it is the newest + 1
    (of the versions the model has now: a deleted newest number is given again)."""
    ok(api.create("mg-numbers"), 201)
    for data in (IRIS_V1, IRIS_V2, IRIS_V1):
        ok(api.upload("mg-numbers", data.read_bytes()), 201)
    ok(api.call("DELETE", "/v1/models/mg-numbers/versions/2"))
    assert ok(api.upload("mg-numbers", IRIS_V2.read_bytes()), 201)["version"]["version"] == 4
    assert ok(api.upload("mg-numbers", IRIS_V2.read_bytes(), version=2), 201)["version"]["version"] == 2
    ok(api.call("DELETE", "/v1/models/mg-numbers/versions/4"))
    body = ok(api.upload("mg-numbers", IRIS_V1.read_bytes()), 201)
    assert body["version"]["version"] == 4, body["version"]
    assert body["version"]["sha256"] == sha256(IRIS_V1.read_bytes())
    assert [v["version"] for v in body["model"]["versions"]] == [1, 2, 3, 4]


def test_concurrent_changes_from_several_clients_all_succeed(api):
    """Four clients change four models at the same time (create, upload, config, default):
    every change is a valid request on a model of its own, so every one must succeed; none
    may be refused because another client was writing at the same moment."""
    import threading
    refused, done = [], []

    def client(i: int):
        name = f"mg-concurrent-{i}"
        s = requests.Session()
        steps = [("POST", "/v1/models", {"json": {"name": name}}, 201)]
        for k in range(4):
            steps += [
                ("POST", f"/v1/models/{name}/versions", {"data": (IRIS_V1 if k % 2 else IRIS_V2).read_bytes()}, 201),
                ("PUT", f"/v1/models/{name}/config", {"json": {"config": {"queue_capacity": 100 + k}}}, 200),
                ("PUT", f"/v1/models/{name}/default", {"json": {"version": 1}}, 200),
            ]
        for method, path, kw, status in steps:
            r = s.request(method, api.srv.url + path, timeout=60, **kw)
            (done if r.status_code == status else refused).append((method, path, r.status_code, r.text[:200]))
            if r.status_code != status:
                return  # the next steps need this one

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not refused, (f"{len(refused)} of 4 clients had a change refused ({len(done)} changes had succeeded "
                         f"of 52): {refused}")
    for i in range(4):
        view = api.describe(f"mg-concurrent-{i}")
        assert [v["version"] for v in view["versions"]] == [1, 2, 3, 4]
        assert view["config"] == {"queue_capacity": 103} and view["default_version"] == 1


def test_every_change_has_one_audit_entry_in_order_newest_first(api):
    before = api.audit()
    ok(api.create("mg-audit"), 201)
    ok(api.upload("mg-audit", IRIS_V1.read_bytes()), 201)
    ok(api.set_config("mg-audit", config={"max_batch_size": 2}))
    ok(api.set_default("mg-audit", 1))
    ok(api.call("DELETE", "/v1/models/mg-audit/versions/1"))
    assert api.call("DELETE", "/v1/models/mg-audit").status_code == 204
    after = api.audit()
    new = after[: len(after) - len(before)]
    assert after[len(new):] == before, "older entries changed"
    assert [(e["actor"], e["action"], e["target"]) for e in reversed(new)] == [
        ("local", "model.create", "mg-audit"),
        ("local", "version.create", "mg-audit"),
        ("local", "model.config", "mg-audit"),
        ("local", "model.default", "mg-audit"),
        ("local", "version.delete", "mg-audit"),
        ("local", "model.delete", "mg-audit"),
    ], new
    ids = [e["id"] for e in after]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    # The order is the order of the writes (ids). Times are each writer's clock: writes that
    # overlapped (earlier tests upload concurrently) may be a few ms out of order, so only this
    # test's own, sequential changes must have non-increasing times.
    times = [e["at_ms"] for e in new]
    assert times == sorted(times, reverse=True), times
    assert len(api.audit(limit=2)) == 2
    assert_error(api.call("GET", "/v1/audit", params={"limit": "many"}), 400)


def test_openapi_json_describes_the_management_routes(api):
    resp = api.call("GET", "/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    doc = resp.json()
    assert str(doc.get("openapi", "")).startswith("3."), doc
    paths = doc.get("paths", {})
    wanted = {
        "/v1/models": {"get", "post"},
        "/v1/models/{model}": {"get", "delete"},
        "/v1/models/{model}/config": {"put"},
        "/v1/models/{model}/default": {"put"},
        "/v1/models/{model}/versions": {"post"},
        "/v1/models/{model}/versions/{version}": {"delete"},
        "/v1/keys": {"get", "post"},
        "/v1/keys/{id}": {"delete"},
        "/v1/audit": {"get"},
    }
    missing = {p: sorted(m - set(paths.get(p, {}))) for p, m in wanted.items() if m - set(paths.get(p, {}))}
    assert not missing, f"/openapi.json does not describe these routes and methods: {missing}"


# =========================================================================== import and restarts

def bundled_files() -> dict[str, dict[int, bytes]]:
    out = {}
    for folder in sorted(p for p in EXAMPLE_MODELS.iterdir() if p.is_dir()):
        out[folder.name] = {int(v.name): (v / "model.onnx").read_bytes()
                            for v in folder.iterdir() if v.is_dir() and v.name.isdigit()}
    return out


def stable_view(models: list[dict]) -> dict:
    """What must not change across restarts: everything but load states."""
    return {m["name"]: {
        "config": m["config"], "labels": m["labels"], "default_version": m["default_version"],
        "created_at_ms": m["created_at_ms"], "updated_at_ms": m["updated_at_ms"],
        "versions": [(v["version"], v["sha256"], v["size"], v["created_at_ms"]) for v in m["versions"]],
    } for m in models}


def test_the_models_folder_is_imported_once_with_its_versions_and_checksums(server_state):
    state = server_state()
    srv = state.start()
    api = Api(srv)
    files = bundled_files()
    models = ok(api.call("GET", "/v1/models"))["models"]
    assert sorted(m["name"] for m in models) == sorted(files)
    for m in models:
        want = files[m["name"]]
        assert sorted(versions_of(m)) == sorted(want), m
        for number, data in want.items():
            v = versions_of(m)[number]
            assert v["sha256"] == sha256(data) and v["size"] == len(data), (m["name"], v)
        newest = max(want)
        assert versions_of(m)[newest]["state"] == "READY" and versions_of(m)[newest]["serving"], m
    iris = api.describe("iris-logreg")
    assert iris["labels"] == ["setosa", "versicolor", "virginica"]
    assert [v["serving"] for v in iris["versions"]] == [False, True], "latest = 1 serves version 2 only"

    imports = api.audit()
    assert imports and {e["actor"] for e in imports} == {"import"}, audit_tuples(imports)
    creates = [e["target"] for e in imports if e["action"] == "model.create"]
    assert sorted(creates) == sorted(files), "one model.create per folder"
    version_creates = sorted(e["target"] for e in imports if e["action"] == "version.create")
    assert version_creates == sorted(name for name, vs in files.items() for _ in vs)

    before = stable_view(models)
    srv.kill()
    srv2 = state.start()
    api2 = Api(srv2)
    after_models = ok(api2.call("GET", "/v1/models"))["models"]
    assert stable_view(after_models) == before, "a second start changed the imported models"
    assert api2.audit() == imports, "a second start over the same folder wrote the audit log again"
    assert_serves(api2, "iris-logreg", 2, IRIS_V2)


def test_a_changed_model_folder_is_brought_in_line_at_the_next_start(server_state):
    state = server_state()
    srv = state.start()
    srv.kill()
    # a new version on disk, a new model folder
    (state.models_dir / "iris-logreg" / "3").mkdir()
    (state.models_dir / "iris-logreg" / "3" / "model.onnx").write_bytes(IRIS_V1.read_bytes())
    shutil.copytree(state.models_dir / "iris-forest", state.models_dir / "iris-forest-2")
    srv = state.start()
    api = Api(srv)
    iris = api.describe("iris-logreg")
    assert [(v["version"], v["sha256"]) for v in iris["versions"]] == [
        (1, sha256(IRIS_V1.read_bytes())), (2, sha256(IRIS_V2.read_bytes())), (3, sha256(IRIS_V1.read_bytes()))]
    assert_serves(api, "iris-logreg", 3, IRIS_V1)
    assert api.describe("iris-forest-2")["versions"][0]["version"] == 1
    new = [(e["actor"], e["action"], e["target"]) for e in api.audit()
           if e["target"] in ("iris-logreg", "iris-forest-2")][:3]  # the newest
    assert ("import", "version.create", "iris-logreg") in new and ("import", "model.create", "iris-forest-2") in new


def test_state_made_over_the_api_survives_a_restart(server_state):
    state = server_state()
    srv = state.start()
    api = Api(srv)
    ok(api.create("mg-durable", config={"max_batch_size": 8}, labels=["x", "y", "z"]), 201)
    ok(api.upload("mg-durable", IRIS_V1.read_bytes()), 201)
    ok(api.upload("mg-durable", IRIS_V2.read_bytes()), 201)
    ok(api.upload("mg-durable", GARBAGE), 201)
    ok(api.set_default("mg-durable", 1))
    ok(api.create("mg-durable-empty"), 201)
    ok(api.create("mg-durable-gone"), 201)
    assert api.call("DELETE", "/v1/models/mg-durable-gone").status_code == 204
    before = stable_view(ok(api.call("GET", "/v1/models"))["models"])
    before_states = {v["version"]: (v["state"], v["reason"]) for v in api.describe("mg-durable")["versions"]}
    audit = api.audit()
    srv.kill()

    srv2 = state.start()
    api2 = Api(srv2)
    assert stable_view(ok(api2.call("GET", "/v1/models"))["models"]) == before
    assert "mg-durable-gone" not in before
    after = api2.describe("mg-durable")
    assert {v["version"]: (v["state"], v["reason"]) for v in after["versions"]} == before_states
    assert before_states[3][0] == "UNAVAILABLE"
    assert_serves(api2, "mg-durable", 1, IRIS_V1)
    assert_serves(api2, "mg-durable", 2, IRIS_V2, versioned=True)
    resp = api2.infer("mg-durable", ROWS, version=3)
    assert resp.status_code in (400, 404), resp.text
    assert api2.audit() == audit, "the audit log changed across the restart"
    # also without --models: the store alone serves them
    srv2.kill()
    srv3 = state.start(models=False)
    api3 = Api(srv3)
    assert_serves(api3, "mg-durable", 1, IRIS_V1)
    assert_serves(api3, "iris-logreg", 2, IRIS_V2)


def test_api_changes_to_an_imported_model_survive_a_restart_and_folder_changes_win(server_state):
    """DESIGN.md: "Nothing the user registered is lost on a restart or a crash." An upload, a
    default version and a config change made over the API to a model that came from the
    `--models` folder survive a restart on the same folder; what changed in the folder since the
    last import wins; versions uploaded over the API are never removed by an import (a folder
    version with the number of an uploaded one is not imported)."""
    state = server_state()
    srv = state.start()
    api = Api(srv)
    ok(api.upload("iris-logreg", IRIS_V1.read_bytes()), 201)   # version 3, not on disk
    ok(api.set_default("iris-logreg", 3))
    ok(api.set_config("iris-forest", config={"max_batch_size": 4}, labels=["a", "b", "c"]))
    iris_before = api.describe("iris-logreg")
    forest_before = api.describe("iris-forest")
    marker = max(e["id"] for e in api.audit())
    srv.kill()

    # 1. the same folder: nothing is undone, nothing is imported again
    srv = state.start()
    api = Api(srv)
    problems = []
    iris, forest = api.describe("iris-logreg"), api.describe("iris-forest")
    if [(v["version"], v["sha256"]) for v in iris["versions"]] != [(v["version"], v["sha256"]) for v in iris_before["versions"]]:
        problems.append(f"iris-logreg versions {[v['version'] for v in iris_before['versions']]} became "
                        f"{[v['version'] for v in iris['versions']]}")
    if iris["default_version"] != 3:
        problems.append(f"iris-logreg default_version 3 became {iris['default_version']}")
    if (forest["config"], forest["labels"]) != ({"max_batch_size": 4}, ["a", "b", "c"]):
        problems.append(f"iris-forest config/labels {forest_before['config']}/{forest_before['labels']} became "
                        f"{forest['config']}/{forest['labels']}")
    since = [(e["actor"], e["action"], e["target"], e["detail"]) for e in api.audit() if e["id"] > marker]
    assert not problems and not since, (
        "a restart on the same --models undid acknowledged API changes: " + "; ".join(problems) +
        f"; audit entries of the second start: {since}")
    assert_serves(api, "iris-logreg", 3, IRIS_V1)
    srv.kill()

    # 2. the folder changes: its changes win, the uploaded version stays
    (state.models_dir / "iris-forest" / "config.toml").write_text('labels = "labels.txt"\nmax_batch_size = 16\n')
    shutil.rmtree(state.models_dir / "iris-logreg" / "1")
    (state.models_dir / "iris-logreg" / "3").mkdir()
    (state.models_dir / "iris-logreg" / "3" / "model.onnx").write_bytes(IRIS_V2.read_bytes())
    srv = state.start()
    api = Api(srv)
    forest = api.describe("iris-forest")
    assert forest["config"] == {"labels": "labels.txt", "max_batch_size": 16}, forest["config"]
    assert forest["labels"] == ["setosa", "versicolor", "virginica"]
    iris = api.describe("iris-logreg")
    assert [(v["version"], v["sha256"]) for v in iris["versions"]] == [
        (2, sha256(IRIS_V2.read_bytes())), (3, sha256(IRIS_V1.read_bytes()))], (
        "version 1 left the folder; version 3 is the uploaded one, not the folder's file of the same number")
    assert iris["default_version"] == 3
    assert_serves(api, "iris-logreg", 3, IRIS_V1)
