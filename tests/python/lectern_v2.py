"""Helpers shared by the end-to-end tests: V2 tensor encoding/decoding, response parsing,
onnxruntime references and the scikit-learn data sets the bundled models were trained on."""
from __future__ import annotations

import json
import re
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_MODELS = REPO_ROOT / "examples" / "models"

V2_TO_NUMPY = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
ALL_DATATYPES = list(V2_TO_NUMPY)


# --------------------------------------------------------------------------- encoding

def to_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, np.bytes_):
        return bytes(value)
    return str(value).encode("utf-8")


def encode_binary(arr, datatype: str) -> bytes:
    """Raw V2 binary tensor bytes (row-major, little-endian; BYTES as u32 LE length + bytes)."""
    arr = np.asarray(arr, dtype=object if datatype == "BYTES" else None)
    if datatype == "BYTES":
        out = bytearray()
        for item in arr.reshape(-1):
            b = to_bytes(item)
            out += struct.pack("<I", len(b)) + b
        return bytes(out)
    return np.ascontiguousarray(arr.astype(V2_TO_NUMPY[datatype])).tobytes()


def decode_binary(buf: bytes, datatype: str, shape) -> np.ndarray:
    shape = [int(d) for d in shape]
    if datatype == "BYTES":
        items, pos = [], 0
        while pos < len(buf):
            assert pos + 4 <= len(buf), "truncated BYTES length prefix in response"
            (n,) = struct.unpack_from("<I", buf, pos)
            pos += 4
            assert pos + n <= len(buf), "BYTES element runs past the end of its buffer"
            items.append(bytes(buf[pos:pos + n]))
            pos += n
        arr = np.empty(len(items), dtype=object)
        arr[:] = items
        return arr.reshape(shape)
    dt = V2_TO_NUMPY[datatype]
    assert len(buf) == int(np.prod(shape, dtype=np.int64)) * dt.itemsize, (
        f"binary output of {len(buf)} bytes does not fit {datatype}{shape}"
    )
    return np.frombuffer(buf, dtype=dt).reshape(shape).copy()


def json_data(arr, datatype: str, nested: bool = False):
    """V2 JSON `data` for an array: flat row-major list (or nested lists)."""
    arr = np.asarray(arr, dtype=object if datatype == "BYTES" else V2_TO_NUMPY[datatype])
    if datatype == "BYTES":
        conv = np.vectorize(lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v), otypes=[object])
        arr = conv(arr) if arr.size else arr
    out = arr.tolist() if nested else arr.reshape(-1).tolist()
    return out


def json_input(name: str, arr, datatype: str, nested: bool = False) -> dict:
    arr = np.asarray(arr, dtype=object if datatype == "BYTES" else V2_TO_NUMPY[datatype])
    return {"name": name, "datatype": datatype, "shape": list(arr.shape),
            "data": json_data(arr, datatype, nested)}


def binary_request(header: dict, blobs: list[bytes]) -> tuple[bytes, dict]:
    """Body and headers for a binary-tensor request: JSON header then the blobs in order."""
    head = json.dumps(header).encode("utf-8")
    body = head + b"".join(blobs)
    headers = {"Inference-Header-Content-Length": str(len(head)),
               "Content-Type": "application/octet-stream"}
    return body, headers


def binary_input(name: str, arr, datatype: str) -> tuple[dict, bytes]:
    arr = np.asarray(arr, dtype=object if datatype == "BYTES" else V2_TO_NUMPY[datatype])
    blob = encode_binary(arr, datatype)
    return ({"name": name, "datatype": datatype, "shape": list(arr.shape),
             "parameters": {"binary_data_size": len(blob)}}, blob)


# --------------------------------------------------------------------------- responses

def json_output_to_numpy(out: dict) -> np.ndarray:
    datatype, shape, data = out["datatype"], [int(d) for d in out["shape"]], out["data"]
    flat = np.asarray(data, dtype=object).reshape(-1).tolist() if datatype == "BYTES" else data
    if datatype == "BYTES":
        arr = np.empty(len(flat), dtype=object)
        arr[:] = [to_bytes(v) for v in flat]
        return arr.reshape(shape)
    arr = np.asarray(data, dtype=V2_TO_NUMPY[datatype] if datatype != "BOOL" else np.bool_)
    assert arr.size == int(np.prod(shape, dtype=np.int64)), (
        f"output {out['name']}: {arr.size} values for shape {shape}"
    )
    return arr.reshape(shape)


