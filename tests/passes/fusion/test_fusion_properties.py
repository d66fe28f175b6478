"""Property test: random small graphs made of the patterns the fusion passes rewrite (and of
near-misses they must refuse) stay numerically equivalent under the ``fuse`` preset.

Silent wrong answers are the worst failure of a graph optimizer, so the generator mixes exact
patterns with variants that must be left alone: constants that are not per-channel or that
broadcast the result up, padded convolutions after an Add, non-zero Pad values, MaxPool after
Pad, ceil_mode, shared weights, transposes with other users, random opsets.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import onnx
import onnx_ir as ir
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from irpass.manager import PipelineRunner, RunOptions
from irpass.testing import assert_equivalent
from irpass.verify import make_session, random_feeds, run_model


class GraphBuilder:
    """Accumulates nodes and initializers; tracks the current value's name and shape."""

    def __init__(self, data: st.DataObject, opset: int) -> None:
        self.data, self.opset = data, opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
        self.count = itertools.count()
        self.extra_outputs: list[str] = []

    def name(self, base: str) -> str:
        return f"{base}{next(self.count)}"

    def const(self, array: np.ndarray, base: str = "c") -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def randn(self, shape, base="w", positive=False) -> str:
        a = self.rng.standard_normal(shape).astype(np.float32) * 0.5
        if positive:
            a = np.abs(a) + 0.5
        return self.const(a, base)

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def draw(self, strategy, label):
        return self.data.draw(strategy, label=label)


def _channel_const_shape(b: GraphBuilder, channels: int, rank: int, axis: int) -> tuple:
    """A constant shape: per-channel (several spellings) or deliberately not per-channel."""
    per_channel = [(), (1,), tuple(channels if i == axis else 1 for i in range(rank))]
    per_channel.append(per_channel[-1][1:])  # without the batch axis
    others = [
        tuple(2 if i == 0 else 1 for i in range(rank)),  # would broadcast the batch up
        (1,) * (rank + 1),  # raises the rank
    ]
    return b.draw(st.sampled_from(per_channel + others), "const_shape")


