"""Datasets and training jobs end to end (docs/contract.md, "Training (issue 11)"), over real
HTTP: uploads of CSV and JSON files and the schema Lectern reads from them, files it refuses
(with the line and column of the first problem, and nothing stored), training every algorithm
on data sets exported from scikit-learn, the metrics, pictures and ONNX artifact of a job, the
trained model served over V2 at once, and requests refused before anything is queued.

One server is shared by the module (each test uses datasets and models of its own names); the
jobs it trains run one at a time (`--training-workers` 1). Cancelling, restarts and roles are in
test_training_jobs.py. Run on SQLite and on PostgreSQL (LECTERN_TEST_DATABASE=postgres).

Held-out rows: where a test must know which rows a job held out (to compare with scikit-learn
on the same split, or to recompute the metrics from V2 answers), the request names them with
`"test_rows": [0-based dataset row indices]` instead of `test_fraction` (the engine's
`Holdout::Rows`, as the `fit` example's `--test-rows`).
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import requests

from conftest import LecternServer, copy_models
from lectern_checks import assert_error, ok
from lectern_training import (DIABETES_FEATURES, IRIS_CLASSES, IRIS_FEATURES, Lectern, assert_code,
                              check_classification_metrics, check_progression, check_regression_metrics,
                              check_times, count, csv_bytes, diabetes_csv, diabetes_split, diabetes_table,
                              iris_csv, iris_int_target_csv, iris_json, iris_split, iris_table, iris_x32, iris_y,
                              parse_svg, r2_score, sha256, svg_text)
from lectern_v2 import ort_reference, parse_infer_response
from test_train_reference import CLASSIFIERS, REGRESSORS, TOLERANCE

PICTURES = ("tree", "importance", "confusion")


# =========================================================================== data made here

def kinds_csv() -> bytes:
    """40 rows: `num` (number, 2 missing), `int` (integer, written with spaces around, 1
    missing), `cat` (category of 3, 2 missing), `txt` (text, 2 missing); each missing marker of
    the contract is used once or more."""
    rows = []
    for i in range(40):
        num = {3: "", 7: "NaN"}.get(i, f"{i + 0.25}")
        integer = {5: "NA"}.get(i, f" {3 * i} ")
        cat = {2: "?", 9: "null"}.get(i, ["red", "green", "blue"][i % 3])
        txt = {11: "None", 12: "N/A"}.get(i, f"note number {i}")
        rows.append([num, integer, cat, txt])
    return csv_bytes(["num", "int", "cat", "txt"], rows)


def kinds_preview() -> list[dict]:
    out = []
    for i in range(10):
        out.append({
            "num": None if i in (3, 7) else i + 0.25,
            "int": None if i == 5 else 3 * i,
            "cat": None if i in (2, 9) else ["red", "green", "blue"][i % 3],
            "txt": f"note number {i}",
        })
    return out


def mixed_csv() -> bytes:
    """40 rows for the refused requests: `a` number (2 missing), `b` integer, `one` a single
    class, `note` free text, `label` yes/no, `val` number."""
    rng = np.random.default_rng(11)
    rows = []
    for i in range(40):
        a = "" if i in (4, 17) else f"{rng.uniform(0, 10):.3f}"
        rows.append([a, i % 7, "same", f"free text {i}", ["yes", "no"][i % 2], f"{1.5 * i + 0.1:.2f}"])
    return csv_bytes(["a", "b", "one", "note", "label", "val"], rows)


# Colour first appears as green, red, blue (not alphabetical); red is the most frequent.
COLOURS = ["green", "red", "blue"] + ["red"] * 36 + ["green"] * 14 + ["blue"] * 7
COLOUR_CODES = {"green": 0.0, "red": 1.0, "blue": 2.0}


def colours_csv() -> bytes:
    order = np.random.default_rng(5).permutation(len(COLOURS) - 3) + 3
    colours = COLOURS[:3] + [COLOURS[i] for i in order]
    rows = [[c, "yes" if c == "red" else "no"] for c in colours]
    return csv_bytes(["colour", "ripe"], rows)


# =========================================================================== fixtures

@pytest.fixture(scope="module")
def lectern(tmp_path_factory):
    """One server for the module, with the datasets `iris`, `diabetes` and `mixed` uploaded."""
    root = tmp_path_factory.mktemp("training")
    models = copy_models(root / "models")
    data = root / "data"
    data.mkdir()
    srv = LecternServer(models, data)
    try:
        client = Lectern(srv)
        for name, body in (("iris", iris_csv()), ("diabetes", diabetes_csv()), ("mixed", mixed_csv())):
            client.upload_ok(name, body, status=201)
        yield client
    finally:
        srv.cleanup()


IRIS_TREE_REQUEST = {"dataset": "iris", "target": "species", "model": "iris-tree", "algorithm": "decision_tree",
                     "features": ["sepal_length", "petal_width"], "params": {"max_depth": 3},
                     "test_fraction": 0.25, "seed": 7}


@pytest.fixture(scope="module")
def iris_tree(lectern):
    """The contract's example request, trained; (final job, every answer seen while polling)."""
    seen: list[dict] = []
    job = lectern.train(seen=seen, **IRIS_TREE_REQUEST)
    return job, seen


