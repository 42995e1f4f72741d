"""Model artifacts in an S3-compatible bucket: `lectern serve --objects s3://BUCKET/PREFIX`
(docs/contract.md, "Storage"), against moto's S3 server on a loopback port in this process.

The server gets the usual `AWS_*` variables that object_store's `AmazonS3Builder::from_env()`
reads: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
`AWS_ENDPOINT` (a plain-http one needs `AWS_ALLOW_HTTP=true`) and
`AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false` (path-style URLs: `http://HOST:PORT/BUCKET/KEY`).
The test process's other `AWS_*` variables are dropped so that a developer's own credentials
or profile never reach the server or the bucket.

Checked: the `--models` folder is imported into the bucket under the prefix and served from
it; an upload streams into the bucket (a multipart upload above the 8 MiB part size, with no
staging object left behind) and serves; an artifact overwritten in the bucket is refused at the
next start (its version UNAVAILABLE, the reason naming the SHA-256) while the rest serves;
deleting a version deletes its object; an upload over the limit leaves neither an object nor an
open multipart upload. Run on SQLite and on PostgreSQL (LECTERN_TEST_DATABASE).
"""
from __future__ import annotations

import hashlib
import logging
import os
import uuid

import numpy as np
import pytest
import requests

from conftest import EXAMPLE_MODELS
from lectern_checks import assert_error, ok
from lectern_v2 import iris_x, json_input, model_file, ort_reference, parse_infer_response

try:
    import boto3
    from botocore.config import Config as BotoConfig
    from moto.server import ThreadedMotoServer
except ImportError as e:  # moto[server] is in tests/requirements.txt
    pytest.skip(f"moto[server] is not installed ({e}): pip install -r tests/requirements.txt",
                allow_module_level=True)

IRIS_V1 = model_file(EXAMPLE_MODELS, "iris-logreg", 1)
IRIS_V2 = model_file(EXAMPLE_MODELS, "iris-logreg", 2)
ROWS = iris_x()[[0, 50, 100, 120, 70, 133]]
PREFIX = "lectern/artifacts"
ACCESS_KEY = "lectern-test-key"
SECRET_KEY = "lectern-test-secret"
REGION = "us-east-1"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundled_files() -> dict[str, dict[int, bytes]]:
    out = {}
    for folder in sorted(p for p in EXAMPLE_MODELS.iterdir() if p.is_dir()):
        out[folder.name] = {int(v.name): (v / "model.onnx").read_bytes()
                            for v in folder.iterdir() if v.is_dir() and v.name.isdigit()}
    return out


# --------------------------------------------------------------------------- the S3 server

class S3:
    """moto's S3 API on 127.0.0.1:PORT, and a boto3 client of it."""

    def __init__(self):
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def new_bucket(self) -> str:
        bucket = f"lectern-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=bucket)
        return bucket

    def keys(self, bucket: str) -> set[str]:
        keys = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys.update(o["Key"] for o in page.get("Contents", []))
        return keys

    def read(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def write(self, bucket: str, key: str, data: bytes):
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def server_env(self) -> dict[str, str]:
        """What `lectern serve` needs to reach this server (object_store's names)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
        }

    def stop(self):
        self.server.stop()


@pytest.fixture(scope="module")
def s3():
    # werkzeug logs every request of the S3 server at INFO: too much to read in a failure
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = S3()
    yield server
    server.stop()


@pytest.fixture
def clean_aws_env(monkeypatch):
    """No `AWS_*` variable of the test process reaches the server (LecternServer copies
    os.environ): a developer's session token or profile would change what object_store does."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


# --------------------------------------------------------------------------- helpers

class Api:
    def __init__(self, srv):
        self.srv = srv
        self.s = requests.Session()

    def call(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 120)
        return self.s.request(method, self.srv.url + path, **kw)

    def describe(self, name: str) -> dict:
        return ok(self.call("GET", f"/v1/models/{name}"))

    def upload(self, name: str, data: bytes) -> dict:
        return ok(self.call("POST", f"/v1/models/{name}/versions", data=data,
                            headers={"Content-Type": "application/octet-stream"}), 201)

    def infer(self, name: str, version=None) -> requests.Response:
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version is not None else "") + "/infer"
        return self.call("POST", path, json={"inputs": [json_input("X", ROWS, "FP32")]})


