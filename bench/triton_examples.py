"""Runs Triton's own `simple_http_*` client examples, unchanged, against Lectern.

The examples are Triton's code (triton-inference-server/client, src/python/examples) and are
not part of this repository: check the repository out beside it and pass the folder.

    python bench/triton_examples.py /path/to/client/src/python/examples

Lectern serves the examples' models (tests/python/triton_models.py) plus four bundled
models (the model-control example expects a repository of seven), with `--server-name
triton` (the health example checks the server's name). Prints one line per example and
exits 1 when one that applies fails.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))

from conftest import LecternServer  # noqa: E402
from triton_models import write_triton_models  # noqa: E402

# Example -> extra arguments, one run per entry.
RUNS = {
    "simple_http_health_metadata.py": [[]],
    "simple_http_infer_client.py": [[], ["--request-compression-algorithm", "gzip"],
                                    ["--request-compression-algorithm", "deflate"],
                                    ["--response-compression-algorithm", "gzip"],
                                    ["--response-compression-algorithm", "deflate"]],
    "simple_http_async_infer_client.py": [[]],
    "simple_http_aio_infer_client.py": [[], ["--request-compression-algorithm", "gzip"],
                                        ["--response-compression-algorithm", "deflate"]],
    "simple_http_string_infer_client.py": [[]],
    "simple_http_model_control.py": [[]],
}

# Examples that do not apply, and why.
NOT_APPLICABLE = {
    "simple_http_shm_client.py": "system shared memory extension (Lectern serves over the network only)",
    "simple_http_shm_string_client.py": "system shared memory extension",
    "simple_http_cudashm_client.py": "CUDA shared memory (no GPU)",
    "simple_http_aio_cudashm_client.py": "CUDA shared memory (no GPU)",
    "simple_http_aio_shm_client.py": "system shared memory extension",
    "simple_http_aio_shm_string_client.py": "system shared memory extension",
    "simple_http_sequence_sync_infer_client.py": "sequence batcher (stateful models): Lectern's models are stateless",
    "simple_http_aio_sequence_sync_infer_client.py": "sequence batcher (stateful models)",
}


def main() -> int:
    examples = Path(sys.argv[1])
    work = Path(tempfile.mkdtemp(prefix="triton-examples-"))
    models = write_triton_models(work / "models")
    for name in ["iris-logreg", "iris-forest", "cancer-tree", "digits-mlp"]:
        shutil.copytree(ROOT / "examples" / "models" / name, models / name)
    (work / "data").mkdir()
    server = LecternServer(models, work / "data", extra_args=["--server-name", "triton"])
    failed = 0
    try:
        for example in sorted(p.name for p in examples.glob("simple_http_*.py")):
            if example in NOT_APPLICABLE:
                print(f"n/a   {example}: {NOT_APPLICABLE[example]}")
                continue
            for extra in RUNS.get(example, [[]]):
                # the model-control example unloads `simple`: load it back for the next one
                server.post("/v2/repository/models/simple/load")
                run = subprocess.run([sys.executable, str(examples / example), "-u", server.host_port, *extra],
                                     capture_output=True, text=True, timeout=120)
                ok = run.returncode == 0
                failed += not ok
                print(f"{'PASS' if ok else 'FAIL'}  {example} {' '.join(extra)}".rstrip())
                if not ok:
                    print("      " + (run.stdout + run.stderr).strip().replace("\n", "\n      ")[-2000:])
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
