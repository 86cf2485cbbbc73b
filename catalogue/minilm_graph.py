"""all-MiniLM-L6-v2 as an ONNX graph, built from its own weights, for ONNX Runtime to run.

The model is a 6-layer BERT (hidden size 384, 12 heads, exact-GELU feed-forward of 1536)
whose token vectors are averaged over the real tokens and scaled to unit length, exactly as
sentence-transformers does it. No model file is converted or shipped: ``build`` writes the
graph (a few hundred nodes, ~80 kB) from ``config.json``'s sizes and names each weight of
``model.safetensors`` by the tensor it is; the weights are handed to the runtime as they
are (``Graph.weights``), never copied into the graph. Pure: no I/O.

Inputs ``input_ids`` and ``attention_mask`` (batch × length, int64: 1 for a real token, 0
for padding); output ``embedding`` (batch × 384, float32, unit length).

``build(..., quantized=True)``: the graph for readers' queries. The weights of its 24 dense
products are stored as 8-bit integers, one scale per output column (``quantize_columns``),
and multiplied by ONNX Runtime's ``DynamicQuantizeMatMul``, which quantizes each product's
input on the fly. A query of a few tokens streamed the 42 MB of float weights through the
cache (3.3-3.4 ms on the two-core machines); their 11 MB of integers take 1.0 ms. Its vectors
are within cosine 0.98 of the float model's (tests/catalogue/test_embedder.py); papers are
embedded by the float model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Opset 18: LayerNormalization (17) and reductions taking their axes as an input (18).
OPSET = 18
# ONNX Runtime's own operators (DynamicQuantizeMatMul), version 1.
RUNTIME_DOMAIN = "com.microsoft"
_LAYER_NORM_EPS = 1e-12
# What masked attention scores become: exp() of it is exactly 0.
_MASKED = np.float32(np.finfo(np.float32).min)


@dataclass
class Graph:
    """The model's graph and the weights it names (name -> array, to hand to the runtime)."""

    model: onnx.ModelProto
    weights: dict[str, np.ndarray] = field(default_factory=dict)


class _Builder:
    """Nodes, constants and weights, each output named after the step that makes it."""

    def __init__(self, weights: dict[str, np.ndarray], quantized: bool = False):
        self.source = weights
        self.quantized = quantized
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []
        self.weights: dict[str, np.ndarray] = {}
        self._count = 0

    def op(self, op_type: str, *inputs: str, **attributes) -> str:
        self._count += 1
        output = f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def constant(self, value, dtype=np.float32) -> str:
        """A small constant (a scalar, a shape, axes), stored in the graph itself."""
        name = f"constant_{len(self.constants)}"
        self.constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(self, name: str, array: np.ndarray | None = None, dtype=np.float32) -> str:
        """A weight of the model (by its safetensors name, or a derived array under a new
        name): an initializer whose data the runtime is given (``Graph.weights``)."""
        array = self.source[name] if array is None else array
        self.weights[name] = np.ascontiguousarray(array, dtype=dtype)
        return name

    def dense(self, x: str, prefix: str) -> str:
        """x · weightᵀ + bias, the weight stored (out, in) as PyTorch's Linear keeps it."""
        source = self.source
        return self.product(x, prefix, source[prefix + "weight"].T, source[prefix + "bias"])

    def product(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray) -> str:
        """x · weight + bias (``weight``: in × out), in floats or, in a quantized graph, in
        8-bit integers with one scale per output column."""
        if not self.quantized:
            product = self.op("MatMul", x, self.weight(name + "weight.T", weight))
            return self.op("Add", product, self.weight(name + "bias", bias))
        integers, scales = quantize_columns(weight)
        inputs = (
            x,
            self.weight(name + "weight.int8", integers, np.int8),
            self.weight(name + "weight.scale", scales),
            self.weight(name + "weight.zero", np.zeros(scales.shape, np.int8), np.int8),
            self.weight(name + "bias", bias),
        )
        return self.op("DynamicQuantizeMatMul", *inputs, domain=RUNTIME_DOMAIN)

    def layer_norm(self, x: str, prefix: str) -> str:
        return self.op(
            "LayerNormalization",
            x,
            self.weight(prefix + "weight"),
            self.weight(prefix + "bias"),
            axis=-1,
            epsilon=_LAYER_NORM_EPS,
        )


