"""`lectern dataset` and `lectern train` against a real server (docs/contract.md, Training, CLI).

The commands run the real binary with `LECTERN_URL` in their environment (see test_cli.py):
exit 0 done; 1 the server refused, or the job failed or was cancelled; 2 usage; 3 unreachable.
"""
from __future__ import annotations

import json

import pytest
import requests

from lectern_training import IRIS_CLASSES, iris_csv
from test_cli import cli, ok, only_iris, refused


@pytest.fixture(scope="module")
def iris_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli-data") / "iris flowers.csv"
    path.write_bytes(iris_csv())
    return path


@pytest.fixture
def srv(start_server):
    return start_server(prepare=only_iris)


def test_dataset_push_list_show_rm(srv, iris_file, tmp_path):
    pushed = ok(cli("dataset", "push", "iris", iris_file, url=srv.url))
    assert "iris: 150 rows, csv" in pushed.stdout, pushed.stdout
    for column, kind in [("sepal_length", "number"), ("species", "category")]:
        assert any(line.split()[:2] == [column, kind] for line in pushed.stdout.splitlines()), pushed.stdout
    listed = ok(cli("dataset", "list", url=srv.url)).stdout
    assert listed.splitlines()[0].split()[:3] == ["NAME", "ROWS", "COLUMNS"] and "iris" in listed, listed
    shown = json.loads(ok(cli("dataset", "show", "iris", "--json", url=srv.url)).stdout)
    assert shown["rows"] == 150 and len(shown["preview"]) == 10
    as_json = tmp_path / "rows.json"
    as_json.write_text(json.dumps([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]))
    ok(cli("dataset", "push", "tiny", as_json, url=srv.url))
    assert requests.get(f"{srv.url}/v1/datasets/tiny", timeout=10).json()["format"] == "json"
    ok(cli("dataset", "rm", "tiny", url=srv.url))
    refused(cli("dataset", "show", "tiny", url=srv.url), 404)


def test_a_malformed_file_is_refused_with_its_line_and_nothing_is_stored(srv, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3\n")
    proc = refused(cli("dataset", "push", "bad", bad, url=srv.url), 400)
    assert "line 3" in proc.stderr, proc.stderr
    refused(cli("dataset", "show", "bad", url=srv.url), 404)
    missing = cli("dataset", "push", "x", tmp_path / "nope.csv", url=srv.url)
    assert missing.returncode == 2, missing.stderr


def test_train_shows_progress_then_the_metrics_and_the_model_serves(srv, iris_file):
    ok(cli("dataset", "push", "iris", iris_file, url=srv.url))
    proc = ok(cli("train", "--dataset", "iris", "--target", "species", "--algorithm", "decision_tree",
                  "--model", "iris-tree", "--param", "max_depth=3", "--seed", "7", url=srv.url))
    assert "training job" in proc.stderr and "%" in proc.stderr, proc.stderr
    assert "accuracy" in proc.stdout, proc.stdout
    for label in IRIS_CLASSES:
        assert any(line.split()[:1] == [label] for line in proc.stdout.splitlines()), proc.stdout
    assert "model iris-tree version 1 registered" in proc.stdout, proc.stdout
    answer = requests.post(f"{srv.url}/v2/models/iris-tree/infer", json={
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}, timeout=10)
    assert answer.status_code == 200, answer.text


def test_train_from_a_local_file_pushes_it_first(srv, iris_file):
    proc = ok(cli("train", "--data", iris_file, "--target", "species", "--algorithm", "knn", "--model", "iris-knn",
                  "--param", "k=3", url=srv.url))
    assert "pushed" in proc.stderr and "dataset iris_flowers" in proc.stderr, proc.stderr
    assert requests.get(f"{srv.url}/v1/datasets/iris_flowers", timeout=10).status_code == 200
    assert "model iris-knn version 1 registered" in proc.stdout, proc.stdout


def test_a_refused_request_exits_1_and_no_wait_prints_the_id(srv, iris_file):
    ok(cli("dataset", "push", "iris", iris_file, url=srv.url))
    proc = refused(cli("train", "--dataset", "iris", "--target", "nope", "--algorithm", "decision_tree",
                       "--model", "m", url=srv.url), 400)
    assert "nope" in proc.stderr, proc.stderr
    refused(cli("train", "--dataset", "iris", "--target", "species", "--algorithm", "decision_tree",
                "--model", "m", "--param", "max_depth=0", url=srv.url), 400)
    usage = cli("train", "--dataset", "iris", "--target", "species", url=srv.url)
    assert usage.returncode == 2, usage.stderr
    job_id = ok(cli("train", "--dataset", "iris", "--target", "species", "--algorithm", "random_forest",
                    "--model", "m", "--no-wait", url=srv.url)).stdout.strip()
    assert len(job_id) == 32, job_id
    status = ok(cli("train", "status", job_id, "--json", url=srv.url))
    assert json.loads(status.stdout)["id"] == job_id
    cancelled = cli("train", "cancel", job_id, url=srv.url)
    assert cancelled.returncode in (0, 1), cancelled.stderr  # 1: it had already succeeded (409)
    if cancelled.returncode == 0:
        failed = cli("train", "status", job_id, url=srv.url)
        assert failed.returncode == 1 and "cancelled" in failed.stderr, failed.stderr