def versions_of(view: dict) -> dict[int, dict]:
    return {v["version"]: v for v in view["versions"]}


def assert_serves(api: Api, name: str, version: int, model_path, versioned: bool = False):
    """An inference on `name` is computed by `version`, whose file is `model_path`."""
    resp = api.infer(name, version if versioned else None)
    assert resp.status_code == 200, f"infer {name} (v{version}): {resp.status_code} {resp.text[:500]}"
    header, outputs = parse_infer_response(resp)
    assert str(header["model_version"]) == str(version), header
    ref = ort_reference(model_path, {"X": ROWS})
    np.testing.assert_allclose(outputs["output_probability"], ref["output_probability"], rtol=0, atol=1e-5)
    assert np.array_equal(outputs["output_label"], ref["output_label"])


def artifact(model: str, data: bytes) -> str:
    """The bucket key of a model's artifact (content-addressed, under the prefix)."""
    return f"{PREFIX}/models/{model}/{sha256(data)}.onnx"


def server_stderr(srv) -> str:
    return srv.stderr_text()[-4000:]


# --------------------------------------------------------------------------- the test

def test_artifacts_live_in_an_s3_bucket_and_are_checked_on_every_load(s3, server_state, clean_aws_env):
    bucket = s3.new_bucket()
    args = ["--objects", f"s3://{bucket}/{PREFIX}"]
    env = s3.server_env()
    state = server_state()

    # 1. the --models folder is imported into the bucket, under the prefix, and served from it
    srv = state.start(extra_args=args, env=env)
    api = Api(srv)
    files = bundled_files()
    expected = {artifact(name, data): data for name, versions in files.items() for data in versions.values()}
    keys = s3.keys(bucket)
    assert keys == set(expected), (
        f"the bucket holds {sorted(keys)}, expected the bundled artifacts {sorted(expected)}\n"
        f"--- server stderr ---\n{server_stderr(srv)}")
    for key, data in expected.items():
        assert s3.read(bucket, key) == data, f"{key} does not hold the bytes of its file"
    local = state.data_dir / "objects"
    assert not local.exists() or not any(local.rglob("*")), f"artifacts were written to {local} as well"

    models = {m["name"]: m for m in ok(api.call("GET", "/v1/models"))["models"]}
    assert sorted(models) == sorted(files)
    for name, versions in files.items():
        for number, data in versions.items():
            v = versions_of(models[name])[number]
            assert (v["sha256"], v["size"]) == (sha256(data), len(data)), (name, v)
        newest = versions_of(models[name])[max(versions)]
        assert newest["state"] == "READY" and newest["serving"], (name, newest)
        assert api.call("GET", f"/v2/models/{name}/ready").status_code == 200, name
    assert_serves(api, "iris-logreg", 2, IRIS_V2)
    assert_serves(api, "iris-forest", 1, model_file(EXAMPLE_MODELS, "iris-forest", 1))

    # 2. uploads stream into the bucket and serve
    ok(api.call("POST", "/v1/models", json={"name": "s3-iris", "config": {"latest": 2}}), 201)
    for number, path in ((1, IRIS_V1), (2, IRIS_V2)):
        v = api.upload("s3-iris", path.read_bytes())["version"]
        assert v["version"] == number and v["state"] == "READY", v
        assert v["sha256"] == sha256(path.read_bytes()), v
    for number, path in ((1, IRIS_V1), (2, IRIS_V2)):
        key = artifact("s3-iris", path.read_bytes())
        assert s3.read(bucket, key) == path.read_bytes(), f"{key} is not the uploaded file"
        assert_serves(api, "s3-iris", number, path, versioned=True)
    assert_serves(api, "s3-iris", 2, IRIS_V2)

    # a file larger than one part (8 MiB) goes up as a multipart upload; it is not a model,
    # so its version is UNAVAILABLE, but it is stored whole under its checksum
    big = os.urandom(1 << 20) * 17  # 17 MiB: three parts
    ok(api.call("POST", "/v1/models", json={"name": "s3-big"}), 201)
    v = api.upload("s3-big", big)["version"]
    assert (v["sha256"], v["size"], v["state"]) == (sha256(big), len(big), "UNAVAILABLE"), v
    assert s3.read(bucket, artifact("s3-big", big)) == big, "the multipart upload is not the file sent"
    staging = sorted(k for k in s3.keys(bucket) if not k.startswith(f"{PREFIX}/models/"))
    assert staging == [], f"objects left outside {PREFIX}/models/ after the uploads: {staging}"

    # deleting a version deletes its object
    ok(api.call("DELETE", "/v1/models/s3-big/versions/1"))
    assert artifact("s3-big", big) not in s3.keys(bucket), "the deleted version's object is still in the bucket"
    assert api.describe("s3-big")["versions"] == []

    # 3. an artifact overwritten in the bucket: at the next start its version is UNAVAILABLE
    # with a reason naming the checksum, the rest serves. The bytes put in are a valid model
    # (iris-logreg v1), which would serve the wrong answers were the checksum not checked.
    corrupt_key = artifact("s3-iris", IRIS_V2.read_bytes())
    s3.write(bucket, corrupt_key, IRIS_V1.read_bytes())
    srv.kill()
    srv = state.start(extra_args=args, env=env)
    api = Api(srv)
    view = versions_of(api.describe("s3-iris"))
    assert view[2]["state"] == "UNAVAILABLE" and not view[2]["serving"], view[2]
    reason = view[2]["reason"]
    assert "sha-256" in reason.lower() and sha256(IRIS_V2.read_bytes()) in reason, (
        f"the reason does not name the checksum: {reason!r}")
    assert view[1]["state"] == "READY" and view[1]["serving"], view[1]
    resp = api.infer("s3-iris", 2)
    assert resp.status_code in (400, 404), f"the corrupt version answered {resp.status_code}: {resp.text[:300]}"
    assert_serves(api, "s3-iris", 1, IRIS_V1)
    index = ok(api.call("POST", "/v2/repository/index", json={}))
    row = [r for r in index if r["name"] == "s3-iris" and str(r.get("version")) == "2"]
    assert row and row[0]["state"] == "UNAVAILABLE" and "sha-256" in row[0]["reason"].lower(), row
    assert_serves(api, "iris-logreg", 2, IRIS_V2)
    for name in files:
        assert api.call("GET", f"/v2/models/{name}/ready").status_code == 200, name

    # deleting the corrupt version deletes its object; the other version's stays
    ok(api.call("DELETE", "/v1/models/s3-iris/versions/2"))
    keys = s3.keys(bucket)
    assert corrupt_key not in keys, "the deleted version's object is still in the bucket"
    assert artifact("s3-iris", IRIS_V1.read_bytes()) in keys
    assert_serves(api, "s3-iris", 1, IRIS_V1)

    # 4. without --models, the database and the bucket alone serve everything
    srv.kill()
    srv = state.start(extra_args=[*args, "--max-upload-bytes", str(10 << 20)], env=env, models=False)
    api = Api(srv)
    assert_serves(api, "s3-iris", 1, IRIS_V1)
    assert_serves(api, "iris-logreg", 2, IRIS_V2)

    # an upload over --max-upload-bytes, refused after its first part went up: the multipart
    # upload is aborted, nothing is left in the bucket and no version is made
    before = s3.keys(bucket)
    try:
        resp = api.call("POST", "/v1/models/s3-big/versions", data=big)
        # the server answers 413 as soon as the limit is passed and closes the connection
        assert_error(resp, 413)
    except requests.ConnectionError:
        pass
    assert api.describe("s3-big")["versions"] == []
    assert s3.keys(bucket) == before, f"the refused upload left {sorted(s3.keys(bucket) - before)}"
    pending = s3.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert pending == [], f"multipart uploads left open: {[u['Key'] for u in pending]}"

