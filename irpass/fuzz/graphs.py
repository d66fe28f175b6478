"""Hypothesis strategies for random *valid* ONNX models, to fuzz passes with.

:func:`models` draws a model the way exporters write them: a chain of common ops on a float
input with a symbolic batch dimension (``N``), each op picked from those valid for the
current value's rank, dtype and the drawn opset, with valid attributes and shapes computed
along the way. Weights come as initializers, Constant nodes, duplicated initializers (for
deduplication), or graph inputs with a default value (overridable, IR >= 4). The chain mixes
in what passes look for and what they must leave alone: BatchNorm after Conv/Gemm/MatMul,
per-channel and broadcasting constants, neutral elements, Transpose/Reshape chains, shape
arithmetic (``Shape -> Gather -> Concat -> Reshape``), repeated identical nodes, HardSwish /
Gelu / LayerNorm patterns, If and Loop bodies reading outer values, and intermediate values
exposed as extra graph outputs. Half the models carry inferred shapes (``value_info``) on
every value, as exporters write them, so passes that need shapes get to rewrite.

Every drawn model passes the ONNX checker (with strict shape inference) and runs in ONNX
Runtime; the fuzz tests assert that, so a generator bug does not pass for a pass bug.
Values stay bounded (weights scaled by fan-in, divisors away from zero, logs and square
roots of positive values) so that equivalence checks compare numbers, not overflow.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnx.helper as oh
from hypothesis import strategies as st
from onnx import TensorProto, numpy_helper

__all__ = ["BATCH", "OPSETS", "models"]

#: The symbolic batch dimension of every generated graph input.
BATCH = "N"
#: Default-domain opsets drawn (old ones exercise the attribute forms and upgrade_opset).
OPSETS = (11, 13, 14, 17, 18, 20, 21)

Shape = tuple[int | str, ...]
Draw = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Val:
    """A value of the graph under construction: name, shape (``N`` for the batch), dtype."""

    name: str
    shape: Shape
    dtype: int = TensorProto.FLOAT

    @property
    def rank(self) -> int:
        return len(self.shape)

    def static_tail(self) -> bool:
        """Every dim but the first is a number (ops below keep the batch on axis 0)."""
        return all(isinstance(d, int) for d in self.shape[1:])


class Builder:
    """Nodes, initializers and inputs of one graph (the main graph or a body)."""

    def __init__(self, draw: Draw, opset: int, rng: np.random.Generator, prefix: str) -> None:
        self.draw, self.opset, self.rng, self.prefix = draw, opset, rng, prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.extra_outputs: list[Val] = []
        self.pool: list[Val] = []
        self.count = itertools.count()
        self.ir4 = True  # overridable inputs need IR >= 4 (always true for opset >= 11)
        self.weight_inputs = True  # a subgraph cannot take extra inputs

    def fresh(self, base: str) -> str:
        return f"{self.prefix}{base}{next(self.count)}"

    # -- constants --------------------------------------------------------------------
    def const(self, array: np.ndarray, base: str = "c", weight_like: bool = False) -> str:
        """A constant as an initializer, a Constant node, a duplicate or an overridable input."""
        array = np.asarray(array)
        kinds = ["init", "init", "init", "constant", "duplicate"]
        if weight_like and self.weight_inputs and array.dtype == np.float32:
            kinds.append("overridable")
        kind = self.draw(st.sampled_from(kinds), label="const_kind")
        name = self.fresh(base)
        if kind == "constant":
            self.nodes.append(
                oh.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name))
            )
            return name
        self.initializers.append(numpy_helper.from_array(array, name))
        if kind == "duplicate":  # an equal initializer under another name: dedup's work
            twin = self.fresh(base)
            self.initializers.append(numpy_helper.from_array(array, twin))
            return twin
        if kind == "overridable":
            self.inputs.append(
                oh.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape))
            )
        return name

    def weight(
        self,
        shape: tuple[int, ...],
        fan_in: int | None = None,
        positive: bool = False,
        base: str = "w",
    ) -> str:
        scale = 1.0 / math.sqrt(fan_in) if fan_in else 0.5
        array = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        if positive:
            array = np.abs(array) + np.float32(0.5)
        # a value that must stay positive (variance, divisor) cannot be fed random values
        return self.const(array, base, weight_like=not positive)

    def ints(self, values: list[int]) -> str:
        return self.const(np.array(values, np.int64), "i")

    def scalar(self, value: float, one_d: bool = False) -> str:
        return self.const(np.array([value] if one_d else value, np.float32), "s")

    # -- nodes ------------------------------------------------------------------------
    def node(
        self, op: str, inputs: list[str], shape: Shape, dtype: int = TensorProto.FLOAT, **attrs: Any
    ) -> Val:
        out = Val(self.fresh(op.lower()), shape, dtype)
        self.nodes.append(oh.make_node(op, inputs, [out.name], name=self.fresh("n_"), **attrs))
        self.pool.append(out)
        return out

    def axes_form(
        self, op: str, data: list[str], axes: list[int], since: int, **attrs: Any
    ) -> tuple[list[str], dict[str, Any]]:
        """Axes as an attribute before opset ``since``, as an input from it on."""
        if self.opset >= since:
            return [*data, self.ints(axes)], attrs
        return data, {**attrs, "axes": axes}


# ------------------------------------------------------------------------------ helpers
def _broadcast(a: Shape, b: Shape) -> Shape:
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + tuple(a)
    b = (1,) * (rank - len(b)) + tuple(b)
    out: list[int | str] = []
    for x, y in zip(a, b, strict=True):
        out.append(y if x == 1 else x)
    return tuple(out)


def _batch_shape(b: Builder, x: Val) -> str:
    """An int64 shape [batch of x, 1, ..., 1] computed at run time (Shape -> Slice -> Concat)."""
    dims = b.node("Shape", [x.name], (x.rank,), TensorProto.INT64)
    first = b.node("Slice", [dims.name, b.ints([0]), b.ints([1])], (1,), TensorProto.INT64)
    ones = b.ints([1] * (x.rank - 1))
    return b.node("Concat", [first.name, ones], (x.rank,), TensorProto.INT64, axis=0).name


def _const_shape(b: Builder, x: Val) -> tuple[int, ...]:
    """A constant shape that broadcasts against ``x`` without changing its shape."""
    tail = [d if isinstance(d, int) else 1 for d in x.shape]
    options: list[tuple[int, ...]] = [(), (1,), tuple(tail[-1:])]
    if x.rank >= 2:
        options.append(tuple(tail[1:]))
        options.append(tuple([1, *tail[1:]]))
    if x.rank == 4:
        options.append((tail[1], 1, 1))  # per channel
        options.append((1, tail[1], 1, 1))
    return b.draw(st.sampled_from(options), label="const_shape")


# ------------------------------------------------------------------------------ op makers
# Each maker takes the builder and the current value and returns the new current value, or
# None when the op does not apply to it. The one-line comment is what it draws.


def unary(b: Builder, x: Val) -> Val | None:
    # shape-preserving elementwise op (activations, Identity, Dropout, no-op Cast)
    ops = [
        "Relu",
        "Sigmoid",
        "Tanh",
        "Neg",
        "Abs",
        "Erf",
        "Softplus",
        "Identity",
        "Dropout",
        "LeakyRelu",
        "Elu",
        "HardSigmoid",
        "Cast",
        "Softsign",
    ]
    if b.opset >= 14:
        ops.append("HardSwish")
    if b.opset >= 20:
        ops.append("Gelu")
    op = b.draw(st.sampled_from(ops), label="unary")
    attrs: dict[str, Any] = {}
    if op == "LeakyRelu":
        attrs["alpha"] = b.draw(st.sampled_from([0.01, 0.2]), label="alpha")
    if op == "Cast":
        attrs["to"] = TensorProto.FLOAT
    if op == "Gelu" and b.draw(st.booleans(), label="tanh"):
        attrs["approximate"] = "tanh"
    return b.node(op, [x.name], x.shape, **attrs)


def positive_math(b: Builder, x: Val) -> Val | None:
    # Sqrt / Log / Reciprocal of |x| + 1 (defined everywhere)
    shifted = b.node("Add", [b.node("Abs", [x.name], x.shape).name, b.scalar(1.0)], x.shape)
    op = b.draw(st.sampled_from(["Sqrt", "Log", "Reciprocal"]), label="positive_op")
    return b.node(op, [shifted.name], x.shape)


def clip(b: Builder, x: Val) -> Val | None:
    # Clip with min/max inputs (possibly only one of them)
    low = b.draw(st.sampled_from([None, -1.0, 0.0]), label="clip_min")
    high = b.draw(st.sampled_from([None, 1.0, 6.0]), label="clip_max")
    inputs = [
        x.name,
        b.scalar(low) if low is not None else "",
        b.scalar(high) if high is not None else "",
    ]
    while inputs and inputs[-1] == "":
        inputs.pop()
    return b.node("Clip", inputs, x.shape)


def binary_const(b: Builder, x: Val) -> Val | None:
    # x (op) constant, the constant broadcasting without changing x's shape
    op = b.draw(st.sampled_from(["Add", "Sub", "Mul", "Div", "Max", "Min"]), label="binary")
    shape = _const_shape(b, x)
    neutral = b.draw(st.integers(0, 4), label="neutral") == 0  # x+0, x*1, x/1
    if neutral and op in ("Add", "Sub", "Mul", "Div"):
        array = np.full(shape, 1.0 if op in ("Mul", "Div") else 0.0, np.float32)
        c = b.const(array)
    else:
        c = b.weight(shape, positive=op == "Div")
    inputs = (
        [c, x.name] if op in ("Add", "Mul") and b.draw(st.booleans(), label="swap") else [x.name, c]
    )
    return b.node(op, inputs, _broadcast(x.shape, shape))


def binary_pool(b: Builder, x: Val) -> Val | None:
    # x (op) an earlier value of the same shape (a diamond in the graph)
    same = [v for v in b.pool if v.shape == x.shape and v.name != x.name and v.dtype == x.dtype]
    if not same:
        return None
    other = b.draw(st.sampled_from(same), label="other")
    op = b.draw(st.sampled_from(["Add", "Mul", "Sub", "Max"]), label="binary_pool")
    return b.node(op, [x.name, other.name], x.shape)


def twice(b: Builder, x: Val) -> Val | None:
    # the same node twice on the same input, then combined (common subexpressions)
    op = b.draw(st.sampled_from(["Relu", "Sigmoid", "Neg", "Transpose"]), label="twice")
    if op == "Transpose":
        perm = list(range(x.rank))[::-1]
        shape = tuple(x.shape[p] for p in perm)
        first = b.node(op, [x.name], shape, perm=perm)
        second = b.node(op, [x.name], shape, perm=perm)
    else:
        first = b.node(op, [x.name], x.shape)
        second = b.node(op, [x.name], x.shape)
    return b.node("Add", [first.name, second.name], first.shape)


def power(b: Builder, x: Val) -> Val | None:
    # Pow(x, 2) or Pow(|x|+1, 0.5)
    if b.draw(st.booleans(), label="square"):
        return b.node("Pow", [x.name, b.scalar(2.0)], x.shape)
    shifted = b.node("Add", [b.node("Abs", [x.name], x.shape).name, b.scalar(1.0)], x.shape)
    return b.node("Pow", [shifted.name, b.scalar(0.5)], x.shape)


def conv(b: Builder, x: Val) -> Val | None:
    # Conv (groups, kernel, stride, pads, dilation, bias), maybe a BatchNorm after it
    if x.rank != 4 or not x.static_tail():
        return None
    _, c, h, w = x.shape
    assert isinstance(c, int) and isinstance(h, int) and isinstance(w, int)
    group = b.draw(st.sampled_from([g for g in (1, 2, c) if c % g == 0]), label="group")
    m = group * b.draw(st.integers(1, 8), label="m_per_group")
    k = b.draw(st.sampled_from([1, 2, 3]), label="kernel")
    dilation = b.draw(st.sampled_from([1, 1, 2]), label="dilation")
    stride = b.draw(st.sampled_from([1, 1, 2]), label="stride")
    pad = b.draw(st.integers(0, k - 1), label="pad")
    span = dilation * (k - 1) + 1
    oh_, ow_ = (h + 2 * pad - span) // stride + 1, (w + 2 * pad - span) // stride + 1
    if oh_ < 1 or ow_ < 1:
        return None
    inputs = [x.name, b.weight((m, c // group, k, k), fan_in=c // group * k * k)]
    if b.draw(st.booleans(), label="bias"):
        inputs.append(b.weight((m,)))
    y = b.node(
        "Conv",
        inputs,
        (x.shape[0], m, oh_, ow_),
        group=group,
        kernel_shape=[k, k],
        strides=[stride] * 2,
        pads=[pad] * 4,
        dilations=[dilation] * 2,
    )
    if b.draw(st.booleans(), label="bn"):
        y = batchnorm(b, y) or y
    return y


def conv_transpose(b: Builder, x: Val) -> Val | None:
    # ConvTranspose (stride 1 or 2, kernel 2 or 3)
    if x.rank != 4 or not x.static_tail():
        return None
    _, c, h, w = x.shape
    assert isinstance(c, int) and isinstance(h, int) and isinstance(w, int)
    m = b.draw(st.integers(1, 3), label="m")
    k = b.draw(st.sampled_from([2, 3]), label="kernel")
    stride = b.draw(st.sampled_from([1, 2]), label="stride")
    if (h - 1) * stride + k > 12 or (w - 1) * stride + k > 12:
        return None
    inputs = [x.name, b.weight((c, m, k, k), fan_in=c * k * k)]
    if b.draw(st.booleans(), label="bias"):
        inputs.append(b.weight((m,)))
    shape = (x.shape[0], m, (h - 1) * stride + k, (w - 1) * stride + k)
    return b.node("ConvTranspose", inputs, shape, kernel_shape=[k, k], strides=[stride] * 2)


def batchnorm(b: Builder, x: Val) -> Val | None:
    # inference BatchNormalization over axis 1
    if x.rank < 2 or not isinstance(x.shape[1], int):
        return None
    c = x.shape[1]
    params = [
        b.weight((c,), positive=True),
        b.weight((c,)),
        b.weight((c,)),
        b.weight((c,), positive=True),
    ]
    return b.node(
        "BatchNormalization",
        [x.name, *params],
        x.shape,
        epsilon=b.draw(st.sampled_from([1e-5, 1e-3]), label="eps"),
    )


def pool(b: Builder, x: Val) -> Val | None:
    # MaxPool / AveragePool / GlobalAveragePool / GlobalMaxPool, maybe after a Pad
    if x.rank != 4 or not x.static_tail():
        return None
    _, c, h, w = x.shape
    assert isinstance(h, int) and isinstance(w, int)
    op = b.draw(
        st.sampled_from(["MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"]),
        label="pool",
    )
    if op.startswith("Global"):
        return b.node(op, [x.name], (x.shape[0], c, 1, 1))
    k = b.draw(st.sampled_from([1, 2, 3]), label="kernel")
    stride = b.draw(st.sampled_from([1, 2]), label="stride")
    pad = b.draw(st.integers(0, k - 1), label="pad")
    oh_, ow_ = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    if oh_ < 1 or ow_ < 1:
        return None
    attrs: dict[str, Any] = {"kernel_shape": [k, k], "strides": [stride] * 2, "pads": [pad] * 4}
    if op == "AveragePool":
        attrs["count_include_pad"] = b.draw(st.integers(0, 1), label="count_include_pad")
    return b.node(op, [x.name], (x.shape[0], c, oh_, ow_), **attrs)


def pad(b: Builder, x: Val) -> Val | None:
    # Pad (constant zero / value, reflect, edge) on the trailing axes, maybe before a Conv
    if not x.static_tail() or x.rank < 2:
        return None
    mode = b.draw(st.sampled_from(["constant", "constant", "reflect", "edge"]), label="mode")
    before = [0] + [b.draw(st.integers(0, 1), label="pad") for _ in x.shape[1:]]
    after = [0] + [b.draw(st.integers(0, 1), label="pad") for _ in x.shape[1:]]
    if mode == "reflect":  # reflect needs at least pad + 1 elements
        before = [
            p if isinstance(d, int) and d > p else 0 for p, d in zip(before, x.shape, strict=True)
        ]
        after = [
            p if isinstance(d, int) and d > p else 0 for p, d in zip(after, x.shape, strict=True)
        ]
    inputs = [x.name, b.ints(before + after)]
    if mode == "constant" and b.draw(st.booleans(), label="value"):
        inputs.append(b.scalar(b.draw(st.sampled_from([0.0, 1.5]), label="pad_value")))
    shape = tuple(
        d if not isinstance(d, int) else d + p + q
        for d, p, q in zip(x.shape, before, after, strict=True)
    )
    y = b.node("Pad", inputs, shape, mode=mode)
    if x.rank == 4 and b.draw(st.booleans(), label="then_conv"):
        return conv(b, y) or y
    return y


def matmul(b: Builder, x: Val) -> Val | None:
    # MatMul by a weight on the last axis, maybe + bias (-> Gemm candidate), maybe BatchNorm
    if not isinstance(x.shape[-1], int) or x.rank < 2:
        return None
    k = x.shape[-1]
    n = b.draw(st.integers(1, 12), label="n")
    y = b.node("MatMul", [x.name, b.weight((k, n), fan_in=k)], (*x.shape[:-1], n))
    if b.draw(st.booleans(), label="bias"):
        y = b.node(
            "Add",
            [y.name, b.weight(b.draw(st.sampled_from([(n,), (1, n)]), label="bias_shape"))],
            y.shape,
        )
    return y


def gemm(b: Builder, x: Val) -> Val | None:
    # Gemm on a 2-D value (transB, alpha, beta, bias forms), maybe a BatchNorm after it
    if x.rank != 2 or not isinstance(x.shape[1], int):
        return None
    k = x.shape[1]
    n = b.draw(st.integers(1, 12), label="n")
    trans_b = b.draw(st.integers(0, 1), label="transB")
    w = b.weight((n, k) if trans_b else (k, n), fan_in=k)
    inputs = [x.name, w]
    attrs: dict[str, Any] = {"transB": trans_b}
    if b.draw(st.booleans(), label="alpha"):
        attrs["alpha"] = 0.5
    if b.draw(st.booleans(), label="bias"):
        inputs.append(b.weight(b.draw(st.sampled_from([(n,), (1, n), ()]), label="c_shape")))
        if b.draw(st.booleans(), label="beta"):
            attrs["beta"] = 2.0
    y = b.node("Gemm", inputs, (x.shape[0], n), **attrs)
    if b.draw(st.booleans(), label="bn"):
        y = batchnorm(b, y) or y
    return y


def conv_block(b: Builder, x: Val) -> Val | None:
    # Conv -> (BatchNorm) -> Relu -> Conv: channels a pruner can remove
    if x.rank != 4 or not x.static_tail():
        return None
    c = int(x.shape[1])  # type: ignore[arg-type]
    hidden = b.draw(st.integers(4, 12), label="hidden")
    k = b.draw(st.sampled_from([1, 3]), label="kernel")
    y = b.node(
        "Conv",
        [x.name, b.weight((hidden, c, k, k), fan_in=c * k * k), b.weight((hidden,))],
        (x.shape[0], hidden, *x.shape[2:]),
        kernel_shape=[k, k],
        pads=[k // 2] * 4,
    )
    if b.draw(st.booleans(), label="bn"):
        y = batchnorm(b, y) or y
    y = b.node("Relu", [y.name], y.shape)
    out = b.draw(st.integers(1, 6), label="out")
    return b.node(
        "Conv",
        [y.name, b.weight((out, hidden, 1, 1), fan_in=hidden)],
        (x.shape[0], out, *x.shape[2:]),
        kernel_shape=[1, 1],
    )


def mlp_block(b: Builder, x: Val) -> Val | None:
    # MatMul (+bias) -> Relu/Gelu-like -> MatMul with a wide hidden layer (weight-only, pruning)
    if x.rank < 2 or not isinstance(x.shape[-1], int):
        return None
    k = x.shape[-1]
    hidden = b.draw(st.sampled_from([16, 32, 48]), label="hidden")
    y = b.node("MatMul", [x.name, b.weight((k, hidden), fan_in=k)], (*x.shape[:-1], hidden))
    y = b.node("Add", [y.name, b.weight((hidden,))], y.shape)
    y = b.node(b.draw(st.sampled_from(["Relu", "Tanh", "Sigmoid"]), label="act"), [y.name], y.shape)
    n = b.draw(st.integers(1, 8), label="n")
    return b.node("MatMul", [y.name, b.weight((hidden, n), fan_in=hidden)], (*x.shape[:-1], n))


def flatten(b: Builder, x: Val) -> Val | None:
    # Flatten(axis=1): to the 2-D form Gemm needs
    if x.rank < 2 or not x.static_tail():
        return None
    return b.node("Flatten", [x.name], (x.shape[0], math.prod(x.shape[1:])), axis=1)  # type: ignore[arg-type]


def reshape(b: Builder, x: Val) -> Val | None:
    # Reshape to a static target (0 copies the batch, -1 infers), or through shape arithmetic
    if x.rank < 2 or not x.static_tail():
        return None
    tail = [int(d) for d in x.shape[1:]]  # type: ignore[arg-type]
    total = math.prod(tail)
    choices = [[total], [total, 1], [1, total]]
    if x.rank >= 3:
        choices.append([tail[0], math.prod(tail[1:])])
    target = list(b.draw(st.sampled_from(choices), label="target"))
    shape: Shape = (x.shape[0], *target)
    if b.draw(st.integers(0, 2), label="dynamic") == 0:
        # Shape(x)[0:1] ++ target: what exporters emit for x.view(x.size(0), ...)
        dims = b.node("Shape", [x.name], (x.rank,), TensorProto.INT64)
        first = b.node("Gather", [dims.name, b.ints([0])], (1,), TensorProto.INT64, axis=0)
        new = b.node(
            "Concat", [first.name, b.ints(target)], (1 + len(target),), TensorProto.INT64, axis=0
        )
        return b.node("Reshape", [x.name, new.name], shape)
    spelled = [0, *target]
    if b.draw(st.booleans(), label="minus_one"):
        spelled[b.draw(st.integers(1, len(target)), label="infer_at")] = -1
    y = b.node("Reshape", [x.name, b.ints(spelled)], shape)
    if b.draw(st.booleans(), label="back"):  # and back again: a collapsible chain
        y = b.node("Reshape", [y.name, b.ints([0, *tail])], x.shape)
    return y


def transpose(b: Builder, x: Val) -> Val | None:
    # Transpose keeping the batch first, maybe followed by its inverse or another one
    if x.rank < 2:
        return None
    tail = list(b.draw(st.permutations(range(1, x.rank)), label="perm"))
    perm = [0, *tail]
    y = b.node("Transpose", [x.name], tuple(x.shape[p] for p in perm), perm=perm)
    follow = b.draw(st.sampled_from(["none", "inverse", "other"]), label="follow")
    if follow == "inverse":
        inverse = [perm.index(i) for i in range(x.rank)]
        y = b.node("Transpose", [y.name], x.shape, perm=inverse)
    elif follow == "other":
        again = [0, *b.draw(st.permutations(range(1, x.rank)), label="perm2")]
        y = b.node("Transpose", [y.name], tuple(y.shape[p] for p in again), perm=again)
    return y


def unsqueeze_squeeze(b: Builder, x: Val) -> Val | None:
    # Unsqueeze a new axis, maybe Squeeze it again
    if x.rank > 4:
        return None
    axis = b.draw(st.integers(1, x.rank), label="axis")
    shape = (*x.shape[:axis], 1, *x.shape[axis:])
    inputs, attrs = b.axes_form("Unsqueeze", [x.name], [axis], since=13)
    y = b.node("Unsqueeze", inputs, shape, **attrs)
    if b.draw(st.booleans(), label="squeeze"):
        inputs, attrs = b.axes_form("Squeeze", [y.name], [axis], since=13)
        y = b.node("Squeeze", inputs, x.shape, **attrs)
    return y


def concat(b: Builder, x: Val) -> Val | None:
    # Concat x with itself or a constant along a non-batch axis, maybe nested Concats
    if x.rank < 2 or not x.static_tail():
        return None
    axis = b.draw(st.integers(1, x.rank - 1), label="axis")
    parts = [x.name]
    extra = 0
    for _ in range(b.draw(st.integers(1, 2), label="parts")):
        if b.draw(st.booleans(), label="self"):
            parts.append(x.name)
            extra += int(x.shape[axis])  # type: ignore[arg-type]
        else:
            width = b.draw(st.integers(1, 2), label="width")
            tail = tuple(
                int(d) if i != axis else width  # type: ignore[arg-type]
                for i, d in enumerate(x.shape)
                if i > 0
            )
            if axis == 0:
                return None
            const = b.weight((1, *tail))
            parts.append(b.node("Expand", [const, _batch_shape(b, x)], (x.shape[0], *tail)).name)
            extra += width
    shape = tuple(
        int(d) + extra if i == axis else d  # type: ignore[arg-type]
        for i, d in enumerate(x.shape)
    )
    y = b.node("Concat", parts, shape, axis=axis)
    if b.draw(st.booleans(), label="nested"):
        y = b.node(
            "Concat",
            [y.name, x.name],
            tuple(
                int(d) + int(x.shape[axis]) if i == axis else d  # type: ignore[arg-type]
                for i, d in enumerate(y.shape)
            ),
            axis=axis,
        )
    return y


def slice_(b: Builder, x: Val) -> Val | None:
    # Slice a non-batch axis (start, end, step; negative forms too)
    if x.rank < 2 or not x.static_tail():
        return None
    axis = b.draw(st.integers(1, x.rank - 1), label="axis")
    size = int(x.shape[axis])  # type: ignore[arg-type]
    start = b.draw(st.integers(0, size - 1), label="start")
    end = b.draw(st.integers(start + 1, size), label="end")
    step = b.draw(st.sampled_from([1, 1, 2]), label="step")
    length = len(range(start, end, step))
    spelled_end = end if end < size or b.draw(st.booleans(), label="big_end") else 2**31
    inputs = [x.name, b.ints([start]), b.ints([spelled_end]), b.ints([axis])]
    if step != 1 or b.draw(st.booleans(), label="explicit_step"):
        inputs.append(b.ints([step]))
    shape = tuple(length if i == axis else d for i, d in enumerate(x.shape))
    return b.node("Slice", inputs, shape)


def split(b: Builder, x: Val) -> Val | None:
    # Split a non-batch axis in two and add the halves (or concat them back)
    if x.rank < 2 or not x.static_tail():
        return None
    axes = [i for i in range(1, x.rank) if int(x.shape[i]) % 2 == 0]  # type: ignore[arg-type]
    if not axes:
        return None
    axis = b.draw(st.sampled_from(axes), label="axis")
    half = int(x.shape[axis]) // 2  # type: ignore[arg-type]
    shape = tuple(half if i == axis else d for i, d in enumerate(x.shape))
    outs = [b.fresh("split"), b.fresh("split")]
    inputs = [x.name]
    attrs: dict[str, Any] = {"axis": axis}
    if b.opset >= 18 and b.draw(st.booleans(), label="num_outputs"):
        attrs["num_outputs"] = 2
    elif b.opset >= 13:
        inputs.append(b.ints([half, half]))
    else:
        attrs["split"] = [half, half]
    b.nodes.append(oh.make_node("Split", inputs, outs, name=b.fresh("n_"), **attrs))
    if b.draw(st.booleans(), label="concat_back"):
        return b.node("Concat", outs, x.shape, axis=axis)
    return b.node("Add", outs, shape)


def gather(b: Builder, x: Val) -> Val | None:
    # Gather constant indices (maybe negative, maybe a scalar) along a non-batch axis
    if x.rank < 2 or not x.static_tail():
        return None
    axis = b.draw(st.integers(1, x.rank - 1), label="axis")
    size = int(x.shape[axis])  # type: ignore[arg-type]
    if b.draw(st.booleans(), label="scalar") and x.rank > 2:
        index = b.draw(st.integers(-size, size - 1), label="index")
        shape = x.shape[:axis] + x.shape[axis + 1 :]
        return b.node("Gather", [x.name, b.const(np.array(index, np.int64))], shape, axis=axis)
    count = b.draw(st.integers(1, 3), label="count")
    indices = [b.draw(st.integers(-size, size - 1), label="index") for _ in range(count)]
    shape = tuple(count if i == axis else d for i, d in enumerate(x.shape))
    return b.node("Gather", [x.name, b.ints(indices)], shape, axis=axis)


def reduce(b: Builder, x: Val) -> Val | None:
    # ReduceMean / ReduceSum / ReduceMax over non-batch axes (keepdims either way)
    if x.rank < 2:
        return None
    op = b.draw(st.sampled_from(["ReduceMean", "ReduceSum", "ReduceMax"]), label="reduce")
    axes = sorted(
        set(b.draw(st.lists(st.integers(1, x.rank - 1), min_size=1, max_size=2), label="axes"))
    )
    keep = b.draw(st.integers(0, 1), label="keepdims")
    since = 13 if op == "ReduceSum" else 18
    inputs, attrs = b.axes_form(op, [x.name], axes, since=since, keepdims=keep)
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
    return b.node(op, inputs, shape, **attrs)


def softmax(b: Builder, x: Val) -> Val | None:
    # Softmax on the last axis
    return b.node("Softmax", [x.name], x.shape, axis=-1)


def layernorm(b: Builder, x: Val) -> Val | None:
    # LayerNormalization (opset 17+) or its decomposed form (what older exporters emit)
    if not isinstance(x.shape[-1], int):
        return None
    d = x.shape[-1]
    scale, bias = b.weight((d,), positive=True), b.weight((d,))
    if b.opset >= 17 and b.draw(st.booleans(), label="fused"):
        return b.node("LayerNormalization", [x.name, scale, bias], x.shape, axis=-1, epsilon=1e-5)
    inputs, attrs = b.axes_form("ReduceMean", [x.name], [-1], since=18)
    mean = b.node("ReduceMean", inputs, (*x.shape[:-1], 1), **attrs)
    diff = b.node("Sub", [x.name, mean.name], x.shape)
    square = b.node("Mul", [diff.name, diff.name], x.shape)
    inputs, attrs = b.axes_form("ReduceMean", [square.name], [-1], since=18)
    var = b.node("ReduceMean", inputs, mean.shape, **attrs)
    std = b.node("Sqrt", [b.node("Add", [var.name, b.scalar(1e-5)], var.shape).name], var.shape)
    normed = b.node("Div", [diff.name, std.name], x.shape)
    return b.node("Add", [b.node("Mul", [normed.name, scale], x.shape).name, bias], x.shape)


def activation_pattern(b: Builder, x: Val) -> Val | None:
    # HardSwish / HardSigmoid / Gelu written out, as exporters do (exact or near-miss constants)
    kind = b.draw(st.sampled_from(["hardswish", "hardsigmoid", "gelu"]), label="pattern")
    one_d = b.draw(st.booleans(), label="one_d")
    if kind in ("hardswish", "hardsigmoid"):
        six = b.draw(st.sampled_from([6.0, 6.0, 5.0]), label="six")
        added = b.node("Add", [x.name, b.scalar(3.0, one_d)], x.shape)
        clipped = b.node("Clip", [added.name, b.scalar(0.0, one_d), b.scalar(six, one_d)], x.shape)
        if kind == "hardsigmoid":
            return b.node("Div", [clipped.name, b.scalar(6.0, one_d)], x.shape)
        product = b.node("Mul", [x.name, clipped.name], x.shape)
        return b.node("Div", [product.name, b.scalar(6.0, one_d)], x.shape)
    scaled = b.node("Div", [x.name, b.scalar(float(np.sqrt(2.0)), one_d)], x.shape)
    erf = b.node("Erf", [scaled.name], x.shape)
    plus = b.node("Add", [erf.name, b.scalar(1.0, one_d)], x.shape)
    half = b.node(
        "Mul",
        [x.name, b.scalar(b.draw(st.sampled_from([0.5, 0.5, 0.25]), label="half"), one_d)],
        x.shape,
    )
    return b.node("Mul", [half.name, plus.name], x.shape)


def expand_tile(b: Builder, x: Val) -> Val | None:
    # Tile a non-batch axis, or Expand to a shape that broadcasts
    if x.rank < 2 or not x.static_tail():
        return None
    if b.draw(st.booleans(), label="tile"):
        repeats = [1] + [b.draw(st.sampled_from([1, 2]), label="rep") for _ in x.shape[1:]]
        shape = tuple(
            d if not isinstance(d, int) else d * r for d, r in zip(x.shape, repeats, strict=True)
        )
        return b.node("Tile", [x.name, b.ints(repeats)], shape)
    target = [1] + [int(d) for d in x.shape[1:]]  # type: ignore[arg-type]
    return b.node("Expand", [x.name, b.ints(target)], x.shape)


def fp16_roundtrip(b: Builder, x: Val) -> Val | None:
    # Cast to float16, an op in float16, Cast back
    half = b.node("Cast", [x.name], x.shape, TensorProto.FLOAT16, to=TensorProto.FLOAT16)
    op = b.draw(st.sampled_from(["Relu", "Neg", "Identity", "Abs"]), label="fp16_op")
    y = b.node(op, [half.name], x.shape, TensorProto.FLOAT16)
    return b.node("Cast", [y.name], x.shape, to=TensorProto.FLOAT)


def if_node(b: Builder, x: Val) -> Val | None:
    # If on a bool graph input or on a computed condition; bodies read x from outside
    if b.prefix:  # one level of nesting is enough
        return None
    if b.draw(st.booleans(), label="cond_input"):
        cond = b.fresh("cond")
        b.inputs.append(oh.make_tensor_value_info(cond, TensorProto.BOOL, []))
    else:
        inputs, attrs = b.axes_form(
            "ReduceSum", [x.name], list(range(x.rank)), since=13, keepdims=0
        )
        total = b.node("ReduceSum", inputs, (), **attrs)
        cond = b.node("Greater", [total.name, b.scalar(0.0)], (), TensorProto.BOOL).name
    branches = [_body(b, x, "then"), _body(b, x, "else")]
    return b.node("If", [cond], x.shape, then_branch=branches[0], else_branch=branches[1])


def loop_node(b: Builder, x: Val) -> Val | None:
    # Loop with a constant trip count carrying x through a few shape-preserving ops
    if b.prefix:
        return None
    trip = b.const(np.array(b.draw(st.integers(1, 3), label="trip"), np.int64), "trip")
    keep = b.const(np.array(True), "keep")
    inner = Builder(b.draw, b.opset, b.rng, prefix=b.fresh("loop") + "_")
    inner.weight_inputs = False
    iteration, cond_in = inner.fresh("iter"), inner.fresh("cond")
    carried = Val(inner.fresh("carried"), x.shape)
    inner.pool.append(carried)
    y = _chain(
        inner, carried, shape_preserving=True, length=b.draw(st.integers(1, 3), label="body_len")
    )
    cond_out = inner.node("Identity", [cond_in], (), TensorProto.BOOL)
    body = oh.make_graph(
        inner.nodes,
        "loop_body",
        [
            oh.make_tensor_value_info(iteration, TensorProto.INT64, []),
            oh.make_tensor_value_info(cond_in, TensorProto.BOOL, []),
            _info(carried),
        ],
        [_info(cond_out), _info(y)],
        inner.initializers,
    )
    return b.node("Loop", [trip, keep, x.name], x.shape, body=body)


def _info(v: Val, declared: bool = True) -> onnx.ValueInfoProto:
    """A value info with the shape, or with the rank only (dims unknown)."""
    return oh.make_tensor_value_info(
        v.name, v.dtype, list(v.shape) if declared else [None] * v.rank
    )


def _body(b: Builder, x: Val, label: str) -> onnx.GraphProto:
    inner = Builder(b.draw, b.opset, b.rng, prefix=b.fresh(label) + "_")
    inner.weight_inputs = False
    inner.pool.append(x)
    y = _chain(
        inner, x, shape_preserving=True, length=b.draw(st.integers(1, 3), label=f"{label}_len")
    )
    if y.name == x.name:  # a body must produce its own output value
        y = inner.node("Identity", [x.name], x.shape)
    return oh.make_graph(inner.nodes, f"{label}_branch", [], [_info(y)], inner.initializers)


#: Ops that keep the shape (usable inside bodies, whose output shape is fixed).
SHAPE_PRESERVING: tuple[Callable[[Builder, Val], Val | None], ...] = (
    unary,
    positive_math,
    clip,
    binary_const,
    binary_pool,
    power,
    softmax,
    layernorm,
    activation_pattern,
    fp16_roundtrip,
)
#: Every op maker the main graph draws from (weighted ops, which most passes target, twice).
ALL_MAKERS: tuple[Callable[[Builder, Val], Val | None], ...] = (
    *SHAPE_PRESERVING,
    twice,
    conv,
    conv,
    conv_block,
    conv_block,
    conv_transpose,
    batchnorm,
    pool,
    pad,
    matmul,
    matmul,
    mlp_block,
    mlp_block,
    gemm,
    gemm,
    flatten,
    reshape,
    transpose,
    unsqueeze_squeeze,
    concat,
    slice_,
    split,
    gather,
    reduce,
    expand_tile,
    if_node,
    loop_node,
)


def _chain(b: Builder, x: Val, *, shape_preserving: bool, length: int) -> Val:
    makers = SHAPE_PRESERVING if shape_preserving else ALL_MAKERS
    for _ in range(length):
        maker = b.draw(st.sampled_from(makers), label="op")
        y = maker(b, x)
        if y is None:
            continue
        if shape_preserving and y.shape != x.shape:
            raise AssertionError(f"{maker.__name__} changed the shape inside a body")
        if math.prod(d for d in y.shape if isinstance(d, int)) > 4096:
            break  # keep values small: the point is the graph, not the arithmetic
        x = y
    return x


@st.composite
def models(draw: Draw, max_ops: int = 8) -> onnx.ModelProto:
    """A random valid ONNX model (see the module docstring)."""
    opset = draw(st.sampled_from(OPSETS), label="opset")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    b = Builder(draw, opset, rng, prefix="")
    rank = draw(st.sampled_from([2, 3, 4, 4]), label="rank")
    batch: int | str = draw(st.sampled_from([BATCH, BATCH, 1, 2]), label="batch")
    tail = [draw(st.integers(1, 4 if rank == 4 else 6), label="dim") for _ in range(rank - 1)]
    x = Val("x", (batch, *tail))
    b.inputs.append(_info(x))
    b.pool.append(x)
    y = _chain(b, x, shape_preserving=False, length=draw(st.integers(1, max_ops), label="ops"))
    if y.name == "x":
        y = b.node("Identity", ["x"], x.shape)
    outputs = [y]
    exposed = [v for v in b.pool if v.name not in ("x", y.name)]
    if exposed and draw(st.integers(0, 3), label="expose") == 0:
        outputs.append(draw(st.sampled_from(exposed), label="exposed"))
    declared = draw(st.booleans(), label="declare_output_shapes")
    graph = oh.make_graph(
        b.nodes, "fuzz", b.inputs, [_info(v, declared) for v in outputs], b.initializers
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = max(7, onnx.helper.find_min_ir_version_for([model.opset_import[0]]))
    if draw(st.booleans(), label="annotated"):  # value_info everywhere, as exporters write
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    return model