def parse_infer_response(resp) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON header, {output name: numpy array}) from a V2 infer response (JSON or binary)."""
    body = resp.content
    hlen = resp.headers.get("Inference-Header-Content-Length")
    if hlen is None:
        header, rest = json.loads(body), b""
    else:
        n = int(hlen)
        assert 0 < n <= len(body), f"Inference-Header-Content-Length {n} vs body {len(body)}"
        header, rest = json.loads(body[:n]), body[n:]
    outputs, pos = {}, 0
    for out in header.get("outputs", []):
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            assert "data" not in out, f"output {out['name']} has both binary_data_size and data"
            chunk = rest[pos:pos + int(size)]
            assert len(chunk) == int(size), f"binary section too short for {out['name']}"
            pos += int(size)
            outputs[out["name"]] = decode_binary(chunk, out["datatype"], out["shape"])
        else:
            outputs[out["name"]] = json_output_to_numpy(out)
    assert pos == len(rest), f"{len(rest) - pos} unexplained trailing bytes after binary outputs"
    return header, outputs


def binary_output_names(header: dict) -> set[str]:
    return {o["name"] for o in header.get("outputs", [])
            if "binary_data_size" in (o.get("parameters") or {})}


# --------------------------------------------------------------------------- references

@lru_cache(maxsize=None)
def ort_session(path: str) -> ort.InferenceSession:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def zipmap_to_array(value) -> np.ndarray:
    """onnxruntime's ZipMap output (list of {class: prob}) -> [N, C], classes in sorted order."""
    if isinstance(value, np.ndarray):
        return value
    rows = list(value)
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    keys = sorted(rows[0].keys())
    return np.array([[row[k] for k in keys] for row in rows], dtype=np.float32)


def ort_reference(model_path, feeds: dict) -> dict[str, np.ndarray]:
    sess = ort_session(str(model_path))
    names = [o.name for o in sess.get_outputs()]
    results = sess.run(names, feeds)
    return {n: zipmap_to_array(r) for n, r in zip(names, results)}


def model_file(models_dir, model: str, version: int = 1) -> Path:
    return Path(models_dir) / model / str(version) / "model.onnx"


# --------------------------------------------------------------------------- data sets

@lru_cache(maxsize=None)
def iris_x() -> np.ndarray:
    from sklearn.datasets import load_iris
    return load_iris().data.astype(np.float32)


@lru_cache(maxsize=None)
def iris_labels() -> list[str]:
    from sklearn.datasets import load_iris
    return [str(s) for s in load_iris().target_names]


@lru_cache(maxsize=None)
def cancer_x() -> np.ndarray:
    from sklearn.datasets import load_breast_cancer
    return load_breast_cancer().data.astype(np.float32)


@lru_cache(maxsize=None)
def digits_x() -> np.ndarray:
    from sklearn.datasets import load_digits
    return (load_digits().data / 16.0).astype(np.float32)


def digits_images() -> np.ndarray:
    return digits_x().reshape(-1, 1, 8, 8)


def labels_file(models_dir, model: str) -> list[str]:
    return (Path(models_dir) / model / "labels.txt").read_text().splitlines()


# --------------------------------------------------------------------------- metrics

_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = dict(_LABEL.findall(m.group(3) or ""))
        samples.append((m.group(1), labels, float(m.group(4))))
    return samples


def metric_value(samples, name: str, **labels) -> float | None:
    """Sum of the samples called `name` whose labels include `labels` (None if there are none)."""
    found = [v for n, l, v in samples if n == name and all(l.get(k) == str(x) for k, x in labels.items())]
    return sum(found) if found else None


# --------------------------------------------------------------------------- the dtypes model