def quantize_columns(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weights, float scale per column): each column's largest magnitude becomes 127,
    zero stays zero (symmetric), so weight ≈ integers × scales. Pure."""
    scales = np.abs(weight).max(axis=0) / 127.0
    scales = np.where(scales > 0, scales, 1.0).astype(np.float32)
    integers = np.clip(np.rint(weight / scales), -127, 127).astype(np.int8)
    return integers, scales


def build(weights: dict[str, np.ndarray], config: dict, quantized: bool = False) -> Graph:
    """The graph of the model whose ``weights`` (safetensors names, float32) and ``config``
    (its config.json) are given; ``quantized``: its dense products in 8-bit integers."""
    b = _Builder(weights, quantized)
    heads = config["num_attention_heads"]
    hidden = config["hidden_size"]
    mask = b.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    x = _embeddings(b, "input_ids")
    # Added to the attention scores: padding is attended to by nothing. (batch, 1, 1, length)
    bias = b.op("Mul", b.op("Sub", b.constant(1), mask), b.constant(_MASKED))
    bias = b.op("Unsqueeze", bias, b.constant([1, 2], np.int64))
    for i in range(config["num_hidden_layers"]):
        x = _layer(b, x, bias, f"encoder.layer.{i}.", heads, hidden // heads)
    b.nodes.append(helper.make_node("Identity", [_mean_unit(b, x, mask)], ["embedding"]))
    graph = helper.make_graph(
        b.nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "length"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "length"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        [*b.constants, *(_declared(name, array) for name, array in b.weights.items())],
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if quantized:
        opsets.append(helper.make_opsetid(RUNTIME_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8  # what the runtime of every supported release reads
    return Graph(model, b.weights)


def _declared(name: str, array: np.ndarray) -> onnx.TensorProto:
    """An initializer's type and shape without its data: the runtime is given the array
    itself (``SessionOptions.add_external_initializers``), so 90 MB are not copied into the
    graph and parsed back out of it."""
    data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
    tensor = TensorProto(name=name, data_type=data_type, dims=array.shape)
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="supplied-at-load")
    return tensor


def _embeddings(b: _Builder, ids: str) -> str:
    """Word + position + token type (every token is type 0) embeddings, normalised."""
    e = "embeddings."
    words = b.op("Gather", b.weight(e + "word_embeddings.weight"), ids)
    length = b.op("Gather", b.op("Shape", ids), b.constant(1, np.int64))
    positions = b.op("Range", b.constant(0, np.int64), length, b.constant(1, np.int64))
    x = b.op("Add", words, b.op("Gather", b.weight(e + "position_embeddings.weight"), positions))
    token_type = b.weight(e + "token_type", b.source[e + "token_type_embeddings.weight"][0])
    return b.layer_norm(b.op("Add", x, token_type), e + "LayerNorm.")


def _layer(b: _Builder, x: str, bias: str, prefix: str, heads: int, size: int) -> str:
    """One transformer layer: self-attention then the feed-forward, each with a residual
    connection and a LayerNorm after it (BERT's post-norm)."""
    a = prefix + "attention."
    # Query, key and value in one product: (batch, length, 3 · hidden).
    qkv_weight = np.concatenate(
        [b.source[f"{a}self.{n}.weight"] for n in ("query", "key", "value")]
    )
    qkv_bias = np.concatenate([b.source[f"{a}self.{n}.bias"] for n in ("query", "key", "value")])
    qkv = b.product(x, a + "qkv.", qkv_weight.T, qkv_bias)
    # -> (3, batch, heads, length, size)
    qkv = b.op("Reshape", qkv, b.constant([0, 0, 3, heads, size], np.int64))
    qkv = b.op("Transpose", qkv, perm=[2, 0, 3, 1, 4])
    q, k, v = (b.op("Gather", qkv, b.constant(i, np.int64), axis=0) for i in range(3))
    scores = b.op("MatMul", q, b.op("Transpose", k, perm=[0, 1, 3, 2]))
    scores = b.op("Add", b.op("Mul", scores, b.constant(1 / np.sqrt(size))), bias)
    context = b.op("MatMul", b.op("Softmax", scores, axis=-1), v)
    context = b.op("Transpose", context, perm=[0, 2, 1, 3])
    context = b.op("Reshape", context, b.constant([0, 0, heads * size], np.int64))
    attended = b.dense(context, a + "output.dense.")
    x = b.layer_norm(b.op("Add", x, attended), a + "output.LayerNorm.")
    h = b.dense(x, prefix + "intermediate.dense.")
    # BERT's exact GELU, x/2 · (1 + erf(x/√2)) (not the tanh approximation).
    erf = b.op("Erf", b.op("Mul", h, b.constant(1 / np.sqrt(2))))
    h = b.op("Mul", b.op("Mul", h, b.op("Add", erf, b.constant(1))), b.constant(0.5))
    out = b.dense(h, prefix + "output.dense.")
    return b.layer_norm(b.op("Add", x, out), prefix + "output.LayerNorm.")


def _mean_unit(b: _Builder, x: str, mask: str) -> str:
    """The mean of the real tokens' vectors, scaled to unit length."""
    tokens = b.constant([1], np.int64)
    kept = b.op("Mul", x, b.op("Unsqueeze", mask, b.constant([2], np.int64)))
    summed = b.op("ReduceSum", kept, tokens, keepdims=0)
    counted = b.op("Max", b.op("ReduceSum", mask, tokens, keepdims=1), b.constant(1e-9))
    mean = b.op("Div", summed, counted)
    norm = b.op("ReduceL2", mean, b.constant([1], np.int64), keepdims=1)
    return b.op("Div", mean, b.op("Max", norm, b.constant(1e-12)))