@pytest.fixture(scope="module")
def trained(lectern):
    """Jobs trained once for the module, by key: `trained(key, **request)` -> final job."""
    cache: dict[str, dict] = {}

    def get(key: str, **request) -> dict:
        if key not in cache:
            cache[key] = lectern.train(**request)
        return cache[key]

    return get


def json_params(params: dict) -> dict:
    """test_train_reference.py's CLI parameters (strings) as JSON values."""
    return {k: int(v) if re.fullmatch(r"\d+", v) else float(v) for k, v in params.items()}


def iris_comparison_job(lectern, trained, algorithm: str) -> dict:
    params, _ = CLASSIFIERS[algorithm]
    _, test = iris_split()
    return trained(f"iris-{algorithm}", dataset="iris", target="species", model=f"iris-{algorithm}",
                   algorithm=algorithm, features=IRIS_FEATURES, params=json_params(params),
                   test_rows=[int(r) for r in test], seed=0)


def diabetes_job(lectern, trained, algorithm: str) -> dict:
    params, _ = REGRESSORS[algorithm]
    _, test = diabetes_split()
    return trained(f"diabetes-{algorithm}", dataset="diabetes", target="target", model=f"diabetes-{algorithm}",
                   algorithm=algorithm, params=json_params(params), test_rows=[int(r) for r in test], seed=0)


def schema(dataset: dict) -> dict[str, dict]:
    columns = dataset["columns"]
    assert isinstance(columns, list), dataset
    return {c["name"]: c for c in columns}


# =========================================================================== datasets: uploads

def test_a_csv_upload_answers_201_with_its_schema_size_and_sha256(lectern):
    body = iris_csv()
    ds = lectern.upload_ok("iris-upload", body, status=201)
    assert ds["name"] == "iris-upload" and ds["format"] == "csv", ds
    assert ds["rows"] == 150, ds
    assert ds["size"] == len(body) and ds["sha256"] == sha256(body), ds
    assert [c["name"] for c in ds["columns"]] == IRIS_FEATURES + ["species"], ds["columns"]
    x, species = iris_table()
    for i, name in enumerate(IRIS_FEATURES):
        column = schema(ds)[name]
        assert column["type"] == "number" and column["missing"] == 0, column
        assert column["distinct"] == len(np.unique(x[:, i])), column
    assert schema(ds)["species"] == {"name": "species", "type": "category", "missing": 0, "distinct": 3}
    assert isinstance(ds["created_by"], str) and ds["created_by"], ds
    assert isinstance(ds["created_at_ms"], int) and ds["created_at_ms"] > 1_600_000_000_000, ds
    shown = ok(lectern.dataset("iris-upload"))
    assert {k: v for k, v in shown.items() if k != "preview"} == {k: v for k, v in ds.items() if k != "preview"}


def test_the_column_types_missing_and_distinct_counts_follow_the_contract(lectern):
    ds = lectern.upload_ok("kinds", kinds_csv(), status=201)
    assert ds["rows"] == 40, ds
    got = {name: (c["type"], c["missing"], c["distinct"]) for name, c in schema(ds).items()}
    assert got == {
        "num": ("number", 2, 38),      # "" and NaN are missing
        "int": ("integer", 1, 39),     # " 15 " is trimmed; NA is missing
        "cat": ("category", 2, 3),     # ? and null are missing
        "txt": ("text", 2, 38),        # None and N/A are missing; 38 distinct of 38 is not a category
    }, got


def test_the_preview_holds_the_first_10_rows_as_numbers_strings_and_nulls(lectern):
    lectern.upload_ok("kinds-preview", kinds_csv(), status=201)
    shown = ok(lectern.dataset("kinds-preview"))
    assert shown["preview"] == kinds_preview(), shown["preview"]
    for row in shown["preview"]:
        assert row["int"] is None or isinstance(row["int"], (int, float)) and not isinstance(row["int"], bool), row
    iris = ok(lectern.dataset("iris"))
    x, species = iris_table()
    assert len(iris["preview"]) == 10
    for i, row in enumerate(iris["preview"]):
        assert set(row) == set(IRIS_FEATURES + ["species"]), row
        assert [row[c] for c in IRIS_FEATURES] == pytest.approx(list(x[i])), row
        assert row["species"] == species[i], row


def test_numbers_are_counted_distinct_up_to_51(lectern):
    ds = ok(lectern.dataset("diabetes"))
    x, y = diabetes_table()
    assert ds["rows"] == len(y)
    for i, name in enumerate(DIABETES_FEATURES):
        expected = min(len(np.unique(x[:, i])), 51)
        assert schema(ds)[name]["distinct"] == expected, schema(ds)[name]
    assert schema(ds)["target"]["distinct"] == 51, schema(ds)["target"]
    assert schema(ds)["target"]["type"] in ("number", "integer"), schema(ds)["target"]


def test_a_json_upload_reads_like_the_same_csv(lectern):
    body = iris_json()
    ds = lectern.upload_ok("iris-json", body, content_type="application/json", status=201)
    assert ds["format"] == "json" and ds["rows"] == 150, ds
    assert ds["size"] == len(body) and ds["sha256"] == sha256(body), ds
    csv = ok(lectern.dataset("iris"))
    assert ds["columns"] == csv["columns"], (ds["columns"], csv["columns"])
    assert ok(lectern.dataset("iris-json"))["preview"] == csv["preview"]