# Two rows of three per datatype: extremes that survive `x + x` without overflow, integers
# above 2^53 (which a float-based JSON parser would corrupt), FP16 values, -0.0, multi-byte
# UTF-8. Wrap-around on overflow has its own test (DTYPE_WRAP_VALUES).
DTYPE_VALUES = {
    "BOOL": [[True, False, True], [False, False, True]],
    "UINT8": [[0, 1, 127], [100, 64, 7]],
    "UINT16": [[0, 1, 32767], [30000, 2, 3]],
    "UINT32": [[0, 1, 2**31 - 1], [1500000000, 5, 6]],
    "UINT64": [[0, 1, 2**63 - 1], [2**62 + 5, 2**53 + 1, 7]],
    "INT8": [[-64, -1, 0], [63, 50, -50]],
    "INT16": [[-16384, -1, 0], [16383, 1000, -1000]],
    "INT32": [[-2**30, -1, 0], [2**30 - 1, 123456, -123456]],
    "INT64": [[-2**62, -(2**53) - 1, 0], [2**62 - 1, 2**53 + 1, 42]],
    "FP16": [[0.5, -1.25, 30000.0], [3.140625, 0.0009765625, -0.0]],
    "FP32": [[0.1, -2.5, 1.5e38], [3.1415927, 1e-30, -0.0]],
    "FP64": [[0.1, -1e300, 1e-300], [3.141592653589793, 2.5, -0.0]],
    "BYTES": [["", "héllo wörld", "a b"], ["tab\tnew\nline \"quoted\"", "emoji 🎉", "x" * 300]],
}

# Integer values whose doubling overflows: ONNX Add (and onnxruntime) wrap around.
DTYPE_WRAP_VALUES = {
    "UINT8": [[200, 255, 128], [129, 1, 0]],
    "UINT16": [[40000, 65535, 32768], [1, 2, 3]],
    "UINT32": [[3000000000, 4294967295, 2**31], [1, 2, 3]],
    "UINT64": [[2**63 + 5, 2**64 - 1, 2**63], [1, 2, 3]],
    "INT8": [[-128, 127, 100], [-100, 1, 2]],
    "INT16": [[-32768, 32767, 20000], [-20000, 1, 2]],
    "INT32": [[-2**31, 2**31 - 1, 2**30], [-2**30 - 1, 1, 2]],
    "INT64": [[-2**63, 2**63 - 1, 2**62], [-2**62 - 1, 1, 2]],
}


def dtypes_arrays(rows: int = 2) -> dict[str, np.ndarray]:
    arrays = {}
    for t in ALL_DATATYPES:
        base = DTYPE_VALUES[t] * ((rows + 1) // 2)
        arrays[t] = np.array(base[:rows], dtype=V2_TO_NUMPY[t])
    return arrays


def dtypes_reference(models_dir, arrays) -> dict[str, np.ndarray]:
    feeds = {f"in_{t.lower()}": a for t, a in arrays.items()}
    return ort_reference(model_file(models_dir, "dtypes"), feeds)


# --------------------------------------------------------------------------- classification

def check_classification(strings: np.ndarray, probs: np.ndarray, k: int, labels: list[str] | None):
    n = probs.shape[0]
    assert strings.shape == (n, k), f"classification shape {strings.shape}, wanted {(n, k)}"
    for i in range(n):
        order = np.argsort(-probs[i], kind="stable")
        prev_score = None
        for j in range(k):
            text = to_bytes(strings[i, j]).decode("utf-8")
            parts = text.split(":", 2)
            assert len(parts) >= 2, f"not '<score>:<index>[:<label>]': {text!r}"
            score, index = float(parts[0]), int(parts[1])
            expected_idx = int(order[j])
            if index != expected_idx:
                # only acceptable for an exact tie in the reference
                assert abs(probs[i, index] - probs[i, expected_idx]) < 1e-6, (i, j, text, probs[i])
            assert abs(score - probs[i, index]) <= 1e-5, (text, probs[i])
            if labels is not None:
                assert len(parts) == 3 and parts[2] == labels[index], (text, labels)
            if prev_score is not None:
                assert score <= prev_score + 1e-7, f"not highest first: {strings[i]}"
            prev_score = score
