"""Collections end to end (docs/contract.md, "Text models, collections and backups (issue 12)",
"Collections"): upserts of texts embedded by a served encoder and of vectors given by the
client, exact cosine search (compared with the NumPy reference of lectern_text.py and with a
NumPy exact search), metadata filters, `exclude_ids`, the bounds and the refused requests (one
transaction: nothing stored), deletes, durability across a SIGKILL and a restart (vectors in
the database, little-endian float32 of unit length), the pipeline search step, and the roles
of the routes (client searches and embeds, trainer writes).

One server is shared by the module (each test uses collections of its own names). Its
repository holds `minilm` (lectern_text.py) and the bundled `iris-logreg` (not an encoder).
Run on SQLite and on PostgreSQL (LECTERN_TEST_DATABASE=postgres).
"""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import EXAMPLE_MODELS, LecternServer, database_engine
from lectern_checks import assert_error, assert_not_5xx, describe, ok
from lectern_text import DIMENSION, MODEL_NAME, cosine, make_encoder_repo, reference, unit, wait_for_model

NOT_ENCODER = "iris-logreg"

WORDS = {
    "animal": ["cat", "dog", "horse", "cow", "lion", "tiger", "sheep", "rabbit"],
    "vehicle": ["car", "truck", "bus", "bicycle", "train", "airplane", "motorcycle", "boat"],
    "fruit": ["apple", "banana", "orange", "grape", "pear", "cherry", "strawberry", "lemon"],
}
# query -> the word the reference puts first, by a clear margin
OBVIOUS = {"kitten": "cat", "puppy": "dog", "automobile": "car", "jet plane": "airplane", "citrus": "lemon",
           "locomotive": "train", "sailing ship": "boat", "pony": "horse"}
SCORE_TOL = 2e-3   # server (f32 candle) vs reference (f64) scores of the encoder's vectors


def word_items() -> list[dict]:
    """24 items `w-<word>`, metadata {"group", "level" 1..3, "n" index}."""
    items = []
    for group, words in WORDS.items():
        for i, word in enumerate(words):
            items.append({"id": f"w-{word}", "text": word,
                          "metadata": {"group": group, "level": 1 + i % 3, "n": len(items)}})
    return items


def group_of(item_id: str) -> str:
    return next(g for g, words in WORDS.items() if item_id[2:] in words)


# =========================================================================== fixtures

def make_repository(models: Path) -> Path:
    make_encoder_repo(models, MODEL_NAME)
    shutil.copytree(EXAMPLE_MODELS / NOT_ENCODER, models / NOT_ENCODER)
    return models


@pytest.fixture(scope="module")
def ref():
    return reference()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return make_repository(tmp_path_factory.mktemp("collections-repo") / "models")


@pytest.fixture(scope="module")
def col(tmp_path_factory, repo):
    """The module's server, minilm ready."""
    data = tmp_path_factory.mktemp("collections-data")
    srv = LecternServer(repo, data)
    try:
        wait_for_model(srv, MODEL_NAME)
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture(scope="module")
def words(col):
    """The collection `words` (model minilm, the 24 word items), created once."""
    answer = put(col, "words", {"model": MODEL_NAME, "items": word_items()})
    assert answer["upserted"] == 24 and answer["count"] == 24, answer
    return "words"


# =========================================================================== helpers

def put_raw(srv, name: str, body: dict, headers=None) -> requests.Response:
    return requests.put(f"{srv.url}/v1/collections/{name}", json=body, headers=headers or {}, timeout=300)


def put(srv, name: str, body: dict, headers=None) -> dict:
    return ok(put_raw(srv, name, body, headers))


def search_raw(srv, name: str, body: dict, headers=None) -> requests.Response:
    return srv.post(f"/v1/collections/{name}/search", json=body, headers=headers or {}, timeout=120)


def search(srv, name: str, body: dict, headers=None) -> list[dict]:
    answer = ok(search_raw(srv, name, body, headers))
    assert set(answer) == {"results"}, answer
    for r in answer["results"]:
        assert {"id", "score", "text", "metadata"} <= set(r), r
    return answer["results"]


def collection(srv, name: str) -> dict:
    return ok(srv.get(f"/v1/collections/{name}"))