def test_json_nulls_and_left_out_keys_are_missing(lectern):
    rows = [{"x": 1.5, "n": 1, "c": "a"}, {"x": None, "n": 2, "c": "b"}, {"x": 2.5, "c": "a"},
            {"x": 3.5, "n": 4, "c": "b"}, {"x": 4.5, "n": 5, "c": "a"}, {"x": 5.5, "n": 6, "c": "b"},
            {"x": 6.5, "n": 7, "c": "a"}, {"x": 7.5, "n": 8, "c": None}]
    ds = lectern.upload_ok("json-missing", json.dumps(rows).encode(), content_type="application/json", status=201)
    got = {name: (c["type"], c["missing"]) for name, c in schema(ds).items()}
    assert got == {"x": ("number", 1), "n": ("integer", 1), "c": ("category", 1)}, got
    assert [c["name"] for c in ds["columns"]] == ["x", "n", "c"]
    preview = ok(lectern.dataset("json-missing"))["preview"]
    assert preview[1]["x"] is None and preview[2]["n"] is None and preview[7]["c"] is None, preview


def test_the_format_parameter_wins_over_the_content_type(lectern):
    as_json = lectern.upload_ok("fmt-json", iris_json(), content_type="application/octet-stream", fmt="json",
                                status=201)
    assert as_json["format"] == "json" and as_json["rows"] == 150, as_json
    as_csv = lectern.upload_ok("fmt-csv", iris_csv(), content_type="application/json", fmt="csv", status=201)
    assert as_csv["format"] == "csv" and as_csv["rows"] == 150, as_csv
    # no format, no JSON content type: CSV
    plain = lectern.upload_ok("fmt-none", iris_csv(), content_type="application/octet-stream", status=201)
    assert plain["format"] == "csv", plain


# =========================================================================== datasets: list, show, delete

def test_list_shows_every_dataset_by_name_without_preview(lectern):
    lectern.upload_ok("list-b", iris_csv(), status=201)
    lectern.upload_ok("list-a", iris_csv(), status=201)
    listed = lectern.datasets()
    names = [d["name"] for d in listed]
    assert names == sorted(names), names
    assert {"iris", "diabetes", "mixed", "list-a", "list-b"} <= set(names), names
    for d in listed:
        assert "preview" not in d, d
        assert {"name", "format", "rows", "size", "sha256", "columns", "created_by", "created_at_ms"} <= set(d), d
    shown = ok(lectern.dataset("list-a"))
    assert {k: v for k, v in shown.items() if k != "preview"} == next(d for d in listed if d["name"] == "list-a")


def test_delete_answers_204_and_the_dataset_is_gone(lectern):
    lectern.upload_ok("doomed", iris_csv(), status=201)
    resp = lectern.call("DELETE", "/v1/datasets/doomed")
    assert resp.status_code == 204, resp.text
    assert_code(lectern.dataset("doomed"), 404, "dataset_not_found")
    assert "doomed" not in [d["name"] for d in lectern.datasets()]
    assert_code(lectern.call("DELETE", "/v1/datasets/doomed"), 404, "dataset_not_found")


def test_an_unknown_dataset_is_404(lectern):
    assert_code(lectern.dataset("never-uploaded"), 404, "dataset_not_found")


def test_uploading_a_name_again_answers_200_and_replaces_it(lectern):
    first = lectern.upload_ok("replaced", iris_csv(), status=201)
    smaller = csv_bytes(["u", "v"], [[i, i % 2] for i in range(12)])
    second = lectern.upload_ok("replaced", smaller, status=200)
    assert second["rows"] == 12 and second["sha256"] == sha256(smaller) != first["sha256"], second
    assert [c["name"] for c in second["columns"]] == ["u", "v"]
    shown = ok(lectern.dataset("replaced"))
    assert shown["sha256"] == sha256(smaller) and shown["rows"] == 12, shown
    assert [d["name"] for d in lectern.datasets()].count("replaced") == 1


# =========================================================================== datasets: refused files

# (id, body, format, line, columns): the expected line, and the column (or the columns one
# reading of the contract allows); None where the contract does not pin it.
BAD_FILES = [
    ("csv-row-too-wide", b"a,b,c\n1,2,3\n4,5,6\n7,8,9\n1,2,3\n4,5,6,7\n8,9,1\n", "csv", 6, {4}),
    ("csv-row-too-narrow", b"a,b,c\n1,2,3\n4,5\n6,7,8\n", "csv", 3, {2, 3}),
    ("csv-empty-column-name", b"a,,c\n1,2,3\n", "csv", 1, {2}),
    ("csv-repeated-column-name", b"a,b,a\n1,2,3\n", "csv", 1, {3}),
    ("csv-header-only", b"a,b,c\n", "csv", None, None),
    ("csv-empty-file", b"", "csv", None, None),
    ("csv-not-utf8", b"a,b\n1,x\n3,\xff\xfe\n", "csv", 3, {2}),
    ("json-malformed", b'[{"a": 1, "b": 2},\n {"a": 3,, "b": 4}]', "json", 2, None),
    ("json-nested-value", b'[{"a": 1, "b": {"c": 2}}]', "json", None, None),
    ("json-key-not-in-first-object", b'[{"a": 1},\n {"a": 2, "b": 3}]', "json", None, None),
    ("json-not-an-array", b'{"a": 1}', "json", None, None),
    ("json-empty-array", b"[]", "json", None, None),
]


