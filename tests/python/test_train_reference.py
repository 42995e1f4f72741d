"""The training engine (crates/lectern-train) against scikit-learn on the same data and split.

For every data set that ships with scikit-learn used here (iris, wine, breast cancer, digits;
diabetes for a numeric target) and every algorithm, the data is exported to CSV, a split is
drawn once, and both scikit-learn and Lectern's `fit` example train on the same training rows
with the same parameters. Lectern's held-out accuracy (R² for diabetes) must be within 0.03 of
scikit-learn's, and the exported ONNX file, run by onnxruntime on the held-out rows, must give
exactly Lectern's predictions (as must tract, which the example runs).

The example is built with cargo unless `LECTERN_TRAIN_FIT_BIN` names it.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn import datasets
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

REPO_ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 0.03
TEST_SIZE = 0.3
SPLIT_SEED = 0


@pytest.fixture(scope="session")
def fit_bin() -> Path:
    if os.environ.get("LECTERN_TRAIN_FIT_BIN"):
        return Path(os.environ["LECTERN_TRAIN_FIT_BIN"])
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "lectern-train", "--example", "fit"], cwd=REPO_ROOT, check=True
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    return target / "debug" / "examples" / "fit"


LOADERS = {
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
    "digits": datasets.load_digits,
    "diabetes": datasets.load_diabetes,
}

# Lectern algorithm, its parameters, and the scikit-learn estimator with the same ones.
CLASSIFIERS = {
    "decision_tree": ({}, lambda: DecisionTreeClassifier(random_state=0)),
    "random_forest": ({"n_trees": "100"}, lambda: RandomForestClassifier(n_estimators=100, random_state=0)),
    # Lectern standardizes the features for logistic regression; its C is scikit-learn's C.
    "logistic_regression": (
        {"C": "1.0"},
        lambda: make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)),
    ),
    "knn": ({"k": "5"}, lambda: KNeighborsClassifier(n_neighbors=5)),
}
REGRESSORS = {
    "decision_tree": ({"max_depth": "4"}, lambda: DecisionTreeRegressor(max_depth=4, random_state=0)),
    "random_forest": (
        {"n_trees": "100"},
        lambda: RandomForestRegressor(n_estimators=100, max_features=1.0, random_state=0),
    ),
    "linear_regression": ({}, lambda: LinearRegression()),
    "knn": ({"k": "5"}, lambda: KNeighborsRegressor(n_neighbors=5)),
}


def prepare(tmp_path: Path, name: str):
    """The data set as CSV (features, then `target`) and the held-out row indices."""
    data = LOADERS[name]()
    x, y = data.data.astype(np.float64), data.target
    columns = [f"f{i}" for i in range(x.shape[1])]
    csv = tmp_path / f"{name}.csv"
    with csv.open("w") as f:
        f.write(",".join(columns + ["target"]) + "\n")
        for row, target in zip(x, y):
            f.write(",".join(repr(float(v)) for v in row) + f",{target}\n")
    stratify = None if name == "diabetes" else y
    _, test_rows = train_test_split(
        np.arange(len(y)), test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=stratify
    )
    test_rows = np.sort(test_rows)
    rows_file = tmp_path / f"{name}-test-rows.json"
    rows_file.write_text(json.dumps([int(r) for r in test_rows]))
    # scikit-learn sees the values the ONNX model takes (FP32), as Lectern does.
    x32 = x.astype(np.float32).astype(np.float64)
    train_mask = np.ones(len(y), bool)
    train_mask[test_rows] = False
    return csv, rows_file, x32[train_mask], y[train_mask], x32[test_rows], y[test_rows]


def run_fit(fit_bin: Path, tmp_path: Path, csv: Path, rows_file: Path, algorithm: str, params: dict):
    out = tmp_path / f"out-{algorithm}"
    args = [str(fit_bin), str(csv), "target", algorithm, str(out), "--test-rows", str(rows_file), "--seed", "0"]
    for k, v in params.items():
        args += ["--param", f"{k}={v}"]
    subprocess.run(args, check=True, timeout=600)
    return out / "model.onnx", json.loads((out / "result.json").read_text())


def onnxruntime_outputs(model: Path, inputs):
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = np.asarray(inputs, dtype=np.float32)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": x})))


# Known misses of the 0.03 rule: (Lectern's accuracy, scikit-learn's, why). Such a case must
# still give exactly these two numbers (so any change is seen) and pass the ONNX checks.
KNOWN_MISSES = {
    ("wine", "decision_tree"): (
        48 / 54,
        51 / 54,
        "3 of 54 test rows. A single tree differs where several splits are equally good: "
        "scikit-learn picks among them with its random feature order, smartcore takes the first "
        "feature. scikit-learn alone ranges 0.833-0.981 over random_state 0-19 (mean 0.914) on "
        "this split; see test_decision_tree_accuracy_is_inside_scikit_learns_own_spread.",
    ),
}


def classifier_cases():
    for name in ["iris", "wine", "breast_cancer", "digits"]:
        for algorithm in sorted(CLASSIFIERS):
            yield pytest.param(name, algorithm, id=f"{name}-{algorithm}")


@pytest.mark.parametrize("name,algorithm", classifier_cases())
def test_classifier_accuracy_is_within_003_of_scikit_learn_and_onnx_agrees(fit_bin, tmp_path, name, algorithm):
    csv, rows_file, x_train, y_train, x_test, y_test = prepare(tmp_path, name)
    params, estimator = CLASSIFIERS[algorithm]
    reference = estimator().fit(x_train, y_train)
    sklearn_accuracy = float((reference.predict(x_test) == y_test).mean())

    model, result = run_fit(fit_bin, tmp_path, csv, rows_file, algorithm, params)
    assert result["test_rows"] == json.loads(rows_file.read_text())
    classes = [int(c) for c in result["classes"]]
    lectern_labels = np.array([classes[int(p)] for p in result["predictions"]])
    lectern_accuracy = float((lectern_labels == y_test).mean())
    assert result["metrics"]["accuracy"] == pytest.approx(lectern_accuracy)
    miss = KNOWN_MISSES.get((name, algorithm))
    if miss:
        assert (lectern_accuracy, sklearn_accuracy) == pytest.approx(miss[:2]), miss[2]
    else:
        assert abs(lectern_accuracy - sklearn_accuracy) <= TOLERANCE, (
            f"{name}/{algorithm}: Lectern {lectern_accuracy:.4f}, scikit-learn {sklearn_accuracy:.4f}"
        )

    outputs = onnxruntime_outputs(model, result["inputs"])
    assert outputs["output_label"].dtype == np.int64
    assert outputs["output_probability"].shape == (len(y_test), len(classes))
    assert outputs["output_label"].tolist() == [int(p) for p in result["predictions"]]
    assert [int(p) for p in result["tract_predictions"]] == [int(p) for p in result["predictions"]]
    np.testing.assert_allclose(
        outputs["output_probability"], np.asarray(result["tract_probabilities"]), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("algorithm", sorted(REGRESSORS))
def test_regressor_r2_is_within_003_of_scikit_learn_and_onnx_agrees(fit_bin, tmp_path, algorithm):
    csv, rows_file, x_train, y_train, x_test, y_test = prepare(tmp_path, "diabetes")
    params, estimator = REGRESSORS[algorithm]
    reference = estimator().fit(x_train, y_train)
    predicted = reference.predict(x_test)
    sklearn_r2 = 1 - ((y_test - predicted) ** 2).sum() / ((y_test - y_test.mean()) ** 2).sum()

    model, result = run_fit(fit_bin, tmp_path, csv, rows_file, algorithm, params)
    lectern_r2 = result["metrics"]["r2"]
    assert abs(lectern_r2 - sklearn_r2) <= TOLERANCE, (
        f"diabetes/{algorithm}: Lectern R² {lectern_r2:.4f}, scikit-learn {sklearn_r2:.4f}"
    )
    rust = np.asarray(result["predictions"])
    outputs = onnxruntime_outputs(model, result["inputs"])
    assert outputs["output_label"].dtype == np.float32
    np.testing.assert_allclose(outputs["output_label"], rust, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(np.asarray(result["tract_predictions"]), rust, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "digits"])
def test_decision_tree_accuracy_is_inside_scikit_learns_own_spread(fit_bin, tmp_path, name):
    """A single tree's accuracy depends on how ties between equally good splits are broken;
    scikit-learn's own accuracy moves with `random_state` alone. Lectern's must lie within
    0.03 of the range scikit-learn covers over random_state 0-19 on the same split."""
    csv, rows_file, x_train, y_train, x_test, y_test = prepare(tmp_path, name)
    scores = [
        float((DecisionTreeClassifier(random_state=rs).fit(x_train, y_train).predict(x_test) == y_test).mean())
        for rs in range(20)
    ]
    _, result = run_fit(fit_bin, tmp_path, csv, rows_file, "decision_tree", {})
    accuracy = result["metrics"]["accuracy"]
    assert min(scores) - TOLERANCE <= accuracy <= max(scores) + TOLERANCE, (accuracy, min(scores), max(scores))