def count(srv, name: str) -> int:
    return collection(srv, name)["count"]


def delete_ids(srv, name: str, ids, headers=None) -> requests.Response:
    return srv.post(f"/v1/collections/{name}/delete", json={"ids": list(ids)}, headers=headers or {})


def assert_code(resp: requests.Response, status: int, code: str, *mentions) -> str:
    message = assert_error(resp, status, *mentions)
    assert resp.json()["code"] == code, f"code {resp.json()['code']!r}, wanted {code!r}: {describe(resp)}"
    return message


def assert_ordered(results: list[dict], what: str):
    """Best first; equal scores by id."""
    for a, b in zip(results, results[1:]):
        assert a["score"] > b["score"] or (a["score"] == b["score"] and a["id"] < b["id"]), (
            f"{what}: {a['id']} ({a['score']}) before {b['id']} ({b['score']})")


def assert_ranking(results: list[dict], expected: dict[str, float], k: int, what: str, tol: float = SCORE_TOL):
    """`results` are the top `k` of `expected` (id -> reference score): each score within
    `tol` of its reference, ordered, and the same ids as the reference's top k except where
    reference scores within `tol` of the k-th may trade places."""
    assert_ordered(results, what)
    ranked = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))
    n = min(k, len(ranked))
    assert len(results) == n, f"{what}: {len(results)} results, wanted {n}: {[r['id'] for r in results]}"
    for r in results:
        assert r["id"] in expected, f"{what}: {r['id']} should not be there"
        assert abs(r["score"] - expected[r["id"]]) <= tol, (
            f"{what}: {r['id']} scored {r['score']:.6f}, reference {expected[r['id']]:.6f}")
    if n:
        kth = ranked[n - 1][1]
        must = {i for i, s in ranked if s > kth + tol}
        may = {i for i, s in ranked if s >= kth - tol}
        got = {r["id"] for r in results}
        assert must <= got <= may, f"{what}: got {sorted(got)}, reference top {n}: {[i for i, _ in ranked[:n]]}"


def reference_scores(ref, query: str, items: list[dict]) -> dict[str, float]:
    q = ref.embed(query)[0].astype(np.float64)
    vectors = ref.embed([it["text"] for it in items]).astype(np.float64)
    return {it["id"]: float(v @ q) for it, v in zip(items, vectors)}


def matches(metadata: dict, flt: dict) -> bool:
    for key, cond in flt.items():
        value = metadata.get(key)
        if isinstance(cond, dict):
            (op, arg), = cond.items()
            if op == "$in" and value not in arg or op == "$nin" and value in arg or op == "$ne" and value == arg:
                return False
        elif value != cond:
            return False
    return True


# =========================================================================== create, read, list

def test_a_collection_with_a_model_is_created_by_its_first_put(col, words):
    c = collection(col, words)
    assert {k: c[k] for k in ("name", "model", "dimension", "count")} == {
        "name": "words", "model": MODEL_NAME, "dimension": DIMENSION, "count": 24}, c
    assert isinstance(c["created_at_ms"], int) and c["created_at_ms"] > 1_600_000_000_000, c
    assert c["updated_at_ms"] >= c["created_at_ms"], c
    listed = ok(col.get("/v1/collections"))
    assert set(listed) == {"collections"}, listed
    names = [x["name"] for x in listed["collections"]]
    assert names == sorted(names) and "words" in names, names
    assert next(x for x in listed["collections"] if x["name"] == "words") == c


def test_search_by_text_finds_the_obvious_neighbour_with_reference_scores(col, words, ref):
    items = word_items()
    for query, nearest in OBVIOUS.items():
        results = search(col, words, {"text": query, "k": 5})
        assert results[0]["id"] == f"w-{nearest}", f"{query!r}: {[(r['id'], r['score']) for r in results]}"
        assert_ranking(results, reference_scores(ref, query, items), 5, f"search {query!r}")
    # text and metadata come back as stored
    top = search(col, words, {"text": "kitten", "k": 1})[0]
    assert top["text"] == "cat" and top["metadata"] == {"group": "animal", "level": 1, "n": 0}, top