def assert_invalid_dataset(resp, line: int | None = None, columns: set[int] | None = None) -> dict:
    message = assert_code(resp, 400, "invalid_dataset")
    body = resp.json()
    for field in ("line", "column"):
        value = body.get(field)
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 1, (
            f"the error body's {field!r} is not a 1-based integer: {body}")
    if line is not None:
        assert body["line"] == line, body
        assert re.search(rf"\bline\D{{0,3}}{line}\b", message, re.I), f"message does not name line {line}: {message!r}"
    if columns is not None:
        assert body["column"] in columns, body
        column = body["column"]
        assert re.search(rf"\b(column|field)\D{{0,3}}{column}\b", message, re.I), (
            f"message does not name column {column}: {message!r}")
    return body


@pytest.mark.parametrize("case,body,fmt,line,columns", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_file_that_cannot_be_read_is_400_with_line_and_column_and_nothing_is_stored(
        lectern, case, body, fmt, line, columns):
    name = f"bad-{case}"
    resp = lectern.upload(name, body, content_type="application/json" if fmt == "json" else "text/csv", fmt=fmt)
    assert_invalid_dataset(resp, line, columns)
    assert_code(lectern.dataset(name), 404, "dataset_not_found")
    assert name not in [d["name"] for d in lectern.datasets()]


def test_a_refused_file_leaves_the_dataset_of_that_name_as_it_was(lectern):
    before = lectern.upload_ok("kept", iris_csv(), status=201)
    resp = lectern.upload("kept", b"a,b\n1,2\n3,4,5\n")
    assert_invalid_dataset(resp, 3, {3})
    after = ok(lectern.dataset("kept"))
    assert {k: v for k, v in after.items() if k != "preview"} == {k: v for k, v in before.items() if k != "preview"}
    assert after["rows"] == 150 and after["sha256"] == sha256(iris_csv())


@pytest.mark.parametrize("name", [".hidden", "has%20space", "x" * 129, "semi;colon"],
                         ids=["leading-dot", "space", "129-bytes", "semicolon"])
def test_a_bad_dataset_name_is_400(lectern, name):
    assert_code(lectern.upload(name, iris_csv()), 400, "invalid_request")
    assert name not in [d["name"] for d in lectern.datasets()]


def test_a_name_of_128_bytes_with_dots_dashes_and_underscores_is_accepted(lectern):
    name = ("a1.b-c_" * 19)[:128]
    assert len(name.encode()) == 128
    ds = lectern.upload_ok(name, iris_csv(), status=201)
    assert ds["name"] == name
    assert ok(lectern.dataset(name))["rows"] == 150


def test_an_upload_over_max_upload_bytes_is_413_and_nothing_is_stored(start_server):
    srv = start_server(extra_args=["--max-upload-bytes", "2048"])
    client = Lectern(srv)
    small = csv_bytes(["a", "b"], [[i, i % 3] for i in range(100)])
    assert len(small) < 2048
    big = iris_csv()
    assert 2048 < len(big) < 8192
    # a declared Content-Length over the limit
    assert_code(client.upload("too-big", big), 413, "payload_too_large")
    assert_code(client.dataset("too-big"), 404, "dataset_not_found")
    # a streamed (chunked) body that passes the limit while it is read
    try:
        resp = client.upload("too-big-streamed", (big[i:i + 1000] for i in range(0, len(big), 1000)))
        assert_code(resp, 413, "payload_too_large")
    except requests.ConnectionError:  # the server may close the connection while the client still sends
        pass
    assert_code(client.dataset("too-big-streamed"), 404, "dataset_not_found")
    # a refused upload does not replace a dataset of that name either
    client.upload_ok("kept", small, status=201)
    assert_code(client.upload("kept", big), 413, "payload_too_large")
    assert ok(client.dataset("kept"))["sha256"] == sha256(small)
    assert [d["name"] for d in client.datasets()] == ["kept"]


# =========================================================================== training: the example job

def test_a_decision_tree_on_iris_succeeds_with_sane_progress(lectern, iris_tree):
    job, seen = iris_tree
    check_progression(seen)
    assert seen[0]["state"] == "queued"
    assert job["state"] == "succeeded" and job["stage"] == "done" and job["percent"] == 100, job
    assert job["error"] is None
    check_times(job)
    assert job["version"] == 1, job
    assert job["pictures"] is not None and set(job["pictures"]) == set(PICTURES), job["pictures"]


def test_the_job_shows_its_request_and_every_parameter_used(lectern, iris_tree):
    job, _ = iris_tree
    for key in ("dataset", "target", "model", "algorithm", "features", "test_fraction", "seed"):
        assert job[key] == IRIS_TREE_REQUEST[key], (key, job)
    assert job["params"] == {"max_depth": 3, "min_samples_leaf": 1, "min_samples_split": 2, "criterion": "gini"}, job
    assert job["dataset_sha256"] == sha256(iris_csv()), job
    assert count(job["train_rows"]) == 112 and count(job["test_rows"]) == 38, job
    assert isinstance(job["created_by"], str) and job["created_by"], job
    assert lectern.job(job["id"]) == job
    listed = lectern.jobs(model="iris-tree")
    assert [j["id"] for j in listed] == [job["id"]], listed


def test_the_classification_metrics_are_consistent(iris_tree):
    job, _ = iris_tree
    check_classification_metrics(job, IRIS_CLASSES)
    assert job["metrics"]["accuracy"] >= 0.85, job["metrics"]


def test_the_trained_model_is_registered_labelled_audited_and_served_over_v2(lectern, iris_tree):
    job, _ = iris_tree
    model = ok(lectern.model("iris-tree"))
    assert [v["version"] for v in model["versions"]] == [1], model
    version = model["versions"][0]
    assert version["state"] == "READY" and version["serving"] is True, version
    assert model["labels"] == IRIS_CLASSES, model
    meta = ok(lectern.call("GET", "/v2/models/iris-tree"))
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 2]}], meta
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["output_label"]["datatype"] == "INT64" and outputs["output_label"]["shape"] == [-1], outputs
    assert outputs["output_probability"]["datatype"] == "FP32", outputs
    assert outputs["output_probability"]["shape"] == [-1, 3], outputs
    x = iris_x32()[:, [0, 3]]
    out = lectern.infer("iris-tree", x)
    assert out["output_label"].dtype == np.int64 and out["output_label"].shape == (150,)
    assert out["output_probability"].shape == (150, 3)
    np.testing.assert_allclose(out["output_probability"].sum(axis=1), 1.0, atol=1e-4)
    assert (out["output_label"] == iris_y()).mean() >= 0.85
    entries = ok(lectern.call("GET", "/v1/audit", params={"limit": 10000}))["entries"]
    creates = [e for e in entries if e["action"] == "version.create" and e["target"] == "iris-tree"]
    assert len(creates) == 1 and creates[0]["actor"] == job["created_by"], creates
    assert "version 1" in creates[0]["detail"] and version["sha256"] in creates[0]["detail"], creates[0]


