"""all-MiniLM-L6-v2 as an ONNX graph, built from its own weights, for ONNX Runtime to run.

The model is a 6-layer BERT (hidden size 384, 12 heads, exact-GELU feed-forward of 1536)
whose token vectors are averaged over the real tokens and scaled to unit length, exactly as
sentence-transformers does it. No model file is converted or shipped: ``build`` writes the
graph (a few hundred nodes, ~80 kB) from ``config.json``'s sizes and names each weight of
``model.safetensors`` by the tensor it is; the weights are handed to the runtime as they
are (``Graph.weights``), never copied into the graph. Pure: no I/O.

Inputs ``input_ids`` and ``attention_mask`` (batch × length, int64: 1 for a real token, 0
for padding); output ``embedding`` (batch × 384, float32, unit length).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Opset 18: LayerNormalization (17) and reductions taking their axes as an input (18).
OPSET = 18
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

    def __init__(self, weights: dict[str, np.ndarray]):
        self.source = weights
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

    def weight(self, name: str, array: np.ndarray | None = None) -> str:
        """A weight of the model (by its safetensors name, or a derived array under a new
        name): an initializer whose data the runtime is given (``Graph.weights``)."""
        array = self.source[name] if array is None else array
        self.weights[name] = np.ascontiguousarray(array, dtype=np.float32)
        return name

    def dense(self, x: str, prefix: str) -> str:
        """x · weightᵀ + bias, the weight stored (out, in) as PyTorch's Linear keeps it."""
        transposed = self.weight(prefix + "weight.T", self.source[prefix + "weight"].T)
        return self.op("Add", self.op("MatMul", x, transposed), self.weight(prefix + "bias"))

    def layer_norm(self, x: str, prefix: str) -> str:
        return self.op(
            "LayerNormalization",
            x,
            self.weight(prefix + "weight"),
            self.weight(prefix + "bias"),
            axis=-1,
            epsilon=_LAYER_NORM_EPS,
        )


def build(weights: dict[str, np.ndarray], config: dict) -> Graph:
    """The graph of the model whose ``weights`` (safetensors names, float32) and ``config``
    (its config.json) are given."""
    b = _Builder(weights)
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
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # what the runtime of every supported release reads
    return Graph(model, b.weights)


def _declared(name: str, array: np.ndarray) -> onnx.TensorProto:
    """An initializer's type and shape without its data: the runtime is given the array
    itself (``SessionOptions.add_external_initializers``), so 90 MB are not copied into the
    graph and parsed back out of it."""
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=array.shape)
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
    qkv = b.op("MatMul", x, b.weight(a + "qkv.weight.T", qkv_weight.T))
    qkv = b.op("Add", qkv, b.weight(a + "qkv.bias", qkv_bias))
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
