"""The `lectern model` and `lectern keys` commands against a real server (docs/contract.md, "CLI").

Every command runs the real binary with `LECTERN_URL` / `LECTERN_KEY` in its environment (the
test process's other `LECTERN_*` variables are dropped). Exit codes: 0 done, 1 the server
refused (or a pushed version failed to load), 2 usage, 3 the server cannot be reached.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import EXAMPLE_MODELS, lectern_binary
from lectern_checks import free_port

IRIS_V1 = EXAMPLE_MODELS / "iris-logreg" / "1" / "model.onnx"
IRIS_V2 = EXAMPLE_MODELS / "iris-logreg" / "2" / "model.onnx"
IRIS_LABELS = EXAMPLE_MODELS / "iris-logreg" / "labels.txt"
KEY_RE = re.compile(r"^lk_[0-9a-f]{12}_[0-9a-f]{48}$")
ANY_KEY_RE = re.compile(r"lk_[0-9a-f]{12}_[0-9a-f]{48}")
IRIS_REQUEST = {
    "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [[5.1, 3.5, 1.4, 0.2]]}],
    "outputs": [{"name": "output_label"}],
}


def only_iris(models: Path):
    """Keeps iris-logreg alone in the server's copy of examples/models (faster start-up)."""
    for folder in models.iterdir():
        if folder.is_dir() and folder.name != "iris-logreg":
            shutil.rmtree(folder)