def test_the_onnx_artifact_runs_in_onnxruntime_as_lectern_serves_it(lectern, iris_tree, tmp_path):
    resp = lectern.artifact("iris-tree", 1)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers.get("Content-Type", "").split(";")[0] == "application/octet-stream", resp.headers
    model = ok(lectern.model("iris-tree"))
    assert sha256(resp.content) == model["versions"][0]["sha256"]
    assert len(resp.content) == model["versions"][0]["size"]
    path = tmp_path / "iris-tree.onnx"
    path.write_bytes(resp.content)
    x = iris_x32()[:, [0, 3]]
    reference = ort_reference(path, {"X": x})
    served = lectern.infer("iris-tree", x)
    assert reference["output_label"].tolist() == served["output_label"].tolist()
    np.testing.assert_allclose(served["output_probability"], reference["output_probability"], rtol=0, atol=1e-5)
    # without ?format the same file; another format is refused
    plain = lectern.artifact("iris-tree", 1, fmt=None)
    assert plain.status_code == 200 and plain.content == resp.content
    assert_error(lectern.artifact("iris-tree", 1, fmt="pmml"), 400)
    assert_code(lectern.artifact("iris-tree", 9), 404, "version_not_found")


def test_the_pictures_of_a_decision_tree_are_svg_documents(lectern, iris_tree):
    job, _ = iris_tree
    tree = svg_text(parse_svg(lectern.picture(job["id"], "tree")))
    assert any(f in tree for f in job["features"]), f"the tree names no feature: {tree[:500]!r}"
    assert any(c in tree for c in IRIS_CLASSES), f"the tree names no class: {tree[:500]!r}"
    importance = svg_text(parse_svg(lectern.picture(job["id"], "importance")))
    assert all(f in importance for f in job["features"]), importance[:500]
    confusion = svg_text(parse_svg(lectern.picture(job["id"], "confusion")))
    assert all(c in confusion for c in IRIS_CLASSES), confusion[:500]
    assert_error(lectern.picture(job["id"], "no-such-picture"), 404)


def test_an_unknown_job_is_404(lectern):
    missing = "0" * 32
    assert_code(lectern.call("GET", f"/v1/training-jobs/{missing}"), 404, "job_not_found")
    assert_error(lectern.picture(missing, "tree"), 404)


def test_defaults_are_every_other_column_a_quarter_held_out_and_seed_0(lectern):
    job = lectern.train(dataset="iris", target="species", model="iris-defaults", algorithm="decision_tree")
    assert job["features"] == IRIS_FEATURES, job
    assert job["test_fraction"] == 0.25 and job["seed"] == 0, job
    assert count(job["train_rows"]) == 112 and count(job["test_rows"]) == 38, job
    assert job["params"] == {"max_depth": None, "min_samples_leaf": 1, "min_samples_split": 2,
                             "criterion": "gini"}, job["params"]
    check_classification_metrics(job, IRIS_CLASSES)


# =========================================================================== training: held-out rows

