"""Text to meaning: all-MiniLM-L6-v2 sentence embeddings, run by ONNX Runtime.

The model's graph is written from its own weights (``catalogue.minilm_graph``: no converted
model file, no torch) and run by ONNX Runtime on one thread; the tokenizer is the model's own
``tokenizer.json`` through the ``tokenizers`` package, and the weights are read with
``safetensors.numpy``. Vectors are sentence-transformers' own (within 1e-6:
tests/data/embeddings/minilm_golden.json holds its reference vectors). The files come from
``python -m catalogue.model_files`` (`make` runs it); ``settings.EMBEDDING_MODEL_DIR`` says
where they are.

Why the runtime: a reader's query is embedded on every new search, and the forward pass of a
few tokens streams the model's 42 MB of layer weights. numpy's products took 7.3-7.7 ms a
query; ONNX Runtime's, with the weights packed for its kernels once at load, 2.4-2.7 ms, the
same vectors (within 2e-7 of numpy's). Hugging Face abstracts: 15 a second against numpy's 12
(docs/benchmarks.md, "ninth pass").

Readers' queries are embedded by the same model with its dense products in 8-bit integers
(``get_query_embedder``): 1.0 ms a query where the float model took 3.3-3.4 ms on the same
machine, ~0.15 s to load, vectors within cosine 0.98 of the float model's.

Costs of the float model on the two-core machines (one thread): ~0.3 s to load, a query in
2.4-2.7 ms, ~15 paper abstracts a second, ~180 MB of memory once loaded (the runtime's copy of the
weights and their packed form; the arrays read from the file are freed; numpy's took ~110),
~430 MB at the peak of a batch.
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
# What readers' queries are embedded with (``get_query_embedder``): the same model, quantized.
QUERY_MODEL_ID = f"{MODEL_ID}/int8"
DIMENSIONS = 384
# sentence-transformers reads at most 256 tokens of a text ([CLS] and [SEP] included).
MAX_TOKENS = 256
# Texts are embedded in batches of similar length of at most this many tokens (padding
# included): the matrix products are as fast per token from ~1,000 tokens on, and the
# attention scores (batch × 12 heads × length²) grow with it: peak RSS 437 MB at 2,048 against
# 530 MB at 4,096 (a process embedding abstracts).
BATCH_TOKENS = 2048
FILES = ("model.safetensors", "tokenizer.json", "config.json")


class ModelFilesMissing(RuntimeError):
    """The model's files are not where settings.EMBEDDING_MODEL_DIR says."""


class Embedder:
    """The model, loaded once; ``embed`` is safe to call from several threads.
    ``quantized``: its dense products in 8-bit integers (``minilm_graph``), for queries."""

    def __init__(self, directory: Path, quantized: bool = False):
        directory = Path(directory)
        missing = [name for name in FILES if not (directory / name).is_file()]
        if missing:
            raise ModelFilesMissing(
                f"embedding model files missing from {directory}: {', '.join(missing)}. "
                "Run `make` (or `python -m catalogue.model_files`) to fetch them, or set "
                "EMBEDDING_MODEL_DIR to where they are."
            )
        config = json.loads((directory / "config.json").read_text())
        self.tokenizer = _tokenizer(directory / "tokenizer.json")
        self._session = _session(directory / "model.safetensors", config, quantized)

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
        mask = np.zeros((len(ids), length), dtype=np.int64)
        for i, row in enumerate(ids):
            tokens[i, : len(row)] = row
            mask[i, : len(row)] = 1
        (vectors,) = self._session.run(None, {"input_ids": tokens, "attention_mask": mask})
        return vectors


def _session(weights_path: Path, config: dict, quantized: bool = False):
    """An ONNX Runtime session of the model's graph, on one thread that never spins: on two
    cores shared with PostgreSQL and the web server, spinning threads starve the others
    (measured with numpy's OpenBLAS: 1 abstract a second with two threads, 6 with one).
    ``run`` is safe to call from several threads at once. The runtime copies the weights it
    is handed while it loads the graph, so this process's arrays are freed on return (73 MB).
    """
    # Imported here: a process that never embeds (most web requests find the query's vector
    # in Redis) does not load them (~0.15 s to import, with ml_dtypes below 0.7).
    import onnxruntime
    from safetensors.numpy import load_file

    from catalogue import minilm_graph

    weights = {
        name: array.astype(np.float32, copy=False)
        for name, array in load_file(weights_path).items()
    }
    graph = minilm_graph.build(weights, config, quantized)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: not a warning per unused weight
    names = list(graph.weights)
    values = [onnxruntime.OrtValue.ortvalue_from_numpy(graph.weights[n]) for n in names]
    options.add_external_initializers(names, values)
    return onnxruntime.InferenceSession(
        graph.model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


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


def _tokenizer(path: Path):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    # The shipped tokenizer.json truncates and pads every text to 128 tokens; the model reads
    # 256 (sentence-transformers' max_seq_length), and padding is done per batch, above.
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.no_padding()
    return tokenizer


_embedders: dict[bool, Embedder] = {}
_lock = threading.Lock()


def get_embedder() -> Embedder:
    """The process's embedder of papers, loaded on first use (raises ModelFilesMissing
    without files): the float model, whose vectors are sentence-transformers' own."""
    return _loaded(quantized=False)


def get_query_embedder() -> Embedder:
    """The process's embedder of readers' queries: the quantized model (``minilm_graph``),
    a third of the time a query (1.0 ms against 3.3-3.4); its vectors are within cosine 0.98 of
    the float model's. Measured with ``make eval`` (830 judged queries), the default hybrid
    search moved by 0.002 at most (lexical nDCG@10 0.396 -> 0.395, known-item MRR 0.945 ->
    0.944, reworded titles' MRR 0.822 -> 0.820), search by meaning alone a little up; the
    nearest 10 papers of 100 title queries 90 % the same (HNSW's own approximation included)."""
    return _loaded(quantized=True)


def _loaded(quantized: bool) -> Embedder:
    embedder = _embedders.get(quantized)
    if embedder is None:
        with _lock:
            embedder = _embedders.get(quantized)
            if embedder is None:
                from django.conf import settings

                embedder = _embedders[quantized] = Embedder(settings.EMBEDDING_MODEL_DIR, quantized)
    return embedder
