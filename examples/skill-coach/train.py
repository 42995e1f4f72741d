"""Train the skill-coach classifier and export it for Lectern.

The data set is synthetic: every row is one learner practising one skill, with

    score       0..100   integer, clip(normal(mean 65, sd 20))
    attempts    1..20    integer, 1 + poisson(3), at most 20
    time_spent  1..120   integer minutes, uniform
    hints       0..10    integer, poisson(2), at most 10

and the label comes from this rule:

    mastery = score - 3 * hints - 2 * (attempts - 1)
    weak    if mastery <  50
    average if 50 <= mastery < 75
    strong  if mastery >= 75

then 3% of the rows (chosen at random) get their label moved one class up or down
(label noise; weak can only move up, strong only down). time_spent does not enter the
rule: the model has to learn to ignore it.

The model is a StandardScaler + multinomial LogisticRegression pipeline (the rule is
linear, so this is all it needs), exported with skl2onnx's default options: one input
`X`, FP32 [None, 4] in the order score, attempts, time_spent, hints; outputs
`output_label` (INT64, the class index) and `output_probability` (a ZipMap, which
Lectern serves as FP32 [N, 3]). Class i is line i of labels.txt: weak, average, strong.

Run: .venv/bin/python examples/skill-coach/train.py
"""
from pathlib import Path

import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SEED = 7
ROWS = 4000
NOISE = 0.03
FEATURES = ["score", "attempts", "time_spent", "hints"]
CLASSES = ["weak", "average", "strong"]
MODELS = Path(__file__).resolve().parent / "models"


def mastery(score, attempts, hints):
    """The generating rule's weighted score."""
    return score - 3 * hints - 2 * (attempts - 1)


def label(score, attempts, hints):
    """0 = weak, 1 = average, 2 = strong, by the thresholds 50 and 75 on mastery."""
    m = mastery(score, attempts, hints)
    return np.where(m < 50, 0, np.where(m < 75, 1, 2))


def make_data(rng):
    score = np.clip(np.rint(rng.normal(65, 20, ROWS)), 0, 100)
    attempts = np.minimum(1 + rng.poisson(3, ROWS), 20)
    time_spent = rng.integers(1, 121, ROWS)
    hints = np.minimum(rng.poisson(2, ROWS), 10)
    x = np.column_stack([score, attempts, time_spent, hints]).astype(np.float32)
    y = label(score, attempts, hints)
    noisy = rng.random(ROWS) < NOISE
    step = np.where(y == 0, 1, np.where(y == 2, -1, rng.choice([-1, 1], ROWS)))
    y = np.where(noisy, y + step, y).astype(np.int64)
    return x, y


def export(model, x, out: Path):
    onx = to_onnx(model, x[:1], target_opset={"": 15, "ai.onnx.ml": 3})
    (out / "1").mkdir(parents=True, exist_ok=True)
    (out / "1" / "model.onnx").write_bytes(onx.SerializeToString())
    (out / "labels.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    (out / "config.toml").write_text(
        "# Skill strength from score, attempts, time_spent (minutes), hints: see ../../train.py.\n"
        'labels = "labels.txt"\n'
    )


def main():
    rng = np.random.default_rng(SEED)
    x, y = make_data(rng)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=10.0, max_iter=2000))
    model.fit(x_train, y_train)

    out = MODELS / "skill-strength"
    export(model, x, out)

    session = ort.InferenceSession(str(out / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {"X": x_test})
    probabilities = np.array([[row[k] for k in range(len(CLASSES))] for row in probabilities])
    counts = {c: int((y == i).sum()) for i, c in enumerate(CLASSES)}
    print(f"rows: {ROWS} ({counts}), label noise {NOISE:.0%}")
    print(f"rule accuracy on the test split (the ceiling, noise included): "
          f"{(label(x_test[:, 0], x_test[:, 1], x_test[:, 3]) == y_test).mean():.4f}")
    print(f"scikit-learn test accuracy: {model.score(x_test, y_test):.4f}")
    print(f"onnxruntime test accuracy: {(labels == y_test).mean():.4f}")
    print(f"onnxruntime accuracy against the noise-free rule: "
          f"{(labels == label(x_test[:, 0], x_test[:, 1], x_test[:, 3])).mean():.4f}")
    assert np.allclose(probabilities, model.predict_proba(x_test), atol=1e-4)
    print(f"wrote {out.relative_to(MODELS.parent.parent.parent)}/{{config.toml,labels.txt,1/model.onnx}}")


if __name__ == "__main__":
    main()