def test_named_test_rows_are_held_out_and_v2_reproduces_the_accuracy(lectern, trained):
    features = list(reversed(IRIS_FEATURES))   # X takes the features in the request's order
    _, test = iris_split()
    job = trained("iris-holdout", dataset="iris", target="species", model="iris-holdout",
                  algorithm="decision_tree", features=features, params={"max_depth": 3},
                  test_rows=[int(r) for r in test], seed=1)
    assert count(job["test_rows"]) == len(test) and count(job["train_rows"]) == 150 - len(test), job
    assert job["features"] == features
    check_classification_metrics(job, IRIS_CLASSES)
    x = iris_x32()[test][:, [IRIS_FEATURES.index(f) for f in features]]
    predicted = lectern.infer("iris-holdout", x)["output_label"]
    truth = iris_y()[test]
    accuracy = float((predicted == truth).mean())
    assert accuracy == pytest.approx(job["metrics"]["accuracy"], abs=1 / len(test) + 1e-9), (
        accuracy, job["metrics"]["accuracy"])
    confusion = np.zeros((3, 3), int)
    for t, p in zip(truth, predicted):
        confusion[t, p] += 1
    assert np.abs(confusion - np.array(job["metrics"]["confusion"])).sum() <= 2, (confusion, job["metrics"])


@pytest.mark.parametrize("algorithm", sorted(CLASSIFIERS))
def test_each_classifier_on_iris_is_within_003_of_scikit_learn_on_the_same_split(lectern, trained, algorithm):
    job = iris_comparison_job(lectern, trained, algorithm)
    assert job["algorithm"] == algorithm and job["task"] == "classification", job
    check_classification_metrics(job, IRIS_CLASSES)
    train, test = iris_split()
    _, estimator = CLASSIFIERS[algorithm]
    x32 = iris_table()[0].astype(np.float32).astype(np.float64)
    y = iris_y()
    reference = estimator().fit(x32[train], y[train])
    sklearn_accuracy = float((reference.predict(x32[test]) == y[test]).mean())
    assert abs(job["metrics"]["accuracy"] - sklearn_accuracy) <= TOLERANCE, (
        f"iris/{algorithm}: Lectern {job['metrics']['accuracy']:.4f}, scikit-learn {sklearn_accuracy:.4f}")
    # served at once, and the served model is the one the metrics describe
    predicted = lectern.infer(f"iris-{algorithm}", iris_x32()[test])["output_label"]
    assert float((predicted == y[test]).mean()) == pytest.approx(job["metrics"]["accuracy"], abs=1 / len(test) + 1e-9)


def test_linear_regression_on_diabetes_is_within_003_of_scikit_learn_on_the_same_split(lectern, trained):
    job = diabetes_job(lectern, trained, "linear_regression")
    check_regression_metrics(job)
    assert job["params"] == {}, job["params"]
    train, test = diabetes_split()
    _, estimator = REGRESSORS["linear_regression"]
    x, y = diabetes_table()
    x32 = x.astype(np.float32).astype(np.float64)
    sklearn_r2 = r2_score(y[test], estimator().fit(x32[train], y[train]).predict(x32[test]))
    assert abs(job["metrics"]["r2"] - sklearn_r2) <= TOLERANCE, (job["metrics"], sklearn_r2)


# =========================================================================== training: regression

def test_a_regression_tree_on_diabetes_reports_r2_mae_rmse_and_v2_reproduces_them(lectern, trained, tmp_path):
    job = diabetes_job(lectern, trained, "decision_tree")
    check_regression_metrics(job)
    assert job["features"] == DIABETES_FEATURES, job
    assert job["params"]["max_depth"] == 4, job["params"]
    _, test = diabetes_split()
    x, y = diabetes_table()
    meta = ok(lectern.call("GET", "/v2/models/diabetes-decision_tree"))
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 10]}], meta
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["output_label"]["datatype"] == "FP32" and outputs["output_label"]["shape"] == [-1], outputs
    predicted = lectern.infer("diabetes-decision_tree", x[test])["output_label"].astype(np.float64)
    assert predicted.shape == (len(test),)
    m = job["metrics"]
    assert r2_score(y[test], predicted) == pytest.approx(m["r2"], abs=1e-3), m
    assert float(np.abs(y[test] - predicted).mean()) == pytest.approx(m["mae"], rel=1e-3), m
    assert float(np.sqrt(((y[test] - predicted) ** 2).mean())) == pytest.approx(m["rmse"], rel=1e-3), m
    # the artifact gives the served answers on every row
    resp = lectern.artifact("diabetes-decision_tree", job["version"])
    assert resp.status_code == 200, resp.text[:300]
    path = tmp_path / "diabetes.onnx"
    path.write_bytes(resp.content)
    reference = ort_reference(path, {"X": x.astype(np.float32)})
    served = lectern.infer("diabetes-decision_tree", x)
    np.testing.assert_allclose(served["output_label"], reference["output_label"].reshape(-1), rtol=1e-5, atol=1e-3)


# (algorithm, the job's factory) -> the pictures it has; the others are 404 picture_not_found.
PICTURE_CASES = [
    ("iris-decision_tree", {"tree", "importance", "confusion"}),
    ("iris-random_forest", {"tree", "importance", "confusion"}),
    ("iris-logistic_regression", {"importance", "confusion"}),
    ("iris-knn", {"confusion"}),
    ("diabetes-decision_tree", {"tree", "importance"}),
    ("diabetes-linear_regression", {"importance"}),
]