def test_default_k_is_10_and_k_above_the_count_returns_everything(col, words, ref):
    results = search(col, words, {"text": "a fast vehicle"})
    assert len(results) == 10, len(results)
    everything = search(col, words, {"text": "a fast vehicle", "k": 1000})
    assert len(everything) == 24
    assert_ranking(everything, reference_scores(ref, "a fast vehicle", word_items()), 1000, "k 1000")
    assert [r["id"] for r in everything[:10]] == [r["id"] for r in results]


def test_search_by_a_vector_scores_like_the_encoder(col, words, ref):
    query = ref.embed("a ripe yellow fruit")[0]
    results = search(col, words, {"vector": (3.0 * query).tolist(), "k": 4})   # normalised by the server
    assert_ranking(results, reference_scores(ref, "a ripe yellow fruit", word_items()), 4, "vector search")
    banana = search(col, words, {"vector": ref.embed("banana")[0].tolist(), "k": 1})[0]
    assert banana["id"] == "w-banana" and abs(banana["score"] - 1.0) < SCORE_TOL, banana


@pytest.mark.parametrize("flt", [
    {"group": "vehicle"},
    {"group": {"$ne": "vehicle"}},
    {"level": {"$in": [1, 3]}},
    {"group": {"$nin": ["animal", "fruit"]}},
    {"group": {"$in": ["fruit"]}, "level": 2},
    {"group": "animal", "level": {"$ne": 1}},
    {"group": "nothing"},
], ids=lambda f: json.dumps(f))
def test_metadata_filters(col, words, ref, flt):
    items = [it for it in word_items() if matches(it["metadata"], flt)]
    results = search(col, words, {"text": "something that moves", "k": 6, "filter": flt})
    assert all(matches(r["metadata"], flt) for r in results), results
    assert_ranking(results, reference_scores(ref, "something that moves", items) if items else {}, 6,
                   f"filter {flt}")


def test_exclude_ids_leaves_those_out(col, words, ref):
    excluded = ["w-cat", "w-tiger", "w-unknown"]
    results = search(col, words, {"text": "kitten", "k": 3, "exclude_ids": excluded})
    items = [it for it in word_items() if it["id"] not in excluded]
    assert_ranking(results, reference_scores(ref, "kitten", items), 3, "exclude_ids")
    results = search(col, words, {"text": "kitten", "k": 3, "exclude_ids": ["w-dog"], "filter": {"group": "animal"}})
    assert [r["id"] for r in results][0] == "w-cat" and "w-dog" not in {r["id"] for r in results}, results


