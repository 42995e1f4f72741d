"""Write sample PNGs of test digits for the README's curl examples.

For each digit 0..9, the first image of the test split (see train.py) that the exported
models classify correctly after the PNG round trip is saved as
examples/two-layer/samples/digit-<d>.png: an 8x8 8-bit grey PNG, pixel = round(v * 255 / 16),
light ink on a dark background, as in load_digits. Prints the answer Lectern's `diagnose`
pipeline should give for each one (computed here with onnxruntime).

Run after train.py: .venv/bin/python examples/two-layer/make_samples.py
"""
import json

import numpy as np

from train import CATEGORY_MODEL, DIGIT_MODELS, GROUPS, HERE, from_png, predict, run, session, split, to_png

SAMPLES = HERE / "samples"


def answer(x):
    """The pipeline's answer for one image, shaped as lectern.toml's `shape` says."""
    categories, category_probabilities = run(session(CATEGORY_MODEL), x[None])
    category = list(GROUPS)[categories[0]]
    _, probabilities = run(session(DIGIT_MODELS[category]), x[None])
    order = np.argsort(-probabilities[0], kind="stable")[:3]
    return {
        "category": category,
        "probability": round(float(category_probabilities[0].max()), 4),
        "predictions": [
            {"label": str(GROUPS[category][i]), "probability": round(float(probabilities[0][i]), 4)} for i in order
        ],
    }


def main():
    _, x_test, _, y_test = split()
    pngs = [to_png(image) for image in x_test]
    x_png = np.stack([from_png(data) for data in pngs])
    _, digits = predict(x_png)
    SAMPLES.mkdir(exist_ok=True)
    for digit in range(10):
        index = next(i for i in range(len(y_test)) if y_test[i] == digit and digits[i] == digit)
        path = SAMPLES / f"digit-{digit}.png"
        path.write_bytes(pngs[index])
        print(f"{path.relative_to(HERE.parent.parent)} (test image {index}): {json.dumps(answer(x_png[index]))}")


if __name__ == "__main__":
    main()