@pytest.mark.parametrize("case,expected", PICTURE_CASES, ids=[c[0] for c in PICTURE_CASES])
def test_each_algorithm_has_its_pictures_and_no_others(lectern, trained, case, expected):
    kind, algorithm = case.split("-", 1)
    job = iris_comparison_job(lectern, trained, algorithm) if kind == "iris" else diabetes_job(lectern, trained, algorithm)
    assert set(job["pictures"]) == expected, job["pictures"]
    for picture in PICTURES:
        resp = lectern.picture(job["id"], picture)
        if picture in expected:
            parse_svg(resp)
        else:
            assert_code(resp, 404, "picture_not_found")


# =========================================================================== training: determinism, listing

def test_the_same_request_and_seed_give_the_same_onnx_bytes(lectern):
    request = dict(dataset="iris", target="species", model="iris-twice", algorithm="random_forest",
                   params={"n_trees": 10}, test_fraction=0.3, seed=3)
    first = lectern.train(**request)
    second = lectern.train(**request)
    assert (first["version"], second["version"]) == (1, 2), (first, second)
    assert first["metrics"] == second["metrics"]
    versions = {v["version"]: v for v in ok(lectern.model("iris-twice"))["versions"]}
    assert versions[1]["sha256"] == versions[2]["sha256"], versions
    one, two = lectern.artifact("iris-twice", 1), lectern.artifact("iris-twice", 2)
    assert one.status_code == two.status_code == 200
    assert one.content == two.content and sha256(one.content) == versions[1]["sha256"]
    # listing: newest first, by model, limited
    listed = lectern.jobs(model="iris-twice")
    assert [j["id"] for j in listed] == [second["id"], first["id"]], listed
    assert [j["id"] for j in lectern.jobs(model="iris-twice", limit=1)] == [second["id"]]
    everything = lectern.jobs()
    ids = [j["id"] for j in everything]
    assert ids.index(second["id"]) < ids.index(first["id"]), ids
    created = [j["created_at_ms"] for j in everything]
    assert created == sorted(created, reverse=True), created


def test_an_integer_target_with_few_values_is_classification(lectern):
    lectern.upload_ok("iris-int", iris_int_target_csv(), status=201)
    job = lectern.train(dataset="iris-int", target="species", model="iris-int", algorithm="decision_tree",
                        params={"max_depth": 3})
    assert job["task"] == "classification", job
    assert [float(c) for c in job["classes"]] == [0.0, 1.0, 2.0], job["classes"]
    check_classification_metrics(job, job["classes"])


def test_a_category_feature_is_coded_in_order_of_first_appearance_and_missing_is_the_most_frequent(lectern):
    lectern.upload_ok("colours", colours_csv(), status=201)
    job = lectern.train(dataset="colours", target="ripe", model="colours", algorithm="decision_tree",
                        features=["colour"], test_rows=list(range(3, 60, 4)))
    assert job["classes"] == ["no", "yes"], job
    assert job["metrics"]["accuracy"] == 1.0, job["metrics"]
    x = np.array([[COLOUR_CODES["green"]], [COLOUR_CODES["red"]], [COLOUR_CODES["blue"]]], np.float32)
    labels = [job["classes"][i] for i in lectern.infer("colours", x)["output_label"]]
    assert labels == ["no", "yes", "no"], f"green, red, blue (coded 0, 1, 2) gave {labels}"
    resp = lectern.infer_binary("colours", np.array([[np.nan]], np.float32))
    assert resp.status_code == 200, resp.text[:300]
    _, out = parse_infer_response(resp)
    assert job["classes"][int(out["output_label"][0])] == "yes", "a missing colour is the most frequent one (red)"


def test_missing_feature_values_are_filled_in_training_and_serving(lectern):
    job = lectern.train(dataset="mixed", target="label", model="mixed-tree", algorithm="decision_tree",
                        features=["a", "b"])
    check_classification_metrics(job, ["no", "yes"])
    resp = lectern.infer_binary("mixed-tree", np.array([[np.nan, np.nan], [1.0, np.nan]], np.float32))
    assert resp.status_code == 200, resp.text[:300]
    _, out = parse_infer_response(resp)
    assert np.isfinite(out["output_probability"]).all(), out


def test_deleting_a_dataset_keeps_the_jobs_and_models_it_made(lectern):
    lectern.upload_ok("short-lived", iris_csv(), status=201)
    job = lectern.train(dataset="short-lived", target="species", model="orphan-tree", algorithm="decision_tree",
                        params={"max_depth": 2})
    assert lectern.call("DELETE", "/v1/datasets/short-lived").status_code == 204
    assert lectern.job(job["id"]) == job
    parse_svg(lectern.picture(job["id"], "tree"))
    assert lectern.infer("orphan-tree", iris_x32()[:5])["output_label"].shape == (5,)
    assert_code(lectern.submit(dataset="short-lived", target="species", model="orphan-tree",
                               algorithm="decision_tree"), 404, "dataset_not_found")


# =========================================================================== refused requests

MIXED = dict(dataset="mixed", target="label", algorithm="decision_tree", features=["a", "b"])

