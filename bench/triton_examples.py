"""Runs Triton's own `simple_http_*` and `simple_grpc_*` client examples (and the raw-stub
`grpc_explicit_*` ones), unchanged, against Lectern.

The examples are Triton's code (triton-inference-server/client, src/python/examples) and are
not part of this repository: check the repository out beside it and pass the folder.

    python bench/triton_examples.py /path/to/client/src/python/examples

Lectern serves the examples' models (tests/python/triton_models.py) plus bundled models (the
HTTP model-control example expects a repository of seven, the gRPC one of eight), with
`--server-name triton` (the health examples check the server's name) and `--grpc-listen`.
Prints one line per example and exits 1 when one that applies fails.
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
    "simple_grpc_infer_client.py": [[], ["--grpc-compression-algorithm", "gzip"],
                                    ["--grpc-compression-algorithm", "deflate"]],
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
    "simple_grpc_shm_client.py": "system shared memory extension",
    "simple_grpc_shm_string_client.py": "system shared memory extension",
    "simple_grpc_cudashm_client.py": "CUDA shared memory (no GPU)",
    "simple_grpc_sequence_stream_infer_client.py": "sequence batcher (stateful models)",
    "simple_grpc_aio_sequence_stream_infer_client.py": "sequence batcher (stateful models)",
    "simple_grpc_sequence_sync_infer_client.py": "sequence batcher (stateful models)",
    "simple_grpc_custom_repeat.py": "decoupled model (repeat_int32: many answers per request, a C++ backend)",
}

# Beside the simple_grpc_* examples: the raw-stub examples that use the `simple` model.
EXTRA = ["grpc_explicit_int_content_client.py", "grpc_explicit_int8_content_client.py",
         "grpc_explicit_byte_content_client.py"]

# Bundled models beside the examples' four: three for the HTTP model-control example's seven,
# one more for the gRPC one's eight.
BUNDLED = ["iris-logreg", "iris-forest", "cancer-tree"]
GRPC_EXTRA_MODEL = "digits-mlp"


def run_examples(examples: Path, names: list[str], server: LecternServer, url: str) -> int:
    failed = 0
    for example in names:
        if example in NOT_APPLICABLE:
            print(f"n/a   {example}: {NOT_APPLICABLE[example]}")
            continue
        for extra in RUNS.get(example, [[]]):
            # the model-control examples unload `simple`: load it back for the next one
            server.post("/v2/repository/models/simple/load")
            run = subprocess.run([sys.executable, str(examples / example), "-u", url, *extra],
                                 capture_output=True, text=True, timeout=120)
            ok = run.returncode == 0
            failed += not ok
            print(f"{'PASS' if ok else 'FAIL'}  {example} {' '.join(extra)}".rstrip())
            if not ok:
                print("      " + (run.stdout + run.stderr).strip().replace("\n", "\n      ")[-2000:])
    return failed


def serve(work: Path, bundled: list[str]) -> LecternServer:
    models = write_triton_models(work / "models")
    for name in bundled:
        shutil.copytree(ROOT / "examples" / "models" / name, models / name)
    (work / "data").mkdir()
    return LecternServer(models, work / "data",
                         extra_args=["--server-name", "triton", "--grpc-listen", "127.0.0.1:0"])


def main() -> int:
    examples = Path(sys.argv[1])
    failed = 0
    for protocol, bundled in [("http", BUNDLED), ("grpc", BUNDLED + [GRPC_EXTRA_MODEL])]:
        work = Path(tempfile.mkdtemp(prefix=f"triton-examples-{protocol}-"))
        server = serve(work, bundled)
        try:
            names = sorted(p.name for p in examples.glob(f"simple_{protocol}_*.py"))
            url = server.host_port if protocol == "http" else server.grpc_host_port
            failed += run_examples(examples, names + (EXTRA if protocol == "grpc" else []), server, url)
        finally:
            server.cleanup()
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
