"""Per-op surgery: weights held by Constant / ConstantOfShape nodes, Slice bounds, Resize
sizes, Expand targets, the registry itself."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from pruning_testlib import build, prune_and_check

from irpass.passes.pruning.handlers import HANDLERS, handler_for, register, slice_constants

HEAD = '<ir_version: 8, opset_import: ["" : 17]>\n'


def test_registry_is_keyed_by_op_type() -> None:
    assert {
        "Conv",
        "ConvTranspose",
        "Gemm",
        "MatMul",
        "BatchNormalization",
        "Split",
        "Slice",
        "Reshape",
        "Expand",
        "Resize",
    } <= set(HANDLERS)
    relu = ir.node("Relu", [ir.Value(name="x")])
    assert handler_for(relu) is slice_constants
    with pytest.raises(ValueError, match="already registered"):
        register("Conv")(slice_constants)


def test_weights_in_constant_and_constant_of_shape_nodes() -> None:
    text = (
        HEAD
        + """
    g (float[N, 3, 4, 4] x, float[6, 3, 1, 1] w1) => (float[N, 2, 4, 4] y) {
        shape = Constant <value = int64[4] {2, 6, 1, 1}> ()
        w2 = ConstantOfShape <value = float[1] {0.25}> (shape)
        b1 = Constant <value = float[6] {1, 2, 3, 4, 5, 6}> ()
        c = Conv (x, w1, b1)
        r = Relu (c)
        y = Conv (r, w2)
    }
    """
    )
    model = build(text, ["w1"])
    prune_and_check(model, ratio=0.5, scope="local")
    nodes = {n.op_type: n for n in model.graph}
    assert nodes["ConstantOfShape"].inputs[0].const_value.numpy().tolist() == [2, 3, 1, 1]
    bias = next(n for n in model.graph if n.op_type == "Constant" and n.outputs[0].name == "b1")
    assert bias.attributes["value"].as_tensor().numpy().shape == (3,)


def test_slice_of_channels_counts_kept_positions() -> None:
    text = (
        HEAD
        + """
    g (float[N, 3, 4, 4] x, float[8, 3, 1, 1] w1, float[2, 4, 1, 1] w2, int64[1] starts,
       int64[1] ends, int64[1] axes) => (float[N, 2, 4, 4] y) {
        c = Conv (x, w1)
        s = Slice (c, starts, ends, axes)
        y = Conv (s, w2)
    }
    """
    )
    model = build(text, ["w1", "w2"])
    for name, value in (("starts", [2]), ("ends", [6]), ("axes", [1])):
        v = next(x for x in model.graph.inputs if x.name == name)
        model.graph.inputs.remove(v)
        v.const_value = ir.tensor(np.array(value, np.int64), name=name)
        model.graph.register_initializer(v)
    prune_and_check(model, ratio=0.5, scope="local")
    node = next(n for n in model.graph if n.op_type == "Slice")
    start, end = node.inputs[1].const_value.numpy()[0], node.inputs[2].const_value.numpy()[0]
    assert end - start == model.graph.initializers["w2"].const_value.shape[1]


def test_resize_with_explicit_sizes_and_expand() -> None:
    text = (
        HEAD
        + """
    g (float[1, 3, 4, 4] x, float[6, 3, 1, 1] w1, float[2, 6, 1, 1] w2, int64[4] sizes,
       int64[4] target) => (float[1, 2, 8, 8] y) {
        c = Conv (x, w1)
        u = Resize <mode = "nearest"> (c, , , sizes)
        e = Expand (u, target)
        y = Conv (e, w2)
    }
    """
    )
    model = build(text, ["w1", "w2"])
    for name, value in (("sizes", [1, 6, 8, 8]), ("target", [1, 6, 8, 8])):
        v = next(x for x in model.graph.inputs if x.name == name)
        model.graph.inputs.remove(v)
        v.const_value = ir.tensor(np.array(value, np.int64), name=name)
        model.graph.register_initializer(v)
    prune_and_check(model, ratio=0.5, scope="local")
    resize = next(n for n in model.graph if n.op_type == "Resize")
    expand = next(n for n in model.graph if n.op_type == "Expand")
    assert resize.inputs[3].const_value.numpy().tolist() == [1, 3, 8, 8]
    assert expand.inputs[1].const_value.numpy().tolist() == [1, 3, 8, 8]
