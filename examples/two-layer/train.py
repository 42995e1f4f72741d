"""Train the two-layer digit triage models and export them for Lectern.

Layer 1, `digit-category`, sorts an 8x8 digit image into one of three categories by the
shape of the digit:

    round     0, 6, 8, 9
    straight  1, 4, 7
    curved    2, 3, 5

Layer 2 is one model per category (`digit-round`, `digit-straight`, `digit-curved`),
trained on that category's training images only, that names the digit.

Data: scikit-learn's `load_digits` (1797 images, 64 pixels valued 0..16), split with

    train_test_split(digits.data, digits.target, test_size=0.2, random_state=0,
                     stratify=digits.target)

(1437 training images, 360 test images). Every model is a StandardScaler + MLPClassifier
(one hidden layer of 32 units) pipeline on the 64 raw pixel values, exported with skl2onnx's
default options: input `X` FP32 [None, 64], outputs `output_label` (INT64 class index) and
`output_probability` (a ZipMap, served by Lectern as FP32 [N, classes]). Class i is line i
of the model's labels.txt. Each config.toml has an `[image]` section so that Lectern turns
a PNG or JPEG into that input: 8x8 grey, flat, pixel 0..255 scaled to 0..16.

The script checks the exported files with onnxruntime and prints the end-to-end accuracy
on the test split (category model, then the model the category picks), on the raw pixel
values and after a PNG round trip (pixel = round(v * 255 / 16) in an 8-bit grey PNG, read
back and scaled by 16 / 255, as Lectern does).

Run: .venv/bin/python examples/two-layer/train.py
"""
import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SEED = 0
GROUPS = {"round": [0, 6, 8, 9], "straight": [1, 4, 7], "curved": [2, 3, 5]}
CATEGORY_MODEL = "digit-category"
DIGIT_MODELS = {category: f"digit-{category}" for category in GROUPS}
HERE = Path(__file__).resolve().parent
MODELS = HERE / "models"

CONFIG = """\
labels = "labels.txt"

# How Lectern turns an uploaded PNG or JPEG into this model's input X [N, 64].
[image]
width = 8
height = 8
mode = "gray"
layout = "flat"
range = [0.0, 16.0]
invert = false
"""


def split():
    """The train/test split every script and test of this example uses."""
    digits = load_digits()
    x = digits.data.astype(np.float32)
    return train_test_split(x, digits.target, test_size=0.2, random_state=SEED, stratify=digits.target)


def category_of(digits):
    """Category index (the order of GROUPS) of each digit."""
    index = {d: i for i, members in enumerate(GROUPS.values()) for d in members}
    return np.array([index[d] for d in digits], dtype=np.int64)


def classifier():
    return make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(32,), alpha=1.0, max_iter=2000, random_state=SEED),
    )


def save(name, model, x, labels):
    folder = MODELS / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    onx = to_onnx(model, x[:1], target_opset={"": 15, "ai.onnx.ml": 3})
    (folder / "1" / "model.onnx").write_bytes(onx.SerializeToString())
    (folder / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
    (folder / "config.toml").write_text(CONFIG)


def train():
    x_train, _, y_train, _ = split()
    category = classifier().fit(x_train, category_of(y_train))
    save(CATEGORY_MODEL, category, x_train, list(GROUPS))
    for name, members in GROUPS.items():
        rows = np.isin(y_train, members)
        y = np.array([members.index(d) for d in y_train[rows]], dtype=np.int64)
        model = classifier().fit(x_train[rows], y)
        save(DIGIT_MODELS[name], model, x_train[rows], [str(d) for d in members])


def session(name):
    return ort.InferenceSession(str(MODELS / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])


def run(sess, x):
    """(labels, probabilities [N, classes]) from an exported model; the ZipMap undone."""
    labels, maps = sess.run(None, {"X": x})
    probabilities = np.array([[row[k] for k in sorted(row)] for row in maps], dtype=np.float32)
    return labels, probabilities


def predict(x):
    """The pipeline on the exported files: (category index, digit) per row of x."""
    categories, _ = run(session(CATEGORY_MODEL), x)
    digits = np.full(len(x), -1, dtype=np.int64)
    for index, (name, members) in enumerate(GROUPS.items()):
        rows = categories == index
        if rows.any():
            labels, _ = run(session(DIGIT_MODELS[name]), x[rows])
            digits[rows] = np.array(members)[labels]
    return categories, digits


def to_png(image):
    """One 64-pixel image (0..16) as 8-bit grey PNG bytes."""
    pixels = np.rint(image.reshape(8, 8) * 255 / 16).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def from_png(data):
    """PNG bytes back to 64 values in 0..16, scaled as Lectern's [image] range = [0, 16] does."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32)
    return (pixels * 16 / 255).reshape(64)


def check_signatures():
    for name in [CATEGORY_MODEL, *DIGIT_MODELS.values()]:
        sess = session(name)
        inputs = [(i.name, i.type, i.shape) for i in sess.get_inputs()]
        outputs = [(o.name, o.type) for o in sess.get_outputs()]
        assert inputs == [("X", "tensor(float)", [None, 64])], inputs
        assert [o[0] for o in outputs] == ["output_label", "output_probability"], outputs
        labels = (MODELS / name / "labels.txt").read_text().split()
        print(f"{name}: input {inputs[0]}, outputs {outputs}, labels {labels}")


def main():
    train()
    check_signatures()
    _, x_test, _, y_test = split()
    categories, digits = predict(x_test)
    print(f"test images: {len(x_test)}")
    print(f"category accuracy: {(categories == category_of(y_test)).mean():.4f}")
    end_to_end = (digits == y_test).mean()
    print(f"end-to-end accuracy (onnxruntime, exported files): {end_to_end:.4f}")
    x_png = np.stack([from_png(to_png(image)) for image in x_test])
    _, digits_png = predict(x_png)
    png = (digits_png == y_test).mean()
    print(f"end-to-end accuracy after the PNG round trip: {png:.4f}")
    assert end_to_end >= 0.9 and png >= 0.9, (end_to_end, png)


if __name__ == "__main__":
    main()
