"""Text to meaning: all-MiniLM-L6-v2 sentence embeddings computed with numpy alone.

The model is a 6-layer BERT (hidden size 384, 12 heads, GELU feed-forward of 1536) whose token
vectors are averaged over the real tokens and scaled to unit length, exactly as
sentence-transformers does it; tests/data/embeddings/minilm_golden.json holds its reference
vectors. No torch: the forward pass is a few matrix products per layer, the tokenizer is the
model's own ``tokenizer.json`` through the ``tokenizers`` package, and the weights are read
with ``safetensors.numpy``. The files come from ``python -m catalogue.model_files`` (`make`
runs it); ``settings.EMBEDDING_MODEL_DIR`` says where they are.

Costs measured on the two-core machines (one BLAS thread, see ``_one_blas_thread``): 0.1-0.2 s
to load, a query in 5-10 ms, 13-15 paper abstracts a second (4-6 while other processes keep
the cores busy), about 200 MB of memory once loaded, 250 MB at the peak of a batch.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# What the vectors were computed with, stored beside each (PaperEmbedding.model): a change of
# model or of how texts are read must change it, which makes every stored vector stale.
MODEL_ID = "all-MiniLM-L6-v2"
DIMENSIONS = 384
# sentence-transformers reads at most 256 tokens of a text ([CLS] and [SEP] included).
MAX_TOKENS = 256
# Texts are embedded in batches of similar length of at most this many tokens (padding
# included): the matrix products are as fast per token from ~1,000 tokens on, and the
# attention scores (batch × 12 heads × length²) grow with it: peak RSS 246 MB at 2,048 against
# 345 MB at 4,096 (a process embedding abstracts).
BATCH_TOKENS = 2048
FILES = ("model.safetensors", "tokenizer.json", "config.json")

_LAYER_NORM_EPS = 1e-12
# What masked attention scores become: exp() of it is exactly 0.
_MASKED = np.float32(np.finfo(np.float32).min)


class ModelFilesMissing(RuntimeError):
    """The model's files are not where settings.EMBEDDING_MODEL_DIR says."""


