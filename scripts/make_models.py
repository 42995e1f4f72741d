"""Build the bundled example models under examples/models/.

Every model is trained with scikit-learn on a data set that ships with
scikit-learn and exported with skl2onnx's *default* options, so the files end
in a ZipMap node exactly as a user's first upload would. Two extra models are
built with onnx.helper: `dtypes` (one input per V2 datatype, for protocol
tests) and `digits-cnn` (a small convolutional net, fixed seeded weights).

Run: python scripts/make_models.py [OUT_DIR]   (default: examples/models)
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

SEED = 0


def save(out: Path, name: str, version: int, model, config: str = "", labels=None):
    folder = out / name
    (folder / str(version)).mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    (folder / str(version) / "model.onnx").write_bytes(data)
    if labels is not None:
        (folder / "labels.txt").write_text("".join(f"{l}\n" for l in labels))
    if config:
        (folder / "config.toml").write_text(config)


def export(estimator, x):
    return to_onnx(estimator, x[:1].astype(np.float32), target_opset={"": 15, "ai.onnx.ml": 3})


def sklearn_models(out: Path):
    iris = load_iris()
    xi, yi = iris.data.astype(np.float32), iris.target
    cancer = load_breast_cancer()
    xc, yc = cancer.data.astype(np.float32), cancer.target
    digits = load_digits()
    xd, yd = (digits.data / 16.0).astype(np.float32), digits.target
    xd_train, _, yd_train, _ = train_test_split(xd, yd, test_size=0.25, random_state=SEED)

    labelled = 'labels = "labels.txt"\n'

    lr1 = LogisticRegression(max_iter=500, C=1.0).fit(xi, yi)
    save(out, "iris-logreg", 1, export(lr1, xi), labelled, iris.target_names)
    lr2 = LogisticRegression(max_iter=500, C=0.05).fit(xi, yi)
    save(out, "iris-logreg", 2, export(lr2, xi), labelled, iris.target_names)

    forest = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=SEED).fit(xi, yi)
    save(out, "iris-forest", 1, export(forest, xi), labelled, iris.target_names)

    tree = DecisionTreeClassifier(max_depth=5, random_state=SEED).fit(xc, yc)
    save(out, "cancer-tree", 1, export(tree, xc), labelled, cancer.target_names)

    scaled = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(xc, yc)
    save(out, "cancer-scaled-logreg", 1, export(scaled, xc), labelled, cancer.target_names)

    mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=400, random_state=SEED)
    mlp.fit(xd_train, yd_train)
    save(out, "digits-mlp", 1, export(mlp, xd), labelled, digits.target_names)


def dtypes_model(out: Path):
    """One input per V2 datatype; numeric outputs are `x + x`, BOOL is `not x`, BYTES is identity."""
    kinds = [
        ("BOOL", TensorProto.BOOL), ("UINT8", TensorProto.UINT8), ("UINT16", TensorProto.UINT16),
        ("UINT32", TensorProto.UINT32), ("UINT64", TensorProto.UINT64), ("INT8", TensorProto.INT8),
        ("INT16", TensorProto.INT16), ("INT32", TensorProto.INT32), ("INT64", TensorProto.INT64),
        ("FP16", TensorProto.FLOAT16), ("FP32", TensorProto.FLOAT), ("FP64", TensorProto.DOUBLE),
        ("BYTES", TensorProto.STRING),
    ]
    inputs, outputs, nodes = [], [], []
    for v2, onnx_type in kinds:
        name = v2.lower()
        inputs.append(helper.make_tensor_value_info(f"in_{name}", onnx_type, ["N", 3]))
        outputs.append(helper.make_tensor_value_info(f"out_{name}", onnx_type, ["N", 3]))
        if v2 == "BOOL":
            nodes.append(helper.make_node("Not", [f"in_{name}"], [f"out_{name}"]))
        elif v2 == "BYTES":
            nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
        else:
            nodes.append(helper.make_node("Add", [f"in_{name}", f"in_{name}"], [f"out_{name}"]))
    graph = helper.make_graph(nodes, "dtypes", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    save(out, "dtypes", 1, model, "max_batch_size = 0\n")


def digits_cnn(out: Path):
    """A small CNN over 8x8 grey images: Conv(4,3x3)+Relu, MaxPool 2x2, Flatten, Gemm(10), Softmax."""
    rng = np.random.default_rng(SEED)
    w1 = rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, (4,)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (10, 4 * 4 * 4)).astype(np.float32)
    b2 = rng.normal(0, 0.1, (10,)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f1"]),
        helper.make_node("Gemm", ["f1", "w2", "b2"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "digits-cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    save(out, "digits-cnn", 1, model, "max_batch_size = 64\n", [str(d) for d in range(10)])


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "examples" / "models"
    out.mkdir(parents=True, exist_ok=True)
    sklearn_models(out)
    dtypes_model(out)
    digits_cnn(out)
    print(json.dumps(sorted(p.name for p in out.iterdir() if p.is_dir())))


if __name__ == "__main__":
    main()
