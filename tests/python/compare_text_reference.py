"""By hand, not part of the suite: compares the NumPy reference of lectern_text.py with
sentence-transformers on the 100 VARIED_TEXTS (vectors, token counts, truncated ids) and prints
the values test_text_reference.py records.

Needs sentence-transformers and torch (not test requirements), e.g. in a venv of their own
that can also import the test requirements:

    python3 -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers
    PYTHONPATH=.venv/lib/python3.11/site-packages /tmp/st/bin/python tests/python/compare_text_reference.py
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from lectern_text import VARIED_TEXTS, cosine, minilm_folder, reference  # noqa: E402
from test_text_reference import DIMS, SENTENCE_TRANSFORMERS  # noqa: E402


def main():
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_folder()), device="cpu")
    texts = list(dict.fromkeys(VARIED_TEXTS + list(SENTENCE_TRANSFORMERS)))
    theirs = model.encode(texts, batch_size=16, convert_to_numpy=True)
    ref = reference()
    ours = ref.embed(texts)
    cosines = [cosine(a, b) for a, b in zip(ours, theirs)]
    worst = int(np.argmin(cosines))
    print(f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}")
    print(f"{len(texts)} texts: lowest cosine {cosines[worst]:.15f} ({texts[worst][:40]!r}), "
          f"largest component difference {np.abs(ours - theirs).max():.2e}")
    tok = model.tokenizer
    counts = [len(tok(t, truncation=False)["input_ids"]) for t in texts]
    truncated = [tok(t, truncation=True, max_length=model.max_seq_length)["input_ids"] for t in texts]
    bad_counts = [t[:30] for t, c in zip(texts, counts) if c != ref.token_count(t)]
    bad_ids = [t[:30] for t, ids in zip(texts, truncated) if ids != ref.token_ids(t, truncate=True)]
    print(f"token counts that differ: {bad_counts}; truncated ids that differ: {bad_ids}")
    print("recorded values (test_text_reference.SENTENCE_TRANSFORMERS):")
    for text in SENTENCE_TRANSFORMERS:
        vector = theirs[texts.index(text)]
        print(f"  {text[:40]!r}: {[round(float(vector[d]), 6) for d in DIMS]}")
    ok = cosines[worst] > 1 - 1e-9 and not bad_counts and not bad_ids
    print("AGREE" if ok else "DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
