"""Build an MLServer model repository holding the benchmark model.

The model is the one examples/models/iris-logreg/1 was exported from
(scripts/make_models.py): LogisticRegression(max_iter=500, C=1.0) fitted on
iris as FP32, here saved with joblib for mlserver-sklearn instead of ONNX.

Run: python bench/peers/train_iris.py OUT_DIR [HTTP_PORT] [GRPC_PORT] [METRICS_PORT]
Writes OUT_DIR/settings.json and OUT_DIR/iris-logreg/{model.joblib,model-settings.json};
start it with `mlserver start OUT_DIR`.
"""
import json
import sys
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    http_port = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
    grpc_port = int(sys.argv[3]) if len(sys.argv) > 3 else http_port + 1
    metrics_port = int(sys.argv[4]) if len(sys.argv) > 4 else http_port + 2

    iris = load_iris()
    x, y = iris.data.astype(np.float32), iris.target
    model = LogisticRegression(max_iter=500, C=1.0).fit(x, y)

    folder = out / "iris-logreg"
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    (folder / "model-settings.json").write_text(json.dumps({
        "name": "iris-logreg",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "1"},
    }, indent=2))
    # parallel_workers=0: inference runs in the main process. The worker pool
    # crashes on the benchmark machine, and a single process is also what
    # "one core" means for the other servers. debug=false is MLServer's
    # production mode (no per-request access log).
    (out / "settings.json").write_text(json.dumps({
        "debug": False,
        "parallel_workers": 0,
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "load_models_at_startup": True,
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