def cli(*args, url: str | None = None, key: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs `lectern ARGS...` and returns the finished process (text stdout and stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LECTERN_")}
    if url is not None:
        env["LECTERN_URL"] = url
    if key is not None:
        env["LECTERN_KEY"] = key
    return subprocess.run([str(lectern_binary()), *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


def refused(proc: subprocess.CompletedProcess, status: int) -> subprocess.CompletedProcess:
    assert proc.returncode == 1, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert f"HTTP {status}" in proc.stderr, proc.stderr
    return proc


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def model_json(srv, name: str, key: str | None = None) -> dict:
    proc = ok(cli("model", "show", name, "--json", url=srv.url, key=key))
    return json.loads(proc.stdout)


def test_push_list_show_default_rm(start_server, tmp_path):
    srv = start_server(prepare=only_iris)
    url = srv.url

    # No such model: a clear 404 before any byte is sent, with the hint.
    proc = refused(cli("model", "push", "flower", IRIS_V1, url=url), 404)
    assert "--create" in proc.stderr

    # --create, with labels; the version number is picked by the server.
    proc = ok(cli("model", "push", "flower", IRIS_V1, "--create", "--labels", IRIS_LABELS, url=url))
    assert re.search(r"flower version 1: READY, serving", proc.stdout), proc.stdout
    assert "created model flower" in proc.stderr
    assert "uploading" not in proc.stderr and "\r" not in proc.stderr, "no progress bar when stderr is not a terminal"
    model = model_json(srv, "flower")
    assert model["labels"] == IRIS_LABELS.read_text().split()
    assert srv.get("/v2/models/flower/ready").status_code == 200

    # Auto version: newest + 1.
    proc = ok(cli("model", "push", "flower", IRIS_V2, url=url))
    assert "flower version 2: READY, serving" in proc.stdout

    # --labels on an existing model replaces its labels and keeps its config.
    ok(cli("model", "push", "petal", IRIS_V1, "--create", "--labels", IRIS_LABELS, url=url))
    config_before = model_json(srv, "petal")["config"]
    renamed = tmp_path / "labels.txt"
    renamed.write_text("a\nb\nc\n")
    proc = ok(cli("model", "push", "petal", IRIS_V2, "--labels", renamed, url=url))
    assert "set 3 labels on petal" in proc.stderr
    model = model_json(srv, "petal")
    assert model["labels"] == ["a", "b", "c"] and model["config"] == config_before, model

    # Explicit version, raw answer with --json.
    proc = ok(cli("model", "push", "flower", IRIS_V1, "--version", "7", "--json", url=url))
    answer = json.loads(proc.stdout)
    assert answer["version"]["version"] == 7 and answer["version"]["state"] == "READY"
    assert answer["version"]["size"] == IRIS_V1.stat().st_size
    assert answer["model"]["name"] == "flower"

    # The same version again: the server's 409.
    proc = refused(cli("model", "push", "flower", IRIS_V2, "--version", "7", url=url), 409)
    assert "version 7" in proc.stderr

    # --create on an existing model is fine.
    proc = ok(cli("model", "push", "flower", IRIS_V2, "--create", url=url))
    assert "flower version 8: READY" in proc.stdout

    # list: a table, and --json.
    proc = ok(cli("model", "list", url=url))
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DEFAULT", "SERVING", "VERSIONS", "UNAVAILABLE"]
    row = next(line.split() for line in lines[1:] if line.startswith("flower "))
    assert row == ["flower", "newest", "8", "1,2,7,8", "-"]
    assert any(line.startswith("iris-logreg ") for line in lines[1:])
    listed = json.loads(ok(cli("model", "list", "--json", url=url)).stdout)
    flower = next(m for m in listed["models"] if m["name"] == "flower")
    assert [v["version"] for v in flower["versions"]] == [1, 2, 7, 8]

    # show: details and the versions table.
    proc = ok(cli("model", "show", "flower", url=url))
    assert "model:    flower" in proc.stdout and "default:  newest" in proc.stdout
    assert "labels:   setosa, versicolor, virginica" in proc.stdout
    version_rows = [line.split() for line in proc.stdout.splitlines() if re.match(r"^\d+\s", line)]
    assert [r[0] for r in version_rows] == ["1", "2", "7", "8"]
    assert all(r[1] == "READY" for r in version_rows)

    # default: a version, then back to the newest.
    ok(cli("model", "default", "flower", "2", url=url))
    assert model_json(srv, "flower")["default_version"] == 2
    answer = srv.post("/v2/models/flower/infer", json=IRIS_REQUEST).json()
    assert answer["model_version"] == "2"
    refused(cli("model", "default", "flower", "99", url=url), 404)
    ok(cli("model", "default", "flower", "newest", url=url))
    assert model_json(srv, "flower")["default_version"] is None
    assert srv.post("/v2/models/flower/infer", json=IRIS_REQUEST).json()["model_version"] == "8"

    # rm one version, then the model.
    proc = ok(cli("model", "rm", "flower", "--version", "8", url=url))
    assert "deleted version 8 of flower" in proc.stdout
    assert [v["version"] for v in model_json(srv, "flower")["versions"]] == [1, 2, 7]
    assert srv.post("/v2/models/flower/infer", json=IRIS_REQUEST).json()["model_version"] == "7"
    refused(cli("model", "rm", "flower", "--version", "8", url=url), 404)
    proc = ok(cli("model", "rm", "flower", url=url))
    assert "deleted model flower" in proc.stdout
    refused(cli("model", "show", "flower", url=url), 404)
    assert srv.post("/v2/models/flower/infer", json=IRIS_REQUEST).status_code == 404


def test_a_corrupt_push_exits_1_with_the_reason_and_the_old_version_keeps_serving(start_server, tmp_path):
    srv = start_server(prepare=only_iris)
    ok(cli("model", "push", "tulip", IRIS_V1, "--create", url=srv.url))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(os.urandom(1 << 20))  # several chunks of the streamed upload

    proc = cli("model", "push", "tulip", corrupt, url=srv.url)
    assert proc.returncode == 1, proc
    assert "tulip version 2: UNAVAILABLE" in proc.stdout
    assert "version 2 of tulip failed to load" in proc.stderr
    assert "still serving: 1" in proc.stderr
    model = model_json(srv, "tulip")
    failed = next(v for v in model["versions"] if v["version"] == 2)
    assert failed["state"] == "UNAVAILABLE" and failed["reason"]
    assert failed["reason"] in proc.stderr, "the reason the server recorded is printed"
    assert failed["size"] == 1 << 20
    assert [v["version"] for v in model["versions"] if v["serving"]] == [1]
    answer = srv.post("/v2/models/tulip/infer", json=IRIS_REQUEST)
    assert answer.status_code == 200 and answer.json()["model_version"] == "1"

    # --json still exits 1 on a failed load, after printing the answer.
    proc = cli("model", "push", "tulip", corrupt, "--json", url=srv.url)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["version"]["state"] == "UNAVAILABLE"

    # A local file that cannot be read is a usage error, and nothing is sent.
    proc = cli("model", "push", "tulip", tmp_path / "missing.onnx", url=srv.url)
    assert proc.returncode == 2 and "missing.onnx" in proc.stderr
    assert len(model_json(srv, "tulip")["versions"]) == 3


def test_keys_create_list_revoke_against_a_server(start_server):
    srv = start_server(prepare=only_iris)
    url = srv.url
    keys: list[str] = []
    outputs: list[str] = []

    def run(*args, key=None):
        proc = cli(*args, url=url, key=key)
        outputs.append(proc.stderr)
        return proc

    # No key yet and loopback: the first admin key is made over HTTP.
    proc = ok(run("keys", "create", "--name", "ops", "--role", "admin"))
    admin = proc.stdout.strip()
    assert KEY_RE.match(admin), proc.stdout
    assert proc.stdout == admin + "\n", "the key alone on stdout"
    assert "will not be shown again" in proc.stderr
    keys.append(admin)

    # From now on a credential is needed.
    proc = refused(run("model", "list"), 401)
    assert "credential is required" in proc.stderr
    ok(run("model", "list", key=admin))

    proc = ok(run("keys", "create", "--name", "app", "--role", "client", "--json", key=admin))
    created = json.loads(proc.stdout)
    client, client_id = created["key"], created["id"]
    assert KEY_RE.match(client) and client.startswith(f"lk_{client_id}_") and created["role"] == "client"
    keys.append(client)
    trainer = ok(run("keys", "create", "--name", "ci", "--role", "trainer", key=admin)).stdout.strip()
    keys.append(trainer)

    # list: ids, names, roles; never key text.
    proc = ok(run("keys", "list", key=admin))
    assert proc.stdout.splitlines()[0].split()[:3] == ["ID", "NAME", "ROLE"]
    rows = {line.split()[1]: line.split() for line in proc.stdout.splitlines()[1:]}
    assert rows["app"][0] == client_id and rows["app"][2] == "client"
    assert rows["ops"][2] == "admin" and rows["ci"][2] == "trainer"
    assert not ANY_KEY_RE.search(proc.stdout)
    listed = json.loads(ok(run("keys", "list", "--json", key=admin)).stdout)
    assert {k["name"] for k in listed["keys"]} == {"ops", "app", "ci"}

    # Roles: a client may not manage models, a trainer may not manage keys.
    proc = refused(run("model", "list", key=client), 403)
    assert "client" in proc.stderr
    ok(run("model", "list", key=trainer))
    refused(run("keys", "list", key=trainer), 403)

    # Revoke: the key stops working at once.
    proc = ok(run("keys", "revoke", client_id, key=admin))
    assert f"revoked key {client_id}" in proc.stdout
    refused(run("keys", "revoke", client_id, key=admin), 404)
    proc = refused(run("model", "list", key=client), 401)
    assert "invalid or revoked API key" in proc.stderr
    assert requests.get(url + "/v1/models", headers=bearer(client), timeout=30).status_code == 401
    listed = json.loads(ok(run("keys", "list", "--json", key=admin)).stdout)
    assert next(k for k in listed["keys"] if k["id"] == client_id)["revoked_at_ms"] is not None

    # A wrong key: exit 1 with the server's 401 message; the key is not echoed.
    wrong = "lk_0123456789ab_" + "0" * 48
    keys.append(wrong)
    proc = refused(run("model", "show", "iris-logreg", key=wrong), 401)
    assert "invalid or revoked API key" in proc.stderr
    proc = refused(run("model", "list", "--key", "not-a-key-at-all"), 401)
    keys.append("not-a-key-at-all")
    outputs.append(proc.stderr)

    # No key ever reaches the CLI's stderr or the server's log.
    log = srv.stderr_text()
    for key in keys:
        for text in outputs:
            assert key not in text
        assert key not in log
    assert not ANY_KEY_RE.search(log)


def test_offline_keys_create_bootstraps_a_stopped_servers_data(start_server):
    first = start_server(prepare=only_iris)
    assert first.get("/v1/models").status_code == 200, "no keys yet: loopback is open"
    data = first.data_dir
    database = getattr(getattr(first, "database", None), "url", None)  # PostgreSQL test runs
    first.stop()

    where = ["--database", database] if database else ["--data", data]
    proc = ok(cli("keys", "create", "--name", "boot", "--role", "admin", *where))
    key = proc.stdout.strip()
    assert KEY_RE.match(key), proc.stdout
    assert "will not be shown again" in proc.stderr and key not in proc.stderr
    if not database:
        assert (data / "lectern.db").exists()

    # A server started on the same state requires that key.
    store = ["--database", database or f"sqlite://{data / 'lectern.db'}", "--objects", f"file://{data / 'objects'}"]
    srv = start_server(prepare=only_iris, extra_args=store)
    answer = srv.get("/v1/models")
    assert answer.status_code == 401
    assert answer.headers.get("WWW-Authenticate") == "Bearer"
    refused(cli("model", "list", url=srv.url), 401)
    proc = ok(cli("model", "list", url=srv.url, key=key))
    assert "iris-logreg" in proc.stdout
    audit = srv.get("/v1/audit", headers=bearer(key)).json()["entries"]
    created = [e for e in audit if e["action"] == "key.create"]
    assert created and created[0]["actor"] == "cli"
    # Inference is protected too (no --open-inference).
    assert srv.post("/v2/models/iris-logreg/infer", json=IRIS_REQUEST).status_code == 401
    assert srv.post("/v2/models/iris-logreg/infer", json=IRIS_REQUEST, headers=bearer(key)).status_code == 200
    assert key not in srv.stderr_text()


def test_unreachable_server_exits_3_and_usage_errors_exit_2(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    proc = cli("model", "list", url=url)
    assert proc.returncode == 3, proc
    assert f"cannot reach the server at {url}" in proc.stderr
    secret = "lk_0123456789ab_" + "1" * 48
    proc = cli("keys", "list", "--url", url, key=secret)
    assert proc.returncode == 3 and secret not in proc.stderr and secret not in proc.stdout

    assert cli("model", "default", "x", "abc", url=url).returncode == 2
    assert cli("model", "push", "x", url=url).returncode == 2
    assert cli("keys", "create", "--name", "x", "--role", "root", url=url).returncode == 2
    proc = cli("model", "list", "--url", "not a url")
    assert proc.returncode == 2 and "--url" in proc.stderr


def test_an_upload_over_the_limit_is_refused_with_413(start_server, tmp_path):
    srv = start_server(prepare=only_iris, extra_args=["--max-upload-bytes", "100000"])
    big = tmp_path / "big.onnx"
    big.write_bytes(os.urandom(8 << 20))
    proc = cli("model", "push", "huge", big, "--create", url=srv.url)
    assert proc.returncode == 1, proc
    # The server answers 413 as soon as the limit is passed and closes the connection; the
    # client, still sending, may see the closed connection before it can read that answer.
    if "HTTP 413" in proc.stderr:
        assert "100000 bytes" in proc.stderr
    else:
        assert "the server closed the connection after about" in proc.stderr
        assert "--max-upload-bytes" in proc.stderr
    assert model_json(srv, "huge")["versions"] == []