def test_bad_searches_are_400_invalid_request(col, words, ref):
    vector = ref.embed("x")[0].tolist()
    cases = [
        {"text": "kitten", "k": 0},
        {"text": "kitten", "k": 1001},
        {"text": "kitten", "k": 10 ** 9},
        {"text": "kitten", "k": -1},
        {"text": "kitten", "k": "3"},
        {"text": "kitten", "vector": vector},
        {},
        {"k": 3},
        {"vector": vector[:-1]},
        {"vector": vector + [0.0]},
        {"vector": []},
        {"text": "kitten", "filter": {"level": {"$gt": 1}}},
        {"text": "kitten", "filter": {"level": {"$regex": "1"}}},
        {"text": "kitten", "filter": "group = animal"},
        {"text": "kitten", "exclude_ids": "w-cat"},
    ]
    for body in cases:
        assert_code(search_raw(col, words, body), 400, "invalid_request")
    r = col.post(f"/v1/collections/{words}/search", data=b"{nope", headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    assert len(search(col, words, {"text": "kitten", "k": 1})) == 1
    assert len(search(col, words, {"text": "kitten", "k": 1000})) == 24


def test_unknown_collections_are_404_collection_not_found(col):
    for r in (col.get("/v1/collections/no-such"),
              search_raw(col, "no-such", {"text": "x"}),
              delete_ids(col, "no-such", ["a"]),
              requests.delete(f"{col.url}/v1/collections/no-such", timeout=30)):
        assert_code(r, 404, "collection_not_found")


def test_bad_names_are_400(col):
    for name in ("bad%20name", ".hidden", "x" * 129, "semi;colon"):
        r = put_raw(col, name, {"dimension": 2, "items": [{"id": "a", "vector": [1, 0]}]})
        assert_error(r, 400)
    assert_not_5xx(col.get("/v1/collections/" + "x" * 129))


# =========================================================================== upserts

def test_upserts_replace_items_by_id_and_searches_see_the_changes(col, ref):
    name = "upserts"
    put(col, name, {"model": MODEL_NAME, "items": [{"id": "x", "text": "dog"}, {"id": "y", "text": "apple"}]})
    assert search(col, name, {"text": "puppy", "k": 1})[0]["id"] == "x"     # loaded into memory now
    answer = put(col, name, {"items": [{"id": "x", "text": "car", "metadata": {"v": 2}}]})
    assert answer["upserted"] == 1 and answer["count"] == 2, answer
    top = search(col, name, {"text": "car", "k": 1})[0]
    assert top["id"] == "x" and top["text"] == "car" and top["metadata"] == {"v": 2}, top
    assert abs(top["score"] - 1.0) < SCORE_TOL, top
    # later PUTs may repeat the model (it must match)
    put(col, name, {"model": MODEL_NAME, "items": [{"id": "z", "text": "banana"}]})
    assert count(col, name) == 3


def test_an_item_may_give_a_vector_besides_its_text(col, ref):
    name = "text-and-vector"
    car = ref.embed("car")[0]
    put(col, name, {"model": MODEL_NAME, "items": [{"id": "v", "text": "dog", "vector": (2 * car).tolist()},
                                                   {"id": "t", "text": "cat"}]})
    top = search(col, name, {"vector": car.tolist(), "k": 1})[0]
    assert top["id"] == "v" and abs(top["score"] - 1.0) < 1e-4 and top["text"] == "dog", top


def test_replace_true_removes_every_item_the_request_does_not_name(col, ref):
    name = "replaced"
    put(col, name, {"model": MODEL_NAME, "items": [{"id": i, "text": t} for i, t in
                                                   (("a", "cat"), ("b", "car"), ("c", "apple"))]})
    assert len(search(col, name, {"text": "x", "k": 10})) == 3
    answer = put(col, name, {"items": [{"id": "b", "text": "bus"}, {"id": "d", "text": "pear"}], "replace": True})
    assert answer["count"] == 2 and answer["upserted"] == 2, answer
    results = search(col, name, {"text": "cat", "k": 10})
    assert sorted(r["id"] for r in results) == ["b", "d"], results
    assert next(r for r in results if r["id"] == "b")["text"] == "bus"


def test_delete_ids_removes_them_and_unknown_ids_are_not_an_error(col):
    name = "deletes"
    put(col, name, {"dimension": 3, "items": [{"id": i, "vector": v} for i, v in
                                              (("a", [1, 0, 0]), ("b", [0, 1, 0]), ("c", [0, 0, 1]))]})
    assert search(col, name, {"vector": [1, 0, 0], "k": 1})[0]["id"] == "a"
    answer = ok(delete_ids(col, name, ["a", "zzz"]))
    assert answer["deleted"] == 1 and answer["count"] == 2 and answer["name"] == name, answer
    assert [r["id"] for r in search(col, name, {"vector": [1, 0, 0], "k": 10})] == ["b", "c"]
    answer = ok(delete_ids(col, name, ["zzz"]))
    assert answer["deleted"] == 0 and answer["count"] == 2, answer
    assert_error(col.post(f"/v1/collections/{name}/delete", json={"ids": "a"}), 400)


def test_delete_collection_then_it_is_gone(col):
    name = "short-lived"
    put(col, name, {"dimension": 2, "items": [{"id": "a", "vector": [1, 1]}]})
    search(col, name, {"vector": [1, 1]})
    r = requests.delete(f"{col.url}/v1/collections/{name}", timeout=30)
    assert r.status_code == 204, describe(r)
    for r in (col.get(f"/v1/collections/{name}"), search_raw(col, name, {"vector": [1, 1]}),
              requests.delete(f"{col.url}/v1/collections/{name}", timeout=30)):
        assert_code(r, 404, "collection_not_found")
    assert name not in [c["name"] for c in ok(col.get("/v1/collections"))["collections"]]
    # the name can be used again, with another dimension
    assert put(col, name, {"dimension": 3, "items": [{"id": "b", "vector": [0, 0, 1]}]})["dimension"] == 3


def test_refused_upserts_store_nothing(col, ref):
    name = "atomic"
    put(col, name, {"model": MODEL_NAME, "items": [{"id": "keep", "text": "cat"}]})
    before = collection(col, name)
    good = {"id": "new-1", "text": "dog"}
    cases = [
        ([good, {"id": "dup", "text": "a"}, {"id": "dup", "text": "b"}], "dup"),
        ([good, {"id": "no-text"}], None),
        ([good, {"id": "empty", "text": ""}], None),
        ([good, {"id": "short-vector", "vector": [0.1] * (DIMENSION - 1)}], None),
        ([good, {"id": "zeros", "vector": [0.0] * DIMENSION}], None),
        ([good, {"id": "", "text": "empty id"}], None),
        ([good, {"id": "é" * 129, "text": "258 bytes of id"}], None),
        ([good, {"id": "meta", "text": "x", "metadata": {"blob": "x" * 17_000}}], None),
        ([good, {"id": "meta-list", "text": "x", "metadata": [1, 2]}], None),
        ([good, {"text": "no id"}], None),
        ([], None),
    ]
    for items, mention in cases:
        r = put_raw(col, name, {"items": items})
        what = json.dumps(items)[:120]
        assert r.status_code == 400, f"{what}: {describe(r)}"
        assert_code(r, 400, "invalid_request", *([mention] if mention else []))
        assert collection(col, name) == before, f"{what}: the collection changed"
    assert [r["id"] for r in search(col, name, {"text": "dog", "k": 10})] == ["keep"]
    # 2049 items
    r = put_raw(col, name, {"items": [{"id": f"i{i}", "text": "t"} for i in range(2049)]})
    assert_code(r, 400, "invalid_request")
    assert collection(col, name) == before
    # the limits themselves are accepted: a 256-byte id, metadata just under 16 KiB
    answer = put(col, name, {"items": [{"id": "é" * 128, "text": "long id"},
                                       {"id": "big-meta", "text": "x", "metadata": {"blob": "x" * 15_000}}]})
    assert answer["count"] == 3, answer
    hit = search(col, name, {"text": "x", "k": 10})
    assert any(r["id"] == "big-meta" and r["metadata"] == {"blob": "x" * 15_000} for r in hit), hit
    assert any(r["id"] == "é" * 128 for r in hit), hit


def test_the_first_put_needs_a_served_encoder_or_a_dimension(col):
    item = {"id": "a", "text": "cat"}
    for body, statuses in (({"items": [item]}, (400,)),
                           ({"model": "no-such-model", "items": [item]}, (400, 404)),
                           ({"model": NOT_ENCODER, "items": [item]}, (400,)),
                           ({"dimension": 0, "items": [{"id": "a", "vector": [1]}]}, (400,)),
                           ({"dimension": 4097, "items": [{"id": "a", "vector": [1] * 4097}]}, (400,))):
        r = put_raw(col, "not-created", body)
        assert r.status_code in statuses, f"{body.get('model', body.get('dimension'))}: {describe(r)}"
        assert_error(r, r.status_code)
        assert_code(col.get("/v1/collections/not-created"), 404, "collection_not_found")
    c = put(col, "wide", {"dimension": 4096, "items": [{"id": "a", "vector": [1.0] * 4096}]})
    assert c["dimension"] == 4096 and c["model"] is None, c


def test_a_later_put_that_names_another_model_or_dimension_is_409(col, words):
    before = collection(col, words)
    assert_code(put_raw(col, words, {"dimension": 64, "items": [{"id": "v", "vector": [1.0] * 64}]}), 409, "conflict")
    # another model: a conflict (or refused first for not being an encoder; the contract does
    # not order the two checks)
    r = put_raw(col, words, {"model": NOT_ENCODER, "items": [{"id": "v", "text": "x"}]})
    assert (r.status_code, r.json().get("code")) in ((409, "conflict"), (400, "invalid_request")), describe(r)
    assert collection(col, words) == before
    name = "vectors-only"
    put(col, name, {"dimension": 4, "items": [{"id": "a", "vector": [1, 2, 3, 4]}]})
    assert_code(put_raw(col, name, {"model": MODEL_NAME, "items": [{"id": "b", "text": "cat"}]}), 409, "conflict")
    assert_code(put_raw(col, name, {"dimension": 5, "items": [{"id": "b", "vector": [1] * 5}]}), 409, "conflict")
    assert count(col, name) == 1


# =========================================================================== vector collections

def test_a_vector_collection_needs_vectors_of_its_dimension_and_normalises_them(col):
    name = "vecs"
    c = put(col, name, {"dimension": 3, "items": [
        {"id": "b", "vector": [5, 0, 0], "metadata": {"k": 1}},
        {"id": "a", "vector": [0.5, 0, 0]},
        {"id": "c", "vector": [1, 0, 0]},
        {"id": "d", "vector": [1, 1, 0]},
        {"id": "e", "vector": [-1, 0, 0]},
    ]})
    assert c["model"] is None and c["dimension"] == 3 and c["count"] == 5 and c["upserted"] == 5, c
    results = search(col, name, {"vector": [2, 0, 0], "k": 5})
    # equal scores are ordered by id
    assert [r["id"] for r in results] == ["a", "b", "c", "d", "e"], results
    scores = [r["score"] for r in results]
    np.testing.assert_allclose(scores, [1, 1, 1, 1 / np.sqrt(2), -1], rtol=0, atol=1e-6)
    assert results[1]["metadata"] == {"k": 1} and results[0]["metadata"] == {}, results
    assert results[0].get("text") in (None, ""), results[0]
    for items in ([{"id": "x", "text": "a text needs a model"}],
                  [{"id": "x", "vector": [1, 0]}],
                  [{"id": "x", "vector": [1, 0, 0, 0]}],
                  [{"id": "x", "vector": [0, 0, 0]}],
                  [{"id": "x", "vector": ["1", "0", "0"]}]):
        assert_code(put_raw(col, name, {"items": items}), 400, "invalid_request")
    assert_error(search_raw(col, name, {"text": "no model to embed it"}), 400)
    assert_code(search_raw(col, name, {"vector": [0, 1]}), 400, "invalid_request")
    assert count(col, name) == 5


def test_5000_random_vectors_search_like_numpy_exact_search(col):
    name = "random-64"
    rng = np.random.default_rng(64)
    x = rng.normal(size=(5000, 64)).astype(np.float32)
    ids = [f"v{i:05d}" for i in range(5000)]
    for start in range(0, 5000, 2048):
        items = [{"id": ids[i], "vector": x[i].tolist(), "metadata": {"bucket": i % 7}}
                 for i in range(start, min(start + 2048, 5000))]
        body = {"dimension": 64, "items": items} if start == 0 else {"items": items}
        answer = put(col, name, body)
        assert answer["upserted"] == len(items) and answer["count"] == min(start + 2048, 5000), answer
    xn = unit(x.astype(np.float32).astype(np.float64))
    buckets = np.arange(5000) % 7
    for q in range(5):
        query = rng.normal(size=64)
        scores = xn @ unit(query)
        expected = dict(zip(ids, scores.tolist()))
        results = search(col, name, {"vector": query.tolist(), "k": 10})
        assert_ranking(results, expected, 10, f"query {q}", tol=1e-4)
        flt = {"bucket": {"$in": [1, 2]}}
        exclude = [r["id"] for r in results[:3]]
        filtered = {i: s for i, s, b in zip(ids, scores.tolist(), buckets) if b in (1, 2) and i not in exclude}
        results = search(col, name, {"vector": query.tolist(), "k": 10, "filter": flt, "exclude_ids": exclude})
        assert_ranking(results, filtered, 10, f"query {q} filtered", tol=1e-4)
    results = search(col, name, {"vector": query.tolist(), "k": 1000})
    assert_ranking(results, expected, 1000, "k 1000", tol=1e-4)


# =========================================================================== durability

def stored_anywhere(state, needle: bytes) -> bool:
    """Whether the database of the state holds `needle` (SQLite files, or a bytea cell of any
    table of the PostgreSQL database)."""
    if database_engine() == "sqlite":
        return needle in b"".join(p.read_bytes() for p in state.data_dir.glob("lectern.db*"))
    import psycopg
    with psycopg.connect(state.database.url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"').fetchall():
                for cell in row:
                    if isinstance(cell, (bytes, bytearray, memoryview)) and needle in bytes(cell):
                        return True
    return False


def test_collections_survive_a_kill_and_a_restart(server_state, repo, ref):
    state = server_state(models=repo)
    srv = state.start()
    wait_for_model(srv, MODEL_NAME)
    put(srv, "durable", {"model": MODEL_NAME, "items": word_items()})
    ok(delete_ids(srv, "durable", ["w-cat"]))
    put(srv, "durable", {"items": [{"id": "w-dog", "text": "wolf", "metadata": {"changed": True}}]})
    put(srv, "durable-vecs", {"dimension": 2, "items": [{"id": "three-four", "vector": [3, 4]},
                                                         {"id": "other", "vector": [-1, 2]}]})
    ok(delete_ids(srv, "durable-vecs", ["other"]))
    queries = ["kitten", "automobile", "citrus"]
    before = {q: search(srv, "durable", {"text": q, "k": 5}) for q in queries}
    described = {n: collection(srv, n) for n in ("durable", "durable-vecs")}
    srv.kill()          # SIGKILL right after the acknowledgements

    # unit-length little-endian float32 in the database: (0.6, 0.8)
    assert stored_anywhere(state, struct.pack("<2f", 0.6, 0.8)), "the vector (3, 4) is not stored as (0.6, 0.8) f32"

    srv = state.start()
    wait_for_model(srv, MODEL_NAME)
    for n, c in described.items():
        assert collection(srv, n) == c, n
    for q in queries:
        after = search(srv, "durable", {"text": q, "k": 5})
        assert [r["id"] for r in after] == [r["id"] for r in before[q]], (q, before[q], after)
        np.testing.assert_allclose([r["score"] for r in after], [r["score"] for r in before[q]], rtol=0, atol=1e-5)
    assert "w-cat" not in {r["id"] for r in search(srv, "durable", {"text": "cat", "k": 30})}
    wolf = search(srv, "durable", {"text": "wolf", "k": 1})[0]
    assert wolf["id"] == "w-dog" and wolf["metadata"] == {"changed": True}, wolf
    assert [r["id"] for r in search(srv, "durable-vecs", {"vector": [0.6, 0.8]})] == ["three-four"]
    # and it keeps taking changes
    put(srv, "durable", {"items": [{"id": "w-cat", "text": "cat"}]})
    assert search(srv, "durable", {"text": "kitten", "k": 1})[0]["id"] == "w-cat"


# =========================================================================== pipelines

PIPELINES = '''
[repository]
models = "models"

[pipelines.neighbours]
steps = [
  { id = "near", search = "words", text = "input.word", k = 3, exclude_ids = "input.mastered" },
]

[pipelines.same-group]
steps = [
  { id = "near", search = "words", text = "input.word", k = 2, filter = { group = "input.group" }, exclude_ids = "input.mastered" },
]
shape = { word = "input.word", first = "near.results[0].id", found = "near.results" }

[pipelines.by-vector]
steps = [
  { id = "near", search = "vecs", vector = "input.vec", k = 2 },
]

[pipelines.nowhere]
steps = [
  { id = "near", search = "no-such-collection", text = "input.word", k = 3 },
]
'''


def test_a_pipeline_search_step_returns_neighbours_without_the_mastered_ones(start_config_server, tmp_path, ref):
    root = tmp_path / "pipeline"
    make_repository(root / "models")
    (root / "lectern.toml").write_text(PIPELINES)
    srv = start_config_server(root / "lectern.toml")
    wait_for_model(srv, MODEL_NAME)
    put(srv, "words", {"model": MODEL_NAME, "items": word_items()})
    put(srv, "vecs", {"dimension": 2, "items": [{"id": "east", "vector": [1, 0]}, {"id": "north", "vector": [0, 1]},
                                                 {"id": "west", "vector": [-1, 0]}]})
    items = word_items()

    answer = ok(srv.post("/v1/pipelines/neighbours", json={"word": "kitten", "mastered": ["w-cat", "w-dog"]}))
    assert set(answer) == {"near"}, answer
    assert answer["near"]["collection"] == "words", answer
    results = answer["near"]["results"]
    expected = reference_scores(ref, "kitten", [it for it in items if it["id"] not in ("w-cat", "w-dog")])
    assert_ranking(results, expected, 3, "pipeline neighbours")
    assert all({"id", "score", "text", "metadata"} <= set(r) for r in results), results

    answer = ok(srv.post("/v1/pipelines/neighbours", json={"word": "kitten", "mastered": []}))
    assert answer["near"]["results"][0]["id"] == "w-cat", answer

    answer = ok(srv.post("/v1/pipelines/same-group", json={"word": "automobile", "group": "vehicle", "mastered": ["w-car"]}))
    assert answer["word"] == "automobile", answer
    assert [group_of(r["id"]) for r in answer["found"]] == ["vehicle", "vehicle"], answer
    assert "w-car" not in {r["id"] for r in answer["found"]} and answer["first"] == answer["found"][0]["id"], answer
    expected = reference_scores(ref, "automobile", [it for it in items
                                                    if it["metadata"]["group"] == "vehicle" and it["id"] != "w-car"])
    assert_ranking(answer["found"], expected, 2, "pipeline with a filter")

    answer = ok(srv.post("/v1/pipelines/by-vector", json={"vec": [1, 0.1]}))
    assert [r["id"] for r in answer["near"]["results"]] == ["east", "north"], answer

    r = srv.post("/v1/pipelines/nowhere", json={"word": "kitten"})
    assert_code(r, 400, "pipeline_step_failed")


# =========================================================================== roles

def test_clients_search_and_embed_trainers_write(start_server, repo, ref):
    srv = start_server(models_dir=repo)
    wait_for_model(srv, MODEL_NAME)
    put(srv, "roles", {"model": MODEL_NAME, "items": word_items()[:6]})     # before any key: open
    admin = ok(srv.post("/v1/keys", json={"name": "admin", "role": "admin"}), 201)["key"]

    def key(role):
        r = srv.post("/v1/keys", json={"name": role, "role": role}, headers={"Authorization": f"Bearer {admin}"})
        return ok(r, 201)["key"]

    keys = {"client": key("client"), "trainer": key("trainer"), "admin": admin}

    def auth(role):
        return {"Authorization": f"Bearer {keys[role]}"} if role else {}

    item = {"items": [{"id": "w-new", "text": "giraffe"}]}
    for role in (None, "client", "trainer", "admin"):
        reads = [srv.get("/v1/collections", headers=auth(role)),
                 srv.get("/v1/collections/roles", headers=auth(role)),
                 search_raw(srv, "roles", {"text": "kitten", "k": 2}, headers=auth(role)),
                 srv.post("/v1/embeddings", json={"model": MODEL_NAME, "input": ["x"]}, headers=auth(role))]
        writes = [put_raw(srv, "roles", item, headers=auth(role)),
                  delete_ids(srv, "roles", ["w-new"], headers=auth(role)),
                  put_raw(srv, f"roles-{role}", {"dimension": 2, "items": [{"id": "a", "vector": [1, 0]}]},
                          headers=auth(role))]
        drop = requests.delete(f"{srv.url}/v1/collections/roles-{role}", headers=auth(role), timeout=30)
        if role is None:
            for r in reads + writes + [drop]:
                assert_code(r, 401, "unauthorized")
            continue
        for r in reads:
            assert r.status_code == 200, f"{role}: {describe(r)}"
        if role == "client":
            for r in writes:
                assert_code(r, 403, "forbidden")
            assert_code(drop, 403, "forbidden")
        else:
            for r in writes:
                assert r.status_code == 200, f"{role}: {describe(r)}"
            assert drop.status_code == 204, f"{role}: {describe(drop)}"
    assert ok(srv.get("/v1/collections/roles", headers=auth("client")))["count"] == 6
    # X-API-Key works too, and the openai client sends its api_key as the bearer
    r = search_raw(srv, "roles", {"text": "kitten", "k": 1}, headers={"X-API-Key": keys["client"]})
    assert ok(r)["results"][0]["id"] == "w-cat"
    from openai import AuthenticationError, OpenAI
    client = OpenAI(base_url=f"{srv.url}/v1", api_key=keys["client"], max_retries=0, timeout=120)
    vector = client.embeddings.create(model=MODEL_NAME, input="kitten").data[0].embedding
    assert cosine(vector, ref.embed("kitten")[0]) > 0.999
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{srv.url}/v1", api_key="not-a-key", max_retries=0, timeout=60).embeddings.create(
            model=MODEL_NAME, input="kitten")