# (id, changes to MIXED, words the message must contain)
BAD_REQUESTS = [
    ("unknown-target", {"target": "colour"}, ["colour"]),
    ("unknown-feature", {"features": ["a", "weight"]}, ["weight"]),
    ("one-class-target", {"target": "one"}, []),
    ("text-feature", {"features": ["a", "note"]}, ["note"]),
    ("text-target", {"target": "note"}, ["note"]),
    ("target-among-features", {"features": ["a", "label"]}, ["label"]),
    ("empty-feature-list", {"features": []}, []),
    ("unknown-algorithm", {"algorithm": "gradient_boosting"}, ["gradient_boosting"]),
    ("unknown-param", {"params": {"max_dept": 3}}, ["max_dept"]),
    ("max-depth-0", {"params": {"max_depth": 0}}, ["max_depth"]),
    ("max-depth-101", {"params": {"max_depth": 101}}, ["max_depth"]),
    ("max-depth-wrong-type", {"params": {"max_depth": "three"}}, ["max_depth"]),
    ("max-depth-fraction", {"params": {"max_depth": 2.5}}, ["max_depth"]),
    ("min-samples-split-1", {"params": {"min_samples_split": 1}}, ["min_samples_split"]),
    ("min-samples-leaf-0", {"params": {"min_samples_leaf": 0}}, ["min_samples_leaf"]),
    ("criterion-unknown", {"params": {"criterion": "gain"}}, ["criterion"]),
    ("n-trees-0", {"algorithm": "random_forest", "params": {"n_trees": 0}}, ["n_trees"]),
    ("n-trees-1001", {"algorithm": "random_forest", "params": {"n_trees": 1001}}, ["n_trees"]),
    ("max-features-0", {"algorithm": "random_forest", "params": {"max_features": 0}}, ["max_features"]),
    ("max-features-over-features", {"algorithm": "random_forest", "params": {"max_features": 3}}, ["max_features"]),
    ("c-0", {"algorithm": "logistic_regression", "params": {"C": 0}}, ["C"]),
    ("c-negative", {"algorithm": "logistic_regression", "params": {"C": -1.0}}, ["C"]),
    ("k-0", {"algorithm": "knn", "params": {"k": 0}}, ["k"]),
    ("k-over-training-rows", {"algorithm": "knn", "params": {"k": 1000}}, ["k"]),
    ("linear-regression-has-no-params", {"algorithm": "linear_regression", "target": "val", "params": {"C": 1.0}},
     ["C"]),
    ("test-fraction-0", {"test_fraction": 0}, []),
    ("test-fraction-1", {"test_fraction": 1}, []),
    ("test-fraction-1.5", {"test_fraction": 1.5}, []),
    ("test-fraction-negative", {"test_fraction": -0.25}, []),
    ("test-fraction-leaves-no-test-row", {"test_fraction": 0.001}, []),
    ("test-fraction-leaves-no-training-row", {"test_fraction": 0.999}, []),
    ("logistic-regression-on-numbers", {"algorithm": "logistic_regression", "target": "val"}, ["val"]),
    ("linear-regression-on-classes", {"algorithm": "linear_regression", "target": "label"}, ["label"]),
]


@pytest.mark.parametrize("case,changes,mentions", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_a_request_that_does_not_fit_the_dataset_is_400_and_queues_nothing(lectern, case, changes, mentions):
    model = f"refused-{case}"
    request = {**MIXED, "model": model, **changes}
    before = [j["id"] for j in lectern.jobs(limit=1000)]
    assert_code(lectern.submit(**request), 400, "invalid_training_request", *mentions)
    assert lectern.jobs(model=model) == []
    assert [j["id"] for j in lectern.jobs(limit=1000)] == before
    assert lectern.versions(model) == []


def test_a_target_with_no_values_is_400(lectern):
    body = csv_bytes(["a", "empty", "label"], [[i, "NA", ["x", "y"][i % 2]] for i in range(20)])
    lectern.upload_ok("no-values", body, status=201)
    assert_code(lectern.submit(dataset="no-values", target="empty", model="refused-no-values",
                               algorithm="decision_tree", features=["a"]), 400, "invalid_training_request")
    assert lectern.jobs(model="refused-no-values") == []


BAD_BODIES = [
    ("not-json", b"{"),
    ("not-an-object", b"[]"),
    ("no-model", json.dumps({k: v for k, v in MIXED.items()}).encode()),
    ("no-target", json.dumps({**{k: v for k, v in MIXED.items() if k != "target"}, "model": "x"}).encode()),
    ("features-not-a-list", json.dumps({**MIXED, "model": "x", "features": "a"}).encode()),
    ("model-leading-dot", json.dumps({**MIXED, "model": ".x"}).encode()),
    ("model-with-space", json.dumps({**MIXED, "model": "a b"}).encode()),
    ("model-129-bytes", json.dumps({**MIXED, "model": "m" * 129}).encode()),
]


@pytest.mark.parametrize("case,body", BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_a_bad_body_or_model_name_is_400_invalid_request(lectern, case, body):
    before = len(lectern.jobs(limit=1000))
    resp = lectern.call("POST", "/v1/training-jobs", data=body, headers={"Content-Type": "application/json"})
    assert_code(resp, 400, "invalid_request")
    assert len(lectern.jobs(limit=1000)) == before


def test_training_on_an_unknown_dataset_is_404_and_queues_nothing(lectern):
    assert_code(lectern.submit(dataset="no-such-data", target="species", model="refused-no-data",
                               algorithm="decision_tree"), 404, "dataset_not_found")
    assert lectern.jobs(model="refused-no-data") == []