class Embedder:
    """The model, loaded once; ``embed`` is safe to call from several threads."""

    def __init__(self, directory: Path):
        directory = Path(directory)
        missing = [name for name in FILES if not (directory / name).is_file()]
        if missing:
            raise ModelFilesMissing(
                f"embedding model files missing from {directory}: {', '.join(missing)}. "
                "Run `make` (or `python -m catalogue.model_files`) to fetch them, or set "
                "EMBEDDING_MODEL_DIR to where they are."
            )
        config = json.loads((directory / "config.json").read_text())
        self.heads = config["num_attention_heads"]
        _one_blas_thread()
        self.tokenizer = _tokenizer(directory / "tokenizer.json")
        self._load_weights(directory / "model.safetensors", config["num_hidden_layers"])

    def _load_weights(self, path: Path, layers: int) -> None:
        from safetensors.numpy import load_file

        w = {name: array.astype(np.float32, copy=False) for name, array in load_file(path).items()}
        e = "embeddings."
        self.word = w[e + "word_embeddings.weight"]
        self.position = w[e + "position_embeddings.weight"]
        self.token_type = w[e + "token_type_embeddings.weight"][0]  # every token is type 0
        self.embeddings_norm = (w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"])
        self.layers = [_Layer(w, f"encoder.layer.{i}.") for i in range(layers)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit vector per text: an (n, 384) float32 array, rows in the order given."""
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        if not texts:
            return out
        ids = [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]
        # Similar lengths together, so little of each batch is padding.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for batch in _batches(order, ids):
            out[batch] = self._forward([ids[i] for i in batch])
        return out

    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        length = max(len(row) for row in ids)
        tokens = np.zeros((len(ids), length), dtype=np.int64)  # 0 is [PAD]
        mask = np.zeros((len(ids), length), dtype=np.float32)
        for i, row in enumerate(ids):
            tokens[i, : len(row)] = row
            mask[i, : len(row)] = 1
        x = self.word[tokens] + self.position[:length] + self.token_type
        x = _layer_norm(x, *self.embeddings_norm)
        # Added to the attention scores: padding is attended to by nothing.
        bias = ((1 - mask) * _MASKED)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias, self.heads)
        # Mean of the real tokens' vectors, then unit length.
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)[:, None]
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled / norms


class _Layer:
    """One transformer layer: self-attention then the feed-forward, each with a residual
    connection and a LayerNorm after it (BERT's post-norm)."""

    def __init__(self, w: dict[str, np.ndarray], prefix: str):
        a = prefix + "attention."
        # Weights as stored, (out, in): see ``_dense``. Query, key and value in one product.
        self.qkv = np.concatenate([w[f"{a}self.{n}.weight"] for n in ("query", "key", "value")])
        self.qkv_bias = np.concatenate([w[f"{a}self.{n}.bias"] for n in ("query", "key", "value")])
        self.attention_out = w[a + "output.dense.weight"]
        self.attention_out_bias = w[a + "output.dense.bias"]
        self.attention_norm = (w[a + "output.LayerNorm.weight"], w[a + "output.LayerNorm.bias"])
        self.up = w[prefix + "intermediate.dense.weight"]
        self.up_bias = w[prefix + "intermediate.dense.bias"]
        self.down = w[prefix + "output.dense.weight"]
        self.down_bias = w[prefix + "output.dense.bias"]
        self.output_norm = (
            w[prefix + "output.LayerNorm.weight"],
            w[prefix + "output.LayerNorm.bias"],
        )

    def __call__(self, x: np.ndarray, bias: np.ndarray, heads: int) -> np.ndarray:
        batch, length, hidden = x.shape
        size = hidden // heads
        qkv = _dense(x, self.qkv, self.qkv_bias)
        # (3, batch, heads, length, size)
        q, k, v = qkv.reshape(batch, length, 3, heads, size).transpose(2, 0, 3, 1, 4)
        scores = q @ k.transpose(0, 1, 3, 2)
        scores *= np.float32(1 / np.sqrt(size))
        scores += bias
        context = _softmax(scores) @ v
        context = context.transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = _layer_norm(
            x + _dense(context, self.attention_out, self.attention_out_bias), *self.attention_norm
        )
        h = _dense(x, self.up, self.up_bias)
        _gelu(h.reshape(-1, h.shape[-1]))
        return _layer_norm(x + _dense(h, self.down, self.down_bias), *self.output_norm)


def _dense(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x · weightᵀ + bias over x's last axis, ``weight`` in PyTorch's (out, in) layout; a new
    C-contiguous array (``_gelu`` works in place on a view of it).

    A query's few tokens are multiplied as (weight · xᵀ)ᵀ: OpenBLAS does that a third faster
    than x · W (the six layers' products for 4 tokens: 3.5 ms against 5.4). From a few dozen
    rows on, both ways are as fast, and x · weightᵀ needs no copy to be contiguous."""
    rows = x.reshape(-1, x.shape[-1])
    few = len(rows) <= _FEW_ROWS
    out = np.ascontiguousarray((weight @ rows.T).T) if few else rows @ weight.T
    out += bias
    return out.reshape(*x.shape[:-1], weight.shape[0])


_FEW_ROWS = 64


def _batches(order: list[int], ids: list[list[int]]):
    """Runs of ``order`` (indices sorted by length) whose padded size fits BATCH_TOKENS."""
    batch: list[int] = []
    for i in order:
        # Sorted ascending: the newest text is the batch's longest.
        if batch and (len(batch) + 1) * len(ids[i]) > BATCH_TOKENS:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = np.square(centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + _LAYER_NORM_EPS) * weight + bias


def _softmax(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def _gelu(x: np.ndarray) -> None:
    """BERT's exact GELU, x · Φ(x) = x/2 · (1 + erf(x/√2)) (not the tanh approximation), in
    place on a 2-d array. A few rows at a time: the twenty-odd passes of the polynomial then
    stay in the CPU's cache (4 times faster than over the whole array)."""
    for start in range(0, x.shape[0], _GELU_ROWS):
        rows = x[start : start + _GELU_ROWS]
        erf = _erf(rows * _SQRT_HALF)
        erf += 1
        erf *= rows
        erf *= 0.5
        rows[...] = erf


_GELU_ROWS = 64
_SQRT_HALF = np.float32(1 / np.sqrt(2))
# A rational approximation of erf for float32 (the one Eigen and XLA use): within 1e-7 of
# the true value (4e-7 evaluated in float32); numpy has no erf of its own.
_ERF_NUMERATOR = [
    np.float32(c)
    for c in (
        -2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
        -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
        -1.60960333262415e-02,
    )
]  # fmt: skip
_ERF_DENOMINATOR = [
    np.float32(c)
    for c in (
        -1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
        -7.37332916720468e-03, -1.42647390514189e-02,
    )
]  # fmt: skip


def _erf(x: np.ndarray) -> np.ndarray:
    """erf(x) as a new array (``x`` is not changed)."""
    x = np.clip(x, -4, 4)  # erf is ±1 in float32 beyond
    x2 = x * x
    p = x2 * _ERF_NUMERATOR[0]
    p += _ERF_NUMERATOR[1]
    for c in _ERF_NUMERATOR[2:]:
        p *= x2
        p += c
    q = x2 * _ERF_DENOMINATOR[0]
    q += _ERF_DENOMINATOR[1]
    for c in _ERF_DENOMINATOR[2:]:
        q *= x2
        q += c
    p *= x
    p /= q
    return p


def _one_blas_thread() -> bool:
    """Make numpy's OpenBLAS use one thread in this process; False where it cannot be found.

    Its threads spin while they wait for each other, and on two cores shared with PostgreSQL
    and the web server one of them is often descheduled: measured with the machine busy,
    embedding ran at 1 abstract/s with two threads against 6/s with one. The attention's
    many small products gain nothing from threads anyway. (numpy has no API for this; the
    library it bundles does, as threadpoolctl uses it.)
    """
    import ctypes

    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(libs.glob("lib*openblas*.so*")):
        try:
            library = ctypes.CDLL(str(path))  # already loaded by numpy: the same instance
        except OSError:
            continue
        for name in _SET_THREADS:
            if hasattr(library, name):
                getattr(library, name)(1)
                return True
    return False


_SET_THREADS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)


def _tokenizer(path: Path):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    # The shipped tokenizer.json truncates and pads every text to 128 tokens; the model reads
    # 256 (sentence-transformers' max_seq_length), and padding is done per batch, above.
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.no_padding()
    return tokenizer


_embedder: Embedder | None = None
_lock = threading.Lock()


def get_embedder() -> Embedder:
    """The process's embedder, loaded on first use (raises ModelFilesMissing without files)."""
    global _embedder
    if _embedder is None:
        with _lock:
            if _embedder is None:
                from django.conf import settings

                _embedder = Embedder(settings.EMBEDDING_MODEL_DIR)
    return _embedder
