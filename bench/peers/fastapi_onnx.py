"""A FastAPI + uvicorn + onnxruntime wrapper serving one ONNX model over V2 REST.

This is the peer "most people write": parse the V2 JSON with pydantic, build a
numpy array, session.run, answer V2 JSON. One uvicorn worker, no access log,
onnxruntime limited to one intra-op thread (the server is pinned to one core).

Only what the benchmark needs: POST /v2/models/{name}/infer, plus
GET /v2/health/ready. skl2onnx's default ZipMap output (a list of dicts) is
turned into an FP32 [N, n_classes] tensor, as Lectern answers.

Run: python bench/peers/fastapi_onnx.py --model examples/models/iris-logreg/1/model.onnx --port 8000
"""
import argparse
from typing import Any, List, Optional

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


class InferInput(BaseModel):
    name: str
    datatype: str
    shape: List[int]
    data: List[Any]
    parameters: Optional[dict] = None


class InferRequest(BaseModel):
    id: Optional[str] = None
    inputs: List[InferInput]
    parameters: Optional[dict] = None


def build_app(model_path: str, model_name: str) -> FastAPI:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    input_names = {i.name for i in session.get_inputs()}
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready():
        return {"ready": True}

    @app.post(f"/v2/models/{model_name}/infer")
    async def infer(req: InferRequest):
        feeds = {}
        for inp in req.inputs:
            if inp.name not in input_names:
                raise HTTPException(400, f"unknown input {inp.name}")
            if inp.datatype not in DTYPES:
                raise HTTPException(400, f"unsupported datatype {inp.datatype}")
            feeds[inp.name] = np.asarray(inp.data, dtype=DTYPES[inp.datatype]).reshape(inp.shape)
        results = session.run(None, feeds)
        outputs = []
        for meta, value in zip(session.get_outputs(), results):
            if isinstance(value, list):  # ZipMap: [{class: prob}, ...]
                value = np.array([[row[k] for k in sorted(row)] for row in value], dtype=np.float32)
            datatype = "FP32" if value.dtype == np.float32 else "INT64"
            outputs.append({
                "name": meta.name,
                "datatype": datatype,
                "shape": list(value.shape),
                "data": value.ravel().tolist(),
            })
        body = {"model_name": model_name, "model_version": "1", "outputs": outputs}
        if req.id is not None:
            body["id"] = req.id
        return body

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--name", default="iris-logreg")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app = build_app(args.model, args.name)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
