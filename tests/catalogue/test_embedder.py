"""The MiniLM graph (ONNX Runtime) against sentence-transformers' own vectors
(tests/data/embeddings)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from django.conf import settings

from catalogue import minilm_graph, model_files
from catalogue.embedder import (
    MAX_TOKENS,
    Embedder,
    ModelFilesMissing,
    get_embedder,
    get_query_embedder,
)

GOLDEN = json.loads(
    (Path(__file__).parent.parent / "data" / "embeddings" / "minilm_golden.json").read_text()
)
CASES = {case["name"]: case for case in GOLDEN["cases"]}
TOLERANCE = 1e-5


def reference(name: str) -> np.ndarray:
    return np.array(CASES[name]["vector"], dtype=np.float32)


def test_golden_texts_cover_both_truncation_lengths():
    tokens = {name: case["tokens"] for name, case in CASES.items()}
    assert 128 < tokens["abstract_over_128_tokens"] <= MAX_TOKENS
    assert tokens["abstract_over_256_tokens"] > MAX_TOKENS
    assert GOLDEN["max_seq_length"] == MAX_TOKENS


@pytest.mark.parametrize("name", sorted(CASES))
def test_vector_matches_sentence_transformers(name):
    vector = get_embedder().embed([CASES[name]["text"]])[0]
    assert vector.dtype == np.float32 and vector.shape == (384,)
    assert np.abs(vector - reference(name)).max() < TOLERANCE
    assert np.linalg.norm(vector) == pytest.approx(1, abs=1e-6)


def test_a_batch_of_mixed_lengths_gives_each_text_its_own_vector_in_order():
    names = list(CASES)[::-1]
    vectors = get_embedder().embed([CASES[name]["text"] for name in names])
    assert vectors.shape == (len(names), 384)
    for name, vector in zip(names, vectors, strict=True):
        assert np.abs(vector - reference(name)).max() < TOLERANCE


def test_shipped_128_token_truncation_would_be_caught():
    """tokenizer.json truncates (and pads) to 128 tokens; the model reads 256. Texts past 128
    tokens then lose their end, and the golden vectors tell."""
    model = get_embedder()
    text = CASES["abstract_over_128_tokens"]["text"]
    assert len(model.tokenizer.encode(text).ids) == CASES["abstract_over_128_tokens"]["tokens"]
    short = Embedder(settings.EMBEDDING_MODEL_DIR)
    short.tokenizer.enable_truncation(max_length=128)
    assert np.abs(short.embed([text])[0] - reference("abstract_over_128_tokens")).max() > 100 * (
        TOLERANCE
    )


def test_long_text_is_read_up_to_256_tokens():
    text = CASES["abstract_over_256_tokens"]["text"]
    assert len(get_embedder().tokenizer.encode(text).ids) == MAX_TOKENS


def test_embed_of_nothing_is_an_empty_array():
    assert get_embedder().embed([]).shape == (0, 384)


def test_missing_model_files_say_how_to_get_them(tmp_path):
    with pytest.raises(ModelFilesMissing, match=r"make.*python -m catalogue.model_files"):
        Embedder(tmp_path)


def test_installed_model_files_are_the_checked_ones():
    assert model_files.missing_files(Path(settings.EMBEDDING_MODEL_DIR)) == []


def test_the_runtime_runs_on_one_thread_that_never_spins():
    """Spinning threads on two shared cores starved the others (catalogue.embedder)."""
    options = get_embedder()._session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_threads_embedding_at_once_each_get_their_own_vectors():
    """gunicorn's threads and the embedding tasks share one session."""
    names = sorted(CASES)
    with ThreadPoolExecutor(4) as pool:
        vectors = list(
            pool.map(lambda name: get_embedder().embed([CASES[name]["text"]])[0], names * 3)
        )
    for name, vector in zip(names * 3, vectors, strict=True):
        assert np.abs(vector - reference(name)).max() < TOLERANCE


def test_the_graph_names_the_weights_without_carrying_them():
    """90 MB of weights are handed to the runtime, not copied into the graph and parsed back."""
    from safetensors.numpy import load_file

    directory = Path(settings.EMBEDDING_MODEL_DIR)
    weights = load_file(directory / "model.safetensors")
    graph = minilm_graph.build(weights, json.loads((directory / "config.json").read_text()))
    assert len(graph.model.SerializeToString()) < 200_000
    assert sum(array.nbytes for array in graph.weights.values()) > 80_000_000
    external = {
        tensor.name
        for tensor in graph.model.graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
    }
    assert external == set(graph.weights)


# --- the quantized model of readers' queries (get_query_embedder) -----------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_query_model_is_close_to_sentence_transformers(name):
    vector = get_query_embedder().embed([CASES[name]["text"]])[0]
    assert vector.dtype == np.float32 and vector.shape == (384,)
    assert np.linalg.norm(vector) == pytest.approx(1, abs=1e-6)
    assert float(vector @ reference(name)) > 0.98
    assert np.abs(vector - reference(name)).max() > TOLERANCE  # it is the quantized graph


def test_the_query_model_keeps_which_texts_are_near_each_other():
    texts = [case["text"] for case in GOLDEN["cases"]]
    exact = np.array([reference(case["name"]) for case in GOLDEN["cases"]])
    quantized = get_query_embedder().embed(texts)
    # Each text's nearest other text is the same under both models.
    for similarities in (exact @ exact.T, quantized @ exact.T):
        np.fill_diagonal(similarities, -1)
    nearest = lambda s: s.argmax(axis=1)  # noqa: E731
    assert (nearest(quantized @ exact.T) == nearest(exact @ exact.T)).all()


def test_columns_are_quantized_to_eight_bits_with_a_scale_each():
    weight = np.array([[0.5, -2.0, 0.0], [-0.25, 1.0, 0.0], [0.125, 0.5, 0.0]], np.float32)
    integers, scales = minilm_graph.quantize_columns(weight)
    assert integers.dtype == np.int8 and scales.dtype == np.float32
    assert integers[:, 0].tolist() == [127, -64, 32] and integers[:, 1].tolist()[0] == -127
    assert scales[2] == 1.0 and not integers[:, 2].any()  # an all-zero column stays zero
    assert np.abs(integers * scales - weight).max() <= scales.max() / 2 + 1e-7


def test_the_quantized_graph_stores_a_quarter_of_the_dense_weights():
    from safetensors.numpy import load_file

    directory = Path(settings.EMBEDDING_MODEL_DIR)
    weights = load_file(directory / "model.safetensors")
    config = json.loads((directory / "config.json").read_text())
    plain, quantized = (minilm_graph.build(weights, config, q) for q in (False, True))
    nodes = [node.op_type for node in quantized.model.graph.node]
    assert nodes.count("DynamicQuantizeMatMul") == 4 * 6  # query-key-value, out, 2 feed-forward

    def dense_bytes(graph):
        return sum(a.nbytes for n, a in graph.weights.items() if ".weight." in n or "qkv" in n)

    assert dense_bytes(quantized) < dense_bytes(plain) / 3.5