# --------------------------------------------------------------------------- 4-D blocks
def block_conv_affine(b: GraphBuilder, x: str, shape: tuple) -> str:
    _n, c, _h, _w = shape
    group = b.draw(st.sampled_from([g for g in (1, 2, c) if c % g == 0]), "group")
    m = group * b.draw(st.integers(1, 3), "m_per_group")
    k = b.draw(st.sampled_from([1, 3]), "kernel")
    pad = b.draw(st.integers(0, 1), "pad")
    inputs = [x, b.randn((m, c // group, k, k))]
    if b.draw(st.booleans(), "bias"):
        inputs.append(b.randn((m,)))
    # a scale *before* the conv: per input channel (exact) or an Add (exact only unpadded)
    before = b.draw(st.sampled_from(["none", "Mul", "Div", "Add"]), "before")
    if before != "none":
        cshape = _channel_const_shape(b, c, 4, 1)
        inputs[0] = b.node(before, [x, b.randn(cshape, positive=True)])
        if len(np.broadcast_shapes(shape, cshape)) != 4:
            return inputs[0]
    y = b.node("Conv", inputs, group=group, pads=[pad] * 4, kernel_shape=[k, k])
    if b.draw(st.booleans(), "share_weight"):
        b.extra_outputs.append(b.node("Conv", [x, inputs[1]], group=group, kernel_shape=[k, k]))
    after = b.draw(st.sampled_from(["BN", "Mul", "Div", "Add", "Sub", "none"]), "after")
    if after == "BN":
        params = [b.randn((m,)), b.randn((m,)), b.randn((m,)), b.randn((m,), positive=True)]
        y = b.node("BatchNormalization", [y, *params], epsilon=1e-3)
    elif after != "none":
        cshape = _channel_const_shape(b, m, 4, 1)
        y = b.node(after, [y, b.randn(cshape, positive=True)])
    return y


def block_bn_then_conv(b: GraphBuilder, x: str, shape: tuple) -> str:
    _n, c, _h, _w = shape
    params = [b.randn((c,)), b.randn((c,)), b.randn((c,)), b.randn((c,), positive=True)]
    y = b.node("BatchNormalization", [x, *params])
    pad = b.draw(st.integers(0, 1), "pad")
    m = b.draw(st.integers(1, 4), "m")
    return b.node("Conv", [y, b.randn((m, c, 1, 1))], pads=[pad] * 4, kernel_shape=[1, 1])


def block_pad(b: GraphBuilder, x: str, shape: tuple) -> str:
    _n, c, _h, _w = shape
    pads = [0, b.draw(st.sampled_from([0, 0, 1]), "pad_c")] + [
        b.draw(st.integers(0, 2), "pad") for _ in range(2)
    ]
    pads += [0, 0] + [b.draw(st.integers(0, 2), "pad") for _ in range(2)]
    value = b.draw(st.sampled_from([0.0, 0.0, 1.5]), "pad_value")
    mode = b.draw(st.sampled_from(["constant", "constant", "reflect"]), "mode")
    if mode == "reflect":
        pads[1] = pads[5] = 0
        pads = [min(p, 1) for p in pads]
    y = b.node("Pad", [x, b.const(np.array(pads, np.int64)), b.const(np.float32(value))],
               mode=mode)
    channels = c + pads[1] + pads[5]
    consumer = b.draw(st.sampled_from(["Conv", "AveragePool", "MaxPool"]), "consumer")
    own = [b.draw(st.integers(0, 1), "own_pad")] * 4
    if consumer == "Conv":
        m = b.draw(st.integers(1, 3), "m")
        return b.node("Conv", [y, b.randn((m, channels, 2, 2))], pads=own, kernel_shape=[2, 2])
    attrs = {"kernel_shape": [2, 2], "pads": own}
    if consumer == "AveragePool":
        attrs["count_include_pad"] = b.draw(st.integers(0, 1), "count_include_pad")
        attrs["ceil_mode"] = b.draw(st.integers(0, 1), "ceil_mode")
        attrs["strides"] = [2, 2] if attrs["ceil_mode"] else [1, 1]
    return b.node(consumer, [y], **attrs)


def block_transposes(b: GraphBuilder, x: str, shape: tuple) -> str:
    p1 = list(b.draw(st.permutations(range(4)), "perm1"))
    y = b.node("Transpose", [x], perm=p1)
    inverse = [p1.index(i) for i in range(4)]
    p2 = inverse if b.draw(st.booleans(), "inverse") else list(
        b.draw(st.permutations(range(4)), "perm2")
    )
    if b.draw(st.integers(0, 4), "expose_inner") == 0:
        b.extra_outputs.append(y)
    return b.node("Transpose", [y], perm=p2)


def block_reshapes(b: GraphBuilder, x: str, shape: tuple) -> str:
    n, c, h, w = shape
    y = b.node("Flatten", [x], axis=b.draw(st.integers(1, 3), "axis"))
    if b.draw(st.booleans(), "unsqueeze"):
        y = b.node("Unsqueeze", [y, b.const(np.array([0], np.int64))])
    target = [n, c, h * w, 1] if b.draw(st.booleans(), "reshape_4d") else [n, c, h, w]
    return b.node("Reshape", [y, b.const(np.array(target, np.int64))])


def block_activation(b: GraphBuilder, x: str, shape: tuple) -> str:
    kind = b.draw(st.sampled_from(["hardswish", "hardsigmoid", "gelu_erf", "gelu_tanh"]), "act")
    one_d = b.draw(st.booleans(), "one_d_constants")  # exporters write scalars or shape (1,)

    def f(v: float) -> str:
        return b.const(np.array([v], np.float32) if one_d else np.float32(v))

    if kind in ("hardswish", "hardsigmoid"):
        six = b.draw(st.sampled_from([6.0, 6.0, 5.0]), "six")
        a = b.node("Add", [x, f(3.0)])
        r = b.node("Clip", [a, f(0.0), f(six)])
        if kind == "hardsigmoid":
            return b.node("Div", [r, f(6.0)])
        return b.node("Div", [b.node("Mul", [x, r]), f(6.0)])
    if kind == "gelu_erf":
        inner = b.node("Erf", [b.node("Div", [x, f(np.sqrt(2.0))])])
    else:
        cube = b.node("Pow", [x, f(3.0)])
        poly = b.node("Add", [x, b.node("Mul", [cube, f(0.044715)])])
        inner = b.node("Tanh", [b.node("Mul", [poly, f(np.sqrt(2 / np.pi))])])
    half = b.draw(st.sampled_from([0.5, 0.5, 0.25]), "half")
    one_plus = b.node("Add", [inner, f(1.0)])
    return b.node("Mul", [b.node("Mul", [x, f(half)]), one_plus])


def block_noop(b: GraphBuilder, x: str, shape: tuple) -> str:
    kind = b.draw(st.sampled_from(["Mul", "Add", "Div", "Sub", "Cast", "Expand", "Reshape"]),
                  "noop")
    if kind == "Cast":
        return b.node("Cast", [x], to=TensorProto.FLOAT)
    if kind in ("Expand", "Reshape"):
        target = list(shape) if b.draw(st.booleans(), "same") else [2, *shape[1:]]
        if kind == "Reshape":
            target = [0, -1, *shape[2:]] if b.draw(st.booleans(), "copy") else list(shape)
        return b.node(kind, [x, b.const(np.array(target, np.int64))])
    cshape = b.draw(st.sampled_from([(), (1,), (1, 1, 1, 1), (2, 1, 1, 1), (1, 1, 1, 1, 1)]),
                    "noop_shape")
    neutral = 1.0 if kind in ("Mul", "Div") else 0.0
    value = neutral if b.draw(st.integers(0, 3), "neutral") else neutral + 0.5
    return b.node(kind, [x, b.const(np.full(cshape, value, np.float32))])


# --------------------------------------------------------------------------- 2-D blocks
def block_gemm(b: GraphBuilder, x: str, shape: tuple) -> str:
    m, k = shape
    n = b.draw(st.integers(1, 5), "n")
    trans_a, trans_b = b.draw(st.integers(0, 1), "transA"), b.draw(st.integers(0, 1), "transB")
    a = b.node("Transpose", [x], perm=[1, 0]) if trans_a else x
    w = b.randn((n, k) if trans_b else (k, n))
    if b.draw(st.booleans(), "transpose_w"):
        w = b.node("Transpose", [b.randn((k, n) if trans_b else (n, k))], perm=[1, 0])
    kind = b.draw(st.sampled_from(["Gemm", "MatMulAdd", "MatMul"]), "linear")
    if kind == "Gemm":
        inputs = [a, w] + ([b.randn((n,))] if b.draw(st.booleans(), "C") else [])
        y = b.node("Gemm", inputs, transA=trans_a, transB=trans_b,
                   alpha=b.draw(st.sampled_from([1.0, 0.5]), "alpha"),
                   beta=b.draw(st.sampled_from([1.0, 2.0]), "beta"))
    else:
        lhs = b.node("Transpose", [a], perm=[1, 0]) if trans_a else a
        rhs = b.node("Transpose", [w], perm=[1, 0]) if trans_b else w
        y = b.node("MatMul", [lhs, rhs])
        if kind == "MatMulAdd":
            bias_shape = b.draw(st.sampled_from([(n,), (1, n), (m, n), (m, 1)]), "bias_shape")
            y = b.node("Add", [b.randn(bias_shape), y] if b.draw(st.booleans(), "swap") else
                       [y, b.randn(bias_shape)])
    after = b.draw(st.sampled_from(["BN", "Mul", "Add", "none"]), "after")
    if after == "BN":
        params = [b.randn((n,)), b.randn((n,)), b.randn((n,)), b.randn((n,), positive=True)]
        y = b.node("BatchNormalization", [y, *params])
    elif after != "none":
        cshape = b.draw(st.sampled_from([(n,), (1, n), (m, 1), ()]), "cshape")
        y = b.node(after, [y, b.randn(cshape)])
    return y


def block_layernorm(b: GraphBuilder, x: str, shape: tuple) -> str:
    axes = b.draw(st.sampled_from([[-1], [1], [0], [0, 1]]), "axes")

    def reduce_mean(v: str) -> str:
        if b.opset >= 18:
            return b.node("ReduceMean", [v, b.const(np.array(axes, np.int64))])
        return b.node("ReduceMean", [v], axes=axes)

    d = b.node("Sub", [x, reduce_mean(x)])
    var = reduce_mean(b.node("Mul", [d, d]))
    std = b.node("Sqrt", [b.node("Add", [var, b.const(np.float32(1e-5))])])
    y = b.node("Div", [d, std])
    gamma_shape = b.draw(st.sampled_from([(shape[1],), (1,), shape]), "gamma_shape")
    y = b.node("Mul", [y, b.randn(gamma_shape)])
    return b.node("Add", [y, b.randn((shape[1],))])


BLOCKS_4D = [block_conv_affine, block_bn_then_conv, block_pad, block_transposes,
             block_reshapes, block_activation, block_noop]
BLOCKS_2D = [block_gemm, block_layernorm, block_activation]


def _make(b: GraphBuilder, input_shape: tuple, outputs: list[str]) -> onnx.ModelProto:
    graph = helper.make_graph(
        b.nodes,
        "random",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", b.opset)])
    model.ir_version = 8
    return model


def _shape_of(b: GraphBuilder, input_shape: tuple, value: str) -> tuple | None:
    """The static shape of ``value`` by ONNX shape inference, or None (invalid graph)."""
    if value == "x":
        return input_shape
    try:
        inferred = onnx.shape_inference.infer_shapes(
            _make(b, input_shape, [value]), strict_mode=True
        )
    except Exception:
        return None
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        if info.name == value:
            dims = info.type.tensor_type.shape.dim
            if all(d.HasField("dim_value") for d in dims):
                return tuple(d.dim_value for d in dims)
    return None


def random_model(data: st.DataObject) -> onnx.ModelProto | None:
    """A random chain of 4-D pattern blocks, optionally flattened into a 2-D block."""
    b = GraphBuilder(data, data.draw(st.sampled_from([13, 17, 18, 20]), label="opset"))
    input_shape = (1, data.draw(st.integers(1, 4), label="channels"),
                   data.draw(st.integers(3, 6), label="h"), data.draw(st.integers(3, 6), label="w"))
    x, shape = "x", input_shape
    for _ in range(data.draw(st.integers(1, 2), label="blocks_4d")):
        if shape is None or len(shape) != 4 or min(shape) < 1:
            break
        x = data.draw(st.sampled_from(BLOCKS_4D), label="block")(b, x, shape)
        shape = _shape_of(b, input_shape, x)
    if shape is None or min(shape) < 1:
        return None
    if data.draw(st.booleans(), label="to_2d"):
        x = b.node("Flatten", [x], axis=1)
        shape = _shape_of(b, input_shape, x)
        if shape is None or min(shape) < 1:
            return None
        x = data.draw(st.sampled_from(BLOCKS_2D), label="block2d")(b, x, shape)
    return _make(b, input_shape, [x, *b.extra_outputs])


@settings(
    # IRPASS_HYPOTHESIS_EXAMPLES=1000 for a deeper search; the default keeps the suite fast
    max_examples=int(os.environ.get("IRPASS_HYPOTHESIS_EXAMPLES", "50")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
@given(st.data())
def test_fuse_preserves_outputs_of_random_pattern_graphs(data):
    proto = random_model(data)
    if proto is None:
        event("invalid graph")
        return  # the generator made an invalid graph (e.g. a pool window larger than the input)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
        onnx.checker.check_model(proto)
        session = make_session(proto)
        run_model(session, random_feeds(session))
    except Exception:
        event("invalid graph")
        return
    model = ir.from_proto(proto)
    reference = ir.from_proto(proto)
    result = PipelineRunner("fuse", options=RunOptions(verify="none")).run(model)
    for record in result.report.to_dict()["passes"]:
        for rule in record["stats"]:
            event(f"{record['name']}.{rule}")
    assert_equivalent(reference, model)
