"""Writes expected.rs: reference outputs for the conformance test (tests/conformance.rs).

The references do not come from either engine. For the scikit-learn models they are
scikit-learn's own `predict` and `predict_proba`, from estimators trained exactly as
scripts/make_models.py trains them (same data, parameters and seeds); for digits-cnn a plain
numpy forward pass over the weights read from the bundled file. As a guard against drift
(another scikit-learn version, a regenerated model), every reference is checked here against
onnxruntime on the bundled file before it is written.

Run from the repository root: .venv/bin/python crates/lectern-backends/tests/conformance/make_expected.py
"""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

SEED = 0
ROOT = Path(__file__).resolve().parents[4]
MODELS = ROOT / "examples" / "models"
OUT = Path(__file__).with_name("expected.rs")
TOLERANCE = 1e-5


def f32(v) -> str:
    return np.format_float_positional(np.float32(v), unique=True, trim="0")


def rows_of(x, idx):
    return np.ascontiguousarray(x[idx]).astype(np.float32)


def onnxruntime_outputs(model, version, name, x):
    s = ort.InferenceSession(str(MODELS / model / str(version) / "model.onnx"), providers=["CPUExecutionProvider"])
    return s.run(None, {name: x})


def check(model, version, name, x, labels, proba):
    out = onnxruntime_outputs(model, version, name, x)
    if labels is not None:
        ort_labels, ort_maps = out
        assert np.array_equal(ort_labels, labels), (model, ort_labels, labels)
        ort_proba = np.array([[m[k] for k in sorted(m)] for m in ort_maps], dtype=np.float32)
    else:
        ort_proba = out[0]
    diff = float(np.max(np.abs(ort_proba - proba)))
    assert diff <= TOLERANCE, (model, version, diff)
    return diff


def sklearn_cases():
    iris = load_iris()
    xi, yi = iris.data.astype(np.float32), iris.target
    cancer = load_breast_cancer()
    xc, yc = cancer.data.astype(np.float32), cancer.target
    digits = load_digits()
    xd, yd = (digits.data / 16.0).astype(np.float32), digits.target
    xd_train, _, yd_train, _ = train_test_split(xd, yd, test_size=0.25, random_state=SEED)

    iris_rows = [0, 25, 50, 70, 83, 100, 119, 133, 149]
    cancer_rows = [0, 1, 19, 40, 73, 135, 300, 568]
    digits_rows = [0, 1, 2, 3, 11, 500, 1000, 1796]
    return [
        ("iris-logreg", 1, LogisticRegression(max_iter=500, C=1.0).fit(xi, yi), xi, iris_rows),
        ("iris-logreg", 2, LogisticRegression(max_iter=500, C=0.05).fit(xi, yi), xi, iris_rows),
        ("iris-forest", 1, RandomForestClassifier(n_estimators=20, max_depth=6, random_state=SEED).fit(xi, yi), xi, iris_rows),
        ("cancer-tree", 1, DecisionTreeClassifier(max_depth=5, random_state=SEED).fit(xc, yc), xc, cancer_rows),
        ("cancer-scaled-logreg", 1, make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(xc, yc), xc, cancer_rows),
        ("digits-mlp", 1, MLPClassifier(hidden_layer_sizes=(32,), max_iter=400, random_state=SEED).fit(xd_train, yd_train), xd, digits_rows),
    ]


def cnn_forward(model_file: Path, images: np.ndarray) -> np.ndarray:
    """Conv(3x3, pad 1)+bias, Relu, MaxPool 2x2, Flatten, Gemm(transB), Softmax, in float64."""
    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in onnx.load(str(model_file)).graph.initializer}
    x = images.astype(np.float64)
    n, _, h, wd = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros((n, w["w1"].shape[0], h, wd))
    for o in range(w["w1"].shape[0]):
        for i in range(h):
            for j in range(wd):
                conv[:, o, i, j] = np.sum(padded[:, :, i:i + 3, j:j + 3] * w["w1"][o], axis=(1, 2, 3)) + w["b1"][o]
    relu = np.maximum(conv, 0)
    pooled = relu.reshape(n, relu.shape[1], h // 2, 2, wd // 2, 2).max(axis=(3, 5))
    logits = pooled.reshape(n, -1) @ w["w2"].T + w["b2"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def case(model, version, name, x, labels, proba) -> str:
    lines = [
        "    Case {",
        f'        model: "{model}",',
        f"        version: {version},",
        f'        input: "{name}",',
        f"        shape: &{list(x.shape)},",
        f"        x: &[{', '.join(f32(v) for v in x.ravel())}],",
        f"        labels: &[{', '.join(str(int(v)) for v in labels)}]," if labels is not None else "        labels: &[],",
        f"        classes: {proba.shape[1]},",
        f"        probabilities: &[{', '.join(f32(v) for v in proba.ravel())}],",
        "    },",
    ]
    return "\n".join(lines)


def main():
    cases = []
    for model, version, est, x, rows in sklearn_cases():
        xs = rows_of(x, rows)
        labels = est.predict(xs).astype(np.int64)
        proba = est.predict_proba(xs).astype(np.float32)
        diff = check(model, version, "X", xs, labels, proba)
        print(f"{model} v{version}: scikit-learn vs onnxruntime max |diff| {diff:.2e}")
        cases.append(case(model, version, "X", xs, labels, proba))

    images = rows_of(load_digits().images / 16.0, [0, 1, 2, 3, 11, 1000, 1796])[:, None, :, :]
    cnn_file = MODELS / "digits-cnn" / "1" / "model.onnx"
    proba = cnn_forward(cnn_file, images)
    diff = check("digits-cnn", 1, "image", images, None, proba)
    print(f"digits-cnn v1: numpy vs onnxruntime max |diff| {diff:.2e}")
    cases.append(case("digits-cnn", 1, "image", images, None, proba))

    header = (
        "// @generated by make_expected.py (beside this file): do not edit.\n"
        "// References from scikit-learn (predict, predict_proba) and a numpy forward pass,\n"
        "// not from either engine.\n\n"
    )
    OUT.write_text(header + "const CASES: &[Case] = &[\n" + "\n".join(cases) + "\n];\n")
    if shutil.which("rustfmt"):
        subprocess.run(["rustfmt", "--edition", "2021", str(OUT)], check=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
